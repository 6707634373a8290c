"""`python -m sqil_lightning plot`: learning curves from a run's metrics.csv."""

from __future__ import annotations

import csv

import pytest

from sqil_lightning.commands import main
from sqil_lightning.studies.plots import read_series


def _write_metrics(path):
    rows = [
        {"step": "99", "env_steps": "", "train/loss": "0.5", "eval/greedy/return": ""},
        {"step": "199", "env_steps": "", "train/loss": "0.25", "eval/greedy/return": ""},
        {"step": "200", "env_steps": "1200", "train/loss": "", "eval/greedy/return": "-40.0"},
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_series_use_env_steps_for_evaluations_and_gradient_steps_for_training(tmp_path):
    _write_metrics(tmp_path / "metrics.csv")
    series = read_series(tmp_path / "metrics.csv")
    assert series == {"train/loss": [(99.0, 0.5), (199.0, 0.25)], "eval/greedy/return": [(1200.0, -40.0)]}


def test_plot_command_writes_a_png_beside_the_metrics(tmp_path, capsys):
    _write_metrics(tmp_path / "metrics.csv")
    main(["plot", str(tmp_path)])
    png = tmp_path / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out


def test_plot_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope" in err and "Traceback" not in err
