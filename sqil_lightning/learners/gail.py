"""GAIL with the same off-policy soft-Q learner as SQIL: the paper's main comparison (sec. 5).

A discriminator D(s, a) learns to tell demo rows from the agent's rows (TorchRL's `GAILLoss`,
binary cross-entropy, D → 1 on demos); the soft Q-learner trains on the agent's rows only, with
the learned reward r(s, a) = log D − log(1 − D) (the discriminator's logit) in place of the env's.
Demos reach the Q-network only through that reward: that is the difference to SQIL, which puts the
demos into the Q-learner's replay with a constant reward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.objectives import GAILLoss

from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.networks import mlp
from sqil_lightning.learners.soft_q import SoftQLearner


class Discriminator(nn.Module):
    """D(s, a) ∈ (0, 1) from the observation and the one-hot discrete action."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.net = mlp(obs_dim + num_actions, 1, hidden_sizes)

    def logit(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(action.long(), self.num_actions).to(observation.dtype)
        return self.net(torch.cat([observation, one_hot], dim=-1))

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(observation, action))


class GAILSoftQ(SoftQLearner):
    """Soft Q-learning on the agent's rows with a discriminator's reward (GAIL, off-policy).

    Args:
        discriminator_hidden_sizes: hidden layers of D (paper A.2: the same 128x128 as the Q-network).
        Other arguments: `SoftQLearner` (``lambda_samp`` is unused: only the agent's rows are
        Q-learned). The discriminator shares the Adam optimiser and learning rate.
    """

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        action_space: dict[str, Any],
        discriminator_hidden_sizes: tuple[int, ...] = (128, 128),
        **soft_q_args: Any,
    ) -> None:
        # Every other knob is forwarded by name, so the command line and the saved hyperparameters
        # know each one `SoftQLearner` takes, today's and tomorrow's.
        super().__init__(observation_shape, action_space, **soft_q_args)
        if self.hparams.encoder is not None:
            raise ConfigError("model sqil_lightning.GAILSoftQ: its discriminator is an MLP on vector observations; set model.encoder null")
        self.discriminator = Discriminator(int(torch.Size(observation_shape).numel()), action_space["n"], list(discriminator_hidden_sizes))
        module = TensorDictModule(self.discriminator, in_keys=["observation", "action"], out_keys=["d_logits"])
        self.discriminator_loss = GAILLoss(module)

    def learned_reward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """r(s, a) = log D − log(1 − D), shape [..., 1], with the discriminator's current parameters."""
        loss = self.discriminator_loss
        with torch.no_grad(), loss.discriminator_network_params.to_module(loss.discriminator_network):
            return self.discriminator.logit(observation, action)

    def losses(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        is_demo = batch["is_demo"]
        agent = batch[~is_demo]  # the Bellman term needs every key of the agent's rows
        expert_obs, expert_action = batch["observation"][is_demo], batch["action"][is_demo]
        rows = min(expert_obs.shape[0], agent.shape[0])  # GAILLoss pairs expert and agent rows
        pairs = TensorDict(
            {
                "observation": expert_obs[:rows],
                "action": expert_action[:rows],
                "collector_observation": agent["observation"][:rows],
                "collector_action": agent["action"][:rows],
            },
            batch_size=[rows],
        )
        discriminator = self.discriminator_loss(pairs)["loss"]
        reward = self.learned_reward(agent["observation"], agent["action"])
        *_, squared_error = self.soft_bellman_errors(agent, reward=reward)
        bellman = squared_error.mean()
        return {
            "loss": bellman + discriminator,
            "soft_bellman": bellman.detach(),
            "discriminator": discriminator.detach(),
            "learned_reward": reward.mean(),
        }

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        # One Adam over both networks: their losses share no parameters, so this equals two
        # optimisers with the same learning rate (and one learning-rate schedule).
        return [*super().trained_parameters(), *self.discriminator_loss.parameters()]
