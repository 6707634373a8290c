"""The Ray launcher's overhead: wall-clock of one study with the local pool and with Ray (a Ray
instance started on this machine for the same number of fits at a time).

By default the LunarLander study's S0^demo half (every method from S0^demo, every seed); each
launcher runs it through the real command line into a fresh out_dir of its own, and the time is the
whole `study` command (start-up, fits, report). A zero-step fit of each method first makes the demo
files the runs read, so neither launcher pays for them.

    python benchmarks/study_launchers.py --write   # hours: the S0^demo half, twice; docs/results.md and docs/benchmarks/study_launchers.json
    python benchmarks/study_launchers.py --tiny    # a few minutes: 2 methods x 2 seeds, tiny budgets; writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, write_figures  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqil_lightning.studies.spec import StudyRun, StudySpec  # noqa: E402

LAUNCHERS = ("local", "ray")
FIGURES = REPO / "docs" / "benchmarks" / "study_launchers.json"
# A check that the script runs end to end, in seconds a fit: tests/conf/fast.yaml's sizes.
TINY_COMMON = {"trainer.max_steps": 120, "data.initial_env_steps": 100, "data.demo_episodes": 3, "evaluation.episodes": 2}


def study_copy(config: Path, out: Path, tiny: bool) -> Path:
    """The study config with its own out_dir under ``out`` (and tiny budgets with ``tiny``)."""
    raw = yaml.safe_load(config.read_text())
    raw["out_dir"] = str(out / "out")
    if tiny:
        methods = list(raw["methods"].items())[:2]
        raw["methods"] = {name: _without_budgets(method or {}) for name, method in methods}
        raw["seeds"] = raw["seeds"][:2]
        raw["configs"] = [*raw["configs"], "tests/conf/fast.yaml"]
        raw["common"] = {**(raw.get("common") or {}), **TINY_COMMON}
        raw["eval_episodes"] = 2
    out.mkdir(parents=True)
    path = out / config.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _without_budgets(method: dict) -> dict:
    """A method's own budget (bc's trainer.max_steps) would win over the tiny common one."""
    overrides = {key: value for key, value in (method.get("overrides") or {}).items() if key not in TINY_COMMON}
    return {**method, "overrides": overrides}


def make_demos(study: Path, starts: list[str], out: Path) -> None:
    """One zero-step fit of each method: the datamodule makes the demo file its runs read."""
    firsts: dict[str, StudyRun] = {}
    for run in StudySpec.load(study).runs():
        if run.start in starts:
            firsts.setdefault(run.method.name, run)
    for name, run in firsts.items():
        folder = out / name
        command = run.command() + [
            "--trainer.max_steps", "0",
            "--evaluation.final_episodes", "0",
            "--trainer.default_root_dir", str(folder),
            "--trainer.logger.init_args.save_dir", str(folder),
        ]  # fmt: skip
        folder.mkdir(parents=True)
        with (folder / "fit.log").open("w") as log:
            subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)


def time_study(study: Path, launcher: str, starts: list[str], parallel: int) -> float:
    """Seconds of one `study` command with ``launcher``; its output goes beside the study config."""
    command = [sys.executable, "-m", "sqil_lightning", "study", "--config", str(study), "--launcher", launcher]
    command += ["--parallel", str(parallel), "--start-settings", *starts]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    with study.with_name("study.log").open("w") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "conf" / "studies" / "lunarlander.yaml", help="the study")
    parser.add_argument("--start-settings", nargs="+", default=["s0_demo"], help="the start settings to run")
    parser.add_argument("--parallel", type=int, default=2, help="fits at a time, for both launchers")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "study_launchers", help="where the runs go")
    parser.add_argument("--tiny", action="store_true", help="2 methods x 2 seeds with tiny budgets, in a temporary folder")
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    args = parser.parse_args()
    if args.tiny and args.write:
        parser.error("--tiny figures measure start-up, not the overhead on a study: they are not written")
    out = Path(tempfile.mkdtemp(prefix="study_launchers_")) if args.tiny else args.out
    if not args.tiny and out.exists():
        parser.error(f"{out} exists: delete it, so that both launchers run every fit afresh")
    studies = {launcher: study_copy(args.config, out / launcher, args.tiny) for launcher in LAUNCHERS}
    make_demos(studies["local"], args.start_settings, out / "demos_warmup")
    seconds = {}
    for launcher, study in studies.items():
        seconds[launcher] = time_study(study, launcher, args.start_settings, args.parallel)
        print(f"{launcher}: {seconds[launcher]:.1f} s", flush=True)
    runs = [run for run in StudySpec.load(studies["local"]).runs() if run.start in args.start_settings]
    overhead = seconds["ray"] / seconds["local"] - 1
    config_name = args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config
    lines = [
        f"{machine_line()} ray {version('ray')}.",
        (
            f"{len(runs)} fits of {config_name} "
            f"(start settings {', '.join(args.start_settings)}), {args.parallel} at a time; each launcher into a fresh "
            "out_dir, the whole `study` command timed (start-up, fits, report)."
        ),
        "",
        "| launcher | wall-clock |",
        "| --- | --- |",
        f"| local pool | {seconds['local']:.0f} s |",
        f"| Ray (a local instance, --parallel {args.parallel}) | {seconds['ray']:.0f} s ({overhead:+.1%}) |",
    ]
    figures = {
        "config": str(config_name),
        "start_settings": args.start_settings,
        "fits": len(runs),
        "parallel": args.parallel,
        "seconds": {launcher: round(value, 1) for launcher, value in seconds.items()},
        "ray_overhead": round(overhead, 4),
    }
    print("\n".join(lines), json.dumps(figures), sep="\n")
    if args.write:
        command = "python benchmarks/study_launchers.py " + " ".join(sys.argv[1:])
        write_figures(FIGURES, figures, "Study launchers: local pool vs Ray", command, lines)


if __name__ == "__main__":
    main()
