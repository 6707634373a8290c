"""Minari datasets as demos: read a local Minari dataset into a `DemoSet`.

Minari (the Farama Foundation's offline-RL dataset format) stores each episode with T + 1
observations (the reset observation, then one after each step) and T actions, rewards,
terminations and truncations. Every episode becomes T contiguous rows of a `DemoSet`:

=====================  ============================================================================
``DemoSet`` key        from the Minari episode
=====================  ============================================================================
``observations``       ``observations[:-1]`` as float32 (a Discrete observation is its index)
``next_observations``  ``observations[1:]`` as float32
``actions``            ``actions``: int64 [T] for Discrete actions, float32 [T, *act] for Box actions
``rewards``            ``rewards`` as float32
``terminated``         ``terminations``
``truncated``          ``truncations``; the last step is also marked truncated if it is not terminated
``episode_ids``        0, 1, … in the dataset's episode order
=====================  ============================================================================

The metadata records ``source: "minari"``, the ``dataset_id`` and, when the dataset stores an env
spec, its ``env_id``. Only Box and Discrete observation and action spaces are supported.

A dataset is named by its id in the local Minari root (``$MINARI_DATASETS_PATH``, else
``~/.minari/datasets``), e.g. ``mujoco/pendulum/expert-v0``, or by the path of its directory (the
folder that holds ``data/``, or ``data/`` itself). Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from sqil_lightning.demos.store import (
    DemoError,
    DemoFileNotFoundError,
    DemoFormatError,
    DemoSet,
)

if TYPE_CHECKING:
    from minari import EpisodeData, MinariDataset

INSTALL_HINT = 'pip install -e ".[minari]" (or pip install "minari[hdf5,arrow]")'
SUPPORTED_SPACES = (gym.spaces.Box, gym.spaces.Discrete)
MAX_LISTED_IDS = 10
# `MinariDataset(path)` opens a dataset's data/ folder: the folder that holds this file.
METADATA_FILE = "metadata.json"


def load_minari_demos(dataset: str) -> DemoSet:
    """All episodes of a local Minari dataset (an id or a directory) as a `DemoSet`.

    Raises `DemoError` when minari or its storage backend is missing, `DemoFileNotFoundError`
    when no such dataset is stored locally, and `DemoFormatError` when it cannot be read or has
    a space other than Box or Discrete.
    """
    minari = _import_minari()
    label = f"Minari dataset {dataset!r}"
    data_dir = _find_data_dir(minari, dataset)
    with _minari_errors(label):
        minari_dataset = minari.MinariDataset(data_dir)
        _check_space(minari_dataset.observation_space, "observation", label)
        _check_space(minari_dataset.action_space, "action", label)
        action_dtype = np.int64 if isinstance(minari_dataset.action_space, gym.spaces.Discrete) else np.float32
        episodes = list(minari_dataset.iterate_episodes())
        return _to_demo_set(episodes, action_dtype, _metadata(minari_dataset), label)


def _import_minari() -> ModuleType:
    # minari is an optional extra: import it only when a Minari dataset is asked for.
    try:
        import minari
    except ImportError as err:
        raise DemoError(f"reading Minari datasets needs the minari package ({err}): {INSTALL_HINT}") from None
    return minari


def _find_data_dir(minari: ModuleType, dataset: str) -> Path:
    """The folder to open: from a dataset directory if ``dataset`` is one, else from the local root."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        data_dir = _data_dir_in(path)
        if data_dir is None:
            raise DemoFormatError(
                f"{path} is not a Minari dataset directory: neither it nor its data/ folder holds {METADATA_FILE}"
            )
        return data_dir
    # minari resolves ids with this too, so MINARI_DATASETS_PATH and the default root apply alike.
    from minari.storage import get_dataset_path

    root = Path(get_dataset_path())
    data_dir = _data_dir_in(root / dataset)
    if data_dir is None:
        raise DemoFileNotFoundError(
            f"Minari dataset {dataset!r} not found: it is neither a directory nor a dataset id under the "
            f"local Minari root {root} (set MINARI_DATASETS_PATH to search another root). "
            f"Local datasets: {_local_ids(minari)}. Nothing is downloaded: fetch it with "
            f"`minari download {dataset}`"
        )
    return data_dir


def _data_dir_in(path: Path) -> Path | None:
    """The dataset's data/ folder when ``path`` is the dataset folder or that data/ folder itself."""
    for candidate in (path / "data", path):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    return None


def _local_ids(minari: ModuleType) -> str:
    """Up to `MAX_LISTED_IDS` local dataset ids, as a hint in the not-found message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # minari warns about each misconfigured dataset it skips
            ids = list(minari.list_local_datasets())
    except Exception as err:  # noqa: BLE001 - a folder named without -vN crashes minari; the list is only a hint
        return f"(minari could not list them: {type(err).__name__}: {err})"
    if not ids:
        return "none"
    more = f", … ({len(ids)} in all)" if len(ids) > MAX_LISTED_IDS else ""
    return ", ".join(ids[:MAX_LISTED_IDS]) + more


@contextlib.contextmanager
def _minari_errors(label: str) -> Iterator[None]:
    """Turn whatever minari or its backend raises into one `DemoError` line naming the dataset."""
    try:
        yield
    except DemoError:
        raise
    except ImportError as err:  # the dataset's storage backend (h5py or pyarrow) is not installed
        raise DemoError(f"{label} cannot be read: {err}; install the storage backends: {INSTALL_HINT}") from None
    except Exception as err:  # noqa: BLE001 - minari raises ValueError, KeyError, AssertionError, OSError, …
        raise DemoFormatError(f"{label} cannot be read: {type(err).__name__}: {err}") from None


def _check_space(space: gym.Space, kind: str, label: str) -> None:
    if not isinstance(space, SUPPORTED_SPACES):
        raise DemoFormatError(
            f"{label}: its {kind} space {space} is not supported; only Box and Discrete {kind} spaces can be demos"
        )


def _metadata(minari_dataset: MinariDataset) -> dict[str, Any]:
    metadata: dict[str, Any] = {"source": "minari", "dataset_id": minari_dataset.id}
    env_spec = minari_dataset.env_spec
    if env_spec is not None:  # datasets made from buffers without an env store no spec
        metadata["env_id"] = env_spec.id
    return metadata


def _to_demo_set(
    episodes: list[EpisodeData], action_dtype: type[np.generic], metadata: dict[str, Any], label: str
) -> DemoSet:
    # An episode with no step has no transition to contribute.
    rows = [_episode_rows(episode, action_dtype, label) for episode in episodes if len(episode) > 0]
    if not rows:
        raise DemoFormatError(f"{label} holds no transitions")
    arrays = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    arrays["episode_ids"] = np.concatenate([np.full(len(r["rewards"]), i, dtype=np.int64) for i, r in enumerate(rows)])
    try:
        return DemoSet(**arrays, metadata={**metadata, "episodes": len(rows)})
    except DemoFormatError as err:
        raise DemoFormatError(f"{label}: {err}") from None


def _episode_rows(episode: EpisodeData, action_dtype: type[np.generic], label: str) -> dict[str, np.ndarray]:
    """One episode's T transitions: T + 1 observations pair up as (obs[t], obs[t + 1])."""
    observations = np.asarray(episode.observations, dtype=np.float32)
    steps = len(episode)
    if observations.shape[0] != steps + 1:
        raise DemoFormatError(
            f"{label}: episode {episode.id} has {observations.shape[0]} observations for {steps} steps "
            "(Minari stores one more observation than steps)"
        )
    actions = np.asarray(episode.actions, dtype=action_dtype)
    terminated = np.asarray(episode.terminations, dtype=bool)
    truncated = np.asarray(episode.truncations, dtype=bool).copy()
    # Data that stops short of a terminal state was cut off: a truncation. minari's DataCollector
    # marks it so, datasets written from buffers need not, and every demo episode must end done.
    truncated[-1] |= not terminated[-1]
    return {
        "observations": observations[:-1],
        "actions": actions,
        "next_observations": observations[1:],
        "rewards": np.asarray(episode.rewards, dtype=np.float32),
        "terminated": terminated,
        "truncated": truncated,
    }
