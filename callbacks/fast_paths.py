"""Speed knobs that leave the algorithm alone: the `fast:` config section."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer

from sqil_lightning.errors import ConfigError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class FastPaths(Callback):
    """Hands the learner its fast paths before Lightning builds the optimiser.

    Measured on the 2-core CPU in docs/results.md ("Throughput and fast paths"). Several updates per Lightning
    step, the other knob that changes no result, is ``data.updates_per_step``.

    Args:
        compile: ``null`` (eager) or a ``torch.compile`` mode for each update's loss, forward and
            backward (`OffPolicyLearner.losses`); ``reduce-overhead`` also replays it as CUDA
            graphs on a GPU. Compiling adds seconds to a minute at the start of a run.
        fused_adam: Adam's fused kernel: the same update in one kernel for all parameters
            instead of one per tensor (rounding may differ in the last bits).
    """

    def __init__(self, compile: str | None = None, fused_adam: bool = False) -> None:
        if compile is not None and compile not in COMPILE_MODES:
            raise ConfigError(f"fast.compile = {compile!r} is invalid; choose null (eager) or one of {list(COMPILE_MODES)}")
        self.compile = compile
        self.fused_adam = fused_adam

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        pl_module.use_fast_paths(self.compile, self.fused_adam)
