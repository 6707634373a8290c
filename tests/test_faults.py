"""Faults and files from elsewhere: each case of README's "Faults" table is a test here.

`FAULTS` maps every row of that table (its first column) to the test that keeps it true; a test
below checks the table and this list are the same. Fits run in-process on the 300-step overlay
tests/conf/fast.yaml with a small online partition (snapshots of a few hundred KiB).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensordict import NonTensorData, TensorDict
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer

from sqil_lightning.callbacks import GracefulStop
from fit_process import REPO, fast_fit_args, fit_env
from test_bad_inputs import UNPICKLED_MARKER as UNPICKLED, _CreatesMarkerWhenUnpickled
from sqil_lightning.commands import main
from sqil_lightning.data.snapshot import RunPosition, save_snapshot

# README "Faults" row -> the test that keeps it true.
FAULTS = {
    "replay snapshot with a planted pickle": "test_a_planted_pickle_in_a_replay_snapshot_runs_no_code",
    "last.ckpt copied elsewhere without its replay": "test_a_copied_checkpoint_never_loads_another_runs_replay",
    "replay snapshot of another run beside a checkpoint": "test_a_snapshot_of_another_run_is_refused",
    "--ckpt_path last while an older run writes on": "test_ckpt_path_last_resumes_the_newest_version_folder",
    "--ckpt_path last after a kill before the first last.ckpt": "test_ckpt_path_last_falls_back_to_the_newest_periodic_checkpoint",
    "two fits sharing checkpoint.dirpath": "test_a_second_fit_on_a_locked_checkpoint_folder_is_refused",
    "disk full under the run folder": "test_a_full_disk_ends_with_one_line_and_the_previous_checkpoint_resumes_bit_identically",
    "read-only run folder": "test_a_read_only_run_folder_is_one_line",
    "stale .partial replay folders": "test_saving_a_snapshot_removes_this_ranks_stale_partial_folders",
    "double Ctrl+C": "test_a_second_ctrl_c_names_the_newest_checkpoint",
}


def _run(args: list[str], capsys) -> tuple[int, list[str]]:
    """Run the CLI in-process; its exit status and the `error:` lines it printed."""
    capsys.readouterr()
    try:
        main(args)
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, [line for line in err.splitlines() if line.startswith("error:")]


def _one_error(args: list[str], capsys, status: int = 2) -> str:
    code, lines = _run(args, capsys)
    assert code == status and len(lines) == 1, (code, lines)
    return lines[0]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _version(root: Path, n: int) -> Path:
    return root / "logs" / "fast" / f"version_{n}" / "checkpoints"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 300-step fit (checkpoints at steps 100, 200, 300), left as it ended."""
    root = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        main(fast_fit_args(root))
    return _version(root, 0)


def test_readme_faults_table_is_this_list():
    readme = (REPO / "README.md").read_text()
    section = readme.split("| fault | how it happens | what the user sees |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1].strip() for line in section.splitlines()[2:] if line.startswith("|")]
    assert rows == list(FAULTS)
    assert all(name in globals() for name in FAULTS.values())


# --- files that must not run code or mix runs ---------------------------------------------------------------


def test_a_planted_pickle_in_a_replay_snapshot_runs_no_code(finished_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    snapshot = next(run.glob("replay/*/step300-rank0"))
    marker = tmp_path / UNPICKLED
    planted = TensorDict({"trap": NonTensorData(_CreatesMarkerWhenUnpickled(marker))}, batch_size=[])
    shutil.rmtree(snapshot / "untrained", ignore_errors=True)
    planted.memmap(snapshot / "untrained")
    assert list((snapshot / "untrained").rglob("*.pickle")), "the trap holds no pickle; update how it is planted"
    monkeypatch.chdir(tmp_path)
    line = _one_error(fast_fit_args(tmp_path, "--trainer.max_steps", "400", "--ckpt_path", str(run / "last.ckpt")), capsys)
    assert "holds a pickled field" in line and str(snapshot / "untrained") in line
    assert not marker.exists()


def test_a_copied_checkpoint_never_loads_another_runs_replay(finished_run, tmp_path, capsys, monkeypatch):
    # The replay folder the checkpoint was written beside still exists (another run could have
    # overwritten it since); a copy of the file alone must not reach back for it.
    copied = tmp_path / "elsewhere" / "last.ckpt"
    copied.parent.mkdir()
    shutil.copy(finished_run / "last.ckpt", copied)
    monkeypatch.chdir(tmp_path)
    line = _one_error(fast_fit_args(tmp_path, "--trainer.max_steps", "400", "--ckpt_path", str(copied)), capsys)
    assert "replay snapshot" in line and str(copied.parent / "replay") in line and "is missing" in line


def test_a_snapshot_of_another_run_is_refused(finished_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (own,) = (run / "replay").iterdir()
    # Another run's snapshot of the same step, put where this checkpoint's belongs.
    other = tmp_path / "other"
    monkeypatch.chdir(tmp_path)
    main(fast_fit_args(other, "--seed_everything", "1"))
    shutil.rmtree(own / "step300-rank0")
    shutil.copytree(next(_version(other, 0).glob("replay/*/step300-rank0")), own / "step300-rank0")
    line = _one_error(fast_fit_args(tmp_path, "--trainer.max_steps", "400", "--ckpt_path", str(run / "last.ckpt")), capsys)
    assert f"belongs to run {next((_version(other, 0) / 'replay').iterdir()).name} at step 300" in line
    assert f"not to the checkpoint being resumed (run {own.name}, step 300)" in line


# --- which checkpoint `--ckpt_path last` resumes ----------------------------------------------------------------


def test_ckpt_path_last_resumes_the_newest_version_folder(tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(fast_fit_args(tmp_path, "--trainer.max_steps", "100"))
    main(fast_fit_args(tmp_path, "--trainer.max_steps", "200", "--seed_everything", "1"))
    # Run A (version_0) writes last.ckpt again after run B (version_1) stopped: A is newer by file time.
    os.utime(_version(tmp_path, 0) / "last.ckpt")
    caplog.set_level(logging.INFO)
    main(fast_fit_args(tmp_path, "--trainer.max_steps", "300", "--ckpt_path", "last"))
    assert f"resuming from {_version(tmp_path, 1) / 'last.ckpt'} (step 200)" in caplog.text
    assert _load(_version(tmp_path, 2) / "last.ckpt")["SQILDataModule"]["run_id"] == _load(_version(tmp_path, 1) / "last.ckpt")["SQILDataModule"]["run_id"]


def test_ckpt_path_last_falls_back_to_the_newest_periodic_checkpoint(tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(fast_fit_args(tmp_path, "--trainer.max_steps", "200"))
    (_version(tmp_path, 0) / "last.ckpt").unlink()  # killed after its periodic checkpoint, before last.ckpt
    caplog.set_level(logging.INFO)
    main(fast_fit_args(tmp_path, "--trainer.max_steps", "300", "--ckpt_path", "last"))
    assert f"resuming from {_version(tmp_path, 0) / 'epoch=0-step=200.ckpt'} (step 200)" in caplog.text
    assert _load(_version(tmp_path, 1) / "last.ckpt")["global_step"] == 300


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_a_second_fit_on_a_locked_checkpoint_folder_is_refused(tmp_path, capsys, monkeypatch):
    shared = tmp_path / "experts"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from sqil_lightning.callbacks.checkpoint_lock import acquire; from pathlib import Path; "
         f"lock = acquire(Path({str(shared)!r})); print('locked', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=fit_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.chdir(tmp_path)
        line = _one_error(fast_fit_args(tmp_path, "--checkpoint.dirpath", str(shared)), capsys)
        assert f"checkpoint folder {shared} is in use by another fit (pid {holder.pid})" in line
        assert not list(shared.glob("*.ckpt")) and not (shared / "replay").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the lock with its holder: the folder is free again.
    main(fast_fit_args(tmp_path, "--checkpoint.dirpath", str(shared), "--trainer.max_steps", "100"))
    assert _load(shared / "last.ckpt")["global_step"] == 100


# --- a disk that fills up, a folder that cannot be written -----------------------------------------------------


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _unmount(folder: Path) -> None:
    # Lazily: this process may still hold a file there (a memory map not yet collected).
    subprocess.run(["umount", "--lazy", str(folder)], check=True, capture_output=True)


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_a_full_disk_ends_with_one_line_and_the_previous_checkpoint_resumes_bit_identically(tmp_path, capsys, monkeypatch):
    disk = tmp_path / "disk"
    real = _mount_tmpfs(disk, "size=8m")  # where mounting is not allowed, the full disk is injected
    try:
        monkeypatch.chdir(tmp_path)
        main(fast_fit_args(disk, "--trainer.max_steps", "100"))
        previous = (_version(disk, 0) / "last.ckpt").read_bytes()
        filler = disk / "filler"
        if real:
            with filler.open("wb") as f:  # leave less than one snapshot free
                f.write(bytes(shutil.disk_usage(disk).free - 64 * 2**10))
        else:
            monkeypatch.setattr("sqil_lightning.data.snapshot.shutil.disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 0))
        line = _one_error(fast_fit_args(disk, "--trainer.max_steps", "200", "--ckpt_path", "last"), capsys, status=1)
        assert "no space left for the replay snapshot under" in line and str(disk) in line
        assert (_version(disk, 0) / "last.ckpt").read_bytes() == previous
        filler.unlink(missing_ok=True)
        monkeypatch.undo()
        monkeypatch.chdir(tmp_path)
        main(fast_fit_args(disk, "--trainer.max_steps", "200", "--ckpt_path", "last"))
        # version_1 is the failed attempt (no checkpoint): `last` continues version_0 into version_2.
        resumed = _load(_version(disk, 2) / "last.ckpt")
    finally:
        if real:
            _unmount(disk)
    main(fast_fit_args(tmp_path / "reference", "--trainer.max_steps", "200"))
    reference = _load(_version(tmp_path / "reference", 0) / "last.ckpt")
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name


def test_a_read_only_run_folder_is_one_line(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "readonly"
    real = _mount_tmpfs(folder, "ro,size=1m")
    if not real:  # inject what a read-only mount answers
        real_makedirs = os.makedirs

        def makedirs(name, *args, **kwargs):
            if str(name).startswith(str(folder)):
                raise OSError(errno.EROFS, "Read-only file system", str(name))
            return real_makedirs(name, *args, **kwargs)

        monkeypatch.setattr(os, "makedirs", makedirs)
    try:
        monkeypatch.chdir(tmp_path)
        line = _one_error(fast_fit_args(folder, "--trainer.default_root_dir", str(folder)), capsys, status=1)
    finally:
        if real:
            _unmount(folder)
    assert re.search(rf"could not write {re.escape(str(folder))}\S*: {re.escape(str(folder))} is not writable", line), line
    assert "trainer.default_root_dir" in line


# --- leftovers and interruptions -------------------------------------------------------------------------------


def test_saving_a_snapshot_removes_this_ranks_stale_partial_folders(tmp_path):
    run = tmp_path / "replay" / "run"
    buffer = ReplayBuffer(storage=LazyTensorStorage(8), sampler=RandomSampler())
    buffer.extend(TensorDict({"x": torch.arange(4.0)}, batch_size=[4]))
    (run / "step100-rank0.partial").mkdir(parents=True)  # a crash mid-save left these
    (run / "step100-rank1.partial").mkdir()  # another rank's: it may be writing it right now
    save_snapshot(buffer, run / "step200-rank0", RunPosition(), run_id="run", step=200)
    assert sorted(path.name for path in run.iterdir()) == ["step100-rank1.partial", "step200-rank0"]


def test_a_second_ctrl_c_names_the_newest_checkpoint(tmp_path, caplog):
    # Two Ctrl+C within one step cannot be timed from outside (the kernel merges signals that
    # close), so the callback is driven as Lightning drives it: the second SIGINT raises
    # KeyboardInterrupt mid-step, and Lightning calls `on_exception` with it before exiting.
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name, age in (("epoch=0-step=100.ckpt", 2000), ("last.ckpt", 1000), ("nonfinite-step150.ckpt", 0)):
        (checkpoints / name).write_bytes(b"")
        os.utime(checkpoints / name, (os.path.getmtime(checkpoints / name) - age,) * 2)
    # The newest file is FiniteLossGuard's NaN checkpoint: never one to continue from.
    trainer = SimpleNamespace(global_step=160, checkpoint_callback=None, default_root_dir=str(tmp_path))
    stop = GracefulStop()
    stop._on_sigint(signal.SIGINT, None)  # the first asks for a checkpoint at the end of the step
    with pytest.raises(KeyboardInterrupt):
        stop._on_sigint(signal.SIGINT, None)
    caplog.set_level(logging.INFO)
    stop.on_exception(trainer, None, KeyboardInterrupt())
    assert (
        f"aborted by a second Ctrl+C during step 160, without saving it; checkpoint {checkpoints / 'last.ckpt'}; "
        "continue with the same command plus --ckpt_path last"
    ) in caplog.text
