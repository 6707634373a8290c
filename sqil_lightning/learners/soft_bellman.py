"""Soft Q-learning's pieces as pure functions (paper eqs. 1, 2 and 16)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase


def soft_value(q_values: torch.Tensor, temperature: float) -> torch.Tensor:
    """V(s) = α · log Σ_a exp(Q(s, a) / α) over the last dim (paper eq. 2), keeping that dim."""
    return temperature * torch.logsumexp(q_values / temperature, dim=-1, keepdim=True)


def soft_bellman_target(
    reward: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor, discount: float | torch.Tensor
) -> torch.Tensor:
    """r + γ · V(s'), with V(s') = 0 only on a true termination.

    A time-limit truncation is not terminal: the state after it still has a future, so the
    target bootstraps through it. Callers pass ``terminated``, never ``done``. For a multi-step
    window (`sqil_lightning.data.n_step`) ``reward`` is its discounted sum and ``discount`` γ^k per row.
    """
    return reward + discount * (~terminated) * next_value


def bootstrap_discount(batch: TensorDictBase, gamma: float) -> float | torch.Tensor:
    """γ, or γ^k per row for multi-step windows of k steps (the batch's ``steps_to_next_obs``)."""
    steps = batch.get("steps_to_next_obs", None)
    return gamma if steps is None else gamma**steps


def bellman_loss(error: torch.Tensor, huber_delta: float | None) -> torch.Tensor:
    """Each row's loss on its soft Bellman error: the square (paper eq. 16), or with ``huber_delta``
    twice the Huber loss, which equals the square for |error| ≤ δ and grows as 2δ|error| beyond, so
    a few large errors (a target that jumped) do not dominate the update."""
    if huber_delta is None:
        return error.pow(2)
    return 2.0 * torch.nn.functional.huber_loss(error, torch.zeros_like(error), reduction="none", delta=huber_delta)


def partition_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the rows where ``rows`` is true (NaN when there are none), without
    boolean indexing, which would read the row count back from a GPU."""
    weight = rows.to(values.dtype)
    return (values * weight).sum() / weight.sum()


def sqil_loss(
    squared_error: torch.Tensor, is_demo: torch.Tensor, lambda_samp: float
) -> torch.Tensor:
    """B(D_demo, r) + λ_samp · B(D_samp, 0) (Algorithm 1, line 4) as means over each partition.

    The batch is balanced, so the two means weigh the partitions as the paper's sums would on
    equal-sized samples; λ_samp = 0 drops the agent's own experience exactly (ablation, sec. 5.5).
    A batch without demo rows (reward source ``env``: plain RL) has nothing to weigh the agent's
    rows against, so its loss is their plain mean.
    """
    demo = is_demo.to(squared_error.dtype)
    online = 1.0 - demo
    demo_count = demo.sum()
    demo_term = (squared_error * demo).sum() / demo_count.clamp_min(1.0)
    online_term = (squared_error * online).sum() / online.sum().clamp_min(1.0)
    # No Python `if` on a tensor (a GPU sync every step): the last term is exactly 0 when the
    # batch holds demo rows, so the loss and its gradient are bit for bit demo + λ·online.
    no_demos = (demo_count == 0).to(squared_error.dtype)
    return demo_term + lambda_samp * online_term + (1.0 - lambda_samp) * no_demos * online_term
