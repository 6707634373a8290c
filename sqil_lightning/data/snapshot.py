"""Snapshots of a rank's online replay partition, RNG states and run position, written beside its checkpoints.

A Lightning checkpoint holds no replay buffer, so a resumed run would lose the agent's experience.
The `ReplaySnapshot` callback writes the agent's rows as memory-mapped tensors (TorchRL's storage
``dumps``: raw arrays and JSON metadata, no pickles) into
``<checkpoint dir>/replay/<run id>/step<N>-rank<R>/`` with the buffer's write cursor, the RNG
states, the training env's current episode and the batches drawn but not yet trained on; the
checkpoint stores only the run id and the step. A run's snapshots sit in a folder of their own,
so runs that share a checkpoint folder never prune each other's; each snapshot records its run
id and step, and a resume refuses one that is not its checkpoint's. Loading refuses pickled
fields. The demo partition is not copied: it is rebuilt from the demo file.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import ReplayBuffer

from sqil_lightning.checkpoint_io import CheckpointError
from sqil_lightning.errors import WriteFault

# Snapshots of the newest steps kept: ModelCheckpoint's latest periodic file and last.ckpt.
SNAPSHOTS_KEPT = 2
_NAME = re.compile(r"step(\d+)-rank(\d+)(\.partial)?")
# Room left free beyond a snapshot's own bytes (file-system metadata, the JSON beside the arrays).
FREE_SPACE_MARGIN_BYTES = 2**20


def snapshot_dir(checkpoint_folder: Path, run_id: str | None, step: int, rank: int) -> Path:
    """Where rank ``rank`` of run ``run_id`` keeps its replay snapshot of gradient step ``step``,
    beside the checkpoints in ``checkpoint_folder`` (``run_id`` None: the layout before run ids)."""
    replay = Path(checkpoint_folder) / "replay"
    return (replay / run_id if run_id is not None else replay) / f"step{step}-rank{rank}"


def checkpoint_snapshot(checkpoint_path: str | Path, datamodule_state: dict[str, Any], rank: int) -> Path:
    """The snapshot folder of rank ``rank`` that belongs to the checkpoint at ``checkpoint_path``,
    whose data module state is ``datamodule_state``: beside that file, never a path recorded in it."""
    return snapshot_dir(Path(checkpoint_path).parent, datamodule_state.get("run_id"), datamodule_state["replay_step"], rank)


@dataclass
class RunPosition:
    """Where a rank's run stands beyond its replay rows: what an exact resume needs besides the weights.

    Attributes:
        episode: the training env's current episode (`ResumableEpisode.episode_state`).
        untrained: batches already drawn from the replay but not trained on yet
            (`ReplayBatches.untrained`), in order.
        rng: the torch, numpy and python RNG states (filled in by `load_snapshot`; `set_rng_states`
            applies them).
    """

    episode: dict[str, Any] | None = None
    untrained: list[TensorDictBase] = field(default_factory=list)
    rng: dict[str, Any] | None = None


def save_snapshot(buffer: ReplayBuffer, directory: Path, position: RunPosition, run_id: str, step: int) -> None:
    """Write ``buffer``'s rows and cursor, the RNG states, ``position`` and its owner (``run_id``,
    ``step``) to ``directory``, atomically; first check the disk has room, since writing into
    memory-mapped files on a full disk kills the process (SIGBUS) instead of raising."""
    _check_free_space(directory.parent, _snapshot_bytes(buffer, position))
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if len(buffer):  # empty during demo pretraining: nothing collected yet
        buffer.storage.dumps(partial / "storage")
    if position.untrained:
        torch.stack(position.untrained).memmap(partial / "untrained")
    state = {"writer": buffer.writer.state_dict(), "rng": _rng_states(), "episode": position.episode, "run_id": run_id, "step": step}
    torch.save(state, partial / "state.pt")
    if directory.exists():  # the same step saved twice (a periodic checkpoint and last.ckpt)
        shutil.rmtree(directory)
    os.replace(partial, directory)
    _prune(directory.parent, rank=int(_NAME.fullmatch(directory.name).group(2)))


def load_snapshot(buffer: ReplayBuffer, directory: Path, run_id: str | None = None, step: int | None = None) -> RunPosition:
    """Restore ``buffer``'s rows and cursor from a snapshot folder; return the position and RNG states.

    ``run_id`` and ``step`` are the checkpoint's: a snapshot of another run or step is refused, and
    so is one holding a pickled field (loading a pickle can run code; snapshots hold none).
    """
    if not (directory / "state.pt").is_file():
        raise CheckpointError(
            f"the checkpoint's replay snapshot {directory} is missing; the agent's experience cannot be "
            "restored (copy the checkpoint folder with its replay/ subfolder, or start a new run)"
        )
    try:
        state = torch.load(directory / "state.pt", weights_only=True)  # tensors and numbers only
    except Exception:  # noqa: BLE001 -- any unreadable or unsafe state file is refused the same way
        raise CheckpointError(
            f"replay snapshot {directory / 'state.pt'} is not readable or holds more than tensors and plain "
            "values; copy the checkpoint folder again with its replay/ subfolder, or start a new run"
        ) from None
    owner = (state.get("run_id"), state.get("step"))
    if run_id is not None and owner != (run_id, step):
        raise CheckpointError(
            f"replay snapshot {directory} belongs to run {owner[0]} at step {owner[1]}, not to the checkpoint being "
            f"resumed (run {run_id}, step {step}); a checkpoint folder mixed with another run's: copy the checkpoint "
            "with its own replay/ subfolder, or start a new run"
        )
    untrained = directory / "untrained"
    batches = list(_load_memmap_without_pickles(untrained).clone().unbind(0)) if untrained.exists() else []
    if (directory / "storage").exists():
        _load_memmap_without_pickles(directory / "storage")  # checked only; TorchRL's `loads` reads the same files
        buffer.storage.loads(directory / "storage")
        buffer.writer.load_state_dict(state["writer"])
    return RunPosition(episode=state.get("episode"), untrained=batches, rng=state["rng"])


def _load_memmap_without_pickles(path: Path) -> TensorDictBase:
    """The memory-mapped TensorDict at ``path``, refusing pickled fields (tensordict's own check)."""
    try:
        return TensorDict.load_memmap(path, allow_pickle=False)
    except RuntimeError as err:
        if "pickle" not in str(err).lower():
            raise
        raise CheckpointError(
            f"replay snapshot {path} holds a pickled field; it is refused because loading it could run code "
            "(snapshots written by sqil_lightning hold raw arrays only). Start a new run, or copy the original checkpoint folder"
        ) from None


def _snapshot_bytes(buffer: ReplayBuffer, position: RunPosition) -> int:
    """Bytes a snapshot writes: the storage's whole capacity (its files are allocated in full) and
    the untrained batches."""
    rows = buffer.storage[0].bytes() * buffer.storage.max_size if len(buffer) else 0
    untrained = sum(batch.bytes() for batch in position.untrained)
    return rows + untrained + FREE_SPACE_MARGIN_BYTES


def _check_free_space(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WriteFault(
            f"no space left for the replay snapshot under {folder}: it needs {needed / 2**20:.1f} MiB and "
            f"{free / 2**20:.1f} MiB are free; free space there or point checkpoint.dirpath at a disk with room"
        )


def _prune(run_folder: Path, rank: int) -> None:
    """Delete this run's snapshots older than the `SNAPSHOTS_KEPT` newest steps, and ``rank``'s
    ``.partial`` folders that a crash mid-save left behind (its current one was just renamed)."""
    named = [(m, path) for path in run_folder.iterdir() if (m := _NAME.fullmatch(path.name))]
    keep = sorted({int(m.group(1)) for m, _ in named if not m.group(3)})[-SNAPSHOTS_KEPT:]
    for m, path in named:
        stale_partial = m.group(3) and int(m.group(2)) == rank
        if stale_partial or (not m.group(3) and int(m.group(1)) not in keep):
            shutil.rmtree(path, ignore_errors=True)


def _rng_states() -> dict:
    """torch, numpy and python RNG states as tensors and numbers (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    """Apply RNG states saved by `save_snapshot` (`RunPosition.rng`)."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    random.setstate(states["python"])
