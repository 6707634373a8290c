"""The agent's experience: the collector that steps the training env, the online rows it writes,
statistics of the training episodes, and the snapshot an exact resume needs."""

from __future__ import annotations

import logging
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import BaseCollector, Collector
from torchrl.data import ReplayBuffer

from sqil_lightning.data.collectors import make_async_collector, shutdown_collector, worker_seeds
from sqil_lightning.data.frame_replay import StackedFrames
from sqil_lightning.data.replay import ReplayBatches
from sqil_lightning.data.resumable_episode import ResumableEpisode
from sqil_lightning.data.snapshot import RunPosition, checkpoint_snapshot, load_snapshot, save_snapshot, snapshot_dir
from sqil_lightning.envs.make import make_env, make_gym_env
from sqil_lightning.envs.task import Task
from sqil_lightning.errors import ConfigError
from sqil_lightning.sqil import agent_rows

log = logging.getLogger(__name__)

# Training episodes the rollout statistics average over.
RECENT_EPISODES = 20


class Acting(Protocol):
    """What the data room needs of the learner: its discount and its acting policy."""

    device: torch.device

    @property
    def discount(self) -> float | None: ...  # None: a learner that reads no reward (behavioural cloning)

    def policy(self, deterministic: bool) -> TensorDictModuleBase: ...


class Experience:
    """The online side of the replay and what feeds it (Algorithm 1, line 6).

    Args:
        task: the env and its seeds.
        buffer: the replay the agent's rows are added to (its online partition).
        batches: the batches drawn from it (their online partition, and those drawn but not trained on).
        reward_source: ``sqil`` (the agent's rows get reward 0) or ``env`` (they keep the env's reward).
        rollout_env_steps: env steps each `collect` adds.
        collector: ``sync`` (steps in this process) or ``async`` (a TorchRL worker process).
        frames: the frame-stacked replay's compaction, or None.
        run_id: names this run's replay snapshots; a resume keeps its checkpoint's.
    """

    def __init__(
        self,
        task: Task,
        buffer: ReplayBuffer,
        batches: ReplayBatches,
        reward_source: str,
        rollout_env_steps: int,
        collector: str,
        frames: StackedFrames | None,
        run_id: str,
    ) -> None:
        self.task, self.buffer, self.batches = task, buffer, batches
        self.reward_source, self.rollout_env_steps, self.collector_kind = reward_source, rollout_env_steps, collector
        self.frames, self.run_id = frames, run_id
        self.env_steps = 0
        self.restored_rng: dict[str, Any] | None = None  # RNG states of the checkpoint resumed from, until applied
        self._collector: BaseCollector | None = None
        self._collector_iter: Iterator[TensorDictBase] | None = None
        self._recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self._recent_successes: deque[bool] = deque(maxlen=RECENT_EPISODES)
        self._episode: ResumableEpisode | None = None  # the training env, whose episode a checkpoint saves
        self._restored_episode: dict[str, Any] | None = None
        self._resumed_return = 0.0  # return of the resumed episode's steps before the checkpoint

    def start(self, policy: TensorDictModuleBase | None, policy_device: torch.device | str, rank: int) -> None:
        """(Re)build the TorchRL collector that `collect` steps, acting with ``policy`` (None: uniformly
        random); under DDP each rank explores from its own env seed into its own online partition."""
        self.stop()
        if self.collector_kind == "async":
            self._start_async(policy, torch.device(policy_device), rank)
        else:
            self._start_sync(policy, policy_device, rank)
        self._collector_iter = iter(self._collector)

    def _start_sync(self, policy: TensorDictModuleBase | None, policy_device: torch.device | str, rank: int) -> None:
        task = self.task
        self._episode = ResumableEpisode(make_gym_env(task.env_id, start_shift=task.start_shift))
        seed = task.seed + rank
        if self._restored_episode is not None:
            # Continue the episode the checkpoint interrupted; its saved RNG state replaces the seed.
            self._episode.resume(self._restored_episode)
            self._restored_episode, seed = None, None
        self._collector = Collector(
            make_env(task.env_id, seed=seed, gym_env=self._episode, pixels=task.pixels),
            policy,
            frames_per_batch=self.rollout_env_steps,
            total_frames=-1,
            policy_device=policy_device,
            storing_device="cpu",
            auto_register_policy_transforms=False,  # the policy is stateless: no InitTracker needed
        )
        self._resumed_return = self._episode.replayed_return

    def _start_async(self, policy: TensorDictModuleBase | None, policy_device: torch.device, rank: int) -> None:
        if policy is not None and policy_device.type != "cpu":
            raise ConfigError(
                f"data.collector = async shares the learner's weights with its worker in CPU memory, but the learner "
                f"is on {policy_device}; use trainer.accelerator cpu, or data.collector sync"
            )
        if self._restored_episode is not None:
            # The checkpoint's half-played episode can only be replayed into an env of this process.
            log.info("data.collector async: the training env starts a fresh episode instead of the checkpoint's")
        # The env lives in the worker, which runs up to a batch ahead of the learner's step: no
        # episode of this process to save, so a resumed async run starts a fresh one.
        self._episode, self._restored_episode, self._resumed_return = None, None, 0.0
        task = self.task
        env_seed, torch_seed = worker_seeds(task.seed, rank, self.env_steps)
        make_env_fn = partial(make_env, task.env_id, seed=env_seed, start_shift=task.start_shift, pixels=task.pixels)
        self._collector = make_async_collector(make_env_fn, policy, self.rollout_env_steps, torch_seed)

    def stop(self) -> None:
        """Stop the collector (and its worker process, if any)."""
        if self._collector is not None:
            shutdown_collector(self._collector)
            self._collector, self._collector_iter = None, None

    def collect(self) -> dict[str, float]:
        """Add ``rollout_env_steps`` on-policy env steps to the online partition.

        Returns statistics of the episodes that ended in these steps (empty if none ended).
        """
        if self._collector_iter is None:
            return {}  # demo pretraining: no env yet
        # With data.collector async this batch was collected by the worker while the learner made
        # the updates since the previous rollout: at most one batch behind (`collectors`).
        batch = next(self._collector_iter)
        rows = agent_rows(batch, self.reward_source)
        if self.frames is not None:
            rows = self.frames.compact(rows, batch["step_count"].reshape(-1))
        self.buffer.extend(rows)
        self.env_steps += batch.numel()
        done = batch["next", "done"].reshape(-1)
        if not done.any():
            return {}
        returns = batch["next", "episode_reward"].reshape(-1)[done].tolist()
        returns[0] += self._resumed_return  # the first episode to end may be one a resume continued
        self._resumed_return = 0.0
        self._recent_returns.extend(returns)
        if self.task.has_success:
            self._recent_successes.extend(batch["next", "success"].reshape(-1)[done].bool().tolist())
        return self.statistics()

    def statistics(self) -> dict[str, float]:
        """Mean return (and success rate) of the last `RECENT_EPISODES` training episodes."""
        stats = {"train/episode_return": sum(self._recent_returns) / len(self._recent_returns)}
        if self._recent_successes:
            stats["train/success_rate"] = sum(self._recent_successes) / len(self._recent_successes)
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Counters and recent episode statistics; the rows themselves go to `save_snapshot`."""
        return {
            "env_steps": self.env_steps,
            "stacked_frames": self.frames.state_dict() if self.frames is not None else None,
            "recent_returns": list(self._recent_returns),
            "recent_successes": list(self._recent_successes),
            "run_id": self.run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state["env_steps"])
        if self.frames is not None:
            self.frames.load_state_dict(state["stacked_frames"])
        self._recent_returns.extend(state.get("recent_returns", []))
        self._recent_successes.extend(state.get("recent_successes", []))
        # The resumed run continues its lineage: same run id, so its snapshots stay in one folder.
        # A checkpoint from before run ids has none; its snapshot then lies in replay/ itself.
        self.run_id = state.get("run_id") or self.run_id

    def save_snapshot(self, checkpoint_folder: Path, step: int, rank: int) -> None:
        """Write this rank's online rows, RNG states, current episode and untrained batches beside
        the checkpoints in ``checkpoint_folder`` (`sqil_lightning.data.snapshot`)."""
        position = RunPosition(
            # None with data.collector async: a resumed run then starts a fresh episode.
            episode=self._episode.episode_state() if self._episode is not None else None,
            untrained=self.batches.untrained(),
        )
        save_snapshot(self.batches.online, snapshot_dir(checkpoint_folder, self.run_id, step, rank), position, self.run_id, step)

    def load_snapshot(self, checkpoint_path: str | Path, state: dict[str, Any], rank: int) -> None:
        """Restore the snapshot beside the checkpoint at ``checkpoint_path`` whose data state is ``state``."""
        directory = checkpoint_snapshot(checkpoint_path, state, rank)
        position = load_snapshot(self.batches.online, directory, state.get("run_id"), state["replay_step"])
        self.batches.restore_untrained(position.untrained)
        self._restored_episode = position.episode
        self.restored_rng = position.rng
