"""A training env's half-played episode survives a checkpoint: saved as RNG state + actions, replayed."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from sqil_lightning.envs.make import make_gym_env
from sqil_lightning.data.resumable_episode import ResumableEpisode


def _random_actions(env, n: int, seed: int) -> list:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


def _as_collector_gives(action):
    # TorchRL's GymWrapper hands discrete actions over as python ints and Box actions as float32 arrays.
    return int(action) if np.ndim(action) == 0 else np.asarray(action, dtype=np.float32)


@pytest.mark.parametrize("env_id", ["LunarLander-v3", "Pendulum-v1"])
def test_replayed_episode_continues_exactly_like_the_original(env_id):
    original = ResumableEpisode(make_gym_env(env_id))
    original.reset(seed=3)
    original.reset()  # the saved episode need not be the first: its start comes from the RNG state
    before, after = (_random_actions(original, 60, seed) for seed in (0, 1))
    rewards_before = [original.step(_as_collector_gives(a))[1] for a in before[:30]]
    # Through torch.save/load(weights_only=True), as in a replay snapshot.
    stored = io.BytesIO()
    torch.save(original.episode_state(), stored)
    stored.seek(0)
    episode = torch.load(stored, weights_only=True)

    resumed = ResumableEpisode(make_gym_env(env_id))
    resumed.resume(episode)
    obs, _ = resumed.reset(seed=12345)  # the pending episode wins over a new start
    assert resumed.replayed_return == pytest.approx(sum(rewards_before))
    for action in after[:20]:
        expected = original.step(_as_collector_gives(action))
        got = resumed.step(_as_collector_gives(action))
        np.testing.assert_array_equal(got[0], expected[0])  # bit-identical observations
        assert got[1:4] == expected[1:4]
        if expected[2] or expected[3]:
            break
    # After the replay the wrapper records the continued episode, so it can be saved again.
    assert resumed.episode_state()["actions"].shape[0] == original.episode_state()["actions"].shape[0]


def test_a_fresh_episode_after_reset_is_saved_without_actions():
    env = ResumableEpisode(make_gym_env("LunarLander-v3"))
    env.reset(seed=0)
    env.step(0)
    env.reset()
    state = env.episode_state()
    assert state["actions"] is None and state["reset_kwargs"] == {}
    first_obs = env.unwrapped.lander.position.copy()
    resumed = ResumableEpisode(make_gym_env("LunarLander-v3"))
    resumed.resume(state)
    resumed.reset()
    assert resumed.unwrapped.lander.position == first_obs
