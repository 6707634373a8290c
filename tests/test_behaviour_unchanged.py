"""Moving code between rooms changes no behaviour: two short fits end with the weights they ended
with before the package was reorganised (issue 22), and checkpoints of the old layout still resume
and still record demos.

The hashes were recorded at commit e4b6eab, the last commit of the flat package, by this file's
own ``weights_hash`` on a 1-thread CPU torch 2.13.0 (``python tests/test_behaviour_unchanged.py``
prints them). A change that alters any update, any sampled batch or any env step changes them.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import sys
from pathlib import Path

import torch

from sqil_lightning.cli import lightning_main
from sqil_lightning.commands import main
from fit_process import REPO, fast_fit_args

LUNARLANDER_300_STEPS = "87fd8cb0"
PENDULUM_200_STEPS = "b7550312"
# A 300-step LunarLander fit written by the flat package (commit e4b6eab): its last.ckpt and the
# replay snapshot beside it, as `tests/data/old_layout/` (made by ``python tests/test_behaviour_unchanged.py --old-layout``).
OLD_LAYOUT = REPO / "tests" / "data" / "old_layout"


def weights_hash(model: torch.nn.Module) -> str:
    """The first 8 hex digits of the SHA-256 of every weight, in the model's own order."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]


def lunarlander_fit(root: Path):
    return lightning_main(fast_fit_args(root, "--trainer.enable_progress_bar", "false"), run=True)


def pendulum_fit(root: Path, expert_checkpoint: Path):
    """200 SAC SQIL updates on Pendulum-v1 from 2 episodes of a tiny expert's checkpoint."""
    args = [
        "fit", "--config", str(REPO / "conf" / "pendulum.yaml"),
        "--trainer.max_steps", "200",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(root / "logs"),
        "--checkpoint.dirpath", str(root / "checkpoints"),
        "--data.demo_expert", str(expert_checkpoint),
        "--data.demo_path", str(root / "pendulum_demos.npz"),
        "--data.demo_episodes", "2",
        "--data.initial_env_steps", "64",
        "--data.batch_size", "32",
        "--evaluation.final_episodes", "1",
        "--evaluation.every_n_steps", "1000",
        "--model.hidden_sizes", "[16,16]",
    ]  # fmt: skip
    return lightning_main(args, run=True)


def test_lunarlander_fit_weights_are_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert weights_hash(lunarlander_fit(tmp_path).model) == LUNARLANDER_300_STEPS


def test_pendulum_fit_weights_are_unchanged(pendulum_expert, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert weights_hash(pendulum_fit(tmp_path, pendulum_expert["checkpoint"]).model) == PENDULUM_200_STEPS


def test_an_old_layout_checkpoint_resumes(tmp_path, monkeypatch):
    """The old run goes on from step 300 to 400 with its replay snapshot (no fresh start)."""
    run = tmp_path / "old"
    shutil.copytree(OLD_LAYOUT, run)
    monkeypatch.chdir(tmp_path)
    args = fast_fit_args(tmp_path, "--trainer.max_steps", "400", "--trainer.enable_progress_bar", "false")
    cli = lightning_main([*args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], run=True)
    assert cli.trainer.global_step == 400
    metrics = Path(cli.trainer.logger.log_dir) / "metrics.csv"
    with metrics.open() as rows:
        logged_steps = [int(row["step"]) for row in csv.DictReader(rows) if row["step"]]
    assert logged_steps and min(logged_steps) >= 300, logged_steps  # went on from step 300


def test_an_old_layout_checkpoint_records_demos(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "recorded.npz"
    main(["demos", "record", "--checkpoint", str(OLD_LAYOUT / "checkpoints" / "last.ckpt"), "--episodes", "1", "--out", str(out)])
    assert out.is_file() and out.stat().st_size > 0


if __name__ == "__main__":
    # Prints the two hashes; with --old-layout also writes tests/data/old_layout/ from the LunarLander fit.
    import tempfile

    from conftest import pendulum_expert_fit

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cli = lunarlander_fit(root / "lunarlander")
        print("LUNARLANDER_300_STEPS", weights_hash(cli.model))
        if "--old-layout" in sys.argv:
            shutil.rmtree(OLD_LAYOUT, ignore_errors=True)
            shutil.copytree(Path(cli.trainer.checkpoint_callback.dirpath), OLD_LAYOUT / "checkpoints")
        expert = pendulum_expert_fit(root / "expert")
        print("PENDULUM_200_STEPS", weights_hash(pendulum_fit(root / "pendulum", expert["checkpoint"]).model))
