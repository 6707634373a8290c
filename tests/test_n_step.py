"""Multi-step windows (`sqil_lightning.data.n_step`): hand-computed targets, episode and partition boundaries."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer

from sqil_lightning.data.n_step import fold_windows
from sqil_lightning.data.replay import ReplayBatches, make_sqil_buffer
from sqil_lightning.learners.soft_bellman import bootstrap_discount, soft_bellman_target

GAMMA = 0.9


def _rows(observations: list[float], next_observations: list[float], rewards: list[float], terminated: list[bool], truncated: list[bool], demo: bool) -> TensorDict:
    """Transitions with one-number observations, so a window's rows can be told apart by eye."""
    n = len(observations)
    terminated_t, truncated_t = torch.tensor(terminated).reshape(n, 1), torch.tensor(truncated).reshape(n, 1)
    return TensorDict(
        {
            "observation": torch.tensor(observations).reshape(n, 1),
            "action": torch.zeros(n, dtype=torch.long),
            "is_demo": torch.full((n,), demo),
            "next": {
                "observation": torch.tensor(next_observations).reshape(n, 1),
                "reward": torch.tensor(rewards).reshape(n, 1),
                "terminated": terminated_t,
                "truncated": truncated_t,
                "done": terminated_t | truncated_t,
            },
        },
        batch_size=[n],
    )


def _buffer(rows: TensorDict, capacity: int | None = None) -> ReplayBuffer:
    buffer = ReplayBuffer(storage=LazyTensorStorage(capacity or len(rows)), sampler=RandomSampler())
    buffer.extend(rows)
    return buffer


# Episode A: s0 → s1 → s2 → s3, cut by the time limit after s2's step (truncated, s3 not terminal).
# Episode B: s3 → s11 → s12, ending in a true termination after s11's step. It starts where A was
# cut (a reset can land anywhere): only A's truncation flag may end A's windows there.
EPISODES = _rows(
    observations=[0.0, 1.0, 2.0, 3.0, 11.0],
    next_observations=[1.0, 2.0, 3.0, 11.0, 12.0],
    rewards=[1.0, 2.0, 4.0, 8.0, 16.0],
    terminated=[False, False, False, False, True],
    truncated=[False, False, True, False, False],
    demo=False,
)


def _fold(buffer: ReplayBuffer, index: list[int], n_step: int) -> TensorDict:
    index_t = torch.tensor(index)
    return fold_windows(buffer, buffer.storage[index_t], index_t, n_step, GAMMA)


def test_a_window_bootstraps_through_a_truncation_with_gamma_to_its_length():
    window = _fold(_buffer(EPISODES), [0, 1, 2], n_step=3)
    # Row 0: r0 + γ r1 + γ² r2, then γ³ V(s3): the truncated step's next state, not terminal.
    assert window["next", "reward"].squeeze(-1).tolist() == pytest.approx([1 + 0.9 * 2 + 0.81 * 4, 2 + 0.9 * 4, 4])
    assert window["steps_to_next_obs"].squeeze(-1).tolist() == [3, 2, 1]
    assert window["next", "observation"].squeeze(-1).tolist() == [3.0, 3.0, 3.0]
    assert not window["next", "terminated"].any() and window["next", "truncated"].all()
    next_value = torch.full((3, 1), 5.0)
    target = soft_bellman_target(window["next", "reward"], next_value, window["next", "terminated"], bootstrap_discount(window, GAMMA))
    assert target.squeeze(-1).tolist() == pytest.approx([1 + 1.8 + 3.24 + 0.729 * 5, 2 + 3.6 + 0.81 * 5, 4 + 0.9 * 5])


def test_a_window_stops_at_a_termination_with_no_value_after_it():
    window = _fold(_buffer(EPISODES), [3, 4], n_step=3)
    assert window["next", "reward"].squeeze(-1).tolist() == pytest.approx([8 + 0.9 * 16, 16])
    assert window["steps_to_next_obs"].squeeze(-1).tolist() == [2, 1]
    assert window["next", "terminated"].all()
    target = soft_bellman_target(window["next", "reward"], torch.full((2, 1), 5.0), window["next", "terminated"], bootstrap_discount(window, GAMMA))
    assert target.squeeze(-1).tolist() == pytest.approx([8 + 0.9 * 16, 16])  # V(s12) = 0 after the termination


def test_a_window_never_runs_into_the_next_episode():
    # Episode A's truncation ends its windows even though episode B's rows follow in storage;
    # here A's last row is not even marked done, and B's first observation differs from its next one.
    rows = EPISODES.clone()
    rows["next", "truncated"][2] = False
    rows["next", "done"][2] = False
    rows["observation"][3] = 10.0
    window = _fold(_buffer(rows), [1, 2], n_step=3)
    assert window["steps_to_next_obs"].squeeze(-1).tolist() == [2, 1]
    assert window["next", "observation"].squeeze(-1).tolist() == [3.0, 3.0]


def test_windows_of_the_online_partition_follow_its_write_cursor_around_the_ring():
    # Six steps of one episode into a ring of 4: it holds steps 2..5 at positions [4, 5, 2, 3].
    steps = _rows([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0] * 6, [False] * 6, [False] * 6, demo=False)
    ring = _buffer(steps, capacity=4)
    assert ring.storage[torch.arange(4)]["observation"].squeeze(-1).tolist() == [4.0, 5.0, 2.0, 3.0]
    window = _fold(ring, [3, 1, 2], n_step=3)  # steps 3, 5, 2
    # Step 3 continues across the ring's end into steps 4 and 5; step 5 is the newest row (its
    # successor is not collected yet), so it bootstraps alone; step 2 takes 3 and 4.
    assert window["steps_to_next_obs"].squeeze(-1).tolist() == [3, 1, 3]
    assert window["next", "observation"].squeeze(-1).tolist() == [6.0, 6.0, 5.0]


def test_demo_windows_never_read_agent_rows_and_agent_windows_never_read_demo_rows():
    # The demo episode's last state is where the agent's first row starts: were the partitions one
    # storage, the windows would run from one into the other.
    demos = _rows([0.0, 1.0], [1.0, 2.0], [1.0, 1.0], [False, False], [False, True], demo=True)
    agent = _rows([2.0, 3.0, 4.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [False] * 3, [False] * 3, demo=False)
    buffer = make_sqil_buffer(demos, online_capacity=8, demo_fraction=0.5, batch_size=64)
    buffer.online_buffer.extend(agent)
    batches = ReplayBatches(buffer, batch_size=64, chunk=1, n_step=4, gamma=GAMMA)
    (batch,) = next(iter(batches))
    demo_rows, agent_rows = batch[batch["is_demo"]], batch[~batch["is_demo"]]
    assert set(demo_rows["next", "observation"].squeeze(-1).tolist()) <= {2.0}  # the demo episode's own end
    assert demo_rows["next", "reward"].squeeze(-1).tolist() == pytest.approx(
        [1 + 0.9 if obs == 0.0 else 1.0 for obs in demo_rows["observation"].squeeze(-1).tolist()]
    )
    # Agent row 4.0's next observation 0.0 is the first demo state: its window stays one row.
    assert set(agent_rows["steps_to_next_obs"][agent_rows["observation"] == 4.0].tolist()) == {1}
    assert agent_rows["next", "reward"].abs().sum() == 0  # the agent's relabelled 0, never a demo r


def test_one_step_batches_are_left_as_they_were():
    demos = _rows([0.0, 1.0], [1.0, 2.0], [1.0, 1.0], [False, False], [False, True], demo=True)
    buffer = make_sqil_buffer(demos, online_capacity=8, demo_fraction=0.5, batch_size=8)
    buffer.online_buffer.extend(EPISODES)
    (batch,) = next(iter(ReplayBatches(buffer, batch_size=8, chunk=1, n_step=1, gamma=GAMMA)))
    assert "steps_to_next_obs" not in batch.keys()
    assert bootstrap_discount(batch, GAMMA) == GAMMA


def _learner_batch(n: int, obs_dim: int, action, steps: int | None) -> TensorDict:
    torch.manual_seed(0)
    batch = TensorDict(
        {
            "observation": torch.randn(n, obs_dim),
            "action": action,
            "is_demo": torch.arange(n) < n // 2,
            "next": {
                "observation": torch.randn(n, obs_dim),
                "reward": torch.rand(n, 1),
                "terminated": torch.zeros(n, 1, dtype=torch.bool),
                "truncated": torch.zeros(n, 1, dtype=torch.bool),
                "done": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        batch_size=[n],
    )
    if steps is not None:
        batch["steps_to_next_obs"] = torch.full((n, 1), steps)
    return batch


@pytest.mark.parametrize("learner", ["soft_q", "sac"])
def test_a_k_step_window_bootstraps_as_a_learner_with_gamma_to_the_k(learner):
    """Both learners read the window's length: γ with a 3-step window == γ³ with none."""
    from sqil_lightning import SACSQIL, SoftQSQIL

    def make(gamma: float):
        torch.manual_seed(1)
        if learner == "soft_q":
            return SoftQSQIL(observation_shape=(3,), action_space={"n": 4}, hidden_sizes=(16,), gamma=gamma)
        return SACSQIL(observation_shape=(3,), action_space={"low": [-1.0], "high": [1.0]}, hidden_sizes=(16,), gamma=gamma)

    action = torch.randint(0, 4, (8,)) if learner == "soft_q" else torch.rand(8, 1) * 2 - 1
    window, plain = make(GAMMA), make(GAMMA**3)
    torch.manual_seed(2)
    with_steps = window.losses(_learner_batch(8, 3, action, steps=3))
    torch.manual_seed(2)
    gamma_cubed = plain.losses(_learner_batch(8, 3, action, steps=None))
    torch.manual_seed(2)
    one_step = window.losses(_learner_batch(8, 3, action, steps=None))
    assert torch.allclose(with_steps["loss"], gamma_cubed["loss"])
    assert not torch.allclose(with_steps["loss"], one_step["loss"])
