"""Shared fixtures: small hand-made demo sets and one real (tiny) LunarLander demo file."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from fit_process import REPO

# The suite runs on a 2-core machine next to other work: one intra-op thread is fastest for
# these tiny networks and keeps timings stable.
torch.set_num_threads(1)
# Fits on the task configs (wandb.mode auto) log to CSV only; tests/test_wandb_logging.py turns
# W&B on where it is under test. Subprocess fits inherit this.
os.environ["WANDB_MODE"] = "disabled"


def demo_arrays(
    episode_lengths=(4, 3), obs_dim: int = 8, num_actions: int = 4, seed: int = 0
) -> dict[str, np.ndarray]:
    """Arrays of a valid demo set: contiguous episodes, each ending in a terminated row."""
    rng = np.random.default_rng(seed)
    n = sum(episode_lengths)
    episode_ids = np.concatenate([np.full(t, i, dtype=np.int64) for i, t in enumerate(episode_lengths)])
    terminated = np.zeros(n, dtype=bool)
    terminated[np.cumsum(episode_lengths) - 1] = True
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.integers(0, num_actions, size=n).astype(np.int64),
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminated": terminated,
        "truncated": np.zeros(n, dtype=bool),
        "episode_ids": episode_ids,
    }


@pytest.fixture
def make_demo_arrays():
    return demo_arrays


@pytest.fixture(scope="session")
def lunarlander_demo_file(tmp_path_factory):
    """Two scripted-expert LunarLander episodes saved as a demo file (generated once per session)."""
    from sqil_lightning.demos.experts import generate_expert_demos

    path = tmp_path_factory.mktemp("demos") / "ll_scripted_2.npz"
    generate_expert_demos("lunarlander_scripted", episodes=2, seed=0, out=path)
    return path


@pytest.fixture
def expect_user_error(capsys):
    """Run the CLI in-process on ``args``; it must exit with status 2 and one `error:` line (no traceback).

    Returns that line.
    """
    from sqil_lightning.commands import main

    def run(args: list[str]) -> str:
        capsys.readouterr()
        try:
            main(args)
        except SystemExit as exit_info:
            code = exit_info.code
        except Exception as err:  # noqa: BLE001 -- a traceback reaching the user is the bug this guards against
            pytest.fail(f"the CLI let {type(err).__name__} escape instead of a one-line error: {err}")
        else:
            pytest.fail("the CLI accepted invalid input")
        assert code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        error_lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1, err
        return error_lines[0]

    return run


# A 40-step plain-SAC Pendulum expert (reward source `env`): conf/pendulum.yaml with its expert
# overlay, shrunk so the fit takes a few seconds. Shared by the reward-source and recording tests.
PENDULUM_EXPERT_STEPS, PENDULUM_EXPERT_INITIAL_FRAMES = 40, 64


def pendulum_expert_fit(tmp_path):
    """Train the tiny expert in ``tmp_path``; the fitted CLI object and paths."""
    from sqil_lightning.cli import lightning_main

    tmp_path.mkdir(parents=True, exist_ok=True)
    args = [
        "fit",
        "--config", str(REPO / "conf" / "pendulum.yaml"),
        "--config", str(REPO / "conf" / "experts" / "pendulum.yaml"),
        "--trainer.max_steps", str(PENDULUM_EXPERT_STEPS),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--checkpoint.dirpath", str(tmp_path / "expert"),
        "--data.initial_env_steps", str(PENDULUM_EXPERT_INITIAL_FRAMES),
        "--data.batch_size", "32",
        "--evaluation.final_episodes", "1",
        "--evaluation.every_n_steps", "1000",
        "--model.hidden_sizes", "[16,16]",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        cli = lightning_main(args, run=True)
    return {
        "cli": cli,
        "tmp_path": tmp_path,
        "checkpoint": tmp_path / "expert" / "last.ckpt",
        "steps": PENDULUM_EXPERT_STEPS,
        "initial_env_steps": PENDULUM_EXPERT_INITIAL_FRAMES,
    }


@pytest.fixture(scope="session")
def pendulum_expert(tmp_path_factory):
    """The tiny expert, trained once per session in its own tmp dir."""
    return pendulum_expert_fit(tmp_path_factory.mktemp("pendulum_expert"))
