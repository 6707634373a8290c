"""Choose S0^train for LunarLanderSite-v0: starts the demos never reach, from which the expert still lands.

The rule (issue 21, item 3), applied to candidate start families listed mildest first:

1. **The demos do not reach them.** A start is reached when some demo state lies within ``--reach``
   (0.05) of it in each of the observation's x (from the site), y, angle and angular velocity, the
   values a start shift moves (the coverage plot's three panels). A family qualifies when none of
   its starts on the evaluation seeds is reached.
2. **The expert still lands.** The expert lands >= 0.8 of the same starts.

S0^train is the first family that passes both. Every family's figures are printed (with
``--write``, also appended to docs/results.md), and the coverage plot of the demos against the
chosen family and S0^demo goes to ``--plot``:

    python benchmarks/site_start_states.py --demos demos/LunarLanderSite-v0_..._100ep_seed0.npz \
        --expert experts/LunarLanderSite-v0/last.ckpt --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from results_file import append_section

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqil_lightning.demos.experts import expert_policy  # noqa: E402
from sqil_lightning.demos.store import DemoSet  # noqa: E402
from sqil_lightning.envs.lunar_lander_site import ENV_ID  # noqa: E402
from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.envs.start_states import build_start_shift  # noqa: E402
from sqil_lightning.studies.report import START_SHIFT_KEY, plot_coverage, start_observations  # noqa: E402

OFFSET = "sqil_lightning.envs.start_states.LunarLanderOffset"
# Candidate families, mildest first: tilted upright starts (the LunarLander study's kind of shift),
# then spinning ones, then far to one side of the site.
CANDIDATES = {
    "tilt 0.4-0.7": {"x_offset": [0.0, 0.0], "tilt": [0.4, 0.7]},
    "tilt 0.5-0.8": {"x_offset": [0.0, 0.0], "tilt": [0.5, 0.8]},
    "tilt 0.6-0.9": {"x_offset": [0.0, 0.0], "tilt": [0.6, 0.9]},
    "tilt 0.7-1.0": {"x_offset": [0.0, 0.0], "tilt": [0.7, 1.0]},
    "spin 1.5-2.5": {"x_offset": [0.0, 0.0], "tilt": [0.0, 0.0], "spin": [1.5, 2.5]},
    "lateral 0.4-0.6": {"x_offset": [0.4, 0.6], "tilt": [0.0, 0.0]},
}
# Observation values a start shift moves: x (from the site), y, angle, angular velocity.
REACH_VALUES = [0, 1, 4, 5]
MIN_EXPERT_SUCCESS = 0.8


def shift_spec(init_args: dict | None) -> dict | None:
    return None if init_args is None else {"class_path": OFFSET, "init_args": init_args}


def reached_fraction(starts: np.ndarray, demo_states: np.ndarray, reach: float) -> float:
    """The fraction of ``starts`` with a demo state within ``reach`` in every one of REACH_VALUES."""
    starts, demo_states = starts[:, REACH_VALUES], demo_states[:, REACH_VALUES]
    reached = [bool((np.abs(demo_states - start) <= reach).all(axis=1).any()) for start in starts]
    return float(np.mean(reached))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", type=Path, required=True, help="the demo file the study trains on")
    parser.add_argument("--expert", required=True, help="the expert: a checkpoint (*.ckpt) or a built-in expert's name")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per family (the study's)")
    parser.add_argument("--eval-seed", type=int, default=1_000_000, help="their first seed (the study's)")
    parser.add_argument("--reach", type=float, default=0.05, help="how close a demo state must be to reach a start")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "studies" / "lunarlander_site" / "s0_train_coverage.png")
    parser.add_argument("--write", action="store_true", help="append the table to docs/results.md")
    args = parser.parse_args()
    demo_states = DemoSet.load(args.demos).observations
    policy, env_id = expert_policy(args.expert)
    if env_id != ENV_ID:
        parser.error(f"--expert acts in {env_id}, not {ENV_ID}")
    rows, chosen = [], None
    for name, init_args in tqdm({"s0_demo (the env's own)": None, **CANDIDATES}.items(), desc="start families"):
        starts = start_observations(ENV_ID, shift_spec(init_args), args.episodes, args.eval_seed)
        reached = reached_fraction(starts, demo_states, args.reach)
        shift = build_start_shift(shift_spec(init_args))
        success = evaluate_policy(ENV_ID, policy, args.episodes, args.eval_seed, start_shift=shift).success_rate
        passes = init_args is not None and reached == 0.0 and success >= MIN_EXPERT_SUCCESS
        if passes and chosen is None:
            chosen = name
        rows.append(f"| {name} | {reached:.2f} | {success:.2f} | {'**chosen**' if chosen == name else ('passes' if passes else '')} |")
        print(rows[-1], flush=True)
    table = ["| start family | starts a demo reaches | expert success | |", "| --- | --- | --- | --- |", *rows]
    print("\n".join(table))
    if chosen is None:
        print("no candidate family passes both parts of the rule")
    else:
        print("S0^train:", json.dumps({START_SHIFT_KEY: shift_spec(CANDIDATES[chosen])}))
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        settings = {"s0_demo": {}, "s0_train": {START_SHIFT_KEY: shift_spec(CANDIDATES[chosen])}}
        plot_coverage(settings, args.demos, ENV_ID, args.episodes, args.eval_seed, args.plot)
        print(f"wrote {args.plot}")
    if args.write:
        command = f"python benchmarks/site_start_states.py --demos {args.demos} --expert {args.expert} --write"
        rule = f"Rule: the first family (listed mildest first) none of whose {args.episodes} starts a demo state reaches within {args.reach} "
        rule += f"in x, y, angle and angular velocity, and from which the expert lands >= {MIN_EXPERT_SUCCESS}. Chosen: {chosen}."
        append_section("LunarLanderSite-v0: choosing S0^train", command, [*table, "", rule])


if __name__ == "__main__":
    main()
