"""Car Racing from pixels (paper sec. 5.2, Table 2): SQIL and BC from S0^demo and S0^train.

Trains `conf/carracing.yaml` through the CLI (SQIL with the agent starting from S0^demo, SQIL
starting from S0^train, and BC, which trains on the demos alone); each fit's final evaluation
plays ``--episodes`` greedy episodes from S0^demo and, where the run sets the rotated start, from
S0^train on the same seeds. The scripted expert and a uniformly random policy play the same
episodes. Finished runs are skipped, so an interrupted benchmark resumes where it stopped.

    python benchmarks/carracing.py --seeds 0 --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import ROOT, fit  # noqa: E402
from results_file import append_section, machine_line  # noqa: E402

from sqil_lightning.envs.car_racing import ENV_ID, RotatedStart  # noqa: E402
from sqil_lightning.envs.make import make_env  # noqa: E402
from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.demos.experts import make_expert  # noqa: E402
from sqil_lightning.envs.pixels import PixelPipeline  # noqa: E402
from torchrl.envs.utils import RandomPolicy  # noqa: E402

CONFIG = "conf/carracing.yaml"
PIXELS = PixelPipeline(size=64)
EVAL_SEED = 1_000_000
ROTATED = '{"class_path": "sqil_lightning.envs.car_racing.RotatedStart"}'
# run name -> (overrides, {start set scored: its key in the run's result.json})
RUNS = {
    "sqil_s0_demo": ([], {"s0_demo": "greedy"}),
    "sqil_s0_train": (["--data.start_shift", ROTATED], {"s0_train": "greedy_shifted"}),
    # BC trains on the demos alone; the shift only makes its final evaluation cover S0^train too.
    "bc": (["--model.class_path", "sqil_lightning.BehaviouralCloning", "--data.start_shift", ROTATED],
           {"s0_demo": "greedy", "s0_train": "greedy_shifted"}),
}  # fmt: skip
SHIFTS = {"s0_demo": None, "s0_train": RotatedStart()}
PAPER = {  # Table 2: mean ± s.e. over 5 seeds, 20 episodes each
    "random": ("-21 ± 56", "-68 ± 4"),
    "bc": ("-45 ± 18", "698 ± 10"),
    "sqil": ("375 ± 19", "704 ± 6"),
    "expert": ("480 ± 11", "704 ± 79"),
}


def score(policy, start: str, episodes: int) -> list[float]:
    """Greedy returns of ``policy`` on the benchmark's episodes from ``start``."""
    return evaluate_policy(ENV_ID, policy, episodes, EVAL_SEED, start_shift=SHIFTS[start], pixels=PIXELS).returns


def mean_se(values: list[float]) -> str:
    se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.0f} ± {se:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per policy and start set (paper: 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmark" / "carracing")
    parser.add_argument("--write", action="store_true", help="append the table to docs/results.md")
    parser.add_argument("extra", nargs="*", help="extra CLI overrides passed to every fit (after --)")
    args = parser.parse_args()

    returns: dict[tuple[str, str], list[float]] = {}  # (method, start) -> per-episode returns, all seeds
    jobs = [(seed, name) for seed in args.seeds for name in RUNS]
    for seed, name in tqdm(jobs, desc="runs", unit="run"):
        overrides, scored = RUNS[name]
        common = ["--seed_everything", str(seed), "--data.seed", str(seed), "--evaluation.final_episodes", str(args.episodes)]
        run = fit([CONFIG], args.out, name, f"seed_{seed}", [*common, *overrides, *args.extra])
        result = json.loads((run / "result.json").read_text())
        for start, key in scored.items():
            returns.setdefault((name.split("_s0")[0], start), []).extend(result[key]["per_episode"]["returns"])
    references = {"expert": make_expert("carracing_scripted"), "random": RandomPolicy(make_env(ENV_ID, pixels=PIXELS).action_spec)}
    for method, policy in references.items():
        for start in SHIFTS:
            returns[(method, start)] = score(policy, start, args.episodes)

    lines = [
        machine_line(),
        f"Runs: `python -m sqil_lightning fit --config {CONFIG} --seed_everything S --data.seed S` plus, for SQIL "
        f"from S0^train, `--data.start_shift '{ROTATED}'` and, for BC, `--model.class_path "
        "sqil_lightning.BehaviouralCloning` with the same start shift, which only adds S0^train to its final "
        "evaluation (BC trains on the demos alone) (seeds "
        f"{args.seeds}, {' '.join(args.extra) or 'no other overrides'}). Each run ends with "
        f"{args.episodes} greedy episodes (start seeds {EVAL_SEED}…{EVAL_SEED + args.episodes - 1}, the same for "
        "every policy); mean ± s.e. over all episodes of all seeds (the paper: over 5 seeds).",
        "",
        "| policy | S0^train | S0^demo | paper S0^train | paper S0^demo |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method in ("random", "bc", "sqil", "expert"):
        ours = [mean_se(returns[(method, start)]) for start in ("s0_train", "s0_demo")]
        lines.append(f"| {method} | {ours[0]} | {ours[1]} | {PAPER[method][0]} | {PAPER[method][1]} |")
    print("\n".join(lines))
    if args.write:
        append_section("Car Racing from pixels (paper Table 2)", "python benchmarks/carracing.py " + " ".join(sys.argv[1:]), lines)


if __name__ == "__main__":
    main()
