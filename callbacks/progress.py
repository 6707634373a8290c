"""The training progress bar, counted in gradient updates: the unit of ``trainer.max_steps``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class UpdatesProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, but its count is ``trainer.global_step`` and its total ``max_steps``.

    A Lightning step makes ``data.updates_per_step`` gradient updates, so Lightning's own bar,
    which counts steps (batches), stopped at 20000/80000 (25%) with ``updates_per_step 4`` and
    showed an ETA four times too long. This bar counts what ``max_steps`` counts and ends at 100%.

    ``refresh_rate`` is in the same unit: the bar is redrawn each time ``global_step`` passes a
    multiple of it, and at the last step. A resumed run starts the bar at its step; the rate and
    the ETA are over the updates of this run only (tqdm's average since the bar started).
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self._drawn_step = 0

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        # TQDMProgressBar's, with the total and the count in updates.
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.reset()
        # With max_epochs instead of max_steps, the total in updates is not known up front.
        bar.total = trainer.max_steps if trainer.max_steps > 0 else None
        # `initial` makes tqdm's rate (n - initial) / elapsed: this run's updates only.
        bar.initial = bar.n = self._drawn_step = trainer.global_step
        bar.set_description(f"Epoch {trainer.current_epoch}")  # redraws the bar

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar = self._train_progress_bar
        if bar is None or not self.is_enabled or bar.disable:
            return
        step = trainer.global_step
        passed = step // self.refresh_rate > self._drawn_step // self.refresh_rate
        if passed or step == bar.total:
            self._drawn_step = step
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # redraws the bar
