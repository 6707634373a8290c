"""Multi-step windows for soft Bellman targets, assembled when a partition is sampled.

A sampled row t becomes the window t, t+1, …, t+k-1 of the rows that follow it in the same
partition's storage (k ≤ n), folded into one transition in TorchRL's multi-step layout
(`torchrl.data.postprocs.MultiStep`'s keys):

- ``("next", "reward")``: Σ_{i<k} γ^i r_{t+i}, of the rows' stored (relabelled) rewards: demo r,
  the absorbing r/(1-γ) on a terminal demo row, agent 0;
- ``("next", "observation")``: s_{t+k}, the next observation of the window's last row;
- ``("next", "terminated")``, ``truncated``, ``done``: the window's last row's flags;
- ``"steps_to_next_obs"``: k, so the target bootstraps with γ^k (TorchRL's value estimators read
  this key; `SoftQSQIL` does the same).

The window stops after the first row that ends an episode (a termination: no bootstrap after it,
V = 0; a truncation: it bootstraps at the truncated step's next state with γ^k), and before any
row that does not continue the previous one. Rows continue each other when the next observation
of one is bit for bit the observation of the other: that is how the collector writes consecutive
env steps, and it fails at the online partition's write cursor (the newest row's successor is
the oldest row), where a row was overwritten, and across two episodes. A window never mixes
partitions, since each partition's windows are read from its own storage.

Which soft n-step target: Σ γ^i r_i + γ^k V(s_{t+k}), without the intermediate entropy terms
α·H(π(·|s_{t+i})). Those terms belong to the policy that acted, which off-policy is another
policy (the expert's for demo rows, an older agent's for the rest) whose entropy is not known;
the common form (TorchRL's MultiStep, Acme's n-step transitions) leaves them out, and with n = 1
both forms are the paper's eq. 16.

Why not TorchRL's `MultiStep` itself: it folds windows within one collector batch as it leaves
the collector, but the agent's rows arrive ``data.rollout_env_steps`` (4) steps at a time, so its
windows would end at every rollout boundary; sampling the windows from the storage gives both
partitions one rule and needs no change to what is stored (snapshots and resumes stay as they are).
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer


def sample_windows(partition: ReplayBuffer, rows: int, n_step: int, gamma: float) -> TensorDictBase:
    """Draw ``rows`` rows of ``partition`` (its sampler) and fold each into its window of up to ``n_step`` rows."""
    first, info = partition.sample(rows, return_info=True)
    return fold_windows(partition, first, torch.as_tensor(info["index"]), n_step, gamma)


def fold_windows(
    partition: ReplayBuffer, first: TensorDictBase, index: torch.Tensor, n_step: int, gamma: float
) -> TensorDictBase:
    """``first`` (the rows at ``index`` of ``partition``) with each row folded into its window (module docstring)."""
    size = len(partition)
    out = first.clone()
    reward = first["next", "reward"].clone()
    steps = torch.ones_like(reward, dtype=torch.int64)
    # Whether the window is still open after the rows taken so far (it closes at an episode's end).
    open_ = ~first["next", "done"].reshape(-1)
    for offset in range(1, n_step):
        row = partition.storage[(index + offset) % size]
        follows = (row["observation"] == out["next", "observation"]).flatten(1).all(-1)
        taken = open_ & follows
        reward = reward + taken.unsqueeze(-1) * gamma**offset * row["next", "reward"]
        steps = steps + taken.unsqueeze(-1)
        for key in ("observation", "terminated", "truncated", "done"):
            mask = taken.reshape(-1, *[1] * (row["next", key].dim() - 1))
            out["next", key] = torch.where(mask, row["next", key], out["next", key])
        open_ = taken & ~row["next", "done"].reshape(-1)
    out["next", "reward"] = reward
    out["steps_to_next_obs"] = steps
    return out
