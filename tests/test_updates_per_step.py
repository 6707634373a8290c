"""Several gradient updates per Lightning step (`data.updates_per_step`): the same training, faster."""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from sqil_lightning.cli import SQILCLI
from sqil_lightning.commands import main
from sqil_lightning.learners.base import OffPolicyLearner
from sqil_lightning.data.replay import ReplayBatches
from fit_process import fit_args
from test_replay import _filled_buffer


def _fit(tmp_path: Path, demo_path: Path, name: str, *extra: str) -> dict:
    root = tmp_path / name
    args = fit_args("--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root))
    args += ["--data.demo_path", str(demo_path), "--trainer.max_steps", "120", "--evaluation.final_episodes", "0", *extra]
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
    return torch.load(root / "fast" / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def test_four_updates_per_step_train_exactly_like_one(tmp_path, monkeypatch, lunarlander_demo_file):
    # Rollouts every 4 updates, chunks of 32 batches: the same batches meet the same weights in
    # the same order, so the weights, the optimiser and the env steps agree bit for bit.
    monkeypatch.chdir(tmp_path)
    one = _fit(tmp_path, lunarlander_demo_file, "one", "--data.updates_per_step", "1")
    four = _fit(tmp_path, lunarlander_demo_file, "four", "--data.updates_per_step", "4")
    assert one["global_step"] == four["global_step"] == 120
    lightning_steps = [c["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] for c in (one, four)]
    assert lightning_steps == [120, 30]
    assert one["state_dict"].keys() == four["state_dict"].keys()
    for key, value in one["state_dict"].items():
        assert torch.equal(value, four["state_dict"][key]), key
    adam_one, adam_four = (c["optimizer_states"][0]["state"][0]["exp_avg_sq"] for c in (one, four))
    assert torch.equal(adam_one, adam_four)
    assert one["SQILDataModule"]["env_steps"] == four["SQILDataModule"]["env_steps"] > 200  # rollouts happened


def test_max_steps_not_a_multiple_of_updates_per_step_is_a_one_line_error(tmp_path, monkeypatch, expect_user_error, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    args = fit_args("--data.demo_path", str(lunarlander_demo_file), "--trainer.max_steps", "122", "--data.updates_per_step", "4")
    line = expect_user_error(args)
    assert "trainer.max_steps = 122 is not a multiple of data.updates_per_step = 4" in line and "124" in line


def test_grouped_batches_are_the_single_stream_cut_into_steps():
    torch.manual_seed(0)
    _, buffer = _filled_buffer()
    single = [batch for [batch] in itertools.islice(iter(ReplayBatches(buffer, 16, chunk=4)), 9)]
    torch.manual_seed(0)
    grouped = ReplayBatches(buffer, 16, chunk=4, updates_per_step=3)
    steps = list(itertools.islice(iter(grouped), 3))
    assert [len(step) for step in steps] == [3, 3, 3]
    for expected, got in zip(single, itertools.chain(*steps), strict=True):
        assert torch.equal(expected["observation"], got["observation"])
    # The newest step was fetched ahead of training: all three of its batches are untrained.
    assert len(grouped.untrained()) == 3 + 3  # plus the rest of the third chunk (12 drawn, 9 handed out)


def test_a_checkpoint_from_automatic_optimisation_resumes_at_its_step(tmp_path, monkeypatch, lunarlander_demo_file):
    # Before manual optimisation, a checkpoint counted its updates in the automatic loop's progress.
    monkeypatch.chdir(tmp_path)
    _fit(tmp_path, lunarlander_demo_file, "first")
    path = tmp_path / "first" / "fast" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    fit_loop = checkpoint["loops"]["fit_loop"]
    manual = fit_loop["epoch_loop.manual_optimization.optim_step_progress"]
    automatic = fit_loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]
    for counter in ("total", "current"):
        automatic[counter].update(manual[counter])
        manual[counter].update(ready=0, completed=0)
    old_style = path.with_name("old_style.ckpt")  # beside its replay snapshot, where a resume looks
    torch.save(checkpoint, old_style)
    resumed = _fit(tmp_path, lunarlander_demo_file, "resumed", "--trainer.max_steps", "160", "--ckpt_path", str(old_style))
    assert resumed["global_step"] == 160
    assert resumed["SQILDataModule"]["env_steps"] == checkpoint["SQILDataModule"]["env_steps"] + 40


class UpdateHookRecorder(Callback):
    """Records, in order, the update hooks Lightning promises callbacks."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls.append("before_backward")

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls.append("after_backward")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        assert isinstance(optimizer, torch.optim.Adam)
        self.calls.append("before_optimizer_step")


def _fit_with_recorder(tmp_path: Path, demo_path: Path, name: str) -> tuple[dict, UpdateHookRecorder]:
    recorder = UpdateHookRecorder()
    original = SQILCLI.instantiate_trainer

    def with_recorder(self, **kwargs) -> Trainer:
        trainer = original(self, **kwargs)
        trainer.callbacks.append(recorder)
        return trainer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SQILCLI, "instantiate_trainer", with_recorder)
        checkpoint = _fit(tmp_path, demo_path, name)
    return checkpoint, recorder


def test_direct_updates_call_each_update_hook_and_train_like_lightnings_dispatch(tmp_path, monkeypatch, lunarlander_demo_file):
    # On one CPU device at 32-bit precision the learner calls the implemented update hooks itself;
    # Lightning's own dispatch (kept for DDP and mixed precision) must train the same weights.
    monkeypatch.chdir(tmp_path)
    direct_updates = []
    original = OffPolicyLearner._direct_update
    monkeypatch.setattr(OffPolicyLearner, "_direct_update", lambda self, *a: direct_updates.append(1) or original(self, *a))
    direct, recorder = _fit_with_recorder(tmp_path, lunarlander_demo_file, "direct")
    assert recorder.calls == ["before_backward", "after_backward", "before_optimizer_step"] * 120
    assert len(direct_updates) == 120
    monkeypatch.setattr(OffPolicyLearner, "_update_hooks", lambda self: None)
    dispatched, recorder = _fit_with_recorder(tmp_path, lunarlander_demo_file, "dispatched")
    assert recorder.calls == ["before_backward", "after_backward", "before_optimizer_step"] * 120
    assert len(direct_updates) == 120  # Lightning's dispatch this time
    assert direct["global_step"] == dispatched["global_step"] == 120
    for key, value in direct["state_dict"].items():
        assert torch.equal(value, dispatched["state_dict"][key]), key
