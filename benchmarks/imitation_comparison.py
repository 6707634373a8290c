"""Wall-clock and env steps to the scripted expert's success rate on LunarLander: sqil_lightning
against the `imitation` package's SQIL, same machine, same demos, same evaluation.

- The peer is installed into its own virtual environment
  (``runs/benchmark/imitation_comparison/venv``: torch 2.13.0, then imitation 1.0.1 with box2d)
  and trained by `peers/imitation_sqil.py` (DQN with rl-zoo's LunarLander settings and this
  project's 128x128 Q-network) on this project's demo file (100 scripted episodes, or with
  ``--success-only-demos`` the expert's first 100 successful ones, for both learners); it saves
  its Q-network every ``--every`` env steps with its training seconds.
- sqil_lightning trains `conf/lunarlander.yaml` with the fast paths on (`fast.compile`
  ``--compile``: default, else eager; `fast.fused_adam true`; `data.collector` ``--collector``:
  async by default, the env stepped in a worker process on the second core; `data.updates_per_step
  4` is the config's) and evaluates every ``--every`` env steps in the run (`time/train_s`:
  training seconds, evaluations left out).
- Every evaluation is this project's `evaluate_policy`: 100 greedy episodes of LunarLander-v3
  from the start seeds 1000000…1000099, success = at rest between the flags. The threshold is the
  scripted expert's success rate on those episodes.

Finished runs and scored snapshots are kept under ``--out`` (by default a folder named after
``--every``, ``--peer-steps``, ``--collector``, ``--compile`` and the demos), so a stopped
benchmark resumes.

    python benchmarks/imitation_comparison.py --seeds 0 1 2 --every 5000 --peer-steps 80000 --write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import ROOT, eval_curve, finished, fit  # noqa: E402
from results_file import RESULTS, append_section, machine_line  # noqa: E402

from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.demos.experts import generate_expert_demos, make_expert  # noqa: E402
from sqil_lightning.learners.networks import build_network  # noqa: E402
from sqil_lightning.learners.policies import boltzmann_policy  # noqa: E402

ENV_ID, EVAL_SEED, EPISODES = "LunarLander-v3", 1_000_000, 100
PEER_PACKAGES = ["imitation==1.0.1", "box2d", "pygame"]  # box2d: the prebuilt wheel of gymnasium[box2d]'s Box2D
WORKER = Path(__file__).resolve().parent / "peers" / "imitation_sqil.py"
PEER_VENV = ROOT / "runs" / "benchmark" / "imitation_comparison" / "venv"  # shared by every --out


def demo_file(success_only: bool) -> Path:
    """The 100 scripted demos both learners get: all of them, or the expert's successful episodes."""
    outcome = "_success" if success_only else ""
    return ROOT / "demos" / f"LunarLander-v3_lunarlander_scripted_100ep{outcome}_seed0.npz"


def peer_python(venv: Path) -> Path:
    """The peer's virtual environment, created on first use (~2 min, from PyPI)."""
    python = venv / "bin" / "python"
    if not (venv / "installed").exists():
        print(f"installing imitation into {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU build first, as for this project
        subprocess.run([*pip, *PEER_PACKAGES], check=True)
        (venv / "installed").touch()
    return python


def run_peer(python: Path, out: Path, demos: Path, seed: int, steps: int, every: int) -> Path:
    run = out / "imitation" / f"seed_{seed}"
    if not (run / "done.json").exists():
        run.mkdir(parents=True, exist_ok=True)
        command = [str(python), str(WORKER), "--demos", str(demos), "--seed", str(seed), "--steps", str(steps)]
        command += ["--snapshot-every", str(every), "--out", str(run)]
        with (run / "train.log").open("w") as log:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run


def success_of_snapshot(path: Path) -> float:
    """The peer's Q-network, acting greedily, scored by this project's evaluation."""
    q_network = build_network((8,), 4, [128, 128], None)
    q_network.load_state_dict(torch.load(path, map_location="cpu"))
    policy = boltzmann_policy(q_network, temperature=1.0, greedy=True)  # greedy: argmax Q, any temperature
    return evaluate_policy(ENV_ID, policy, EPISODES, EVAL_SEED).success_rate


def peer_curve(run: Path, threshold: float) -> list[dict[str, float]]:
    """Scored snapshots in order, up to the first that reaches ``threshold`` (scores are cached)."""
    scores_path = run / "scores.json"
    scores = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    curve = []
    for line in (run / "snapshots.jsonl").read_text().splitlines():
        record = json.loads(line)
        key = str(record["env_steps"])
        if key not in scores:
            scores[key] = success_of_snapshot(run / f"step_{record['env_steps']}.pt")
            scores_path.write_text(json.dumps(scores))
        curve.append({"env_steps": record["env_steps"], "train_s": record["train_seconds"], "success": scores[key]})
        if scores[key] >= threshold:
            break
    return curve


def ours_curve(run: Path) -> list[dict[str, float]]:
    return [
        {"env_steps": p["env_steps"], "train_s": p["time/train_s"], "success": p["eval/greedy/success_rate"]}
        for p in eval_curve(run, "greedy")
        if "time/train_s" in p
    ]


def first_reaching(curve: list[dict[str, float]], threshold: float) -> dict[str, float] | None:
    return next((point for point in curve if point["success"] >= threshold), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--peer-steps", type=int, default=80_000, help="the peer's env-step budget per seed")
    parser.add_argument("--every", type=int, default=5_000, help="env steps between evaluations / snapshots")
    parser.add_argument("--collector", choices=["sync", "async"], default="async", help="sqil_lightning's data.collector")
    # Compiled by default: in the whole loop it ran most 5k env steps in 7-8 s against 9-10 s eager,
    # repaying its 3-9 s of compilation within 10-25k env steps (docs/results.md, 2026-12-03).
    parser.add_argument("--compile", choices=["none", "default"], default="default", help="sqil_lightning's fast.compile")
    parser.add_argument("--success-only-demos", action="store_true", help="both learners get the expert's successful episodes only")
    parser.add_argument("--out", type=Path, help="runs kept here (default: runs/benchmark/imitation_comparison/<settings>)")
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    args = parser.parse_args()
    # Finished runs are reused, so a folder must only ever hold runs made with one set of settings.
    settings = f"every{args.every}_peer{args.peer_steps}_{args.collector}_compile-{args.compile}" + ("_success" if args.success_only_demos else "")
    args.out = args.out or ROOT / "runs" / "benchmark" / "imitation_comparison" / settings
    torch.set_num_threads(1)
    demos = demo_file(args.success_only_demos)
    if not demos.exists():
        generate_expert_demos("lunarlander_scripted", 100, 0, demos, success_only=args.success_only_demos)
    threshold = evaluate_policy(ENV_ID, make_expert("lunarlander_scripted"), EPISODES, EVAL_SEED).success_rate
    print(f"threshold (scripted expert's success): {threshold}", flush=True)
    python = peer_python(PEER_VENV)

    ours, peer, finals = {}, {}, {}
    for seed in args.seeds:
        extra = [
            "--seed_everything", str(seed), "--data.seed", str(seed), "--data.demo_path", str(demos),
            "--evaluation.every_n_steps", str(args.every), "--evaluation.episodes", str(EPISODES),
            "--evaluation.video_every_n_evaluations", "0", "--wandb.mode", "disabled",
            "--fast.compile", "null" if args.compile == "none" else args.compile, "--fast.fused_adam", "true", "--data.collector", args.collector,
        ]  # fmt: skip
        run = fit(["conf/lunarlander.yaml"], args.out, "sqil_lightning", f"seed_{seed}", extra)
        ours[seed], finals[seed] = ours_curve(run), finished(run)["greedy"]["success_rate"]
        peer[seed] = peer_curve(run_peer(python, args.out, demos, seed, args.peer_steps, args.every), threshold)
        print(f"seed {seed}: ours {first_reaching(ours[seed], threshold)}, imitation {first_reaching(peer[seed], threshold)}", flush=True)
    report(args, threshold, ours, peer, finals)


def time_cell(point: dict[str, float] | None, budget: str) -> str:
    return f"{point['train_s']:.0f} s, {point['env_steps'] / 1000:.0f}k steps" if point else f"not reached in {budget}"


def report(args: argparse.Namespace, threshold: float, ours: dict, peer: dict, finals: dict) -> None:
    rows, our_times, peer_times = [], [], []
    for seed in args.seeds:
        mine, theirs = first_reaching(ours[seed], threshold), first_reaching(peer[seed], threshold)
        # A seed that never reaches the threshold counts as its whole budget (a lower bound).
        our_times.append(mine["train_s"] if mine else ours[seed][-1]["train_s"])
        peer_times.append(theirs["train_s"] if theirs else peer[seed][-1]["train_s"])
        peer_budget = f"{args.peer_steps // 1000}k steps ({peer[seed][-1]['train_s']:.0f} s)"
        best = max(point["success"] for point in peer[seed])
        rows.append(f"| {seed} | {time_cell(mine, '80k steps')} | {finals[seed]:.2f} | {time_cell(theirs, peer_budget)} | {best:.2f} |")
    ours_median, peer_median = statistics.median(our_times), statistics.median(peer_times)
    reached_all = all(first_reaching(peer[s], threshold) for s in args.seeds)
    bound = "" if reached_all else " (the peer's is a lower bound: some seeds never reached it)"
    figure = RESULTS.parent / f"imitation_comparison_{args.out.name}.png"
    plot(args.seeds, ours, peer, threshold, figure)
    demo_text = "the expert's first 100 successful episodes" if args.success_only_demos else "100 scripted episodes, failed ones included"
    lines = [
        machine_line(),
        f"Threshold: the scripted expert's success rate on the 100 evaluation episodes, **{threshold:.2f}**. "
        f"Evaluations every {args.every} env steps (100 greedy episodes, LunarLander-v3, seeds 1000000…1000099, "
        "this project's `evaluate_policy` for both). Times are training wall-clock without the evaluations. "
        f"Both learn from `{demo_file(args.success_only_demos).relative_to(ROOT)}` ({demo_text}). "
        "One torch thread each; imitation steps its env in its training process (SB3's DQN collects "
        f"synchronously), sqil_lightning with `fast.compile {args.compile}`, `data.collector {args.collector}`"
        + (" (its env in a worker process on the second core)." if args.collector == "async" else "."),
        "",
        "| seed | sqil_lightning: reached at | its final success | imitation SQIL: reached at | its best success scored |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Median training time to the threshold: sqil_lightning **{ours_median:.0f} s**, imitation **{peer_median:.0f} s**{bound}; "
        f"ratio **{ours_median / peer_median:.2f}**.",
        "",
        f"![success vs training seconds]({figure.name})",
    ]
    print("\n".join(lines))
    if args.write:
        append_section(
            "Time to the expert's success on LunarLander: sqil_lightning vs imitation's SQIL",
            "python benchmarks/imitation_comparison.py " + " ".join(sys.argv[1:]),
            lines,
        )


def plot(seeds: list[int], ours: dict, peer: dict, threshold: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for seed in seeds:
        ax.plot([p["train_s"] for p in ours[seed]], [p["success"] for p in ours[seed]], "C0-o", ms=3, label="sqil_lightning" if seed == seeds[0] else None)
        ax.plot([p["train_s"] for p in peer[seed]], [p["success"] for p in peer[seed]], "C1-s", ms=3, label="imitation SQIL" if seed == seeds[0] else None)
    ax.axhline(threshold, color="k", ls="--", lw=1, label="scripted expert")
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel("success rate (100 episodes)")
    ax.set_title("LunarLander-v3: success vs training time, one curve per seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
