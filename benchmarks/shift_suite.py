"""SQIL vs BC vs the scripted expert from S0^demo and three shifted LunarLander start families.

Runs the study conf/studies/shift_suite.yaml (the shipped default config; every run's final greedy
evaluation is 100 fixed episodes of its family's starts, the expert's row the same episodes), then
writes the means over seeds to docs/benchmarks/shift_suite[_VARIANT].json and a table to
docs/results.md. A variant changes some `fit` keys for every run (one lever at a time, against
the same episodes and demos):

    python benchmarks/shift_suite.py --write                                   # the shipped default
    python benchmarks/shift_suite.py --variant n3 --set model.init_args.n_step=3 --write

A screen runs a lever on some families first (`--families lateral lateral_tilt`): the same seeds and
episodes as the whole suite, so its figures compare seed by seed with the default's, and the whole
suite later resumes from them. The study is resumable: run the same command again after a stop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from results_file import append_section

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqil_lightning.studies.spec import StudySpec  # noqa: E402

from sqil_lightning.studies.study import mean_and_standard_error  # noqa: E402
from sqil_lightning.studies.report import reference_scores  # noqa: E402

STUDY = REPO / "conf" / "studies" / "shift_suite.yaml"
BENCHMARKS = REPO / "docs" / "benchmarks"


def variant_study(variant: str | None, overrides: dict[str, object]) -> Path:
    """The suite's study config, with ``overrides`` for every run and its own out_dir for a variant."""
    if variant is None:
        return STUDY
    raw = yaml.safe_load(STUDY.read_text())
    raw["out_dir"] = f"{raw['out_dir']}_{variant}"
    raw["common"] = {**(raw.get("common") or {}), **overrides}
    path = REPO / "runs" / "studies" / f"shift_suite_{variant}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def summary(spec: StudySpec) -> dict:
    """Mean final success over the finished seeds of each method, and the expert's rate, per family."""
    experts = reference_scores(spec, spec.expert)["expert"]
    families = {}
    for start in spec.start_settings:
        row = {"expert": round(experts[start][0], 3)}
        for method in spec.methods:
            scores = [run.score() for run in spec.runs() if run.method is method and run.start == start]
            scores = [s for s in scores if s is not None]
            row[method.name] = round(mean_and_standard_error(scores)[0], 3) if scores else None
            row[f"{method.name}_per_seed"] = scores
        row["seeds"] = len(row["sqil_per_seed"])
        families[start] = row
    return families


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def runs_commit(spec: StudySpec) -> str:
    """The commit the study's runs were made with: recorded in its out_dir when it first started."""
    record = spec.out_dir / "commit.txt"
    if not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(commit())
    return record.read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", help="name of a variant (its runs go to their own out_dir)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fit keys every run of the variant sets (YAML values)")
    parser.add_argument("--report-only", action="store_true", help="summarise the runs finished so far")
    parser.add_argument(
        "--sqil-only", action="store_true", help="run SQIL alone (a variant of SQIL's config leaves BC's runs as the default's)"
    )
    parser.add_argument("--families", nargs="+", metavar="NAME", help="run only these start families (a screen; default: all)")
    parser.add_argument("--write", action="store_true", help="write the JSON and a docs/results.md section")
    args = parser.parse_args()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    if overrides and args.variant is None:
        parser.error("--set needs --variant (the shipped default's runs stay as they are)")
    study = variant_study(args.variant, overrides)
    runs_at = runs_commit(StudySpec.load(study))
    if not args.report_only:
        methods = ["--methods", "sqil"] if args.sqil_only else []
        starts = ["--start-settings", *args.families] if args.families else []
        subprocess.run([sys.executable, "-m", "sqil_lightning", "study", "--config", str(study), *methods, *starts], cwd=REPO, check=True)
    spec = StudySpec.load(study)
    families = {start: row for start, row in summary(spec).items() if row["seeds"]}
    payload = {"families": families, "config": {"configs": spec.configs, "overrides": spec.common}, "commit": runs_at}
    print(json.dumps(payload, indent=1))
    if not args.write:
        return
    name = "shift_suite" + (f"_{args.variant}" if args.variant else "")
    BENCHMARKS.mkdir(parents=True, exist_ok=True)
    (BENCHMARKS / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = ["| start | SQIL | BC | expert | seeds |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {start} | {row['sqil']} | {row['bc']} | {row['expert']} | {row['seeds']} |" for start, row in families.items()]
    options = [*(["--variant", args.variant] if args.variant else []), *(["--set", *args.set] if args.set else [])]
    screen = ["--families", *args.families] if args.families else []
    command = " ".join(["python benchmarks/shift_suite.py", *options, *(["--sqil-only"] if args.sqil_only else []), *screen, "--write"])
    append_section(f"Shift suite: {name} (commit {payload['commit']})", command, [*lines, "", f"Overrides: `{json.dumps(spec.common)}`."])


if __name__ == "__main__":
    main()
