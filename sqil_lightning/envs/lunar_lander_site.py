"""The paper's Lunar Lander (sec. 5.1): a landing site that moves, six actions, 9 observations.

``LunarLanderSite-v0`` is gymnasium's ``LunarLander-v3`` with the landing pad moved, per episode,
to a site along the ground. The paper gives the task in three sentences (sec. 5.1): "six discrete
actions for steering and firing the main engine", "state observations s ∈ R^9 encode position,
velocity, orientation, and the location of the landing site", and success is "landing at the
target without crashing, flying out of bounds, or running out of time". Everything else is a
choice made here; each one is listed, with its reason, in `LunarLanderSite`'s docstring.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
from Box2D.b2 import edgeShape
from gymnasium import spaces
from gymnasium.envs.box2d.lunar_lander import FPS, LEG_DOWN, SCALE, VIEWPORT_H, VIEWPORT_W, LunarLander
from gymnasium.utils import EzPickle

from sqil_lightning.errors import ConfigError

ENV_ID = "LunarLanderSite-v0"

# gymnasium's terrain, as built inside `LunarLander.reset` (local names there): CHUNKS vertices
# 20 / 10 = 2 world units apart; the pad is flat over chunks 3..7 with its flags on chunks 4 and 6.
W = VIEWPORT_W / SCALE
H = VIEWPORT_H / SCALE
CHUNKS = 11
CHUNK_X = tuple(W / (CHUNKS - 1) * i for i in range(CHUNKS))
CENTRE_CHUNK = CHUNKS // 2
# Chunks a site may be centred on: its flat ground (site ± 2 chunks) stays on the screen, its flags
# (site ± 1) stand at x = 2..18 of 20, inside the out-of-bounds lines at 0 and 20.
SITE_CHUNKS = tuple(range(2, CHUNKS - 2))

# Action index -> (main engine on, side engine direction: -1 left, 0 none, +1 right). Indices 0..3
# are gymnasium's own discrete actions (noop, left, main, right); 4 and 5 fire main and a side
# engine together, which gymnasium's discrete lander cannot.
ACTION_ENGINES = ((False, 0), (False, -1), (True, 0), (False, +1), (True, -1), (True, +1))
# The same actions as gymnasium's continuous commands [main, lateral]: main -1 is off, +1 full power
# (m_power 1.0, as the discrete main engine); lateral ±1 is full power (s_power 1.0) on the side
# gymnasium's discrete left (1) / right (3) engines fire (direction = sign(lateral) = action - 2).
CONTINUOUS_ACTIONS = np.array([[1.0 if main else -1.0, float(side)] for main, side in ACTION_ENGINES])

# gymnasium's fuel costs per step at full power (literals in `LunarLander.step`).
MAIN_ENGINE_COST = 0.30
SIDE_ENGINE_COST = 0.03


def site_observation(site_chunk: int) -> float:
    """The 9th observation value: the site's x, normalised like gymnasium's x (screen centre 0,
    screen edges ±1)."""
    return (CHUNK_X[site_chunk] - W / 2) / (W / 2)


class LunarLanderSite(LunarLander):
    """gymnasium's Lunar Lander with a landing site drawn per episode and six discrete actions.

    Choices the paper leaves open, and why:

    - **Where the site can be.** Centred on one of the terrain chunks 2..8 (x = 4, 6, ..., 16
      world units; 9th observation -0.6, -0.4, ..., +0.6), drawn uniformly with the env's seeded
      RNG (``self.np_random``) at each reset, so a seed fixes the site. gymnasium's terrain is 11
      vertices 2 units apart and its pad is a chunk-aligned flat stretch; keeping the site on a
      chunk keeps that construction (and gymnasium's own terrain when the site is the centre).
      The edges are excluded so both flags (and their drawings) stay on the screen and the
      flags stay inside the out-of-bounds lines. The centre is one of the seven sites.
    - **What the site looks like.** Exactly gymnasium's pad, moved: the terrain heights are
      gymnasium's own random draw, flattened at H/4 over the site's chunk ± 2 instead of the
      centre's (so the old centre is rough ground unless it overlaps the site), flags at the
      site's chunk ± 1: 4 world units apart, ±0.2 in the observation's x units, as gymnasium's.
      Only x varies: the paper's 9th value is one number for the site's location.
    - **Start states.** gymnasium's: the lander starts at the top centre with a random push.
      (The paper's S0^train, a start rarely seen in the demos, is a separate start-state shift.)
    - **Observation (9 values).** gymnasium's 8, measured from the site where gymnasium measures
      from the pad: x is (lander x - site x) / 10, so 0 above the site and ±0.2 at its flags;
      y is height above the site's ground + leg length, unchanged since every site sits at the
      pad's height; velocities, angle, angular velocity and leg contacts unchanged. The 9th is
      the site's x, normalised like gymnasium's x (`site_observation`). Site-relative values keep
      the meaning of every value a gymnasium-trained policy (or gymnasium's `heuristic`) reads:
      steering to x = 0 steers to the site. x now spans about ±1.6; the bounds stay gymnasium's
      (±2.5).
    - **Actions.** Six: {main engine off, on} × {no side engine, left, right}, indexed so 0..3
      are gymnasium's (0 noop, 1 left, 2 main, 3 right) and 4 = main + left, 5 = main + right
      (`ACTION_ENGINES`). Every engine fires at full power, as gymnasium's discrete engines; the
      parent runs in continuous mode (`CONTINUOUS_ACTIONS`) because its discrete mode cannot fire
      two engines at once. Both modes draw the same engine dispersion from the RNG, so actions
      0..3 are step for step gymnasium's discrete actions.
    - **Reward.** gymnasium's, with the shaping distance measured to the site: -100·|(x, y)| to
      the site, -100·|velocity|, -100·|angle|, +10 a leg in contact, as a difference between
      steps; fuel -0.3 a main-engine step, -0.03 a side-engine step (so 4 and 5 cost 0.33);
      -100 for a crash or leaving the screen, +100 for coming to rest. SQIL relabels rewards, so
      this reward serves only experts trained on it and reported returns.
    - **Termination.** gymnasium's: the body touches the ground, the lander leaves the screen
      (|screen x| >= 1: out of bounds is about the screen, not the site), or it comes to rest.
      The time limit is gymnasium's 1000 steps (the registration's ``max_episode_steps``).
    - **Success** (`sqil_lightning.envs.make.LunarLanderSuccess`, the same rule as ``LunarLander-v3``):
      at rest, not crashed, |x| <= 0.2, i.e. between the site's flags since x is site-relative.
    - **Determinism.** The paper calls the dynamics deterministic; gymnasium's engines add a small
      dispersion drawn from the env's RNG. It is kept (seeded, so an episode replays exactly from
      its seed), so the dynamics stay gymnasium's own.

    ``reset(options={"site": chunk})`` forces the site (a chunk in `SITE_CHUNKS`) and draws nothing
    for it from the RNG; with ``chunk = CENTRE_CHUNK`` (5) the episode is step for step
    gymnasium's ``LunarLander-v3`` for the same seed (observation values 0..7 and rewards).
    """

    def __init__(
        self,
        render_mode: str | None = None,
        gravity: float = -10.0,
        enable_wind: bool = False,
        wind_power: float = 15.0,
        turbulence_power: float = 1.5,
    ) -> None:
        super().__init__(
            render_mode=render_mode,
            continuous=True,
            gravity=gravity,
            enable_wind=enable_wind,
            wind_power=wind_power,
            turbulence_power=turbulence_power,
        )
        # Pickling rebuilds the env from these arguments (the parent's list has ``continuous``).
        EzPickle.__init__(self, render_mode, gravity, enable_wind, wind_power, turbulence_power)
        self.action_space = spaces.Discrete(len(ACTION_ENGINES))
        low, high = self.observation_space.low, self.observation_space.high
        site_low, site_high = site_observation(SITE_CHUNKS[0]), site_observation(SITE_CHUNKS[-1])
        self.observation_space = spaces.Box(
            np.append(low, np.float32(site_low)), np.append(high, np.float32(site_high)), dtype=np.float32
        )
        self.site_chunk = CENTRE_CHUNK
        self._prev_site_shaping: float | None = None
        self._in_parent_reset = False

    @property
    def site_x(self) -> float:
        """The site's centre in world units (between its flags)."""
        return CHUNK_X[self.site_chunk]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)  # seeds self.np_random as the parent's reset would
        site = (options or {}).get("site")
        if site is None:
            site = int(self.np_random.integers(SITE_CHUNKS[0], SITE_CHUNKS[-1] + 1))
        elif isinstance(site, bool) or not isinstance(site, (int, np.integer)) or site not in SITE_CHUNKS:
            raise ConfigError(f"site = {site!r} is invalid; give a terrain chunk in {SITE_CHUNKS[0]}..{SITE_CHUNKS[-1]} (centre {CENTRE_CHUNK})")
        self.site_chunk = int(site)
        # The parent's next draw is its terrain heights: a copy of the RNG replays them below.
        terrain_rng = copy.deepcopy(self.np_random)
        # The parent's reset ends with one no-op step in its own (continuous) action format, and
        # would render its centre pad in human mode: pass that step through, render afterwards.
        render_mode, self.render_mode = self.render_mode, None
        self._in_parent_reset = True
        try:
            super().reset(options=options)  # no seed: the RNG seeded above goes on
        finally:
            self._in_parent_reset = False
            self.render_mode = render_mode
        if self.site_chunk != CENTRE_CHUNK:
            # The lander is still at the top of the screen: moving the ground changes nothing yet.
            self._build_ground(terrain_rng.uniform(0, H / 2, size=(CHUNKS + 1,)))
        state = self._state()
        self._prev_site_shaping = self._shaping(state)
        if self.render_mode == "human":
            self.render()
        return self._observation(state), {}

    def step(self, action):
        if self._in_parent_reset:
            return super().step(action)
        if not self.action_space.contains(action):
            raise ValueError(f"{action!r} ({type(action)}) is not an action of {ENV_ID}: give an integer in 0..{len(ACTION_ENGINES) - 1}")
        main_on, side = ACTION_ENGINES[int(action)]
        _, env_reward, terminated, truncated, info = super().step(CONTINUOUS_ACTIONS[int(action)].copy())
        state = self._state()
        shaping = self._shaping(state)
        # gymnasium's reward with its shaping measured to the site, in gymnasium's order of terms.
        reward = shaping - self._prev_site_shaping
        self._prev_site_shaping = shaping
        reward -= MAIN_ENGINE_COST * float(main_on)
        reward -= SIDE_ENGINE_COST * float(side != 0)
        if terminated:  # crash / out of bounds / at rest: the parent's -100 or +100 replaces it
            reward = env_reward
        return self._observation(state), reward, terminated, truncated, info

    def _build_ground(self, height: np.ndarray) -> None:
        """gymnasium's terrain from its ``height`` draw, with the pad at ``self.site_chunk``."""
        site = self.site_chunk
        height[site - 2 : site + 3] = self.helipad_y
        smooth_y = [0.33 * (height[i - 1] + height[i + 0] + height[i + 1]) for i in range(CHUNKS)]
        self.world.DestroyBody(self.moon)
        self.moon = self.world.CreateStaticBody(shapes=edgeShape(vertices=[(0, 0), (W, 0)]))
        self.sky_polys = []
        for i in range(CHUNKS - 1):
            p1 = (CHUNK_X[i], smooth_y[i])
            p2 = (CHUNK_X[i + 1], smooth_y[i + 1])
            self.moon.CreateEdgeFixture(vertices=[p1, p2], density=0, friction=0.1)
            self.sky_polys.append([p1, p2, (p2[0], H), (p1[0], H)])
        self.moon.color1 = (0.0, 0.0, 0.0)
        self.moon.color2 = (0.0, 0.0, 0.0)
        # The parent draws its flags here.
        self.helipad_x1 = CHUNK_X[site - 1]
        self.helipad_x2 = CHUNK_X[site + 1]

    def _state(self) -> list[float]:
        """gymnasium's 8 state values (`LunarLander.step`'s formulas, float64), x from the site."""
        pos = self.lander.position
        vel = self.lander.linearVelocity
        return [
            (pos.x - self.site_x) / (VIEWPORT_W / SCALE / 2),
            (pos.y - (self.helipad_y + LEG_DOWN / SCALE)) / (VIEWPORT_H / SCALE / 2),
            vel.x * (VIEWPORT_W / SCALE / 2) / FPS,
            vel.y * (VIEWPORT_H / SCALE / 2) / FPS,
            self.lander.angle,
            20.0 * self.lander.angularVelocity / FPS,
            1.0 if self.legs[0].ground_contact else 0.0,
            1.0 if self.legs[1].ground_contact else 0.0,
        ]

    @staticmethod
    def _shaping(state: list[float]) -> float:
        """gymnasium's potential (`LunarLander.step`), on the site-relative state."""
        return (
            -100 * np.sqrt(state[0] * state[0] + state[1] * state[1])
            - 100 * np.sqrt(state[2] * state[2] + state[3] * state[3])
            - 100 * abs(state[4])
            + 10 * state[6]
            + 10 * state[7]
        )

    def _observation(self, state: list[float]) -> np.ndarray:
        return np.array([*state, site_observation(self.site_chunk)], dtype=np.float32)


def register() -> None:
    """Make ``LunarLanderSite-v0`` known to ``gymnasium.make`` (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="sqil_lightning.envs.lunar_lander_site:LunarLanderSite", max_episode_steps=1000)
