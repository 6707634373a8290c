"""`python -m sqil_lightning plot …` (a run's learning curves) and `study …` (a study, then its report)."""

from __future__ import annotations

import argparse

from sqil_lightning.arg_types import positive_int
from sqil_lightning.studies.launchers import LAUNCHERS, make_launcher
from sqil_lightning.studies.plots import plot_metrics
from sqil_lightning.studies.report import write_report
from sqil_lightning.studies.spec import StudySpec
from sqil_lightning.studies.study import run_study


def add_plot_parser(commands: argparse._SubParsersAction) -> None:
    """`python -m sqil_lightning plot RUN [--out PNG]`: learning curves from a run's metrics.csv."""
    parser = commands.add_parser("plot", description=plot_metrics.__doc__)
    parser.set_defaults(handler=plot)
    parser.add_argument("run", help="a run folder (runs/<name>/version_N) or its metrics.csv")
    parser.add_argument("--out", help="PNG to write (default: curves.png beside metrics.csv)")


def plot(ns: argparse.Namespace) -> None:
    """Writes the learning curves of the run ``ns`` names."""
    print(f"wrote {plot_metrics(ns.run, ns.out)}")


def add_study_parser(commands: argparse._SubParsersAction) -> None:
    """`python -m sqil_lightning study --config STUDY.yaml`: run a study, then write its report."""
    parser = commands.add_parser("study", description=add_study_parser.__doc__)
    parser.set_defaults(handler=study)
    parser.add_argument("--config", required=True, help="a study config, e.g. conf/studies/lunarlander.yaml")
    parser.add_argument("--report-only", action="store_true", help="write the report from the runs finished so far")
    parser.add_argument("--parallel", type=positive_int, help="fits at a time (default: the study config's)")
    parser.add_argument("--start-settings", nargs="+", metavar="NAME", help="run only these start settings (the report covers all)")
    parser.add_argument("--methods", nargs="+", metavar="NAME", help="run only these methods (the report covers all)")
    parser.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="where the fits run: local (a process pool on this machine) or ray (a task per fit on a Ray cluster; "
        "pip install -e \".[ray]\"; README, Studies on a cluster)",
    )
    parser.add_argument(
        "--address",
        help="the Ray cluster to run on: auto, HOST:PORT or ray://HOST:PORT (default: start a Ray instance on this "
        "machine for --parallel fits at a time)",
    )


def study(ns: argparse.Namespace) -> None:
    """Runs the study ``ns.config`` (unless ``--report-only``), then writes its report."""
    spec = StudySpec.load(ns.config)
    if ns.parallel:
        spec.parallel = ns.parallel
    launcher = make_launcher(ns.launcher, ns.address, spec)
    if not ns.report_only:
        run_study(spec, launcher, ns.start_settings, ns.methods)
    print(f"wrote {write_report(spec)}")
