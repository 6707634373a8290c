"""What the soft-Q and SAC learners share: evaluation episodes, logging cadence, CPU fast paths."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from sqil_lightning.envs.policy_evaluation import run_episode
from sqil_lightning.errors import ConfigError

# The hooks Lightning calls around each update's backward pass and optimiser step.
UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def check_hyperparameter(name: str, value: float, low: float, high: float | None = None, low_inclusive: bool = True) -> None:
    """Raise a ConfigError naming ``model.<name>`` if ``value`` lies outside its valid range."""
    above_low = value >= low if low_inclusive else value > low
    below_high = high is None or value <= high
    if not (above_low and below_high):
        bracket = "[" if low_inclusive else "("
        upper = f"{high}]" if high is not None else "inf)"
        raise ConfigError(f"model.{name} = {value} is invalid; it must lie in {bracket}{low}, {upper}")


class OffPolicyLearner(LightningModule):
    """Base of the SQIL learners; subclasses define the networks, `losses` and `policy`.

    Each Lightning step receives a list of batches (``data.updates_per_step`` of them) and makes
    one gradient update per batch: optimisation is manual so that several updates can share one
    pass through Lightning's per-step hooks (~0.3 ms on the 2-core CPU, a fifth of a LunarLander
    update), with the same updates, in the same order, as one batch a step.

    ``deterministic_label`` names how the deterministic policy acts (``greedy`` = argmax Q,
    ``mean_action`` = SAC's tanh-squashed mean); evaluation metrics carry it, so a reader of
    ``eval/mean_action/return`` knows the agent did not sample.
    """

    deterministic_label = "deterministic"
    # The latest update's loss terms (detached) and batch, for `FiniteLossGuard`'s error message.
    loss_terms: dict[str, torch.Tensor] = {}
    update_batch: TensorDictBase | None = None

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self._fused_adam = False  # `use_fast_paths` (the `fast:` config section) sets both
        self._compile_mode: str | None = None
        self._compiled_losses: Callable[[TensorDictBase], dict[str, torch.Tensor]] | None = None
        self._direct_hooks: dict[str, list[Callable]] | None = None  # see `_update_hooks`
        self._eval_env: EnvBase | None = None  # validate/test episodes, made from the task on first use

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

    @property
    def discount(self) -> float | None:
        """γ of the soft Bellman backup, which the replay's relabelling uses too (the absorbing
        reward r/(1-γ), n-step windows); None for a learner that reads no reward."""
        return self.hparams.gamma

    def setup(self, stage: str) -> None:
        # The one handle the data room gets of the learner: its γ and its acting policy.
        if self.trainer.datamodule is not None:
            self.trainer.datamodule.connect(self)

    def losses(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """One update's ``loss`` on ``batch`` and the statistics logged beside it as ``train/<name>``.

        Tensor code only (no logging, no reads back to the host), so `fast.compile` can compile it.
        """
        raise NotImplementedError

    def statistics(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """Diagnostics of ``batch`` under the current parameters (logged beside the loss as
        ``train/<name>``), computed only on logging steps and when the loss stops being finite:
        the soft-Q module's two Q means cost 8% of a LunarLander update when made every update."""
        return {}

    def log_losses(self, losses: dict[str, torch.Tensor], stage: str = "train") -> None:
        """Log an update's loss and statistics as ``<stage>/<name>`` (on the trainer's logging steps only).

        A statistic of a partition the batch does not hold (`partition_mean`: NaN; the demo rows
        of plain RL, the agent's rows of demo pretraining) is left out; the loss always goes in.
        """
        kept = {f"{stage}/{name}": value.detach() for name, value in losses.items() if name == "loss" or not value.isnan()}
        if stage == "train":
            self.log_dict(kept)
            return
        # Straight to the loggers: Lightning re-emits a key logged with `self.log` at every later
        # logging step of its one endless epoch, so pretrain/… would fill every row after pretraining.
        for logger in self.loggers:
            logger.log_metrics({name: float(value) for name, value in kept.items()}, step=self.global_step)

    def use_fast_paths(self, compile_mode: str | None, fused_adam: bool) -> None:
        """Compile each update's `losses` (forward and backward) with ``torch.compile(mode=compile_mode)``
        (None: eager) and build Adam with its fused kernel; called before the optimiser is made."""
        self._compile_mode, self._fused_adam = compile_mode, fused_adam
        self._compiled_losses = None

    def adam(self, params, **kwargs) -> torch.optim.Adam:
        """Adam, fused when the fast paths ask for it (the same update, one kernel for all tensors)."""
        return torch.optim.Adam(params, fused=True if self._fused_adam else None, **kwargs)

    def update_target(self) -> None:
        """Move the target network(s) towards the trained ones (Polyak averaging), after each update."""
        raise NotImplementedError

    def training_step(self, batches: list[TensorDictBase], batch_idx: int) -> torch.Tensor:
        """One gradient update per batch: loss, backward, Adam, learning-rate schedule, target.

        Lightning counts each optimiser step in ``global_step``, so ``trainer.max_steps`` and every
        ``every_n_steps`` stay in gradient updates whatever ``data.updates_per_step`` is.
        """
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        # Lightning steps its logging clock once a step; advancing it with the updates keeps the
        # logged step equal to global_step (and logging every `log_every_n_steps` updates). Lightning
        # 2.6 keeps the clock in this private counter, with no setter (tests/test_library_privates.py).
        self.trainer.fit_loop.epoch_loop._batches_that_stepped += len(batches) - 1
        compute_losses = self._losses_function()
        for batch in batches:
            statistics = compute_losses(batch)
            loss = statistics.pop("loss")
            self.loss_terms, self.update_batch = statistics, batch
            if self._logging_step():
                # A batch of demo rows alone is demo pretraining's (balanced batches hold agent rows).
                stage = "train" if bool((~batch["is_demo"]).any()) else "pretrain"
                self.log_losses({"loss": loss, **statistics, **self.statistics(batch)}, stage)
            optimizer.zero_grad()
            if self._direct_hooks is None:
                self.manual_backward(loss)
                optimizer.step()
            else:
                self._direct_update(loss, optimizer)
            if schedule is not None:
                schedule.step()
            # The target update belongs to the update itself, not to `on_train_batch_end`:
            # callbacks (ModelCheckpoint, the Ctrl+C stop) save in that hook before the module's
            # own, and a checkpoint missing the step's target update would not resume exactly.
            self.update_target()
        return loss.detach()

    def on_fit_start(self) -> None:
        self._direct_hooks = self._update_hooks()

    def _update_hooks(self) -> dict[str, list[Callable]] | None:
        """The update hooks something implements, when Lightning's backward and step would add nothing else.

        On one device at 32-bit precision, `manual_backward` and the optimiser wrapper only dispatch
        `UPDATE_HOOKS` to every callback and the module: 0.09 ms an update on the 2-core CPU (6%
        of a LunarLander update), most of it for callbacks that do not implement them. There the
        update calls the implemented hooks itself (`_direct_update`); None keeps Lightning's path
        (DDP, mixed precision and other plugins act inside it).
        """
        trainer = self.trainer
        if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
            return None
        return {
            hook: [partial(getattr(callback, hook), trainer, self) for callback in trainer.callbacks if is_overridden(hook, callback, Callback)]
            + ([getattr(self, hook)] if is_overridden(hook, self, LightningModule) else [])
            for hook in UPDATE_HOOKS
        }

    def _direct_update(self, loss: torch.Tensor, optimizer) -> None:
        """`manual_backward` + ``optimizer.step()`` without Lightning's dispatch: the same hooks in
        the same order, the same optimiser step and step count."""
        for hook in self._direct_hooks["on_before_backward"]:
            hook(loss)
        loss.backward()
        for hook in self._direct_hooks["on_after_backward"]:
            hook()
        for hook in self._direct_hooks["on_before_optimizer_step"]:
            hook(optimizer.optimizer)
        # Lightning 2.6's LightningOptimizer.step counts the step in global_step through these two
        # private hooks, and has no public way to count a step it did not take (tests/test_library_privates.py).
        optimizer._on_before_step()
        optimizer.optimizer.step()
        optimizer._on_after_step()

    def _losses_function(self) -> Callable[[TensorDictBase], dict[str, torch.Tensor]]:
        if self._compile_mode is None:
            return self.losses
        if self._compiled_losses is None:  # compiled on first use: a module that only acts never compiles
            self._compiled_losses = torch.compile(self.losses, mode=self._compile_mode)
        return self._compiled_losses

    def validation_step(self, seed: torch.Tensor, batch_idx: int) -> None:
        self._evaluation_episode("val", seed)

    def test_step(self, seed: torch.Tensor, batch_idx: int) -> None:
        self._evaluation_episode("test", seed)

    def _evaluation_episode(self, stage: str, seed: torch.Tensor) -> None:
        """One deterministic episode per batch; Lightning averages the outcomes (across ranks too)."""
        if self._eval_env is None:
            task = self.trainer.datamodule.task
            self._eval_env = task.make_env(task.eval_seed)  # each episode reseeds it
        outcome = run_episode(self._eval_env, self.policy(deterministic=True), int(seed.item()))
        prefix = f"{stage}/{self.deterministic_label}"
        self.log(f"{prefix}/return", outcome.episode_return, batch_size=1, sync_dist=True)
        self.log(f"{prefix}/episode_length", float(outcome.length), batch_size=1, sync_dist=True)
        if outcome.success is not None:
            self.log(f"{prefix}/success_rate", float(outcome.success), batch_size=1, sync_dist=True)

    def teardown(self, stage: str) -> None:
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Checkpoints from before manual optimisation counted their updates in the automatic loop's
        # progress; move the count to where global_step is now read, so they resume at their step.
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        automatic = fit_loop.get("epoch_loop.automatic_optimization.optim_progress")
        manual = fit_loop.get("epoch_loop.manual_optimization.optim_step_progress")
        if automatic and manual and manual["total"]["completed"] == 0:
            for counter in ("total", "current"):
                manual[counter].update(automatic["optimizer"]["step"][counter])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lets `demos record` rebuild the right learner from a checkpoint file alone.
        checkpoint["sqil_learner_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def transfer_batch_to_device(self, batch: TensorDictBase | torch.Tensor, device: torch.device, dataloader_idx: int):
        # Replay batches are built on the CPU; copying them to the CPU again costs ~0.2 ms a step.
        return batch if device.type == "cpu" else batch.to(device, non_blocking=True)

    def _logging_step(self) -> bool:
        # Logging costs host syncs; do it only on the steps Lightning writes to its logger.
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0


def learner_classes() -> dict[str, type[OffPolicyLearner]]:
    """Every learner class by ``module.QualName``: the project's and any subclass the running
    program has defined. Names read from files (a checkpoint's ``sqil_learner_class``) are looked
    up here, so a file never makes us import a module it names."""
    found, todo = {}, [OffPolicyLearner]
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return found
