"""A study's report: the table with the random and expert rows, learning curves and the demo-coverage plot."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchrl.envs.utils import RandomPolicy  # noqa: E402

from sqil_lightning.demos.experts import expert_policy, is_checkpoint  # noqa: E402
from sqil_lightning.demos.store import DemoSet  # noqa: E402
from sqil_lightning.envs.make import make_env, make_gym_env  # noqa: E402
from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.envs.start_states import build_start_shift  # noqa: E402
from sqil_lightning.studies.spec import StudySpec  # noqa: E402
from sqil_lightning.studies.study import mean_and_standard_error, study_table  # noqa: E402

START_SHIFT_KEY = "data.start_shift"


def reference_identity(spec: StudySpec, expert: str) -> dict:
    """What the reference rows depend on: the expert (a checkpoint by its content, so a retrained
    file at the same path counts as another expert), the evaluation episodes and the start settings."""
    made_by = expert
    if is_checkpoint(expert) and Path(expert).is_file():
        made_by = f"{expert} (sha256 {hashlib.sha256(Path(expert).read_bytes()).hexdigest()})"
    starts = {name: overrides.get(START_SHIFT_KEY) for name, overrides in spec.start_settings.items()}
    return {"expert": made_by, "eval_episodes": spec.eval_episodes, "eval_seed": spec.eval_seed, "start_settings": starts}


def reference_scores(spec: StudySpec, expert: str) -> dict[str, dict[str, tuple[float, float]]]:
    """Success rate (± s.e. over episodes) of uniformly random actions and of the expert (built-in,
    or a checkpoint) from each start setting, on the runs' evaluation episodes (the paper's Random and Expert rows);
    cached in ``<out_dir>/references.json`` with what made them, and made again when any of that changed."""
    cache = spec.out_dir / "references.json"
    identity = json.loads(json.dumps(reference_identity(spec, expert)))  # as it reads back from the file
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("made_by") == identity:
            return {row: {k: tuple(v) for k, v in scores.items()} for row, scores in cached["scores"].items()}
    policy, env_id = expert_policy(expert)
    torch.manual_seed(0)  # the random policy draws from torch's RNG
    policies = {"random": RandomPolicy(make_env(env_id).action_spec), "expert": policy}
    scores: dict[str, dict[str, tuple[float, float]]] = {}
    for row, policy in policies.items():
        scores[row] = {}
        for name, overrides in spec.start_settings.items():
            shift = build_start_shift(overrides.get(START_SHIFT_KEY))
            rate = evaluate_policy(env_id, policy, spec.eval_episodes, spec.eval_seed, start_shift=shift).success_rate
            scores[row][name] = (rate, math.sqrt(rate * (1 - rate) / spec.eval_episodes))
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"made_by": identity, "scores": scores}, indent=1))
    return scores


def plot_curves(spec: StudySpec, out: Path) -> Path:
    """One panel per start setting: mean ± s.e. over seeds of each method's periodic evaluations."""
    runs = spec.runs()
    fig, axes = plt.subplots(1, len(spec.start_settings), figsize=(5.5 * len(spec.start_settings), 4), squeeze=False)
    for ax, start in zip(axes.flat, spec.start_settings):
        for method in spec.methods:
            curves = [r.curve() for r in runs if r.method is method and r.start == start]
            curves = [c for c in curves if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)  # seeds still running have fewer points
            steps = np.array([p[0] for p in curves[0][:length]])
            stats = [mean_and_standard_error([c[i][1] for c in curves]) for i in range(length)]
            mean, error = np.array(stats).T
            ax.plot(steps, mean, marker="o", markersize=3, label=f"{method.name} ({len(curves)} seeds)")
            ax.fill_between(steps, mean - error, mean + error, alpha=0.2)
        ax.set_title(f"start states: {start}")
        ax.set_xlabel("env steps (agent's own interaction)")
        ax.set_ylabel("success rate (periodic evaluation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# The panels of the coverage plot: (x index, y index, x label, y label) of the observation.
COVERAGE_PANELS = (
    (0, 1, "x (normalised; flags at ±0.2)", "y (normalised)"),
    (4, 1, "angle (rad)", "y (normalised)"),
    (5, 1, "angular velocity (observation: 0.4 x rad/s)", "y (normalised)"),
)


def start_observations(env_id: str, start_shift: dict | None, episodes: int, eval_seed: int) -> np.ndarray:
    """The first observation of each evaluation episode (seeds ``eval_seed`` …) under a
    ``data.start_shift`` spec (None: the env's own starts)."""
    env = make_gym_env(env_id, start_shift=build_start_shift(start_shift))
    observations = np.stack([env.reset(seed=eval_seed + i)[0] for i in range(episodes)])
    env.close()
    return observations


def plot_coverage(start_settings: dict[str, dict], demo_path: Path, env_id: str, episodes: int, eval_seed: int, out: Path) -> Path:
    """Demo states against the start states of each start setting (name -> its overrides) on the
    evaluation seeds, in position (x, y), tilt (angle, y) and turn rate (angular velocity, y): a
    shift may leave the demos' places, their attitudes or their motions."""
    demos = DemoSet.load(demo_path)
    starts = {
        name: start_observations(env_id, overrides.get(START_SHIFT_KEY), episodes, eval_seed) for name, overrides in start_settings.items()
    }
    fig, axes = plt.subplots(1, len(COVERAGE_PANELS), figsize=(5 * len(COVERAGE_PANELS), 4.5))
    for ax, (i, j, xlabel, ylabel) in zip(axes, COVERAGE_PANELS):
        ax.scatter(demos.observations[:, i], demos.observations[:, j], s=1, alpha=0.15, color="grey", label="demo states")
        for name, points in starts.items():
            ax.scatter(points[:, i], points[:, j], s=12, label=f"starts: {name}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, markerscale=2)
    fig.suptitle(f"{env_id}: demo state coverage vs start states")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_report(spec: StudySpec) -> Path:
    """``<out_dir>/results.md`` (tables of final and best evaluations, with random and expert rows),
    ``curves.png`` and, with demos, ``coverage.png``."""
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    expert, demo_path, episodes, eval_seed = spec.expert, spec.demo_path, spec.eval_episodes, spec.eval_seed
    references = ""
    if expert is not None:
        for row, scores in reference_scores(spec, expert).items():
            cells = [f"{m:.2f} ± {e:.2f}" for m, e in scores.values()]
            references += "\n" + spec.table_row(row, cells, spec.reference_paper.get(row, {}))
    parts = [
        f"# Study {spec.path}",
        "",
        f"Success rate of each run's final evaluation ({episodes} fixed episodes), mean ± s.e. over seeds:",
        "",
        study_table(spec) + references,
        "",
        "Best periodic evaluation during training (`evaluation.episodes` each; the paper reports the best "
        "100 consecutive training episodes):",
        "",
        study_table(spec, best=True) + references,
        "",
        "![learning curves](curves.png)",
    ]
    plot_curves(spec, spec.out_dir / "curves.png")
    if demo_path is not None and demo_path.exists() and expert is not None:
        plot_coverage(spec.start_settings, demo_path, expert_policy(expert)[1], episodes, eval_seed, spec.out_dir / "coverage.png")
        parts.append("![demo coverage](coverage.png)")
    report = spec.out_dir / "results.md"
    report.write_text("\n".join(parts) + "\n")
    return report
