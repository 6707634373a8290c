"""Shifted start states (S0^train): the LunarLander shift moves where episodes start, not how the
lander moves; configs select it, and a fit reports S0^demo and S0^train side by side."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest

from sqil_lightning.envs.make import make_gym_env
from sqil_lightning.errors import ConfigError
from sqil_lightning.envs.start_states import LunarLanderOffset, build_start_shift

from fit_process import fit_args

SHIFT_SPEC = {"class_path": "sqil_lightning.envs.start_states.LunarLanderOffset", "init_args": {"x_offset": [0.45, 0.6], "tilt": 0.2}}


def _starts(shift, episodes: int = 40) -> np.ndarray:
    env = make_gym_env("LunarLander-v3", start_shift=shift)
    return np.stack([env.reset(seed=100 + i)[0] for i in range(episodes)])


def test_shift_moves_the_start_positions_far_from_the_demo_starts():
    plain, shifted = _starts(None), _starts(build_start_shift(SHIFT_SPEC))
    assert np.abs(plain[:, 0]).max() < 0.05  # the env starts above the helipad
    assert (np.abs(shifted[:, 0]) > 0.44).all() and (np.abs(shifted[:, 0]) < 0.62).all()
    assert (shifted[:, 0] < 0).any() and (shifted[:, 0] > 0).any()  # both sides
    assert np.abs(shifted[:, 4]).max() > 0.05 > np.abs(plain[:, 4]).max()  # tilted
    np.testing.assert_allclose(shifted[:, 1], plain[:, 1], atol=0.05)  # same height


def test_shifted_starts_are_reproducible_from_the_reset_seed():
    shift = build_start_shift(SHIFT_SPEC)
    np.testing.assert_array_equal(_starts(shift, 5), _starts(shift, 5))


def test_a_zero_shift_leaves_the_trajectory_of_the_plain_env_unchanged():
    # The shift adds gymnasium's own kind of no-op step after the reset; with nothing moved, the
    # shifted env must then follow the plain env step for step: the dynamics are the env's own.
    plain = make_gym_env("LunarLander-v3")
    zero = make_gym_env("LunarLander-v3", start_shift=LunarLanderOffset(x_offset=(0.0, 0.0), tilt=0.0))
    plain.reset(seed=7)
    rng = plain.unwrapped.np_random  # the shift draws from the env's RNG
    for _ in range(3):  # side and offset, tilt direction and tilt, spin direction and spin
        rng.choice([-1.0, 1.0]), rng.uniform(0.0, 0.0)
    plain.step(0)
    zero.reset(seed=7)
    for action in np.random.default_rng(0).integers(0, 4, size=80):
        expected, got = plain.step(int(action)), zero.step(int(action))
        np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-5)
        if expected[2] or expected[3]:
            break


def test_shifted_lander_falls_and_keeps_its_legs_like_an_unshifted_one():
    plain = make_gym_env("LunarLander-v3")
    shifted = make_gym_env("LunarLander-v3", start_shift=LunarLanderOffset(x_offset=(0.5, 0.5), tilt=0.0))
    plain.reset(seed=3)
    plain.step(0)
    shifted.reset(seed=3)
    for _ in range(20):  # free fall high above the terrain: only gravity acts
        p, s = plain.step(0)[0], shifted.step(0)[0]
        np.testing.assert_allclose(s[1:4], p[1:4], atol=1e-5)  # height and velocities
        assert abs(abs(s[0] - p[0]) - 0.5) < 1e-4  # the lateral offset stays put
    lander = shifted.unwrapped
    for leg in lander.legs:  # the leg joints still hold: legs hang where the body is
        assert abs(leg.position.x - lander.lander.position.x) < 1.0


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ({"class_path": "nope.Shift"}, "data.start_shift.class_path = 'nope.Shift' cannot be imported"),
        ({"x_offset": [0.5, 0.6]}, "data.start_shift = "),
        ({"class_path": "sqil_lightning.envs.start_states.LunarLanderOffset", "init_args": {"offset": 1}}, "do not fit"),
        ({"class_path": "sqil_lightning.envs.start_states.LunarLanderOffset", "init_args": {"x_offset": [0.7, 0.5]}}, "x_offset = [0.7, 0.5] is invalid"),
    ],
)
def test_bad_start_shift_configs_are_named(spec, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        build_start_shift(spec)


def test_fit_with_shifted_starts_reports_both_start_sets(tmp_path, monkeypatch, lunarlander_demo_file):
    from sqil_lightning.commands import main

    monkeypatch.chdir(tmp_path)
    args = fit_args(
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--data.demo_path", str(lunarlander_demo_file),
        "--data.start_shift", json.dumps(SHIFT_SPEC),
    )  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(args)
    log_dir = tmp_path / "runs" / "fast" / "version_0"
    result = json.loads((log_dir / "result.json").read_text())
    assert {"greedy", "greedy_shifted"} <= result.keys()
    assert len(result["greedy_shifted"]["per_episode"]["returns"]) == 2  # fast.yaml's final_episodes
    assert result["greedy"]["per_episode"]["returns"] != result["greedy_shifted"]["per_episode"]["returns"]
    header = (log_dir / "metrics.csv").read_text().splitlines()[0]
    assert "eval_shifted/greedy/success_rate" in header and "eval/greedy/success_rate" in header
    assert "greedy_shifted: mean return" in out.getvalue()


def test_a_tilt_band_starts_beyond_every_demo_attitude(lunarlander_demo_file):
    from sqil_lightning.demos.store import DemoSet

    band = {"class_path": "sqil_lightning.envs.start_states.LunarLanderOffset", "init_args": {"x_offset": [0.0, 0.0], "tilt": [0.6, 0.9]}}
    plain, tilted = _starts(None), _starts(build_start_shift(band))
    angles = tilted[:, 4]
    # The observation's angle after the shift's no-op step: the band, give or take the push's spin.
    assert (np.abs(angles) > 0.58).all() and (np.abs(angles) < 0.92).all()
    assert (angles < 0).any() and (angles > 0).any()  # both directions
    np.testing.assert_allclose(tilted[:, :2], plain[:, :2], atol=0.02)  # same place
    demo_angles = np.abs(DemoSet.load(lunarlander_demo_file).observations[:, 4])
    assert np.abs(angles).min() > demo_angles.max()


def test_a_tilt_band_outside_a_quarter_turn_is_named():
    with pytest.raises(ConfigError, match=re.escape("tilt = [0.9, 0.6] is invalid")):
        LunarLanderOffset(tilt=[0.9, 0.6])


def test_a_spin_band_turns_the_whole_lander_beyond_every_demo_turn_rate(lunarlander_demo_file):
    from sqil_lightning.demos.store import DemoSet

    spinning = LunarLanderOffset(x_offset=[0.0, 0.0], tilt=0.0, spin=[1.0, 2.0])
    plain, spun = _starts(None), _starts(spinning)
    turn_rates = spun[:, 5]  # the observation's angular velocity: 0.4 x rad/s, plus the push's own
    assert (np.abs(turn_rates) > 0.2).all() and (np.abs(turn_rates) < 1.0).all()
    assert (turn_rates < 0).any() and (turn_rates > 0).any()  # both directions
    np.testing.assert_allclose(spun[:, :4], plain[:, :4], atol=0.03)  # about the same place and motion of the centre
    demos = DemoSet.load(lunarlander_demo_file).observations
    high_up = demos[:, 1] > 1.2  # near the start height, where the shifted episodes begin
    assert np.abs(turn_rates).min() > np.abs(demos[high_up, 5]).max()
    # A rigid turn: after a second of free fall the legs are still where the body's frame says.
    env = make_gym_env("LunarLander-v3", start_shift=spinning)
    env.reset(seed=3)
    lander = env.unwrapped
    offsets = [(leg.position - lander.lander.position).length for leg in lander.legs]
    for _ in range(50):
        env.step(0)
    np.testing.assert_allclose([(leg.position - lander.lander.position).length for leg in lander.legs], offsets, atol=0.1)
