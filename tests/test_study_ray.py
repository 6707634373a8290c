"""The study on a real Ray cluster (`--launcher ray --address`), started here on 127.0.0.1 with 2
CPUs: the same runs and table as the local launcher, nothing finished runs again, a killed worker or
fit continues from its last.ckpt, a failing fit is reported once, and SIGTERM stops the fits with
their checkpoints. Skipped where the `ray` extra is not installed."""

from __future__ import annotations

import csv
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")
import psutil  # Ray ships it (ray/thirdparty_files), on the path once ray is imported

from sqil_lightning.studies.spec import StudyRun, StudySpec

from sqil_lightning.studies.study import mean_and_standard_error

from fit_process import BASE_CONFIG, FAST_CONFIG, REPO, SQIL_COMMAND

RAY = Path(sys.executable).with_name("ray")

pytestmark = pytest.mark.slow  # a Ray cluster and studies as subprocesses


@pytest.fixture(scope="module")
def ray_address():
    """A Ray head on 127.0.0.1 (2 CPUs) for this module; `ray start --block` in a session of its
    own, so stopping it (SIGTERM) ends exactly the processes this test started."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Short: Ray's unix sockets live under the temp dir and their paths are limited to 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # A token of its own: the cluster's settings are the test's, not those of a ~/.ray/auth_token
    # that a `ray.init()` on this machine may have left (Ray turns token auth on when it finds one).
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    env = {**os.environ, **auth}
    log = Path(temp_dir) / "head.out"
    command = [
        str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
        "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir,
    ]  # fmt: skip
    with log.open("w") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for name, value in auth.items():  # for the study processes the tests start
                mp.setenv(name, value)
            yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _study_config(tmp_path: Path, demo_file: Path, methods: dict, seeds: list[int], max_steps: int) -> Path:
    config = {
        "out_dir": str(tmp_path / "out"),
        "configs": [str(BASE_CONFIG), str(FAST_CONFIG)],
        "seeds": seeds,
        "resources": {"cpus": 1, "gpus": 0},
        "eval_episodes": 2,
        "common": {"data.demo_path": str(demo_file), "trainer.max_steps": max_steps, "data.initial_env_steps": 100},
        "start_settings": {"s0_demo": {"result_key": "greedy"}},
        "methods": methods,
    }
    path = tmp_path / "tiny_ray.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _command(path: Path, address: str) -> list[str]:
    # A process of its own: Ray reads its settings (the token) from the environment once per process.
    return [*SQIL_COMMAND, "study", "--config", str(path), "--launcher", "ray", "--address", address]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def _study(path: Path, address: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(path, address), check=False, capture_output=True, text=True, env=_env(), timeout=300)


def _study_process(path: Path, address: str, out: Path) -> subprocess.Popen:
    with out.open("w") as log:
        # A session of its own, so that whatever happens the test can end the study.
        return subprocess.Popen(_command(path, address), stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def _at_first_checkpoints(actions: list[tuple[StudyRun, Callable[[], None]]], study: subprocess.Popen, out: Path) -> None:
    """Call each run's action as soon as its fit has written its first checkpoint."""
    deadline = time.monotonic() + 240
    while actions:
        assert study.poll() is None, out.read_text()[-3000:]
        assert time.monotonic() < deadline, "the study's fits wrote no checkpoint"
        written = [(run, act) for run, act in actions if (run.folder / "logs" / "version_0" / "checkpoints" / "last.ckpt").exists()]
        for run, act in written:
            act()
        actions = [pair for pair in actions if pair not in written]
        time.sleep(0.05)


def _fit_process(run: StudyRun) -> psutil.Process:
    """The running `fit` of ``run`` (its folder is on the command line)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "fit" in cmdline and str(run.folder) in cmdline:
            return process
    raise AssertionError(f"no fit of {run.folder} is running")


def _logged_steps(metrics: Path) -> list[int]:
    with metrics.open() as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def test_a_study_on_a_ray_cluster_writes_the_table_and_reruns_only_what_is_unfinished(tmp_path, lunarlander_demo_file, ray_address):
    methods = {"sqil": {}, "bc": {"overrides": {"model.class_path": "sqil_lightning.BehaviouralCloning"}}}
    path = _study_config(tmp_path, lunarlander_demo_file, methods, seeds=[0, 1], max_steps=120)
    study = _study(path, ray_address)
    assert study.returncode == 0, study.stderr[-3000:]
    spec = StudySpec.load(path)
    runs = spec.runs()
    for run in runs:
        assert run.result_path.exists()
        assert "group: tiny_ray" in (run.log_dir / "config.yaml").read_text()  # the study's W&B group
    # A line per finished run (method, start, seed, success, wall time, node) with a running count.
    line = r"^finished (\d)/4: (\w+) / s0_demo / seed (\d): success \d\.\d\d, \d+ s on \S+$"
    finished = re.findall(line, study.stdout, re.MULTILINE)
    assert sorted(count for count, _, _ in finished) == ["1", "2", "3", "4"]
    assert sorted((method, int(seed)) for _, method, seed in finished) == sorted((r.method.name, r.seed) for r in runs)
    # The local launcher's table: every seed of every method counted.
    lines = (spec.out_dir / "results.md").read_text().splitlines()
    assert "| method | s0_demo |" in lines
    for name in methods:
        mean, error = mean_and_standard_error([run.score() for run in runs if run.method.name == name])
        assert f"| {name} | {mean:.2f} ± {error:.2f} |" in lines

    logs_before = {run.folder: (run.folder / "fit.log").read_text() for run in runs}
    half_finished = runs[2]
    half_finished.result_path.unlink()  # as if the study had stopped during that run's final evaluation
    study = _study(path, ray_address)
    assert study.returncode == 0, study.stderr[-3000:]
    assert "3 of 4 runs finished, 1 to go" in study.stdout
    for run in runs:
        after = (run.folder / "fit.log").read_text()
        if run is half_finished:
            before = logs_before[run.folder]
            assert after.startswith(before) and "Restored all states from the checkpoint" in after[len(before) :]
        else:
            assert after == logs_before[run.folder]  # not run again
    assert half_finished.result_path.exists()


def test_a_killed_worker_or_fit_continues_from_its_last_checkpoint(tmp_path, lunarlander_demo_file, ray_address):
    path = _study_config(tmp_path, lunarlander_demo_file, {"worker_killed": {}, "fit_killed": {}}, seeds=[0], max_steps=2000)
    spec = StudySpec.load(path)
    worker_run, fit_run = spec.runs()
    orphans = []

    def kill_worker() -> None:  # the worker dies, as on a lost node or by Ray's OOM killer
        fit = _fit_process(worker_run)
        worker = fit.parent()
        assert worker.name().startswith("ray::")  # the fit's parent is the Ray worker running its task
        worker.send_signal(signal.SIGKILL)
        orphans.append(fit)

    def kill_fit() -> None:  # the fit dies, as by the kernel's OOM killer
        _fit_process(fit_run).send_signal(signal.SIGKILL)

    out = tmp_path / "study.out"
    study = _study_process(path, ray_address, out)
    try:
        _at_first_checkpoints([(worker_run, kill_worker), (fit_run, kill_fit)], study, out)
        assert study.wait(timeout=300) == 0, out.read_text()[-3000:]
    finally:
        if study.poll() is None:
            os.killpg(study.pid, signal.SIGKILL)
    # Ray ended the dead worker's fit: no orphan writes into the retried run.
    (orphan,) = orphans
    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
    for run in (worker_run, fit_run):
        log = (run.folder / "fit.log").read_text()
        resumed = re.search(r"resuming from \S+/version_0/checkpoints/last\.ckpt \(step (\d+)\)", log)
        assert resumed, log[-3000:]
        assert [p.name for p in run.log_dirs] == ["version_0", "version_1"]
        steps = _logged_steps(run.log_dir / "metrics.csv")
        assert min(steps) > int(resumed.group(1)) >= 100  # continued past the checkpoint, not from zero
        assert max(steps) == 2000
    lines = (spec.out_dir / "results.md").read_text().splitlines()
    for run in (worker_run, fit_run):
        assert re.search(rf"^\| {run.method.name} \| \d\.\d\d ± 0\.00 \|$", "\n".join(lines), re.MULTILINE)  # every run counted


def test_a_failing_fit_is_reported_once_and_not_retried(tmp_path, lunarlander_demo_file, ray_address):
    path = _study_config(tmp_path, lunarlander_demo_file, {"broken": {"overrides": {"model.init_args.lr": -1.0}}}, [0], 60)
    study = _study(path, ray_address)
    assert study.returncode == 1
    error_lines = [line for line in study.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "1 run(s) failed" in error_lines[0] and "broken" in error_lines[0]
    (run,) = StudySpec.load(path).runs()
    assert (run.folder / "fit.log").read_text().count("model.lr = -1.0 is invalid") == 1  # one attempt


def test_sigterm_to_a_ray_study_stops_its_fits_with_checkpoints_to_resume_from(tmp_path, lunarlander_demo_file, ray_address):
    path = _study_config(tmp_path, lunarlander_demo_file, {"a": {}, "b": {}}, seeds=[0], max_steps=100000)
    spec = StudySpec.load(path)
    out = tmp_path / "study.out"
    study = _study_process(path, ray_address, out)
    try:
        _at_first_checkpoints([(run, lambda: None) for run in spec.runs()], study, out)  # both fits are training
        study.send_signal(signal.SIGTERM)  # to the driver alone: it must stop the fits on the cluster
        assert study.wait(timeout=120) == 130
    finally:
        if study.poll() is None:
            os.killpg(study.pid, signal.SIGKILL)
    assert "study stopped; run the same study command again to resume" in out.read_text()
    for run in spec.runs():
        assert "stopped by SIGTERM after step" in (run.folder / "fit.log").read_text()  # saved and exited
        assert run.command()[-2:] == ["--ckpt_path", "last"]
