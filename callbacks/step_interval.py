"""When an ``every_n_steps`` interval falls due, counted in gradient updates.

A Lightning step makes ``data.updates_per_step`` updates (one per batch in its list), so
``global_step`` can pass a multiple of n without landing on it; callbacks count the multiples the
step's updates passed instead of testing ``global_step % n``.
"""

from __future__ import annotations

from lightning.pytorch import Trainer


def intervals_passed(trainer: Trainer, batches: list, every_n_steps: int) -> int:
    """Multiples of ``every_n_steps`` reached by the updates of the step that trained on ``batches``."""
    after = trainer.global_step
    return after // every_n_steps - (after - len(batches)) // every_n_steps
