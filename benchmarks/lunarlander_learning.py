"""Learning quality of the default config: SQIL vs the scripted expert on LunarLander-v3.

Trains `conf/lunarlander.yaml` for each seed (as a user would, through the CLI), then reads each
run's `result.json` (final 100-episode greedy evaluation) and `metrics.csv` (periodic
evaluations, env steps, wall-clock). The scripted expert is evaluated on the same 100 start
states (the same evaluation seed). Finished seeds are skipped, so an interrupted benchmark
resumes where it stopped.

    python benchmarks/lunarlander_learning.py --seeds 0 1 2 --write
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import ROOT, eval_curve, finished, fit  # noqa: E402
from results_file import RESULTS, append_section, machine_line  # noqa: E402

from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.demos.experts import make_expert  # noqa: E402

CONFIG = "conf/lunarlander.yaml"


def plot(curves: dict[int, list[dict[str, float]]], expert: dict[str, float], path: Path) -> None:
    """Success rate and return against env steps (left) and wall-clock (right), one line a seed."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    metrics = (("eval/greedy/success_rate", "greedy success rate", "success"), ("eval/greedy/return", "greedy return", "return"))
    for row, (key, ylabel, expert_key) in enumerate(metrics):
        for col, (xkey, xlabel) in enumerate((("env_steps", "env steps"), ("time/elapsed_s", "wall-clock since fit start (s)"))):
            ax = axes[row, col]
            for seed, points in curves.items():
                ax.plot([p[xkey] for p in points], [p[key] for p in points], marker="o", label=f"SQIL seed {seed}")
            ax.axhline(expert[expert_key], color="k", ls="--", label="scripted expert")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel(xlabel)
        axes[0, 0].set_ylim(-0.02, 1.02)
        axes[0, 1].set_ylim(-0.02, 1.02)
    axes[0, 0].legend(loc="lower right")
    fig.suptitle("SQIL on LunarLander-v3 (periodic evaluations: 10 episodes; last point: final 100 episodes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmark")
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    parser.add_argument("extra", nargs="*", help="extra CLI overrides passed to every fit (after --)")
    args = parser.parse_args()

    finals, curves = {}, {}
    for seed in args.seeds:
        print(f"seed {seed}: training (skipped if finished) …", flush=True)
        overrides = ["--seed_everything", str(seed), "--data.seed", str(seed), *args.extra]
        run = fit([CONFIG], args.out, "lunarlander", f"seed_{seed}", overrides)
        finals[seed], curves[seed] = finished(run), eval_curve(run, "greedy")
        g = finals[seed]["greedy"]
        print(f"seed {seed}: success {g['success_rate']:.2f}, return {g['mean_return']:.1f}, command {finals[seed]['wall_clock']:.0f} s", flush=True)

    eval_seed = next(iter(finals.values()))["greedy"]["seed"]
    expert = evaluate_policy("LunarLander-v3", make_expert("lunarlander_scripted"), 100, eval_seed)
    print(f"expert on the same 100 episodes: success {expert.success_rate:.2f}, return {expert.mean_return:.1f}")
    png = RESULTS.parent / "lunarlander_learning.png"
    plot(curves, {"success": expert.success_rate, "return": expert.mean_return}, png)
    if args.write:
        rates = [f["greedy"]["success_rate"] for f in finals.values()]
        mean_rate = sum(rates) / len(rates)
        rows = [
            f"| {seed} | {f['greedy']['success_rate']:.2f} | {f['greedy']['mean_return']:.1f} | {f['env_steps']} | "
            f"{f['global_step']} | {f['train_seconds']:.0f} | {f['wall_clock']:.0f} |"
            for seed, f in finals.items()
        ]
        command = "python benchmarks/lunarlander_learning.py " + " ".join(sys.argv[1:])
        append_section(
            "Learning: SQIL vs the scripted expert on LunarLander-v3 (default config)",
            command,
            [
                machine_line(),
                f"Each seed runs `python -m sqil_lightning fit --config {CONFIG} --seed_everything SEED --data.seed SEED`; "
                f"success is measured over 100 greedy episodes with start seeds {eval_seed}…{eval_seed + 99}, "
                "the same episodes for the expert. `fit s` is training time; `command s` is the whole command "
                "(demo loading, training, periodic and final evaluation).",
                "",
                "| seed | success (100 ep) | return | env steps | gradient steps | fit s | command s |",
                "| --- | --- | --- | --- | --- | --- | --- |",
                *rows,
                f"| **mean** | **{mean_rate:.2f}** | | | | | |",
                f"| scripted expert (same 100 episodes) | {expert.success_rate:.2f} | {expert.mean_return:.1f} | | | | |",
                "",
                f"![success and return vs env steps and wall-clock]({png.name})",
            ],
        )


if __name__ == "__main__":
    main()
