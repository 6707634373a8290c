"""Run `python -m sqil_lightning fit` as a user would, one logged run a folder, and read it back.

A run lives in ``<out>/<name>/<version>/`` (the CSV logger's folder): `metrics.csv`, `result.json`
(the final evaluation) and `wall_clock.json` (the whole command, written here). A run whose
`result.json` exists is finished; benchmarks skip it, so they resume where they stopped.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fit(configs: list[str], out: Path, name: str, version: str, extra: list[str]) -> Path:
    """Train once through the CLI unless that run already finished; returns the run folder."""
    run = out / name / version
    if (run / "result.json").exists():
        return run
    command = [sys.executable, "-m", "sqil_lightning", "fit"]
    for config in configs:
        command += ["--config", config]
    command += [
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.logger.init_args.name", name,
        "--trainer.logger.init_args.version", version,
        "--trainer.enable_progress_bar", "false", *extra,
    ]
    run.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with run.with_suffix(".log").open("w") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    (run / "wall_clock.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    return run


def finished(run: Path) -> dict:
    """A finished run's final evaluation (`result.json`) plus ``wall_clock``: the whole command in s."""
    result = json.loads((run / "result.json").read_text())
    result["wall_clock"] = json.loads((run / "wall_clock.json").read_text())["seconds"]
    return result


def eval_curve(run: Path, label: str) -> list[dict[str, float]]:
    """The periodic evaluations in a run's metrics.csv: env steps, elapsed s and the ``label`` metrics."""
    with (run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get(f"eval/{label}/return")]
    keys = ["env_steps", "time/elapsed_s", "time/train_s", *(k for k in rows[0] if k.startswith(f"eval/{label}/"))] if rows else []
    return [{k: float(r[k]) for k in keys if r.get(k)} for r in rows]


def perf_windows(run: Path) -> list[dict[str, float]]:
    """The `Throughput` callback's windows in a run's metrics.csv: step, updates/s, env steps/s."""
    with (run / "metrics.csv").open() as f:
        return [
            {"step": float(r["step"]), "updates_per_s": float(r["perf/updates_per_s"]), "env_steps_per_s": float(r["perf/env_steps_per_s"])}
            for r in csv.DictReader(f)
            if r.get("perf/updates_per_s")
        ]
