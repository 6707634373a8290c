"""Stop a run whose loss stops being finite, keeping the last good parameters."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from sqil_lightning.checkpoint_io import checkpoint_dir
from sqil_lightning.errors import ConfigError, TrainingDivergedError


class FiniteLossGuard(Callback):
    """Before each backward pass, check the loss; on NaN/inf save a checkpoint and stop.

    The check runs before the optimizer step, so the checkpoint holds the parameters that produced
    the bad loss, not parameters already poisoned by it. The error names the step and each
    non-finite term of the learner's ``loss_terms`` and ``statistics`` of the update's batch.

    Args:
        every_n_steps: steps between checks. Each check reads one scalar back from the device:
            negligible on a CPU, a host sync on a GPU, so GPU runs may check less often.
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"finite_loss.every_n_steps = {every_n_steps} is invalid; it must be a positive integer")
        self.every_n_steps = every_n_steps

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if trainer.global_step % self.every_n_steps or bool(torch.isfinite(loss)):
            return
        terms = dict(getattr(pl_module, "loss_terms", {}))
        batch = getattr(pl_module, "update_batch", None)
        if batch is not None:  # the learner's diagnostics (the soft-Q module's Q means) name what blew up
            terms.update(pl_module.statistics(batch))
        bad = [f"{name} = {value.item()}" for name, value in terms.items() if not torch.isfinite(value)]
        path = Path(checkpoint_dir(trainer)) / f"nonfinite-step{trainer.global_step}.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # the full state: optimizer, loops, replay
        raise TrainingDivergedError(
            f"the loss became {loss.item()} at step {trainer.global_step} ({', '.join(bad) or 'no term reported'}); "
            f"the parameters before this step are saved in {path}. Lower the learning rates or the demo reward, "
            "or check the demos and the env's observations for NaN/inf."
        )
