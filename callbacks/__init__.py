"""Lightning callbacks of sqil_lightning: rollouts, evaluation, the finite-loss guard, graceful stops,
throughput, fast paths, the logged config and the progress bar."""

from callbacks.evaluation import Evaluation
from callbacks.fast_paths import FastPaths
from callbacks.finite_loss import FiniteLossGuard
from callbacks.graceful_stop import GracefulStop
from callbacks.logged_config import LoggedConfig
from callbacks.periodic_rollout import PeriodicRollout
from callbacks.progress import UpdatesProgressBar
from callbacks.throughput import Throughput

__all__ = ["Evaluation", "FastPaths", "FiniteLossGuard", "GracefulStop", "LoggedConfig", "PeriodicRollout", "Throughput", "UpdatesProgressBar"]
