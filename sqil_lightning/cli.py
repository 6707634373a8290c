"""`fit`/`validate`/`test`: SQIL's LightningCLI, its config sections and argument links
(`sqil_lightning.commands.main` hands these subcommands to `lightning_main`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from sqil_lightning import quiet, trainer_setup
from sqil_lightning.callbacks import Evaluation, FastPaths, FiniteLossGuard, LoggedConfig, PeriodicRollout
from sqil_lightning.checkpoint_io import AtomicCheckpointIO
from sqil_lightning.data.datamodule import SQILDataModule
from sqil_lightning.data.pretraining import Pretraining
from sqil_lightning.errors import ConfigError
from sqil_lightning.resume import check_resumable, find_last_checkpoint
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
        trainer_setup.check_across_sections(config, self.subcommand)
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
        kwargs["callbacks"] = trainer_setup.run_callbacks(config["trainer"], config["progress_bar_refresh_rate"])
        if not config["trainer"].get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        evaluating = self.subcommand in trainer_setup.EVALUATION_SUBCOMMANDS
        logger = trainer_setup.log_into_checkpoint_run(config, self.subcommand) if evaluating else None
        if logger is not None:
            kwargs["logger"] = logger
        trainer = super().instantiate_trainer(**kwargs)
        if not (evaluating and config["wandb"].mode == "auto"):  # validate/test: a W&B run only when asked
            trainer_setup.add_wandb_logger(trainer, config["wandb"])
        trainer_setup.quiet_wandb(trainer)
        trainer_setup.round_printed_results(trainer)
        return trainer


def lightning_main(args: Sequence[str] | None = None, run: bool = True) -> SQILCLI:
    """`python -m sqil_lightning fit --config conf/lunarlander.yaml` and friends."""
    quiet.silence_known_noise()
    return SQILCLI(
        datamodule_class=SQILDataModule,
        subclass_mode_model=True,
        parser_kwargs={
            "parser_mode": "omegaconf",
            # Raise instead of printing usage and exiting, so `commands.main` can say which key is wrong in one line.
            "exit_on_error": False,
            "prog": "python -m sqil_lightning",
        },
        save_config_callback=LoggedConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )
