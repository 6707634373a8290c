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

from sqil_lightning.demos.errors import DemoError, DemoFileNotFoundError, DemoFormatError, DemoSpecMismatchError
from sqil_lightning.demos.format import (
    ARRAY_KEYS,
    FORMAT_VERSION,
    check_episodes,
    check_finite,
    check_fits_in_memory,
    check_layout,
    declared_arrays,
)
from sqil_lightning.envs.spaces import EnvSpaces


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
            check_layout(str(path), declared)
            check_fits_in_memory(path, declared)
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
        check_layout(source, {key: (getattr(self, key).shape, getattr(self, key).dtype) for key in ARRAY_KEYS})
        check_episodes(source, self.episode_ids, self.terminated | self.truncated)
        for key in ("observations", "actions", "next_observations"):
            check_finite(source, key, getattr(self, key), self.episode_ids)

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
