"""An env's observation and action spaces, read once and shared by the demos, the learner and the replay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class EnvSpaces:
    """What demos must agree with: observation shape and the action space.

    ``num_actions`` is set for discrete actions; ``action_low``/``action_high`` for Box actions.
    """

    observation_shape: tuple[int, ...]
    num_actions: int | None = None
    action_shape: tuple[int, ...] = ()
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None

    def action_space_of_learner(self) -> dict[str, Any]:
        """The actions as a learner's hyperparameter: ``{"n": N}`` (discrete) or ``{"low": [...], "high": [...]}`` (Box)."""
        if self.discrete:
            return {"n": int(self.num_actions)}
        return {"low": [float(x) for x in self.action_low.reshape(-1)], "high": [float(x) for x in self.action_high.reshape(-1)]}
