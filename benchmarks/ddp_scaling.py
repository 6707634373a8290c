"""DDP scaling on CPU: updates/s and env steps/s of whole `fit` runs with 1 and 2 processes.

Each process trains on its own batch (per-rank replay, gradients averaged by DDP), so with 2
processes one update consumes twice the transitions. The runs are the real command line
(conf/lunarlander.yaml for soft-Q, conf/pendulum.yaml + its expert overlay for SAC, which needs no
demos), evaluations off but the final one; the figures are the `Throughput` callback's
`perf/updates_per_s` and `perf/env_steps_per_s` (every rank's env steps) averaged over the logged
windows after the first.

    python benchmarks/ddp_scaling.py --steps 6000 --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import fit, perf_windows  # noqa: E402
from results_file import append_section, machine_line  # noqa: E402

CONFIGS = {
    "soft_q": ["conf/lunarlander.yaml"],
    "sac": ["conf/pendulum.yaml", "conf/experts/pendulum.yaml"],
}


def perf(run: Path) -> tuple[float, float]:
    """Mean updates/s and env steps/s over the logged windows after the first (start-up)."""
    windows = perf_windows(run)
    windows = windows[1:] or windows
    updates = sum(w["updates_per_s"] for w in windows) / len(windows)
    env_steps = sum(w["env_steps_per_s"] for w in windows) / len(windows)
    return updates, env_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000, help="updates per run (a multiple of 4)")
    parser.add_argument("--modules", nargs="+", default=["soft_q", "sac"], choices=list(CONFIGS))
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for module in args.modules:
            figures = {}
            for devices in (1, 2):
                extra = [
                    "--trainer.max_steps", str(args.steps),
                    "--trainer.log_every_n_steps", "500",
                    "--trainer.devices", str(devices),
                    "--trainer.strategy", "ddp" if devices > 1 else "auto",
                    "--evaluation.every_n_steps", str(10 * args.steps),
                    "--evaluation.final_episodes", "1",
                    "--evaluation.video_every_n_evaluations", "0",
                    "--wandb.mode", "disabled",
                    "--checkpoint.every_n_train_steps", str(args.steps),
                    "--checkpoint.dirpath", str(Path(out) / "checkpoints" / f"{module}_{devices}"),
                ]  # fmt: skip
                figures[devices] = perf(fit(CONFIGS[module], Path(out), f"{module}_ddp{devices}", "run", extra))
                print(module, devices, "processes:", figures[devices], flush=True)
            (u1, e1), (u2, e2) = figures[1], figures[2]
            rows.append(f"| {module} | {u1:.0f} | {e1:.0f} | {u2:.0f} | {e2:.0f} | {e2 / e1:.2f} |")
    print("\n".join(rows))
    if args.write:
        append_section(
            "DDP scaling on CPU: 1 and 2 processes",
            "python benchmarks/ddp_scaling.py " + " ".join(sys.argv[1:]),
            [
                machine_line(),
                f"{args.steps} updates per run, batch 256 per process, update-to-data 1 per process, 1 torch thread a process.",
                "",
                "| module | 1 process: updates/s | env steps/s | 2 processes: updates/s (each) | env steps/s (both) | env-step speed-up |",
                "| --- | --- | --- | --- | --- | --- |",
                *rows,
            ],
        )


if __name__ == "__main__":
    main()
