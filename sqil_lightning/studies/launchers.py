"""Where a study's fits run: a process pool on this machine (``--launcher local``, the default) or
a Ray cluster (``--launcher ray``, the optional ``ray`` extra).

A launcher runs `fit_processes.execute` for each pending run and hands each ending to a callback; which
runs are pending, the settings checks, the progress lines and the report are the study's
(study.py), the same whichever launcher runs the fits.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from types import ModuleType
from typing import Protocol

from sqil_lightning.errors import ConfigError, TrainingStopped, UserInputError
from sqil_lightning.studies.fit_processes import RESUME_HINT, ChildProcesses, FinishedRun, FitKilled, StudyRunFailed, execute
from sqil_lightning.studies.spec import Resources, StudyRun, StudySpec

LAUNCHERS = ("local", "ray")
OnEnd = Callable[[StudyRun, FinishedRun | StudyRunFailed], None]

# Retries of a fit whose Ray worker or node was lost, or whose process was killed; each continues
# from the run's last.ckpt. A fit that fails by itself (a bad config) is not retried.
MAX_RETRIES = 3
# How long a finished run's result.json may take to show on the driver: an NFS client sees another
# node's new files once its attribute cache expires (60 s at most by default).
SHARED_FS_DELAY_S = 60.0


class Launcher(Protocol):
    def launch(self, runs: list[StudyRun], on_end: OnEnd) -> None:
        """Run every run to its end, calling ``on_end`` as each ends (with its `FinishedRun`, or the
        `StudyRunFailed` of a failed one); Ctrl+C or SIGTERM stops the fits with their last.ckpt
        and raises `TrainingStopped`."""


def make_launcher(name: str, address: str | None, spec: StudySpec) -> Launcher:
    """The launcher ``--launcher`` names (``address``: a Ray cluster's, or None)."""
    if name == "ray":
        return RayCluster(address, spec.parallel, spec.resources)
    if address is not None:
        raise UserInputError(f"--address {address} is for --launcher ray; the local launcher runs the fits on this machine")
    return LocalPool(spec.parallel)


class LocalPool:
    """Each fit a subprocess of this machine, ``parallel`` at a time (threads wait on them)."""

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel

    def launch(self, runs: list[StudyRun], on_end: OnEnd) -> None:
        children = ChildProcesses()
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: children.stop_all())
        try:
            with ThreadPoolExecutor(self.parallel) as pool:
                futures = {pool.submit(execute, run, children): run for run in runs}
                try:
                    for future in as_completed(futures):
                        on_end(futures[future], _local_outcome(future))
                except (KeyboardInterrupt, TrainingStopped):
                    children.stop_all()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise TrainingStopped(f"study stopped; {RESUME_HINT}") from None
        finally:
            signal.signal(signal.SIGTERM, previous)


def _local_outcome(future: Future) -> FinishedRun | StudyRunFailed:
    try:
        return future.result()
    except StudyRunFailed as failure:
        return failure


class RayCluster:
    """Each fit a Ray task reserving the study's ``resources``, on a running cluster (``address``:
    ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) or on a Ray instance started here for the
    study, sized to run ``parallel`` fits at a time like the local pool.

    Runs write into the study's out_dir, which every node must see at the same path (a shared
    filesystem), like the folder the study is launched from (its configs and demos).
    """

    def __init__(self, address: str | None, parallel: int, resources: Resources) -> None:
        self.address = address
        self.parallel = parallel
        self.resources = resources

    def launch(self, runs: list[StudyRun], on_end: OnEnd) -> None:
        ray = import_ray()
        self._connect(ray)
        try:
            fit = ray.remote(fit_on_worker).options(
                num_cpus=self.resources.cpus,
                num_gpus=self.resources.gpus,
                max_retries=MAX_RETRIES,  # a lost worker or node: Ray runs the task again
                retry_exceptions=[FitKilled],  # and so for a killed fit, but not a failing one
            )
            pending = {fit.remote(run, os.getcwd()): run for run in runs}
            # SIGTERM stops the study like Ctrl+C: Ray's waits let a KeyboardInterrupt through, and
            # no other exception raised by a signal handler.
            previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while pending:
                    (ref,), _ = ray.wait(list(pending), num_returns=1)
                    run = pending.pop(ref)
                    outcome = _ray_outcome(ray, ref, run)
                    if isinstance(outcome, FinishedRun):
                        wait_for_result(run, outcome)
                    on_end(run, outcome)
            except (KeyboardInterrupt, TrainingStopped):
                _cancel(ray, list(pending))
                raise TrainingStopped(f"study stopped; {RESUME_HINT}") from None
            finally:
                signal.signal(signal.SIGTERM, previous)
        finally:
            ray.shutdown()

    def _connect(self, ray: ModuleType) -> None:
        if self.address is not None:
            check_head_answers(self.address)
            try:
                ray.init(address=self.address, logging_level=logging.WARNING)
            except ConnectionError as error:  # `auto` with no cluster; a Ray Client port that times out
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise UserInputError(f"--address {self.address}: {first_line}; {ADDRESS_HINT}") from None
        else:
            ray.init(
                address="local",
                num_cpus=math.ceil(self.parallel * self.resources.cpus),
                num_gpus=math.ceil(self.parallel * self.resources.gpus),
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        have = ray.cluster_resources()
        print(
            f"Ray cluster {self.address or '(local)'}: {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs; "
            f"each fit takes {self.resources.cpus:g} CPU(s) and {self.resources.gpus:g} GPU(s)",
            flush=True,
        )


# What a wrong --address needs, for its one error line.
ADDRESS_HINT = "start a head with `ray start --head` and give its address (auto on a node of the cluster, or ray://HOST:10001)"
# Seconds to wait for a head's port before calling an address wrong: Ray itself retries for minutes.
CONNECT_TIMEOUT_S = 5.0


def check_head_answers(address: str) -> None:
    """Refuse an ``--address`` whose host:port (``HOST:PORT`` or ``ray://HOST:PORT``) takes no
    connection, in seconds: `ray.init` would retry a wrong GCS address for minutes, printing as it goes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # `auto`, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserInputError(f"--address {address}: nothing answers at {host}:{port} ({reason}); {ADDRESS_HINT}") from None


def import_ray() -> ModuleType:
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserInputError('--launcher ray needs Ray: pip install -e ".[ray]" (on every node of the cluster)') from None
    return ray


def fit_on_worker(run: StudyRun, folder: str) -> FinishedRun:
    """One study run as a Ray task: its fit, in the study's folder on this node. A retried task
    finds the run's last.ckpt and continues from it (`StudyRun.command`)."""
    try:
        # Ray starts workers where `ray start` ran; the study's relative paths (configs, demos,
        # out_dir) are the driver's folder's.
        os.chdir(folder)
    except FileNotFoundError:
        raise ConfigError(
            f"the study's folder {folder} does not exist on node {platform.node()}: launch the study from a folder every "
            "node shares at the same path (README, Studies on a cluster)"
        ) from None
    return execute(run, ChildProcesses())


def _ray_outcome(ray: ModuleType, ref: object, run: StudyRun) -> FinishedRun | StudyRunFailed:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, StudyRunFailed):
            return error.cause
        if isinstance(error.cause, (TrainingStopped, UserInputError)):
            raise error.cause from None
        raise
    except ray.exceptions.RayError as error:  # Ray's own failure: a worker or node lost once more than MAX_RETRIES allow
        return StudyRunFailed(
            f"run {run.folder} could not finish on the cluster ({type(error).__name__}, after up to {MAX_RETRIES} retries); "
            "run the study again to continue it from its last.ckpt"
        )


def wait_for_result(run: StudyRun, finished: FinishedRun, timeout: float = SHARED_FS_DELAY_S) -> None:
    """Wait until this machine sees the result.json that ``run`` wrote on ``finished.node``; a
    run's result elsewhere means out_dir is not shared, and the report and rerun could not see it."""
    deadline = time.monotonic() + timeout
    while not run.result_path.exists():
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"run {run.folder} finished on {finished.node}, but its result.json is not in {run.spec.out_dir} on "
                f"{platform.node()}: out_dir must be on a filesystem every node shares, at the same path "
                "(README, Studies on a cluster)"
            )
        time.sleep(1.0)


def _cancel(ray: ModuleType, refs: list) -> None:
    """Cancel the study's remaining tasks and wait for them: a running fit gets SIGTERM
    (`ChildProcesses.run`), writes its last.ckpt and exits; a queued one never starts."""
    for ref in refs:
        ray.cancel(ref)
    if refs:
        ray.wait(refs, num_returns=len(refs))
