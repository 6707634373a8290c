"""SQIL for continuous actions: soft actor-critic on relabelled, balanced batches (paper sec. 5.4).

As in the paper, SAC itself is unchanged: the replay's demo rows carry reward r and the agent's
rows 0 (`sqil_lightning.data.replay`), and λ_samp weighs the critic's squared soft Bellman error on the
agent's rows. The actor and the temperature train on every row of the batch, as in plain SAC.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import InteractionType, NormalParamExtractor, TensorDictModule, TensorDictModuleBase, set_interaction_type
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate

from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.base import OffPolicyLearner, check_hyperparameter
from sqil_lightning.learners.networks import build_network, build_state_action_network
from sqil_lightning.learners.soft_bellman import partition_mean, sqil_loss


class MeanActionPolicy(TensorDictModuleBase):
    """SAC's actor acting with its deterministic action tanh(μ) (scaled to the action bounds)."""

    def __init__(self, actor: ProbabilisticActor) -> None:
        super().__init__()
        self.actor = actor
        self.in_keys = actor.in_keys
        self.out_keys = actor.out_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        with set_interaction_type(InteractionType.DETERMINISTIC):
            return self.actor(tensordict)


class SACSQIL(OffPolicyLearner):
    """Soft actor-critic (twin Q, tanh-Gaussian actor, learned temperature) on SQIL's replay.

    Built on TorchRL's `SACLoss`; one Adam optimizer with a parameter group per part (actor,
    critics, temperature), so ``global_step`` counts training steps (Lightning issue 17958).

    Args:
        observation_shape: shape of one observation (linked from the datamodule's env).
        action_space: the env's actions, linked from the datamodule: ``{"low": [...], "high": [...]}``,
            the bounds of each Box action dimension (discrete actions, ``{"n": N}``, are rejected:
            use `SoftQSQIL`).
        hidden_sizes: widths of the actor's and each critic's hidden layers (paper A.2: 256x256).
        gamma: discount γ of the soft Bellman backup.
        lambda_samp: weight λ_samp of the critic's squared soft Bellman error on the agent's own
            experience (paper sec. 5.4 and A.2: 1 for Humanoid and HalfCheetah).
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the twin critics.
        alpha_lr: Adam learning rate of log α, the learned temperature.
        alpha_init: initial temperature α.
        target_entropy: entropy the temperature is tuned towards; ``auto`` is -(action dims).
        target_tau: Polyak rate of the target critics, updated after every gradient step.
        encoder: ``null`` for MLPs on vector observations, or a CNN for images [C, H, W] (as for
            `SoftQSQIL`): the actor's and each critic's own encoder, the action joining the
            critic after it.
        layer_norm: LayerNorm after each hidden layer of the critics and their targets (critic
            normalisation; the actor stays a plain MLP); false is the paper's.
    """

    deterministic_label = "mean_action"

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        action_space: dict[str, Any],
        hidden_sizes: tuple[int, ...] = (256, 256),
        gamma: float = 0.99,
        lambda_samp: float = 1.0,
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        alpha_lr: float = 3e-4,
        alpha_init: float = 1.0,
        target_entropy: float | str = "auto",
        target_tau: float = 0.005,
        encoder: str | None = None,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if "low" not in action_space or "high" not in action_space:
            raise ConfigError(
                "model sqil_lightning.SACSQIL needs continuous (Box) actions and data.env_id has discrete ones; "
                "use model.class_path sqil_lightning.SoftQSQIL (see conf/lunarlander.yaml)"
            )
        check_hyperparameter("gamma", gamma, 0.0, 1.0, low_inclusive=True)
        check_hyperparameter("lambda_samp", lambda_samp, 0.0)
        for name, lr in (("actor_lr", actor_lr), ("critic_lr", critic_lr), ("alpha_lr", alpha_lr)):
            check_hyperparameter(name, lr, 0.0, low_inclusive=False)
        check_hyperparameter("alpha_init", alpha_init, 0.0, low_inclusive=False)
        check_hyperparameter("target_tau", target_tau, 0.0, 1.0, low_inclusive=False)
        if isinstance(target_entropy, str) and target_entropy != "auto":
            raise ConfigError(f"model.target_entropy = {target_entropy!r} is invalid; give a number or 'auto'")
        self.save_hyperparameters()
        low, high = torch.tensor(action_space["low"]), torch.tensor(action_space["high"])
        action_spec = Bounded(low=low, high=high, shape=low.shape)
        self.actor = self._make_actor(tuple(observation_shape), action_spec, list(hidden_sizes), encoder)
        critic = ValueOperator(
            build_state_action_network(tuple(observation_shape), low.numel(), list(hidden_sizes), encoder, layer_norm),
            in_keys=["observation", "action"],
        )
        self.sac_loss = SACLoss(
            self.actor,
            critic,
            num_qvalue_nets=2,
            loss_function="l2",  # the squared soft Bellman error of Eq. 16
            alpha_init=alpha_init,
            action_spec=action_spec,
            target_entropy=target_entropy,
            reduction="none",  # per-row losses, so λ_samp can weigh the partitions
            use_prioritized_weights=False,
            scalar_output_mode="exclude",
        )
        self.sac_loss.make_value_estimator(gamma=gamma)
        # SACLoss registers its target-entropy buffer on first read; read it now, so a fresh
        # module has the same state_dict keys as a trained one and checkpoints load strictly.
        _ = self.sac_loss.target_entropy
        self.target_update = SoftUpdate(self.sac_loss, tau=target_tau)

    @staticmethod
    def _make_actor(
        observation_shape: tuple[int, ...], action_spec: Bounded, hidden_sizes: list[int], encoder: str | None
    ) -> ProbabilisticActor:
        """Tanh-Gaussian actor: a network (MLP, or CNN for images) emits (μ, σ); actions are
        tanh(N(μ, σ)) scaled to the bounds."""
        network = nn.Sequential(
            build_network(observation_shape, 2 * action_spec.shape[-1], hidden_sizes, encoder),
            # σ ≥ 0.1, the lower bound of TorchRL's SAC recipe (sota-implementations/sac, scale_lb).
            NormalParamExtractor(scale_lb=0.1),
        )
        return ProbabilisticActor(
            TensorDictModule(network, in_keys=["observation"], out_keys=["loc", "scale"]),
            in_keys=["loc", "scale"],
            spec=action_spec,
            distribution_class=TanhNormal,
            distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
            default_interaction_type=InteractionType.RANDOM,
        )

    def policy(self, deterministic: bool) -> TensorDictModuleBase:
        """The sampling actor (used to collect) or its mean action (evaluation).

        Both share the trained actor's parameters, so a collector always acts with the latest weights.
        """
        return MeanActionPolicy(self.actor) if deterministic else self.actor

    def losses(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        losses, is_demo = self.sac_loss(batch), batch["is_demo"]
        critic_loss = sqil_loss(losses["loss_qvalue"], is_demo, self.hparams.lambda_samp)
        actor_loss, alpha_loss = losses["loss_actor"].mean(), losses["loss_alpha"].mean()
        critic_error = losses["loss_qvalue"].detach()
        return {
            "loss": critic_loss + actor_loss + alpha_loss,
            "loss_critic": critic_loss.detach(),
            "loss_actor": actor_loss.detach(),
            "loss_alpha": alpha_loss.detach(),
            "alpha": self.sac_loss.log_alpha.detach().exp(),
            "critic_error_demo": partition_mean(critic_error, is_demo),
            "critic_error_online": partition_mean(critic_error, ~is_demo),
        }

    def update_target(self) -> None:
        self.target_update.step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return self.adam(
            [
                {"params": list(self.sac_loss.actor_network_params.values(True, True)), "lr": hp.actor_lr},
                {"params": list(self.sac_loss.qvalue_network_params.values(True, True)), "lr": hp.critic_lr},
                {"params": [self.sac_loss.log_alpha], "lr": hp.alpha_lr},
            ]
        )

