"""Add on-policy experience every k gradient steps (paper Algorithm 1, lines 5-7)."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer

from sqil_lightning.callbacks.step_interval import intervals_passed
from sqil_lightning.errors import ConfigError


class PeriodicRollout(Callback):
    """Every ``every_n_steps`` gradient steps, the experience collects ``data.rollout_env_steps`` env
    steps with the current (sampling) policy into the online partition.

    Args:
        every_n_steps: k of Algorithm 1; with ``data.rollout_env_steps`` it sets the
            update-to-data ratio (k / rollout_env_steps gradient steps per env step). When a Lightning
            step makes several updates (``data.updates_per_step``), the rollouts it passed follow
            its updates: with k a multiple of ``updates_per_step`` they fall exactly where they
            would with one update a step.
    """

    def __init__(self, every_n_steps: int = 4) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"rollout.every_n_steps = {every_n_steps} is invalid; it must be a positive integer")
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        rollouts = intervals_passed(trainer, batch, self.every_n_steps)
        if not rollouts:
            return
        experience = trainer.datamodule.experience
        episode_stats = {}
        for _ in range(rollouts):
            episode_stats = experience.collect() or episode_stats
        pl_module.log("env_steps", float(experience.env_steps), prog_bar=True)
        if episode_stats:
            pl_module.log_dict(episode_stats)
