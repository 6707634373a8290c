"""Evaluate a policy for whole episodes: return, success rate, episode length."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from sqil_lightning.envs.make import attach_simulator, make_env, make_gym_env
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.envs.start_states import StartShift


@dataclass
class EvalResult:
    """Per-episode outcomes of one evaluation; ``successes`` is empty when the env defines none."""

    returns: list[float]
    lengths: list[int]
    successes: list[bool]
    seed: int

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths))

    @property
    def success_rate(self) -> float | None:
        return float(np.mean(self.successes)) if self.successes else None

    def summary(self) -> dict:
        """Means and counts, the form written to result files and logs."""
        return {
            "episodes": len(self.returns),
            "seed": self.seed,
            "mean_return": self.mean_return,
            "std_return": float(np.std(self.returns)),
            "success_rate": self.success_rate,
            "mean_length": self.mean_length,
        }

    def to_dict(self) -> dict:
        return {**self.summary(), "per_episode": asdict(self)}


@dataclass
class EpisodeOutcome:
    """One episode: its env return, length and, where the env defines it, success."""

    episode_return: float
    length: int
    success: bool | None


def run_episode(env: EnvBase, policy: TensorDictModuleBase, seed: int, max_steps: int = 100_000) -> EpisodeOutcome:
    """Play one whole episode of ``env`` (made by `make_env`) from ``reset(seed=seed)``."""
    with torch.no_grad():
        start = env.reset(seed=seed)
        rollout = env.rollout(max_steps, policy, auto_reset=False, tensordict=start)
    last = rollout[-1]
    success = bool(last["next", "success"].item()) if ("next", "success") in last.keys(True) else None
    return EpisodeOutcome(float(last["next", "episode_reward"].item()), int(rollout.shape[0]), success)


def evaluate_policy(
    env_id: str,
    policy: TensorDictModuleBase,
    episodes: int,
    seed: int,
    max_steps: int = 100_000,
    start_shift: StartShift | None = None,
    pixels: PixelPipeline | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes; episode i starts from ``reset(seed=seed + i)`` (moved by
    ``start_shift`` when given), observed through ``pixels`` for image tasks.

    Seeding each reset makes the start states identical for every policy evaluated with the same
    ``seed``, so an agent and the expert are compared on the same episodes.
    """
    gym_env = make_gym_env(env_id, start_shift=start_shift)
    attach_simulator(policy, gym_env)
    env = make_env(env_id, gym_env=gym_env, pixels=pixels)
    outcomes = [run_episode(env, policy, seed + i, max_steps) for i in range(episodes)]
    env.close()
    return EvalResult(
        returns=[o.episode_return for o in outcomes],
        lengths=[o.length for o in outcomes],
        successes=[o.success for o in outcomes if o.success is not None],
        seed=seed,
    )
