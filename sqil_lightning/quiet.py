"""The one place where output the project knows to be benign is silenced.

`silence_known_noise` runs when the command line starts (`sqil_lightning.cli.lightning_main`),
`silence_wandb_noise` once a run has a W&B logger (W&B is imported only then). Each filter matches
one message, by its text and, where it has one, the module that emits it, and says why that
message is benign here; every other warning and log line still gets through. Both functions can be
called again (pytest restores the warning filters after each test): nothing is added twice.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category, emitting module regex): Python warnings, matched by `warnings.filterwarnings`.
BENIGN_WARNINGS: list[tuple[str, type[Warning], str]] = [
    # The learners optimise manually: the update happens inside training_step, so the checkpoint
    # holds the state after it, and global_step counts that update; that is the state a resumed
    # run continues from. Lightning's warning comes with a 13-line `training_step` code sample.
    (
        r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
        UserWarning,
        r"lightning\.pytorch\.callbacks\.model_checkpoint",
    ),
    # The learners override transfer_batch_to_device on purpose (a step's batches are a list of
    # TensorDicts); the datamodule defines none, so there is nothing to choose between.
    (
        r"You have overridden `transfer_batch_to_device` in `LightningModule` but have passed in a `LightningDataModule`",
        UserWarning,
        r"lightning\.pytorch\.trainer\.connectors\.data_connector",
    ),
    # `fit` evaluates in the Evaluation callback, so its validation loader holds no episodes on
    # purpose (SQILDataModule._episode_seeds); `validate` and `test` get data.eval_episodes.
    (
        r"Total length of `DataLoader` across ranks is zero",
        UserWarning,
        r"lightning\.pytorch\.utilities\.data",
    ),
    # Lightning 2.6's own pytree helper against torch >= 2.10: nothing a user can change.
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    ),
]

# Logger name -> message prefixes: log records (Lightning's and TorchRL's info lines), dropped by a
# filter on the logger that creates them.
BENIGN_LOG_LINES: dict[str, tuple[str, ...]] = {
    # An advert for Lightning's cloud logger, printed by every subcommand. The logger's name is
    # that of whichever Lightning package set it last; each is covered.
    **{
        f"{package}.utilities.rank_zero": ("💡 Tip: For seamless cloud logging",)
        for package in ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")
    },
    # TorchRL announces each replay buffer's allocation on stdout (demo and online partitions).
    "torchrl": ("Initialized LazyTensorStorage with",),
}

# Substrings of W&B's own terminal lines (`wandb.termwarn` / `termlog`, not Python warnings).
BENIGN_WANDB_LINES: tuple[str, ...] = (
    # Lightning's WandbLogger always passes `anonymous` to wandb.init, which newer W&B deprecates.
    "The anonymous setting has no effect",
    # An advert for W&B's terminal viewer; the lines on syncing and where the run is kept stay.
    "View this run in the terminal with",
)


class _DropLines(logging.Filter):
    """Drops the records of one logger whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


_LOG_FILTERS = {name: _DropLines(prefixes) for name, prefixes in BENIGN_LOG_LINES.items()}


def silence_known_noise() -> None:
    """Install the warning and log filters above."""
    for message, category, module in BENIGN_WARNINGS:
        # An identical filter is replaced, not duplicated.
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, log_filter in _LOG_FILTERS.items():
        logging.getLogger(name).addFilter(log_filter)  # a no-op when already added


def silence_wandb_noise() -> None:
    """Drop W&B's terminal lines listed in ``BENIGN_WANDB_LINES`` (imports W&B)."""
    from wandb.errors import term

    # W&B 0.31 prints every terminal line through this private function, and has no public filter
    # (tests/test_library_privates.py notices if it goes; the lines then print as they are).
    log = getattr(term, "_log", None)
    if log is None or getattr(log, "sqil_quiet", False):
        return  # another W&B version (its lines then print as they are), or already installed

    def quiet_log(string: str = "", *args, **kwargs) -> None:
        # W&B prints some messages together (the offline notice, where the run is, the advert).
        lines = [line for line in string.split("\n") if not any(benign in line for benign in BENIGN_WANDB_LINES)]
        if lines or not string:
            log("\n".join(lines), *args, **kwargs)

    quiet_log.sqil_quiet = True
    term._log = quiet_log
