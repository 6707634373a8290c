"""A callback that records, per DDP rank, what tests/test_ddp.py compares across ranks.

It is loaded by class path (``--trainer.callbacks+=ddp_probe.DDPProbe``) in every rank of a
`fit` subprocess, so it lives in its own module on the subprocess's PYTHONPATH (tests/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchrl.data import ReplayBuffer

from sqil_lightning.callbacks import Evaluation


def _observations(buffer: ReplayBuffer | None) -> torch.Tensor | None:
    """Every observation stored in a replay partition, in storage order."""
    if buffer is None:
        return None
    return buffer[: len(buffer)]["observation"].clone()


class DDPProbe(Callback):
    """Write ``<out_dir>/rank<global_rank>.pt`` at the end of `fit`.

    It holds, taken in `on_train_end` (after the last step, before `Evaluation.on_fit_end` plays
    the final episodes): the learner's state_dict, global_step, the datamodule's env_steps and the
    observations of both replay partitions; and, taken at teardown, the `(global_step, episodes)`
    of every evaluation this rank played.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.evaluations: list[tuple[int, int]] = []
        self.record: dict[str, Any] = {}
        self.first_batch: torch.Tensor | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for callback in trainer.callbacks:
            if isinstance(callback, Evaluation):
                self._count_evaluations(callback, trainer)

    def _count_evaluations(self, callback: Evaluation, trainer: Trainer) -> None:
        evaluate = callback.evaluate

        def counted(trainer_: Trainer, pl_module: LightningModule, episodes: int):
            self.evaluations.append((trainer_.global_step, episodes))
            return evaluate(trainer_, pl_module, episodes)

        callback.evaluate = counted  # an instance attribute, in this process only

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0:  # the first update's demo rows: both ranks sample the same demo partition
            first = batch[0]
            self.first_batch = first["observation"][first["is_demo"]].detach().to("cpu", copy=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        buffer = datamodule.experience.buffer  # an OfflineToOnlineReplayBuffer (SQIL) or the online buffer alone
        demos = getattr(buffer, "offline_buffer", None)
        online = getattr(buffer, "online_buffer", buffer)
        self.record = {
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "global_step": trainer.global_step,
            "env_steps": datamodule.experience.env_steps,
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()},
            "online_observations": _observations(online),
            "demo_observations": _observations(demos),
            "first_batch": self.first_batch,
        }

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.record:  # fit ended before training did; the test reports the missing file
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save({**self.record, "evaluations": list(self.evaluations)}, self.out_dir / f"rank{trainer.global_rank}.pt")
