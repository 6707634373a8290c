"""Lightning callbacks of sqil_lightning: rollouts, evaluation, the finite-loss guard, graceful stops,
throughput, fast paths, the logged config, the progress bar and the replay snapshots."""

from sqil_lightning.callbacks.evaluation import Evaluation
from sqil_lightning.callbacks.fast_paths import FastPaths
from sqil_lightning.callbacks.finite_loss import FiniteLossGuard
from sqil_lightning.callbacks.graceful_stop import GracefulStop
from sqil_lightning.callbacks.logged_config import LoggedConfig
from sqil_lightning.callbacks.periodic_rollout import PeriodicRollout
from sqil_lightning.callbacks.progress import UpdatesProgressBar
from sqil_lightning.callbacks.replay_snapshot import ReplaySnapshot
from sqil_lightning.callbacks.throughput import Throughput

__all__ = ["Evaluation", "FastPaths", "FiniteLossGuard", "GracefulStop", "LoggedConfig", "PeriodicRollout", "ReplaySnapshot", "Throughput", "UpdatesProgressBar"]
