"""W&B logging that needs no account: offline unless W&B credentials are configured."""

from __future__ import annotations

import netrc
import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger

WANDB_HOST = "api.wandb.ai"


def wandb_credentials_found() -> bool:
    """Whether `wandb login` was run or ``WANDB_API_KEY`` is set (without contacting the server)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class SQILWandbLogger(WandbLogger):
    """Lightning's `WandbLogger`, offline by default when no W&B credentials exist.

    ``offline: null`` (the default) picks online after `wandb login` and offline otherwise, so
    the default run never asks for an account; offline runs land in ``<save_dir>/wandb/`` and
    upload later with ``wandb sync``. Every other argument is `WandbLogger`'s.
    """

    def __init__(self, *args: Any, offline: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, offline=not wandb_credentials_found() if offline is None else offline, **kwargs)
