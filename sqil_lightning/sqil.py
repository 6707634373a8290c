"""The SQIL rule (paper Algorithm 1, sec. 3.3), pure: which reward each row carries and how a batch
is split between the demos and the agent's own experience.

- Demo rows get the constant reward r; a demo transition into a terminal state gets the
  absorbing-state reward r/(1-γ) (`demo_rows`).
- The agent's own rows get reward 0 whatever the env paid (`agent_rows`); with the reward source
  ``env`` (plain RL, how experts are trained) they keep the env's reward and there are no demos.
- Demo rows sit in a pinned partition that is never written to again, and every batch holds
  exactly ``demo_fraction`` of them (`pinned_demo_buffer`); ``is_demo`` marks each row so the loss
  can weight the two partitions by λ_samp.

The data room applies these functions, once each: demo rows when the replay is built, agent rows
as the collector hands them over.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyTensorStorage, OfflineToOnlineReplayBuffer, RandomSampler, ReplayBuffer, Storage

from sqil_lightning.errors import ConfigError

# Where rewards come from: `sqil` relabels (demos r, agent 0), `env` keeps the env's own reward.
REWARD_SOURCES = ("sqil", "env")

# The keys a transition needs for soft Bellman backups; everything else a collector adds is dropped.
TRANSITION_KEYS = (
    "observation",
    "action",
    "is_demo",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("next", "done"),
)


def check_demo_reward(reward: float, gamma: float | None, absorbing: bool) -> None:
    """r must be non-negative, and r (and r/(1-γ) into terminal states) must fit in float32, where
    rewards are stored; γ = 1 would make the absorbing-state reward infinite. ``gamma`` None: a
    learner without a discount (behavioural cloning), which reads no reward."""
    if absorbing and gamma is not None and gamma >= 1.0:
        raise ConfigError(f"data.absorbing_reward = true needs model.gamma < 1 (got {gamma}): r/(1-gamma) would be infinite")
    largest = reward / (1.0 - gamma) if absorbing and gamma is not None else reward
    if not (reward >= 0 and abs(largest) <= np.finfo(np.float32).max):
        raise ConfigError(
            f"data.demo_reward = {reward} is invalid; it must be a non-negative number whose "
            f"{'absorbing-state reward r/(1-gamma)' if absorbing else 'value'} fits in float32 (paper: r = 1 to 100)"
        )


def demo_rows(demos: TensorDictBase, reward: float, gamma: float | None, absorbing: bool) -> TensorDict:
    """Demo rows get reward r; with ``absorbing``, transitions into a terminal state get r/(1-γ).

    The absorbing-state reward (paper sec. 3.3) stands for the infinite stream of rewarding
    absorbing steps a true terminal would be followed by, so ending an episode the way the expert
    did is not worse than stalling to collect r forever. ``gamma`` None (a learner that reads no
    reward) leaves every demo row at r.
    """
    check_demo_reward(reward, gamma, absorbing)
    terminated = demos["next", "terminated"]
    value = torch.full(terminated.shape, float(reward))
    if absorbing and gamma is not None:
        value = torch.where(terminated, torch.full_like(value, reward / (1.0 - gamma)), value)
    out = demos.clone(False)
    out["next", "reward"] = value
    out["is_demo"] = torch.ones(demos.batch_size, dtype=torch.bool)
    return out.select(*TRANSITION_KEYS)


def agent_rows(batch: TensorDictBase, reward_source: str = "sqil") -> TensorDict:
    """The agent's own rows: reward 0 under SQIL, the env's reward with the source ``env``; never demos."""
    out = batch.clone(False)
    if reward_source == "sqil":
        out["next", "reward"] = torch.zeros_like(batch["next", "reward"])
    out["is_demo"] = torch.zeros(batch.batch_size, dtype=torch.bool)
    return out.select(*TRANSITION_KEYS)


def check_batch_split(batch_size: int, demo_fraction: float) -> None:
    """Every batch must hold at least one demo row and one agent row: TorchRL draws
    ``round(demo_fraction * batch_size)`` demo rows, and a split that rounds to none of either
    would train without demos (or without the agent's experience) and say nothing."""
    demo_count = round(demo_fraction * batch_size)
    if 0 < demo_count < batch_size:
        return
    smallest = next(size for size in itertools.count(1) if 0 < round(demo_fraction * size) < size)
    raise ConfigError(
        f"data.batch_size = {batch_size} with data.demo_fraction = {demo_fraction} gives {demo_count} demo rows and "
        f"{batch_size - demo_count} agent rows per batch; each batch needs at least one of each: raise data.batch_size "
        f"to at least {smallest} or move data.demo_fraction toward 0.5"
    )


def pinned_demo_buffer(
    demos: TensorDictBase, online_storage: Storage, demo_fraction: float, batch_size: int
) -> OfflineToOnlineReplayBuffer:
    """A buffer whose demo partition holds ``demos`` (already `demo_rows`) and is never written
    again, and whose online partition is ``online_storage``; each batch is ``demo_fraction`` demos."""
    demo_partition = ReplayBuffer(storage=LazyTensorStorage(len(demos)), sampler=RandomSampler())
    demo_partition.extend(demos)
    return OfflineToOnlineReplayBuffer(
        demo_partition, online_storage=online_storage, offline_fraction=demo_fraction, batch_size=batch_size
    )
