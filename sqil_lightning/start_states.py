"""Shifted start states (the paper's S0^train, sec. 5.1): where the agent trains and is tested
away from the states the demonstrations start in (S0^demo, the env's own resets).

A shift is any callable ``shift(env, rng) -> observation`` that moves a freshly reset env (its
``unwrapped`` simulator) into a new start state and returns the observation there; `ShiftedStarts`
applies it after every reset. Shifts draw from the env's own seeded RNG, so ``reset(seed=s)``
gives the same shifted start every time (evaluations stay comparable) and a resumed run replays it.
Configs name a shift by class path: ``data.start_shift: {class_path: …, init_args: {…}}``.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from sqil_lightning.errors import ConfigError


class StartShift(Protocol):
    def __call__(self, env: gym.Env, rng: np.random.Generator) -> np.ndarray: ...


class ShiftedStarts(gym.Wrapper):
    """Applies ``shift`` after every reset (a reset-state perturbation hook for any env)."""

    def __init__(self, env: gym.Env, shift: StartShift) -> None:
        super().__init__(env)
        self.shift = shift

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        return self.shift(self.env.unwrapped, self.env.unwrapped.np_random), info


class LunarLanderOffset:
    """Place the lander sideways of the helipad and/or tilted: a start the demos rarely visit.

    gymnasium's lander starts upright above the helipad (x = 0 in the normalised observation,
    where the flags stand at ±0.2 and the screen edges at ±1) with a random push; the scripted
    expert's demos therefore stay near x = 0 while high up, and never tilt beyond ±0.3 rad up
    there (±0.51 rad anywhere). This shift moves the lander and its legs sideways by
    ``x_offset`` (a uniform draw from the range, normalised units, random side) and rotates them
    by a uniform draw from ``tilt`` radians (random direction), keeping the push's velocity; the
    dynamics are untouched. conf/studies/lunarlander.yaml tilts by 0.6-0.9 rad (35-50 degrees)
    without a lateral offset: an attitude no demo state has.

    Args:
        x_offset: [low, high] of the lateral offset, in the observation's normalised x.
        tilt: [low, high] of the tilt's size in radians, or one number t for [0, t].
    """

    def __init__(self, x_offset: tuple[float, float] = (0.35, 0.5), tilt: float | tuple[float, float] = 0.1) -> None:
        low, high = x_offset
        if not 0 <= low <= high < 1:
            raise ConfigError(f"LunarLanderOffset x_offset = {list(x_offset)} is invalid; need 0 <= low <= high < 1")
        tilt_low, tilt_high = (0.0, tilt) if isinstance(tilt, (int, float)) else tilt
        if not 0 <= tilt_low <= tilt_high < math.pi / 2:
            raise ConfigError(
                f"LunarLanderOffset tilt = {tilt} is invalid; give radians t in [0, pi/2) or [low, high] with 0 <= low <= high < pi/2"
            )
        self.x_offset = (float(low), float(high))
        self.tilt = (float(tilt_low), float(tilt_high))

    def __call__(self, env: gym.Env, rng: np.random.Generator) -> np.ndarray:
        from gymnasium.envs.box2d.lunar_lander import SCALE, VIEWPORT_W

        half_width = VIEWPORT_W / SCALE / 2
        dx = float(rng.choice([-1.0, 1.0]) * rng.uniform(*self.x_offset) * half_width)
        angle = float(rng.choice([-1.0, 1.0]) * rng.uniform(*self.tilt))
        center = env.lander.position.copy()
        cos, sin = math.cos(angle), math.sin(angle)
        for body in [env.lander, *env.legs]:
            rx, ry = body.position.x - center.x, body.position.y - center.y
            # Rotate the whole rigid lander (body and legs) about its centre, then slide it sideways.
            body.transform = ((center.x + dx + cos * rx - sin * ry, center.y + sin * rx + cos * ry), body.angle + angle)
        # One no-op physics step computes the observation and the reward shaping baseline at the
        # new place, as gymnasium's own reset does after its initial push.
        return env.step(0)[0]


def build_start_shift(spec: dict[str, Any] | None) -> StartShift | None:
    """The shift a config's ``data.start_shift`` names (``{class_path, init_args}``), or None."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ConfigError(
            f"data.start_shift = {spec!r} is invalid; give {{class_path: ..., init_args: {{...}}}}, e.g. "
            "class_path: sqil_lightning.start_states.LunarLanderOffset, or null for the env's own start states"
        )
    module_name, _, class_name = str(spec["class_path"]).rpartition(".")
    try:
        shift_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            f"data.start_shift.class_path = {spec['class_path']!r} cannot be imported; "
            "e.g. sqil_lightning.start_states.LunarLanderOffset"
        ) from None
    try:
        return shift_class(**(spec.get("init_args") or {}))
    except TypeError as err:
        raise ConfigError(f"data.start_shift.init_args = {spec.get('init_args')!r} do not fit {spec['class_path']}: {err}") from None
