"""Every way a fit stops leaves ``last.ckpt`` at the step it stopped: its end, SIGTERM, Ctrl+C."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sqil_lightning.checkpoint_io import checkpoint_dir
from sqil_lightning.errors import TrainingStopped
from sqil_lightning.resume import newest_checkpoint


class GracefulStop(Callback):
    """Write ``last.ckpt`` when a run ends or is told to stop, so `fit --ckpt_path last` continues it.

    At the end of fit (with ``checkpoint.save_last``): `ModelCheckpoint` writes ``last.ckpt`` only
    every ``every_n_train_steps``, so without this the file could lag the final step.
    SIGTERM (schedulers, `kill`): Lightning notices it between steps and raises
    `SIGTERMException`; this callback saves the checkpoint on the way out. Ctrl+C (SIGINT) would
    break a step half-done, so the first one only sets a flag that is checked after the step ends;
    a second Ctrl+C aborts at once, without a checkpoint.
    """

    def __init__(self) -> None:
        self._stop_requested = False
        self._previous_handler = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_requested = False
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self._stop_requested:
            self._restore_handler()
            raise KeyboardInterrupt
        self._stop_requested = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._stop_requested:
            path = self.save_last(trainer)
            raise TrainingStopped(f"stopped by Ctrl+C after step {trainer.global_step}; {self._resume_hint(path)}")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            path = self.save_last(trainer)
            rank_zero_info(f"stopped by SIGTERM after step {trainer.global_step}; {self._resume_hint(path)}")
        elif isinstance(exception, KeyboardInterrupt):  # a second Ctrl+C: no time to save this step
            newest = newest_checkpoint(Path(checkpoint_dir(trainer)))
            saved = self._resume_hint(newest) if newest is not None else "no checkpoint had been written yet"
            rank_zero_info(f"aborted by a second Ctrl+C during step {trainer.global_step}, without saving it; {saved}")
        self._restore_handler()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.save_last and not trainer.interrupted:
            self.save_last(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_handler()

    @staticmethod
    def save_last(trainer: Trainer) -> Path:
        """Save the trainer's state as ``last.ckpt`` where `ModelCheckpoint` keeps its checkpoints."""
        checkpoint = trainer.checkpoint_callback
        name = f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
        path = os.path.join(checkpoint_dir(trainer), name)
        # The full state (weights_only=False: what a resume needs); atomic with the CLI's AtomicCheckpointIO.
        trainer.save_checkpoint(path, weights_only=False)
        if isinstance(checkpoint, ModelCheckpoint):
            # Tell ModelCheckpoint this file is its own last checkpoint; else its next save of
            # "last" finds the name taken and writes last-v1.ckpt beside it.
            checkpoint.last_model_path = path
        return Path(path)

    @staticmethod
    def _resume_hint(path: Path) -> str:
        return f"checkpoint {path}; continue with the same command plus --ckpt_path last"

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None
