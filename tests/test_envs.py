"""Env factory, LunarLander's success signal, the scripted expert and policy evaluation."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule

from sqil_lightning.envs.make import EnvIdError, env_spaces, has_success, make_env
from sqil_lightning.envs.policy_evaluation import evaluate_policy
from sqil_lightning.demos.experts import make_expert
from sqil_lightning.errors import ConfigError


class _ConstantAction(torch.nn.Module):
    def __init__(self, action: int) -> None:
        super().__init__()
        self.action = action

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return torch.full(observation.shape[:-1], self.action, dtype=torch.long)


def _constant_policy(action: int) -> TensorDictModule:
    return TensorDictModule(_ConstantAction(action), in_keys=["observation"], out_keys=["action"])


def test_scripted_expert_lands_successfully_most_of_the_time():
    result = evaluate_policy("LunarLander-v3", make_expert("lunarlander_scripted"), episodes=5, seed=0)
    assert result.success_rate >= 0.6
    assert result.mean_return > 200  # gymnasium's "solved" threshold
    assert len(result.successes) == len(result.returns) == len(result.lengths) == 5


def test_doing_nothing_never_counts_as_success_and_ends_by_termination():
    env = make_env("LunarLander-v3")
    for i in range(3):
        start = env.reset(seed=100 + i)
        rollout = env.rollout(1000, _constant_policy(0), auto_reset=False, tensordict=start)
        assert rollout["next", "terminated"][-1].item()  # crashed, not timed out
        assert not rollout["next", "truncated"][-1].item()
        assert not rollout["next", "success"].any()
    env.close()


def test_evaluate_policy_reports_zero_success_for_a_falling_lander():
    result = evaluate_policy("LunarLander-v3", _constant_policy(0), episodes=2, seed=5)
    assert result.success_rate == 0.0
    assert result.mean_return < 0
    summary = result.summary()
    assert summary["episodes"] == 2 and summary["seed"] == 5


def test_evaluation_is_reproducible_for_a_given_seed():
    a = evaluate_policy("LunarLander-v3", _constant_policy(2), episodes=2, seed=7)
    b = evaluate_policy("LunarLander-v3", _constant_policy(2), episodes=2, seed=7)
    assert a.returns == b.returns and a.lengths == b.lengths


def test_unknown_env_id_raises_env_id_error_listing_valid_ids():
    with pytest.raises(EnvIdError) as err:
        make_env("NotAnEnv-v0")
    message = str(err.value)
    assert "NotAnEnv-v0" in message
    assert "LunarLander-v3" in message and "Pendulum-v1" in message  # the tasks the project ships


def test_env_spaces_reads_discrete_and_box_spaces():
    lunar = env_spaces("LunarLander-v3")
    assert lunar.observation_shape == (8,) and lunar.num_actions == 4 and lunar.discrete
    pendulum = env_spaces("Pendulum-v1")
    assert not pendulum.discrete and pendulum.action_shape == (1,)
    assert pendulum.action_low.tolist() == [-2.0] and pendulum.action_high.tolist() == [2.0]


def test_success_is_defined_only_for_lunarlander():
    assert has_success("LunarLander-v3")
    assert not has_success("CartPole-v1")


def test_make_env_gives_integer_actions_and_a_summed_episode_reward():
    env = make_env("CartPole-v1", seed=0)
    rollout = env.rollout(5, _constant_policy(1))
    assert rollout["action"].dtype == torch.int64
    rewards = rollout["next", "reward"].squeeze(-1)
    torch.testing.assert_close(rollout["next", "episode_reward"].squeeze(-1), rewards.cumsum(0))
    env.close()


def test_unknown_expert_is_a_config_error_listing_the_experts():
    with pytest.raises(ConfigError, match="lunarlander_scripted"):
        make_expert("nobody")


def test_evaluation_video_shows_the_start_and_every_step():
    from sqil_lightning.envs.video import render_episode

    expert = make_expert("lunarlander_scripted")
    frames = render_episode("LunarLander-v3", expert, seed=3)
    length = evaluate_policy("LunarLander-v3", expert, episodes=1, seed=3).lengths[0]
    # One frame for the reset and one after each step, the last (the landed lander) included.
    assert frames.shape == (length + 1, 400, 600, 3)
