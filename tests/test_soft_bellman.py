"""Soft value, soft Bellman target, the SQIL loss and the module's training step (paper eqs. 1, 2, 16)."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from sqil_lightning import SoftQSQIL
from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.soft_bellman import soft_bellman_target, soft_value, sqil_loss


# --- soft value -----------------------------------------------------------------------------------


def test_soft_value_is_temperature_times_log_sum_exp_over_actions():
    q = torch.tensor([[1.0, 2.0, -0.5], [0.3, 0.3, 0.3]], dtype=torch.float64)
    alpha = 0.7
    expected = [alpha * math.log(sum(math.exp(x / alpha) for x in row)) for row in q.tolist()]
    value = soft_value(q, alpha)
    assert value.shape == (2, 1)
    torch.testing.assert_close(value.squeeze(-1), torch.tensor(expected, dtype=torch.float64))


def test_soft_value_tends_to_max_q_as_temperature_goes_to_zero():
    torch.manual_seed(0)
    q = torch.randn(5, 4, dtype=torch.float64)
    max_q = q.max(dim=-1, keepdim=True).values
    gaps = [(soft_value(q, alpha) - max_q).abs().max().item() for alpha in (1.0, 0.1, 1e-3)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3 * math.log(4) + 1e-12


def test_soft_value_is_bounded_by_max_and_max_plus_alpha_log_n_and_stable_for_large_q():
    q = torch.tensor([[1000.0, 999.0, -1000.0, 0.0]])
    alpha = 0.01
    value = soft_value(q, alpha)
    assert torch.isfinite(value).all()
    assert 1000.0 <= value.item() <= 1000.0 + alpha * math.log(4) + 1e-4


# --- soft Bellman target ----------------------------------------------------------------------------


def test_terminated_row_target_is_reward_alone():
    target = soft_bellman_target(
        torch.tensor([[2.0]]), torch.tensor([[5.0]]), torch.tensor([[True]]), discount=0.9
    )
    torch.testing.assert_close(target, torch.tensor([[2.0]]))


def test_non_terminal_and_truncated_rows_bootstrap_through_next_value():
    # Row 0: ordinary step; row 1: time-limit truncation (not terminated) must still bootstrap;
    # row 2: true termination.
    reward = torch.tensor([[1.0], [0.5], [3.0]])
    next_value = torch.tensor([[4.0], [-2.0], [7.0]])
    terminated = torch.tensor([[False], [False], [True]])
    target = soft_bellman_target(reward, next_value, terminated, discount=0.5)
    torch.testing.assert_close(target, torch.tensor([[1.0 + 0.5 * 4.0], [0.5 + 0.5 * -2.0], [3.0]]))


# --- SQIL loss ---------------------------------------------------------------------------------------


def test_sqil_loss_is_demo_mean_plus_lambda_times_online_mean():
    squared_error = torch.tensor([1.0, 3.0, 10.0, 20.0, 30.0])
    is_demo = torch.tensor([True, True, False, False, False])
    loss = sqil_loss(squared_error, is_demo, lambda_samp=0.1)
    torch.testing.assert_close(loss, torch.tensor(2.0 + 0.1 * 20.0))


def test_sqil_loss_with_lambda_samp_zero_ignores_online_rows():
    is_demo = torch.tensor([True, False, True, False])
    a = sqil_loss(torch.tensor([1.0, 5.0, 2.0, 7.0]), is_demo, lambda_samp=0.0)
    b = sqil_loss(torch.tensor([1.0, 500.0, 2.0, -70.0]), is_demo, lambda_samp=0.0)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, torch.tensor(1.5))


# --- the LightningModule's step ------------------------------------------------------------------------


def _module(**overrides) -> SoftQSQIL:
    kwargs = dict(observation_shape=(3,), action_space={"n": 2}, hidden_sizes=(8,), gamma=0.9, temperature=0.5, lambda_samp=0.3)
    kwargs.update(overrides)
    return SoftQSQIL(**kwargs)


def _hand_batch() -> TensorDict:
    """Six transitions: demo/online, with one true termination and one time-limit truncation."""
    g = torch.Generator().manual_seed(1)
    n = 6
    terminated = torch.tensor([False, True, False, False, False, False]).unsqueeze(-1)
    truncated = torch.tensor([False, False, True, False, False, True]).unsqueeze(-1)
    return TensorDict(
        {
            "observation": torch.randn(n, 3, generator=g),
            "action": torch.tensor([0, 1, 1, 0, 1, 0]),
            "is_demo": torch.tensor([True, True, True, False, False, False]),
            "next": {
                "observation": torch.randn(n, 3, generator=g),
                "reward": torch.tensor([1.0, 10.0, 1.0, 0.0, 0.0, 0.0]).unsqueeze(-1),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[n],
    )


def _row_loss(error: float, huber_delta: float | None) -> float:
    """Eq. 16's square, or twice the Huber loss: the square up to |error| δ, 2δ(|error| − δ/2) beyond."""
    if huber_delta is None or abs(error) <= huber_delta:
        return error**2
    return 2 * huber_delta * (abs(error) - huber_delta / 2)


@pytest.mark.parametrize("huber_delta", [None, 1.0])
def test_losses_loss_matches_hand_computed_sqil_loss(huber_delta):
    torch.manual_seed(0)
    module = _module(huber_delta=huber_delta)
    # A target network that differs from the online one, so using the wrong one shows.
    with torch.no_grad():
        for p in module.target_network.parameters():
            p.add_(0.3 * torch.randn_like(p))
    batch = _hand_batch()

    loss = module.losses(batch)["loss"]

    alpha, gamma, lam = 0.5, 0.9, 0.3
    with torch.no_grad():
        q = module.q_network(batch["observation"])
        q_next_target = module.target_network(batch["next", "observation"])
    demo_errors, online_errors = [], []
    for i in range(len(batch)):
        v_next = alpha * math.log(sum(math.exp(x / alpha) for x in q_next_target[i].tolist()))
        if batch["next", "terminated"][i].item():  # V(s') = 0 only on termination, not truncation
            v_next = 0.0
        target = batch["next", "reward"][i].item() + gamma * v_next
        error = q[i, batch["action"][i]].item() - target
        (demo_errors if batch["is_demo"][i].item() else online_errors).append(error)
    expected = sum(_row_loss(e, huber_delta) for e in demo_errors) / len(demo_errors)
    expected += lam * sum(_row_loss(e, huber_delta) for e in online_errors) / len(online_errors)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert max(abs(e) for e in demo_errors) > 1.0  # the terminal demo row's r = 10: Huber's linear part is used


def test_losses_gradient_flows_only_into_q_network():
    torch.manual_seed(0)
    module = _module()
    module.losses(_hand_batch())["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.q_network.parameters())
    assert all(p.grad is None for p in module.target_network.parameters())


def test_statistics_are_mean_q_of_taken_actions_per_partition_without_a_graph():
    torch.manual_seed(0)
    module = _module()
    batch = _hand_batch()

    statistics = module.statistics(batch)

    with torch.no_grad():
        q = module.q_network(batch["observation"])
    taken = [q[i, batch["action"][i]].item() for i in range(len(batch))]
    demo = [x for x, d in zip(taken, batch["is_demo"].tolist()) if d]
    online = [x for x, d in zip(taken, batch["is_demo"].tolist()) if not d]
    assert statistics["q_demo"].item() == pytest.approx(sum(demo) / len(demo), rel=1e-6)
    assert statistics["q_online"].item() == pytest.approx(sum(online) / len(online), rel=1e-6)
    assert not any(value.requires_grad for value in statistics.values())


def test_target_network_starts_equal_and_polyak_update_moves_it_by_tau():
    torch.manual_seed(0)
    module = _module(target_tau=0.25)
    for p, t in zip(module.q_network.parameters(), module.target_network.parameters()):
        torch.testing.assert_close(p, t)
    with torch.no_grad():
        for p in module.q_network.parameters():
            p.add_(1.0)
    before = [t.detach().clone() for t in module.target_network.parameters()]
    module.on_train_start()
    module.update_target()
    for p, t, t0 in zip(module.q_network.parameters(), module.target_network.parameters(), before):
        torch.testing.assert_close(t, t0 + 0.25 * (p - t0))


@pytest.mark.parametrize(
    "name,value",
    [("gamma", 1.5), ("gamma", -0.1), ("temperature", 0.0), ("lambda_samp", -1.0), ("lr", 0.0), ("target_tau", 0.0), ("huber_delta", 0.0)],
)
def test_invalid_hyperparameter_raises_config_error_naming_it(name, value):
    with pytest.raises(ConfigError, match=f"model.{name}"):
        _module(**{name: value})
