"""Demo pretraining (`pretrain.steps`): demo rows only, no env step, logged apart, exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from tensordict import TensorDict

from fit_process import fast_fit_args
from sqil_lightning.commands import main
from sqil_lightning.data.replay import ReplayBatches, make_sqil_buffer


def _rows(n: int, demo: bool) -> TensorDict:
    flags = torch.zeros(n, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.randn(n, 2),
            "action": torch.zeros(n, dtype=torch.long),
            "is_demo": torch.full((n,), demo),
            "next": {"observation": torch.randn(n, 2), "reward": torch.ones(n, 1), "terminated": flags, "truncated": flags, "done": flags},
        },
        batch_size=[n],
    )


def test_pretraining_batches_hold_demo_rows_only_and_the_agent_starts_after_them():
    buffer = make_sqil_buffer(_rows(10, demo=True), online_capacity=50, demo_fraction=0.5, batch_size=8)
    started = []

    def start_online() -> None:  # what the data module does: build the collector, fill the partition
        started.append(len(batches_seen))
        buffer.online_buffer.extend(_rows(20, demo=False))

    batches = ReplayBatches(buffer, batch_size=8, chunk=2, start_online=start_online)
    batches.pretrain_left = 3
    batches_seen = []
    stream = iter(batches)
    for _ in range(5):
        (batch,) = next(stream)
        batches_seen.append(batch)
    assert [bool(b["is_demo"].all()) for b in batches_seen] == [True, True, True, False, False]
    assert all(len(b) == 8 for b in batches_seen)  # pretraining batches are whole batches of demos
    assert started == [3]  # the agent's rows arrive once, right before the first balanced batch
    assert int((~batches_seen[3]["is_demo"]).sum()) == 4


def _fit_args(root: Path, *extra: str) -> list[str]:
    return fast_fit_args(root, "--trainer.log_every_n_steps", "20", "--pretrain.steps", "200", *extra)


def _metrics(root: Path, version: int = 0) -> list[dict[str, str]]:
    with (root / "logs" / "fast" / f"version_{version}" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _checkpoint(root: Path, version: int) -> dict:
    return torch.load(root / "logs" / "fast" / f"version_{version}" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_pretraining_steps_no_env_and_logs_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(_fit_args(tmp_path, "--trainer.max_steps", "300"))
    rows = _metrics(tmp_path)
    pretraining = [row for row in rows if row.get("pretrain/loss")]
    training = [row for row in rows if row.get("train/loss")]
    # Logged every 20 updates: steps 19 … 199 pretrain on demos, 219 … 299 train on balanced batches.
    assert [int(row["step"]) for row in pretraining] == list(range(19, 200, 20))
    assert [int(row["step"]) for row in training] == list(range(219, 300, 20))
    assert not any(row.get("pretrain/q_online") for row in pretraining)  # no agent rows to average
    # Lightning fetches a step ahead, so the agent's first env steps come with the last pretraining step.
    env_steps = [(int(row["step"]), float(row["env_steps"])) for row in rows if row.get("env_steps")]
    assert all(value == 0 for step, value in env_steps if step < 196)
    assert _checkpoint(tmp_path, 0)["SQILDataModule"]["env_steps"] == 200 + 4 * (300 - 200) // 4 + 4


def test_a_run_stopped_mid_pretraining_resumes_bit_identically(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(_fit_args(tmp_path / "stopped", "--trainer.max_steps", "100"))
    assert _checkpoint(tmp_path / "stopped", 0)["SQILDataModule"]["env_steps"] == 0
    main(_fit_args(tmp_path / "stopped", "--trainer.max_steps", "300", "--ckpt_path", "last"))
    main(_fit_args(tmp_path / "whole", "--trainer.max_steps", "300"))
    resumed, whole = _checkpoint(tmp_path / "stopped", 1), _checkpoint(tmp_path / "whole", 0)
    assert resumed["global_step"] == whole["global_step"] == 300
    for name, tensor in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    assert resumed["SQILDataModule"]["env_steps"] == whole["SQILDataModule"]["env_steps"]
