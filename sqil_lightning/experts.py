"""Built-in experts and demo recording.

An expert is a TensorDict policy (reads ``observation``, writes ``action``), so it runs through
the same TorchRL env, evaluation and recording code as a trained agent.
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

from sqil_lightning.demos import DemoSet
from sqil_lightning.envs import make_env
from sqil_lightning.errors import ConfigError


class ScriptedLunarLander(TensorDictModuleBase):
    """gymnasium's hand-written LunarLander controller (`lunar_lander.heuristic`), discrete actions.

    The heuristic reads only the observation (plus the env's ``continuous`` flag), so it can act
    on batches of observations without touching the simulator.
    """

    in_keys = ["observation"]
    out_keys = ["action"]
    env_id = "LunarLander-v3"
    _discrete_env = SimpleNamespace(unwrapped=SimpleNamespace(continuous=False))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict["observation"].detach().cpu().numpy()
        flat = obs.reshape(-1, obs.shape[-1])
        actions = np.array([heuristic(self._discrete_env, row) for row in flat], dtype=np.int64)
        tensordict["action"] = torch.as_tensor(actions.reshape(obs.shape[:-1]))
        return tensordict


EXPERTS: dict[str, type[TensorDictModuleBase]] = {
    "lunarlander_scripted": ScriptedLunarLander,
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
) -> DemoSet:
    """Run ``policy`` for whole episodes (episode i reset with seed ``seed + i``) and keep them all."""
    env = make_env(env_id)
    rollouts = []
    with torch.no_grad():
        for i in tqdm(range(episodes), desc=f"recording {source} demos", unit="episode", leave=False):
            start = env.reset(seed=seed + i)
            rollouts.append(env.rollout(max_steps, policy, auto_reset=False, tensordict=start))
    env.close()
    return DemoSet.from_rollouts(
        rollouts, metadata={"env_id": env_id, "source": source, "episodes": episodes, "seed": seed}
    )


def generate_expert_demos(expert: str, episodes: int, seed: int, out: str | Path) -> DemoSet:
    """Record ``episodes`` episodes of a built-in expert and save them to ``out``."""
    demos = record_demos(expert_env_id(expert), make_expert(expert), episodes, seed, source=expert)
    demos.save(out)
    return demos
