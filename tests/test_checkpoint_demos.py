"""Demos recorded from a trained checkpoint: `demos record`, the datamodule's `demo_expert: *.ckpt`,
and the errors that say how to get an expert or demos."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from sqil_lightning import SACSQIL, DemoSet, SQILDataModule
from sqil_lightning.commands import main
from sqil_lightning.envs.make import env_spaces
from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.checkpoint import load_learner

from fit_process import REPO

PENDULUM_CONFIG = REPO / "conf" / "pendulum.yaml"
EPISODES, EPISODE_STEPS = 2, 200  # Pendulum-v1 truncates at 200 steps and never terminates


def _record(checkpoint: Path, out: Path, *extra: str) -> str:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        main(["demos", "record", "--checkpoint", str(checkpoint), "--episodes", str(EPISODES), "--out", str(out), *extra])
    return stdout.getvalue()


@pytest.fixture(scope="module")
def recorded(pendulum_expert, tmp_path_factory):
    """The expert's demos recorded through the CLI, once with its mean action and once sampling."""
    tmp_path = tmp_path_factory.mktemp("recorded")
    checkpoint = pendulum_expert["checkpoint"]
    torch.manual_seed(0)
    stdout = _record(checkpoint, tmp_path / "d.npz")
    _record(checkpoint, tmp_path / "stochastic.npz", "--stochastic")
    return {
        "checkpoint": checkpoint,
        "deterministic": DemoSet.load(tmp_path / "d.npz"),
        "stochastic": DemoSet.load(tmp_path / "stochastic.npz"),
        "stdout": stdout,
        "out": tmp_path / "d.npz",
    }


def _mean_actions(checkpoint: Path, observations: np.ndarray) -> np.ndarray:
    learner, _ = load_learner(checkpoint)
    obs = TensorDict({"observation": torch.as_tensor(observations)}, batch_size=[len(observations)])
    with torch.no_grad():
        return learner.policy(deterministic=True)(obs)["action"].numpy()


# --- `demos record` ----------------------------------------------------------------------------------


def test_record_writes_whole_episodes_of_the_checkpoints_env(recorded):
    demos = recorded["deterministic"]
    assert demos.num_episodes == EPISODES and len(demos) == EPISODES * EPISODE_STEPS
    assert np.bincount(demos.episode_ids).tolist() == [EPISODE_STEPS] * EPISODES
    assert demos.truncated.sum() == EPISODES and not demos.terminated.any()
    assert demos.metadata["env_id"] == "Pendulum-v1"
    assert demos.metadata["episodes"] == EPISODES
    assert str(recorded["checkpoint"]) in demos.metadata["source"] and "mean_action" in demos.metadata["source"]
    demos.check_against(env_spaces("Pendulum-v1"), "Pendulum-v1")
    assert f"wrote {recorded['out']}" in recorded["stdout"]


def test_recorded_episode_i_starts_from_reset_seed_i(recorded):
    demos = recorded["deterministic"]
    env = gym.make("Pendulum-v1")
    for i in range(EPISODES):
        first_obs, _ = env.reset(seed=i)
        np.testing.assert_allclose(demos.observations[demos.episode_ids == i][0], first_obs, rtol=0, atol=1e-6)
    env.close()


def test_recorded_actions_are_the_checkpoints_mean_actions(recorded):
    demos = recorded["deterministic"]
    checkpoint = recorded["checkpoint"]
    learner, env_id = load_learner(checkpoint)
    assert isinstance(learner, SACSQIL) and env_id == "Pendulum-v1"
    # The learner really holds the checkpoint's trained weights, not a fresh initialisation.
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in learner.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    np.testing.assert_allclose(demos.actions, _mean_actions(checkpoint, demos.observations), rtol=0, atol=1e-6)
    assert demos.actions.std() > 1e-3  # a policy that acts, not a constant


def test_record_stochastic_samples_actions_instead_of_the_mean(recorded):
    demos = recorded["stochastic"]
    assert len(demos) == EPISODES * EPISODE_STEPS
    assert "stochastic" in demos.metadata["source"]
    demos.check_against(env_spaces("Pendulum-v1"), "Pendulum-v1")
    gap = np.abs(demos.actions - _mean_actions(recorded["checkpoint"], demos.observations))
    assert gap.max() > 0.1
    # Same start states, different actions: the trajectories part.
    assert not np.allclose(demos.actions, recorded["deterministic"].actions)


def test_record_from_a_missing_checkpoint_is_a_one_line_error_saying_how_to_train_one(tmp_path, expect_user_error):
    missing = tmp_path / "nope" / "last.ckpt"
    out = tmp_path / "d.npz"
    line = expect_user_error(["demos", "record", "--checkpoint", str(missing), "--episodes", "1", "--out", str(out)])
    assert str(missing) in line and "does not exist" in line
    assert "--config conf/experts/<task>.yaml" in line  # how to train an expert
    assert not out.exists()


# --- the datamodule's `demo_expert: *.ckpt` ----------------------------------------------------------


def test_datamodule_records_the_missing_demo_file_from_the_checkpoint(recorded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datamodule = SQILDataModule(env_id="Pendulum-v1", demo_expert=str(recorded["checkpoint"]), demo_path=None, demo_episodes=EPISODES)
    path = datamodule.demos.file
    assert not path.is_absolute() and path.parts[0] == "demos" and path.suffix == ".npz"
    assert f"_{EPISODES}ep_seed0" in path.name
    assert not path.exists()
    datamodule.prepare_data()
    demos = DemoSet.load(tmp_path / path)
    assert demos.num_episodes == EPISODES and demos.metadata["env_id"] == "Pendulum-v1"
    # The same checkpoint, seeds and mean action as `demos record`: the same demos.
    np.testing.assert_array_equal(demos.actions, recorded["deterministic"].actions)
    np.testing.assert_array_equal(demos.observations, recorded["deterministic"].observations)


def test_datamodule_rejects_a_checkpoint_trained_on_another_env(recorded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datamodule = SQILDataModule(env_id="MountainCarContinuous-v0", demo_expert=str(recorded["checkpoint"]))
    with pytest.raises(ConfigError) as err:
        datamodule.prepare_data()
    assert "Pendulum-v1" in str(err.value) and "MountainCarContinuous-v0" in str(err.value)
    assert not (tmp_path / "demos").exists()


# --- how to get demos ----------------------------------------------------------------------------------


def test_missing_demo_file_without_a_source_is_a_one_line_error_listing_the_ways_to_get_demos(
    tmp_path, monkeypatch, expect_user_error
):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nope.npz"
    line = expect_user_error(
        [
            "fit", "--config", str(PENDULUM_CONFIG),
            "--data.demo_expert", "null", "--data.demo_minari", "null", "--data.demo_path", str(missing),
            "--trainer.enable_progress_bar", "false",
        ]
    )
    assert str(missing) in line
    for way in ("data.demo_expert", "demos record", "data.demo_minari", "demos generate"):
        assert way in line
    assert not missing.exists()


def test_sqil_without_any_demo_source_is_a_config_error_listing_the_ways_to_get_demos():
    with pytest.raises(ConfigError) as err:
        SQILDataModule(env_id="Pendulum-v1", reward="sqil", demo_path=None, demo_expert=None, demo_minari=None)
    message = str(err.value)
    for way in ("data.demo_path", "data.demo_expert", "demos record", "data.demo_minari"):
        assert way in message
