"""One fit at a time per checkpoint folder: a second fit that would share it is refused."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from lightning.pytorch import Callback, LightningModule, Trainer

from sqil_lightning.checkpoint_io import CheckpointError, checkpoint_dir

LOCK_NAME = ".sqil_lightning.lock"


class CheckpointFolderLock(Callback):
    """Hold an exclusive lock on the run's checkpoint folder for the whole fit.

    Two fits writing one folder (a shared ``checkpoint.dirpath``, as ``conf/experts/*`` set)
    overwrite each other's ``last.ckpt``, and the one that resumes continues the other's run.
    The lock is an OS file lock (`fcntl.flock`): the kernel drops it when the process dies, even
    by ``kill -9``, so a crashed run never leaves the folder locked. Only global rank 0 locks:
    the other DDP ranks belong to the same fit.
    """

    def __init__(self) -> None:
        self._file: IO[str] | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Not in `setup`: ModelCheckpoint resolves its folder in its own `setup`, which runs last.
        if trainer.is_global_zero:
            self._file = acquire(Path(checkpoint_dir(trainer)))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None


def acquire(folder: Path) -> IO[str]:
    """Lock ``folder`` for this process, or raise `CheckpointError` naming the process holding it."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 -- held open until `teardown`
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise CheckpointError(
            f"checkpoint folder {folder} is in use by another fit (pid {holder}); two fits there would overwrite each "
            "other's checkpoints: give this one its own --checkpoint.dirpath, or wait for the other to end"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
