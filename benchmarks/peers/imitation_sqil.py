"""Train the `imitation` package's SQIL on LunarLander from this project's demo file.

Runs inside the peer's own virtual environment (imitation 1.0.1, stable-baselines3, gymnasium
0.29, where the task is `LunarLander-v2`: the same dynamics and start states as v3 without wind);
it imports nothing from sqil_lightning. Every ``--snapshot-every`` env steps it stops the clock,
saves the Q-network's weights with the training seconds so far, and goes on; the caller scores
the snapshots with sqil_lightning's own evaluation, so both projects are judged by one protocol.

    python imitation_sqil.py --demos demos.npz --seed 0 --steps 150000 --out runs/imitation/seed_0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from imitation.algorithms.sqil import SQIL
from imitation.data.types import Transitions
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

# rl-baselines3-zoo's tuned DQN for LunarLander (hyperparams/dqn.yml), with the paper's 128x128
# Q-network (the network this project trains) in place of the zoo's 256x256.
DQN_KWARGS = {
    "learning_rate": 6.3e-4,
    "batch_size": 128,
    "buffer_size": 50_000,
    "learning_starts": 0,
    "gamma": 0.99,
    "target_update_interval": 250,
    "train_freq": 4,
    "gradient_steps": -1,
    "exploration_fraction": 0.12,
    "exploration_final_eps": 0.1,
    "policy_kwargs": {"net_arch": [128, 128]},
}


def load_transitions(path: Path) -> Transitions:
    """This project's demo file (`sqil_lightning.demos.store` format) as imitation's transitions."""
    demos = np.load(path, allow_pickle=False)
    dones = np.logical_or(demos["terminated"], demos["truncated"])
    return Transitions(
        obs=demos["observations"].astype(np.float32),
        acts=demos["actions"].astype(np.int64),
        infos=np.array([{} for _ in range(len(dones))]),
        next_obs=demos["next_observations"].astype(np.float32),
        dones=dones,
    )


class Snapshots(BaseCallback):
    """Save the Q-network every ``every`` env steps with the training wall-clock so far."""

    def __init__(self, every: int, out: Path) -> None:
        super().__init__()
        self.every, self.out = every, out
        self.train_seconds, self.since = 0.0, 0.0

    def _on_training_start(self) -> None:
        self.since = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self.train_seconds += time.perf_counter() - self.since  # the snapshot's own time is not training
            q_net = self.model.policy.q_net.q_net  # Sequential(Linear, ReLU, Linear, ReLU, Linear)
            torch.save(q_net.state_dict(), self.out / f"step_{self.num_timesteps}.pt")
            record = {"env_steps": self.num_timesteps, "train_seconds": self.train_seconds}
            with (self.out / "snapshots.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            self.since = time.perf_counter()
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150_000, help="env steps (= gradient updates: train_freq 4, 4 updates)")
    parser.add_argument("--snapshot-every", type=int, default=5_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as this project's runs
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "snapshots.jsonl").unlink(missing_ok=True)
    venv = DummyVecEnv([lambda: gym.make("LunarLander-v2")])
    venv.seed(args.seed)
    sqil = SQIL(venv=venv, demonstrations=load_transitions(args.demos), policy="MlpPolicy", rl_kwargs={**DQN_KWARGS, "seed": args.seed})
    sqil.train(total_timesteps=args.steps, callback=Snapshots(args.snapshot_every, args.out), progress_bar=False)
    (args.out / "done.json").write_text(json.dumps({"steps": args.steps}))


if __name__ == "__main__":
    main()
