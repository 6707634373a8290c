"""Stopping a run (SIGTERM, Ctrl+C) leaves a last.ckpt that `fit --ckpt_path last` continues from,
and a crash while a checkpoint is written keeps the previous one usable.

The signal tests run the real entry point as a subprocess (signals, exit statuses) on the
300-step overlay tests/conf/fast.yaml with max_steps raised so that only the signal ends the run.

An interrupted-and-resumed run ends bit-identical to an uninterrupted one on CPU (parameters,
optimizer state, replay rows): the resume restores the replay rows, RNG states, the training env's
half-played episode (replayed from its RNG state and actions) and the batches drawn but not yet
trained on. The runs here keep the learning rate constant (`final_lr_fraction 1`): the decay is
scheduled over `trainer.max_steps`, which the interrupted run and its continuation set differently.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import torch

from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer

from sqil_lightning.checkpoint_io import AtomicCheckpointIO
from sqil_lightning.cli import lightning_main
from sqil_lightning.errors import WriteFault
from sqil_lightning.data.snapshot import checkpoint_snapshot, load_snapshot

from fit_process import BASE_CONFIG, FAST_CONFIG, SQIL_COMMAND, FitProcess, fit_args

CHECKPOINT_EVERY = 100  # --checkpoint.every_n_train_steps of the runs below (as in fast.yaml)
ROLLOUT_EVERY, ROLLOUT_FRAMES, INITIAL_FRAMES = 4, 4, 200  # fast.yaml's rollout and data settings
UPDATES_PER_STEP = 4  # fast.yaml's data.updates_per_step: global_step moves 4 at a time
# Generous: the machine may be busy; the waits end as soon as the condition holds.
START_TIMEOUT_S, EXIT_TIMEOUT_S, RUN_TIMEOUT_S = 120, 120, 300


# --- helpers -------------------------------------------------------------------------------------------


def _fit_command(tmp_path: Path, *extra: str) -> list[str]:
    return SQIL_COMMAND + fit_args(
        "--trainer.max_steps", "100000",
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--checkpoint.every_n_train_steps", str(CHECKPOINT_EVERY),
        "--data.demo_episodes", "2",
        "--model.init_args.final_lr_fraction", "1",
        *extra,
    )  # fmt: skip


def _interrupted_run(tmp_path: Path, signum: int, *extra: str) -> dict:
    """Start a long fit, wait for its step-100 checkpoint, send ``signum`` once, wait for the exit."""
    run = FitProcess(tmp_path, _fit_command(tmp_path, *extra), "interrupted")
    checkpoints = tmp_path / "logs" / "fast" / "version_0" / "checkpoints"
    run.wait_for(checkpoints / f"epoch=0-step={CHECKPOINT_EVERY}.ckpt", START_TIMEOUT_S)
    os.kill(run.proc.pid, signum)
    status = run.wait(EXIT_TIMEOUT_S)
    out, err = run.output()
    return {"run": run, "status": status, "stdout": out, "stderr": err, "checkpoints": checkpoints}


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _env_steps_after(env_steps_at_resume: int, resumed_at: int, step: int) -> int:
    """env_steps at ``step`` of a run resumed at ``resumed_at``: the restored count plus the rollouts
    since (the replay snapshot restores the online partition, so there is no second warm-up)."""
    rollouts = step // ROLLOUT_EVERY - resumed_at // ROLLOUT_EVERY
    return env_steps_at_resume + ROLLOUT_FRAMES * rollouts


def _replay_rows(checkpoint_path: Path):
    """The rows of the online partition snapshot that a checkpoint refers to (rank 0)."""
    state = _load(checkpoint_path)["SQILDataModule"]
    buffer = ReplayBuffer(storage=LazyTensorStorage(100_000), sampler=RandomSampler())
    load_snapshot(buffer, checkpoint_snapshot(checkpoint_path, state, 0))
    return buffer.storage.get(torch.arange(len(buffer)))


# --- SIGTERM, then `fit --ckpt_path last` ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sigterm")
    result = _interrupted_run(tmp_path, signal.SIGTERM)
    result["tmp_path"] = tmp_path
    match = re.search(r"stopped by SIGTERM after step (\d+); checkpoint (\S+);", result["stdout"] + result["stderr"])
    result["step"] = int(match.group(1)) if match else None
    result["reported_checkpoint"] = Path(match.group(2)) if match else None
    return result


@pytest.mark.slow
def test_sigterm_exits_143_and_says_how_to_continue(sigterm_run):
    if sigterm_run["status"] != 143:
        sigterm_run["run"].fail(f"exit status {sigterm_run['status']}, expected 143 (SIGTERM, handled)")
    output = sigterm_run["stdout"] + sigterm_run["stderr"]
    assert "Traceback" not in output
    assert sigterm_run["step"] is not None, output[-3000:]
    assert "continue with the same command plus --ckpt_path last" in output


@pytest.mark.slow
def test_sigterm_saves_last_ckpt_at_the_step_it_stopped_after(sigterm_run):
    last = sigterm_run["checkpoints"] / "last.ckpt"
    assert sigterm_run["reported_checkpoint"] == last
    checkpoint = _load(last)
    step = sigterm_run["step"]
    assert step >= CHECKPOINT_EVERY  # we waited for the step-100 checkpoint before signalling
    assert checkpoint["global_step"] == step
    # Saved after the step finished (ModelCheckpoint's periodic saves, taken inside the step, count
    # one batch fewer): this is GracefulStop's checkpoint, not ModelCheckpoint's last.ckpt of step 100.
    assert checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == step // UPDATES_PER_STEP
    assert checkpoint["SQILDataModule"]["env_steps"] == INITIAL_FRAMES + ROLLOUT_FRAMES * (step // ROLLOUT_EVERY)


@pytest.fixture(scope="module")
def resumed_run(sigterm_run):
    """The same command plus `--ckpt_path last`, run to a max_steps a little past the interruption.

    max_steps is the next periodic checkpoint after the interrupted step plus 52, so the resumed run
    writes one periodic checkpoint and its final step is not a multiple of the checkpoint interval.
    """
    if sigterm_run["status"] != 143 or sigterm_run["step"] is None:
        pytest.skip("the SIGTERM run failed (see the tests above)")
    tmp_path, step = sigterm_run["tmp_path"], sigterm_run["step"]
    periodic = (step // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY
    max_steps = periodic + 52  # a multiple of UPDATES_PER_STEP
    command = _fit_command(tmp_path, "--trainer.max_steps", str(max_steps), "--ckpt_path", "last")
    run = FitProcess(tmp_path, command, "resumed")
    status = run.wait(RUN_TIMEOUT_S)
    if status != 0:
        run.fail(f"the resumed run exited with status {status}")
    out, err = run.output()
    log_dir = tmp_path / "logs" / "fast" / "version_1"
    return {"stdout": out, "stderr": err, "log_dir": log_dir, "max_steps": max_steps, "periodic": periodic}


@pytest.mark.slow
def test_resume_restores_the_interrupted_last_ckpt(sigterm_run, resumed_run):
    last = sigterm_run["checkpoints"] / "last.ckpt"
    assert f"Restored all states from the checkpoint at {last}" in resumed_run["stderr"]
    assert "Traceback" not in resumed_run["stderr"]


@pytest.mark.slow
def test_resumed_run_continues_step_and_env_step_counts(sigterm_run, resumed_run):
    step, env_steps = sigterm_run["step"], _load(sigterm_run["checkpoints"] / "last.ckpt")["SQILDataModule"]["env_steps"]
    result = json.loads((resumed_run["log_dir"] / "result.json").read_text())
    assert result["global_step"] == resumed_run["max_steps"]
    assert result["env_steps"] == _env_steps_after(env_steps, step, resumed_run["max_steps"])
    # The periodic checkpoint of the resumed run carries the continued counts too.
    periodic = resumed_run["periodic"]
    checkpoint = _load(resumed_run["log_dir"] / "checkpoints" / f"epoch=0-step={periodic}.ckpt")
    assert checkpoint["global_step"] == periodic
    assert checkpoint["SQILDataModule"]["env_steps"] > env_steps
    assert checkpoint["SQILDataModule"]["env_steps"] == _env_steps_after(env_steps, step, periodic)
    # Training went on from the restored step instead of starting again at 0.
    assert not list(resumed_run["log_dir"].glob(f"checkpoints/epoch=0-step={CHECKPOINT_EVERY}.ckpt"))


@pytest.mark.slow
def test_resumed_run_final_last_ckpt_holds_max_steps(resumed_run):
    checkpoint = _load(resumed_run["log_dir"] / "checkpoints" / "last.ckpt")
    result = json.loads((resumed_run["log_dir"] / "result.json").read_text())
    assert checkpoint["global_step"] == resumed_run["max_steps"]
    assert checkpoint["SQILDataModule"]["env_steps"] == result["env_steps"]


@pytest.fixture(scope="module")
def uninterrupted_run(sigterm_run, resumed_run):
    """The same run, never interrupted, to the resumed run's max_steps."""
    tmp_path = sigterm_run["tmp_path"] / "uninterrupted"
    tmp_path.mkdir()
    run = FitProcess(tmp_path, _fit_command(tmp_path, "--trainer.max_steps", str(resumed_run["max_steps"])), "uninterrupted")
    status = run.wait(RUN_TIMEOUT_S)
    if status != 0:
        run.fail(f"the uninterrupted run exited with status {status}")
    return {"checkpoints": tmp_path / "logs" / "fast" / "version_0" / "checkpoints"}


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_identical_to_an_uninterrupted_one(sigterm_run, resumed_run, uninterrupted_run):
    resumed = _load(resumed_run["log_dir"] / "checkpoints" / "last.ckpt")
    reference = _load(uninterrupted_run["checkpoints"] / "last.ckpt")
    assert resumed["global_step"] == reference["global_step"] == resumed_run["max_steps"]
    assert sigterm_run["step"] < resumed_run["max_steps"]
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name  # bit-identical, target network included
    resumed_adam, reference_adam = resumed["optimizer_states"][0]["state"], reference["optimizer_states"][0]["state"]
    for index, moments in reference_adam.items():
        for key, value in moments.items():
            assert torch.equal(resumed_adam[index][key], value), (index, key)
    assert resumed["SQILDataModule"]["env_steps"] == reference["SQILDataModule"]["env_steps"]
    # The agent's experience is the same row for row: the env continued the interrupted episode.
    assert (_replay_rows(resumed_run["log_dir"] / "checkpoints" / "last.ckpt") == _replay_rows(uninterrupted_run["checkpoints"] / "last.ckpt")).all()
    # The interrupted episode's logged return counts its steps on both sides of the interruption
    # (summed in another order, hence approx).
    assert resumed["SQILDataModule"]["recent_returns"] == pytest.approx(reference["SQILDataModule"]["recent_returns"], rel=1e-5)


@pytest.mark.slow
def test_replay_continues_across_the_resume(sigterm_run, resumed_run):
    # The interrupted run's snapshot holds every row it collected; the resumed run adds its rollouts
    # to those rows (restored, not collected again), so rows == env_steps at both checkpoints.
    interrupted = _load(sigterm_run["checkpoints"] / "last.ckpt")
    assert len(_replay_rows(sigterm_run["checkpoints"] / "last.ckpt")) == interrupted["SQILDataModule"]["env_steps"]
    final = _load(resumed_run["log_dir"] / "checkpoints" / "last.ckpt")
    assert len(_replay_rows(resumed_run["log_dir"] / "checkpoints" / "last.ckpt")) == final["SQILDataModule"]["env_steps"]


@pytest.mark.slow
def test_a_moved_run_folder_still_resumes_with_its_replay(sigterm_run):
    # A resumed run finds the replay snapshot beside the checkpoint file, so a run folder copied
    # elsewhere (another disk, a renamed study) works without the folder it was written in.
    tmp_path, step = sigterm_run["tmp_path"], sigterm_run["step"]
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "logs" / "fast" / "version_0", moved)
    command = _fit_command(tmp_path / "moved_run", "--trainer.max_steps", str(step + 8), "--ckpt_path", str(moved / "checkpoints" / "last.ckpt"))
    (tmp_path / "moved_run").mkdir()
    # The folder the snapshot was written in must not be what is found: hide it while the run restores.
    original = sigterm_run["checkpoints"] / "replay"
    original.rename(original.with_name("replay.hidden"))
    try:
        run = FitProcess(tmp_path / "moved_run", command, "moved")
        if run.wait(RUN_TIMEOUT_S) != 0:
            run.fail("the run resumed from the moved folder failed")
    finally:
        original.with_name("replay.hidden").rename(original)
    final_path = tmp_path / "moved_run" / "logs" / "fast" / "version_0" / "checkpoints" / "last.ckpt"
    final, interrupted = _load(final_path), _load(moved / "checkpoints" / "last.ckpt")
    assert final["global_step"] == step + 8
    assert len(_replay_rows(final_path)) == final["SQILDataModule"]["env_steps"] > interrupted["SQILDataModule"]["env_steps"]


# --- Ctrl+C ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_saves_last_ckpt_and_exits_130_with_one_line(tmp_path):
    # With save_last off, ModelCheckpoint writes no last.ckpt: the one found was written by the stop.
    result = _interrupted_run(tmp_path, signal.SIGINT, "--checkpoint.save_last", "false")
    if result["status"] != 130:
        result["run"].fail(f"exit status {result['status']}, expected 130 (Ctrl+C, handled)")
    assert "Traceback" not in result["stderr"]
    lines = [line for line in result["stderr"].splitlines() if line.startswith("stopped by Ctrl+C after step")]
    assert len(lines) == 1, result["stderr"][-3000:]
    last = result["checkpoints"] / "last.ckpt"
    match = re.fullmatch(r"stopped by Ctrl\+C after step (\d+); checkpoint (\S+); continue with the same command plus --ckpt_path last", lines[0])
    assert match, lines[0]
    assert Path(match.group(2)) == last
    step = int(match.group(1))
    assert step >= CHECKPOINT_EVERY
    assert _load(last)["global_step"] == step


# --- `fit --ckpt_path last` without a previous run ------------------------------------------------------


@pytest.mark.parametrize("where", ["logger", "checkpoint_dirpath"])
def test_ckpt_path_last_without_a_previous_run_is_a_one_line_error(where, tmp_path, monkeypatch, expect_user_error):
    monkeypatch.chdir(tmp_path)
    args = fit_args("--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), "--ckpt_path", "last")
    searched = tmp_path / "logs" / "fast"
    if where == "checkpoint_dirpath":
        searched = tmp_path / "ckpts"
        args += ["--checkpoint.dirpath", str(searched)]
        # A last.ckpt of another experiment under the logger's folder must not be picked up.
        (tmp_path / "logs" / "fast" / "version_0" / "checkpoints").mkdir(parents=True)
        (tmp_path / "logs" / "fast" / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"")
    line = expect_user_error(args)
    assert "--ckpt_path last" in line
    assert str(searched) in line


# --- atomic checkpoint writes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_io(tmp_path_factory):
    """The CheckpointIO that the CLI's trainer writes checkpoints with (GracefulStop, ModelCheckpoint)."""
    tmp_path = tmp_path_factory.mktemp("checkpoint_io")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        cli = lightning_main(["--config", str(BASE_CONFIG), "--config", str(FAST_CONFIG)], run=False)
    io = cli.trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)
    return io


def _checkpoint(step: int) -> dict:
    return {"global_step": step, "weights": torch.full((50_000,), float(step))}


def _assert_holds(path: Path, step: int) -> None:
    checkpoint = _load(path)  # a truncated file raises here
    assert checkpoint["global_step"] == step
    assert torch.equal(checkpoint["weights"], _checkpoint(step)["weights"])


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(checkpoint_io, tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint_io.save_checkpoint(_checkpoint(1), path)
    crashed = []
    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        # Were the process killed now, this is what the disk would hold: still the first checkpoint.
        _assert_holds(path, 1)
        crashed.append(True)
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    # The disk's failure becomes one line naming the file and the cause (the CLI prints it).
    with pytest.raises(WriteFault, match=rf"could not write checkpoint {re.escape(str(path))}: no space left"):
        checkpoint_io.save_checkpoint(_checkpoint(2), path)
    monkeypatch.undo()
    assert crashed, "the checkpoint was not written through torch.save; update the crash injection"
    _assert_holds(path, 1)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # the partial file was removed
    checkpoint_io.save_checkpoint(_checkpoint(3), path)  # and writing works again afterwards
    _assert_holds(path, 3)


def test_checkpoint_is_staged_beside_its_target_not_in_the_system_temp_folder(checkpoint_io, tmp_path, monkeypatch):
    # A staging file in TMPDIR would need a copy across filesystems (tmpfs /tmp, container volumes)
    # to reach the checkpoint folder, and a crash during that copy corrupts the target.
    other_fs = tmp_path / "other_fs"
    other_fs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(other_fs))
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint_io.save_checkpoint(_checkpoint(1), path)
    staged = []
    real_replace = os.replace

    def record_replace(src, dst, *args, **kwargs):
        staged.append(Path(src).parent)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", record_replace)
    checkpoint_io.save_checkpoint(_checkpoint(2), path)
    monkeypatch.undo()
    assert staged == [path.parent]
    assert not list(other_fs.iterdir())
    _assert_holds(path, 2)


