"""The Boltzmann policy π(a|s) ∝ exp(Q(s, a)/α) and its greedy version (paper eq. 1)."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from sqil_lightning.learners.policies import boltzmann_policy


class _FixedQ(torch.nn.Module):
    def __init__(self, q: list[float]) -> None:
        super().__init__()
        self.q = torch.tensor(q)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.q.expand(*observation.shape[:-1], len(self.q))


def test_greedy_policy_takes_argmax_q():
    policy = boltzmann_policy(_FixedQ([0.1, 0.9, 0.3]), temperature=10.0, greedy=True)
    td = policy(TensorDict({"observation": torch.zeros(5, 2)}, batch_size=[5]))
    assert td["action"].tolist() == [1] * 5


def test_boltzmann_policy_samples_actions_with_softmax_q_over_alpha_frequencies():
    torch.manual_seed(0)
    q, alpha, n = [0.0, 0.5, 1.0], 0.5, 20_000
    policy = boltzmann_policy(_FixedQ(q), temperature=alpha, greedy=False)
    actions = policy(TensorDict({"observation": torch.zeros(n, 2)}, batch_size=[n]))["action"]
    assert actions.shape == (n,)
    frequencies = torch.bincount(actions, minlength=3).float() / n
    expected = torch.softmax(torch.tensor(q) / alpha, dim=0)
    torch.testing.assert_close(frequencies, expected, atol=0.015, rtol=0)


def test_policy_acts_with_the_live_q_network_not_a_copy():
    q_net = _FixedQ([1.0, 0.0])
    policy = boltzmann_policy(q_net, temperature=0.1, greedy=True)
    obs = TensorDict({"observation": torch.zeros(1, 2)}, batch_size=[1])
    assert policy(obs.clone())["action"].item() == 0
    q_net.q = torch.tensor([0.0, 1.0])
    assert policy(obs.clone())["action"].item() == 1


def test_the_acting_temperature_sets_the_rollouts_alpha_and_leaves_the_soft_value_alone():
    from sqil_lightning import SoftQSQIL

    torch.manual_seed(0)
    learner = SoftQSQIL(observation_shape=(2,), action_space={"n": 3}, hidden_sizes=(4,), temperature=0.1, acting_temperature=2.0)
    learner.q_network = _FixedQ([0.0, 0.5, 1.0])
    n = 20_000
    actions = learner.policy(deterministic=False)(TensorDict({"observation": torch.zeros(n, 2)}, batch_size=[n]))["action"]
    frequencies = torch.bincount(actions, minlength=3).float() / n
    torch.testing.assert_close(frequencies, torch.softmax(torch.tensor([0.0, 0.5, 1.0]) / 2.0, dim=0), atol=0.015, rtol=0)
    assert learner.policy(deterministic=True)(TensorDict({"observation": torch.zeros(1, 2)}, batch_size=[1]))["action"].item() == 2
    assert learner.hparams.temperature == 0.1  # V(s) = α·logsumexp(Q/α) keeps the soft value's α
    default = SoftQSQIL(observation_shape=(2,), action_space={"n": 3}, hidden_sizes=(4,), temperature=0.1)
    assert default.policy(deterministic=False).temperature == 0.1  # null: act with the soft value's α
