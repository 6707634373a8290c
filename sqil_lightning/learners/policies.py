"""Policies that act from a soft Q-network, as TensorDict modules for TorchRL envs and collectors."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn


class BoltzmannPolicy(TensorDictModuleBase):
    """π(a|s) ∝ exp(Q(s, a) / α) (paper eq. 1) from ``observation`` to ``action``; ``greedy`` takes
    argmax Q instead.

    The module holds the Q-network itself, not a copy, so a collector using it always acts with
    the latest weights. It writes its action itself rather than through `TensorDictModule`, whose
    output conversion (`TensorDict.from_any`) costs 0.17 ms a call, a fifth of a LunarLander env
    step in the collector (measured on the 2-core CPU).
    """

    in_keys = ["observation"]
    out_keys = ["action"]

    def __init__(self, q_network: nn.Module, temperature: float, greedy: bool) -> None:
        super().__init__()
        self.q_network = q_network
        self.temperature = temperature
        self.greedy = greedy

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        q_values = self.q_network(tensordict.get("observation"))
        if self.greedy:
            action = q_values.argmax(dim=-1)
        else:
            probs = torch.softmax(q_values / self.temperature, dim=-1)
            action = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
        tensordict.set("action", action)
        return tensordict


def boltzmann_policy(q_network: nn.Module, temperature: float, greedy: bool) -> BoltzmannPolicy:
    """The Boltzmann (or, ``greedy``, argmax) policy of ``q_network``."""
    return BoltzmannPolicy(q_network, temperature, greedy)
