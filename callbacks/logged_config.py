"""Save the run's resolved config beside its logs and send it to the experiment trackers."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


class LoggedConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` in the log folder, plus the whole resolved config (every
    section, defaults filled in, overrides applied) as the W&B run's config, so runs can be filtered
    and compared by any key on the dashboard."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.config.as_dict()
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_hyperparams(config)  # rank 0 only (Lightning's rank_zero_only)
