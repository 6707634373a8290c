"""The SQIL replay rule: relabelling, the pinned demo partition and exactly balanced batches."""

from __future__ import annotations

import itertools

import pytest
import torch
from tensordict import TensorDict

from sqil_lightning.data.replay import ReplayBatches, make_sqil_buffer
from sqil_lightning.sqil import agent_rows, demo_rows

N_DEMO = 50
DEMO_REWARD, GAMMA = 2.0, 0.9
ONLINE_CAPACITY, EXTENDS, ROWS_PER_EXTEND = 20, 30, 10


def _transitions(first_id: float, n: int, env_reward: float, terminal_every: int | None = None) -> TensorDict:
    """Rows whose observation[:, 0] is a unique id (first_id, first_id + 1, …)."""
    ids = torch.arange(n, dtype=torch.float32) + first_id
    terminated = torch.zeros(n, 1, dtype=torch.bool)
    if terminal_every:
        terminated[terminal_every - 1 :: terminal_every] = True
    truncated = torch.zeros(n, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.stack([ids, ids + 0.5, -ids], dim=-1),
            "action": torch.arange(n) % 4,
            "collector": {"traj_ids": torch.zeros(n)},  # an extra key a collector would add
            "next": {
                "observation": torch.stack([ids + 1, ids + 1.5, -ids - 1], dim=-1),
                "reward": torch.full((n, 1), env_reward),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[n],
    )


def _demos() -> TensorDict:
    return _transitions(0, N_DEMO, env_reward=-3.0, terminal_every=10)


def _filled_buffer(demo_fraction: float = 0.5, batch_size: int = 16, absorbing: bool = True):
    demos = demo_rows(_demos(), DEMO_REWARD, GAMMA, absorbing=absorbing)
    buffer = make_sqil_buffer(demos, ONLINE_CAPACITY, demo_fraction, batch_size)
    for k in range(EXTENDS):
        online = _transitions(1000 + k * ROWS_PER_EXTEND, ROWS_PER_EXTEND, env_reward=5.0 + k, terminal_every=3)
        buffer.extend(agent_rows(online))
    return demos, buffer


def test_demo_rows_gives_r_and_r_over_one_minus_gamma_into_terminal_states():
    demos = _demos()
    out = demo_rows(demos, DEMO_REWARD, GAMMA, absorbing=True)
    terminated = demos["next", "terminated"]
    assert terminated.sum() == 5
    torch.testing.assert_close(out["next", "reward"][terminated], torch.full((5,), DEMO_REWARD / (1 - GAMMA)))
    torch.testing.assert_close(out["next", "reward"][~terminated], torch.full((45,), DEMO_REWARD))
    assert out["is_demo"].all() and out["is_demo"].shape == (N_DEMO,)
    # The input is not modified.
    torch.testing.assert_close(demos["next", "reward"], torch.full((N_DEMO, 1), -3.0))


def test_demo_rows_without_absorbing_gives_r_everywhere():
    out = demo_rows(_demos(), DEMO_REWARD, GAMMA, absorbing=False)
    torch.testing.assert_close(out["next", "reward"], torch.full((N_DEMO, 1), DEMO_REWARD))


def test_absorbing_reward_with_gamma_one_is_rejected():
    with pytest.raises(ValueError, match="gamma"):
        demo_rows(_demos(), DEMO_REWARD, 1.0, absorbing=True)


def test_agent_rows_zeroes_env_reward_and_keeps_only_transition_keys():
    batch = _transitions(0, 6, env_reward=7.0)
    out = agent_rows(batch)
    torch.testing.assert_close(out["next", "reward"], torch.zeros(6, 1))
    assert not out["is_demo"].any()
    assert "collector" not in out.keys()
    torch.testing.assert_close(out["observation"], batch["observation"])
    torch.testing.assert_close(batch["next", "reward"], torch.full((6, 1), 7.0))


def test_demo_partition_is_never_evicted_or_changed_by_online_extends():
    demos, buffer = _filled_buffer()
    assert EXTENDS * ROWS_PER_EXTEND > 10 * ONLINE_CAPACITY
    assert len(buffer.offline_buffer) == N_DEMO
    stored = buffer.offline_buffer[:]
    order = stored["observation"][:, 0].argsort()
    assert (stored[order] == demos).all()


def test_online_partition_holds_exactly_capacity_newest_rows():
    _, buffer = _filled_buffer()
    assert len(buffer.online_buffer) == ONLINE_CAPACITY
    stored = buffer.online_buffer[:]
    total = EXTENDS * ROWS_PER_EXTEND
    newest = set(range(1000 + total - ONLINE_CAPACITY, 1000 + total))
    assert set(stored["observation"][:, 0].long().tolist()) == newest
    assert (stored["next", "reward"] == 0).all()
    assert not stored["is_demo"].any()


@pytest.mark.parametrize("demo_fraction,batch_size", [(0.5, 16), (0.25, 12)])
def test_every_balanced_batch_has_the_exact_demo_fraction_and_sqil_rewards(demo_fraction, batch_size):
    torch.manual_seed(0)
    _, buffer = _filled_buffer(demo_fraction, batch_size)
    n_demo = round(demo_fraction * batch_size)
    total = EXTENDS * ROWS_PER_EXTEND
    newest = set(range(1000 + total - ONLINE_CAPACITY, 1000 + total))
    seen_terminal_demo = False
    for [batch] in itertools.islice(iter(ReplayBatches(buffer, batch_size, chunk=4)), 60):
        assert batch.batch_size == (batch_size,)
        is_demo = batch["is_demo"]
        assert int(is_demo.sum()) == n_demo
        ids = batch["observation"][:, 0]
        assert ((ids < N_DEMO) == is_demo).all()  # demo rows really come from the demos
        assert set(ids[~is_demo].long().tolist()) <= newest
        reward = batch["next", "reward"].squeeze(-1)
        terminal = batch["next", "terminated"].squeeze(-1)
        demo_terminal = is_demo & terminal
        seen_terminal_demo |= bool(demo_terminal.any())
        torch.testing.assert_close(reward[demo_terminal], torch.full_like(reward[demo_terminal], DEMO_REWARD / (1 - GAMMA)))
        torch.testing.assert_close(reward[is_demo & ~terminal], torch.full_like(reward[is_demo & ~terminal], DEMO_REWARD))
        assert (reward[~is_demo] == 0).all()  # the env paid 5 + k > 0 for these rows
    assert seen_terminal_demo


def test_balanced_batches_without_absorbing_give_demo_rows_reward_r():
    torch.manual_seed(0)
    _, buffer = _filled_buffer(absorbing=False)
    for [batch] in itertools.islice(iter(ReplayBatches(buffer, 16, chunk=4)), 20):
        reward = batch["next", "reward"].squeeze(-1)
        assert (reward[batch["is_demo"]] == DEMO_REWARD).all()
        assert (reward[~batch["is_demo"]] == 0).all()


def test_balanced_batches_stream_is_endless_beyond_one_chunk():
    torch.manual_seed(0)
    _, buffer = _filled_buffer()
    batches = [batch for [batch] in itertools.islice(iter(ReplayBatches(buffer, 16, chunk=3)), 10)]
    assert len(batches) == 10
    # Different batches are different samples, not the same one repeated.
    assert not all(torch.equal(b["observation"], batches[0]["observation"]) for b in batches[1:])


def test_sampling_with_an_empty_online_partition_raises():
    demos = demo_rows(_demos(), DEMO_REWARD, GAMMA, absorbing=True)
    buffer = make_sqil_buffer(demos, ONLINE_CAPACITY, 0.5, 16)
    with pytest.raises(RuntimeError, match="online partition is empty"):
        next(iter(ReplayBatches(buffer, 16, chunk=4)))


def test_restored_untrained_batches_continue_the_stream_as_if_never_interrupted():
    # A checkpoint between steps holds the batch Lightning prefetched and the rest of the chunk;
    # a new ReplayBatches given those yields exactly what the uninterrupted stream would.
    torch.manual_seed(0)
    _, buffer = _filled_buffer()
    uninterrupted = [batch for [batch] in itertools.islice(iter(ReplayBatches(buffer, 16, chunk=4)), 11)]
    torch.manual_seed(0)
    first = ReplayBatches(buffer, 16, chunk=4)
    trained = [batch for [batch] in itertools.islice(iter(first), 6)][:-1]  # the 6th is fetched ahead, not trained on
    untrained = first.untrained()
    assert len(untrained) == 1 + 2  # the prefetched batch and the two left of the second chunk
    rng = torch.get_rng_state()
    resumed = ReplayBatches(buffer, 16, chunk=4)
    resumed.restore_untrained([batch.clone() for batch in untrained])
    torch.set_rng_state(rng)
    continued = trained + [batch for [batch] in itertools.islice(iter(resumed), 6)]
    for expected, got in zip(uninterrupted, continued, strict=True):
        assert torch.equal(expected["observation"], got["observation"])
        assert torch.equal(expected["is_demo"], got["is_demo"])
