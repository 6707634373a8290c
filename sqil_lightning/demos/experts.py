"""Experts and demo recording: built-in scripted experts, or any checkpoint this project trained.

An expert is a TensorDict policy (reads ``observation``, writes ``action``), so it runs through
the same TorchRL env, evaluation and recording code as a trained agent. Experts for tasks without
a scripted one are trained by the project itself with the env's reward (``data.reward: env``);
their checkpoints then record demos (`record_checkpoint_demos`).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from gymnasium.envs.box2d.lunar_lander import heuristic
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tqdm.auto import tqdm

from sqil_lightning.demos.store import DemoError, DemoFileNotFoundError, DemoSet
from sqil_lightning.envs import lunar_lander_site
from sqil_lightning.envs.car_racing import TrackFollower
from sqil_lightning.envs.make import SUCCESS_WRAPPERS, attach_simulator, has_success, make_env, make_gym_env
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.checkpoint import load_learner

# Success-only recording gives up after this many episodes per demo wanted.
MAX_TRIES_PER_DEMO = 20

# How to make an expert checkpoint, for error messages.
TRAIN_EXPERT_HINT = (
    "train an expert checkpoint with the env's reward: `python -m sqil_lightning fit --config conf/<task>.yaml "
    "--config conf/experts/<task>.yaml` writes experts/<env id>/last.ckpt; conf/experts/ has pendulum, "
    "halfcheetah, humanoid, pong and lunarlander_site, and a copy with another data.env_id trains any task"
)


# Env id -> (the task's name in conf/<task>.yaml and conf/experts/<task>.yaml, what training its expert takes).
EXPERT_TRAINING = {
    "Pendulum-v1": ("pendulum", "20k SAC steps: 9 min on 2 CPU cores"),
    "HalfCheetah-v5": ("halfcheetah", "120k SAC steps: 49 min on 2 CPU cores"),
    "Humanoid-v5": ("humanoid", "about a million SAC steps: a GPU run"),
    "PongPreprocessed-v5": ("pong", "2 million soft-Q steps: hours on a GPU"),
    "LunarLanderSite-v0": ("lunarlander_site", "1M soft-Q steps; 480k of them took 35 min on 2 CPU cores shared with 2 other fits"),
}


def train_expert_hint(env_id: str | None) -> str:
    """How to get demos when an expert checkpoint is missing: the command that trains it and its
    scale for the project's tasks, and the demo sources that need no expert."""
    if env_id not in EXPERT_TRAINING:
        return TRAIN_EXPERT_HINT
    task, scale = EXPERT_TRAINING[env_id]
    return (
        f"train it first with the env's own reward ({scale}): `python -m sqil_lightning fit --config conf/{task}.yaml "
        f"--config conf/experts/{task}.yaml` writes it there, then run this command again. Or bring demos instead: "
        "--data.demo_path FILE.npz (an existing demo file), or --data.demo_expert null --data.demo_minari DATASET "
        '(a local Minari dataset; pip install -e ".[minari]")'
    )


class ScriptedLunarLander(TensorDictModuleBase):
    """gymnasium's hand-written LunarLander controller (`lunar_lander.heuristic`), discrete actions.

    The heuristic reads only the observation (plus the env's ``continuous`` flag), so it can act
    on batches of observations without touching the simulator.
    """

    in_keys = ["observation"]
    out_keys = ["action"]
    env_id = "LunarLander-v3"
    values = slice(None)  # the observation values the heuristic reads: all 8
    _discrete_env = SimpleNamespace(unwrapped=SimpleNamespace(continuous=False))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict["observation"].detach().cpu().numpy()[..., self.values]
        flat = obs.reshape(-1, obs.shape[-1])
        actions = np.array([heuristic(self._discrete_env, row) for row in flat], dtype=np.int64)
        tensordict["action"] = torch.as_tensor(actions.reshape(obs.shape[:-1]))
        return tensordict


class ScriptedLunarLanderSite(ScriptedLunarLander):
    """gymnasium's controller flying to LunarLanderSite-v0's landing site: the env's first 8
    observation values are gymnasium's measured from the site, so the heuristic steers to the site
    unchanged. It fires gymnasium's four actions (0-3) only, never main and side together.
    A second expert for comparison; the paper's expert, and the study's, is the deep-Q one."""

    env_id = lunar_lander_site.ENV_ID
    values = slice(0, 8)  # the 9th, the site's own x, is not needed: x is already from the site


EXPERTS: dict[str, type[TensorDictModuleBase]] = {
    "lunarlander_scripted": ScriptedLunarLander,
    "lunarlander_site_scripted": ScriptedLunarLanderSite,
    "carracing_scripted": TrackFollower,
}


def make_expert(name: str) -> TensorDictModuleBase:
    """The built-in expert called ``name``; a clear error lists the valid names."""
    if name not in EXPERTS:
        raise ConfigError(f"unknown expert {name!r}; built-in experts: {sorted(EXPERTS)}")
    return EXPERTS[name]()


def expert_env_id(name: str) -> str:
    """The env a built-in expert was written for."""
    make_expert(name)
    return EXPERTS[name].env_id


def record_demos(
    env_id: str,
    policy: TensorDictModuleBase,
    episodes: int,
    seed: int,
    source: str,
    max_steps: int = 100_000,
    pixels: PixelPipeline | None = None,
    success_only: bool = False,
) -> DemoSet:
    """Run ``policy`` for whole episodes (episode i reset with seed ``seed + i``), observed through
    ``pixels`` for image tasks, and keep them all or, with ``success_only``, the first ``episodes``
    that end in the task's success (the seeds of failed episodes are skipped).

    Why filter: a demo is rewarded, and with the absorbing-state reward a demo's last transition
    is worth r/(1-γ); a recorded crash would teach the imitator that crashing is what the expert does.
    """
    if success_only and not has_success(env_id):
        raise ConfigError(f"success-only demos need a task with a success signal; {env_id} has none (tasks with one: {sorted(SUCCESS_WRAPPERS)})")
    gym_env = make_gym_env(env_id)
    attach_simulator(policy, gym_env)
    env = make_env(env_id, gym_env=gym_env, pixels=pixels)
    rollouts, tried = [], 0
    with torch.no_grad(), tqdm(total=episodes, desc=f"recording {source} demos", unit="episode", leave=False) as bar:
        while len(rollouts) < episodes:
            if tried == MAX_TRIES_PER_DEMO * episodes:
                raise DemoError(
                    f"{source} succeeded in only {len(rollouts)} of {tried} episodes of {env_id}; "
                    f"ask for fewer than {episodes} success-only demos or record them all"
                )
            start = env.reset(seed=seed + tried)
            rollout = env.rollout(max_steps, policy, auto_reset=False, tensordict=start)
            tried += 1
            if not success_only or bool(rollout[-1]["next", "success"]):
                rollouts.append(rollout)
                bar.update()
    env.close()
    metadata = {"env_id": env_id, "source": source, "episodes": episodes, "seed": seed}
    if success_only:
        metadata.update(success_only=True, episodes_tried=tried)
    return DemoSet.from_rollouts(rollouts, metadata=metadata)


def generate_expert_demos(
    expert: str, episodes: int, seed: int, out: str | Path, pixels: PixelPipeline | None = None, success_only: bool = False
) -> DemoSet:
    """Record ``episodes`` episodes of a built-in expert (observed through ``pixels``; only successful
    ones with ``success_only``, see `record_demos`) into ``out``."""
    demos = record_demos(
        expert_env_id(expert), make_expert(expert), episodes, seed, source=expert, pixels=pixels, success_only=success_only
    )
    demos.save(out)
    return demos


def is_checkpoint(expert: str) -> bool:
    """Whether ``data.demo_expert`` names a checkpoint file rather than a built-in expert."""
    return expert.endswith(".ckpt")


def expert_policy(expert: str) -> tuple[TensorDictModuleBase, str]:
    """The acting policy of ``expert`` and the env it acts in: a built-in expert by name, or a
    checkpoint this project trained (its deterministic policy, as its demos were recorded)."""
    if not is_checkpoint(expert):
        return make_expert(expert), expert_env_id(expert)
    if not Path(expert).is_file():
        raise DemoFileNotFoundError(f"expert checkpoint {expert} does not exist; {TRAIN_EXPERT_HINT}")
    learner, env_id = load_learner(expert)
    return learner.policy(deterministic=True), env_id


def record_checkpoint_demos(
    checkpoint: str | Path,
    episodes: int,
    seed: int,
    out: str | Path,
    deterministic: bool = True,
    expected_env_id: str | None = None,
    pixels: PixelPipeline | None = None,
    success_only: bool = False,
) -> DemoSet:
    """Record ``episodes`` episodes of a trained checkpoint into the demo file ``out``.

    ``deterministic`` acts with the learner's deterministic policy (argmax Q, or SAC's mean
    action); otherwise the expert samples from its stochastic policy, as the paper's Humanoid expert did.
    ``expected_env_id`` rejects a checkpoint trained on another env; ``pixels`` is the image
    pipeline the demos are observed through (the checkpoint's own, for an image expert);
    ``success_only`` keeps only episodes that end in success (`record_demos`).
    """
    if not Path(checkpoint).is_file():
        raise DemoFileNotFoundError(f"expert checkpoint {checkpoint} does not exist; {train_expert_hint(expected_env_id)}")
    learner, env_id = load_learner(checkpoint)
    if expected_env_id is not None and env_id != expected_env_id:
        raise ConfigError(f"expert checkpoint {checkpoint} was trained on {env_id}, not data.env_id = {expected_env_id!r}")
    policy = learner.policy(deterministic=deterministic)
    acting = learner.deterministic_label if deterministic else "stochastic"
    source = f"checkpoint {checkpoint} ({acting})"
    demos = record_demos(env_id, policy, episodes, seed, source=source, pixels=pixels, success_only=success_only)
    demos.save(out)
    return demos
