"""Studies: methods × start-state settings × seeds of `fit` runs, resumable, summarised as tables
and learning curves (the paper's Tables 1 and 3 and Figures 1 and 3, for any task).

A study config (see conf/studies/lunarlander.yaml) names base configs, the settings every run
shares, the start-state settings, the methods (each a set of config overrides, optionally limited
to some start settings) and the seeds. Every run is a `python -m sqil_lightning fit` subprocess in
``<out_dir>/<method>/<start>/seed<S>/``; a run with a ``result.json`` is finished and skipped, a run
with a ``last.ckpt`` continues with ``--ckpt_path last``, so a stopped study resumes where it was.
Where the fits run (a local process pool, a Ray cluster) is a launcher's job: study_launchers.py.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import subprocess
import sys
import time
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from sqil_lightning.errors import ConfigError, TrainingStopped

if TYPE_CHECKING:
    from sqil_lightning.study_launchers import Launcher

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


# The W&B runs of a study's many fits would bury a dashboard; a study config may turn them back on.
STUDY_DEFAULTS = {"wandb.mode": "disabled", "trainer.enable_progress_bar": False}


@dataclass(frozen=True)
class Resources:
    """What each fit reserves on a Ray cluster (the study config's ``resources:``)."""

    cpus: float = 1.0
    gpus: float = 0.0

    @classmethod
    def parse(cls, raw: Any, path: Path) -> Resources:
        raw = {} if raw is None else raw
        if not isinstance(raw, dict) or set(raw) - {"cpus", "gpus"}:
            raise ConfigError(
                f"study config {path}: resources must be a mapping of cpus and gpus per fit, e.g. {{cpus: 1, gpus: 0}}; got {raw!r}"
            )
        resources = {key: raw.get(key, getattr(cls, key)) for key in ("cpus", "gpus")}
        for key, value in resources.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (key == "cpus" and value == 0):
                least = "above 0" if key == "cpus" else "0 or more"
                raise ConfigError(f"study config {path}: resources.{key} = {value!r} is invalid; it must be a number {least}")
        return cls(float(resources["cpus"]), float(resources["gpus"]))


@dataclass
class Method:
    name: str
    overrides: dict[str, Any]
    start_settings: list[str] | None  # None: every start setting of the study
    paper: dict[str, str] = field(default_factory=dict)  # start setting -> the paper's figure, for the table


@dataclass
class StudySpec:
    """A parsed study config (see the module docstring)."""

    path: Path
    out_dir: Path
    configs: list[str]
    common: dict[str, Any]
    start_settings: dict[str, dict[str, Any]]
    methods: list[Method]
    seeds: list[int]
    parallel: int = 2
    resources: Resources = field(default_factory=Resources)
    result_key: dict[str, str] = field(default_factory=dict)  # start setting -> result.json key
    expert: str | None = None  # a built-in expert whose row the report adds
    demo_path: Path | None = None  # the demos, for the report's coverage plot
    eval_episodes: int = 100  # the runs' final evaluation episodes and seed, for the expert's row
    eval_seed: int = 1_000_000
    reference_paper: dict[str, dict[str, str]] = field(default_factory=dict)  # random/expert rows of the paper

    @classmethod
    def load(cls, path: str | Path) -> StudySpec:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"study config {path} does not exist (e.g. conf/studies/lunarlander.yaml)")
        raw = yaml.safe_load(path.read_text()) or {}
        required = ("out_dir", "configs", "start_settings", "methods", "seeds")
        missing = [key for key in required if key not in raw]
        if missing:
            raise ConfigError(f"study config {path} lacks {', '.join(missing)}; it needs {', '.join(required)}")
        starts = {name: dict(setting.get("overrides") or {}) for name, setting in raw["start_settings"].items()}
        result_key = {name: setting.get("result_key", "greedy") for name, setting in raw["start_settings"].items()}
        methods = []
        for name, method in raw["methods"].items():
            method = method or {}
            only = method.get("start_settings")
            unknown = [s for s in only or [] if s not in starts]
            if unknown:
                raise ConfigError(f"study config {path}: methods.{name}.start_settings names {unknown}; known: {list(starts)}")
            methods.append(Method(name, dict(method.get("overrides") or {}), only, dict(method.get("paper") or {})))
        return cls(
            path=path,
            out_dir=Path(raw["out_dir"]),
            configs=list(raw["configs"]),
            common={**STUDY_DEFAULTS, **(raw.get("common") or {})},
            start_settings=starts,
            methods=methods,
            seeds=[int(s) for s in raw["seeds"]],
            parallel=int(raw.get("parallel", 2)),
            resources=Resources.parse(raw.get("resources"), path),
            result_key=result_key,
            expert=raw.get("expert"),
            demo_path=Path(raw["demo_path"]) if raw.get("demo_path") else None,
            eval_episodes=int(raw.get("eval_episodes", 100)),
            eval_seed=int(raw.get("eval_seed", 1_000_000)),
            reference_paper={row: dict(cells) for row, cells in (raw.get("reference_paper") or {}).items()},
        )

    @property
    def name(self) -> str:
        """The study's name (its config's file name), the W&B group of its runs."""
        return self.path.stem

    @property
    def has_paper_figures(self) -> bool:
        return any(method.paper for method in self.methods) or bool(self.reference_paper)

    def table_row(self, name: str, cells: list[str], paper: dict[str, str]) -> str:
        """One markdown row: this study's cells, then the paper's figures when the study has any."""
        if self.has_paper_figures:
            cells = cells + [paper.get(start, "—") for start in self.start_settings]
        return f"| {name} | " + " | ".join(cells) + " |"

    def runs(self) -> list[StudyRun]:
        """Every run, seed-major: a half-finished study has every method at its first seeds."""
        return [
            StudyRun(self, method, start, seed)
            for seed in self.seeds
            for method in self.methods
            for start in self.start_settings
            if method.start_settings is None or start in method.start_settings
        ]


@dataclass
class StudyRun:
    spec: StudySpec
    method: Method
    start: str
    seed: int

    @property
    def folder(self) -> Path:
        return self.spec.out_dir / self.method.name / self.start / f"seed{self.seed}"

    @property
    def log_dirs(self) -> list[Path]:
        """The CSV logger's folders, one per (re)start of the fit, oldest first.

        A resumed fit logs into a new ``version_N``: reusing a folder would overwrite its metrics.
        """
        versions = (self.folder / "logs").glob("version_*")
        return sorted(versions, key=lambda path: int(path.name.removeprefix("version_")))

    @property
    def log_dir(self) -> Path:
        """The newest log folder (``version_0`` before the first start)."""
        return self.log_dirs[-1] if self.log_dirs else self.folder / "logs" / "version_0"

    @property
    def result_path(self) -> Path:
        """The final evaluation, written by the fit that reached max_steps."""
        return self.log_dir / "result.json"

    @property
    def overrides(self) -> dict[str, Any]:
        """Every `fit` key this run sets beyond its configs (later sources win)."""
        return {
            **self.spec.common,
            **self.spec.start_settings[self.start],
            **self.method.overrides,
            "seed_everything": self.seed,
            "data.seed": self.seed,
            "trainer.default_root_dir": str(self.folder),
            "trainer.logger.init_args.save_dir": str(self.folder),
            "trainer.logger.init_args.name": "logs",
        }

    @property
    def half_finished(self) -> bool:
        """Whether a stopped fit of this run left a checkpoint to continue from."""
        return any((log_dir / "checkpoints" / "last.ckpt").exists() for log_dir in self.log_dirs)

    def _settings(self) -> dict[str, Any]:
        return json.loads(json.dumps({"configs": self.spec.configs, "overrides": self.overrides}))

    def record_settings(self) -> None:
        """Note the settings a fresh run starts with (``settings.json``), for `check_settings_unchanged`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "settings.json").write_text(json.dumps(self._settings(), indent=1))

    def check_settings_unchanged(self) -> None:
        """A half-finished run continues only with the configs and overrides it started with;
        continuing it under an edited study config would mix two settings in one run."""
        record = self.folder / "settings.json"
        if not self.half_finished or not record.exists():
            return
        started, now = json.loads(record.read_text()), self._settings()
        if started != now:
            keys = {*started["overrides"], *now["overrides"]}
            changed = sorted(k for k in keys if started["overrides"].get(k) != now["overrides"].get(k)) or ["configs"]
            raise ConfigError(
                f"study run {self.folder} was started with other settings ({', '.join(changed)} changed in "
                f"{self.spec.path}); delete that folder to run it again with the new ones, or restore the old values"
            )

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "sqil_lightning", "fit"]
        for config in self.spec.configs:
            command += ["--config", config]
        # The study's W&B runs in one group, so a dashboard shows the seeds together. Not one of
        # `overrides` (the settings a half-finished run must keep) and before them, so a study's own
        # `wandb.group` wins.
        command += ["--wandb.group", self.spec.name]
        for key, value in self.overrides.items():
            command += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        if self.half_finished:
            command += ["--ckpt_path", "last"]  # continue a run the study was stopped in (its newest last.ckpt)
        return command

    def execute(self, children: ChildProcesses) -> FinishedRun:
        """Run (or continue) this run's fit to its end, on this machine."""
        if not self.half_finished:
            self.record_settings()
        start = time.perf_counter()
        with (self.folder / "fit.log").open("a") as log:
            status = children.run(self.command(), log)
        if status in STOPPED_STATUSES:
            raise TrainingStopped(f"run {self.folder} was stopped; {RESUME_HINT}")
        if status < 0:
            name = signal.Signals(-status).name
            raise FitKilled(f"run {self.folder} was killed by {name}; see {self.folder / 'fit.log'}")
        if status != 0:
            raise StudyRunFailed(f"run {self.folder} failed with status {status}; see {self.folder / 'fit.log'}")
        seconds = time.perf_counter() - start
        timing = self.folder / "wall_clock.json"
        previous = json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
        timing.write_text(json.dumps({"seconds": previous + seconds}))
        return FinishedRun(self.summary(), previous + seconds, platform.node())

    def _final_result(self) -> dict[str, Any]:
        """The final evaluation on this run's start setting (its result.json entry)."""
        return json.loads(self.result_path.read_text())[self.spec.result_key[self.start]]

    def summary(self) -> str:
        """The final evaluation in a few words: its success rate, or mean return where the task has none."""
        if not self.result_path.exists():
            return "no result.json"
        result = self._final_result()
        if result.get("success_rate") is not None:
            return f"success {result['success_rate']:.2f}"
        return f"return {result['mean_return']:.1f}"

    def score(self, best: bool = False) -> float | None:
        """The success rate (or mean return) on this start setting once the run finished: of its
        final evaluation, or with ``best`` the best of its evaluations during training (the paper's
        "best performance on 100 consecutive episodes", with `evaluation.episodes` 100)."""
        if not self.result_path.exists():
            return None
        if best:
            return max(value for _, value in self.curve())
        result = self._final_result()
        return result["success_rate"] if result.get("success_rate") is not None else result["mean_return"]

    def curve(self) -> list[tuple[float, float]]:
        """(env steps, periodic evaluation success rate or return) on this run's start setting,
        across the fit's restarts."""
        prefix = "eval_shifted" if self.spec.result_key[self.start].endswith("_shifted") else "eval"
        label = self.spec.result_key[self.start].removesuffix("_shifted")
        points: dict[float, float] = {}  # by env steps: a restart's evaluations replace the ones it repeats
        for metrics in (log_dir / "metrics.csv" for log_dir in self.log_dirs):
            if not metrics.exists():
                continue
            with metrics.open() as f:
                for row in csv.DictReader(f):
                    value = row.get(f"{prefix}/{label}/success_rate") or row.get(f"{prefix}/{label}/return")
                    if value:
                        points[float(row["env_steps"])] = float(value)
        return sorted(points.items())


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
        except KeyboardInterrupt:  # a cancelled Ray task (study_launchers.py): stop the fit as SIGTERM to the study would
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


def run_study(spec: StudySpec, launcher: Launcher, only_starts: list[str] | None = None, only_methods: list[str] | None = None) -> None:
    """Run every unfinished run (of the ``only_starts`` start settings and ``only_methods`` methods,
    if given) with ``launcher``, with a line per finished run and a progress bar over runs."""
    _check_known("--start-settings", only_starts, list(spec.start_settings), spec.path)
    _check_known("--methods", only_methods, [method.name for method in spec.methods], spec.path)
    selected = [
        run
        for run in spec.runs()
        if (not only_starts or run.start in only_starts) and (not only_methods or run.method.name in only_methods)
    ]
    pending = [run for run in selected if not run.result_path.exists()]
    for run in pending:
        run.check_settings_unchanged()  # before any fit starts: a mismatch stops the study at once
    total = len(selected)
    print(f"study {spec.path}: {total - len(pending)} of {total} runs finished, {len(pending)} to go -> {spec.out_dir}", flush=True)
    failures = []
    with tqdm(total=total, initial=total - len(pending), desc="study runs", unit="run") as bar:

        def report(run: StudyRun, outcome: FinishedRun | StudyRunFailed) -> None:
            name = f"{run.method.name} / {run.start} / seed {run.seed}"
            if isinstance(outcome, StudyRunFailed):  # the other runs go on; the failure is reported at the end
                failures.append(str(outcome))
                bar.write(f"FAILED {name}: {outcome}")
                return
            bar.update()
            bar.write(f"finished {bar.n}/{total}: {name}: {outcome.summary}, {outcome.seconds:.0f} s on {outcome.node}")

        if pending:  # none: no cluster to connect to
            launcher.launch(pending, report)
    if failures:
        raise StudyRunFailed(f"{len(failures)} run(s) failed: " + "; ".join(failures))


def _check_known(option: str, names: list[str] | None, known: list[str], path: Path) -> None:
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise ConfigError(f"{option} {' '.join(unknown)}: not in {path}; known: {known}")


def mean_and_standard_error(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n); 0 for one value)."""
    array = np.asarray(values, dtype=float)
    if array.size < 2:
        return float(array.mean()), 0.0
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(array.size))


def study_table(spec: StudySpec, best: bool = False) -> str:
    """Markdown table: one row per method, one column per start setting, mean ± s.e. over seeds of
    each run's final (or, with ``best``, best) evaluation, then the paper's figures where the
    study config gives them."""
    runs = spec.runs()
    columns = list(spec.start_settings)
    if spec.has_paper_figures:
        columns += [f"paper {start}" for start in spec.start_settings]
    lines = ["| method | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for method in spec.methods:
        cells = []
        for start in spec.start_settings:
            scores = [r.score(best) for r in runs if r.method is method and r.start == start]
            done = [s for s in scores if s is not None]
            if not scores:
                cells.append("—")
            elif not done:
                cells.append(f"(0/{len(scores)} seeds)")
            else:
                mean, error = mean_and_standard_error(done)
                partial = "" if len(done) == len(scores) else f" ({len(done)}/{len(scores)} seeds)"
                cells.append(f"{mean:.2f} ± {error:.2f}{partial}")
        lines.append(spec.table_row(method.name, cells, method.paper))
    return "\n".join(lines)
