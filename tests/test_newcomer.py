"""What a new user sees: the progress bar, a quiet console, the top-level help, and `test` of a fit.

One real `python -m sqil_lightning fit` runs as a subprocess, with the progress bar and an offline
W&B run, and its stdout and stderr are read as a user would read them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from sqil_lightning.callbacks.progress import UpdatesProgressBar
from sqil_lightning import quiet
from sqil_lightning.commands import main

from fit_process import BASE_CONFIG, FAST_CONFIG, SQIL_COMMAND, fit_args

# What the project knows to be benign (sqil_lightning/quiet.py), as it reads in the output.
BENIGN_OUTPUT = {
    "litlogger advert": "litlogger",
    "ModelCheckpoint's training_step code sample": "def training_step",
    "manual-optimisation checkpoint notice": "Using ModelCheckpoint with manual optimization",
    "transfer_batch_to_device notice": "transfer_batch_to_device",
    "empty validation loader during fit": "Total length of `DataLoader`",
    "Lightning's pytree deprecation": "LeafSpec",
    "weights_only notice": "weights_only",
    "TorchRL buffer allocation": "Initialized LazyTensorStorage",
    "W&B anonymous-setting warning": "anonymous setting",
    "W&B git-root warning": "git root",
    "W&B terminal-viewer advert": "wandb leet",
}


def _user_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: no W&B account, nothing silenced by the test suite."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def user_fit(tmp_path_factory):
    """`fit` on conf/lunarlander.yaml + tests/conf/fast.yaml, as a subprocess, with the progress bar on."""
    tmp_path = tmp_path_factory.mktemp("newcomer")
    # A real warning the run must still print: its log folder already holds a file (Lightning
    # warns that earlier logs there will be replaced).
    log_dir = tmp_path / "logs" / "fast" / "version_0"
    log_dir.mkdir(parents=True)
    (log_dir / "notes.txt").write_text("left by an earlier run\n")
    command = SQIL_COMMAND + fit_args(
        "--trainer.enable_progress_bar", "true",
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--trainer.logger.init_args.version", "0",
        "--data.demo_path", str(tmp_path / "demos" / "ll3.npz"),
        "--wandb.mode", "offline",
        "--wandb.save_dir", str(tmp_path / "wandb_runs"),  # not created beforehand
    )  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=_user_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"fit failed\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-6000:]}"
    return {"tmp_path": tmp_path, "log_dir": log_dir, "stdout": done.stdout, "stderr": done.stderr}


# --- the progress bar ---------------------------------------------------------------------------------


def test_progress_bar_counts_gradient_updates_and_ends_at_max_steps(user_fit):
    frames = [frame for frame in re.split(r"[\r\n]", user_fit["stdout"]) if frame.startswith("Epoch 0:")]
    assert frames, user_fit["stdout"]
    # 300 gradient updates in 75 Lightning steps of 4: the bar counts the updates, up to 100%.
    assert "100%" in frames[-1] and "300/300" in frames[-1], frames[-1]
    assert all("/300" in frame for frame in frames)
    counts = [int(re.search(r"(\d+)/300", frame).group(1)) for frame in frames]
    assert counts == sorted(counts) and 100 in counts and 200 in counts  # redrawn every 100 updates


def _bar_for(global_step: int, max_steps: int, refresh_rate: int = 100) -> tuple[UpdatesProgressBar, SimpleNamespace]:
    bar = UpdatesProgressBar(refresh_rate=refresh_rate)
    trainer = SimpleNamespace(
        global_step=global_step, max_steps=max_steps, max_epochs=-1, current_epoch=0, num_training_batches=float("inf")
    )
    bar._trainer = trainer
    bar.get_metrics = lambda trainer, module: {}
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    return bar, trainer


def test_progress_bar_of_a_resumed_run_starts_at_its_step_and_times_only_this_run(capsys):
    bar, trainer = _bar_for(global_step=40_000, max_steps=80_000)
    tqdm_bar = bar.train_progress_bar
    assert (tqdm_bar.n, tqdm_bar.total, tqdm_bar.initial) == (40_000, 80_000, 40_000)
    drawn = []
    for step in range(40_003, 40_202, 3):  # Lightning steps of 3 updates: never on a multiple of 100
        trainer.global_step = step
        bar.on_train_batch_end(trainer, None, None, [None] * 3, 0)
        drawn.append(tqdm_bar.n)
    assert sorted(set(drawn)) == [40_000, 40_102, 40_201]  # redrawn as the count passes each multiple of 100
    bar.on_train_end(trainer, None)
    capsys.readouterr()


# --- a quiet console ------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", sorted(BENIGN_OUTPUT))
def test_fit_prints_no_message_the_project_knows_to_be_benign(user_fit, what):
    output = user_fit["stdout"] + user_fit["stderr"]
    assert BENIGN_OUTPUT[what] not in output


def test_fit_still_prints_real_warnings_and_its_results(user_fit):
    output = user_fit["stdout"] + user_fit["stderr"]
    assert "exists and is not empty" in user_fit["stderr"]  # Lightning's warning about the earlier file
    assert "final evaluation over 2 episodes" in output
    assert f"checkpoint: {user_fit['log_dir'] / 'checkpoints' / 'last.ckpt'}" in output
    # W&B's own lines on where the offline run is and how to upload it stay.
    assert "W&B syncing is set to `offline`" in output and "wandb sync" in output


SAMPLE_BENIGN_WARNINGS = [
    (
        "Using ModelCheckpoint with manual optimization and every_n_train_steps, but no pre-optimization state was "
        "saved. The checkpoint will contain the model state AFTER optimization.",
        UserWarning,
        "lightning.pytorch.callbacks.model_checkpoint",
    ),
    (
        "You have overridden `transfer_batch_to_device` in `LightningModule` but have passed in a "
        "`LightningDataModule`. It will use the implementation from `LightningModule` instance.",
        UserWarning,
        "lightning.pytorch.trainer.connectors.data_connector",
    ),
    (
        "Total length of `DataLoader` across ranks is zero. Please make sure this was your intention.",
        UserWarning,
        "lightning.pytorch.utilities.data",
    ),
    (
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead.",
        FutureWarning,
        "lightning.pytorch.utilities._pytree",
    ),
]


def _emitted(message: str, category: type[Warning], module: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.silence_known_noise()
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1, module=module)
    return bool(caught)


@pytest.mark.parametrize("message,category,module", SAMPLE_BENIGN_WARNINGS, ids=lambda v: str(v)[:30])
def test_filters_drop_the_benign_warning_and_nothing_beside_it(message, category, module):
    assert not _emitted(message, category, module)
    # The same text from another module, and another text from the same module, still print.
    assert _emitted(message, category, "my_project.training")
    assert _emitted("Checkpoint directory is not empty", UserWarning, module)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("name", sorted(quiet.BENIGN_LOG_LINES))
def test_log_filters_drop_the_benign_line_and_nothing_beside_it(name):
    quiet.silence_known_noise()
    logger, records = logging.getLogger(name), _Records()
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        for prefix in quiet.BENIGN_LOG_LINES[name]:
            logger.info(prefix + " and the rest of the line")
        logger.info("Seed set to 0")
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert records.messages == ["Seed set to 0"]


def test_wandb_filter_drops_only_the_benign_lines(capsys):
    from wandb.errors import term

    quiet.silence_wandb_noise()
    quiet.silence_wandb_noise()  # a second call wraps nothing twice
    term.termwarn("The anonymous setting has no effect and will be removed in a future version.")
    term.termlog("W&B syncing is set to `offline`\nView this run in the terminal with `wandb leet`")
    term.termwarn("a real W&B warning")
    err = capsys.readouterr().err
    assert "anonymous" not in err and "leet" not in err
    assert "W&B syncing is set to `offline`" in err and "a real W&B warning" in err


# --- the top-level help ----------------------------------------------------------------------------------


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for subcommand in ("fit", "validate", "test", "demos", "plot", "study"):
        assert re.search(rf"^  {subcommand} +\S", out, re.MULTILINE), f"{subcommand} missing from\n{out}"


# --- `test` of a fit's checkpoint ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tested(user_fit):
    """`test` on the fit's last.ckpt with the fit's own logger settings and W&B on `auto`, no account."""
    tmp_path, log_dir = user_fit["tmp_path"], user_fit["log_dir"]
    before = {name: (log_dir / name).read_bytes() for name in ("metrics.csv", "config.yaml", "hparams.yaml")}
    args = [
        "test",
        "--config", str(BASE_CONFIG),
        "--config", str(FAST_CONFIG),
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--data.demo_path", str(tmp_path / "demos" / "ll3.npz"),
        "--data.eval_episodes", "2",
        "--wandb.mode", "auto",  # offline for fit without an account; no run for test unless asked
        "--wandb.save_dir", str(tmp_path / "test_wandb"),
        "--ckpt_path", str(log_dir / "checkpoints" / "last.ckpt"),
    ]
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("WANDB_")]:
            mp.delenv(key)
        mp.setenv("HOME", str(tmp_path / "home"))
        mp.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
        mp.chdir(tmp_path)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            main(args)
    return {**user_fit, "before": before, "printed": stdout.getvalue()}


def test_test_of_a_fits_checkpoint_logs_into_that_fits_folder_not_a_new_version(tested):
    logs = tested["tmp_path"] / "logs" / "fast"
    assert sorted(p.name for p in logs.iterdir()) == ["version_0"]  # no version_1 beside the fit
    rows = list(csv.DictReader((tested["log_dir"] / "test" / "version_0" / "metrics.csv").open()))
    assert [bool(r.get("test/greedy/return")) for r in rows] == [True]
    # The fit's own files are as the fit left them.
    for name, content in tested["before"].items():
        assert (tested["log_dir"] / name).read_bytes() == content, name
    assert not (tested["tmp_path"] / "test_wandb").exists()  # and no W&B run was started


def test_test_prints_results_with_a_few_decimals(tested):
    printed = tested["printed"]
    row = next(line for line in printed.splitlines() if "test/greedy/return" in line)
    (value,) = re.findall(r"-?\d+(?:\.\d+)?", row.replace("test/greedy/return", ""))
    assert len(value.partition(".")[2]) <= 3, row
    # The logged metric keeps full precision; the printed one is it, rounded.
    logged = next(csv.DictReader((tested["log_dir"] / "test" / "version_0" / "metrics.csv").open()))
    assert float(value) == round(float(logged["test/greedy/return"]), 3)
    for number in re.findall(r"-?\d+\.\d+", printed):
        assert len(number.partition(".")[2]) <= 3, printed
