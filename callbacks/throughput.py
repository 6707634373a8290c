"""Log how fast a run trains: gradient updates and env steps per second of wall-clock."""

from __future__ import annotations

import time

from lightning.pytorch import Callback, LightningModule, Trainer

from sqil_lightning.callbacks.step_interval import intervals_passed


class Throughput(Callback):
    """Every ``trainer.log_every_n_steps``, log ``perf/updates_per_s`` and ``perf/env_steps_per_s``.

    Rates are over the wall-clock since the previous logging step, evaluations and checkpoint
    writes included (what a user waits for). ``perf/env_steps_per_s`` counts every rank's env
    steps. Lightning's `ThroughputMonitor` is not used: it synchronises the GPU after every batch.
    """

    def __init__(self) -> None:
        self._since: tuple[float, int, int] | None = None  # (time, global step, env steps) of the window's start

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._since = (time.perf_counter(), trainer.global_step, trainer.datamodule.experience.env_steps)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._since is None or not intervals_passed(trainer, batch, trainer.log_every_n_steps):
            return
        now, step, env_steps = time.perf_counter(), trainer.global_step, trainer.datamodule.experience.env_steps
        start, start_step, start_env_steps = self._since
        elapsed = now - start
        if elapsed > 0 and step > start_step:
            pl_module.log("perf/updates_per_s", (step - start_step) / elapsed)
            pl_module.log("perf/env_steps_per_s", (env_steps - start_env_steps) * trainer.world_size / elapsed)
        self._since = (now, step, env_steps)
