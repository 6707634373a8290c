"""The demo store: save/load, validation of files, and checks against an env's spaces."""

from __future__ import annotations

import subprocess
import tracemalloc
import zipfile

import numpy as np
import pytest
from fit_process import SQIL_COMMAND

from sqil_lightning.commands import main
from sqil_lightning.demos.store import (
    DemoFileNotFoundError,
    DemoFormatError,
    DemoSet,
    DemoSpecMismatchError,
    EnvSpaces,
)
from sqil_lightning.envs.make import env_spaces

DISCRETE = EnvSpaces(observation_shape=(8,), num_actions=4)


def _write_raw(path, arrays: dict, metadata='{"format_version": 1, "env_id": "X-v0"}'):
    """Write an npz the way a foreign tool would, bypassing DemoSet's own checks."""
    payload = dict(arrays)
    if metadata is not None:
        payload["metadata"] = np.array(metadata)
    np.savez(path, **payload)
    return path


class _SideEffectOnUnpickle:
    """Unpickling this object creates a file: proof that a loader ran pickled code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --- save / load ------------------------------------------------------------------------------------


def test_save_load_round_trip_preserves_arrays_dtypes_and_metadata(tmp_path, make_demo_arrays):
    arrays = make_demo_arrays()
    demos = DemoSet(**arrays, metadata={"env_id": "LunarLander-v3", "source": "unit", "episodes": 2})
    path = demos.save(tmp_path / "sub" / "d.npz")
    loaded = DemoSet.load(path)
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(loaded, key), value)
        assert getattr(loaded, key).dtype == value.dtype
    assert loaded.metadata == {"env_id": "LunarLander-v3", "source": "unit", "episodes": 2, "format_version": 1}
    assert len(loaded) == 7 and loaded.num_episodes == 2
    assert not list(tmp_path.glob("sub/*.tmp*"))  # the atomic-write temp file is gone


def test_episode_returns_sum_env_rewards_per_episode(make_demo_arrays):
    arrays = make_demo_arrays(episode_lengths=(4, 3))
    demos = DemoSet(**arrays)
    np.testing.assert_allclose(demos.episode_returns(), [arrays["rewards"][:4].sum(), arrays["rewards"][4:].sum()], rtol=1e-6)


def test_to_tensordict_uses_torchrl_layout(make_demo_arrays):
    arrays = make_demo_arrays()
    arrays["truncated"][3], arrays["terminated"][3] = True, False  # episode 0 ends by time limit
    td = DemoSet(**arrays).to_tensordict()
    assert td.batch_size == (7,)
    assert td["action"].dtype.is_floating_point is False
    np.testing.assert_array_equal(td["next", "observation"].numpy(), arrays["next_observations"])
    assert td["next", "terminated"].shape == (7, 1)
    np.testing.assert_array_equal(td["next", "done"].squeeze(-1).numpy(), arrays["terminated"] | arrays["truncated"])


def test_file_that_is_not_an_npz_raises_format_error_naming_the_path(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are not demos\n")
    with pytest.raises(DemoFormatError, match="notes.npz"):
        DemoSet.load(path)


def test_missing_key_raises_format_error_naming_the_key(tmp_path, make_demo_arrays):
    arrays = make_demo_arrays()
    del arrays["next_observations"]
    path = _write_raw(tmp_path / "d.npz", arrays)
    with pytest.raises(DemoFormatError, match="next_observations") as err:
        DemoSet.load(path)
    assert str(path) in str(err.value)


def test_missing_metadata_raises_format_error(tmp_path, make_demo_arrays):
    path = _write_raw(tmp_path / "d.npz", make_demo_arrays(), metadata=None)
    with pytest.raises(DemoFormatError, match="metadata"):
        DemoSet.load(path)


def test_unsupported_format_version_raises_format_error(tmp_path, make_demo_arrays):
    path = _write_raw(tmp_path / "d.npz", make_demo_arrays(), metadata='{"format_version": 99}')
    with pytest.raises(DemoFormatError, match="format_version"):
        DemoSet.load(path)


def test_metadata_that_is_not_a_json_object_raises_format_error(tmp_path, make_demo_arrays):
    path = _write_raw(tmp_path / "d.npz", make_demo_arrays(), metadata="[1, 2]")
    with pytest.raises(DemoFormatError, match="metadata"):
        DemoSet.load(path)


def test_mismatched_row_counts_raise_format_error_naming_the_key(tmp_path, make_demo_arrays):
    arrays = make_demo_arrays()
    arrays["actions"] = arrays["actions"][:-1]
    path = _write_raw(tmp_path / "d.npz", arrays)
    with pytest.raises(DemoFormatError, match="actions"):
        DemoSet.load(path)


def test_pickled_object_array_is_rejected_without_unpickling(tmp_path, make_demo_arrays):
    marker = tmp_path / "unpickled.marker"
    arrays = make_demo_arrays()
    arrays["actions"] = np.array([_SideEffectOnUnpickle(marker)] * len(arrays["actions"]), dtype=object)
    path = _write_raw(tmp_path / "evil.npz", arrays)
    with pytest.raises(DemoFormatError, match="evil.npz"):
        DemoSet.load(path)
    assert not marker.exists()


def test_missing_file_raises_not_found_error_saying_how_to_generate(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(DemoFileNotFoundError) as err:
        DemoSet.load(path)
    message = str(err.value)
    assert str(path) in message
    assert "demos generate" in message


def test_episode_not_ending_in_terminated_or_truncated_raises_format_error(tmp_path, make_demo_arrays):
    arrays = make_demo_arrays(episode_lengths=(4, 3))
    arrays["terminated"][3] = False  # episode 0 runs into episode 1 without an end
    path = _write_raw(tmp_path / "d.npz", arrays)
    with pytest.raises(DemoFormatError, match="terminated or truncated"):
        DemoSet.load(path)
    with pytest.raises(DemoFormatError):
        DemoSet(**arrays)


def test_last_row_must_end_the_last_episode(make_demo_arrays):
    arrays = make_demo_arrays(episode_lengths=(4, 3))
    arrays["terminated"][-1] = False
    with pytest.raises(DemoFormatError):
        DemoSet(**arrays)


def test_non_bool_terminated_and_integer_observations_are_rejected(make_demo_arrays):
    arrays = make_demo_arrays()
    arrays["terminated"] = arrays["terminated"].astype(np.int64)
    with pytest.raises(DemoFormatError, match="terminated"):
        DemoSet(**arrays)
    arrays = make_demo_arrays()
    arrays["observations"] = arrays["observations"].astype(np.int64)
    arrays["next_observations"] = arrays["next_observations"].astype(np.int64)
    with pytest.raises(DemoFormatError, match="observations"):
        DemoSet(**arrays)


# --- check_against ----------------------------------------------------------------------------------


def test_matching_discrete_demos_pass_the_spec_check(make_demo_arrays):
    # Demos using every action, the edges 0 and n - 1 included, pass for an env with n actions;
    # the same demos fail for n - 1 actions, so the check neither rejects the top action (off by
    # one) nor accepts everything.
    arrays = make_demo_arrays()
    arrays["actions"] = np.array([0, 1, 2, 3, 3, 2, 0], dtype=np.int64)
    demos = DemoSet(**arrays)
    assert demos.check_against(DISCRETE, "X-v0") is None
    with pytest.raises(DemoSpecMismatchError, match=r"\[0, 3\].*0\.\.2"):
        demos.check_against(EnvSpaces(observation_shape=(8,), num_actions=3), "X-v0")


def test_wrong_observation_shape_is_a_spec_mismatch(make_demo_arrays):
    demos = DemoSet(**make_demo_arrays(obs_dim=8))
    with pytest.raises(DemoSpecMismatchError, match=r"\(8,\).*\(4,\)"):
        demos.check_against(EnvSpaces(observation_shape=(4,), num_actions=4), "X-v0")


@pytest.mark.parametrize("bad_action", [4, -1])
def test_discrete_action_out_of_range_is_a_spec_mismatch(make_demo_arrays, bad_action):
    arrays = make_demo_arrays()
    arrays["actions"][2] = bad_action
    with pytest.raises(DemoSpecMismatchError, match="0..3"):
        DemoSet(**arrays).check_against(DISCRETE, "X-v0")


def test_float_actions_for_a_discrete_env_are_a_spec_mismatch(make_demo_arrays):
    arrays = make_demo_arrays()
    arrays["actions"] = arrays["actions"].astype(np.float32)
    with pytest.raises(DemoSpecMismatchError, match="integer"):
        DemoSet(**arrays).check_against(DISCRETE, "X-v0")


def _continuous_demos(make_demo_arrays, actions):
    arrays = make_demo_arrays()
    arrays["actions"] = np.asarray(actions, dtype=np.float32)
    return DemoSet(**arrays)


BOX = EnvSpaces(observation_shape=(8,), action_shape=(2,), action_low=np.array([-1.0, -1.0]), action_high=np.array([1.0, 1.0]))


def test_continuous_actions_inside_bounds_pass(make_demo_arrays):
    # Actions on each dimension's own bounds pass, including a float32 action that rounds a hair
    # past its float64 bound (0.1 is 0.10000000149 in float32, as recorded demos store it); an
    # action a visible step past a bound is refused. A strict comparison, a check without the
    # rounding tolerance or one that mixes up the dimensions' bounds fails here.
    box = EnvSpaces(observation_shape=(8,), action_shape=(2,), action_low=np.array([-2.0, -0.5]), action_high=np.array([2.0, 0.1]))
    actions = np.array([[-2.0, -0.5], [2.0, 0.1], [0.0, 0.0], [-2.0, 0.1], [2.0, -0.5], [1.0, 0.05], [-1.0, -0.25]])
    demos = _continuous_demos(make_demo_arrays, actions)
    assert demos.actions.dtype == np.float32 and demos.actions[1, 1] > box.action_high[1]
    assert demos.check_against(box, "Box-v0") is None
    for row, column, past in [(1, 1, 0.1 + 1e-3), (0, 1, -0.5 - 1e-3), (1, 0, 2.0 + 1e-3), (0, 0, -2.0 - 1e-3)]:
        outside = actions.copy()
        outside[row, column] = past
        with pytest.raises(DemoSpecMismatchError, match="bounds"):
            _continuous_demos(make_demo_arrays, outside).check_against(box, "Box-v0")


@pytest.mark.parametrize("value", [1.5, -1.01])
def test_continuous_actions_outside_bounds_are_a_spec_mismatch(make_demo_arrays, value):
    actions = np.zeros((7, 2))
    actions[5, 1] = value
    with pytest.raises(DemoSpecMismatchError, match="bounds"):
        _continuous_demos(make_demo_arrays, actions).check_against(BOX, "Box-v0")


def test_continuous_actions_of_wrong_shape_are_a_spec_mismatch(make_demo_arrays):
    with pytest.raises(DemoSpecMismatchError, match="shape"):
        _continuous_demos(make_demo_arrays, np.zeros((7, 3))).check_against(BOX, "Box-v0")


# --- the `demos` command line ---------------------------------------------------------------------------


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_demos_inspect_of_a_bad_file_exits_2_with_one_error_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    proc = subprocess.run(
        [*SQIL_COMMAND, "demos", "inspect", str(bad)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert str(bad) in lines[0]
    assert "Traceback" not in proc.stderr


def test_demos_generate_writes_a_lunarlander_file_and_inspect_rejects_it_for_cartpole(tmp_path, capsys):
    out = tmp_path / "ll.npz"
    main(["demos", "generate", "--expert", "lunarlander_scripted", "--episodes", "2", "--out", str(out)])
    assert str(out) in capsys.readouterr().out

    demos = DemoSet.load(out)
    assert demos.num_episodes == 2
    assert demos.observations.shape[1:] == (8,)
    assert set(np.unique(demos.actions)) <= {0, 1, 2, 3}
    assert demos.metadata["env_id"] == "LunarLander-v3"
    assert demos.metadata["source"] == "lunarlander_scripted"
    demos.check_against(env_spaces("LunarLander-v3"), "LunarLander-v3")

    main(["demos", "inspect", str(out), "--env-id", "LunarLander-v3"])
    assert "2 episodes" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        main(["demos", "inspect", str(out), "--env-id", "CartPole-v1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert "CartPole-v1" in err[0] and "(8,)" in err[0] and "(4,)" in err[0]


def test_recorded_expert_episodes_are_whole_and_end_terminated(lunarlander_demo_file):
    demos = DemoSet.load(lunarlander_demo_file)
    assert demos.num_episodes == 2
    ends = np.flatnonzero(np.diff(demos.episode_ids)).tolist() + [len(demos) - 1]
    assert (demos.terminated | demos.truncated)[ends].all()
    # Consecutive rows within an episode chain: next observation of row t is observation of row t+1.
    same_episode = demos.episode_ids[:-1] == demos.episode_ids[1:]
    np.testing.assert_array_equal(demos.next_observations[:-1][same_episode], demos.observations[1:][same_episode])
    assert demos.metadata["seed"] == 0


# --- success-only recording -----------------------------------------------------------------------------

# The scripted lander comes to rest outside the flags from reset seeds 1000000 and 1000001 and lands
# from 1000002 and 1000003 (checked by the first assertion of the test below).
FAILING_THEN_LANDING_SEED = 1_000_000


def test_success_only_demos_skip_the_seeds_of_failed_episodes(tmp_path, capsys):
    from sqil_lightning.demos.experts import generate_expert_demos

    everything = generate_expert_demos("lunarlander_scripted", 4, FAILING_THEN_LANDING_SEED, tmp_path / "all.npz")
    last_rows = np.flatnonzero(np.r_[np.diff(everything.episode_ids), 1])
    landed_between_flags = np.abs(everything.next_observations[last_rows, 0]) <= 0.2
    assert landed_between_flags.tolist() == [False, False, True, True]

    out = tmp_path / "success.npz"
    main(["demos", "generate", "--expert", "lunarlander_scripted", "--episodes", "2", "--seed", str(FAILING_THEN_LANDING_SEED), "--success-only", "--out", str(out)])
    assert str(out) in capsys.readouterr().out
    kept = DemoSet.load(out)
    assert kept.num_episodes == 2
    assert kept.metadata["success_only"] is True and kept.metadata["episodes_tried"] == 4
    # The kept episodes are exactly the third and fourth of the unfiltered recording.
    landing = everything.episode_ids >= 2
    np.testing.assert_array_equal(kept.observations, everything.observations[landing])
    np.testing.assert_array_equal(kept.actions, everything.actions[landing])


def test_success_only_demos_of_a_task_without_success_are_refused(tmp_path):
    from torchrl.envs.utils import RandomPolicy

    from sqil_lightning.demos.experts import record_demos
    from sqil_lightning.envs.make import make_env
    from sqil_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="Pendulum-v1 has none.*LunarLander"):
        record_demos("Pendulum-v1", RandomPolicy(make_env("Pendulum-v1").action_spec), 1, 0, "random", success_only=True)


def test_success_only_demos_get_their_own_default_file():
    from sqil_lightning.data.datamodule import SQILDataModule

    plain = SQILDataModule(demo_expert="lunarlander_scripted").demos.file
    success = SQILDataModule(demo_expert="lunarlander_scripted", demo_success_only=True).demos.file
    assert plain.name == "LunarLander-v3_lunarlander_scripted_100ep_seed0.npz"
    assert success.name == "LunarLander-v3_lunarlander_scripted_100ep_success_seed0.npz"


# --- files crafted to hurt: zip bombs ---------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_anything_is_inflated(tmp_path, make_demo_arrays):
    from test_bad_inputs import write_zip_bomb

    path = tmp_path / "bomb.npz"
    write_zip_bomb(path, make_demo_arrays(), inflated_bytes=64 * 2**20)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DemoFormatError, match="key 'actions' has shape"):
            DemoSet.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB allocated: the 64 MiB entry was inflated before the check"


def test_an_entry_whose_declared_size_disagrees_with_its_header_is_refused(tmp_path, make_demo_arrays):
    arrays = make_demo_arrays()
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in {**arrays, "metadata": np.array('{"format_version": 1}')}.items():
            with archive.open(f"{key}.npy", "w") as member:
                if key == "observations":  # a header for all 7 rows, then the bytes of 3
                    np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(value))
                    member.write(value[:3].tobytes())
                else:
                    np.lib.format.write_array(member, value)
    with pytest.raises(DemoFormatError, match=r"entry 'observations.npy' declares \d+ bytes but its header .* needs"):
        DemoSet.load(path)


def test_demos_larger_than_the_free_memory_are_refused_unread(tmp_path, make_demo_arrays, monkeypatch):
    path = DemoSet(**make_demo_arrays(), metadata={}).save(tmp_path / "d.npz")
    monkeypatch.setattr("sqil_lightning.demos.format.available_memory", lambda: 100)
    with pytest.raises(DemoFormatError, match=r"inflates to .* GiB but only .* GiB of memory is available"):
        DemoSet.load(path)
