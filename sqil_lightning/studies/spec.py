"""A study config, parsed: its runs (method × start setting × seed), each with its folder, its
`fit` command, its settings and its scores (see `sqil_lightning.studies.study`)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sqil_lightning.demos.experts import EXPERTS, is_checkpoint
from sqil_lightning.errors import ConfigError

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
    expert: str | None = None  # a built-in expert or an expert checkpoint (*.ckpt) whose row the report adds
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
            expert=_expert(raw.get("expert"), path),
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


def _expert(expert: str | None, path: Path) -> str | None:
    """The study's ``expert``, checked when the study starts rather than when its report is written."""
    if expert is None or is_checkpoint(str(expert)) or expert in EXPERTS:
        return expert
    raise ConfigError(f"study config {path}: expert = {expert!r} is neither a built-in expert {sorted(EXPERTS)} nor a checkpoint (*.ckpt)")
