"""What the soft-Q and SAC learners share: evaluation episodes, logging cadence, CPU fast paths."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from sqil_lightning.errors import ConfigError
from sqil_lightning.evaluation import run_episode


def check_hyperparameter(name: str, value: float, low: float, high: float | None = None, low_inclusive: bool = True) -> None:
    """Raise a ConfigError naming ``model.<name>`` if ``value`` lies outside its valid range."""
    above_low = value >= low if low_inclusive else value > low
    below_high = high is None or value <= high
    if not (above_low and below_high):
        bracket = "[" if low_inclusive else "("
        upper = f"{high}]" if high is not None else "inf)"
        raise ConfigError(f"model.{name} = {value} is invalid; it must lie in {bracket}{low}, {upper}")


class OffPolicyLearner(LightningModule):
    """Base of the SQIL learners; subclasses define the networks, the loss and `policy`.

    ``deterministic_label`` names how the deterministic policy acts (``greedy`` = argmax Q,
    ``mean_action`` = SAC's tanh-squashed mean); evaluation metrics carry it, so a reader of
    ``eval/mean_action/return`` knows the agent did not sample.
    """

    deterministic_label = "deterministic"
    # The latest step's loss terms (detached), named for `FiniteLossGuard`'s error message.
    loss_terms: dict[str, torch.Tensor] = {}

    def __setattr__(self, name: str, value) -> None:
        # Lightning records the running hook's name on the module ~26 times a step; through
        # nn.Module.__setattr__ (which checks parameters, buffers and submodules) that costs
        # ~60 µs, 4% of a CPU update. The name is plain bookkeeping, so store it directly.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def policy(self, deterministic: bool) -> TensorDictModuleBase:
        """The acting policy: sampling (collection) or deterministic (evaluation)."""
        raise NotImplementedError

    def update_target(self) -> None:
        """Move the target network(s) towards the trained ones (Polyak averaging), after each step."""
        raise NotImplementedError

    def optimizer_step(self, *args, **kwargs) -> None:
        # The target update belongs to the gradient step, not to `on_train_batch_end`: callbacks
        # (ModelCheckpoint, the Ctrl+C stop) save in that hook before the module's own, and a
        # checkpoint missing this step's target update would not resume exactly.
        super().optimizer_step(*args, **kwargs)
        self.update_target()

    def validation_step(self, seed: torch.Tensor, batch_idx: int) -> None:
        self._evaluation_episode("val", seed)

    def test_step(self, seed: torch.Tensor, batch_idx: int) -> None:
        self._evaluation_episode("test", seed)

    def _evaluation_episode(self, stage: str, seed: torch.Tensor) -> None:
        """One deterministic episode per batch; Lightning averages the outcomes (across ranks too)."""
        outcome = run_episode(self.trainer.datamodule.eval_env, self.policy(deterministic=True), int(seed.item()))
        prefix = f"{stage}/{self.deterministic_label}"
        self.log(f"{prefix}/return", outcome.episode_return, batch_size=1, sync_dist=True)
        self.log(f"{prefix}/episode_length", float(outcome.length), batch_size=1, sync_dist=True)
        if outcome.success is not None:
            self.log(f"{prefix}/success_rate", float(outcome.success), batch_size=1, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lets `demos record` rebuild the right learner from a checkpoint file alone.
        checkpoint["sqil_learner_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def transfer_batch_to_device(self, batch: TensorDictBase | torch.Tensor, device: torch.device, dataloader_idx: int):
        # Replay batches are built on the CPU; copying them to the CPU again costs ~0.2 ms a step.
        return batch if device.type == "cpu" else batch.to(device, non_blocking=True)

    def _logging_step(self) -> bool:
        # Logging costs host syncs; do it only on the steps Lightning writes to its logger.
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0
