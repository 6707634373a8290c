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
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase

from sqil_lightning.envs import make_gym_env


def render_episode(env_id: str, policy: TensorDictModuleBase, seed: int, max_steps: int = 1_000) -> np.ndarray:
    """Frames [T, H, W, 3] of one episode of ``policy`` from ``reset(seed=seed)``.

    The env is stepped through gymnasium directly (not TorchRL) because only gymnasium renders.
    """
    env = make_gym_env(env_id, render_mode="rgb_array")
    try:
        observation, _ = env.reset(seed=seed)
        frames = [env.render()]
        for _ in range(max_steps):
            step_input = TensorDict({"observation": torch.as_tensor(observation, dtype=torch.float32)}, [])
            with torch.no_grad():
                action = policy(step_input)["action"].numpy()
            observation, _, terminated, truncated, _ = env.step(action)
            frames.append(env.render())
            if terminated or truncated:
                break
    finally:
        env.close()
    return np.stack(frames)


def save_gif(frames: np.ndarray, path: Path, fps: int = 30) -> Path:
    """Write ``frames`` as an animated GIF (no video codec needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    return path
