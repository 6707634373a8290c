"""Soft Q-learning for discrete actions (`SoftQLearner`), and SQIL on it: soft Q-learning on
relabelled, balanced batches (paper Algorithm 1, `SoftQSQIL`)."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule

from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.base import OffPolicyLearner, check_hyperparameter
from sqil_lightning.learners.networks import build_network
from sqil_lightning.learners.policies import boltzmann_policy
from sqil_lightning.learners.soft_bellman import (
    bellman_loss,
    bootstrap_discount,
    partition_mean,
    soft_bellman_target,
    soft_value,
    sqil_loss,
)


class SoftQLearner(OffPolicyLearner):
    """Soft Q-learning with a Boltzmann policy: the Q-network and its Polyak target, the soft Bellman
    errors (Eq. 16), Adam with a decaying learning rate. Subclasses define the loss (`losses`).

    Args:
        observation_shape: shape of one observation (linked from the datamodule's env).
        action_space: the env's actions, linked from the datamodule: ``{"n": N}`` for N discrete
            actions (Box actions, ``{"low": …, "high": …}``, are rejected: use `SACSQIL`).
        hidden_sizes: widths of the Q-network's hidden layers (paper A.2: 128x128 for LunarLander).
        gamma: discount γ of the soft Bellman backup; 0 ablates state transitions (paper sec. 5.5).
        temperature: α of the soft value α·logsumexp(Q/α) and of the Boltzmann policy.
        lambda_samp: weight λ_samp of the squared soft Bellman error on the agent's own experience.
        lr: Adam learning rate.
        target_tau: Polyak rate of the target network, updated after every gradient step.
        final_lr_fraction: the learning rate decays linearly to ``lr * final_lr_fraction`` at
            ``trainer.max_steps``; 1.0 keeps it constant. Decay settles the Q-values, so the
            policy at the end of a run is not caught mid-oscillation.
        encoder: ``null`` for an MLP on vector observations, or a CNN for images [C, H, W]:
            ``nature_cnn`` (Atari, 84x84 frame stacks) or ``car_racing_cnn`` (64x64 RGB); the
            hidden sizes are then those of the MLP head.
        layer_norm: LayerNorm after each hidden layer of the Q-network and its target (critic
            normalisation, for long horizons); false is the paper's plain MLP.
        huber_delta: ``null`` squares each soft Bellman error (the paper's eq. 16); a number δ
            takes twice the Huber loss instead (the square up to |error| δ, linear beyond).
        acting_temperature: α of the Boltzmann policy that collects the agent's rollouts;
            ``null`` acts with ``temperature``, the soft value's (the paper's one α). A larger one
            explores more without changing the values the Q-network learns.
    """

    deterministic_label = "greedy"

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        action_space: dict[str, Any],
        hidden_sizes: tuple[int, ...] = (128, 128),
        gamma: float = 0.97,
        temperature: float = 0.1,
        lambda_samp: float = 0.1,
        lr: float = 1e-3,
        target_tau: float = 0.005,
        final_lr_fraction: float = 0.1,
        encoder: str | None = None,
        layer_norm: bool = False,
        huber_delta: float | None = None,
        acting_temperature: float | None = None,
    ) -> None:
        super().__init__()
        num_actions = action_space.get("n")
        if num_actions is None:
            raise ConfigError(
                f"model sqil_lightning.{type(self).__name__} needs discrete actions and data.env_id has continuous ones; "
                "use model.class_path sqil_lightning.SACSQIL (see conf/pendulum.yaml)"
            )
        check_hyperparameter("gamma", gamma, 0.0, 1.0)
        check_hyperparameter("temperature", temperature, 0.0, low_inclusive=False)
        check_hyperparameter("lambda_samp", lambda_samp, 0.0)
        check_hyperparameter("lr", lr, 0.0, low_inclusive=False)
        check_hyperparameter("target_tau", target_tau, 0.0, 1.0, low_inclusive=False)
        check_hyperparameter("final_lr_fraction", final_lr_fraction, 0.0, 1.0)
        for name, value in (("huber_delta", huber_delta), ("acting_temperature", acting_temperature)):
            if value is not None:
                check_hyperparameter(name, value, 0.0, low_inclusive=False)
        self.save_hyperparameters()
        self.q_network = build_network(observation_shape, num_actions, list(hidden_sizes), encoder, layer_norm)
        self.target_network = build_network(observation_shape, num_actions, list(hidden_sizes), encoder, layer_norm)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.target_network.requires_grad_(False)

    def policy(self, deterministic: bool) -> TensorDictModule:
        """The Boltzmann policy (used to collect) or, deterministic, its argmax (evaluation)."""
        hp = self.hparams
        acting = hp.temperature if hp.acting_temperature is None else hp.acting_temperature
        return boltzmann_policy(self.q_network, acting, greedy=deterministic)

    def soft_bellman_errors(
        self, batch: TensorDictBase, reward: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q(s, ·), Q(s, a) and the loss of the soft Bellman error (Eq. 16, `bellman_loss`) of every row.

        ``reward`` replaces the batch's ``("next", "reward")`` (GAIL's learned reward).
        """
        hp = self.hparams
        q_values = self.q_network(batch["observation"])
        q_taken = q_values.gather(-1, batch["action"].unsqueeze(-1))
        reward = batch["next", "reward"] if reward is None else reward
        with torch.no_grad():
            next_value = soft_value(self.target_network(batch["next", "observation"]), hp.temperature)
            target = soft_bellman_target(reward, next_value, batch["next", "terminated"], bootstrap_discount(batch, hp.gamma))
        return q_values, q_taken.squeeze(-1), bellman_loss(q_taken - target, hp.huber_delta).squeeze(-1)

    def on_train_start(self) -> None:
        # Parameter lists for the Polyak update, built once the module sits on its device:
        # walking the module tree every step costs ~30 µs, 2% of a CPU update.
        self._polyak_pairs = (list(self.target_network.parameters()), list(self.q_network.parameters()))

    def update_target(self) -> None:
        # Polyak averaging of the target network, fused over all tensors.
        with torch.no_grad():
            torch._foreach_lerp_(*self._polyak_pairs, self.hparams.target_tau)

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """What the optimiser trains (subclasses with more networks add theirs)."""
        return list(self.q_network.parameters())

    def configure_optimizers(self) -> dict:
        optimizer = self.adam(self.trained_parameters(), lr=self.hparams.lr)
        # The decay needs a known horizon; with `max_steps: -1` (run until stopped) the rate stays.
        horizon = self.trainer.max_steps
        end_factor = self.hparams.final_lr_fraction if horizon > 0 else 1.0
        decay = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0, end_factor=end_factor, total_iters=max(horizon, 1)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}

    def statistics(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """Mean Q(s, a) of the demo rows and of the agent's rows (logged as train/q_demo, q_online)."""
        with torch.no_grad():
            q_taken = self.q_network(batch["observation"]).gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1)
        return {"q_demo": partition_mean(q_taken, batch["is_demo"]), "q_online": partition_mean(q_taken, ~batch["is_demo"])}


class SoftQSQIL(SoftQLearner):
    """SQIL for discrete actions: the soft Q-learner trained on SQIL's relabelled replay.

    The learner is an unchanged soft Q-learner: SQIL lives in the data (demo rows carry reward r,
    the agent's rows 0, see `sqil_lightning.sqil`) and in λ_samp weighting the two partitions.
    Arguments: `SoftQLearner`.
    """

    def losses(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        *_, squared_error = self.soft_bellman_errors(batch)
        loss = sqil_loss(squared_error, batch["is_demo"], self.hparams.lambda_samp)
        return {"loss": loss}
