"""W&B without an account: a short fit logs metrics and an evaluation video into an offline run."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import wandb

from sqil_lightning.cli import main
from sqil_lightning.wandb_logger import SQILWandbLogger, wandb_credentials_found

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


@pytest.fixture()
def no_wandb_account(tmp_path, monkeypatch):
    """No API key and an empty home: the logger must choose offline by itself."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "home").mkdir()


def test_without_credentials_the_logger_goes_offline(no_wandb_account, tmp_path):
    assert not wandb_credentials_found()
    logger = SQILWandbLogger(project="p", save_dir=str(tmp_path))
    assert logger._offline


def test_an_api_key_counts_as_credentials(no_wandb_account, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_credentials_found()


def test_fit_writes_metrics_and_a_video_into_the_offline_run(no_wandb_account, tmp_path, monkeypatch, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config", str(REPO / "conf" / "lunarlander.yaml"),
        "--config", str(REPO / "tests" / "conf" / "fast.yaml"),
        "--config", str(REPO / "conf" / "logging" / "wandb.yaml"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--data.demo_path", str(lunarlander_demo_file),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
    wandb.finish()  # what the interpreter's exit does for a CLI run: flush and close the run file
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # The run file stores metric names as plain strings inside its protobuf records.
    records = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"train/loss", b"env_steps", b"eval/greedy/return", b"eval/greedy/success_rate"):
        assert key in records, key
    videos = list((runs[0] / "files" / "media" / "videos").rglob("*.gif"))
    assert videos, "no evaluation video in the offline run"
    assert list((tmp_path / "root" / "videos").glob("greedy_step*.gif"))
