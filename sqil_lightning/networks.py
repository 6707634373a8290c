"""Network factory shared by the modules."""

from __future__ import annotations

from torch import nn


def mlp(in_features: int, out_features: int, hidden_sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A fully connected network: Linear → activation for each hidden size, then a Linear head."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
