"""The `pretrain:` config section: demo pretraining before the first env step."""

from __future__ import annotations


class Pretraining:
    """Gradient updates on the demo partition alone before the agent acts (off by default).

    Each update is the learner's own loss on a batch of demo rows only: the λ_samp term is absent
    because there are no agent rows yet (SAC trains its actor and critics alike). No env is
    stepped until they are done; ``trainer.max_steps`` counts them, and checkpoints taken during
    them resume exactly. Their losses are logged as ``pretrain/…``.

    Args:
        steps: updates on demos alone before the first env step (0: none, the paper's Algorithm 1).
    """

    def __init__(self, steps: int = 0) -> None:
        self.steps = steps
