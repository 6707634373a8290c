"""What `SQILCLI` adds to the Trainer it builds: the callbacks every run needs, where `validate`/`test`
of a fit's checkpoint log, a W&B logger, and rounded `validate`/`test` tables."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning_utilities.core.apply_func import apply_to_collection

from sqil_lightning import quiet
from sqil_lightning.callbacks import GracefulStop, ReplaySnapshot, Throughput
from sqil_lightning.callbacks.checkpoint_lock import CheckpointFolderLock
from sqil_lightning.callbacks.progress import UpdatesProgressBar
from sqil_lightning.errors import ConfigError
from sqil_lightning.sqil import check_demo_reward
from sqil_lightning.wandb_logger import WandbSettings

EVALUATION_SUBCOMMANDS = ("validate", "test")
PrintResults = Callable[[list[dict[str, Any]], str], None]  # Lightning's (results, stage) table printer


def run_callbacks(trainer_config: Namespace, refresh_rate: int) -> list[Callback]:
    """The configured callbacks, then those every run needs."""
    callbacks = list(trainer_config.get("callbacks") or [])
    extra = [GracefulStop(), Throughput(), CheckpointFolderLock(), ReplaySnapshot()]
    wants_bar = trainer_config.get("enable_progress_bar") is not False
    if wants_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
        # Counts gradient updates, the unit of max_steps (a Lightning step makes data.updates_per_step).
        extra.append(UpdatesProgressBar(refresh_rate=refresh_rate))
    return [*callbacks, *extra]


def check_across_sections(config: Namespace, subcommand: str) -> None:
    """The checks that read two config sections, made before anything is built (a demo file recorded,
    an env made), so a mistake costs a second, not the demos' recording."""
    if subcommand == "fit":
        check_step_multiples(config)
    if config.data.reward == "sqil":
        # The absorbing reward r/(1-γ) is the learner's γ applied to the data's r (`sqil.demo_rows`).
        check_demo_reward(config.data.demo_reward, config.model.init_args.get("gamma"), config.data.absorbing_reward)


def check_step_multiples(config: Namespace) -> None:
    """Step counts Lightning tests with ``global_step % n`` must be multiples of ``data.updates_per_step``,
    which ``global_step`` advances by."""
    per_step = config.data.updates_per_step
    counts = {"trainer.max_steps": config.trainer.max_steps, "checkpoint.every_n_train_steps": config.checkpoint.every_n_train_steps}
    for name, count in counts.items():
        if count is not None and count > 0 and count % per_step:
            raise ConfigError(
                f"{name} = {count} is not a multiple of data.updates_per_step = {per_step}; "
                f"global_step moves {per_step} updates at a time, so use a multiple (e.g. {count - count % per_step + per_step})"
            )


def log_into_checkpoint_run(config: Namespace, subcommand: str) -> Logger | None:
    """For `validate`/`test` of ``config.ckpt_path``: the logger to use instead of the configured one
    (None: keep it), see `_logger_in_checkpoint_run`. Also points an unset ``checkpoint.dirpath`` at
    the checkpoint's folder."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path:
        return None
    logger = _logger_in_checkpoint_run(config["trainer"].get("logger"), ckpt_path, subcommand)
    if config["checkpoint"].dirpath is None and os.path.isfile(ckpt_path):
        # validate/test save nothing: point ModelCheckpoint at the folder the checkpoint is
        # in (as fit spelled it when it can be told), so restoring its state does not warn
        # that the folder changed.
        config["checkpoint"].dirpath = os.path.join(logger.save_dir, "checkpoints") if logger else os.path.dirname(ckpt_path)
    return logger


def _logger_in_checkpoint_run(logger: Logger | None, ckpt_path: str | None, subcommand: str) -> Logger | None:
    """For `validate`/`test` of a fit's own checkpoint: a logger that writes into that fit's folder.

    A checkpoint at ``<logger root>/version_N/checkpoints/*.ckpt`` (e.g.
    ``runs/lunarlander/version_0/checkpoints/last.ckpt``) was written by a fit that logged to
    ``version_N``; the configured logger would start ``version_N+1`` beside it, which reads as
    another training run. The logger returned, of the same class, writes to
    ``version_N/<subcommand>/version_K`` instead: its own ``metrics.csv``, ``hparams.yaml`` and
    ``config.yaml``, so the fit's files are left as they are, and each test is kept. None (keep
    the configured logger) for any other checkpoint, or a logger pointed somewhere else.
    """
    if not ckpt_path or not isinstance(logger, (CSVLogger, TensorBoardLogger)):
        return None
    checkpoint = Path(ckpt_path).resolve()
    run_dir = checkpoint.parent.parent
    if checkpoint.parent.name != "checkpoints" or run_dir.parent != Path(logger.root_dir).resolve():
        return None
    # The configured root's own spelling (e.g. relative runs/lunarlander), as fit's paths read.
    return type(logger)(save_dir=os.path.join(logger.root_dir, run_dir.name), name=subcommand)


def add_wandb_logger(trainer: Trainer, settings: WandbSettings) -> None:
    """A W&B logger after trainer.logger, which stays first: checkpoints and metrics.csv live in its folder."""
    if not trainer.loggers:
        return  # --trainer.logger false: the user asked for no logging at all
    wandb_logger = settings.make_logger(default_name=trainer.loggers[0].name)
    if wandb_logger is not None:
        trainer.loggers = [*trainer.loggers, wandb_logger]


def quiet_wandb(trainer: Trainer) -> None:
    """Silences the known W&B console noise when the trainer logs to W&B (configured or added)."""
    if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        quiet.silence_wandb_noise()


def round_printed_results(trainer: Trainer) -> None:
    """Rounds the values of the `validate`/`test` table the trainer prints (`_rounded`)."""
    # Lightning 2.6 prints the table in the private `_EvaluationLoop._print_results` and offers no
    # public hook (tests/test_newcomer.py notices a change).
    for loop in (trainer.validate_loop, trainer.test_loop):
        loop._print_results = _print_rounded_results(loop._print_results)


def _rounded(value: Any) -> Any:
    """A metric as printed: 3 decimals (3 significant digits below 0.01), not float32's 16 digits."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return value
        value = value.item()
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return round(value, 3) if abs(value) >= 0.01 or value == 0 else float(f"{value:.3g}")
    return value


def _print_rounded_results(print_results: PrintResults) -> PrintResults:
    """Lightning's `validate`/`test` result table, with `_rounded` values (result.json and the
    loggers keep full precision)."""

    def print_rounded(results: list[dict[str, Any]], stage: str) -> None:
        print_results(apply_to_collection(results, (torch.Tensor, float), _rounded), stage)

    return print_rounded
