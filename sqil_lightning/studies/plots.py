"""Learning curves from a run's metrics.csv: `python -m sqil_lightning plot RUN_DIR_OR_CSV`."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sqil_lightning.errors import UserInputError  # noqa: E402

# Evaluation metrics (from the env's own starts, and from shifted starts): plotted against env steps.
EVALUATION_PREFIXES = ("eval/", "eval_shifted/")


class MetricsFileError(UserInputError):
    """The metrics file to plot is missing or holds no known series."""


def read_series(csv_path: Path) -> dict[str, list[tuple[float, float]]]:
    """Every logged metric as (x, value) points: env steps for ``eval/…``, gradient steps otherwise."""
    if not csv_path.is_file():
        raise MetricsFileError(f"{csv_path} does not exist; give a run folder (runs/<name>/version_N) or its metrics.csv")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if not value or not (key.startswith("eval/") or key.startswith("train/")):
                continue
            x_key = "env_steps" if key.startswith("eval/") else "step"
            if row.get(x_key):
                series.setdefault(key, []).append((float(row[x_key]), float(value)))
    if not series:
        raise MetricsFileError(f"{csv_path} holds no eval/… or train/… metrics to plot")
    return series


def plot_metrics(source: str | Path, out: str | Path | None = None) -> Path:
    """One panel per metric (evaluations against env steps, training statistics against gradient steps)."""
    path = Path(source)
    csv_path = path / "metrics.csv" if path.is_dir() else path
    series = read_series(csv_path)
    names = sorted(series, key=lambda k: (not k.startswith(EVALUATION_PREFIXES), k))
    columns = 3
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        xs, ys = zip(*series[name])
        ax.plot(xs, ys, marker="o" if name.startswith(EVALUATION_PREFIXES) else None, markersize=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("env steps" if name.startswith(EVALUATION_PREFIXES) else "gradient steps", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(4))  # step counts are long numbers
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    target = Path(out) if out is not None else csv_path.parent / "curves.png"
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
