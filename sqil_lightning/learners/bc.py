"""Behavioural cloning, the supervised baseline of the paper's experiments (sec. 5)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule

from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.base import OffPolicyLearner, check_hyperparameter
from sqil_lightning.learners.networks import build_network
from sqil_lightning.learners.policies import boltzmann_policy


class BehaviouralCloning(OffPolicyLearner):
    """A policy network fitted to the demo actions by cross-entropy (discrete actions).

    It trains on the demo rows of the same balanced batches as SQIL (the datamodule's pinned demo
    partition) and ignores the agent's rows, so BC and SQIL see the same demos through the same
    pipeline; the rollouts the trainer still collects never reach the loss. The network's outputs
    are logits: the sampling policy is π ∝ exp(logits), the deterministic one their argmax.

    Args:
        observation_shape: shape of one observation (linked from the datamodule's env).
        action_space: ``{"n": N}`` (linked from the datamodule).
        hidden_sizes: hidden layers of the policy network (paper A.2: 128x128 for LunarLander).
        lr: Adam learning rate.
        encoder: ``null`` (MLP) or a CNN for images, as for `SoftQSQIL`.
    """

    deterministic_label = "greedy"

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        action_space: dict[str, Any],
        hidden_sizes: tuple[int, ...] = (128, 128),
        lr: float = 1e-3,
        encoder: str | None = None,
    ) -> None:
        super().__init__()
        num_actions = action_space.get("n")
        if num_actions is None:
            raise ConfigError("model sqil_lightning.BehaviouralCloning needs discrete actions and data.env_id has continuous ones")
        check_hyperparameter("lr", lr, 0.0, low_inclusive=False)
        self.save_hyperparameters()
        self.policy_network = build_network(observation_shape, num_actions, list(hidden_sizes), encoder)

    @property
    def discount(self) -> None:
        return None  # cloning reads no reward: the demo rows keep r, no absorbing reward

    def policy(self, deterministic: bool) -> TensorDictModule:
        return boltzmann_policy(self.policy_network, temperature=1.0, greedy=deterministic)

    def losses(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        is_demo = batch["is_demo"]  # only the two tensors cloning reads are gathered, not the whole batch
        return {"loss": F.cross_entropy(self.policy_network(batch["observation"][is_demo]), batch["action"][is_demo])}

    def update_target(self) -> None:
        """BC has no target network."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.adam(self.policy_network.parameters(), lr=self.hparams.lr)
