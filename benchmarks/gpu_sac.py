"""SAC iterations/s on HalfCheetah-v5 on one GPU: eager, compiled, and compiled with CUDA graphs.

An iteration is one env step and one gradient update (update-to-data 1, as `conf/halfcheetah.yaml`
runs: rollouts of 4 env steps every 4 updates, stepped between the updates by `data.collector
sync`). Every run is plain SAC on the env's own reward (`data.reward env`: no expert or demos
needed, and the setting of the published single-GPU figures, about 725 it/s) through the CLI, as a
user would start it, with fused Adam, the finite-loss check every 1000 updates instead of every
update (each check is a host sync) and no periodic evaluation or checkpoint. A run's rate is the
median of its `perf/updates_per_s` windows (1000 updates each) after ``--warmup`` updates, so
compiling is not counted; the table also gives each run's whole wall-clock, compiling included.

    python benchmarks/gpu_sac.py --write                                   # on a CUDA machine
    python benchmarks/gpu_sac.py --accelerator cpu --steps 2000 --warmup 1000 --modes eager   # CPU dry run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import ROOT, fit, perf_windows  # noqa: E402
from results_file import append_section, machine_line  # noqa: E402

# Mode name → `fast.compile` value; "graphs" is torch.compile's CUDA-graph mode.
MODES = {"eager": "null", "compiled": "default", "graphs": "reduce-overhead"}
WINDOW = 1000  # updates per perf/updates_per_s window (trainer.log_every_n_steps)


def run_mode(mode: str, collector: str, args: argparse.Namespace) -> dict[str, float]:
    """Train one setting for ``args.steps`` updates; its steady rate and whole wall-clock."""
    run = fit(
        ["conf/halfcheetah.yaml"], args.out, f"{mode}_{collector}", "run",
        [
            "--data.reward", "env", "--trainer.accelerator", args.accelerator,
            "--trainer.max_steps", str(args.steps), "--trainer.log_every_n_steps", str(WINDOW),
            "--evaluation.every_n_steps", "1000000", "--evaluation.final_episodes", "0",
            "--checkpoint.every_n_train_steps", "1000000", "--finite_loss.every_n_steps", str(WINDOW),
            "--wandb.mode", "disabled", "--fast.compile", MODES[mode], "--fast.fused_adam", "true",
            "--data.collector", collector,
        ],
    )
    rates = [w["updates_per_s"] for w in perf_windows(run) if w["step"] >= args.warmup]
    if not rates:
        raise SystemExit(f"{run}: no perf/updates_per_s after {args.warmup} updates; raise --steps above --warmup + {WINDOW}")
    wall_clock = json.loads((run / "wall_clock.json").read_text())["seconds"]
    return {"rate": statistics.median(rates), "windows": len(rates), "wall_clock": wall_clock}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--steps", type=int, default=12000, help="gradient updates per run (a multiple of 4)")
    parser.add_argument("--warmup", type=int, default=4000, help="updates not counted (compiling, first CUDA-graph records)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    # async (env steps in a worker process) shares CPU weights: CPU learners only, so GPU runs collect in sync.
    parser.add_argument("--collectors", nargs="+", default=["sync"], choices=["sync", "async"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmark" / "gpu_sac")
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    args = parser.parse_args()
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run on a GPU machine, or pass --accelerator cpu for a dry run")
    rows = []
    for mode in args.modes:
        for collector in args.collectors:
            setting = f"| {mode} (`fast.compile {MODES[mode]}`) | {collector} |"
            try:
                measured = run_mode(mode, collector, args)
            except subprocess.CalledProcessError:
                # One mode failing (a compiler error, say) must not cost the others their device time.
                log = args.out / f"{mode}_{collector}" / "run.log"  # where `fit` logs its run "run"
                print(f"{mode} {collector} failed; the end of {log}:", *log.read_text().splitlines()[-15:], sep="\n", flush=True)
                rows.append(f"{setting} failed | | |")
                continue
            print(f"{mode:9s} {collector:5s} {measured['rate']:7.0f} it/s  ({measured['wall_clock']:.0f} s in all)", flush=True)
            rows.append(f"{setting} {measured['rate']:.0f} | {measured['windows']} | {measured['wall_clock']:.0f} |")
    device = torch.cuda.get_device_name(0) if args.accelerator == "gpu" else "CPU"
    lines = [
        machine_line() + f" Device: {device}.",
        f"Plain SAC (`data.reward env`), 256x256, batch 256, update-to-data 1; {args.steps} updates a run, "
        f"the first {args.warmup} not counted; median of the {WINDOW}-update windows after them.",
        "",
        "| mode | collector | iterations/s | windows | whole run s |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]
    print("\n".join(lines))
    if args.write:
        append_section(f"SAC iterations/s on HalfCheetah-v5, {device}", "python benchmarks/gpu_sac.py " + " ".join(sys.argv[1:]), lines)


if __name__ == "__main__":
    main()
