"""Evaluate a policy for whole episodes: return, success rate, episode length."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase

from sqil_lightning.envs import has_success, make_env


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


def evaluate_policy(
    env_id: str, policy: TensorDictModuleBase, episodes: int, seed: int, max_steps: int = 100_000
) -> EvalResult:
    """Run ``episodes`` episodes; episode i starts from ``reset(seed=seed + i)``.

    Seeding each reset makes the start states identical for every policy evaluated with the same
    ``seed``, so an agent and the expert are compared on the same episodes.
    """
    env = make_env(env_id)
    returns, lengths, successes = [], [], []
    track_success = has_success(env_id)
    with torch.no_grad():
        for i in range(episodes):
            start = env.reset(seed=seed + i)
            rollout = env.rollout(max_steps, policy, auto_reset=False, tensordict=start)
            returns.append(float(rollout["next", "episode_reward"][-1].item()))
            lengths.append(int(rollout.shape[0]))
            if track_success:
                successes.append(bool(rollout["next", "success"][-1].item()))
    env.close()
    return EvalResult(returns=returns, lengths=lengths, successes=successes, seed=seed)
