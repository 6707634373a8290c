"""Write the replay snapshot that belongs to each checkpoint, on the checkpoint's own path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from sqil_lightning.checkpoint_io import checkpoint_dir


class ReplaySnapshot(Callback):
    """When Lightning saves a checkpoint, each rank writes its online replay rows, RNG states, current
    episode and untrained batches beside it (`sqil_lightning.data.snapshot`); the data module's state
    in the checkpoint names the step, which a resume checks. A Lightning checkpoint holds no replay,
    so without this a resumed run would lose the agent's experience."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.datamodule is None or trainer.datamodule.experience is None:
            return  # nothing collected yet: a checkpoint of validate/test, or of a bare learner
        trainer.datamodule.experience.save_snapshot(Path(checkpoint_dir(trainer)), trainer.global_step, trainer.global_rank)
