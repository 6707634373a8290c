"""Checkpoint files: read without running code, written whole or not at all."""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sqil_lightning.errors import UserInputError, WriteFault

# Write failures that are the disk's or the folder's, not a bug: they end a run with one line.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# Below this many free bytes a failed write is reported as a full disk.
NEARLY_FULL_BYTES = 16 * 2**20


class CheckpointError(UserInputError):
    """A checkpoint file is missing, unreadable, unsafe, or belongs to another task or run."""


def read_checkpoint(path: str | Path, role: str = "checkpoint") -> dict[str, Any]:
    """The checkpoint at ``path`` loaded on the CPU with ``weights_only=True``: tensors and plain values only.

    A file that needs any other object is refused, since unpickling an object can run code;
    checkpoints written by this project never need one. ``role`` names the file in errors
    (e.g. ``--ckpt_path``, ``expert checkpoint``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{role} {path} does not exist; give the path of a .ckpt written by `python -m sqil_lightning fit`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            name = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            raise CheckpointError(
                f"{role} {path} holds an object other than tensors and plain values ({name.group(1) if name else 'a Python object'}); "
                "it is refused because loading it could run code. Checkpoints written by sqil_lightning hold none: "
                "use one written by `python -m sqil_lightning fit`"
            ) from None
        raise _unreadable(path, role) from None
    except (EOFError, OSError, RuntimeError, ValueError):
        raise _unreadable(path, role) from None


def _unreadable(path: Path, role: str) -> CheckpointError:
    return CheckpointError(
        f"{role} {path} is not a readable checkpoint (empty or truncated: a copy that did not finish, or a disk "
        f"that filled up); use another checkpoint from {path.parent} or start a new run without --ckpt_path"
    )


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
        except (OSError, RuntimeError) as err:  # torch's writer reports a full disk as a RuntimeError
            raise WriteFault(f"could not write checkpoint {target}: {_reason(target.parent, err)}; {_KEPT}") from None
        finally:
            partial.unlink(missing_ok=True)


_KEPT = "the checkpoints already written are kept (resume from them with --ckpt_path last)"


def _reason(folder: Path, err: BaseException) -> str:
    """Why a write under ``folder`` failed, in words: a full disk, a read-only folder, or the error."""
    code = getattr(err, "errno", None)
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{folder} is not writable: point trainer.default_root_dir, the logger's save_dir and checkpoint.dirpath at a writable folder"
    # torch's writer reports a full disk without an errno: the free space tells.
    if code in (errno.ENOSPC, errno.EDQUOT) or shutil.disk_usage(folder).free < NEARLY_FULL_BYTES:
        return f"no space left on the device of {folder}: free space there or point the run at a disk with room"
    return str(err).splitlines()[0]


def write_fault_line(err: OSError) -> str:
    """The one line for an `OSError` in `WRITE_ERRNOS` raised while a run writes its files."""
    path = Path(err.filename) if err.filename else Path.cwd()
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return f"could not write {err.filename or 'a file of the run'}: {_reason(folder, err)}; {_KEPT}"
