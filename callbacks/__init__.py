"""Lightning callbacks of sqil_lightning: on-policy rollouts and evaluation."""

from callbacks.evaluation import Evaluation
from callbacks.periodic_rollout import PeriodicRollout

__all__ = ["Evaluation", "PeriodicRollout"]
