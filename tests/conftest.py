"""Shared fixtures: small hand-made demo sets and one real (tiny) LunarLander demo file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# The suite runs on a 2-core machine next to other work: one intra-op thread is fastest for
# these tiny networks and keeps timings stable.
torch.set_num_threads(1)


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
    from sqil_lightning.experts import generate_expert_demos

    path = tmp_path_factory.mktemp("demos") / "ll_scripted_2.npz"
    generate_expert_demos("lunarlander_scripted", episodes=2, seed=0, out=path)
    return path
