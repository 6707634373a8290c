"""SAC-SQIL (paper sec. 5.4): the critic trains on relabelled, balanced batches, λ_samp weighs the
agent's rows, the policy acts with its mean action, and a few hundred steps imitate a demo action."""

from __future__ import annotations

import itertools

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives.sac import compute_rsample_log_prob

from sqil_lightning import SACSQIL, SoftQSQIL
from sqil_lightning.errors import ConfigError
from sqil_lightning.data.replay import ReplayBatches, make_sqil_buffer
from sqil_lightning.sqil import agent_rows, demo_rows
from sqil_lightning.learners.soft_bellman import sqil_loss

# A Pendulum-like task: 3-dim observations, one action in [-2, 2].
OBS_DIM = 3
ACTION_SPACE = {"low": [-2.0], "high": [2.0]}
GAMMA = 0.9
N_DEMO, N_ONLINE = 40, 60


def _model(seed: int = 0, **hparams) -> SACSQIL:
    torch.manual_seed(seed)
    model = SACSQIL(observation_shape=(OBS_DIM,), action_space=ACTION_SPACE, hidden_sizes=(16,), gamma=GAMMA, **hparams)
    return model


def _transitions(
    n: int, env_reward: float, seed: int, terminal_every: int | None = None, actions=None, truncated_every: int | None = None
) -> TensorDict:
    """Random Pendulum-shaped transitions paying ``env_reward`` (which SQIL must overwrite).

    Rows ``terminal_every - 1``, ``2 * terminal_every - 1`` … end in a true termination; rows 0,
    ``truncated_every`` … that do not are cut by the time limit (truncated, not terminated).
    """
    gen = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(n, 1, dtype=torch.bool)
    if terminal_every:
        terminated[terminal_every - 1 :: terminal_every] = True
    truncated = torch.zeros(n, 1, dtype=torch.bool)
    if truncated_every:
        truncated[::truncated_every] = True
        truncated &= ~terminated
    if actions is None:
        actions = torch.rand(n, 1, generator=gen) * 4 - 2
    return TensorDict(
        {
            "observation": torch.randn(n, OBS_DIM, generator=gen),
            "action": actions.reshape(n, 1),
            "next": {
                "observation": torch.randn(n, OBS_DIM, generator=gen),
                "reward": torch.full((n, 1), env_reward),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[n],
    )


def _batch(demo_reward: float = 1.0, absorbing: bool = False, n_demo: int = 8, n_online: int = 8) -> TensorDict:
    """A balanced batch by hand: demo rows first (relabelled to r), then the agent's rows (relabelled to 0).

    Each partition holds the three ways a transition can end: terminated (odd rows), cut by the
    time limit (rows 0, 4: how every Pendulum and MuJoCo episode ends) and not at all (rows 2, 6).
    """
    demos = demo_rows(
        _transitions(n_demo, -5.0, seed=1, terminal_every=2, truncated_every=4), demo_reward, GAMMA, absorbing
    )
    online = agent_rows(_transitions(n_online, -5.0, seed=2, terminal_every=2, truncated_every=4))
    return torch.cat([demos, online])


def _loss_pieces(model: SACSQIL, batch: TensorDict, seed: int = 123) -> TensorDict:
    """SACLoss's per-row losses; SACLoss samples actions, so each call is seeded the same."""
    torch.manual_seed(seed)
    return model.sac_loss(batch.clone())


def _q_values(model: SACSQIL, batch: TensorDict) -> torch.Tensor:
    """Q_j(s, a) of both critics, shape [2, B]."""
    loss = model.sac_loss
    values = []
    for params in loss.qvalue_network_params.unbind(0):
        with params.to_module(loss.qvalue_network):
            values.append(loss.qvalue_network(batch.select("observation", "action").clone())["state_action_value"].squeeze(-1))
    return torch.stack(values)


def _critic_targets(model: SACSQIL, batch: TensorDict, seed: int = 123, critic_params=None) -> torch.Tensor:
    """SAC's soft Bellman target y = r + γ · (1 - terminated) · V̄(s'), computed by hand, shape [B].

    V̄(s') = min_j Q̄_j(s', a') - α log π(a'|s'), a' ~ π(·|s'), with the target critics' parameters
    (or ``critic_params``). Seeded as `_loss_pieces`: SACLoss draws a' first, so the draws match.
    """
    loss = model.sac_loss
    critic_params = loss.target_qvalue_network_params if critic_params is None else critic_params
    torch.manual_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        next_state = batch["next"].select("observation").clone()
        next_action, log_prob = compute_rsample_log_prob(model.actor.get_dist(next_state))
        next_state["action"] = next_action
        q_next = []
        for params in critic_params.unbind(0):
            with params.to_module(loss.qvalue_network):
                q_next.append(loss.qvalue_network(next_state.clone())["state_action_value"].squeeze(-1))
        next_value = (torch.stack(q_next) - loss.log_alpha.exp() * log_prob).min(0).values
    reward = batch["next", "reward"].squeeze(-1)
    terminated = batch["next", "terminated"].squeeze(-1)
    return reward + GAMMA * (~terminated).float() * next_value


def _update(model: SACSQIL, optimizer: torch.optim.Optimizer, seed: int) -> None:
    """One gradient update on `_batch` followed by the target update, as `training_step` makes it."""
    torch.manual_seed(seed)
    loss = model.losses(_batch())["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.update_target()


def _params(params) -> dict:
    """A detached copy of a (stacked) parameter TensorDict, by key."""
    return {key: value.detach().clone() for key, value in params.items(True, True)}


# --- the replay feeding the loss -------------------------------------------------------------------


def test_balanced_continuous_batches_have_the_exact_demo_fraction_and_sqil_rewards():
    torch.manual_seed(0)
    demo_reward, batch_size, demo_fraction = 2.5, 16, 0.25
    demos = demo_rows(_transitions(N_DEMO, -7.0, seed=1), demo_reward, GAMMA, absorbing=False)
    buffer = make_sqil_buffer(demos, online_capacity=100, demo_fraction=demo_fraction, batch_size=batch_size)
    buffer.extend(agent_rows(_transitions(N_ONLINE, -7.0, seed=2)))
    for [batch] in itertools.islice(iter(ReplayBatches(buffer, batch_size, chunk=4)), 20):
        assert batch.batch_size == (batch_size,)
        is_demo = batch["is_demo"]
        assert int(is_demo.sum()) == 4
        reward = batch["next", "reward"].squeeze(-1)
        assert (reward[is_demo] == demo_reward).all()
        assert (reward[~is_demo] == 0).all()  # the env paid -7
        assert batch["action"].shape == (batch_size, 1) and batch["action"].dtype == torch.float32
        assert ((batch["action"] >= -2) & (batch["action"] <= 2)).all()


# --- the critic loss -------------------------------------------------------------------------------


def test_critic_loss_of_terminal_rows_is_the_squared_error_to_the_relabelled_reward():
    # Into a terminal state the soft Bellman target is the reward alone, so each row's critic
    # loss is Σ_j (Q_j(s, a) - r)² over both critics: r on demo rows, 0 on the agent's.
    model = _model()
    demo_reward = 3.0
    batch = _batch(demo_reward)
    terminal = batch["next", "terminated"].squeeze(-1)
    loss = _loss_pieces(model, batch)["loss_qvalue"].detach()
    q = _q_values(model, batch).detach()
    target = torch.where(batch["is_demo"], demo_reward, 0.0)
    expected = (q - target).pow(2).sum(0)
    torch.testing.assert_close(loss[terminal], expected[terminal])


def test_absorbing_demo_reward_reaches_the_critic_target_of_terminal_demo_rows():
    model = _model()
    demo_reward = 2.0
    batch = _batch(demo_reward, absorbing=True)
    rows = batch["next", "terminated"].squeeze(-1) & batch["is_demo"]
    loss = _loss_pieces(model, batch)["loss_qvalue"].detach()
    q = _q_values(model, batch).detach()
    torch.testing.assert_close(loss[rows], (q - demo_reward / (1 - GAMMA)).pow(2).sum(0)[rows])


def test_critic_target_bootstraps_through_a_time_limit_truncation():
    # Pendulum and MuJoCo episodes end only by truncation: the state after the cut still has a
    # future, so its target is r + γ V̄(s'), and only a true termination drops V̄(s'). Treating
    # `truncated` (or `done`) as terminal would turn every time limit into a fake death.
    model = _model()
    batch = _batch(demo_reward=1.0)
    truncated = batch["next", "truncated"].squeeze(-1)
    terminated = batch["next", "terminated"].squeeze(-1)
    assert truncated.any() and not (truncated & terminated).any() and (~truncated & ~terminated).any()
    loss = _loss_pieces(model, batch)["loss_qvalue"].detach()
    q = _q_values(model, batch).detach()
    target = _critic_targets(model, batch)
    expected = (q - target).pow(2).sum(0)
    torch.testing.assert_close(loss, expected)
    # The learner's own critic loss (what training minimises) is built on the same targets.
    torch.manual_seed(123)
    critic_loss = model.losses(batch.clone())["loss_critic"]
    torch.testing.assert_close(critic_loss, sqil_loss(expected, batch["is_demo"], model.hparams.lambda_samp))
    # And the bootstrap matters there: a terminal target (the reward alone) is a different loss.
    reward = batch["next", "reward"].squeeze(-1)
    terminal_loss = (q - reward).pow(2).sum(0)
    assert ((loss - terminal_loss).abs()[truncated] > 1e-3).all()


# --- the target critics --------------------------------------------------------------------------------


def test_target_critics_follow_the_online_critics_by_polyak_averaging_after_each_update():
    # θ̄ ← (1 - τ) θ̄ + τ θ after every gradient update: the targets start as copies of the critics,
    # then lag them. Targets equal to the critics (τ = 1, no target networks) or moving at the
    # wrong rate (τ and 1 - τ swapped) break the rule.
    tau = 0.05
    model = _model(target_tau=tau, critic_lr=1e-2)
    loss = model.sac_loss
    online, target = _params(loss.qvalue_network_params), _params(loss.target_qvalue_network_params)
    assert online.keys() == target.keys()
    for key in online:
        torch.testing.assert_close(target[key], online[key], rtol=0, atol=0)
    optimizer = model.configure_optimizers()
    for step in range(3):
        previous_target = _params(loss.target_qvalue_network_params)
        _update(model, optimizer, seed=step)
        online, target = _params(loss.qvalue_network_params), _params(loss.target_qvalue_network_params)
        for key in online:
            torch.testing.assert_close(target[key], (1 - tau) * previous_target[key] + tau * online[key])
    lag = max((online[key] - target[key]).abs().max().item() for key in online)
    assert lag > 1e-3


def test_critic_target_is_computed_with_the_target_critics_not_the_online_ones():
    # After a few updates the targets lag the critics; the soft Bellman target must read the
    # lagging copies (what stabilises SAC), not the critics being trained.
    model = _model(target_tau=0.05, critic_lr=1e-2)
    optimizer = model.configure_optimizers()
    for step in range(5):
        _update(model, optimizer, seed=step)
    batch = _batch()
    loss = _loss_pieces(model, batch)["loss_qvalue"].detach()
    q = _q_values(model, batch).detach()
    with_targets = (q - _critic_targets(model, batch)).pow(2).sum(0)
    with_online = (q - _critic_targets(model, batch, critic_params=model.sac_loss.qvalue_network_params.detach())).pow(2).sum(0)
    torch.testing.assert_close(loss, with_targets)
    bootstrapped = ~batch["next", "terminated"].squeeze(-1)
    assert (loss - with_online).abs()[bootstrapped].max() > 1e-3


def test_changing_the_demo_reward_changes_the_critic_loss_of_demo_rows_only():
    model = _model()
    low = _loss_pieces(model, _batch(demo_reward=1.0))
    high = _loss_pieces(model, _batch(demo_reward=4.0))
    is_demo = _batch()["is_demo"]
    demo_gap = (low["loss_qvalue"] - high["loss_qvalue"]).abs()[is_demo]
    assert (demo_gap > 1e-3).all()
    torch.testing.assert_close(low["loss_qvalue"][~is_demo], high["loss_qvalue"][~is_demo], rtol=0, atol=0)
    # The actor and temperature never see rewards.
    torch.testing.assert_close(low["loss_actor"], high["loss_actor"], rtol=0, atol=0)
    torch.testing.assert_close(low["loss_alpha"], high["loss_alpha"], rtol=0, atol=0)


def test_loss_is_sqil_critic_loss_plus_mean_actor_and_alpha_losses():
    lambda_samp = 0.25
    model = _model(lambda_samp=lambda_samp)
    batch = _batch()
    pieces = _loss_pieces(model, batch)
    expected = (
        sqil_loss(pieces["loss_qvalue"], batch["is_demo"], lambda_samp)
        + pieces["loss_actor"].mean()
        + pieces["loss_alpha"].mean()
    )
    torch.manual_seed(123)
    loss = model.losses(batch.clone())["loss"]
    assert loss.shape == ()
    torch.testing.assert_close(loss, expected)
    # λ_samp really weighs the partitions: an unweighted mean over the batch is a different loss.
    unweighted = pieces["loss_qvalue"].mean() + pieces["loss_actor"].mean() + pieces["loss_alpha"].mean()
    assert not torch.isclose(loss, unweighted)


def _logged(model: SACSQIL, batch: TensorDict) -> dict[str, float]:
    """What a logging step logs (Lightning's `log` replaced by a recorder)."""
    logged = {}
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    torch.manual_seed(123)
    model.log_losses(model.losses(batch.clone()))
    return logged


def test_a_logging_step_logs_the_critic_error_of_each_partition():
    model = _model(lambda_samp=0.25)
    batch = _batch()
    pieces = _loss_pieces(model, batch)["loss_qvalue"].detach()
    logged = _logged(model, batch)
    is_demo = batch["is_demo"]
    assert logged["train/critic_error_demo"] == pytest.approx(pieces[is_demo].mean().item(), rel=1e-5)
    assert logged["train/critic_error_online"] == pytest.approx(pieces[~is_demo].mean().item(), rel=1e-5)
    assert logged["train/loss_critic"] == pytest.approx(sqil_loss(pieces, is_demo, 0.25).item(), rel=1e-5)
    assert logged["train/alpha"] == pytest.approx(1.0)  # alpha_init, before any update


def test_a_batch_without_demo_rows_logs_no_demo_error_and_trains_on_the_plain_mean():
    # Reward source `env`: plain SAC, whatever λ_samp says.
    model = _model(lambda_samp=0.25)
    batch = _batch()[8:]
    assert not batch["is_demo"].any()
    pieces = _loss_pieces(model, batch)["loss_qvalue"].detach()
    logged = _logged(model, batch)
    assert "train/critic_error_demo" not in logged
    assert logged["train/loss_critic"] == pytest.approx(pieces.mean().item(), rel=1e-5)


def _perturb_online_next_observations(batch: TensorDict) -> TensorDict:
    out = batch.clone()
    online = ~out["is_demo"]
    out["next", "observation"][online] += 10.0
    out["next", "terminated"][online] = False  # so the next state enters the target
    return out


@pytest.mark.parametrize("lambda_samp,ignored", [(0.0, True), (1.0, False)], ids=["lambda0", "lambda1"])
def test_lambda_samp_zero_makes_the_loss_ignore_the_agents_rows(lambda_samp, ignored):
    model = _model(lambda_samp=lambda_samp)
    batch = _batch()
    perturbed = _perturb_online_next_observations(batch)

    def loss_and_critic_grads(b: TensorDict):
        model.zero_grad()
        torch.manual_seed(7)
        loss = model.losses(b.clone())["loss"]
        loss.backward()
        grads = [p.grad.clone() for p in model.sac_loss.qvalue_network_params.values(True, True)]
        return loss.detach(), grads

    loss, grads = loss_and_critic_grads(batch)
    loss_p, grads_p = loss_and_critic_grads(perturbed)
    if ignored:
        torch.testing.assert_close(loss_p, loss, rtol=0, atol=0)
        for g, g_p in zip(grads, grads_p):
            torch.testing.assert_close(g_p, g, rtol=0, atol=0)
    else:
        assert not torch.equal(loss_p, loss)
        assert any(not torch.equal(g, g_p) for g, g_p in zip(grads, grads_p))


def test_critic_gradient_from_the_agents_rows_is_zero_with_lambda_samp_zero():
    model = _model(lambda_samp=0.0)
    batch = _batch()
    pieces = _loss_pieces(model, batch)
    online_part = pieces["loss_qvalue"] * (~batch["is_demo"]).float()
    critic_loss = sqil_loss(pieces["loss_qvalue"], batch["is_demo"], 0.0)
    params = list(model.sac_loss.qvalue_network_params.values(True, True))
    # The SQIL loss's gradient equals that of its demo term alone …
    demo_only = (pieces["loss_qvalue"] * batch["is_demo"].float()).sum() / batch["is_demo"].sum()
    g_sqil = torch.autograd.grad(critic_loss, params, retain_graph=True)
    g_demo = torch.autograd.grad(demo_only, params, retain_graph=True)
    for a, b in zip(g_sqil, g_demo):
        torch.testing.assert_close(a, b)
    # … while the agent's rows do carry a gradient that λ_samp = 0 drops.
    g_online = torch.autograd.grad(online_part.sum(), params)
    assert any(g.abs().sum() > 0 for g in g_online)


# --- learning ----------------------------------------------------------------------------------------


DEMO_ACTION, STATE = 1.5, [1.0, 0.0, 0.0]


def _one_step_rows(actions: torch.Tensor) -> TensorDict:
    """One fixed state; every step ends the episode, and the env pays -1 whatever the action."""
    n = actions.numel()
    terminated = torch.ones(n, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.tensor([STATE]).expand(n, OBS_DIM).clone(),
            "action": actions.reshape(n, 1),
            "next": {
                "observation": torch.zeros(n, OBS_DIM),
                "reward": torch.full((n, 1), -1.0),
                "terminated": terminated,
                "truncated": ~terminated,
                "done": terminated,
            },
        },
        batch_size=[n],
    )


def test_a_few_hundred_steps_learn_a_higher_q_for_the_demo_action_and_act_towards_it():
    model = _model(seed=0, critic_lr=3e-3, actor_lr=3e-3, alpha_lr=3e-3)
    demos = demo_rows(_one_step_rows(torch.full((16,), DEMO_ACTION)), 1.0, GAMMA, absorbing=False)
    buffer = make_sqil_buffer(demos, online_capacity=1000, demo_fraction=0.5, batch_size=64)
    buffer.extend(agent_rows(_one_step_rows(torch.rand(256) * 4 - 2)))
    optimizer = model.configure_optimizers()
    probe = _one_step_rows(torch.tensor([DEMO_ACTION, -1.5, 0.0]))
    observation = TensorDict({"observation": torch.tensor([STATE])}, batch_size=[1])
    start_action = model.policy(deterministic=True)(observation.clone())["action"].item()
    assert start_action < 0.5  # the untrained actor does not already act like the demos
    for i, [batch] in enumerate(itertools.islice(iter(ReplayBatches(buffer, 64, chunk=32)), 300)):
        loss = model.losses(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.update_target()
    q_demo, q_other, q_zero = _q_values(model, probe).min(0).values.tolist()
    assert q_demo > 0.5 and q_demo > q_other + 0.5 and q_demo > q_zero + 0.5
    assert model.policy(deterministic=True)(observation.clone())["action"].item() > 0.75


# --- configuration errors ---------------------------------------------------------------------------


def test_sac_rejects_discrete_actions_naming_the_soft_q_learner():
    with pytest.raises(ConfigError, match="SoftQSQIL"):
        SACSQIL(observation_shape=(OBS_DIM,), action_space={"n": 4})


def test_soft_q_rejects_box_actions_naming_the_sac_learner():
    with pytest.raises(ConfigError, match="SACSQIL"):
        SoftQSQIL(observation_shape=(OBS_DIM,), action_space=ACTION_SPACE)


@pytest.mark.parametrize(
    "name,value",
    [
        ("lambda_samp", -1.0),
        ("target_tau", 0.0),
        ("target_tau", 1.5),
        ("gamma", 1.5),
        ("actor_lr", 0.0),
        ("critic_lr", -1e-3),
        ("alpha_lr", 0.0),
        ("alpha_init", 0.0),
        ("target_entropy", "foo"),
    ],
)
def test_bad_hyperparameter_is_a_config_error_naming_the_key(name, value):
    with pytest.raises(ConfigError, match=f"model.{name}"):
        SACSQIL(observation_shape=(OBS_DIM,), action_space=ACTION_SPACE, hidden_sizes=(16,), **{name: value})


def test_numeric_target_entropy_is_accepted_and_used():
    model = SACSQIL(observation_shape=(OBS_DIM,), action_space=ACTION_SPACE, hidden_sizes=(16,), target_entropy=-3.0)
    assert model.sac_loss.target_entropy.item() == -3.0


# --- the policies ------------------------------------------------------------------------------------


def _observations(n: int = 64) -> TensorDict:
    return TensorDict({"observation": torch.randn(n, OBS_DIM, generator=torch.Generator().manual_seed(5)) * 3}, [n])


def test_deterministic_policy_acts_with_the_tanh_squashed_mean_within_bounds():
    model = _model()
    obs = _observations()
    first = model.policy(deterministic=True)(obs.clone())["action"]
    torch.manual_seed(99)  # the mean action does not depend on the random state
    second = model.policy(deterministic=True)(obs.clone())["action"]
    assert first.shape == (64, 1)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert ((first >= -2) & (first <= 2)).all()
    loc = model.actor.module[0](obs.clone())["loc"]
    # tanh(μ) mapped from [-1, 1] onto [low, high] = [-2, 2].
    torch.testing.assert_close(first, 2.0 * torch.tanh(loc))


def test_stochastic_policy_samples_different_actions_within_bounds():
    model = _model()
    obs = _observations()
    torch.manual_seed(1)
    first = model.policy(deterministic=False)(obs.clone())["action"]
    second = model.policy(deterministic=False)(obs.clone())["action"]
    mean = model.policy(deterministic=True)(obs.clone())["action"]
    assert ((first >= -2) & (first <= 2)).all() and ((second >= -2) & (second <= 2)).all()
    assert (first - second).abs().max() > 0.1
    assert (first - mean).abs().max() > 0.1


def test_both_policies_share_the_trained_actors_parameters():
    model = _model()
    obs = _observations(4)
    before = model.policy(deterministic=True)(obs.clone())["action"]
    with torch.no_grad():
        for p in model.actor.parameters():
            p.add_(0.5)
    after = model.policy(deterministic=True)(obs.clone())["action"]
    assert not torch.allclose(before, after)
