"""Evaluation videos: one episode rendered frame by frame, saved as a GIF.

Rendering uses gymnasium's ``rgb_array`` mode, which needs no display: Box2D tasks draw with
pygame off-screen; MuJoCo tasks need an off-screen OpenGL (``MUJOCO_GL=egl`` on GPUs,
``MUJOCO_GL=osmesa`` on CPUs with OSMesa installed).
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase

from sqil_lightning.envs.make import attach_simulator, make_env, make_gym_env
from sqil_lightning.envs.pixels import PixelPipeline


def render_episode(
    env_id: str, policy: TensorDictModuleBase, seed: int, max_steps: int = 1_000, pixels: PixelPipeline | None = None
) -> np.ndarray:
    """Frames [T, H, W, 3] of one episode of ``policy`` from ``reset(seed=seed)``, rendered by
    gymnasium (only gymnasium renders) while the policy sees the TorchRL env's observations."""
    gym_env = make_gym_env(env_id, render_mode="rgb_array")
    attach_simulator(policy, gym_env)
    env = make_env(env_id, gym_env=gym_env, pixels=pixels)
    try:
        start = env.reset(seed=seed)
        frames = [gym_env.render()]
        with torch.no_grad():
            # TorchRL calls the callback between steps, not after the last one: that frame follows.
            env.rollout(
                max_steps, policy, auto_reset=False, tensordict=start, callback=lambda *_: frames.append(gym_env.render())
            )
        frames.append(gym_env.render())
    finally:
        env.close()
    return np.stack(frames)


def save_gif(frames: np.ndarray, path: Path, fps: int = 30) -> Path:
    """Write ``frames`` as an animated GIF (no video codec needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    return path
