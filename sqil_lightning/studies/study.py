"""Studies: methods × start-state settings × seeds of `fit` runs, resumable, summarised as tables
and learning curves (the paper's Tables 1 and 3 and Figures 1 and 3, for any task).

A study config (see conf/studies/lunarlander.yaml) names base configs, the settings every run
shares, the start-state settings, the methods (each a set of config overrides, optionally limited
to some start settings) and the seeds. Every run is a `python -m sqil_lightning fit` subprocess in
``<out_dir>/<method>/<start>/seed<S>/``; a run with a ``result.json`` is finished and skipped, a run
with a ``last.ckpt`` continues with ``--ckpt_path last``, so a stopped study resumes where it was.
Where the fits run (a local process pool, a Ray cluster) is a launcher's job: `sqil_lightning.studies.launchers`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sqil_lightning.errors import ConfigError
from sqil_lightning.studies.fit_processes import FinishedRun, StudyRunFailed
from sqil_lightning.studies.launchers import Launcher
from sqil_lightning.studies.spec import StudyRun, StudySpec


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
