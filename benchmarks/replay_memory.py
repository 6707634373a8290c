"""Replay memory for image observations: bytes one stored transition takes, and 1M of them.

Fills the online replay storage the trainer builds (`replay.online_storage`) with real rows: env
steps through the project's TorchRL pipeline, relabelled as SQIL stores them. Layouts: vector
LunarLander (float32), Car Racing as configured (64x64 RGB, uint8) and Atari's stack of 4
grayscale 84x84 frames (conf/pong.yaml), both as the env observes it and one frame a row as the
trainer stores it (`frame_replay.StackedFrames`). The memory budget is this machine's RAM.

    python benchmarks/replay_memory.py --write
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import append_section, machine_line  # noqa: E402

from sqil_lightning.envs import atari  # noqa: E402
from sqil_lightning.envs.car_racing import ENV_ID as CAR_RACING  # noqa: E402
from sqil_lightning.envs.make import make_env  # noqa: E402
from sqil_lightning.data.frame_replay import StackedFrames  # noqa: E402
from sqil_lightning.envs.pixels import PixelPipeline  # noqa: E402
from sqil_lightning.data.replay import online_storage  # noqa: E402
from sqil_lightning.sqil import agent_rows  # noqa: E402

LAYOUTS = {
    "LunarLander-v3, 8 float32": ("LunarLander-v3", None),
    "Car Racing, 3x64x64 uint8 (conf/carracing.yaml)": (CAR_RACING, PixelPipeline(size=64)),
    "Atari, 4x84x84 uint8 stacks stored whole": (atari.ENV_ID, PixelPipeline(size=None, frame_stack=4)),
    "Atari, 4x84x84 uint8, one frame a row (what the trainer stores)": (atari.ENV_ID, PixelPipeline(size=None, frame_stack=4)),
}
ONE_FRAME_A_ROW = "one frame a row"
MILLION = 1_000_000


def stored_row_bytes(env_id: str, pixels: PixelPipeline | None, compact: bool, steps: int = 20) -> tuple[int, int, str]:
    """(bytes of one stored row, bytes of its observation, the storage class 1M rows would get)."""
    env = make_env(env_id, seed=0, pixels=pixels)
    collected = env.rollout(steps)
    env.close()
    rows = agent_rows(collected)
    if compact:
        frames = StackedFrames(pixels.frame_stack, collected["observation"].shape[-3] // pixels.frame_stack)
        rows = frames.compact(rows, collected["step_count"].reshape(-1))
    storage = online_storage(steps, 0)
    storage.set(torch.arange(steps), rows)
    observation = rows["observation"][0]
    big = online_storage(MILLION, observation.element_size() * observation.numel())
    return int(storage.get(0).bytes()), observation.element_size() * observation.numel(), type(big).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    args = parser.parse_args()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    lines = [
        machine_line(),
        f"RAM: {ram / 2**30:.1f} GiB. A row holds the observation and the next observation, the action, reward and flags.",
        "",
        "| layout | observation bytes | bytes per stored transition | 1M transitions | 1M storage | share of RAM |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, (env_id, pixels) in LAYOUTS.items():
        row, observation, storage = stored_row_bytes(env_id, pixels, compact=ONE_FRAME_A_ROW in name)
        total = row * MILLION
        lines.append(f"| {name} | {observation:,} | {row:,} | {total / 1e9:.1f} GB | {storage} | {total / ram:.0%} |")
    print("\n".join(lines))
    if args.write:
        append_section("Replay memory for image observations", "python benchmarks/replay_memory.py --write", lines)


if __name__ == "__main__":
    main()
