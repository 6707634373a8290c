"""The peer's saved networks as this project's policies, so its snapshots are scored by
`sqil_lightning.envs.policy_evaluation.evaluate_policy` like our own runs.

Runs in this project's environment (not the peer's): it reads the state dicts that
`imitation_sqil.py` saves and rebuilds the deterministic action SB3 takes with them:

- DQN: argmax of the Q-network (this project's greedy policy on the same MLP);
- SAC: tanh(μ(s)) rescaled from [-1, 1] to the action bounds, the action SB3's
  ``predict(deterministic=True)`` returns for a squashed Gaussian actor.

`check_probes` compares the rebuilt policy with SB3's own predictions, recorded by the worker.
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from sqil_lightning.learners.networks import mlp
from sqil_lightning.learners.policies import boltzmann_policy


def q_network_policy(state_dict: dict[str, torch.Tensor]) -> TensorDictModuleBase:
    """SB3 DQN's greedy action from its saved Q-network (Sequential(Linear, ReLU, …, Linear))."""
    weights = [value for key, value in state_dict.items() if key.endswith("weight")]
    q_network = mlp(weights[0].shape[1], weights[-1].shape[0], [weight.shape[0] for weight in weights[:-1]])
    q_network.load_state_dict(state_dict)
    return boltzmann_policy(q_network, temperature=1.0, greedy=True)  # greedy: argmax Q, any temperature


class SquashedMeanAction(TensorDictModuleBase):
    """low + (tanh(μ(observation)) + 1) (high − low) / 2: SB3 SAC's deterministic action."""

    in_keys = ["observation"]
    out_keys = ["action"]

    def __init__(self, mean: nn.Module, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.low, self.high = mean, low, high

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        squashed = torch.tanh(self.mean(tensordict.get("observation")))
        tensordict.set("action", self.low + (squashed + 1.0) * (self.high - self.low) / 2)
        return tensordict


def sac_actor_policy(state_dict: dict[str, torch.Tensor], low: np.ndarray, high: np.ndarray) -> TensorDictModuleBase:
    """SB3 SAC's deterministic action from its saved actor (``latent_pi`` MLP, ``mu`` head; the
    ``log_std`` head only matters when sampling)."""
    hidden = [value.shape[0] for key, value in state_dict.items() if key.startswith("latent_pi.") and key.endswith("weight")]
    mean = mlp(state_dict["latent_pi.0.weight"].shape[1], state_dict["mu.weight"].shape[0], hidden)
    # latent_pi's Linear layers sit at the same indices as in `mlp` (0, 2, …); μ is mlp's head.
    renamed = {key.removeprefix("latent_pi."): value for key, value in state_dict.items() if key.startswith("latent_pi.")}
    renamed |= {f"{2 * len(hidden)}.{part}": state_dict[f"mu.{part}"] for part in ("weight", "bias")}
    mean.load_state_dict(renamed)  # strict: another layout fails here, not in the scores
    return SquashedMeanAction(mean, torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32))


def check_probes(policy: TensorDictModuleBase, observations: np.ndarray, expected: list, name: str) -> None:
    """Refuse a rebuilt policy whose actions differ from SB3's ``predict(deterministic=True)``."""
    batch = TensorDict({"observation": torch.as_tensor(observations, dtype=torch.float32)}, batch_size=[len(observations)])
    actions = policy(batch).get("action").numpy()
    if not np.allclose(actions, np.asarray(expected, dtype=actions.dtype), atol=1e-5):
        raise RuntimeError(f"{name}: the rebuilt policy acts {actions.tolist()}, SB3 predicted {expected}")
