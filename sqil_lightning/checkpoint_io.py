"""Checkpoint files that are either the old one or the complete new one, never half written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO


def checkpoint_dir(trainer: Trainer) -> str:
    """The folder where this run's checkpoints go: `ModelCheckpoint`'s, else ``<root>/checkpoints``."""
    checkpoint = trainer.checkpoint_callback
    directory = checkpoint.dirpath if checkpoint is not None else None
    return directory or os.path.join(trainer.default_root_dir, "checkpoints")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file in its own folder, fsync it, then rename it into place.

    Lightning's own writer stages the file in the system temp folder and moves it over; when that
    folder is another filesystem (a tmpfs /tmp, a container volume) the move is a plain copy, and a
    crash during it leaves a corrupt checkpoint. A rename within one folder is atomic on POSIX.
    Remote paths (``s3://…``) go through Lightning's writer unchanged.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            with partial.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
