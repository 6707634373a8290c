"""Which checkpoint `fit --ckpt_path …` continues, checked before anything reads it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from sqil_lightning.checkpoint_io import CheckpointError, read_checkpoint

_VERSION = re.compile(r"version_(\d+)")
# The checkpoints a run writes and may continue from: ModelCheckpoint's periodic files and last.ckpt
# (not FiniteLossGuard's nonfinite-step<N>.ckpt, whose parameters produced a NaN).
_RESUMABLE = re.compile(r"last\.ckpt|epoch=\d+-step=\d+\.ckpt")


def find_last_checkpoint(config: Any) -> Path:
    """The checkpoint `fit --ckpt_path last` continues: the newest run's own newest checkpoint.

    Lightning looks for ``last`` only in the new run's own folder, a fresh ``version_N``. The
    run to continue is the newest version folder (by its number, not by file times: another
    run still writing an older folder must not be continued instead) that holds a checkpoint,
    or ``checkpoint.dirpath`` when that is set. Within it: the newest of ``last.ckpt`` and the
    periodic ``epoch=…-step=….ckpt`` (a run killed before it wrote its first ``last.ckpt``).
    """
    if config.checkpoint.dirpath:
        folders = [Path(config.checkpoint.dirpath)]
    else:
        root = _logger_root(config)
        versions = [(int(m.group(1)), path) for path in _subfolders(root) if (m := _VERSION.fullmatch(path.name))]
        folders = [path / "checkpoints" for _, path in sorted(versions, reverse=True)]
    for folder in folders:
        newest = newest_checkpoint(folder)
        if newest is not None:
            return newest
    where = config.checkpoint.dirpath or _logger_root(config)
    raise CheckpointError(f"--ckpt_path last: no checkpoint under {where}; drop --ckpt_path to start a new run")


def newest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint a run can continue from in ``folder`` (``last.ckpt`` or a periodic one), if any."""
    candidates = [path for path in _files(folder) if _RESUMABLE.fullmatch(path.name)]
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None


def check_resumable(path: str | Path, env_id: str, action: str = "resuming from") -> dict[str, Any]:
    """Read ``path`` safely (`read_checkpoint`) and refuse a checkpoint of another task; say what
    is done with it (``action``: resuming from, evaluating)."""
    checkpoint = read_checkpoint(path, role="--ckpt_path")
    trained_on = checkpoint.get("datamodule_hyper_parameters", {}).get("env_id")
    if trained_on is not None and trained_on != env_id:
        raise CheckpointError(
            f"--ckpt_path {path} was trained on {trained_on}, not data.env_id = {env_id!r}; resume it with the config "
            f"it was trained with, or give a checkpoint of {env_id}"
        )
    rank_zero_info(f"{action} {path} (step {checkpoint.get('global_step')})")
    return checkpoint


def _logger_root(config: Any) -> Path:
    init = getattr(config.trainer.logger, "init_args", None)
    save_dir = getattr(init, "save_dir", None) if init is not None else None
    name = getattr(init, "name", None) if init is not None else None
    return Path(save_dir) / (name or "") if save_dir else Path(config.trainer.default_root_dir or ".")


def _subfolders(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.is_dir()] if folder.is_dir() else []


def _files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.is_file()] if folder.is_dir() else []
