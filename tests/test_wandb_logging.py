"""W&B without an account: a short fit logs metrics and an evaluation video into an offline run."""

from __future__ import annotations

import contextlib
import io

import pytest
import wandb
from fit_process import fit_args

from sqil_lightning.commands import main
from sqil_lightning.errors import ConfigError
from sqil_lightning.wandb_logger import WandbSettings, wandb_credentials_found


@pytest.fixture()
def no_wandb_account(tmp_path, monkeypatch):
    """No API key and an empty home: the logger must choose offline by itself."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "home").mkdir()


def test_without_credentials_auto_mode_goes_offline(no_wandb_account, tmp_path):
    assert not wandb_credentials_found()
    assert WandbSettings(mode="auto").resolved_mode() == "offline"
    logger = WandbSettings(mode="auto", save_dir=str(tmp_path)).make_logger("run")
    assert logger._offline


def test_an_api_key_makes_auto_mode_online(no_wandb_account, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_credentials_found()
    assert WandbSettings(mode="auto").resolved_mode() == "online"


@pytest.mark.parametrize("env_mode,expected", [("offline", "offline"), ("dryrun", "offline"), ("disabled", "disabled")])
def test_auto_mode_follows_wandb_mode_from_the_environment(no_wandb_account, monkeypatch, env_mode, expected):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # WANDB_MODE wins over credentials
    monkeypatch.setenv("WANDB_MODE", env_mode)
    assert WandbSettings(mode="auto").resolved_mode() == expected
    assert (WandbSettings(mode="auto").make_logger("run") is None) == (expected == "disabled")


def test_an_unknown_mode_names_the_valid_ones(no_wandb_account, monkeypatch):
    with pytest.raises(ConfigError, match=r"wandb.mode = 'offlin' is invalid; choose one of \['auto', 'online', 'offline', 'disabled'\]"):
        WandbSettings(mode="offlin")
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ConfigError, match="WANDB_MODE = 'sometimes' is invalid"):
        WandbSettings().resolved_mode()


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_fit_writes_metrics_and_a_video_into_the_offline_run(no_wandb_account, tmp_path, monkeypatch, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    args = fit_args(
        "--wandb.mode", "auto",  # no account: offline by itself
        "--wandb.save_dir", str(tmp_path / "runs"),
        "--evaluation.video_every_n_evaluations", "1",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--data.demo_path", str(lunarlander_demo_file),
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
    wandb.finish()  # what the interpreter's exit does for a CLI run: flush and close the run file
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # The run file stores metric names as plain strings inside its protobuf records.
    records = next(runs[0].glob("run-*.wandb")).read_bytes()
    metrics = (b"train/loss", b"train/q_demo", b"env_steps", b"eval/greedy/return", b"eval/greedy/success_rate")
    throughput = (b"perf/updates_per_s", b"perf/env_steps_per_s")
    for key in metrics + throughput:
        assert key in records, key
    # The resolved config is the run's config: keys of sections that are no module's or
    # datamodule's hyperparameters, and the values given on the command line.
    for key in (b"video_every_n_evaluations", b"every_n_train_steps", str(lunarlander_demo_file).encode()):
        assert key in records, key
    videos = list((runs[0] / "files" / "media" / "videos").rglob("*.gif"))
    assert videos, "no evaluation video in the offline run"
    assert list((tmp_path / "root" / "videos").glob("greedy_step*.gif"))
