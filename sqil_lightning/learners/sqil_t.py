"""SQIL-T (paper appendix A.1): soft Q-learning with reward 0 everywhere plus a behavioural-cloning
term, the tighter bound of Eq. 11 that SQIL (Eq. 13) loosens."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase

from sqil_lightning.learners.base import check_hyperparameter
from sqil_lightning.learners.soft_bellman import partition_mean, soft_value, sqil_loss
from sqil_lightning.learners.soft_q import SoftQLearner


class SoftQSQILT(SoftQLearner):
    """ℓ = bc_weight · α Σ_demo −(Q(s,a) − V(s)) + B(D_demo, 0) + λ_samp · B(D_samp, 0).

    −(Q(s,a) − V(s)) / α is the negative log-likelihood of the demo action under the Boltzmann
    policy, so the first term (α² times that, as in Eq. 11's form in A.1) is behavioural cloning
    through the Q-network; the Bellman terms give
    every row reward 0, demos included: configs set ``data.demo_reward: 0`` for this learner (see
    conf/studies/lunarlander.yaml). Sums become means over each partition, as in `sqil_loss`.

    Args:
        bc_weight: weight of the cloning term (the paper's is 1). Other arguments: `SoftQLearner`.
    """

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        action_space: dict[str, Any],
        bc_weight: float = 1.0,
        **soft_q_args: Any,
    ) -> None:
        # Every other knob is forwarded by name, so the command line and the saved hyperparameters
        # know each one `SoftQLearner` takes, today's and tomorrow's.
        check_hyperparameter("bc_weight", bc_weight, 0.0)
        super().__init__(observation_shape, action_space, **soft_q_args)

    def losses(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        hp = self.hparams
        is_demo = batch["is_demo"]
        q_values, q_taken, squared_error = self.soft_bellman_errors(batch)
        bellman = sqil_loss(squared_error, is_demo, hp.lambda_samp)
        advantage = q_taken - soft_value(q_values, hp.temperature).squeeze(-1)  # Q − V = α·log π(a|s)
        cloning = -hp.temperature * partition_mean(advantage, is_demo)
        loss = hp.bc_weight * cloning + bellman
        return {"loss": loss, "cloning": cloning.detach(), "soft_bellman": bellman.detach()}
