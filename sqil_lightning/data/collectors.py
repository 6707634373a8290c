"""Collection in a second process (``data.collector: async``): TorchRL's `MultiAsyncCollector`
with one worker steps the env while the learner makes its gradient updates.

In the serial loop one core alternates env steps and updates; here the worker steps the env on the
second core while the training process updates. The datamodule still takes exactly one batch of
``data.rollout_env_steps`` env steps per rollout, so the update-to-data ratio is the sync one.

How far the worker runs ahead: TorchRL's async collector lets its worker collect one batch, put it
in a queue of length 1 and wait; taking the batch sends the worker "continue", and only then does
it collect the next one. At any time the worker therefore holds at most one batch the learner has
not taken.

Which weights it acts with: TorchRL shares a module policy with its workers through
`SharedMemWeightSyncScheme`, which on the CPU moves the learner's own parameter storage into shared
memory; the worker's policy reads those tensors, so it acts with the weights as Adam leaves them,
at no cost per rollout (an explicit ``update_policy_weights_()`` each rollout measured 0.54 ms on
the 2-core CPU, half a LunarLander update, and would copy the weights onto themselves).

TorchRL starts the worker with the ``spawn`` method (a fresh interpreter, ~3 s): a script that runs
a fit in process must guard its entry point with ``if __name__ == "__main__":``, or the worker
re-runs it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import BaseCollector, MultiAsyncCollector
from torchrl.envs import EnvBase

# Where the agent's env steps happen: in the training process between updates, or in a worker.
COLLECTORS = ("sync", "async")


def worker_seeds(seed: int, rank: int, env_steps: int) -> tuple[int, int]:
    """Seeds of the worker's env and of its torch RNG (the policy's action sampling).

    A fresh run's env starts from ``seed + rank``, the sync collector's seed. A resumed run
    (``env_steps`` > 0) draws both from all three numbers, so it does not replay the episodes and
    actions its run began with.
    """
    env_seed, torch_seed = (int(s) for s in np.random.SeedSequence([seed, rank, env_steps]).generate_state(2))
    return (seed + rank if env_steps == 0 else env_seed), torch_seed


def _init_worker(torch_seed: int) -> None:
    # The training process owns the worker: it stops it through TorchRL's pipe on every way a fit
    # ends. A terminal's Ctrl+C (or a scheduler's SIGTERM to the process group) would otherwise kill
    # the worker mid-run, and the training process, still finishing its step before saving
    # last.ckpt, would fail on the dead worker instead. If the training process dies, the worker
    # sees its pipe close and exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.manual_seed(torch_seed)


def make_async_collector(
    make_env: Callable[[], EnvBase], policy: TensorDictModuleBase | None, frames_per_batch: int, torch_seed: int
) -> MultiAsyncCollector:
    """A one-worker async collector acting with ``policy`` (None: uniformly random actions).

    Staleness: the batch taken at rollout n+1 was collected after the one taken at rollout n was
    handed over, while the learner made the ``rollout.every_n_steps`` updates in between; each of
    its actions used the shared weights of that moment, so they lag the sync collector's (which
    acts at rollout n+1) by at most one batch, i.e. every_n_steps updates. Nothing locks the weights
    while Adam writes them: an action computed during an update may mix parameter tensors of two
    consecutive updates, and async runs are not bit-reproducible (sync runs are).
    """
    return MultiAsyncCollector(
        [make_env],
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=-1,
        policy_device="cpu",
        storing_device="cpu",
        num_threads=torch.get_num_threads(),  # keep the training process's torch_threads
        init_fn=partial(_init_worker, torch_seed),
        auto_register_policy_transforms=False,  # the policy is stateless: no InitTracker needed
    )


def shutdown_collector(collector: BaseCollector) -> None:
    """Stop ``collector`` (and its worker, if any), keeping this process's torch thread count.

    TorchRL's multi-process shutdown hands the worker's threads back to this process
    (``torch.set_num_threads``), which would undo ``torch_threads``.
    """
    threads = torch.get_num_threads()
    collector.shutdown()
    # The collector's shutdown leaves its weight-sync scheme open, and a scheme still open when the
    # interpreter exits starts a queue thread in its __del__ and hangs the exit (seen: pytest stuck
    # after its last test). TorchRL 0.14's collector keeps its schemes in this attribute and has no
    # getter (tests/test_library_privates.py fails if it goes).
    for scheme in (getattr(collector, "_weight_sync_schemes", None) or {}).values():
        scheme.shutdown()
    torch.set_num_threads(threads)
