"""`python -m sqil_lightning COMMAND …`: one parser for every subcommand; user mistakes exit with one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from sqil_lightning import quiet
from sqil_lightning.callbacks import Evaluation, FastPaths, FiniteLossGuard, PeriodicRollout
from sqil_lightning.checkpoint_io import WRITE_ERRNOS, write_fault_line
from sqil_lightning.cli import lightning_main
from sqil_lightning.config_errors import check_config_files, parser_error_line
from sqil_lightning.data.datamodule import SQILDataModule
from sqil_lightning.demos import command as demos_command
from sqil_lightning.errors import TrainingDivergedError, TrainingStopped, UserInputError, WriteFault
from sqil_lightning.studies import command as studies_command
from sqil_lightning.studies.fit_processes import StudyRunFailed
from sqil_lightning.wandb_logger import WandbSettings

PROG = "python -m sqil_lightning"
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")
SUBCOMMANDS = (*LIGHTNING_SUBCOMMANDS, "demos", "plot", "study")

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


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of `python -m sqil_lightning`; user mistakes exit with one line, not a traceback."""
    argv = list(sys.argv[1:] if args is None else args)
    quiet.silence_known_noise()
    try:
        _run(argv, from_sys_argv=args is None)
    except SIGTERMException:
        raise SystemExit(143) from None  # the shell's status for SIGTERM; GracefulStop saved last.ckpt
    except Exception as exc:
        user_facing = _user_facing(exc)
        if user_facing is None:
            raise
        line, status = user_facing
        print(line, file=sys.stderr)
        raise SystemExit(status) from None


def _run(argv: list[str], from_sys_argv: bool) -> None:
    parser, commands = _parser()
    ns, unknown = parser.parse_known_args(argv)
    if ns.subcommand is None:
        choices = ",".join(SUBCOMMANDS)
        raise argparse.ArgumentError(None, f'expected "subcommand" to be one of {{{choices}}}, but it was not provided.')
    if ns.subcommand in LIGHTNING_SUBCOMMANDS:
        check_config_files(argv)
        # None lets LightningCLI read sys.argv itself (it warns when given both).
        lightning_main(None if from_sys_argv else argv)
        return
    if unknown:  # reported by the subcommand's parser, with its usage, as its parse_args would
        commands.choices[ns.subcommand].error(f"unrecognized arguments: {' '.join(unknown)}")
    ns.handler(ns)


def _parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    # exit_on_error=False: a wrong subcommand raises, for `main` to print as one `error:` line; the
    # parsers of demos, plot and study print their usage and error as before.
    parser = argparse.ArgumentParser(
        prog=PROG, description=TOP_LEVEL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, exit_on_error=False
    )
    commands = parser.add_subparsers(
        dest="subcommand", title="subcommands", help="for more details of each, add it as an argument followed by --help"
    )
    for name in LIGHTNING_SUBCOMMANDS:
        # LightningCLI parses the arguments (and answers --help): all are left unknown here, and
        # `_run` hands argv on as typed.
        commands.add_parser(name, add_help=False)
    demos_command.add_parser(commands)
    studies_command.add_plot_parser(commands)
    studies_command.add_study_parser(commands)
    return parser, commands


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
