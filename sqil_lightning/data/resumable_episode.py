"""A gymnasium wrapper whose current episode can be saved and rebuilt in a new process.

Envs cannot be pickled (Box2D and MuJoCo hold C state), yet a resumed run must continue the
training episode the checkpoint interrupted, or it would diverge from an uninterrupted run.
gymnasium envs are deterministic given their RNG and actions, so the episode is stored as the
env's RNG state before its reset plus the actions taken since (at most one episode of actions),
and rebuilt by replaying them.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch


class ResumableEpisode(gym.Wrapper):
    """Records how the current episode began and which actions it took; `resume` replays them."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._start: dict[str, Any] = {"rng": self._rng_state(), "reset_kwargs": {}}
        self._actions: list[Any] = []
        self._pending: dict[str, Any] | None = None
        # The reward the replayed steps earned: the part of the resumed episode's return that the
        # collector, which sees the replay as a reset, does not count.
        self.replayed_return = 0.0

    def _rng_state(self) -> dict[str, Any]:
        return copy.deepcopy(self.env.unwrapped.np_random.bit_generator.state)

    def reset(self, **kwargs):
        if self._pending is not None:
            episode, self._pending = self._pending, None
            return self._replay(episode)
        self._start = {"rng": self._rng_state(), "reset_kwargs": dict(kwargs)}
        self._actions = []
        return self.env.reset(**kwargs)

    def step(self, action):
        self._actions.append(action)
        return self.env.step(action)

    def episode_state(self) -> dict[str, Any]:
        """The current episode as numbers and tensors (loadable with ``torch.load(weights_only=True)``)."""
        actions = torch.as_tensor(np.stack([np.asarray(a) for a in self._actions])) if self._actions else None
        discrete = bool(self._actions) and isinstance(self._actions[0], (int, np.integer))
        return {"rng": self._start["rng"], "reset_kwargs": self._start["reset_kwargs"], "actions": actions, "discrete": discrete}

    def resume(self, episode: dict[str, Any]) -> None:
        """Make the next `reset` rebuild ``episode`` (from `episode_state`) instead of starting a new one."""
        self._pending = episode

    def _replay(self, episode: dict[str, Any]):
        self.env.unwrapped.np_random.bit_generator.state = episode["rng"]
        self._start = {"rng": self._rng_state(), "reset_kwargs": dict(episode["reset_kwargs"])}
        self._actions = []
        obs, info = self.env.reset(**episode["reset_kwargs"])
        actions = [] if episode["actions"] is None else episode["actions"].numpy()
        self.replayed_return = 0.0
        for action in actions:
            # The env gets what the collector gave it: python ints for discrete actions, float arrays otherwise.
            action = int(action) if episode["discrete"] else action
            obs, reward, terminated, truncated, info = self.step(action)
            self.replayed_return += float(reward)
            if terminated or truncated:
                raise RuntimeError("replaying the saved episode ended it early: the env is not deterministic")
        return obs, info
