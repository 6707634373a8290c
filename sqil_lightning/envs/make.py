"""Environment factory: gymnasium envs wrapped by TorchRL, with a task's success signal.

Every env the project steps goes through `make_env`, so training, evaluation and demo recording
see the same observations, action encoding (integer indices for discrete actions) and `success`
key.
"""

from __future__ import annotations

import difflib
from typing import Callable

import gymnasium as gym
import numpy as np
from torchrl.envs import Compose, DoubleToFloat, EnvBase, GymWrapper, RewardSum, TransformedEnv
from torchrl.envs.libs.gym import default_info_dict_reader

from sqil_lightning.envs import atari, car_racing, lunar_lander_site
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.envs.spaces import EnvSpaces
from sqil_lightning.envs.start_states import ShiftedStarts, StartShift
from sqil_lightning.errors import UserInputError

atari.register()
car_racing.register()
lunar_lander_site.register()


class EnvIdError(UserInputError):
    """The configured env id is not a registered gymnasium env."""


class LunarLanderSuccess(gym.Wrapper):
    """Adds ``info["success"]``: the lander came to rest between the flags, intact and in bounds.

    gymnasium's `LunarLander-v3` ends an episode either when the lander body crashes or leaves the
    screen (``game_over`` or ``|x| >= 1``) or when it falls asleep at rest. Only a rest inside the
    helipad counts: the flags stand at x = ±0.2 in the normalised observation.
    """

    HELIPAD_HALF_WIDTH = 0.2

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        info["success"] = np.bool_(False)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lander = self.env.unwrapped
        landed = terminated and not lander.game_over and not lander.lander.awake
        info["success"] = np.bool_(landed and abs(float(obs[0])) <= self.HELIPAD_HALF_WIDTH)
        return obs, reward, terminated, truncated, info


# Task-specific success definitions, keyed by the env id's name without its version.
SUCCESS_WRAPPERS: dict[str, Callable[[gym.Env], gym.Wrapper]] = {
    "LunarLander": LunarLanderSuccess,
    # Its x is measured from the site, so |x| <= 0.2 is between the site's flags.
    "LunarLanderSite": LunarLanderSuccess,
}


# The tasks the project ships configs for, suggested when an env id is unknown.
PROJECT_ENV_IDS = ("LunarLander-v3", lunar_lander_site.ENV_ID, "Pendulum-v1", "HalfCheetah-v5", "Humanoid-v5", car_racing.ENV_ID, atari.ENV_ID)


def _success_wrapper(env_id: str) -> Callable[[gym.Env], gym.Wrapper] | None:
    return SUCCESS_WRAPPERS.get(env_id.split("-v")[0])


def has_success(env_id: str) -> bool:
    """Whether the project defines success for this env (else only return is reported)."""
    return _success_wrapper(env_id) is not None


def make_gym_env(env_id: str, start_shift: StartShift | None = None, **kwargs) -> gym.Env:
    """`gymnasium.make` with a clear error for an unknown id, the task's success wrapper and, with
    ``start_shift``, shifted start states (`sqil_lightning.envs.start_states`)."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        known = [k for k in gym.registry if "-v" in k and "/" not in k]
        close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.4)
        suggestions = ", ".join(dict.fromkeys([*close, *PROJECT_ENV_IDS]))
        raise EnvIdError(
            f"unknown env id {env_id!r} ({err}); valid ids include {suggestions} (any of the {len(known)} "
            "registered gymnasium ids works)"
        ) from None
    if start_shift is not None:
        env = ShiftedStarts(env, start_shift)
    wrapper = _success_wrapper(env_id)
    return wrapper(env) if wrapper is not None else env


def make_env(
    env_id: str,
    seed: int | None = None,
    device: str = "cpu",
    gym_env: gym.Env | None = None,
    start_shift: StartShift | None = None,
    pixels: PixelPipeline | None = None,
) -> EnvBase:
    """A TorchRL env: float32 observations (or, with ``pixels``, uint8 frames [C, H, W] through
    that pipeline), integer actions, `success` read from info, `episode_reward` summed.

    ``gym_env`` is the gymnasium env to wrap when the caller keeps a handle on it (it must come
    from `make_gym_env(env_id)`); by default a new one is made, with ``start_shift`` if given.
    """
    gym_env = make_gym_env(env_id, start_shift=start_shift) if gym_env is None else gym_env
    if pixels is not None:
        pixels.check_env_shape(env_id, gym_env.observation_space.shape)
    base = GymWrapper(gym_env, categorical_action_encoding=True, device=device)
    if has_success(env_id):
        base.set_info_dict_reader(default_info_dict_reader(["success"]))
    # MuJoCo observations are float64; the networks and demo files are float32.
    if pixels is not None:
        observation_steps = pixels.transforms("pixels" if "pixels" in base.observation_spec.keys() else "observation")
    else:
        observation_steps = [DoubleToFloat()]
    env = TransformedEnv(base, Compose(*observation_steps, RewardSum()))
    if seed is not None:
        env.set_seed(seed)
    return env


def attach_simulator(policy: object, env: gym.Env) -> None:
    """Hand ``env`` to a policy that reads the simulator rather than observations (it has an
    ``attach`` method, e.g. `car_racing.TrackFollower`); other policies are left alone."""
    attach = getattr(policy, "attach", None)
    if callable(attach):
        attach(env)


def env_spaces(env_id: str, pixels: PixelPipeline | None = None) -> EnvSpaces:
    """Observation shape (after the ``pixels`` pipeline, if any) and action space of an env, read
    from its specs without stepping it."""
    env = make_gym_env(env_id)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gym.spaces.Box):
            raise EnvIdError(f"env {env_id!r}: observation space {obs_space} is not a Box; only Box observations are supported")
        obs_shape = tuple(obs_space.shape)
        if pixels is not None:
            obs_shape = tuple(make_env(env_id, gym_env=env, pixels=pixels).observation_spec["observation"].shape)
    finally:
        env.close()
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvSpaces(observation_shape=obs_shape, num_actions=int(act_space.n))
    if isinstance(act_space, gym.spaces.Box):
        return EnvSpaces(
            observation_shape=obs_shape,
            action_shape=tuple(act_space.shape),
            action_low=np.asarray(act_space.low),
            action_high=np.asarray(act_space.high),
        )
    raise EnvIdError(f"env {env_id!r}: action space {act_space} is neither Discrete nor Box")
