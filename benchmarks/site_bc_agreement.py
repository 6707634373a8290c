"""How closely the study's BC policies act like the deep-Q expert on LunarLanderSite-v0, on the demo
states and on the states BC itself reaches from S0^train.

Issue 21's probe for "a smooth expert": BC collapses from S0^train when, off the demos, it acts
unlike the expert. Here each seed's final BC policy plays the study's evaluation episodes from
S0^train; on every state of those episodes (and on every demo state) its greedy action is compared
with the expert's greedy action:

    python benchmarks/site_bc_agreement.py --study runs/studies/lunarlander_site \
        --expert experts/LunarLanderSite-v0/best.ckpt \
        --demos demos/LunarLanderSite-v0_experts-LunarLanderSite-v0-best_100ep_success_seed0.npz --write
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from tensordict import TensorDict
from tqdm.auto import tqdm

from results_file import write_figures
from site_shift_ladder import LADDER, final_checkpoints
from site_start_states import shift_spec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqil_lightning.demos.experts import expert_policy  # noqa: E402
from sqil_lightning.demos.store import DemoSet  # noqa: E402
from sqil_lightning.envs.lunar_lander_site import ENV_ID  # noqa: E402
from sqil_lightning.envs.make import attach_simulator, make_env, make_gym_env  # noqa: E402
from sqil_lightning.envs.start_states import build_start_shift  # noqa: E402

S0_TRAIN = "tilt 0.6-0.9 (S0^train)"


def greedy_actions(policy, observations: torch.Tensor) -> torch.Tensor:
    return policy(TensorDict({"observation": observations}, batch_size=observations.shape[:1]))["action"]


def visited_states(policy, episodes: int, seed: int) -> torch.Tensor:
    """Every observation of ``policy``'s greedy episodes from S0^train (the study's episodes)."""
    gym_env = make_gym_env(ENV_ID, start_shift=build_start_shift(shift_spec(LADDER[S0_TRAIN])))
    attach_simulator(policy, gym_env)
    env = make_env(ENV_ID, gym_env=gym_env)
    states = []
    with torch.no_grad():
        for i in range(episodes):
            rollout = env.rollout(100_000, policy, auto_reset=False, tensordict=env.reset(seed=seed + i))
            states.append(rollout["observation"])
    env.close()
    return torch.cat(states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, required=True, help="the lunarlander_site study's out_dir")
    parser.add_argument("--expert", required=True, help="the study's expert checkpoint")
    parser.add_argument("--demos", type=Path, required=True, help="the demo file the study trains on")
    parser.add_argument("--episodes", type=int, default=100, help="BC's episodes from S0^train (the study's)")
    parser.add_argument("--eval-seed", type=int, default=1_000_000, help="their first seed (the study's)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "lunarlander_site_bc_agreement.json")
    parser.add_argument("--write", action="store_true", help="write --out and append the table to docs/results.md")
    args = parser.parse_args()
    expert, _ = expert_policy(args.expert)
    demo_states = torch.as_tensor(DemoSet.load(args.demos).observations, dtype=torch.float32)
    expert_on_demos = greedy_actions(expert, demo_states)
    per_seed = []
    for checkpoint in tqdm(final_checkpoints(args.study, "bc"), desc="BC seeds"):
        bc, _ = expert_policy(str(checkpoint))
        on_demos = (greedy_actions(bc, demo_states) == expert_on_demos).float().mean().item()
        visited = visited_states(bc, args.episodes, args.eval_seed)
        on_visited = (greedy_actions(bc, visited) == greedy_actions(expert, visited)).float().mean().item()
        per_seed.append({"checkpoint": str(checkpoint), "demo_states": on_demos, "bc_states_from_s0_train": on_visited, "states": len(visited)})
        print(json.dumps(per_seed[-1]), flush=True)
    rows = [f"| seed {i} | {seed['demo_states']:.3f} | {seed['bc_states_from_s0_train']:.3f} ({seed['states']} states) |" for i, seed in enumerate(per_seed)]
    means = [statistics.mean(seed[key] for seed in per_seed) for key in ("demo_states", "bc_states_from_s0_train")]
    table = [
        "| BC policy | agrees with the expert on the demo states | on the states BC reaches from S0^train |",
        "| --- | --- | --- |",
        *rows,
        f"| mean | {means[0]:.3f} | {means[1]:.3f} |",
    ]
    print("\n".join(table))
    if args.write:
        figures = {"episodes": args.episodes, "eval_seed": args.eval_seed, "seeds": per_seed}
        command = f"python benchmarks/site_bc_agreement.py --study {args.study} --expert {args.expert} --demos {args.demos} --write"
        write_figures(args.out, figures, "LunarLanderSite-v0: BC's actions against the expert's", command, table)


if __name__ == "__main__":
    main()
