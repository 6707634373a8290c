"""The replay's storage and the stream of batches Lightning's fit loop trains on.

The agent's rows go to a fixed-capacity online partition (in RAM, or memory-mapped when large).
Under SQIL it sits beside the pinned demo partition (`sqil_lightning.sqil.pinned_demo_buffer`)
and every batch is balanced between the two; with the reward source ``env`` (plain RL, how experts
are trained) there are no demos and every batch is drawn from the agent's rows alone.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterator

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, OfflineToOnlineReplayBuffer, RandomSampler, ReplayBuffer

from sqil_lightning.data.frame_replay import StackedFrames
from sqil_lightning.data.n_step import sample_windows
from sqil_lightning.demos.store import DemoSet
from sqil_lightning.sqil import demo_rows, pinned_demo_buffer

# An online partition larger than this lives in memory-mapped files rather than in RAM.
MEMMAP_ABOVE_BYTES = 2**30
# What a row stores besides its two observations (action, reward, flags, is_demo, episode stats).
ROW_OVERHEAD_BYTES = 64


def online_storage(capacity: int, observation_bytes: int) -> LazyTensorStorage:
    """Storage of the agent's rows: RAM, or memory-mapped files (`LazyMemmapStorage`, anonymous,
    deleted with the process) once ``capacity`` rows of two ``observation_bytes`` observations
    would exceed `MEMMAP_ABOVE_BYTES`: image replays then sit in the OS page cache, which can
    spill to disk, instead of pinning gigabytes of the process's memory."""
    row_bytes = 2 * observation_bytes + ROW_OVERHEAD_BYTES
    if capacity * row_bytes > MEMMAP_ABOVE_BYTES:
        return LazyMemmapStorage(capacity)
    return LazyTensorStorage(capacity)


def make_sqil_buffer(demos: TensorDictBase, online_capacity: int, demo_fraction: float, batch_size: int) -> OfflineToOnlineReplayBuffer:
    """The SQIL replay: ``demos`` (already `demo_rows`) pinned, the agent's rows in an `online_storage`
    sized for observations like theirs, ``demo_fraction`` of every batch from the demos."""
    observation = demos["observation"]
    storage = online_storage(online_capacity, observation.element_size() * observation[0].numel())
    return pinned_demo_buffer(demos, storage, demo_fraction, batch_size)


def make_online_buffer(capacity: int, observation_bytes: int) -> ReplayBuffer:
    """The replay of plain RL (reward source ``env``): the agent's rows only, oldest evicted first."""
    return ReplayBuffer(storage=online_storage(capacity, observation_bytes), sampler=RandomSampler())


def make_replay(
    demo_set: DemoSet | None,
    gamma: float | None,
    frames: StackedFrames | None,
    pixels: bool,
    observation_shape: tuple[int, ...],
    demo_reward: float,
    absorbing_reward: bool,
    online_capacity: int,
    demo_fraction: float,
    batch_size: int,
) -> ReplayBuffer:
    """The run's replay: SQIL's (``demo_set`` relabelled with the learner's ``gamma`` and pinned),
    or the agent's rows alone (reward source ``env``: ``demo_set`` None)."""
    if demo_set is None:
        # Image frames are stored as uint8 (1 byte each), vector observations as float32.
        frame_stack = frames.frame_stack if frames is not None else 1
        observation_bytes = int(np.prod(observation_shape)) * (1 if pixels else 4) // frame_stack
        return make_online_buffer(online_capacity, observation_bytes)
    demos = demo_rows(demo_set.to_tensordict(), demo_reward, gamma, absorbing_reward)
    if frames is not None:
        demos = frames.compact(demos, torch.as_tensor(demo_set.steps_into_episode()))
    return make_sqil_buffer(demos, online_capacity, demo_fraction, batch_size)


class ReplayBatches:
    """An endless, re-iterable stream of replay batches for Lightning's fit loop, handed out
    ``updates_per_step`` at a time (a list: one gradient update each, see `OffPolicyLearner`).

    From an `OfflineToOnlineReplayBuffer` every batch holds exactly its ``offline_fraction`` of demo
    rows; from a plain `ReplayBuffer` (reward source ``env``) batches hold the agent's rows only.

    ``chunk`` batches are drawn with one `sample()` call per partition and then sliced. Measured on
    the 2-core CPU (batch 256, 128x128 MLP): `OfflineToOnlineReplayBuffer.sample()` costs 0.31 ms
    against 1.1 ms for the whole bare update, which alone would cap the Lightning loop at 0.78 of
    a bare loop; chunks of 10 cost 0.09 ms a batch and chunks of 50 0.03 ms. The split per batch stays exact, and sampling
    is with replacement, so a chunk has the distribution of ``chunk`` separate calls made on the
    buffer as it was when the chunk was drawn: online rows added since are seen at most ``chunk``
    gradient steps later.
    """

    def __init__(
        self,
        buffer: OfflineToOnlineReplayBuffer | ReplayBuffer,
        batch_size: int,
        chunk: int,
        frames: StackedFrames | None = None,
        updates_per_step: int = 1,
        n_step: int = 1,
        gamma: float = 0.97,
        start_online: Callable[[], None] | None = None,
    ) -> None:
        balanced = isinstance(buffer, OfflineToOnlineReplayBuffer)
        self.demos = buffer.offline_buffer if balanced else None
        self.online = buffer.online_buffer if balanced else buffer
        self.demo_rows = round(buffer.offline_fraction * batch_size) if balanced else 0
        self.batch_size = batch_size
        self.chunk = chunk
        self.frames = frames  # re-stacks frame-stacked rows as they are drawn
        self.updates_per_step = updates_per_step
        self.n_step, self.gamma = n_step, gamma  # rows folded into windows of n_step (`n_step`)
        # Demo pretraining: this many more batches are drawn from the demo partition alone, then
        # `start_online` (collect the first agent rows) runs before the first balanced batch.
        self.pretrain_left = 0
        self.start_online = start_online
        self._drawn: deque[TensorDict] = deque()  # the current chunk's batches not yielded yet
        self._last: list[TensorDict] = []  # the newest yielded step's batches

    def begin(self, pretrain_steps: int, updates_done: int) -> bool:
        """Set the demo pretraining batches still to draw, of ``pretrain_steps``, when training starts
        or resumes after ``updates_done`` updates; those drawn but not trained yet (restored by a
        resume) are done. Returns whether the agent acts from the start (no pretraining left)."""
        self.pretrain_left = max(0, pretrain_steps - updates_done - len(self.untrained()))
        return self.pretrain_left == 0

    def _draw_chunk(self) -> list[TensorDict]:
        if self.pretrain_left > 0:
            return self._draw_demo_chunk()
        if len(self.online) == 0 and self.start_online is not None:
            self.start_online()
        n_online = self.batch_size - self.demo_rows
        if len(self.online) == 0:
            raise RuntimeError("the online partition is empty: collect experience before sampling balanced batches")
        if self.demos is None:
            return list(self._draw(self.online, n_online * self.chunk).reshape(self.chunk, n_online).unbind(0))
        # Demo rows are drawn first: the order of the two draws fixes the random stream that the
        # seeded results in docs/results.md were measured with.
        demo = self._draw(self.demos, self.demo_rows * self.chunk).reshape(self.chunk, self.demo_rows)
        online = self._draw(self.online, n_online * self.chunk).reshape(self.chunk, n_online)
        return list(torch.cat([demo, online], dim=1).unbind(0))

    def _draw_demo_chunk(self) -> list[TensorDict]:
        """Pretraining batches: whole batches of demo rows; a chunk never runs past the last one,
        so a resume knows how many are left from the updates made and the batches not trained."""
        count = min(self.chunk, self.pretrain_left)
        self.pretrain_left -= count
        return list(self._draw(self.demos, self.batch_size * count).reshape(count, self.batch_size).unbind(0))

    def _draw(self, partition: ReplayBuffer, rows: int) -> TensorDict:
        if self.frames is not None:
            return self.frames.sample(partition, rows)
        if self.n_step > 1:
            return sample_windows(partition, rows, self.n_step, self.gamma)
        return partition.sample(rows)

    def __iter__(self) -> Iterator[list[TensorDict]]:
        while True:
            step = []
            while len(step) < self.updates_per_step:
                if not self._drawn:
                    self._drawn.extend(self._draw_chunk())
                step.append(self._drawn.popleft())
            self._last = step
            yield step

    def untrained(self) -> list[TensorDict]:
        """Batches drawn but not trained on yet, in order: what a resumed run must train on next.

        Lightning's fit loop fetches one step ahead (to know whether it is the last), so between
        steps the newest yielded step has not been trained on; the rest of the chunk follows it.
        """
        return self._last + list(self._drawn)

    def restore_untrained(self, batches: list[TensorDict]) -> None:
        """Yield ``batches`` (from `untrained` of a checkpointed run) before drawing new ones."""
        self._drawn = deque(batches)
        self._last = []
