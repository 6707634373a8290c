"""Frame-stacked replay without the copies: each row keeps its newest frame, stacks are rebuilt
when a batch is drawn.

With ``data.pixels.frame_stack: k`` the env observes the last k frames; stored as they come, a
row would hold 2k frames (its observation's stack and the next one's), 56 KB for Atari's 4x84x84,
so 1M rows would take 56 GB. Consecutive rows of an episode share k - 1 of those frames, so a row
here keeps only the newest frame of its observation and of its next observation (14 KB for
Atari, 14 GB for 1M rows), plus how many earlier rows of the same episode the stack reaches back
to (``frames_back``) and a running row number. Drawing a row gathers its predecessors' newest
frames from the storage; the result equals what the agent observed, including the repeated
reset frame at an episode's start (TorchRL's ``CatFrames`` "same" padding).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import ReplayBuffer, Storage

FRAMES_BACK = "frames_back"
ROW_ID = "row_id"


class StackedFrames:
    """Compacts rows of ``frame_stack``-deep observations for storage and rebuilds them when drawn.

    Args:
        frame_stack: frames per observation (k).
        frame_channels: channels of one frame (1 grayscale, 3 RGB).
    """

    def __init__(self, frame_stack: int, frame_channels: int) -> None:
        self.frame_stack = frame_stack
        self.frame_channels = frame_channels
        self._next_row_id = 0

    @classmethod
    def for_stack(cls, frame_stack: int, observation_shape: tuple[int, ...]) -> StackedFrames | None:
        """The compaction of observations of shape ``observation_shape`` (``frame_stack`` frames
        along the channels), or None without frame stacking (rows are stored as they come)."""
        return cls(frame_stack, observation_shape[0] // frame_stack) if frame_stack > 1 else None

    def compact(self, rows: TensorDictBase, steps_into_episode: torch.Tensor) -> TensorDict:
        """``rows`` (in time order) with only their newest frames; ``steps_into_episode`` is each
        row's step count since its episode's reset (0 for the reset observation)."""
        newest = slice(-self.frame_channels, None)
        out = rows.clone(recurse=False)
        out["observation"] = rows["observation"][:, newest].clone()
        out["next"] = rows["next"].clone(recurse=False)
        out["next", "observation"] = rows["next", "observation"][:, newest].clone()
        out[FRAMES_BACK] = steps_into_episode.clamp(max=self.frame_stack - 1).to(torch.int8)
        out[ROW_ID] = torch.arange(self._next_row_id, self._next_row_id + len(rows))
        self._next_row_id += len(rows)
        return out

    def sample(self, partition: ReplayBuffer, rows: int) -> TensorDict:
        """Draw ``rows`` rows of ``partition`` and give them back with whole stacks."""
        drawn, info = partition.sample(rows, return_info=True)
        return self.restack(partition.storage, torch.as_tensor(info["index"]), drawn)

    def restack(self, storage: Storage, index: torch.Tensor, drawn: TensorDictBase | None = None) -> TensorDict:
        """Rows ``index`` of ``storage`` (``drawn``, when already read) with whole stacks."""
        drawn = storage.get(index) if drawn is None else drawn
        frames = [drawn["observation"]]
        # Step back one row at a time (negative indices wrap like the circular storage does); a
        # row whose stack reaches no further (its episode's start, or a predecessor overwritten
        # since) repeats its oldest frame.
        reachable = torch.ones_like(index, dtype=torch.bool)
        for back in range(1, self.frame_stack):
            earlier = storage.get(index - back)
            reachable &= (drawn[FRAMES_BACK] >= back) & (earlier[ROW_ID] == drawn[ROW_ID] - back)
            frames.insert(0, torch.where(reachable.view(-1, 1, 1, 1), earlier["observation"], frames[0]))
        stacked = drawn.exclude(FRAMES_BACK, ROW_ID)
        stacked["observation"] = torch.cat(frames, dim=1)
        stacked["next", "observation"] = torch.cat([stacked["observation"][:, self.frame_channels :], drawn["next", "observation"]], dim=1)
        return stacked

    def state_dict(self) -> dict[str, int]:
        return {"next_row_id": self._next_row_id}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._next_row_id = int(state["next_row_id"])
