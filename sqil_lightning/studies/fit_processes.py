"""The `fit` processes of a study, on the machine that runs them: one run's fit to its end, and
stopping them all cleanly when the study is stopped."""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

from sqil_lightning.errors import TrainingStopped
from sqil_lightning.studies.spec import StudyRun

# Exit statuses of a fit stopped by SIGTERM or Ctrl+C after writing its last.ckpt.
STOPPED_STATUSES = (143, 130)
RESUME_HINT = "run the same study command again to resume: finished runs are kept, stopped ones continue from their last.ckpt"


class StudyRunFailed(RuntimeError):
    """A fit of the study failed (not stopped): its fit.log says why."""


class FitKilled(StudyRunFailed):
    """A fit was killed by a signal (the OOM killer, a lost node): not its config's fault, so a
    launcher may run it again, and it continues from its last.ckpt."""


@dataclass(frozen=True)
class FinishedRun:
    """What a fit that reached max_steps reports to the study's progress line, read where it ran."""

    summary: str  # its final evaluation in a few words
    seconds: float  # its wall-clock (wall_clock.json)
    node: str  # the machine it ran on


class ChildProcesses:
    """The study's running `fit` processes, so that stopping the study stops them cleanly.

    SIGTERM or Ctrl+C to the study sends SIGTERM to every fit: each writes its last.ckpt and
    exits, and the next call of the study continues them (instead of orphans running on).
    """

    def __init__(self) -> None:
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def run(self, command: list[str], log: IO[str]) -> int:
        with self._lock:
            if self.stopping:
                return STOPPED_STATUSES[0]
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            self._running.add(process)
        try:
            return self._wait(process)
        except KeyboardInterrupt:  # a cancelled Ray task (`launchers`): stop the fit as SIGTERM to the study would
            process.send_signal(signal.SIGTERM)
            return process.wait()
        finally:
            with self._lock:
                self._running.discard(process)

    @staticmethod
    def _wait(process: subprocess.Popen) -> int:
        # Short waits: Ray cancels a task by raising in its thread between bytecodes, which a
        # single blocking wait would never reach.
        while True:
            try:
                return process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            for process in self._running:
                process.send_signal(signal.SIGTERM)


def execute(run: StudyRun, children: ChildProcesses) -> FinishedRun:
    """Run (or continue) ``run``'s fit to its end, on this machine."""
    if not run.half_finished:
        run.record_settings()
    start = time.perf_counter()
    with (run.folder / "fit.log").open("a") as log:
        status = children.run(run.command(), log)
    if status in STOPPED_STATUSES:
        raise TrainingStopped(f"run {run.folder} was stopped; {RESUME_HINT}")
    if status < 0:
        name = signal.Signals(-status).name
        raise FitKilled(f"run {run.folder} was killed by {name}; see {run.folder / 'fit.log'}")
    if status != 0:
        raise StudyRunFailed(f"run {run.folder} failed with status {status}; see {run.folder / 'fit.log'}")
    seconds = time.perf_counter() - start
    timing = run.folder / "wall_clock.json"
    previous = json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
    timing.write_text(json.dumps({"seconds": previous + seconds}))
    return FinishedRun(run.summary(), previous + seconds, platform.node())
