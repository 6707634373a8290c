"""Network factory shared by the modules: MLPs for vector observations, CNN encoders for images."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from sqil_lightning.errors import ConfigError


def mlp(
    in_features: int, out_features: int, hidden_sizes: list[int], activation: type[nn.Module] = nn.ReLU, layer_norm: bool = False
) -> nn.Sequential:
    """A fully connected network: Linear → activation for each hidden size, then a Linear head.

    ``layer_norm`` puts a LayerNorm after each hidden Linear (critic normalisation: it bounds the
    features a Q-head sees, which keeps bootstrapped values from growing without limit off-policy).
    """
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), *([nn.LayerNorm(hidden)] if layer_norm else []), activation()]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def nature_cnn(in_channels: int) -> nn.Sequential:
    """The Nature-DQN encoder (Mnih et al. 2015) for 84x84 frame stacks: 3 convolutions, flattened."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
        nn.Flatten(),
    )  # fmt: skip


def car_racing_cnn(in_channels: int) -> nn.Sequential:
    """The 4-convolution encoder of Ha & Schmidhuber (2018) for 64x64 RGB, as in the paper's Car Racing (A.2)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=4, stride=2), nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 128, kernel_size=4, stride=2), nn.ReLU(),
        nn.Conv2d(128, 256, kernel_size=4, stride=2), nn.ReLU(),
        nn.Flatten(),
    )  # fmt: skip


ENCODERS: dict[str, Callable[[int], nn.Sequential]] = {"nature_cnn": nature_cnn, "car_racing_cnn": car_racing_cnn}


class PixelEncoder(nn.Sequential):
    """Images [..., C, H, W] → the named CNN's features [..., F]. uint8 pixels (how the replay
    stores them, a quarter of float32's bytes) become floats in [0, 1] here, on the network's device."""

    def __init__(self, observation_shape: tuple[int, ...], encoder: str) -> None:
        if len(observation_shape) != 3:
            raise ConfigError(
                f"model.encoder = {encoder!r} needs image observations [channels, height, width]; "
                f"the env observes {tuple(observation_shape)}"
            )
        super().__init__(*ENCODERS[encoder](observation_shape[0]))
        self.image_shape = tuple(observation_shape)
        with torch.no_grad():
            try:
                self.out_features = super().forward(torch.zeros(1, *observation_shape)).shape[-1]
            except RuntimeError:
                raise ConfigError(f"model.encoder = {encoder!r}: images of {tuple(observation_shape)} are too small for it") from None

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        lead = observation.shape[:-3]
        images = observation.reshape(-1, *self.image_shape)
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return super().forward(images).reshape(*lead, -1)


class PixelNetwork(nn.Module):
    """Images [..., C, H, W] → `PixelEncoder` → MLP head."""

    def __init__(
        self, observation_shape: tuple[int, ...], out_features: int, hidden_sizes: list[int], encoder: str, layer_norm: bool = False
    ) -> None:
        super().__init__()
        self.encoder = PixelEncoder(observation_shape, encoder)
        self.head = mlp(self.encoder.out_features, out_features, hidden_sizes, layer_norm=layer_norm)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(observation))


class ConcatenatedInputs(nn.Sequential):
    """An MLP (the layers of `mlp`) on its inputs concatenated along the last axis: a critic
    Q(s, a) on vector observations. Keeps `mlp`'s parameter names."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat(inputs, dim=-1))


class PixelStateActionNetwork(nn.Module):
    """Q(s, a) on images: the `PixelEncoder` features of s, concatenated with a, through an MLP head."""

    def __init__(
        self, observation_shape: tuple[int, ...], action_dim: int, hidden_sizes: list[int], encoder: str, layer_norm: bool = False
    ) -> None:
        super().__init__()
        self.encoder = PixelEncoder(observation_shape, encoder)
        self.head = mlp(self.encoder.out_features + action_dim, 1, hidden_sizes, layer_norm=layer_norm)

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(observation), action], dim=-1))


def build_network(
    observation_shape: tuple[int, ...], out_features: int, hidden_sizes: list[int], encoder: str | None = None, layer_norm: bool = False
) -> nn.Module:
    """An MLP on the flattened observation, or with ``encoder`` (a name in `ENCODERS`) a CNN on
    images; ``layer_norm``: LayerNorm after each hidden layer of the MLP (`mlp`)."""
    if encoder is None:
        return mlp(int(torch.Size(observation_shape).numel()), out_features, hidden_sizes, layer_norm=layer_norm)
    if encoder not in ENCODERS:
        raise ConfigError(f"model.encoder = {encoder!r} is invalid; choose one of {sorted(ENCODERS)} or null (an MLP)")
    return PixelNetwork(observation_shape, out_features, hidden_sizes, encoder, layer_norm)


def build_state_action_network(
    observation_shape: tuple[int, ...], action_dim: int, hidden_sizes: list[int], encoder: str | None = None, layer_norm: bool = False
) -> nn.Module:
    """A critic Q(s, a) → [..., 1]: an MLP on [s, a], or with ``encoder`` a CNN on image s whose
    features join a before the MLP head; ``layer_norm`` as in `build_network`."""
    if encoder is None:
        return ConcatenatedInputs(*mlp(int(torch.Size(observation_shape).numel()) + action_dim, 1, hidden_sizes, layer_norm=layer_norm))
    if encoder not in ENCODERS:
        raise ConfigError(f"model.encoder = {encoder!r} is invalid; choose one of {sorted(ENCODERS)} or null (an MLP)")
    return PixelStateActionNetwork(observation_shape, action_dim, hidden_sizes, encoder, layer_norm)
