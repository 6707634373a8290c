"""End-to-end SQIL on a tiny deterministic chain MDP: the learned greedy policy imitates the expert.

States 0 … 8 (one-hot observations), actions 0 = left, 1 = stay, 2 = right (walls clip), state 4
is the terminal goal; demo transitions into it get the absorbing reward r/(1-γ) (sec. 3.3). The
expert always moves toward the goal, so the correct action differs between the two sides of the
chain. Demos start from states 1 and 7; online experience comes from
a uniform random policy so that non-demo actions (and states 0 and 8) are covered.
"""

from __future__ import annotations

import itertools

import torch
from tensordict import TensorDict

from sqil_lightning import SoftQSQIL
from sqil_lightning.data.replay import ReplayBatches, make_sqil_buffer
from sqil_lightning.sqil import agent_rows, demo_rows

N_STATES, GOAL = 9, 4
LEFT, STAY, RIGHT = 0, 1, 2
GAMMA = 0.9


def step(state: int, action: int) -> int:
    return min(max(state + (action - 1), 0), N_STATES - 1)


def expert_action(state: int) -> int:
    return RIGHT if state < GOAL else LEFT


def one_hot(states: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(states), N_STATES).float()


def transitions(rows: list[tuple[int, int, int]]) -> TensorDict:
    """TorchRL-layout transitions from (s, a, s') triples; s' == GOAL terminates."""
    s, a, s_next = map(list, zip(*rows))
    terminated = torch.tensor([x == GOAL for x in s_next]).unsqueeze(-1)
    n = len(rows)
    return TensorDict(
        {
            "observation": one_hot(s),
            "action": torch.tensor(a),
            "next": {
                "observation": one_hot(s_next),
                "reward": torch.zeros(n, 1),
                "terminated": terminated,
                "truncated": torch.zeros(n, 1, dtype=torch.bool),
                "done": terminated.clone(),
            },
        },
        batch_size=[n],
    )


def expert_demos(starts=(1, 7)) -> TensorDict:
    rows = []
    for s in starts:
        while s != GOAL:
            a = expert_action(s)
            rows.append((s, a, step(s, a)))
            s = rows[-1][2]
    return transitions(rows)


def random_rollouts(n: int, generator: torch.Generator) -> TensorDict:
    rows, s = [], int(torch.randint(0, N_STATES, (1,), generator=generator))
    while len(rows) < n:
        if s == GOAL:
            s = int(torch.randint(0, N_STATES, (1,), generator=generator))
            continue
        a = int(torch.randint(0, 3, (1,), generator=generator))
        rows.append((s, a, step(s, a)))
        s = rows[-1][2]
    return transitions(rows)


def test_sqil_greedy_policy_takes_the_expert_action_in_every_demo_state_and_returns_to_demos():
    torch.manual_seed(0)
    demos = expert_demos()
    demo_states = sorted(set(demos["observation"].argmax(-1).tolist()))
    assert demo_states == [1, 2, 3, 5, 6, 7]

    module = SoftQSQIL(
        observation_shape=(N_STATES,), action_space={"n": 3}, hidden_sizes=(32,), gamma=GAMMA,
        temperature=0.1, lambda_samp=1.0, lr=3e-3, target_tau=0.05,
    )
    optimizer = torch.optim.Adam(module.q_network.parameters(), lr=module.hparams.lr)
    module.on_train_start()

    buffer = make_sqil_buffer(demo_rows(demos, 1.0, GAMMA, absorbing=True), 1000, 0.5, 32)
    buffer.extend(agent_rows(random_rollouts(300, torch.Generator().manual_seed(0))))

    for i, [batch] in enumerate(itertools.islice(iter(ReplayBatches(buffer, 32, chunk=50)), 1500)):
        optimizer.zero_grad()
        module.losses(batch)["loss"].backward()
        optimizer.step()
        module.update_target()

    with torch.no_grad():
        greedy = module.q_network(one_hot(list(range(N_STATES)))).argmax(-1).tolist()
    assert [greedy[s] for s in demo_states] == [expert_action(s) for s in demo_states]
    # States 0 and 8 never appear in the demos: the soft Bellman backup through the random
    # rollouts makes the agent move back toward the demonstrated states (paper sec. 1, 3).
    assert [greedy[0], greedy[8]] == [RIGHT, LEFT]
