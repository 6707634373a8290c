"""The task a run trains on, as the learner and the callbacks see it: a small read-only description."""

from __future__ import annotations

from dataclasses import dataclass

from torchrl.envs import EnvBase

from sqil_lightning.envs.make import has_success, make_env
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.envs.spaces import EnvSpaces
from sqil_lightning.envs.start_states import StartShift


@dataclass(frozen=True)
class Task:
    """What a run trains on and is evaluated on.

    Attributes:
        env_id: gymnasium env id.
        spaces: observation shape (after ``pixels``) and action space.
        pixels: the image pipeline observations go through, or None for vector observations.
        start_shift: shifted start states of the agent's episodes (S0^train), or None (S0^demo).
        seed: seed of the training env (rank r explores from ``seed + r``).
        eval_seed: evaluation episode i starts from ``reset(seed=eval_seed + i)``.
    """

    env_id: str
    spaces: EnvSpaces
    pixels: PixelPipeline | None
    start_shift: StartShift | None
    seed: int
    eval_seed: int

    @property
    def has_success(self) -> bool:
        """Whether the task reports a success signal (e.g. LunarLander's landing)."""
        return has_success(self.env_id)

    def make_env(self, seed: int) -> EnvBase:
        """A fresh TorchRL env of the task from the env's own start states (S0^demo)."""
        return make_env(self.env_id, seed=seed, pixels=self.pixels)
