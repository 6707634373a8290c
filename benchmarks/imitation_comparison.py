"""Training time to the expert, reached and held: sqil_lightning against the `imitation` package's
SQIL, same machine, same demos, same evaluation.

Two tasks (``--task``):

- ``lunarlander``: LunarLander-v3 from the 100 scripted demos (or with ``--success-only-demos``
  the expert's first 100 successful ones). The bar is the scripted expert's success rate; a run
  holds it while no later evaluation falls below the expert's rate − 0.05. The peer is SQIL on
  SB3's DQN (rl-zoo's LunarLander settings, this project's 128x128 Q-network).
- ``halfcheetah``: HalfCheetah-v5 from the 10 demos `conf/halfcheetah.yaml` records from this
  project's SAC expert (``--expert``, by default ``experts/HalfCheetah-v5/last.ckpt``). The bar is
  0.9 × the expert's return; a run holds it while no later evaluation falls below 0.85 × it. The
  peer is SQIL on SB3's SAC (rl-zoo's HalfCheetah settings, 256x256 networks, as ours).

Each seed trains both learners for the same budget (``--budget``: our ``trainer.max_steps``
updates, after the config's ``data.initial_env_steps``; the peer's env steps, DQN updating once
an env step and SAC after its 10k ``learning_starts``) and evaluates both every ``--every``
steps. The time reported is **reach and hold**: the training seconds at the first evaluation that
reaches the bar and from which every later one, up to the end of the budget, stays above the hold
line; the first crossing of the bar is reported beside it. A run that never gets there has null.

- The peer runs in its own virtual environment (``runs/benchmark/imitation_comparison/venv``:
  torch 2.13.0, then imitation 1.0.1 with box2d and this project's MuJoCo build), trained by
  `peers/imitation_sqil.py`; it saves its acting network every ``--every`` env steps with its
  training seconds, and every snapshot is scored here (`peers/snapshot_policies.py` rebuilds SB3's
  deterministic action and checks it against SB3's own ``predict``).
- sqil_lightning trains the task's config with the fast paths on (`fast.compile` ``--compile``:
  ``default`` for LunarLander, eager for SAC, where compiling gained nothing in
  `benchmarks/throughput.py`; `fast.fused_adam true`; `data.collector` ``--collector``: async, the
  env stepped in a worker process on the second core) and evaluates in the run (`time/train_s`:
  training seconds, evaluations left out).
- Every evaluation is this project's `evaluate_policy` acting deterministically, ``--episodes``
  episodes from the start seeds 1000000…: 100 on LunarLander (success = at rest between the flags),
  10 on HalfCheetah (the return's spread across starts, ~100-500 for trained policies, is small
  against the 5% band between bar and hold line; 100 would make every evaluation 10× longer).

A variant (``--variant NAME --set KEY=VALUE …``) changes `fit` keys of our runs only; its runs
live in their own folder, against the same peer runs. Finished runs and scored snapshots are
kept under ``--out`` (by default a folder named after the task and settings), so a stopped
benchmark resumes and a rerun only reports.

    python benchmarks/imitation_comparison.py --task lunarlander --seeds 0 1 2 --write
    python benchmarks/imitation_comparison.py --task lunarlander --variant paper --set data.n_step=1 pretrain.steps=0 --write
    python benchmarks/imitation_comparison.py --task halfcheetah --seeds 0 1 2 --write

``--write`` merges the task's entry (``<task>[_<variant>]``) into
docs/benchmarks/imitation_comparison.json and appends a section to docs/results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path

import matplotlib
import numpy as np
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tensordict.nn import TensorDictModuleBase  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import ROOT, eval_curve, fit  # noqa: E402
from reach_and_hold import median_time, reach_and_hold, seed_times  # noqa: E402
from peers.snapshot_policies import check_probes, q_network_policy, sac_actor_policy  # noqa: E402
from results_file import RESULTS, append_section, machine_line  # noqa: E402

from sqil_lightning.demos.experts import is_checkpoint, make_expert  # noqa: E402
from sqil_lightning.demos.sources import DemoSource  # noqa: E402
from sqil_lightning.envs.make import env_spaces  # noqa: E402
from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.learners.checkpoint import load_learner  # noqa: E402

EVAL_SEED = 1_000_000
WORKER = Path(__file__).resolve().parent / "peers" / "imitation_sqil.py"
PEER_VENV = ROOT / "runs" / "benchmark" / "imitation_comparison" / "venv"  # shared by every --out
BENCHMARK_JSON = ROOT / "docs" / "benchmarks" / "imitation_comparison.json"
EXPERT_COMMAND = "python -m sqil_lightning fit --config conf/halfcheetah.yaml --config conf/experts/halfcheetah.yaml"


@dataclass(frozen=True)
class Task:
    """One environment of the comparison: configs, the score a curve follows, and the bar."""

    name: str
    env_id: str
    config: str
    label: str  # how our deterministic policy is logged: eval/<label>/<metric>
    metric: str  # success_rate | return
    peer_algo: str  # dqn | sac: what the peer's snapshots hold
    budget: int
    episodes: int
    compile: str
    bar_fraction: float  # bar = bar_fraction × the expert's score
    hold_fraction: float  # hold line = hold_fraction × the expert's score − hold_gap
    hold_gap: float

    def bar_and_hold(self, expert: float) -> tuple[float, float]:
        """The bar and the hold line for the expert's score; a fraction of a negative score (a
        throwaway expert's return) is read as that fraction of |score| below it, never above."""
        below = abs(expert)
        return expert - (1 - self.bar_fraction) * below, expert - (1 - self.hold_fraction) * below - self.hold_gap


TASKS = {
    "lunarlander": Task(
        name="lunarlander", env_id="LunarLander-v3", config="conf/lunarlander.yaml", label="greedy", metric="success_rate",
        peer_algo="dqn", budget=80_000, episodes=100, compile="default", bar_fraction=1.0, hold_fraction=1.0, hold_gap=0.05,
    ),
    "halfcheetah": Task(
        name="halfcheetah", env_id="HalfCheetah-v5", config="conf/halfcheetah.yaml", label="mean_action", metric="return",
        peer_algo="sac", budget=100_000, episodes=10, compile="none", bar_fraction=0.9, hold_fraction=0.85, hold_gap=0.0,
    ),
}  # fmt: skip


def peer_packages() -> list[str]:
    """box2d: the prebuilt wheel of gymnasium[box2d]'s Box2D; MuJoCo pinned to this project's build
    (the physics then match bit for bit); imageio: gymnasium 0.29's MuJoCo envs import it."""
    return ["imitation==1.0.1", "box2d", "pygame", f"mujoco=={version('mujoco')}", "imageio"]


def peer_python(venv: Path) -> Path:
    """The peer's virtual environment, created or completed on first use (minutes, from PyPI)."""
    python, marker = venv / "bin" / "python", venv / "installed"
    packages = peer_packages()
    if marker.exists() and marker.read_text() == " ".join(packages):
        return python
    print(f"installing imitation into {venv}", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU build first, as for this project
    subprocess.run([*pip, *packages], check=True)
    marker.write_text(" ".join(packages))
    return python


def config_data(task: Task) -> dict:
    """The ``data:`` section of the task's config."""
    return yaml.safe_load((ROOT / task.config).read_text())["data"]


def demo_file(task: Task, expert: str, success_only: bool) -> Path:
    """The demo file the task's config would use with ``expert`` as its ``data.demo_expert``
    (`DemoSource.file`), made here on first use as `fit` would make it."""
    data = config_data(task)
    source = DemoSource(
        env_id=task.env_id, spaces=env_spaces(task.env_id), pixels=None, path=None, expert=expert,
        minari=None, episodes=data["demo_episodes"], seed=data["demo_seed"], success_only=success_only,
    )  # fmt: skip
    with contextlib.chdir(ROOT):  # the config's paths are relative to the repository
        source.load()
    return ROOT / source.file


def expert_score(task: Task, expert: str) -> float:
    """The expert's score on the evaluation episodes: a built-in expert's (the scripted lander's
    success rate) or a checkpoint's, acting deterministically (SAC's mean-action return)."""
    if is_checkpoint(expert):
        policy = load_learner(ROOT / expert)[0].policy(deterministic=True)
    else:
        policy = make_expert(expert)
    result = evaluate_policy(task.env_id, policy, task.episodes, EVAL_SEED)
    return result.success_rate if task.metric == "success_rate" else result.mean_return


def fit_overrides(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs of ``--set``, in order."""
    return dict(pair.split("=", 1) for pair in pairs)


def variant_folder(out: Path, variant: str | None, overrides: dict[str, str]) -> str:
    """Our runs' folder name for a variant, its overrides and commit recorded on first use; a later
    call with other overrides is refused (finished runs would otherwise be reused for them)."""
    name = "sqil_lightning" + (f"_{variant}" if variant else "")
    record = out / name / "variant.json"
    if not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
        record.write_text(json.dumps({"overrides": overrides, "commit": commit}))
    recorded = json.loads(record.read_text())
    if recorded["overrides"] != overrides:
        sys.exit(f"{record.parent} holds runs with --set {recorded['overrides']}; name this variant differently")
    return name


def run_ours(task: Task, args: argparse.Namespace, seed: int, demos: Path) -> Path:
    extra = [
        "--seed_everything", str(seed), "--data.seed", str(seed), "--data.demo_path", str(demos),
        "--trainer.max_steps", str(args.budget), "--evaluation.every_n_steps", str(args.every),
        "--evaluation.episodes", str(task.episodes), "--evaluation.final_episodes", str(task.episodes),
        "--evaluation.video_every_n_evaluations", "0", "--wandb.mode", "disabled",
        "--fast.compile", "null" if args.compile == "none" else args.compile, "--fast.fused_adam", "true", "--data.collector", args.collector,
    ]  # fmt: skip
    for key, value in args.overrides.items():
        extra += [f"--{key}", value]
    return fit([task.config], args.out, args.folder, f"seed_{seed}", extra)


def run_peer(python: Path, task: Task, args: argparse.Namespace, seed: int, demos: Path) -> Path:
    run = args.out / "imitation" / f"seed_{seed}"
    if not (run / "done.json").exists():
        run.mkdir(parents=True, exist_ok=True)
        (run / "evaluations.json").unlink(missing_ok=True)  # scores of an interrupted run's snapshots
        command = [str(python), str(WORKER), "--task", task.name, "--demos", str(demos), "--seed", str(seed)]
        command += ["--steps", str(args.budget), "--snapshot-every", str(args.every), "--out", str(run)]
        with (run / "train.log").open("w") as log:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run


def snapshot_policy(task: Task, path: Path) -> TensorDictModuleBase:
    state_dict = torch.load(path, map_location="cpu")
    if task.peer_algo == "dqn":
        return q_network_policy(state_dict)
    spaces = env_spaces(task.env_id)
    return sac_actor_policy(state_dict, spaces.action_low, spaces.action_high)


def score_snapshot(task: Task, run: Path, record: dict) -> float:
    """One snapshot of the peer, checked against SB3's predictions, scored by this project's evaluation."""
    path = run / f"step_{record['env_steps']}.pt"
    policy = snapshot_policy(task, path)
    check_probes(policy, np.load(run / "probe_observations.npy"), record["probe_actions"], str(path))
    result = evaluate_policy(task.env_id, policy, task.episodes, EVAL_SEED)
    return result.success_rate if task.metric == "success_rate" else result.mean_return


def peer_curve(task: Task, run: Path) -> list[dict[str, float]]:
    """Every snapshot in order, scored (scores are cached in the run's evaluations.json)."""
    cache = run / "evaluations.json"
    scores = json.loads(cache.read_text()) if cache.exists() else {}
    curve = []
    for line in (run / "snapshots.jsonl").read_text().splitlines():
        record = json.loads(line)
        key = str(record["env_steps"])
        if key not in scores:
            scores[key] = score_snapshot(task, run, record)
            cache.write_text(json.dumps(scores))
        curve.append({"env_steps": record["env_steps"], "train_s": record["train_seconds"], "score": scores[key]})
    return curve


def ours_curve(task: Task, run: Path) -> list[dict[str, float]]:
    """The run's evaluations, the final one included."""
    metric = f"eval/{task.label}/{task.metric}"
    points = [p for p in eval_curve(run, task.label) if "time/train_s" in p]
    return [{"env_steps": p["env_steps"], "train_s": p["time/train_s"], "score": p[metric]} for p in points]


def progress(task: Task, who: str, seed: int, times: dict) -> None:
    def at(kind: str) -> str:
        seconds = times[f"{kind}_s"]
        return "never" if seconds is None else f"{seconds:.0f} s ({times[f'{kind}_env_steps'] / 1000:.0f}k steps)"

    print(f"{task.name} seed {seed} {who}: reach-and-hold {at('reach_and_hold')}, first crossing {at('first_crossing')}, "
          f"final {times['final']}, best {times['best']}, budget {times['budget_s']:.0f} s", flush=True)  # fmt: skip


def entry(task: Task, args: argparse.Namespace, expert: float, per_seed: dict) -> dict:
    """The task's JSON entry: medians, ratio and every seed's times."""
    bar, hold = task.bar_and_hold(expert)
    ours = median_time([per_seed[s]["ours"]["reach_and_hold_s"] for s in args.seeds])
    peer = median_time([per_seed[s]["peer"]["reach_and_hold_s"] for s in args.seeds])
    variant = json.loads((args.out / args.folder / "variant.json").read_text())
    return {
        "ours_median_s": ours,
        "peer_median_s": peer,
        "ratio": round(ours / peer, 3) if ours is not None and peer is not None else None,
        "ours_first_crossing_median_s": median_time([per_seed[s]["ours"]["first_crossing_s"] for s in args.seeds]),
        "peer_first_crossing_median_s": median_time([per_seed[s]["peer"]["first_crossing_s"] for s in args.seeds]),
        "seeds": args.seeds,
        "per_seed": {str(seed): times for seed, times in per_seed.items()},
        "env_id": task.env_id, "metric": task.metric, "expert": round(expert, 3), "bar": round(bar, 3), "hold": round(hold, 3),
        "budget": args.budget, "every": args.every, "episodes": task.episodes,
        "config": task.config, "overrides": args.overrides, "commit": variant["commit"], "command": command_line(),
    }  # fmt: skip


def command_line() -> str:
    return "python benchmarks/imitation_comparison.py " + " ".join(sys.argv[1:])


def merge_into_json(name: str, payload: dict) -> None:
    """Write the task's entry into the benchmark's JSON, keeping the other tasks' entries."""
    existing = json.loads(BENCHMARK_JSON.read_text()) if BENCHMARK_JSON.exists() else {}
    existing.setdefault("tasks", {})[name] = payload
    BENCHMARK_JSON.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARK_JSON.write_text(json.dumps(existing, indent=1) + "\n")


def parse_args() -> tuple[Task, argparse.Namespace]:
    """The task (with ``--episodes`` applied) and the options, checked, with the task's defaults filled in."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="lunarlander")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    # --peer-steps: the option's former name, still spelled so by speed_suite.py and the README.
    parser.add_argument("--budget", "--peer-steps", type=int, help="steps both learners train (default: the task's, 80000 / 100000)")
    parser.add_argument("--every", type=int, default=5_000, help="steps between evaluations (our updates, the peer's env steps)")
    parser.add_argument("--episodes", type=int, help="episodes per evaluation (default: the task's, 100 / 10)")
    parser.add_argument("--collector", choices=["sync", "async"], default="async", help="sqil_lightning's data.collector")
    # LunarLander compiles by default: in the whole loop it ran most 5k env steps in 7-8 s against
    # 9-10 s eager, repaying its 3-9 s of compilation within 10-25k env steps (docs/results.md, 2026-12-03).
    parser.add_argument("--compile", choices=["none", "default"], help="sqil_lightning's fast.compile (default: the task's)")
    parser.add_argument("--success-only-demos", action="store_true", help="LunarLander: both learners get the expert's successful episodes only")
    parser.add_argument("--expert", help="HalfCheetah: the expert checkpoint whose demos both learners get (default: the config's)")
    parser.add_argument("--variant", help="name of a variant of our runs (they go to their own folder; the peer's are shared)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fit keys every run of the variant sets")
    parser.add_argument("--out", type=Path, help="runs kept here (default: runs/benchmark/imitation_comparison/<task and settings>)")
    parser.add_argument("--write", action="store_true", help="merge the entry into the JSON, append to docs/results.md")
    args = parser.parse_args()
    task = replace(TASKS[args.task], episodes=args.episodes or TASKS[args.task].episodes)
    args.budget, args.compile = args.budget or task.budget, args.compile or task.compile
    args.overrides = fit_overrides(args.set)
    if args.overrides and args.variant is None:
        parser.error("--set needs --variant (the shipped default's runs stay as they are)")
    if "trainer.max_steps" in args.overrides:
        parser.error("the budget is shared with the peer: give --budget, not --set trainer.max_steps")
    if args.success_only_demos and task.metric != "success_rate":
        parser.error("--success-only-demos needs a task with a success signal (lunarlander)")
    args.expert = args.expert or config_data(task)["demo_expert"]
    if is_checkpoint(args.expert) and not (ROOT / args.expert).is_file():
        sys.exit(f"no expert checkpoint at {args.expert}: train it first (~49 min on 2 CPU cores) with `{EXPERT_COMMAND}`")
    return task, args


def settings_folder(task: Task, args: argparse.Namespace, demos: Path) -> Path:
    """The default --out. Finished runs are reused, so a folder must only ever hold runs made with
    one set of settings: every setting that changes a run is in its name."""
    settings = f"{task.name}_every{args.every}_budget{args.budget}_episodes{task.episodes}_{args.collector}_compile-{args.compile}"
    settings += "_success" if args.success_only_demos else ""
    settings += "" if args.expert == config_data(task)["demo_expert"] else f"_{demos.stem}"
    return ROOT / "runs" / "benchmark" / "imitation_comparison" / settings


def main() -> None:
    task, args = parse_args()
    demos = demo_file(task, args.expert, args.success_only_demos)
    args.out = (args.out or settings_folder(task, args, demos)).resolve()
    args.folder = variant_folder(args.out, args.variant, args.overrides)
    torch.set_num_threads(1)
    run_benchmark(task, args, demos)


def run_benchmark(task: Task, args: argparse.Namespace, demos: Path) -> None:
    """Train (or reuse) both learners for every seed, then report."""
    expert = expert_score(task, args.expert)
    bar, hold = task.bar_and_hold(expert)
    print(f"{task.name}: expert {expert:.3f}, bar {bar:.3f}, hold line {hold:.3f}; demos {demos.relative_to(ROOT)}", flush=True)
    python = peer_python(PEER_VENV)
    curves, per_seed = {}, {}
    for seed in args.seeds:
        ours = ours_curve(task, run_ours(task, args, seed, demos))
        per_seed[seed] = {"ours": seed_times(ours, bar, hold)}
        progress(task, "sqil_lightning" + (f" ({args.variant})" if args.variant else ""), seed, per_seed[seed]["ours"])
        peer = peer_curve(task, run_peer(python, task, args, seed, demos))
        per_seed[seed]["peer"] = seed_times(peer, bar, hold)
        progress(task, "imitation", seed, per_seed[seed]["peer"])
        curves[seed] = (ours, peer)
    name = task.name + (f"_{args.variant}" if args.variant else "")
    payload = entry(task, args, expert, per_seed)
    figure = (RESULTS.parent if args.write else args.out) / f"imitation_comparison_{name}.png"
    plot(task, curves, bar, hold, figure)
    lines = report(task, args, payload, demos, figure)
    print("\n".join(lines))
    if args.write:
        merge_into_json(name, payload)
        append_section(f"Time to the expert, reached and held: sqil_lightning vs imitation's SQIL, {name}", command_line(), lines)
    else:
        print(json.dumps({"tasks": {name: payload}}, indent=1))


def time_cell(times: dict, kind: str) -> str:
    seconds = times[f"{kind}_s"]
    return "never" if seconds is None else f"{seconds:.0f} s, {times[f'{kind}_env_steps'] / 1000:.0f}k"


def seconds_text(seconds: float | None) -> str:
    return "null (the median run never got there)" if seconds is None else f"{seconds:.0f} s"


def report(task: Task, args: argparse.Namespace, payload: dict, demos: Path, figure: Path) -> list[str]:
    """The docs/results.md section: settings, one row a seed, medians and the figure."""
    rows = []
    for seed in args.seeds:
        ours, peer = payload["per_seed"][str(seed)]["ours"], payload["per_seed"][str(seed)]["peer"]
        rows.append(
            f"| {seed} | {time_cell(ours, 'reach_and_hold')} | {time_cell(ours, 'first_crossing')} | {ours['final']} ({ours['budget_s']:.0f} s) "
            f"| {time_cell(peer, 'reach_and_hold')} | {time_cell(peer, 'first_crossing')} | {peer['final']} ({peer['budget_s']:.0f} s) |"
        )
    score = "success rate" if task.metric == "success_rate" else "mean return"
    ratio = f"ratio **{payload['ratio']:.2f}**" if payload["ratio"] is not None else "ratio null"
    overrides = f" with `{' '.join(f'--{k} {v}' for k, v in args.overrides.items())}`" if args.overrides else ""
    return [
        machine_line(),
        (f"{task.env_id}, our `{task.config}`{overrides} (commit {payload['commit']}) against imitation 1.0.1's SQIL on SB3's "
        f"{task.peer_algo.upper()}, both from `{demos.relative_to(ROOT)}`, {args.budget} steps each. The expert's {score} on the "
        f"evaluation episodes: **{payload['expert']}**; bar {payload['bar']}, hold line {payload['hold']}. Evaluations every "
        f"{args.every} steps: {task.episodes} deterministic episodes from seeds {EVAL_SEED}…, this project's `evaluate_policy` "
        f"for both. Times are training wall-clock without the evaluations (one torch thread each; imitation steps its env in its "
        f"training process, sqil_lightning with `data.collector {args.collector}`, `fast.compile {args.compile}`). "
        "Reach and hold: the first evaluation at the bar after which none falls below the hold line, up to the end of the budget."),
        "",
        "| seed | sqil_lightning: reach and hold | first crossing | final (budget) | imitation: reach and hold | first crossing | final (budget) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        (f"Median reach-and-hold time: sqil_lightning **{seconds_text(payload['ours_median_s'])}**, "
        f"imitation **{seconds_text(payload['peer_median_s'])}**; {ratio}. Median first crossing, for comparison: "
        f"{seconds_text(payload['ours_first_crossing_median_s'])} against {seconds_text(payload['peer_first_crossing_median_s'])}."),
        "",
        f"![{score} vs training seconds]({figure.name})",
    ]


def plot(task: Task, curves: dict, bar: float, hold: float, path: Path) -> None:
    """Both learners' curves, one line a seed, with the bar, the hold line and each run's
    reach-and-hold point (a star)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (ours, peer) in enumerate(curves.values()):
        for curve, color, marker, label in ((ours, "C0", "o", "sqil_lightning"), (peer, "C1", "s", "imitation SQIL")):
            ax.plot([p["train_s"] for p in curve], [p["score"] for p in curve], color=color, marker=marker, ms=3, label=label if i == 0 else None)
            held = reach_and_hold(curve, bar, hold)
            if held:
                ax.plot(held["train_s"], held["score"], color=color, marker="*", ms=12)
    ax.axhline(bar, color="k", ls="--", lw=1, label="bar")
    ax.axhline(hold, color="grey", ls=":", lw=1, label="hold line")
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel(f"{'success rate' if task.metric == 'success_rate' else 'mean return'} ({task.episodes} episodes)")
    ax.set_title(f"{task.env_id}: one curve per seed and learner")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
