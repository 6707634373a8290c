"""What the tests share to run `fit`: the repository's paths, the arguments of a short LunarLander
fit, the environment of a subprocess run, and `FitProcess`, a `fit` run as a subprocess (for the
tests that stop and resume real runs). Tests import it as ``from fit_process import ...`` (tests/
is on sys.path, as the folder of the rootdir conftest)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "conf" / "lunarlander.yaml"
FAST_CONFIG = REPO / "tests" / "conf" / "fast.yaml"  # 300 steps with data.updates_per_step 4
# `python -m sqil_lightning`, for the tests that run the command line as a subprocess.
SQIL_COMMAND = [sys.executable, "-m", "sqil_lightning"]


def fit_args(*extra: str) -> list[str]:
    """`fit` arguments of conf/lunarlander.yaml with the 300-step overlay tests/conf/fast.yaml,
    then ``extra``."""
    return ["fit", "--config", str(BASE_CONFIG), "--config", str(FAST_CONFIG), *extra]


def fast_fit_args(root: Path, *extra: str) -> list[str]:
    """`fit` arguments of a short LunarLander run logging under ``root``: the 300-step overlay
    tests/conf/fast.yaml, a small online partition (snapshots of a few hundred KiB), 2 demo
    episodes and a constant learning rate (a resume that changes max_steps stays exact)."""
    return fit_args(
        "--trainer.logger.init_args.save_dir", str(root / "logs"),
        "--data.online_capacity", "2000", "--data.demo_episodes", "2",
        "--model.init_args.final_lr_fraction", "1",
        *extra,
    )  # fmt: skip


def fit_env() -> dict[str, str]:
    """This process's environment with the repo and tests/ importable and one thread per run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), str(REPO / "tests"), env.get("PYTHONPATH")) if p)
    env.update(OMP_NUM_THREADS="1", RL_WARNINGS="0", PYTHONUNBUFFERED="1")
    return env


class FitProcess:
    """A `fit` subprocess in ``tmp_path`` whose stdout and stderr go to files (no pipe to fill up).

    ``own_session``: start it in a session of its own, as a terminal would (its Ctrl+C reaches the
    whole process group, workers included); a failing test then kills that group, not just the run.
    """

    def __init__(self, tmp_path: Path, command: list[str], name: str, own_session: bool = False) -> None:
        self.stdout_path, self.stderr_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        self.own_session = own_session
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                command, cwd=tmp_path, env=fit_env(), stdout=out, stderr=err, start_new_session=own_session
            )

    def output(self) -> tuple[str, str]:
        return self.stdout_path.read_text(), self.stderr_path.read_text()

    def fail(self, why: str) -> None:
        if self.proc.poll() is None:  # only what this test started
            if self.own_session:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait()
        out, err = self.output()
        pytest.fail(f"{why}\n--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-6000:]}")

    def wait_for(self, pattern: Path, timeout: float) -> None:
        """Wait until a file matching ``pattern`` (a glob) exists; fail if the run ends or hangs first."""
        deadline = time.monotonic() + timeout
        while not list(pattern.parent.glob(pattern.name)):
            if self.proc.poll() is not None:
                self.fail(f"the run exited with status {self.proc.returncode} before {pattern} appeared")
            if time.monotonic() > deadline:
                self.fail(f"{pattern} did not appear within {timeout} s")
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"the run did not exit within {timeout} s")
