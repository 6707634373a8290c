"""The baselines' training losses (SQIL-T, behavioural cloning, GAIL) against hand computations.

Every expected value is written out with plain torch ops on a small fixed batch: the networks are
read as lists of (weight, bias) pairs and evaluated by hand, never through the modules' own helpers
(`soft_value`, `sqil_loss`, `soft_bellman_errors`, `learned_reward` …). The last tests cover the
datamodule's ``rollout_policy`` knob (who acts in the agent's rollouts).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from sqil_lightning.learners.bc import BehaviouralCloning
from sqil_lightning.data.datamodule import SQILDataModule
from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.gail import GAILSoftQ
from sqil_lightning.learners.soft_q import SoftQSQIL
from sqil_lightning.learners.sqil_t import SoftQSQILT

OBS_DIM, N_ACTIONS = 3, 4
GAMMA, ALPHA, LAMBDA_SAMP, BC_WEIGHT = 0.9, 0.5, 0.3, 0.7
# Demo and agent rows interleaved (4 of each: GAILLoss pairs them), so a loss that picked rows by
# position instead of by ``is_demo`` would show.
IS_DEMO = [True, False, True, False, True, True, False, False]


# --- hand computations -------------------------------------------------------------------------------


def _layers(sequential: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (weight, bias) pairs of an `mlp` (Linear → ReLU → … → Linear)."""
    return [(m.weight, m.bias) for m in sequential if isinstance(m, nn.Linear)]


def _mlp_by_hand(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """x W0ᵀ + b0 → ReLU → … → last layer without activation, written out."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = torch.clamp(x, min=0.0)
    return x


def _soft_value_by_hand(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """α · log Σ_a exp(Q(s, a) / α), with the max subtracted for stability."""
    scaled = q / alpha
    top = scaled.max(dim=-1, keepdim=True).values
    return alpha * (top.squeeze(-1) + torch.log(torch.exp(scaled - top).sum(dim=-1)))


def _bellman_squared_errors_by_hand(module: SoftQSQIL, batch: TensorDict, reward: torch.Tensor) -> torch.Tensor:
    """(Q(s, a) − [r + γ · (1 − terminated) · V_target(s')])² per row; ``reward`` has shape [B]."""
    q = _mlp_by_hand(batch["observation"], _layers(module.q_network))
    q_taken = q[torch.arange(len(batch)), batch["action"]]
    with torch.no_grad():
        next_q = _mlp_by_hand(batch["next", "observation"], _layers(module.target_network))
        not_terminated = 1.0 - batch["next", "terminated"].squeeze(-1).float()
        target = reward + GAMMA * not_terminated * _soft_value_by_hand(next_q, ALPHA)
    return (q_taken - target) ** 2


def _hand_batch(seed: int = 1) -> TensorDict:
    """Eight transitions, half demos: one terminated demo row, one terminated and one truncated agent row."""
    g = torch.Generator().manual_seed(seed)
    n = len(IS_DEMO)
    terminated = torch.tensor([False, False, True, True, False, False, False, False]).unsqueeze(-1)
    truncated = torch.tensor([False, False, False, False, False, False, False, True]).unsqueeze(-1)
    return TensorDict(
        {
            "observation": torch.randn(n, OBS_DIM, generator=g),
            "action": torch.tensor([0, 1, 2, 3, 1, 3, 0, 2]),
            "is_demo": torch.tensor(IS_DEMO),
            "next": {
                "observation": torch.randn(n, OBS_DIM, generator=g),
                "reward": torch.tensor([0.0, 0.5, 0.0, -1.0, 0.0, 0.0, 2.0, 0.25]).unsqueeze(-1),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[n],
    )


def _perturb_target_network(module: SoftQSQIL) -> None:
    """Make the target network differ from the trained one, so using the wrong one shows."""
    with torch.no_grad():
        for p in module.target_network.parameters():
            p.add_(0.3 * torch.randn_like(p))


def _common_kwargs() -> dict:
    return dict(
        observation_shape=(OBS_DIM,),
        action_space={"n": N_ACTIONS},
        hidden_sizes=(8,),
        gamma=GAMMA,
        temperature=ALPHA,
        lambda_samp=LAMBDA_SAMP,
    )


# --- SQIL-T: cloning through the Q-network + Bellman terms -------------------------------------------------


def _sqil_t() -> SoftQSQILT:
    torch.manual_seed(0)
    module = SoftQSQILT(**_common_kwargs(), bc_weight=BC_WEIGHT)
    _perturb_target_network(module)
    return module


def test_sqil_t_loss_is_weighted_cloning_plus_sqil_bellman_loss():
    module = _sqil_t()
    batch = _hand_batch()

    losses = module.losses(batch)

    demo = batch["is_demo"]
    with torch.no_grad():
        q = _mlp_by_hand(batch["observation"], _layers(module.q_network))
        q_taken = q[torch.arange(len(batch)), batch["action"]]
        # α · −(Q(s, a) − V(s)) (appendix A.1), V from the *trained* network (Q − V = α log π(a|s)).
        cloning = ALPHA * -(q_taken - _soft_value_by_hand(q, ALPHA))[demo].mean()
        errors = _bellman_squared_errors_by_hand(module, batch, batch["next", "reward"].squeeze(-1))
        bellman = errors[demo].mean() + LAMBDA_SAMP * errors[~demo].mean()
    torch.testing.assert_close(losses["loss"].detach(), BC_WEIGHT * cloning + bellman)
    torch.testing.assert_close(losses["cloning"], cloning)
    torch.testing.assert_close(losses["soft_bellman"], bellman)
    assert cloning > 0  # −α² log π of a proper distribution: the check above is not vacuous


def test_sqil_t_cloning_gradient_raises_the_demo_action_against_the_others():
    module = _sqil_t()
    batch = _hand_batch()
    demo = batch["is_demo"]
    outputs: list[torch.Tensor] = []

    def keep_output(_module, _inputs, output):
        output.retain_grad()
        outputs.append(output)

    handle = module.q_network.register_forward_hook(keep_output)
    # The cloning term alone, through the module's own computation: the Bellman terms cancel.
    module.hparams.bc_weight = 1.0
    with_cloning = module.losses(batch)["loss"]
    module.hparams.bc_weight = 0.0
    without_cloning = module.losses(batch)["loss"]
    handle.remove()
    cloning = with_cloning - without_cloning
    params = list(module.q_network.parameters())
    for p in params:
        p.grad = None
    cloning.backward()

    # d/dQ(s, ·) of mean_demo −α² log softmax(Q/α)[a] = α (softmax(Q(s, ·)/α) − onehot(a)) / n_demo.
    grad_q = sum(o.grad for o in outputs)
    q = outputs[0].detach()
    probs = torch.exp(q / ALPHA - (q / ALPHA).max(-1, keepdim=True).values)
    probs = probs / probs.sum(-1, keepdim=True)
    one_hot = torch.zeros_like(q)
    one_hot[torch.arange(len(batch)), batch["action"]] = 1.0
    expected = ALPHA * (probs - one_hot) / demo.sum()
    expected[~demo] = 0.0
    torch.testing.assert_close(grad_q, expected)
    taken = grad_q[torch.arange(len(batch)), batch["action"]]
    assert (taken[demo] < 0).all()  # descent raises Q(s, demo action) …
    others = grad_q[demo].clone()
    others[torch.arange(int(demo.sum())), batch["action"][demo]] = 0.0
    assert (others >= 0).all() and (others.sum(-1) > 0).all()  # … and lowers the other actions

    # One SGD step on the cloning term raises the demo actions' log-likelihood under π ∝ exp(Q/α).
    def demo_log_likelihood() -> torch.Tensor:
        with torch.no_grad():
            logits = _mlp_by_hand(batch["observation"], _layers(module.q_network)) / ALPHA
            log_pi = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
            return log_pi[torch.arange(len(batch)), batch["action"]][demo]

    before = demo_log_likelihood()
    with torch.no_grad():
        for p in params:
            p -= 0.05 * p.grad
    after = demo_log_likelihood()
    assert after.mean() > before.mean()


# --- behavioural cloning ---------------------------------------------------------------------------------


def _bc() -> BehaviouralCloning:
    torch.manual_seed(0)
    module = BehaviouralCloning(observation_shape=(OBS_DIM,), action_space={"n": N_ACTIONS}, hidden_sizes=(8,))
    return module


def test_bc_loss_is_cross_entropy_of_the_policy_logits_on_demo_rows():
    module = _bc()
    batch = _hand_batch()

    loss = module.losses(batch)["loss"]

    demo = batch["is_demo"]
    with torch.no_grad():
        logits = _mlp_by_hand(batch["observation"], _layers(module.policy_network))
        nll = torch.logsumexp(logits, dim=-1) - logits[torch.arange(len(batch)), batch["action"]]
    torch.testing.assert_close(loss.detach(), nll[demo].mean())
    # The same over all rows differs on this batch, so the check above sees the row selection.
    assert not torch.isclose(nll[demo].mean(), nll.mean())


def test_bc_loss_ignores_the_agent_rows():
    module = _bc()
    batch = _hand_batch()
    loss = module.losses(batch)["loss"].detach()

    changed = batch.clone()
    agent = ~changed["is_demo"]
    changed["action"][agent] = (changed["action"][agent] + 1) % N_ACTIONS
    changed["observation"][agent] = changed["observation"][agent] * -3.0 + 1.0
    changed["next", "reward"][agent] = 100.0
    torch.testing.assert_close(module.losses(changed)["loss"].detach(), loss, rtol=0, atol=0)

    # Control: a demo row's action does move the loss.
    changed_demo = batch.clone()
    changed_demo["action"][0] = (changed_demo["action"][0] + 1) % N_ACTIONS
    assert module.losses(changed_demo)["loss"].detach() != loss


# --- GAIL: discriminator BCE + Bellman on the agent's rows with the learned reward ----------------------------


def _gail() -> GAILSoftQ:
    torch.manual_seed(0)
    module = GAILSoftQ(**_common_kwargs(), discriminator_hidden_sizes=(8,))
    _perturb_target_network(module)
    return module


def _discriminator_layers(module: GAILSoftQ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """D's live parameters: GAILLoss keeps them (convert_to_functional) in ``discriminator_network_params``."""
    params = module.discriminator_loss.discriminator_network_params
    layers = []
    for i in range(2):  # mlp(obs + actions, 1, [8]): Linear (index 0), ReLU, Linear (index 2)
        layers.append((params["module", "net", str(2 * i), "weight"], params["module", "net", str(2 * i), "bias"]))
    return layers


def _discriminator_probability_by_hand(module: GAILSoftQ, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """D(s, a) = sigmoid(MLP([s, onehot(a)])), shape [B]."""
    one_hot = torch.zeros(len(action), N_ACTIONS)
    one_hot[torch.arange(len(action)), action] = 1.0
    logit = _mlp_by_hand(torch.cat([observation, one_hot], dim=-1), _discriminator_layers(module)).squeeze(-1)
    return 1.0 / (1.0 + torch.exp(-logit))


def _gail_terms_by_hand(module: GAILSoftQ, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
    """(discriminator BCE, agent-row Bellman mean), both with autograd graphs to the parameters."""
    demo = batch["is_demo"]
    expert, agent = batch[demo], batch[~demo]
    p_expert = _discriminator_probability_by_hand(module, expert["observation"], expert["action"])
    p_agent = _discriminator_probability_by_hand(module, agent["observation"], agent["action"])
    discriminator = (-torch.log(p_expert)).mean() + (-torch.log(1.0 - p_agent)).mean()
    reward = (torch.log(p_agent) - torch.log(1.0 - p_agent)).detach()  # the stored reward is ignored
    bellman = _bellman_squared_errors_by_hand(module, agent, reward).mean()
    return discriminator, bellman


def test_gail_discriminator_parameters_are_shared_and_learned_reward_is_its_logit():
    module = _gail()
    batch = _hand_batch()
    # The stateless module inside GAILLoss and `module.discriminator` read the same tensors.
    for (w, b), linear in zip(_discriminator_layers(module), [m for m in module.discriminator.net if isinstance(m, nn.Linear)]):
        assert w is linear.weight and b is linear.bias
    with torch.no_grad():
        p = _discriminator_probability_by_hand(module, batch["observation"], batch["action"])
    reward = module.learned_reward(batch["observation"], batch["action"])
    assert reward.shape == (len(batch), 1)
    torch.testing.assert_close(reward.squeeze(-1), torch.log(p / (1.0 - p)))


def test_gail_loss_is_discriminator_bce_plus_agent_bellman_with_learned_reward():
    module = _gail()
    batch = _hand_batch()

    losses = module.losses(batch)
    loss = losses["loss"]

    discriminator, bellman = _gail_terms_by_hand(module, batch)
    torch.testing.assert_close(loss.detach(), (discriminator + bellman).detach())
    torch.testing.assert_close(losses["discriminator"], discriminator.detach())
    torch.testing.assert_close(losses["soft_bellman"], bellman.detach())

    # Gradients: D gets only its BCE (the reward is a constant to the Q-learner), Q only the Bellman term.
    loss.backward()
    d_params = [t for layer in _discriminator_layers(module) for t in layer]
    q_params = list(module.q_network.parameters())
    for p, g in zip(d_params, torch.autograd.grad(discriminator, d_params)):
        torch.testing.assert_close(p.grad, g)
    for p, g in zip(q_params, torch.autograd.grad(bellman, q_params)):
        torch.testing.assert_close(p.grad, g)
    assert all(p.grad is None for p in module.target_network.parameters())


def test_gail_bellman_term_skips_demo_rows_and_ignores_the_stored_reward():
    module = _gail()
    batch = _hand_batch()
    losses = module.losses(batch)
    loss, bellman = losses["loss"].detach(), losses["soft_bellman"]
    demo = batch["is_demo"]

    # Demo rows' transitions (next state, reward, termination) do not reach the Bellman term.
    changed = batch.clone()
    changed["next", "observation"][demo] = changed["next", "observation"][demo] * 5.0 - 2.0
    changed["next", "reward"][demo] = 50.0
    changed["next", "terminated"][demo] = ~changed["next", "terminated"][demo]
    changed_losses = module.losses(changed)
    torch.testing.assert_close(changed_losses["loss"].detach(), loss, rtol=0, atol=0)
    torch.testing.assert_close(changed_losses["soft_bellman"], bellman, rtol=0, atol=0)

    # The agent rows' stored reward is replaced by the discriminator's.
    changed = batch.clone()
    changed["next", "reward"][~demo] = torch.tensor([[7.0], [-3.0], [1.5], [40.0]])
    torch.testing.assert_close(module.losses(changed)["loss"].detach(), loss, rtol=0, atol=0)

    # Control: the agent rows' next state does move the Bellman term.
    changed = batch.clone()
    changed["next", "observation"][~demo] = changed["next", "observation"][~demo] * 5.0 - 2.0
    assert module.losses(changed)["soft_bellman"] != bellman


# --- data.rollout_policy ------------------------------------------------------------------------------------


def _datamodule(demo_file, **overrides) -> SQILDataModule:
    kwargs = dict(
        env_id="LunarLander-v3",
        demo_path=str(demo_file),
        demo_expert=None,
        batch_size=8,
        initial_env_steps=400,
        rollout_env_steps=50,
        sample_chunk=1,
        seed=0,
    )
    kwargs.update(overrides)
    return SQILDataModule(**kwargs)


def test_unknown_rollout_policy_is_a_config_error_naming_the_choices(lunarlander_demo_file):
    with pytest.raises(ConfigError) as info:
        _datamodule(lunarlander_demo_file, rollout_policy="bogus")
    message = str(info.value)
    assert "data.rollout_policy" in message and "bogus" in message
    assert "'learner'" in message and "'uniform'" in message


def _collected_actions(demo_file, rollout_policy: str) -> torch.Tensor:
    """The actions of the initial rollouts, collected by the datamodule for a learner that always picks action 0."""
    torch.manual_seed(0)
    learner = SoftQSQIL(observation_shape=(8,), action_space={"n": 4}, hidden_sizes=(8,), temperature=0.1)
    with torch.no_grad():  # Q(s, ·) = (10, 0, 0, 0): the Boltzmann policy takes action 0 (1 − 3e-43)
        last = learner.q_network[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    dm = _datamodule(demo_file, rollout_policy=rollout_policy)
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, global_step=0)
    dm.setup("fit")
    dm.connect(learner)
    try:
        dm.train_dataloader()
        online = dm.experience.buffer.online_buffer
        rows = online.storage.get(torch.arange(len(online)))
    finally:
        dm.teardown("fit")
    assert len(rows) >= 400 and not rows["is_demo"].any()
    return rows["action"].reshape(-1)


def test_uniform_rollout_policy_collects_every_action_evenly_whatever_the_learner_prefers(lunarlander_demo_file):
    actions = _collected_actions(lunarlander_demo_file, "uniform")
    freq = torch.bincount(actions, minlength=4).float() / len(actions)
    assert len(freq) == 4
    assert ((freq > 0.15) & (freq < 0.35)).all(), freq

    # Control: with the learner acting, the same setup collects only the learner's action.
    learner_actions = _collected_actions(lunarlander_demo_file, "learner")
    assert (learner_actions == 0).all()
