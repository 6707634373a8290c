"""Snapshots of a rank's online replay partition, RNG states and run position, written beside its checkpoints.

A Lightning checkpoint holds no replay buffer, so a resumed run would lose the agent's experience.
The datamodule's ``state_dict`` writes the agent's rows as memory-mapped tensors (TorchRL's storage
``dumps``: raw arrays and JSON metadata, no pickles) into ``<checkpoint dir>/replay/step<N>-rank<R>/``
with the buffer's write cursor, the RNG states, the training env's current episode and the batches
drawn but not yet trained on; the checkpoint stores only where they are.
The demo partition is not copied: it is rebuilt from the demo file.
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

from sqil_lightning.errors import ConfigError

# Snapshots of the newest steps kept: ModelCheckpoint's latest periodic file and last.ckpt.
SNAPSHOTS_KEPT = 2
_NAME = re.compile(r"step(\d+)-rank(\d+)")


def snapshot_dir(replay_root: Path, step: int, rank: int) -> Path:
    """Where rank ``rank`` keeps its replay snapshot of gradient step ``step``."""
    return replay_root / f"step{step}-rank{rank}"


@dataclass
class RunPosition:
    """Where a rank's run stands beyond its replay rows: what an exact resume needs besides the weights.

    Attributes:
        episode: the training env's current episode (`ResumableEpisode.episode_state`).
        untrained: batches already drawn from the replay but not trained on yet
            (`BalancedBatches.untrained`), in order.
        rng: the torch, numpy and python RNG states (filled in by `load_snapshot`; `set_rng_states`
            applies them).
    """

    episode: dict[str, Any] | None = None
    untrained: list[TensorDictBase] = field(default_factory=list)
    rng: dict[str, Any] | None = None


def save_snapshot(buffer: ReplayBuffer, directory: Path, position: RunPosition) -> None:
    """Write ``buffer``'s rows and cursor, the RNG states and ``position`` to ``directory``, atomically."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    buffer.storage.dumps(partial / "storage")
    if position.untrained:
        torch.stack(position.untrained).memmap(partial / "untrained")
    state = {"writer": buffer.writer.state_dict(), "rng": _rng_states(), "episode": position.episode}
    torch.save(state, partial / "state.pt")
    if directory.exists():  # the same step saved twice (a periodic checkpoint and last.ckpt)
        shutil.rmtree(directory)
    os.replace(partial, directory)
    _prune(directory.parent)


def load_snapshot(buffer: ReplayBuffer, directory: Path) -> RunPosition:
    """Restore ``buffer``'s rows and cursor from a snapshot folder; return the position and RNG states."""
    if not (directory / "state.pt").is_file():
        raise ConfigError(
            f"the checkpoint's replay snapshot {directory} is missing; the agent's experience cannot be "
            "restored (copy the checkpoint folder with its replay/ subfolder, or start a new run)"
        )
    buffer.storage.loads(directory / "storage")
    state = torch.load(directory / "state.pt", weights_only=True)  # tensors and numbers only
    buffer.writer.load_state_dict(state["writer"])
    untrained = directory / "untrained"
    batches = list(TensorDict.load_memmap(untrained).clone().unbind(0)) if untrained.exists() else []
    return RunPosition(episode=state.get("episode"), untrained=batches, rng=state["rng"])


def _prune(replay_root: Path) -> None:
    """Delete snapshots older than the `SNAPSHOTS_KEPT` newest steps."""
    named = [(int(m.group(1)), path) for path in replay_root.iterdir() if (m := _NAME.fullmatch(path.name))]
    keep = sorted({step for step, _ in named})[-SNAPSHOTS_KEPT:]
    for step, path in named:
        if step not in keep:
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
