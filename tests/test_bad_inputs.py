"""Every bad input a user can type gets one `error:` line naming what is wrong and what is valid.

`BAD_INPUTS` is the table: a short description, the command line, and fragments the error line
must contain. Each case runs `main([...])` in a fresh tmp dir and must fail before training
starts (exit status 2, exactly one `error:` line on stderr, no traceback).

Paths in the table are relative to that tmp dir, where `write_input_files` has put the demo
files the cases refer to; `conf/…` and `tests/conf/…` resolve to this repository's configs.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sqil_lightning.demos.store import DemoSet

from fit_process import REPO

LL = "conf/lunarlander.yaml"
PENDULUM = "conf/pendulum.yaml"
FAST = "tests/conf/fast.yaml"
# Demo files never come from an expert in these cases: the file given must be used as it is.
NO_EXPERT = ["--data.demo_expert", "null"]

BAD_INPUTS = [
    # (description, command line, fragments the one error line must contain)
    ("unknown env id",
     ["fit", "--config", LL, "--data.env_id", "Nope-v0"],
     ["'Nope-v0'", "valid ids include", "LunarLander-v3", "Pendulum-v1"]),
    ("lunarlander config on Pendulum (SoftQSQIL on Box actions)",
     ["fit", "--config", LL, "--data.env_id", "Pendulum-v1", *NO_EXPERT, "--data.demo_path", "unused.npz"],
     ["SoftQSQIL", "discrete actions", "model.class_path sqil_lightning.SACSQIL"]),
    ("lunarlander config on Pendulum with its default expert",
     ["fit", "--config", LL, "--data.env_id", "Pendulum-v1"],
     ["data.env_id", "continuous", "SACSQIL"]),
    ("pendulum config on LunarLander (SACSQIL on discrete actions)",
     ["fit", "--config", PENDULUM, "--data.env_id", "LunarLander-v3"],
     ["SACSQIL", "continuous (Box) actions", "model.class_path sqil_lightning.SoftQSQIL"]),
    ("missing demo file and no expert",
     ["fit", "--config", LL, "--config", FAST, *NO_EXPERT, "--data.demo_path", "nope.npz"],
     ["data.demo_path = nope.npz does not exist", "Ways to get demos", "data.demo_expert", "demos generate",
      "data.demo_minari"]),
    ("LunarLander demo file with Pendulum",
     ["fit", "--config", PENDULUM, *NO_EXPERT, "--data.demo_path", "lunarlander_2ep.npz"],
     ["demo file lunarlander_2ep.npz", "(8,)", "Pendulum-v1", "(3,)"]),
    ("Pendulum-shaped demo file with LunarLander",
     ["fit", "--config", LL, "--config", FAST, *NO_EXPERT, "--data.demo_path", "pendulum_shaped.npz"],
     ["demo file pendulum_shaped.npz", "(3,)", "LunarLander-v3", "(8,)"]),
    ("negative learning rate",
     ["fit", "--config", LL, "--model.lr", "-1"],
     ["model.lr = -1.0", "(0.0, inf)"]),
    ("zero batch size",
     ["fit", "--config", LL, "--data.batch_size", "0"],
     ["data.batch_size = 0", "positive integer"]),
    ("negative lambda_samp",
     ["fit", "--config", LL, "--model.lambda_samp", "-0.5"],
     ["model.lambda_samp = -0.5", "[0.0, inf)"]),
    ("non-numeric learning rate",
     ["fit", "--config", LL, "--model.lr", "abc"],
     ["model.lr", "float", "abc"]),
    ("non-numeric max_steps",
     ["fit", "--config", LL, "--trainer.max_steps", "abc"],
     ["trainer.max_steps", "int", "abc"]),
    ("unknown reward source",
     ["fit", "--config", LL, "--data.reward", "foo"],
     ["data.reward = 'foo'", "'sqil'", "'env'"]),
    ("unknown evaluation mode",
     ["fit", "--config", LL, "--evaluation.modes", "[greedy]"],
     ["modes", "'greedy'", "'deterministic'", "'stochastic'"]),
    ("demo reward overflowing float32",
     ["fit", "--config", LL, "--data.demo_reward", "1e38"],
     ["data.demo_reward = 1e+38", "absorbing-state reward", "float32"]),
    ("zero finite-loss check interval",
     ["fit", "--config", LL, "--finite_loss.every_n_steps", "0"],
     ["finite_loss.every_n_steps = 0", "positive integer"]),
    ("unknown W&B mode",
     ["fit", "--config", LL, "--wandb.mode", "offlin"],
     ["wandb.mode = 'offlin'", "'auto'", "'online'", "'offline'", "'disabled'"]),
    ("config file that does not exist",
     ["fit", "--config", "missing.yaml"],
     ["missing.yaml", "does not exist"]),
    ("unknown argument",
     ["fit", "--config", LL, "--foo", "3"],
     ["unrecognized arguments", "--foo"]),
    ("demo file that is not a zip",
     ["fit", "--config", LL, "--config", FAST, *NO_EXPERT, "--data.demo_path", "not_a_zip.npz"],
     ["demo file not_a_zip.npz", "not a readable .npz demo file"]),
    ("demo file that is a pickle",
     ["fit", "--config", LL, "--config", FAST, *NO_EXPERT, "--data.demo_path", "pickle.npz"],
     ["demo file pickle.npz", "not a readable .npz demo file"]),
    ("demo .npz holding an object array",
     ["fit", "--config", LL, "--config", FAST, *NO_EXPERT, "--data.demo_path", "object_array.npz"],
     ["demo file object_array.npz", "not a readable .npz demo file"]),
    ("expert checkpoint that runs code when unpickled (demos record)",
     ["demos", "record", "--checkpoint", "malicious.ckpt", "--out", "out.npz"],
     ["expert checkpoint malicious.ckpt", "io.open", "could run code"]),
    ("expert checkpoint that runs code when unpickled (data.demo_expert)",
     ["fit", "--config", LL, "--config", FAST, "--data.demo_expert", "malicious.ckpt", "--data.demo_path", "new.npz"],
     ["expert checkpoint malicious.ckpt", "io.open", "could run code"]),
    ("resume from a checkpoint that runs code when unpickled",
     ["fit", "--config", LL, "--config", FAST, "--ckpt_path", "malicious.ckpt"],
     ["--ckpt_path malicious.ckpt", "io.open", "could run code"]),
    ("demo .npz that inflates to 64 MiB from 65 KiB (zip bomb)",
     ["fit", "--config", LL, "--config", FAST, *NO_EXPERT, "--data.demo_path", "bomb.npz"],
     ["demo file bomb.npz", "'actions'", "expected 2097152 rows like 'observations'"]),
    ("batch with no demo row (batch_size 1)",
     ["fit", "--config", LL, "--data.batch_size", "1"],
     ["data.batch_size = 1", "0 demo rows", "at least 2"]),
    ("batch with no demo row (demo_fraction 0.005)",
     ["fit", "--config", LL, "--config", FAST, "--data.demo_fraction", "0.005"],
     ["data.batch_size = 64 with data.demo_fraction = 0.005", "0 demo rows", "at least 101"]),
    ("batch with no agent row (demo_fraction 0.999)",
     ["fit", "--config", LL, "--data.demo_fraction", "0.999"],
     ["data.demo_fraction = 0.999", "0 agent rows", "at least 501"]),
    ("demo file with NaN in its observations",
     ["fit", "--config", LL, "--config", FAST, *NO_EXPERT, "--data.demo_path", "nan.npz"],
     ["demo file nan.npz", "'observations'", "NaN or inf at row 5 (episode 1)"]),
    ("demo file with inf in its next observations (demos inspect)",
     ["demos", "inspect", "inf.npz"],
     ["demo file inf.npz", "'next_observations'", "NaN or inf at row 2 (episode 0)"]),
    ("demo file whose episodes' rows are not contiguous",
     ["demos", "inspect", "interleaved.npz"],
     ["demo file interleaved.npz", "episode 0 are not contiguous", "row 5"]),
    ("--ckpt_path that does not exist",
     ["fit", "--config", LL, "--config", FAST, "--ckpt_path", "nope.ckpt"],
     ["--ckpt_path nope.ckpt does not exist"]),
    ("empty last.ckpt",
     ["fit", "--config", LL, "--config", FAST, "--ckpt_path", "empty/last.ckpt"],
     ["--ckpt_path empty/last.ckpt is not a readable checkpoint", "use another checkpoint from empty"]),
    ("truncated last.ckpt",
     ["fit", "--config", LL, "--config", FAST, "--ckpt_path", "truncated/last.ckpt"],
     ["--ckpt_path truncated/last.ckpt is not a readable checkpoint", "truncated"]),
    ("Pendulum checkpoint resumed on LunarLander",
     ["fit", "--config", LL, "--config", FAST, "--ckpt_path", "pendulum.ckpt"],
     ["--ckpt_path pendulum.ckpt was trained on Pendulum-v1", "data.env_id = 'LunarLander-v3'"]),
    ("config file that is not text",
     ["fit", "--config", "binary.yaml"],
     ["config file binary.yaml is not text"]),
    ("config file with a YAML syntax error",
     ["fit", "--config", LL, "--config", "broken.yaml"],
     ["config file broken.yaml", "YAML syntax error at line 3"]),
    ("unknown model key",
     ["fit", "--config", LL, "--model.init_args.gama", "0.9"],
     ["model.init_args.gama", "did you mean model.init_args.gamma?"]),
    ("unknown data key in a config file",
     ["fit", "--config", LL, "--config", "typo.yaml"],
     ["data.demo_paht", "did you mean data.demo_path?"]),
    ("start shift tilt with one number in a list",
     ["fit", "--config", LL, "--data.start_shift",
      "{class_path: sqil_lightning.envs.start_states.LunarLanderOffset, init_args: {tilt: [0.6]}}"],
     ["tilt = [0.6] is invalid", "[low, high]"]),
    ("negative max_steps",
     ["fit", "--config", LL, "--trainer.max_steps", "-5"],
     ["trainer.max_steps = -5 is invalid"]),
]

# Cases whose message does not yet say what the brief asks, kept in the table so they flip to
# XPASS (and fail, being strict) once fixed.
KNOWN_GAPS: dict[str, str] = {}  # description -> why it fails; each becomes a strict xfail
# Cases that take seconds, not a fraction of one: marked slow (`-m "not slow"` leaves them out).
SLOW_CASES: dict[str, str] = {}  # description -> why it takes more than a few seconds

# Unpickling any of the pickled inputs creates this file in the tmp dir: it must never appear.
UNPICKLED_MARKER = "UNPICKLED"


class _CreatesMarkerWhenUnpickled:
    """Unpickling this calls ``open(marker, "w")``: proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def write_input_files(directory: Path, lunarlander_demo_file: Path, demo_arrays) -> None:
    """The demo files the table's cases refer to, written into ``directory``.

    ``demo_arrays`` is conftest's maker of valid synthetic demo arrays (fixture `make_demo_arrays`).
    """
    shutil.copy(lunarlander_demo_file, directory / "lunarlander_2ep.npz")
    pendulum = demo_arrays(obs_dim=3)
    pendulum["actions"] = np.linspace(-1.0, 1.0, len(pendulum["actions"]), dtype=np.float32).reshape(-1, 1)
    DemoSet(**pendulum, metadata={"env_id": "Pendulum-v1", "source": "synthetic"}).save(directory / "pendulum_shaped.npz")
    (directory / "not_a_zip.npz").write_bytes(b"not a zip")
    trap = _CreatesMarkerWhenUnpickled(directory / UNPICKLED_MARKER)
    (directory / "pickle.npz").write_bytes(pickle.dumps({"observations": trap}))
    arrays = demo_arrays()
    arrays["observations"] = np.array([trap] * len(arrays["observations"]), dtype=object)
    np.savez(directory / "object_array.npz", **arrays, metadata=np.array('{"format_version": 1}'), allow_pickle=True)
    torch.save({"datamodule_hyper_parameters": {"env_id": "LunarLander-v3"}, "trap": trap}, directory / "malicious.ckpt")
    torch.save({"datamodule_hyper_parameters": {"env_id": "Pendulum-v1"}, "global_step": 4}, directory / "pendulum.ckpt")
    for name, size in (("empty", 0), ("truncated", 1000)):
        (directory / name).mkdir()
        (directory / name / "last.ckpt").write_bytes((directory / "pendulum.ckpt").read_bytes()[:size])
    _write_demo_variants(directory, demo_arrays)
    (directory / "binary.yaml").write_bytes(bytes(range(128, 256)))
    (directory / "broken.yaml").write_text("data:\n  batch_size: [64,\n")
    (directory / "typo.yaml").write_text("data:\n  demo_paht: x.npz\n")


def _write_demo_variants(directory: Path, demo_arrays) -> None:
    """Demo files that are wrong in their values: NaN, inf, interleaved episodes, a zip bomb."""
    metadata = {"env_id": "LunarLander-v3", "source": "synthetic"}
    arrays = demo_arrays()  # episodes of 4 and 3 rows
    arrays["observations"][5, 2] = np.nan
    _save_unchecked(directory / "nan.npz", arrays, metadata)
    arrays = demo_arrays()
    arrays["next_observations"][2, 0] = np.inf
    _save_unchecked(directory / "inf.npz", arrays, metadata)
    arrays = demo_arrays(episode_lengths=(2, 3, 2))
    arrays["episode_ids"] = np.array([0, 0, 1, 1, 1, 0, 0])  # episode 0 again after episode 1
    _save_unchecked(directory / "interleaved.npz", arrays, metadata)
    write_zip_bomb(directory / "bomb.npz", demo_arrays())


def _save_unchecked(path: Path, arrays: dict, metadata: dict) -> None:
    np.savez(path, **arrays, metadata=np.array(json.dumps({**metadata, "format_version": 1})))


def write_zip_bomb(path: Path, arrays: dict, inflated_bytes: int = 64 * 2**20) -> None:
    """A valid-looking demo .npz whose 'observations' entry inflates to ``inflated_bytes`` of zeros
    (a few KiB compressed), the other keys small: what an attacker would share."""
    rows = inflated_bytes // (8 * 4)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, 8)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("observations.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            chunk = bytes(2**20)
            for _ in range(inflated_bytes // len(chunk)):
                member.write(chunk)
        for key, value in arrays.items():
            if key != "observations":
                with archive.open(f"{key}.npy", "w") as member:
                    np.lib.format.write_array(member, value)
        with archive.open("metadata.npy", "w") as member:
            np.lib.format.write_array(member, np.array('{"format_version": 1, "env_id": "LunarLander-v3"}'))


def resolve(arg: str) -> str:
    """``conf/…`` and ``tests/conf/…`` name this repository's configs; everything else stays as typed."""
    return str(REPO / arg) if arg.endswith(".yaml") and (REPO / arg).is_file() else arg


def _params():
    for description, args, fragments in BAD_INPUTS:
        marks = [pytest.mark.xfail(reason=KNOWN_GAPS[description], strict=True)] if description in KNOWN_GAPS else []
        if description in SLOW_CASES:
            marks.append(pytest.mark.slow)
        yield pytest.param(args, fragments, id=description, marks=marks)


def test_table_ids_are_unique_and_gaps_are_in_the_table():
    descriptions = [description for description, _, _ in BAD_INPUTS]
    assert len(set(descriptions)) == len(descriptions)
    assert set(KNOWN_GAPS) <= set(descriptions)
    assert set(SLOW_CASES) <= set(descriptions)


def test_readme_bad_input_table_is_this_list():
    """README's table of bad inputs and `BAD_INPUTS` stay one list: same cases, same commands."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("| bad input | command (`python -m sqil_lightning …`) | what the user sees |", 1)[1]
    rows = [line.split(" | ")[:2] for line in section.split("\n\n", 1)[0].splitlines()[2:]]
    table = [(description.lstrip("| "), command.strip("`")) for description, command in rows]
    listed = [(description, " ".join(arg if " " not in arg else f"'{arg}'" for arg in args)) for description, args, _ in BAD_INPUTS]
    assert table == listed


def test_the_pickled_inputs_really_unpickle_into_the_marker(tmp_path, lunarlander_demo_file, make_demo_arrays):
    """The traps work: loading them unsafely does create the marker (so its absence below means something)."""
    write_input_files(tmp_path, lunarlander_demo_file, make_demo_arrays)
    marker = tmp_path / UNPICKLED_MARKER
    pickle.loads((tmp_path / "pickle.npz").read_bytes())["observations"].close()
    assert marker.exists()
    marker.unlink()
    with np.load(tmp_path / "object_array.npz", allow_pickle=True) as npz:
        npz["observations"][0].close()
    assert marker.exists()


@pytest.mark.parametrize(("args", "fragments"), _params())
def test_bad_input_is_one_line_error(
    args, fragments, tmp_path, monkeypatch, expect_user_error, lunarlander_demo_file, make_demo_arrays
):
    write_input_files(tmp_path, lunarlander_demo_file, make_demo_arrays)
    monkeypatch.chdir(tmp_path)
    inputs = set(tmp_path.rglob("*.ckpt"))
    line = expect_user_error([resolve(arg) for arg in args])
    missing = [fragment for fragment in fragments if fragment not in line]
    assert not missing, f"{line!r} lacks {missing}"
    assert not (tmp_path / UNPICKLED_MARKER).exists(), "a demo file was unpickled"
    # Failing before training: no checkpoint was written.
    assert set(tmp_path.rglob("*.ckpt")) == inputs
