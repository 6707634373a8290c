"""Policies that act from a soft Q-network, as TensorDict modules for TorchRL envs and collectors."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from torch import nn


class BoltzmannPolicy(nn.Module):
    """π(a|s) ∝ exp(Q(s, a) / α) (paper eq. 1); ``greedy`` takes argmax Q instead.

    The module holds the Q-network itself, not a copy, so a collector using it always acts with
    the latest weights.
    """

    def __init__(self, q_network: nn.Module, temperature: float, greedy: bool) -> None:
        super().__init__()
        self.q_network = q_network
        self.temperature = temperature
        self.greedy = greedy

    @torch.no_grad()
    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        q_values = self.q_network(observation)
        if self.greedy:
            return q_values.argmax(dim=-1)
        probs = torch.softmax(q_values / self.temperature, dim=-1)
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1).reshape(probs.shape[:-1])


def boltzmann_policy(q_network: nn.Module, temperature: float, greedy: bool) -> TensorDictModule:
    """`BoltzmannPolicy` reading ``observation`` and writing ``action``."""
    return TensorDictModule(
        BoltzmannPolicy(q_network, temperature, greedy), in_keys=["observation"], out_keys=["action"]
    )
