"""W&B logging that needs no account: the configs' `wandb:` section, offline unless credentials exist."""

from __future__ import annotations

import netrc
import os

from lightning.pytorch.loggers import WandbLogger

from sqil_lightning.errors import ConfigError

WANDB_HOST = "api.wandb.ai"
WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_credentials_found() -> bool:
    """Whether `wandb login` was run or ``WANDB_API_KEY`` is set (without contacting the server)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbSettings:
    """The ``wandb:`` section: a Lightning `WandbLogger` logged to beside ``trainer.logger``.

    ``trainer.logger`` (CSV by default) stays the first logger, so checkpoints, ``metrics.csv``
    and ``result.json`` keep their place whether or not W&B runs.

    Args:
        mode: ``auto`` (default): ``$WANDB_MODE`` if set, else online after `wandb login` (or with
            ``WANDB_API_KEY``) and offline otherwise, so no account is ever needed; ``online``,
            ``offline`` or ``disabled`` (no W&B logger at all). ``validate`` and ``test`` start no
            W&B run with ``auto``; name ``online`` or ``offline`` for one.
        project: W&B project.
        name: the run's display name; default: the name of ``trainer.logger``.
        save_dir: where offline runs are kept (``<save_dir>/wandb/offline-run-*``, upload them
            later with ``wandb sync``).
        tags: W&B tags of the run.
        group: W&B group of the run, so a dashboard shows related runs together (a study sets its name).
    """

    def __init__(
        self,
        mode: str = "auto",
        project: str = "sqil_lightning",
        name: str | None = None,
        save_dir: str = "runs",
        tags: list[str] | None = None,
        group: str | None = None,
    ) -> None:
        if mode not in WANDB_MODES:
            raise ConfigError(f"wandb.mode = {mode!r} is invalid; choose one of {list(WANDB_MODES)}")
        self.mode = mode
        self.project = project
        self.name = name
        self.save_dir = save_dir
        self.tags = list(tags or [])
        self.group = group

    def resolved_mode(self) -> str:
        """``online``, ``offline`` or ``disabled``: what ``auto`` means on this machine."""
        if self.mode != "auto":
            return self.mode
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode:
            # wandb's own spelling of offline is accepted too.
            mode = "offline" if env_mode == "dryrun" else env_mode
            if mode not in WANDB_MODES[1:]:
                raise ConfigError(f"WANDB_MODE = {env_mode!r} is invalid; choose one of {list(WANDB_MODES[1:])}")
            return mode
        return "online" if wandb_credentials_found() else "offline"

    def make_logger(self, default_name: str | None) -> WandbLogger | None:
        """The W&B logger these settings describe, or None when disabled."""
        mode = self.resolved_mode()
        if mode == "disabled":
            return None
        # W&B looks for the code's git repository from save_dir when the run starts, before it
        # creates that folder: a missing one warns ("git root … does not exist") and loses the commit.
        os.makedirs(self.save_dir, exist_ok=True)
        return WandbLogger(
            project=self.project,
            name=self.name or default_name,
            save_dir=self.save_dir,
            offline=mode == "offline",
            tags=self.tags,
            group=self.group,
        )
