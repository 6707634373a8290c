"""Minari datasets as demos: conversion, lookup by id or path, and the errors a user sees."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

minari = pytest.importorskip("minari")

import gymnasium as gym
from minari.data_collector import EpisodeBuffer

from sqil_lightning.demos.store import (
    DemoError,
    DemoFileNotFoundError,
    DemoFormatError,
    DemoSpecMismatchError,
)
from sqil_lightning.envs.make import env_spaces
from sqil_lightning.demos.minari_datasets import load_minari_demos

DATASET_ID = "test/pendulum/random-v0"
# Two full episodes around one the collector stopped early, neither terminated nor truncated:
# unequal lengths catch episode-boundary mistakes, and the short one is marked truncated on load.
EPISODE_STEPS = (20, 7, 20)


def _step_pendulum(seed: int, steps: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One seeded episode of random actions: T + 1 observations and T of everything else."""
    env = gym.make("Pendulum-v1", max_episode_steps=20)
    obs, _ = env.reset(seed=seed)
    episode = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
    for _ in range(steps):
        action = rng.uniform(-2.0, 2.0, size=(1,)).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(
            ("observations", "actions", "rewards", "terminations", "truncations"),
            (obs, action, reward, terminated, truncated),
        ):
            episode[key].append(value)
    env.close()
    return {key: np.asarray(value) for key, value in episode.items()}


def _create_dataset(dataset_id: str, episodes: list[dict], data_format: str, **spaces) -> None:
    # minari's DataCollector needs jax (`minari[create]`) only to append steps; writing whole
    # episodes as buffers stores the same on-disk format without it.
    buffers = [EpisodeBuffer(id=i, **episode) for i, episode in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nags about author, description, …
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=gym.make("Pendulum-v1", max_episode_steps=20),
            data_format=data_format,
            **spaces,
        )


@pytest.fixture(params=["hdf5", "arrow"])
def data_format(request) -> str:
    pytest.importorskip("h5py" if request.param == "hdf5" else "pyarrow")
    return request.param


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari_root"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def pendulum_episodes(minari_root, data_format) -> list[dict[str, np.ndarray]]:
    """The stepped episodes, also stored as the local Minari dataset `DATASET_ID`."""
    rng = np.random.default_rng(0)
    episodes = [_step_pendulum(seed, steps, rng) for seed, steps in enumerate(EPISODE_STEPS)]
    _create_dataset(DATASET_ID, episodes, data_format)
    return episodes


def _assert_matches_episodes(demos, episodes: list[dict[str, np.ndarray]]) -> None:
    n = sum(EPISODE_STEPS)
    assert len(demos) == n and demos.num_episodes == len(EPISODE_STEPS)
    np.testing.assert_array_equal(demos.observations, np.concatenate([e["observations"][:-1] for e in episodes]))
    np.testing.assert_array_equal(demos.next_observations, np.concatenate([e["observations"][1:] for e in episodes]))
    np.testing.assert_array_equal(demos.actions, np.concatenate([e["actions"] for e in episodes]))
    np.testing.assert_allclose(demos.rewards, np.concatenate([e["rewards"] for e in episodes]), rtol=1e-6)
    assert demos.observations.dtype == np.float32 and demos.actions.dtype == np.float32
    assert demos.actions.shape == (n, 1)
    np.testing.assert_array_equal(demos.episode_ids, np.repeat(np.arange(len(EPISODE_STEPS)), EPISODE_STEPS))
    # Inside an episode the next observation is the following row's observation.
    same_episode = demos.episode_ids[1:] == demos.episode_ids[:-1]
    np.testing.assert_array_equal(demos.next_observations[:-1][same_episode], demos.observations[1:][same_episode])
    # Truncated exactly at each episode's last step, the early-stopped one included; never terminated.
    last_steps = np.cumsum(EPISODE_STEPS) - 1
    np.testing.assert_array_equal(np.flatnonzero(demos.truncated), last_steps)
    assert not demos.terminated.any()


def test_loads_dataset_by_id_as_the_stepped_transitions(pendulum_episodes):
    demos = load_minari_demos(DATASET_ID)
    _assert_matches_episodes(demos, pendulum_episodes)
    assert demos.metadata == {
        "source": "minari",
        "dataset_id": DATASET_ID,
        "env_id": "Pendulum-v1",
        "episodes": len(EPISODE_STEPS),
    }


def test_loads_dataset_by_path_of_its_folder_or_data_folder(pendulum_episodes, minari_root, monkeypatch, tmp_path):
    dataset_dir = minari_root / DATASET_ID
    # Another root proves the path, not the id under MINARI_DATASETS_PATH, finds the data.
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "other_root"))
    for path in (dataset_dir, dataset_dir / "data"):
        demos = load_minari_demos(str(path))
        _assert_matches_episodes(demos, pendulum_episodes)
        assert demos.metadata["dataset_id"] == DATASET_ID


def test_loaded_demos_fit_pendulum_and_are_rejected_by_another_env(pendulum_episodes):
    demos = load_minari_demos(DATASET_ID)
    source = f"Minari dataset {DATASET_ID}"
    demos.check_against(env_spaces("Pendulum-v1"), "Pendulum-v1", source=source)
    for other in ("MountainCarContinuous-v0", "LunarLander-v3"):
        with pytest.raises(DemoSpecMismatchError) as err:
            demos.check_against(env_spaces(other), other, source=source)
        assert DATASET_ID in str(err.value) and other in str(err.value)


def test_unknown_id_names_it_the_root_and_the_local_datasets(pendulum_episodes, minari_root):
    with pytest.raises(DemoFileNotFoundError) as err:
        load_minari_demos("test/pendulum/expert-v3")
    message = str(err.value)
    assert "test/pendulum/expert-v3" in message
    assert str(minari_root) in message
    assert DATASET_ID in message  # the dataset that does exist is listed
    assert not (minari_root / "test/pendulum/expert-v3").exists()  # nothing was downloaded


def test_missing_minari_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)  # `import minari` now raises ImportError
    with pytest.raises(DemoError, match=r'pip install -e "\.\[minari\]"'):
        load_minari_demos(DATASET_ID)


def test_unsupported_observation_space_names_dataset_and_space(minari_root):
    pytest.importorskip("h5py")
    episode = _step_pendulum(seed=0, steps=3, rng=np.random.default_rng(0))
    episode["observations"] = {"state": episode["observations"]}
    dict_space = gym.spaces.Dict({"state": gym.spaces.Box(-8.0, 8.0, shape=(3,), dtype=np.float32)})
    _create_dataset("test/pendulum/dict-v0", [episode], "hdf5", observation_space=dict_space)
    with pytest.raises(DemoFormatError) as err:
        load_minari_demos("test/pendulum/dict-v0")
    message = str(err.value)
    assert "test/pendulum/dict-v0" in message and "Dict(" in message and "Box and Discrete" in message


def test_unreadable_dataset_is_one_clear_demo_error(pendulum_episodes, minari_root):
    (minari_root / DATASET_ID / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(DemoFormatError, match=r"Minari dataset 'test/pendulum/random-v0' cannot be read"):
        load_minari_demos(DATASET_ID)


def test_directory_without_a_dataset_is_rejected(tmp_path):
    with pytest.raises(DemoFormatError, match="not a Minari dataset directory"):
        load_minari_demos(str(tmp_path))
