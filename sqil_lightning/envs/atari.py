"""Atari Pong with the standard DQN preprocessing (paper sec. 5.3).

``PongPreprocessed-v5`` is ale-py's Pong without sticky actions or built-in frame skipping,
wrapped in gymnasium's `AtariPreprocessing` (Mnih et al. 2015: up to 30 no-op starts, 4-frame
skip with the max of the last two frames, 84x84 grayscale). Stacking the last 4 frames is left
to the TorchRL pixel pipeline (``data.pixels.frame_stack: 4``), so the replay stores uint8 frames
the same way for every image task. ale-py and OpenCV come with ``pip install -e ".[atari]"``.
"""

from __future__ import annotations

import gymnasium as gym

from sqil_lightning.errors import UserInputError

ENV_ID = "PongPreprocessed-v5"


class AtariNotInstalledError(UserInputError):
    """An Atari env was asked for without ale-py (and OpenCV, which the preprocessing uses)."""


def make_pong(**kwargs) -> gym.Env:
    """gymnasium entry point of ``PongPreprocessed-v5``."""
    try:
        import ale_py
        import cv2  # noqa: F401 - AtariPreprocessing resizes with OpenCV
    except ImportError as err:
        raise AtariNotInstalledError(
            f"{ENV_ID} needs ale-py and OpenCV ({err}); install them with pip install -e \".[atari]\""
        ) from None
    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, **kwargs)
    return gym.wrappers.AtariPreprocessing(
        env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True, grayscale_newaxis=True
    )


def register() -> None:
    """Make ``PongPreprocessed-v5`` known to ``gymnasium.make`` (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=make_pong)
