"""Lightning callbacks of sqil_lightning: rollouts, evaluation, the finite-loss guard, graceful stops."""

from callbacks.evaluation import Evaluation
from callbacks.finite_loss import FiniteLossGuard
from callbacks.graceful_stop import GracefulStop
from callbacks.periodic_rollout import PeriodicRollout

__all__ = ["Evaluation", "FiniteLossGuard", "GracefulStop", "PeriodicRollout"]
