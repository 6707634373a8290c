"""Pixel observations: the TorchRL transforms that turn an env's RGB frames into network input.

gymnasium image envs observe uint8 frames [H, W, 3]. The pipeline, configured by ``data.pixels``,
puts channels first, resizes, optionally turns the frames grayscale and stacks the last few frames
along the channel axis, keeping uint8 throughout: the replay stores a quarter of float32's bytes
and the networks (`networks.PixelNetwork`) scale to [0, 1] on their device at sampling time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torchrl.data.tensor_specs import Bounded, TensorSpec
from torchrl.envs.transforms import CatFrames, GrayScale, ObservationTransform, PermuteTransform, RenameTransform, StepCounter, Transform

# TorchRL 0.14 keeps this decorator (apply a spec transform to each key of a Composite spec) private;
# its own image transforms use it. tests/test_library_privates.py fails if it moves.
from torchrl.envs.transforms._base import _apply_to_composite

from sqil_lightning.errors import ConfigError

OBSERVATION_KEYS = ["observation"]


class ResizeFrames(ObservationTransform):
    """Resize uint8 frames [..., C, H, W] to [..., C, size, size] (bilinear, antialiased).

    torchrl's own ``Resize`` calls torchvision, and PyPI's torchvision does not import beside the
    CPU build of torch this project installs ('operator torchvision::nms does not exist'), so the
    resize is torch's own ``interpolate``, bilinear with antialiasing as torchrl asks torchvision for.
    """

    def __init__(self, size: int) -> None:
        super().__init__(in_keys=OBSERVATION_KEYS, out_keys=OBSERVATION_KEYS)
        self.size = int(size)

    def _apply_transform(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-2:] == (self.size, self.size):
            return frames
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:]).float()
        resized = F.interpolate(flat, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return resized.round().clamp(0, 255).to(frames.dtype).reshape(*lead, frames.shape[-3], self.size, self.size)

    @_apply_to_composite
    def transform_observation_spec(self, observation_spec: TensorSpec) -> TensorSpec:
        shape = (*observation_spec.shape[:-2], self.size, self.size)
        return Bounded(0, 255, shape=shape, dtype=observation_spec.dtype, device=observation_spec.device)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)


@dataclass(frozen=True)
class PixelPipeline:
    """What ``data.pixels`` configures: square ``size`` (null keeps the env's), ``grayscale``, and
    ``frame_stack`` (the newest frames, oldest first, concatenated along channels)."""

    size: int | None = 64
    grayscale: bool = False
    frame_stack: int = 1

    def __post_init__(self) -> None:
        for name, value, kind in (("size", self.size, int), ("grayscale", self.grayscale, bool), ("frame_stack", self.frame_stack, int)):
            if not (isinstance(value, kind) or (name == "size" and value is None)):
                raise ConfigError(f"data.pixels.{name} = {value!r} is invalid; give {'an integer or null' if name == 'size' else kind.__name__}")
        if self.size is not None and self.size < 8:
            raise ConfigError(f"data.pixels.size = {self.size} is invalid; use null (the env's size) or an integer >= 8")
        if self.frame_stack < 1:
            raise ConfigError(f"data.pixels.frame_stack = {self.frame_stack} is invalid; it must be a positive integer")

    @classmethod
    def from_config(cls, spec: dict[str, Any] | None) -> PixelPipeline | None:
        """The pipeline a ``data.pixels`` mapping describes, or None (vector observations)."""
        if spec is None:
            return None
        if not isinstance(spec, dict) or set(spec) - {"size", "grayscale", "frame_stack"}:
            raise ConfigError(
                f"data.pixels = {spec!r} is invalid; give null or a mapping with keys size (int or null), "
                "grayscale (bool) and frame_stack (int), e.g. {size: 64, grayscale: false, frame_stack: 1}"
            )
        return cls(**spec)

    def transforms(self, frame_key: str = "observation") -> list[Transform]:
        """The TorchRL transforms, in order, for a `GymWrapper` env observing uint8 frames [H, W, C]
        under ``frame_key`` (TorchRL names RGB frames ``pixels``; the project reads ``observation``)."""
        steps: list[Transform] = []
        if frame_key != "observation":
            steps.append(RenameTransform(in_keys=[frame_key], out_keys=OBSERVATION_KEYS))
        steps.append(PermuteTransform((-1, -3, -2), in_keys=OBSERVATION_KEYS))
        if self.size is not None:
            steps.append(ResizeFrames(self.size))
        if self.grayscale:
            steps.append(GrayScale(in_keys=OBSERVATION_KEYS))
        if self.frame_stack > 1:
            # "same" padding: the first observation of an episode repeats the reset frame. The
            # step count tells the replay how far back a stack reaches (`frame_replay`).
            steps += [CatFrames(self.frame_stack, dim=-3, in_keys=OBSERVATION_KEYS), StepCounter()]
        return steps

    def check_env_shape(self, env_id: str, shape: Sequence[int]) -> None:
        """Refuse an env whose observations are not [H, W, 3] or [H, W, 1] frames."""
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise ConfigError(
                f"data.pixels is set but env {env_id!r} observes shape {tuple(shape)}, not image frames "
                "[height, width, channels]; set data.pixels: null for vector observations"
            )
