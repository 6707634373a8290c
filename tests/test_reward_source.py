"""The reward source: ``data.reward: env`` trains plain SAC on the env's own reward with no demos,
``sqil`` relabels the agent's rows to 0 next to demo rows carrying r."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sqil_lightning import SACSQIL, DemoSet, SQILDataModule
from sqil_lightning.envs.make import env_spaces

from fit_process import REPO

PENDULUM_CONFIG = REPO / "conf" / "pendulum.yaml"


def pendulum_reward(observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """gymnasium's Pendulum-v1 reward, -(θ² + 0.1·θ̇² + 0.001·u²), from the observation acted on."""
    cos, sin, theta_dot = observation.double().unbind(-1)
    theta = torch.atan2(sin, cos)  # in [-π, π], like gymnasium's angle_normalize
    u = action.double().squeeze(-1).clamp(-2.0, 2.0)
    return -(theta**2 + 0.1 * theta_dot**2 + 0.001 * u**2)


def _pendulum_demo_file(path: Path, episodes: int = 2, steps: int = 5) -> Path:
    """A synthetic demo file with Pendulum-v1's shapes; its env rewards are not SQIL's concern."""
    rng = np.random.default_rng(0)
    n = episodes * steps
    truncated = np.zeros(n, dtype=bool)
    truncated[steps - 1 :: steps] = True
    DemoSet(
        observations=rng.normal(size=(n, 3)).astype(np.float32),
        actions=rng.uniform(-2, 2, size=(n, 1)).astype(np.float32),
        next_observations=rng.normal(size=(n, 3)).astype(np.float32),
        rewards=np.full(n, -3.0, dtype=np.float32),
        terminated=np.zeros(n, dtype=bool),
        truncated=truncated,
        episode_ids=np.repeat(np.arange(episodes), steps),
        metadata={"env_id": "Pendulum-v1", "source": "synthetic"},
    ).save(path)
    return path


def _started(datamodule: SQILDataModule):
    """What Lightning's fit does before the first step: prepare, set up, and build the batch stream.

    A stand-in trainer hands the datamodule a tiny SAC learner whose stochastic policy collects.
    """
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    learner = SACSQIL(observation_shape=datamodule.observation_shape, action_space=datamodule.action_space, hidden_sizes=(16,))
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1, global_step=0)
    datamodule.connect(learner)
    return datamodule.train_dataloader()


# Small, fast Pendulum runs: the settings both reward sources share.
SMALL = dict(env_id="Pendulum-v1", demo_expert=None, batch_size=16, initial_env_steps=48, rollout_env_steps=8, sample_chunk=4)


@pytest.fixture
def env_reward_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datamodule = SQILDataModule(reward="env", **SMALL)
    batches = _started(datamodule)
    yield datamodule, batches
    datamodule.teardown("fit")


@pytest.fixture
def sqil_reward_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datamodule = SQILDataModule(
        reward="sqil",
        demo_path=str(_pendulum_demo_file(tmp_path / "pendulum_demos.npz")),
        demo_reward=1.5,
        absorbing_reward=True,  # Pendulum never terminates: every demo row gets r itself
        **SMALL,
    )
    batches = _started(datamodule)
    yield datamodule, batches
    datamodule.teardown("fit")


# --- the datamodule -----------------------------------------------------------------------------------


def test_env_reward_keeps_the_envs_reward_on_every_row(env_reward_data):
    datamodule, _ = env_reward_data
    rows = datamodule.experience.buffer[:]
    assert len(rows) == datamodule.experience.env_steps == 48
    assert not rows["is_demo"].any()
    reward = rows["next", "reward"].squeeze(-1).double()
    torch.testing.assert_close(reward, pendulum_reward(rows["observation"], rows["action"]), rtol=1e-5, atol=1e-4)
    assert (reward <= 0).all() and (reward < 0).any()


def test_env_reward_batches_hold_only_the_agents_rows(env_reward_data):
    _, batches = env_reward_data
    for [batch] in itertools.islice(iter(batches), 10):
        assert batch.batch_size == (16,)
        assert not batch["is_demo"].any()
        reward = batch["next", "reward"].squeeze(-1).double()
        torch.testing.assert_close(reward, pendulum_reward(batch["observation"], batch["action"]), rtol=1e-5, atol=1e-4)


def test_env_reward_needs_no_demo_file_and_writes_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing.npz"
    datamodule = SQILDataModule(env_id="Pendulum-v1", reward="env", demo_path=str(missing), demo_expert=None)
    assert not datamodule.uses_demos
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.connect(SACSQIL(observation_shape=datamodule.observation_shape, action_space=datamodule.action_space, hidden_sizes=(16,)))
    assert not missing.exists() and not (tmp_path / "demos").exists()
    assert len(datamodule.experience.buffer) == 0


def test_sqil_reward_zeroes_the_agents_rows_that_the_env_paid_for(sqil_reward_data):
    datamodule, _ = sqil_reward_data
    online = datamodule.experience.buffer.online_buffer[:]
    assert len(online) == datamodule.experience.env_steps == 48
    assert not online["is_demo"].any()
    assert (online["next", "reward"] == 0).all()
    # The env did pay for these steps: Pendulum's reward is negative almost everywhere.
    assert (pendulum_reward(online["observation"], online["action"]) < 0).any()


def test_sqil_reward_batches_are_balanced_with_r_on_demo_rows(sqil_reward_data):
    _, batches = sqil_reward_data
    for [batch] in itertools.islice(iter(batches), 10):
        is_demo = batch["is_demo"]
        assert int(is_demo.sum()) == 8
        reward = batch["next", "reward"].squeeze(-1)
        assert (reward[is_demo] == 1.5).all()
        assert (reward[~is_demo] == 0).all()


# --- a short plain-SAC fit through the CLI (the session's `pendulum_expert`) ----------------------------


def test_env_reward_fit_writes_no_demo_file(pendulum_expert):
    tmp_path = pendulum_expert["tmp_path"]
    assert pendulum_expert["cli"].datamodule.hparams.reward == "env"
    assert pendulum_expert["checkpoint"].is_file()
    assert not any(tmp_path.rglob("*.npz"))


def test_env_reward_fit_fills_the_replay_with_the_envs_reward(pendulum_expert):
    cli = pendulum_expert["cli"]
    assert cli.trainer.global_step == pendulum_expert["steps"]
    rows = cli.datamodule.experience.buffer[:]
    # initial env steps, then 4 env steps every 4 gradient steps.
    assert len(rows) == cli.datamodule.experience.env_steps == pendulum_expert["initial_env_steps"] + pendulum_expert["steps"]
    assert not rows["is_demo"].any()
    reward = rows["next", "reward"].squeeze(-1).double()
    torch.testing.assert_close(reward, pendulum_reward(rows["observation"], rows["action"]), rtol=1e-5, atol=1e-4)
    assert (reward <= 0).all() and (reward < 0).any()


def test_env_reward_checkpoint_records_the_reward_source_and_env(pendulum_expert):
    checkpoint = torch.load(pendulum_expert["checkpoint"], map_location="cpu", weights_only=False)
    assert checkpoint["datamodule_hyper_parameters"]["reward"] == "env"
    assert checkpoint["datamodule_hyper_parameters"]["env_id"] == "Pendulum-v1"
    assert checkpoint["sqil_learner_class"] == "sqil_lightning.learners.sac.SACSQIL"
    assert checkpoint["state_dict"]["actor.module.0.module.0.0.weight"].shape == (16, env_spaces("Pendulum-v1").observation_shape[0])


# --- user errors -------------------------------------------------------------------------------------


def test_unknown_reward_source_is_a_one_line_error_naming_the_key(tmp_path, monkeypatch, expect_user_error):
    monkeypatch.chdir(tmp_path)
    line = expect_user_error(["fit", "--config", str(PENDULUM_CONFIG), "--data.reward", "foo"])
    assert "data.reward" in line and "'foo'" in line
    assert "sqil" in line and "env" in line
