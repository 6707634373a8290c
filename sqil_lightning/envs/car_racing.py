"""Car Racing as in the paper (sec. 5.2): discrete steering, a rotated start, a scripted expert.

``CarRacingSteering-v3`` is gymnasium's ``CarRacing-v3`` with three actions (0 left, 1 straight,
2 right) at a constant throttle: the paper's discrete steering. `RotatedStart` is its S0^train
(the car turned 90° off the track's direction). `TrackFollower` drives by reading the simulator
(car pose and track centre line), not pixels, so it can record pixel demos without a download.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.box2d.car_dynamics import Car
from gymnasium.envs.box2d.car_racing import CarRacing
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from sqil_lightning.errors import ConfigError

ENV_ID = "CarRacingSteering-v3"
STEERING = (-1.0, 0.0, 1.0)  # action index -> steering command: left, straight, right


class DiscreteSteering(gym.ActionWrapper):
    """Three steering actions at a constant throttle ``gas`` and no brake.

    gymnasium's own discrete Car Racing has five actions, gas and brake among them; the paper's
    agent only steers. At full throttle the car skids off bends, at ``gas`` 0.1 the scripted expert
    stays on the road and completes most of a lap in the 1000-step episode.
    """

    def __init__(self, env: gym.Env, gas: float = 0.1) -> None:
        super().__init__(env)
        self.gas = float(gas)
        self.action_space = gym.spaces.Discrete(len(STEERING))

    def action(self, action) -> np.ndarray:
        return np.array([STEERING[int(action)], self.gas, 0.0], dtype=np.float32)


def make_car_racing_steering(gas: float = 0.1, **kwargs) -> gym.Env:
    """gymnasium entry point of ``CarRacingSteering-v3``."""
    return DiscreteSteering(CarRacing(continuous=True, **kwargs), gas=gas)


def register() -> None:
    """Make ``CarRacingSteering-v3`` known to ``gymnasium.make`` (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=make_car_racing_steering, max_episode_steps=1000)


class RotatedStart:
    """S0^train of the paper's Car Racing: the car starts on the first tile turned ``angle``
    radians (default 90°) from the track's direction, so it faces the grass.

    The car is rebuilt at the start pose with the new heading; one action-less physics step (what
    gymnasium's reset does) renders the first observation.
    """

    def __init__(self, angle: float = math.pi / 2) -> None:
        if not 0 < abs(angle) <= math.pi:
            raise ConfigError(f"RotatedStart angle = {angle} is invalid; give radians in [-pi, pi], not 0")
        self.angle = float(angle)

    def __call__(self, env: gym.Env, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(env, CarRacing):
            raise ConfigError(f"RotatedStart shifts Car Racing starts; the env is {type(env).__name__}")
        _, heading, x, y = env.track[0]
        env.car.destroy()
        env.car = Car(env.world, heading + self.angle, x, y)
        return env.step(None)[0]


class TrackFollower(TensorDictModuleBase):
    """Steers towards the track's centre line a few tiles ahead, reading the simulator.

    The policy acts on whatever env `attach` handed it (one env at a time); the observation in the
    TensorDict is ignored, so the same expert records demos under any pixel pipeline.

    Args:
        lookahead: tiles ahead of the nearest one to aim at.
        dead_zone: |sin| of the heading error below which the car goes straight.
    """

    in_keys = ["observation"]
    out_keys = ["action"]
    env_id = ENV_ID

    def __init__(self, lookahead: int = 6, dead_zone: float = 0.1) -> None:
        super().__init__()
        self.lookahead = lookahead
        self.dead_zone = dead_zone
        self._env: CarRacing | None = None
        self._track: list | None = None  # the track `_centre` was read from
        self._centre = np.zeros((0, 2))

    def attach(self, env: gym.Env) -> None:
        """Drive ``env`` (its unwrapped `CarRacing`) from now on."""
        self._env = env.unwrapped

    def steer(self) -> int:
        """The action for the car's current pose."""
        env = self._env
        if self._track is not env.track:  # a reset draws a new track: read its centre line once
            self._track, self._centre = env.track, np.array([(tile[2], tile[3]) for tile in env.track])
        centre = self._centre
        position = env.car.hull.position
        nearest = int(np.argmin(((centre - np.array([position.x, position.y])) ** 2).sum(axis=1)))
        target = centre[(nearest + self.lookahead) % len(centre)] - np.array([position.x, position.y])
        target /= np.linalg.norm(target) + 1e-8
        angle = env.car.hull.angle
        forward = np.array([-math.sin(angle), math.cos(angle)])
        # The cross product's sign says on which side the target lies (> 0: to the left).
        side = forward[0] * target[1] - forward[1] * target[0]
        if side > self.dead_zone:
            return 0
        if side < -self.dead_zone:
            return 2
        return 1

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._env is None:
            raise RuntimeError("TrackFollower reads the simulator: call attach(env) before acting")
        action = torch.tensor(self.steer(), dtype=torch.int64)
        tensordict["action"] = action.expand(tensordict.batch_size).clone()
        return tensordict
