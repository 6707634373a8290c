"""The demonstration store used across the project.

A `DemoSet` holds whole expert episodes as flat transition arrays. On disk it is one `.npz`
file (numpy's zip of arrays) read with ``allow_pickle=False``, so loading a demo file never runs
code. The format (version 1):

=====================  ==================  ====================================================
key                    shape / dtype        meaning
=====================  ==================  ====================================================
``observations``       [N, *obs] float32    observation the expert acted on; uint8 [N, C, H, W] for images
``actions``            [N] int64 (discrete) action taken; [N, *act] float32 for Box actions
``next_observations``  [N, *obs] float32    observation after the step (same dtype as ``observations``)
``rewards``            [N] float32          the env's reward, kept for reference; SQIL ignores it
``terminated``         [N] bool             the step ended the episode in a true terminal state
``truncated``          [N] bool             the step hit a time limit (the state is not terminal)
``episode_ids``        [N] int64            0, 0, …, 1, 1, …: the episode each row belongs to
``metadata``           [] str (JSON)        ``{"format_version", "env_id", "source", …}``
=====================  ==================  ====================================================

Every episode's rows are contiguous and its last row is terminated or truncated.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from sqil_lightning.errors import UserInputError

FORMAT_VERSION = 1
ARRAY_KEYS = (
    "observations",
    "actions",
    "next_observations",
    "rewards",
    "terminated",
    "truncated",
    "episode_ids",
)


class DemoError(UserInputError):
    """Base class of every demo problem a user can fix; the CLI prints it as one line."""


class DemoFileNotFoundError(DemoError):
    """The demo file does not exist."""


class DemoFormatError(DemoError):
    """The file is not a valid demo file of this project's format."""


class DemoSpecMismatchError(DemoError):
    """The demos do not fit the environment's observation or action space."""


@dataclass
class EnvSpaces:
    """What demos must agree with: observation shape and the action space.

    ``num_actions`` is set for discrete actions; ``action_low``/``action_high`` for Box actions.
    """

    observation_shape: tuple[int, ...]
    num_actions: int | None = None
    action_shape: tuple[int, ...] = ()
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None


@dataclass
class DemoSet:
    """Expert episodes as flat transition arrays (see the module docstring for the contract)."""

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_ids: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_shapes(source="<in memory>")

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(np.unique(self.episode_ids).size)

    def steps_into_episode(self) -> np.ndarray:
        """Each row's step count since its episode's first row (0 there)."""
        starts = np.flatnonzero(np.r_[True, np.diff(self.episode_ids) != 0])
        lengths = np.diff(np.r_[starts, len(self)])
        return np.arange(len(self)) - np.repeat(starts, lengths)

    def episode_returns(self) -> np.ndarray:
        """The env return of each episode, in episode order."""
        _, inverse = np.unique(self.episode_ids, return_inverse=True)
        return np.bincount(inverse, weights=self.rewards)

    def save(self, path: str | Path) -> Path:
        """Write the demos as a version-1 `.npz` file; returns the path written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {**self.metadata, "format_version": FORMAT_VERSION}
        # A per-process name: parallel runs (a study) may write the same missing demo file at once.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(
            tmp, **{k: getattr(self, k) for k in ARRAY_KEYS}, metadata=np.array(json.dumps(metadata))
        )
        tmp.replace(path)  # atomic: a crash mid-write never leaves a half-written demo file
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DemoSet":
        """Read and validate a demo file; raises a `DemoError` that names the file and key.

        The shapes and sizes the zip declares are checked before any array is inflated, so a small
        file that would inflate to gigabytes (a zip bomb) is refused without being read.
        """
        path = Path(path)
        if not path.is_file():
            raise DemoFileNotFoundError(
                f"demo file {path} does not exist: generate it with "
                f"`python -m sqil_lightning demos generate --expert NAME --out {path}` "
                "or set `data.demo_expert` so `fit` generates it"
            )
        try:
            declared = declared_arrays(path)
            _check_layout(str(path), declared)
            _check_fits_in_memory(path, declared)
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except DemoError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError):
            # numpy's own message suggests loading unsafely; demo files never need that.
            raise DemoFormatError(
                f"demo file {path} is not a readable .npz demo file: it must be a zip of plain numpy arrays "
                "(objects and pickles are refused, so loading never runs code); see the demo format in the README"
            ) from None
        try:
            metadata = json.loads(str(arrays["metadata"]))
        except json.JSONDecodeError:
            metadata = None
        if not isinstance(metadata, dict):
            raise DemoFormatError(f"demo file {path}: key 'metadata' must hold a JSON object (a string like '{{\"format_version\": 1}}')")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise DemoFormatError(
                f"demo file {path}: format_version {version!r} is not supported (this version reads {FORMAT_VERSION})"
            )
        demos = cls.__new__(cls)
        for key in ARRAY_KEYS:
            setattr(demos, key, arrays[key])
        demos.metadata = metadata
        demos._check_shapes(source=str(path))
        return demos

    def _check_shapes(self, source: str) -> None:
        _check_layout(source, {key: (getattr(self, key).shape, getattr(self, key).dtype) for key in ARRAY_KEYS})
        _check_episodes(source, self.episode_ids, self.terminated | self.truncated)
        for key in ("observations", "actions", "next_observations"):
            _check_finite(source, key, getattr(self, key), self.episode_ids)

    def check_against(self, spaces: EnvSpaces, env_id: str, source: str = "demos") -> None:
        """Raise `DemoSpecMismatchError` if these demos cannot come from an env with ``spaces``."""
        obs_shape = tuple(self.observations.shape[1:])
        if obs_shape != tuple(spaces.observation_shape):
            raise DemoSpecMismatchError(
                f"{source}: observations have shape {obs_shape} but {env_id} observes {tuple(spaces.observation_shape)}"
            )
        if spaces.discrete:
            if self.actions.ndim != 1 or not np.issubdtype(self.actions.dtype, np.integer):
                raise DemoSpecMismatchError(
                    f"{source}: {env_id} has {spaces.num_actions} discrete actions, so 'actions' must be a "
                    f"1-d integer array; got shape {self.actions.shape} dtype {self.actions.dtype}"
                )
            low, high = int(self.actions.min()), int(self.actions.max())
            if low < 0 or high >= spaces.num_actions:
                raise DemoSpecMismatchError(
                    f"{source}: actions range over [{low}, {high}] but {env_id} accepts 0..{spaces.num_actions - 1}"
                )
            return
        act_shape = tuple(self.actions.shape[1:])
        if act_shape != tuple(spaces.action_shape):
            raise DemoSpecMismatchError(
                f"{source}: actions have shape {act_shape} but {env_id} takes {tuple(spaces.action_shape)}"
            )
        tol = 1e-5
        if (self.actions < spaces.action_low - tol).any() or (self.actions > spaces.action_high + tol).any():
            raise DemoSpecMismatchError(
                f"{source}: actions leave the bounds [{spaces.action_low}, {spaces.action_high}] of {env_id}"
            )

    def to_tensordict(self) -> TensorDict:
        """The demos as a flat TensorDict in TorchRL's transition layout (`next` nested)."""
        n = len(self)
        terminated = torch.as_tensor(self.terminated).reshape(n, 1)
        truncated = torch.as_tensor(self.truncated).reshape(n, 1)
        actions = torch.as_tensor(self.actions)
        # Image frames stay uint8 (a quarter of the replay's bytes); the networks scale them.
        obs_dtype = torch.uint8 if self.observations.dtype == np.uint8 else torch.float32
        return TensorDict(
            {
                "observation": torch.as_tensor(self.observations, dtype=obs_dtype),
                "action": actions.long() if self.actions.dtype.kind in "iu" else actions.float(),
                "next": {
                    "observation": torch.as_tensor(self.next_observations, dtype=obs_dtype),
                    "reward": torch.as_tensor(self.rewards, dtype=torch.float32).reshape(n, 1),
                    "terminated": terminated,
                    "truncated": truncated,
                    "done": terminated | truncated,
                },
            },
            batch_size=[n],
        )

    @classmethod
    def from_rollouts(cls, rollouts: list[TensorDict], metadata: dict[str, Any]) -> "DemoSet":
        """Build demos from TorchRL rollouts, one TensorDict of shape [T] per episode."""
        episode_ids = np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in enumerate(rollouts)])
        cat = torch.cat(rollouts, dim=0)
        obs_dtype = np.uint8 if cat["observation"].dtype == torch.uint8 else np.float32
        return cls(
            observations=cat["observation"].numpy().astype(obs_dtype),
            actions=cat["action"].numpy(),
            next_observations=cat["next", "observation"].numpy().astype(obs_dtype),
            rewards=cat["next", "reward"].reshape(-1).numpy().astype(np.float32),
            terminated=cat["next", "terminated"].reshape(-1).numpy().astype(bool),
            truncated=cat["next", "truncated"].reshape(-1).numpy().astype(bool),
            episode_ids=episode_ids,
            metadata=metadata,
        )


def declared_arrays(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and dtype of every array in the .npz at ``path``, read from the array headers alone.

    Each entry's uncompressed size, as the zip directory declares it, must be exactly its header
    plus the bytes its shape and dtype need: anything else is a corrupt or crafted file.
    Raises `DemoFormatError`; zip and header errors propagate as `zipfile.BadZipFile`/`ValueError`.
    """
    declared = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
                header_bytes = member.tell()
            if dtype.hasobject:
                raise ValueError(f"{key} holds Python objects")  # refused like numpy's allow_pickle=False
            needed = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if info.file_size != needed:
                raise DemoFormatError(
                    f"demo file {path}: entry '{info.filename}' declares {info.file_size} bytes but its header "
                    f"(shape {shape}, dtype {dtype}) needs {needed}; the file is corrupt or was crafted"
                )
            declared[key] = (tuple(shape), dtype)
    missing = [k for k in (*ARRAY_KEYS, "metadata") if k not in declared]
    if missing:
        raise DemoFormatError(
            f"demo file {path} lacks the key(s) {missing}; a demo file holds {list(ARRAY_KEYS)} and 'metadata'"
        )
    return declared


def _check_layout(source: str, declared: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Row counts, shapes and dtypes of the demo arrays (from their headers or the arrays themselves)."""
    obs_shape, obs_dtype = declared["observations"]
    n = obs_shape[0] if obs_shape else -1
    for key in ARRAY_KEYS:
        shape = declared[key][0]
        if not shape or shape[0] != n:
            raise DemoFormatError(f"demo file {source}: key '{key}' has shape {shape}, expected {n} rows like 'observations'")
    if n == 0:
        raise DemoFormatError(f"demo file {source} holds no transitions")
    next_shape = declared["next_observations"][0]
    if next_shape != obs_shape:
        raise DemoFormatError(
            f"demo file {source}: 'next_observations' shape {next_shape} differs from 'observations' shape {obs_shape}"
        )
    for key in ("terminated", "truncated"):
        if declared[key][1] != np.bool_:
            raise DemoFormatError(f"demo file {source}: key '{key}' must be bool, got {declared[key][1]}")
    for key in ("observations", "next_observations"):
        dtype = declared[key][1]
        if not (np.issubdtype(dtype, np.floating) or dtype == np.uint8):
            raise DemoFormatError(f"demo file {source}: '{key}' must be floating point or uint8 (images), got {dtype}")


def _check_fits_in_memory(path: Path, declared: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Refuse a file whose arrays, once inflated, need more memory than the machine has free."""
    needed = sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in declared.values())
    available = _available_memory()
    if available is not None and needed > available:
        raise DemoFormatError(
            f"demo file {path} inflates to {needed / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB of memory "
            "is available; use fewer demo episodes or a machine with more memory"
        )


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_episodes(source: str, episode_ids: np.ndarray, done: np.ndarray) -> None:
    """Each episode's rows are contiguous and its last row is terminated or truncated."""
    starts = np.r_[0, np.flatnonzero(np.diff(episode_ids) != 0) + 1]
    _, first_block = np.unique(episode_ids[starts], return_index=True)
    if first_block.size != starts.size:
        repeat = int(np.setdiff1d(np.arange(starts.size), first_block)[0])  # the first block of an id seen before
        row = int(starts[repeat])
        raise DemoFormatError(
            f"demo file {source}: the rows of episode {int(episode_ids[row])} are not contiguous (it starts again at "
            f"row {row}); each episode's rows must follow one another in 'episode_ids'"
        )
    if not done[-1] or not done[starts[1:] - 1].all():
        raise DemoFormatError(
            f"demo file {source}: every episode must end with a terminated or truncated row "
            "(check 'episode_ids', 'terminated' and 'truncated')"
        )


def _check_finite(source: str, key: str, values: np.ndarray, episode_ids: np.ndarray) -> None:
    """Refuse NaN or infinite values, naming the first bad row (else the loss diverges when it is drawn)."""
    if not np.issubdtype(values.dtype, np.floating):
        return  # integers (discrete actions, uint8 frames) cannot hold NaN or inf
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DemoFormatError(
            f"demo file {source}: key '{key}' holds NaN or inf at row {row} (episode {int(episode_ids[row])}); "
            "demo values must be finite: re-record the demos or drop that episode"
        )
