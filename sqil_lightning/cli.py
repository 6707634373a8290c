"""Command line: `fit`/`validate`/`test` through LightningCLI, and `demos` to make or inspect demos."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning_utilities.core.apply_func import apply_to_collection

from callbacks import Evaluation, FastPaths, FiniteLossGuard, GracefulStop, LoggedConfig, PeriodicRollout, Throughput
from callbacks.checkpoint_lock import CheckpointFolderLock
from callbacks.progress import UpdatesProgressBar
from sqil_lightning import quiet
from sqil_lightning.checkpoint_io import WRITE_ERRNOS, AtomicCheckpointIO, write_fault_line
from sqil_lightning.config_errors import check_config_files, parser_error_line
from sqil_lightning.datamodule import SQILDataModule
from sqil_lightning.demos import DemoSet
from sqil_lightning.envs import env_spaces
from sqil_lightning.errors import ConfigError, TrainingDivergedError, TrainingStopped, UserInputError, WriteFault
from sqil_lightning.experts import EXPERTS, generate_expert_demos, record_checkpoint_demos
from sqil_lightning.minari_demos import load_minari_demos
from sqil_lightning.pixels import PixelPipeline
from sqil_lightning.plots import plot_metrics
from sqil_lightning.pretraining import Pretraining
from sqil_lightning.resume import check_resumable, find_last_checkpoint
from sqil_lightning.study import StudyRunFailed, StudySpec, run_study
from sqil_lightning.study_launchers import LAUNCHERS, make_launcher
from sqil_lightning.study_report import write_report
from sqil_lightning.wandb_logger import WandbSettings


class SQILCLI(LightningCLI):
    """LightningCLI with the links between model and data that SQIL needs."""

    def add_arguments_to_parser(self, parser) -> None:
        # The callbacks every SQIL run needs get config sections of their own (`rollout:`,
        # `evaluation:`, `checkpoint:`, `finite_loss:`, `fast:`), so `--evaluation.episodes 20` works on
        # the command line.
        parser.add_lightning_class_args(PeriodicRollout, "rollout")
        parser.add_lightning_class_args(Evaluation, "evaluation")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(FiniteLossGuard, "finite_loss")
        parser.add_lightning_class_args(FastPaths, "fast")
        parser.add_class_arguments(WandbSettings, "wandb")
        parser.add_class_arguments(Pretraining, "pretrain")
        # The data module draws the pretraining batches (demo rows alone) before any agent row.
        parser.link_arguments("pretrain.steps", "data.pretrain_steps")
        parser.add_argument(
            "--progress_bar_refresh_rate",
            type=int,
            default=100,
            help="gradient updates between redraws of the progress bar, which counts gradient updates "
            "(trainer.global_step) up to trainer.max_steps; redrawing every update costs ~13%% of the "
            "updates/s on a 2-core CPU. Ignored with --trainer.enable_progress_bar false.",
        )
        parser.add_argument(
            "--torch_threads",
            type=int,
            default=1,
            help="intra-op CPU threads of torch. 1 suits the small networks of SQIL: with more, "
            "threads spin against the env and other processes (measured 10x slower with 2 runs on 2 cores).",
        )
        # The absorbing-state reward r/(1-γ) is computed with the model's own γ.
        parser.link_arguments("model.init_args.gamma", "data.gamma")
        # Network input/output sizes come from the env, not from the user.
        parser.link_arguments("data", "model.init_args.observation_shape", lambda d: d.observation_shape, apply_on="instantiate")
        # Both learners take the same linked arguments: a link to an argument one of them lacks
        # breaks `--ckpt_path`, where LightningCLI re-parses the checkpoint's hyperparameters.
        parser.link_arguments("data", "model.init_args.action_space", lambda d: d.action_space, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.torch_threads < 1:
            raise ConfigError(f"torch_threads = {config.torch_threads} is invalid; it must be a positive integer")
        torch.set_num_threads(config.torch_threads)
        max_steps = config.trainer.max_steps
        if max_steps is not None and max_steps < -1:
            raise ConfigError(f"trainer.max_steps = {max_steps} is invalid; give a number of gradient updates (or -1: until stopped)")
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            config.ckpt_path = str(find_last_checkpoint(config))
            check_resumable(config.ckpt_path, config.data.env_id)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # Checked here, before LightningCLI reads the checkpoint's hyperparameters: a missing, truncated,
        # unsafe or other task's file is one line, not a traceback. `last` is resolved later.
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is not None and ckpt_path != "last":
            check_resumable(ckpt_path, config.data.env_id, "resuming from" if subcommand == "fit" else "evaluating")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        callbacks = list(config["trainer"].get("callbacks") or [])
        wants_bar = config["trainer"].get("enable_progress_bar") is not False
        extra = [GracefulStop(), Throughput(), CheckpointFolderLock()]
        if wants_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
            # Counts gradient updates, the unit of max_steps (a Lightning step makes data.updates_per_step).
            extra.append(UpdatesProgressBar(refresh_rate=config["progress_bar_refresh_rate"]))
        kwargs["callbacks"] = [*callbacks, *extra]
        if not config["trainer"].get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        evaluating = self.subcommand in EVALUATION_SUBCOMMANDS
        ckpt_path = config.get("ckpt_path") if evaluating else None
        if ckpt_path:
            logger = _logger_in_checkpoint_run(config["trainer"].get("logger"), ckpt_path, self.subcommand)
            if logger is not None:
                kwargs["logger"] = logger
            if config["checkpoint"].dirpath is None and os.path.isfile(ckpt_path):
                # validate/test save nothing: point ModelCheckpoint at the folder the checkpoint is
                # in (as fit spelled it when it can be told), so restoring its state does not warn
                # that the folder changed.
                config["checkpoint"].dirpath = os.path.join(logger.save_dir, "checkpoints") if logger else os.path.dirname(ckpt_path)
        trainer = super().instantiate_trainer(**kwargs)
        if not (evaluating and config["wandb"].mode == "auto"):  # validate/test: a W&B run only when asked
            self._add_wandb_logger(trainer, config["wandb"])
        if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
            quiet.silence_wandb_noise()
        # Lightning 2.6 prints the validate/test table in the private `_EvaluationLoop._print_results`
        # and offers no public hook (tests/test_newcomer.py notices a change).
        for loop in (trainer.validate_loop, trainer.test_loop):
            loop._print_results = _print_rounded_results(loop._print_results)
        return trainer

    @staticmethod
    def _add_wandb_logger(trainer: Trainer, settings: WandbSettings) -> None:
        # After trainer.logger, which stays first: checkpoints and metrics.csv live in its folder.
        if not trainer.loggers:
            return  # --trainer.logger false: the user asked for no logging at all
        wandb_logger = settings.make_logger(default_name=trainer.loggers[0].name)
        if wandb_logger is not None:
            trainer.loggers = [*trainer.loggers, wandb_logger]


def lightning_main(args: Sequence[str] | None = None, run: bool = True) -> SQILCLI:
    """`python -m sqil_lightning fit --config conf/lunarlander.yaml` and friends."""
    quiet.silence_known_noise()
    return SQILCLI(
        datamodule_class=SQILDataModule,
        subclass_mode_model=True,
        parser_kwargs={
            "parser_mode": "omegaconf",
            # Raise instead of printing usage and exiting, so `main` can say which key is wrong in one line.
            "exit_on_error": False,
            "prog": "python -m sqil_lightning",
            # The top-level help; `main` sends demos, plot and study to parsers of their own.
            "description": TOP_LEVEL_HELP,
            "formatter_class": _RawDescriptionFormatter,  # keeps the subcommand list's lines
        },
        save_config_callback=LoggedConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


TOP_LEVEL_HELP = """\
Soft Q Imitation Learning (SQIL) on PyTorch Lightning and TorchRL.

commands:
  fit       train, e.g. python -m sqil_lightning fit --config conf/lunarlander.yaml
  validate  play data.eval_episodes greedy episodes with a checkpoint: --ckpt_path CKPT
  test      as validate, logged as test/*
  demos     make or inspect demo files (python -m sqil_lightning demos --help)
  plot      learning curves of a run (python -m sqil_lightning plot --help)
  study     methods x start states x seeds, then a report (python -m sqil_lightning study --help)

validate and test of a fit's checkpoint (runs/NAME/version_N/checkpoints/*.ckpt) log into
version_N/validate/ or version_N/test/, not a new version_N+1, and start a W&B run only with
--wandb.mode online or offline. python -m sqil_lightning fit --help lists every config key.
"""


class _RawDescriptionFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter without re-wrapping the description (argparse's RawDescriptionHelpFormatter)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


EVALUATION_SUBCOMMANDS = ("validate", "test")


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


def _rounded(value: Any) -> Any:
    """A metric as printed: 3 decimals (3 significant digits below 0.01), not float32's 16 digits."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return value
        value = value.item()
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return round(value, 3) if abs(value) >= 0.01 or value == 0 else float(f"{value:.3g}")
    return value


def _print_rounded_results(print_results):
    """Lightning's `validate`/`test` result table, with `_rounded` values (result.json and the
    loggers keep full precision)."""

    def print_rounded(results: list[dict[str, Any]], stage: str) -> None:
        print_results(apply_to_collection(results, (torch.Tensor, float), _rounded), stage)

    return print_rounded


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _pixels(text: str) -> PixelPipeline:
    try:
        return PixelPipeline.from_config(json.loads(text))
    except (json.JSONDecodeError, ConfigError) as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pixel pipeline ({err})") from None


PIXELS_HELP = (
    "image tasks: the config's data.pixels as JSON, e.g. '{\"size\": 64}' (conf/carracing.yaml) or "
    "'{\"size\": null, \"frame_stack\": 4}' (conf/pong.yaml)"
)
SUCCESS_ONLY_HELP = "keep only episodes that end in the task's success (LunarLander), skipping failed seeds, until --episodes are kept"


def demos_main(args: Sequence[str]) -> None:
    """`python -m sqil_lightning demos generate|record|from-minari|inspect …`."""
    parser = argparse.ArgumentParser(prog="python -m sqil_lightning demos", description="Make or inspect demo files.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="record episodes of a built-in expert into a demo file")
    gen.add_argument("--expert", required=True, choices=sorted(EXPERTS))
    gen.add_argument("--episodes", type=_positive_int, default=100)
    gen.add_argument("--seed", type=int, default=0, help="episode i starts from reset(seed=SEED+i)")
    gen.add_argument("--out", required=True, help="path of the .npz demo file to write")
    gen.add_argument("--pixels", type=_pixels, help=PIXELS_HELP)
    gen.add_argument("--success-only", action="store_true", help=SUCCESS_ONLY_HELP)
    rec = sub.add_parser("record", help="record episodes of a trained checkpoint (e.g. an expert trained with data.reward env)")
    rec.add_argument("--checkpoint", required=True, help="a .ckpt written by `python -m sqil_lightning fit`")
    rec.add_argument("--episodes", type=_positive_int, default=10)
    rec.add_argument("--seed", type=int, default=0, help="episode i starts from reset(seed=SEED+i)")
    rec.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic policy")
    rec.add_argument("--out", required=True, help="path of the .npz demo file to write")
    rec.add_argument("--pixels", type=_pixels, help=PIXELS_HELP)
    rec.add_argument("--success-only", action="store_true", help=SUCCESS_ONLY_HELP)
    conversion = sub.add_parser("from-minari", help="convert a local Minari dataset (id or folder) into a demo file")
    conversion.add_argument("dataset", help="dataset id in the local Minari root, or a dataset folder")
    conversion.add_argument("--out", required=True, help="path of the .npz demo file to write")
    ins = sub.add_parser("inspect", help="validate a demo file and print what it holds")
    ins.add_argument("path")
    ins.add_argument("--env-id", help="also check the demos against this env's spaces")
    ins.add_argument("--pixels", type=_pixels, help=PIXELS_HELP)
    ns = parser.parse_args(list(args))
    if ns.command == "generate":
        demos = generate_expert_demos(ns.expert, ns.episodes, ns.seed, ns.out, pixels=ns.pixels, success_only=ns.success_only)
        print(f"wrote {ns.out}")
    elif ns.command == "record":
        demos = record_checkpoint_demos(
            ns.checkpoint,
            ns.episodes,
            ns.seed,
            ns.out,
            deterministic=not ns.stochastic,
            pixels=ns.pixels,
            success_only=ns.success_only,
        )
        print(f"wrote {ns.out}")
    elif ns.command == "from-minari":
        demos = load_minari_demos(ns.dataset)
        demos.save(ns.out)
        print(f"wrote {ns.out}")
    else:
        demos = DemoSet.load(ns.path)
        if ns.env_id:
            demos.check_against(env_spaces(ns.env_id, ns.pixels), ns.env_id, source=f"demo file {ns.path}")
    _print_demo_summary(demos)


def plot_main(args: Sequence[str]) -> None:
    """`python -m sqil_lightning plot RUN [--out PNG]`: learning curves from a run's metrics.csv."""
    parser = argparse.ArgumentParser(prog="python -m sqil_lightning plot", description=plot_metrics.__doc__)
    parser.add_argument("run", help="a run folder (runs/<name>/version_N) or its metrics.csv")
    parser.add_argument("--out", help="PNG to write (default: curves.png beside metrics.csv)")
    ns = parser.parse_args(list(args))
    print(f"wrote {plot_metrics(ns.run, ns.out)}")


def study_main(args: Sequence[str]) -> None:
    """`python -m sqil_lightning study --config STUDY.yaml`: run a study, then write its report."""
    parser = argparse.ArgumentParser(prog="python -m sqil_lightning study", description=study_main.__doc__)
    parser.add_argument("--config", required=True, help="a study config, e.g. conf/studies/lunarlander.yaml")
    parser.add_argument("--report-only", action="store_true", help="write the report from the runs finished so far")
    parser.add_argument("--parallel", type=_positive_int, help="fits at a time (default: the study config's)")
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
    ns = parser.parse_args(list(args))
    spec = StudySpec.load(ns.config)
    if ns.parallel:
        spec.parallel = ns.parallel
    launcher = make_launcher(ns.launcher, ns.address, spec)
    if not ns.report_only:
        run_study(spec, launcher, ns.start_settings, ns.methods)
    print(f"wrote {write_report(spec)}")


def _print_demo_summary(demos: DemoSet) -> None:
    returns = demos.episode_returns()
    print(f"  metadata:     {demos.metadata}")
    print(f"  transitions:  {len(demos)} in {demos.num_episodes} episodes")
    print(f"  observation:  {demos.observations.shape[1:]} {demos.observations.dtype}")
    print(f"  action:       {demos.actions.shape[1:]} {demos.actions.dtype}")
    print(f"  terminated:   {int(demos.terminated.sum())} episodes, truncated: {int(demos.truncated.sum())}")
    print(f"  env return:   mean {returns.mean():.1f}, min {returns.min():.1f}, max {returns.max():.1f}")


# The class behind each config section, for the nearest valid key in an unknown-key error.
CONFIG_SECTIONS = {
    "trainer": Trainer,
    "data": SQILDataModule,
    "rollout": PeriodicRollout,
    "evaluation": Evaluation,
    "checkpoint": ModelCheckpoint,
    "finite_loss": FiniteLossGuard,
    "fast": FastPaths,
    "wandb": WandbSettings,
}


def _user_facing(exc: BaseException) -> tuple[str, int] | None:
    """The one line to print and the exit status for an error meant for the user, else None.

    jsonargparse wraps errors raised while it instantiates, so the chain of causes is searched.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserInputError):
            return f"error: {exc}", 2
        if isinstance(exc, argparse.ArgumentError):
            return f"error: {parser_error_line(exc, CONFIG_SECTIONS)}", 2
        if isinstance(exc, MisconfigurationException):
            return f"error: {exc}", 2  # Lightning's own check of a trainer setting
        if isinstance(exc, (TrainingDivergedError, StudyRunFailed, WriteFault)):
            return f"error: {exc}", 1
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return f"error: {write_fault_line(exc)}", 1
        if isinstance(exc, TrainingStopped):
            return str(exc), 130  # the shell's status for a Ctrl+C
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of `python -m sqil_lightning`; user mistakes exit with one line, not a traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    quiet.silence_known_noise()
    try:
        if argv and argv[0] == "demos":
            demos_main(argv[1:])
        elif argv and argv[0] == "plot":
            plot_main(argv[1:])
        elif argv and argv[0] == "study":
            study_main(argv[1:])
        else:
            check_config_files(argv)
            # None lets LightningCLI read sys.argv itself (it warns when given both).
            lightning_main(None if args is None else argv)
    except SIGTERMException:
        raise SystemExit(143) from None  # the shell's status for SIGTERM; GracefulStop saved last.ckpt
    except Exception as exc:
        user_facing = _user_facing(exc)
        if user_facing is None:
            raise
        line, status = user_facing
        print(line, file=sys.stderr)
        raise SystemExit(status) from None
