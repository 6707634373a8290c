"""Append measured figures to docs/results.md with the date, machine, versions and command."""

from __future__ import annotations

import datetime
import json
import os
import platform
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results.md"


def machine_line() -> str:
    """One line naming the machine and the versions that matter for the figures."""
    libs = ", ".join(f"{name} {version(name)}" for name in ("torch", "lightning", "torchrl", "tensordict", "gymnasium"))
    return f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; {libs}."


def append_section(title: str, command: str, lines: list[str]) -> None:
    """Add one dated section to the results file."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Results\n\nEvery figure below was written by a script in `benchmarks/`, with the command that made it.\n")
    today = datetime.date.today().isoformat()
    body = "\n".join([f"\n## {title} ({today})\n", f"Command: `{command}`", "", *lines, ""])
    with RESULTS.open("a") as f:
        f.write(body)


def write_figures(figures_json: Path, figures: dict, title: str, command: str, lines: list[str]) -> None:
    """The machine-readable figures to ``figures_json`` (docs/benchmarks/), and their section."""
    figures_json.write_text(json.dumps(figures, indent=1) + "\n")
    append_section(title, command, lines)
