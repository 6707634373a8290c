"""Where cloning stops landing on LunarLanderSite-v0: the expert and the study's BC policies from
start families harsher than S0^train.

Issue 21 asks, when BC does not collapse from S0^train, for the probes that looked for the reason;
this one asks whether S0^train is too mild. Each family on the ladder is scored with the expert and
with each seed's final BC policy of the study (``<study>/bc/s0_train/seed*/``; BC never steps the
env, so its start setting only changes where it is evaluated), on the study's evaluation episodes.
A family where the expert still lands >= 0.8 and BC falls far below it is where the paper's
effect could show:

    python benchmarks/site_shift_ladder.py --study runs/studies/lunarlander_site \
        --expert experts/LunarLanderSite-v0/best.ckpt --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from tqdm.auto import tqdm

from results_file import write_figures
from site_start_states import OFFSET, shift_spec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqil_lightning.demos.experts import expert_policy  # noqa: E402
from sqil_lightning.envs.lunar_lander_site import ENV_ID  # noqa: E402
from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.envs.start_states import build_start_shift  # noqa: E402

# S0^train first (the study's own figures, scored again here), then harsher: more tilt, a spin,
# and the two together.
LADDER = {
    "tilt 0.6-0.9 (S0^train)": {"x_offset": [0.0, 0.0], "tilt": [0.6, 0.9]},
    "tilt 0.8-1.1": {"x_offset": [0.0, 0.0], "tilt": [0.8, 1.1]},
    "tilt 1.0-1.3": {"x_offset": [0.0, 0.0], "tilt": [1.0, 1.3]},
    "spin 2.5-3.5": {"x_offset": [0.0, 0.0], "tilt": [0.0, 0.0], "spin": [2.5, 3.5]},
    "tilt 0.6-0.9 + spin 1.5-2.5": {"x_offset": [0.0, 0.0], "tilt": [0.6, 0.9], "spin": [1.5, 2.5]},
}


def final_checkpoints(study: Path, method: str) -> list[Path]:
    """Each seed's last checkpoint of ``method`` from S0^train, from the seed's latest fit."""
    found = []
    for seed_dir in sorted((study / method / "s0_train").glob("seed*")):
        versions = sorted(seed_dir.glob("logs/version_*/checkpoints/last.ckpt"), key=lambda p: int(p.parts[-3].split("_")[1]))
        if versions:
            found.append(versions[-1])
    return found


def success(checkpoint: Path | str, init_args: dict, episodes: int, seed: int) -> float:
    policy, env_id = expert_policy(str(checkpoint))
    if env_id != ENV_ID:
        raise SystemExit(f"error: {checkpoint} acts in {env_id}, not {ENV_ID}")
    shift = build_start_shift(shift_spec(init_args))
    return evaluate_policy(ENV_ID, policy, episodes, seed, start_shift=shift).success_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, required=True, help="the lunarlander_site study's out_dir")
    parser.add_argument("--expert", required=True, help="the study's expert checkpoint")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per family (the study's)")
    parser.add_argument("--eval-seed", type=int, default=1_000_000, help="their first seed (the study's)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "lunarlander_site_shift_ladder.json")
    parser.add_argument("--write", action="store_true", help="write --out and append the table to docs/results.md")
    args = parser.parse_args()
    bc = final_checkpoints(args.study, "bc")
    if not bc:
        parser.error(f"--study {args.study} has no bc/s0_train/seed*/logs/version_*/checkpoints/last.ckpt")
    rows, families = [], {}
    for name, init_args in tqdm(LADDER.items(), desc="start families"):
        expert = success(args.expert, init_args, args.episodes, args.eval_seed)
        per_seed = [success(ckpt, init_args, args.episodes, args.eval_seed) for ckpt in bc]
        families[name] = {"start_shift": {"class_path": OFFSET, "init_args": init_args}, "expert": expert, "bc": per_seed}
        rows.append(f"| {name} | {expert:.2f} | {statistics.mean(per_seed):.2f} | {' '.join(f'{s:.2f}' for s in per_seed)} |")
        print(rows[-1], flush=True)
    table = ["| start family | expert | BC (mean) | BC per seed |", "| --- | --- | --- | --- |", *rows]
    print("\n".join(table))
    if args.write:
        figures = {"episodes": args.episodes, "eval_seed": args.eval_seed, "families": families}
        command = f"python benchmarks/site_shift_ladder.py --study {args.study} --expert {args.expert} --write"
        write_figures(args.out, figures, "LunarLanderSite-v0: where cloning stops landing", command, table)


if __name__ == "__main__":
    main()
