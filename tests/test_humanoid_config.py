"""The headline config, conf/humanoid.yaml (paper sec. 5.4), fits end to end on a CPU once demos exist:
`python -m sqil_lightning fit --config conf/humanoid.yaml --trainer.max_steps 200` with a small
synthetic demo file, overriding only paths and what keeps the run short."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sqil_lightning import DemoSet
from sqil_lightning.commands import main
from sqil_lightning.envs.make import env_spaces

from fit_process import REPO

HUMANOID_CONFIG = REPO / "conf" / "humanoid.yaml"
ENV_ID = "Humanoid-v5"
MAX_STEPS, INITIAL_FRAMES, FINAL_EPISODES = 200, 500, 2

pytestmark = pytest.mark.slow  # 200 SAC updates of the config's [256, 256] networks, batches of 256


def _humanoid_demo_file(path: Path, episodes: int = 2, steps: int = 5) -> Path:
    """Synthetic demos with Humanoid-v5's shapes and bounds: one fall (terminated), one time limit."""
    spaces = env_spaces(ENV_ID)
    rng = np.random.default_rng(0)
    n = episodes * steps
    ends = np.arange(steps - 1, n, steps)
    terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    terminated[ends[0]] = True
    truncated[ends[1:]] = True
    DemoSet(
        observations=rng.normal(size=(n, *spaces.observation_shape)).astype(np.float32),
        actions=rng.uniform(spaces.action_low, spaces.action_high, size=(n, *spaces.action_shape)).astype(np.float32),
        next_observations=rng.normal(size=(n, *spaces.observation_shape)).astype(np.float32),
        rewards=np.ones(n, dtype=np.float32),
        terminated=terminated,
        truncated=truncated,
        episode_ids=np.repeat(np.arange(episodes), steps),
        metadata={"env_id": ENV_ID, "source": "synthetic"},
    ).save(path)
    return path


@pytest.fixture(scope="module")
def humanoid_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("humanoid")
    demo_path = _humanoid_demo_file(tmp_path / "humanoid_demos.npz")
    args = [
        "fit",
        "--config", str(HUMANOID_CONFIG),
        "--trainer.max_steps", str(MAX_STEPS),
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--checkpoint.dirpath", str(tmp_path / "checkpoints"),
        "--evaluation.final_episodes", str(FINAL_EPISODES),
        "--data.initial_env_steps", str(INITIAL_FRAMES),
        "--data.demo_path", str(demo_path),
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            main(args)
    return {
        "tmp_path": tmp_path,
        "demo_path": demo_path,
        "log_dir": tmp_path / "logs" / "humanoid" / "version_0",
        "checkpoint": tmp_path / "checkpoints" / "last.ckpt",
        "stdout": stdout.getvalue(),
    }


def test_humanoid_fit_reaches_max_steps_and_writes_the_final_mean_action_result(humanoid_run):
    result = json.loads((humanoid_run["log_dir"] / "result.json").read_text())
    assert result["env_id"] == ENV_ID
    assert result["global_step"] == MAX_STEPS
    assert result["env_steps"] == INITIAL_FRAMES + MAX_STEPS  # 4 env steps every 4 gradient steps
    mean_action = result["mean_action"]
    assert mean_action["episodes"] == FINAL_EPISODES
    assert len(mean_action["per_episode"]["returns"]) == FINAL_EPISODES
    assert "mean_action: mean return" in humanoid_run["stdout"]


def test_humanoid_checkpoint_holds_the_papers_sac_sqil_settings(humanoid_run):
    checkpoint = torch.load(humanoid_run["checkpoint"], map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == MAX_STEPS
    assert checkpoint["sqil_learner_class"] == "sqil_lightning.learners.sac.SACSQIL"
    model = checkpoint["hyper_parameters"]
    assert list(model["hidden_sizes"]) == [256, 256]
    assert model["lambda_samp"] == 1.0
    spaces = env_spaces(ENV_ID)
    assert tuple(model["observation_shape"]) == spaces.observation_shape
    assert model["action_space"] == {"low": spaces.action_low.tolist(), "high": spaces.action_high.tolist()}
    data = checkpoint["datamodule_hyper_parameters"]
    assert data["env_id"] == ENV_ID and data["reward"] == "sqil"
    assert data["demo_reward"] == 5.0
    assert data["demo_path"] == str(humanoid_run["demo_path"])
    # 256x256 networks on Humanoid's observation and 17 actions (the actor emits μ and σ for each).
    state = checkpoint["state_dict"]
    obs_dim, act_dim = spaces.observation_shape[0], spaces.action_shape[0]
    assert state["actor.module.0.module.0.0.weight"].shape == (256, obs_dim)
    assert state["actor.module.0.module.0.2.weight"].shape == (256, 256)
    assert state["actor.module.0.module.0.4.weight"].shape == (2 * act_dim, 256)
    assert state["sac_loss.qvalue_network_params.module.0.weight"].shape == (2, 256, obs_dim + act_dim)


def test_humanoid_fit_writes_everything_under_the_given_dirs(humanoid_run):
    tmp_path = humanoid_run["tmp_path"]
    # No expert checkpoint was needed (the demo file exists) and no demo file was made.
    assert not (tmp_path / "experts").exists() and not (tmp_path / "demos").exists()
    assert humanoid_run["checkpoint"].is_file()
    assert (humanoid_run["log_dir"] / "metrics.csv").is_file()
