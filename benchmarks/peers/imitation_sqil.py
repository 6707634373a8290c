"""Train the `imitation` package's SQIL from this project's demo file, as its users would.

Runs inside the peer's own virtual environment (imitation 1.0.1, stable-baselines3, gymnasium
0.29); it imports nothing from sqil_lightning. Two tasks:

- ``lunarlander``: SQIL on SB3's DQN (imitation's default) in `LunarLander-v2`, gymnasium 0.29's
  name for the same dynamics and start states as v3 without wind.
- ``halfcheetah``: SQIL on SB3's SAC (``rl_algo_class=SAC``) in `HalfCheetah-v4`, gymnasium 0.29's
  newest version. Against this project's `HalfCheetah-v5` (gymnasium 1.x), with the same MuJoCo
  build in both environments (the caller installs the project's version), v4 and v5 step
  bit-identically: the same observations, rewards and flags over 1000 uniformly random actions
  from reset seeds 0, 7 and 1000000 (checked 2026-12-07, MuJoCo 4.0.1). v5 only renames info keys,
  adds constructor options and reads the same model file.

imitation's replay buffer stores every episode end (termination or time limit) as ``done``, and
its demo rows get reward 1: both as imitation ships them.

Every ``--snapshot-every`` env steps, and at the end, it stops the clock, saves the network that
acts (DQN's Q-network, or SAC's actor) with the training seconds so far and SB3's own
``predict(deterministic=True)`` on a few demo observations (``probe_observations.npy``), then
goes on. The caller scores the snapshots with sqil_lightning's own evaluation, checking first
that its rebuilt policy reproduces those actions, so both projects are judged by one protocol.

    python imitation_sqil.py --task lunarlander --demos demos.npz --seed 0 --steps 80000 --out runs/imitation/seed_0
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
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
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

# rl-baselines3-zoo's SAC for the MuJoCo tasks (hyperparams/sac.yml, HalfCheetah-v3: SB3's
# defaults but learning_starts 10000), spelled out; 256x256 is both SB3's and this project's size.
SAC_KWARGS = {
    "learning_rate": 3e-4,
    "buffer_size": 1_000_000,
    "batch_size": 256,
    "learning_starts": 10_000,
    "tau": 0.005,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": "auto",
    "policy_kwargs": {"net_arch": [256, 256]},
}

# Task -> (env id in gymnasium 0.29, SB3 algorithm, its settings).
TASKS = {
    "lunarlander": ("LunarLander-v2", DQN, DQN_KWARGS),
    "halfcheetah": ("HalfCheetah-v4", SAC, SAC_KWARGS),
}

PROBES = 8  # demo observations SB3's predictions are recorded on, for the caller's check


def load_transitions(path: Path) -> Transitions:
    """This project's demo file (`sqil_lightning.demos.store` format) as imitation's transitions;
    actions keep the file's dtype (int64 discrete, float32 Box)."""
    demos = np.load(path, allow_pickle=False)
    dones = np.logical_or(demos["terminated"], demos["truncated"])
    return Transitions(
        obs=demos["observations"].astype(np.float32),
        acts=demos["actions"],
        infos=np.array([{} for _ in range(len(dones))]),
        next_obs=demos["next_observations"].astype(np.float32),
        dones=dones,
    )


def acting_network(model: BaseAlgorithm) -> torch.nn.Module:
    """The part of the model its deterministic action comes from."""
    if isinstance(model, DQN):
        return model.policy.q_net.q_net  # Sequential(Linear, ReLU, Linear, ReLU, Linear)
    return model.actor  # latent_pi (Linear, ReLU, Linear, ReLU), mu, log_std


class Snapshots(BaseCallback):
    """Save the acting network every ``every`` env steps and at the end, with the training
    wall-clock so far and SB3's deterministic actions on ``probes``."""

    def __init__(self, every: int, out: Path, probes: np.ndarray) -> None:
        super().__init__()
        self.every, self.out, self.probes = every, out, probes
        self.train_seconds, self.since, self.saved_at = 0.0, 0.0, -1

    def _on_training_start(self) -> None:
        self.since = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self._save()
        return True

    def _on_training_end(self) -> None:
        if self.saved_at != self.num_timesteps:
            self._save()

    def _save(self) -> None:
        self.train_seconds += time.perf_counter() - self.since  # the snapshot's own time is not training
        torch.save(acting_network(self.model).state_dict(), self.out / f"step_{self.num_timesteps}.pt")
        actions, _ = self.model.predict(self.probes, deterministic=True)
        record = {"env_steps": self.num_timesteps, "train_seconds": self.train_seconds, "probe_actions": actions.tolist()}
        with (self.out / "snapshots.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.saved_at = self.num_timesteps
        self.since = time.perf_counter()


def probe_observations(demos: Transitions) -> np.ndarray:
    """Demo observations spread over the whole file (several episodes)."""
    rows = np.linspace(0, len(demos.obs) - 1, PROBES).astype(int)
    return demos.obs[rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="lunarlander")
    parser.add_argument("--demos", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=80_000, help="env steps (DQN: as many updates; SAC: less learning_starts)")
    parser.add_argument("--snapshot-every", type=int, default=5_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as this project's runs
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "snapshots.jsonl").unlink(missing_ok=True)
    env_id, algorithm, settings = TASKS[args.task]
    demos = load_transitions(args.demos)
    probes = probe_observations(demos)
    np.save(args.out / "probe_observations.npy", probes)
    venv = DummyVecEnv([lambda: gym.make(env_id)])
    venv.seed(args.seed)
    sqil = SQIL(venv=venv, demonstrations=demos, policy="MlpPolicy", rl_algo_class=algorithm, rl_kwargs={**settings, "seed": args.seed})
    sqil.train(total_timesteps=args.steps, callback=Snapshots(args.snapshot_every, args.out, probes), progress_bar=False)
    (args.out / "done.json").write_text(json.dumps({"task": args.task, "steps": args.steps}))


if __name__ == "__main__":
    main()
