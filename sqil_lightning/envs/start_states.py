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


def _band(name: str, value: float | tuple[float, float], upper: float, unit: str) -> tuple[float, float]:
    """A [low, high] magnitude range from ``value`` (a number t means [0, t]), checked against ``upper``."""
    pair = (0.0, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2 or not 0 <= pair[0] <= pair[1] < upper:
        raise ConfigError(
            f"LunarLanderOffset {name} = {value} is invalid; give {unit} t in [0, {upper:g}) or [low, high] with 0 <= low <= high < {upper:g}"
        )
    return float(pair[0]), float(pair[1])


class LunarLanderOffset:
    """Start the lander away from where and how the demos start: sideways, tilted and/or spinning.

    gymnasium's lander starts upright above the helipad (x = 0 in the normalised observation,
    where the flags stand at ±0.2 and the screen edges at ±1) with a random push; the scripted
    expert's demos therefore stay near x = 0, upright and barely turning while high up. This
    shift moves the lander and its legs sideways by ``x_offset`` (normalised units, random side),
    rotates them by ``tilt`` radians and sets them turning at ``spin`` rad/s as one rigid body
    (each a uniform draw from its range, random direction), keeping the push's velocity; the
    dynamics are untouched.

    Args:
        x_offset: [low, high] of the lateral offset, in the observation's normalised x.
        tilt: [low, high] of the tilt's size in radians, or one number t for [0, t].
        spin: [low, high] of the added turn rate in rad/s (the observation shows it ×0.4), or t for [0, t].
    """

    def __init__(
        self,
        x_offset: tuple[float, float] = (0.35, 0.5),
        tilt: float | tuple[float, float] = 0.1,
        spin: float | tuple[float, float] = 0.0,
    ) -> None:
        self.x_offset = _band("x_offset", x_offset, 1.0, "a normalised offset")
        self.tilt = _band("tilt", tilt, math.pi / 2, "radians")
        self.spin = _band("spin", spin, 10.0, "rad/s")

    def __call__(self, env: gym.Env, rng: np.random.Generator) -> np.ndarray:
        from gymnasium.envs.box2d.lunar_lander import SCALE, VIEWPORT_W

        half_width = VIEWPORT_W / SCALE / 2
        dx = float(rng.choice([-1.0, 1.0]) * rng.uniform(*self.x_offset) * half_width)
        angle = float(rng.choice([-1.0, 1.0]) * rng.uniform(*self.tilt))
        omega = float(rng.choice([-1.0, 1.0]) * rng.uniform(*self.spin))
        center = env.lander.position.copy()
        cos, sin = math.cos(angle), math.sin(angle)
        for body in [env.lander, *env.legs]:
            rx, ry = body.position.x - center.x, body.position.y - center.y
            # Rotate the whole rigid lander (body and legs) about its centre, then slide it sideways.
            body.transform = ((center.x + dx + cos * rx - sin * ry, center.y + sin * rx + cos * ry), body.angle + angle)
            # Turning as one rigid body: each part gains ω and the velocity ω × r of its place.
            rx, ry = body.position.x - center.x - dx, body.position.y - center.y
            body.angularVelocity = body.angularVelocity + omega
            body.linearVelocity = (body.linearVelocity.x - omega * ry, body.linearVelocity.y + omega * rx)
        # One no-op physics step computes the observation and the reward shaping baseline at the
        # new place, as gymnasium's own reset does after its initial push.
        return env.step(0)[0]


# Where the start-state classes lived before the package moved into rooms (issue 22): configs and
# checkpoints written then name e.g. ``sqil_lightning.start_states.LunarLanderOffset``.
FORMER_MODULES = {
    "sqil_lightning.start_states": "sqil_lightning.envs.start_states",
    "sqil_lightning.car_racing": "sqil_lightning.envs.car_racing",
}


def build_start_shift(spec: dict[str, Any] | None) -> StartShift | None:
    """The shift a config's ``data.start_shift`` names (``{class_path, init_args}``), or None."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ConfigError(
            f"data.start_shift = {spec!r} is invalid; give {{class_path: ..., init_args: {{...}}}}, e.g. "
            "class_path: sqil_lightning.envs.start_states.LunarLanderOffset, or null for the env's own start states"
        )
    module_name, _, class_name = str(spec["class_path"]).rpartition(".")
    module_name = FORMER_MODULES.get(module_name, module_name)
    try:
        shift_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            f"data.start_shift.class_path = {spec['class_path']!r} cannot be imported; "
            "e.g. sqil_lightning.envs.start_states.LunarLanderOffset"
        ) from None
    try:
        return shift_class(**(spec.get("init_args") or {}))
    except TypeError as err:
        raise ConfigError(f"data.start_shift.init_args = {spec.get('init_args')!r} do not fit {spec['class_path']}: {err}") from None
