"""Every checkpoint of a run, evaluated on the same episodes: which step's policy to keep as an expert.

A run that keeps its periodic checkpoints (``--checkpoint.save_top_k -1``) leaves one file per
``checkpoint.every_n_train_steps``; this plays each one's deterministic policy (argmax Q, or SAC's
mean action) for ``--episodes`` episodes from the seeds ``--seed`` … and prints the table, best
first. Selection episodes should be apart from the episodes the expert is later judged on (the
studies evaluate from seed 1000000, so the default here is 2000000):

    python benchmarks/checkpoint_evaluations.py experts/trial/ --episodes 50 --write
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tqdm.auto import tqdm

from results_file import append_section

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqil_lightning.envs.policy_evaluation import evaluate_policy  # noqa: E402
from sqil_lightning.learners.checkpoint import load_learner  # noqa: E402

STEP = re.compile(r"step=(\d+)")


def checkpoints_by_step(folder: Path) -> dict[int, Path]:
    """The folder's ``…step=N.ckpt`` files by N (``last.ckpt`` is one of them under another name)."""
    found = {int(m.group(1)): path for path in folder.glob("*.ckpt") if (m := STEP.search(path.name))}
    if not found:
        raise SystemExit(f"error: no '*step=N.ckpt' checkpoint in {folder}; keep them with --checkpoint.save_top_k -1")
    return dict(sorted(found.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the run's checkpoint folder")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2_000_000, help="first episode seed (default: apart from the studies' 1000000)")
    parser.add_argument("--write", action="store_true", help="append the table to docs/results.md")
    args = parser.parse_args()
    rows = []
    for step, path in tqdm(checkpoints_by_step(args.folder).items(), desc="checkpoints"):
        learner, env_id = load_learner(path)
        result = evaluate_policy(env_id, learner.policy(deterministic=True), args.episodes, args.seed)
        rows.append((step, result.success_rate, result.mean_return, result.mean_length))
        tqdm.write(f"step {step}: success {result.success_rate}, return {result.mean_return:.1f}, length {result.mean_length:.0f}")
    ranked = sorted(rows, key=lambda row: (row[1] if row[1] is not None else row[2], row[2]), reverse=True)
    table = ["| step | success | return | episode length |", "| --- | --- | --- | --- |"]
    table += [f"| {step} | {success if success is None else round(success, 2)} | {ret:.1f} | {length:.0f} |" for step, success, ret, length in ranked]
    print("\n".join(table))
    if args.write:
        command = f"python benchmarks/checkpoint_evaluations.py {args.folder} --episodes {args.episodes} --seed {args.seed} --write"
        append_section(f"Checkpoints of {args.folder}, best first", command, [*table, "", f"{args.episodes} episodes from seed {args.seed} each."])


if __name__ == "__main__":
    main()
