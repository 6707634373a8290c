"""FiniteLossGuard: a NaN/inf loss stops the run with one line and a checkpoint of the last good parameters."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sqil_lightning.callbacks import FiniteLossGuard
from sqil_lightning.commands import main
from sqil_lightning.errors import ConfigError, TrainingDivergedError

from fit_process import fit_args


# --- a real fit that diverges -------------------------------------------------------------------------


def test_diverging_fit_exits_1_with_one_line_and_a_finite_checkpoint(tmp_path, monkeypatch, capsys, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    checkpoints = tmp_path / "checkpoints"
    args = fit_args(
        "--model.lr", "1e12",  # one Adam step moves every weight by ~1e12: the next loss overflows
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--checkpoint.dirpath", str(checkpoints),
        "--data.demo_path", str(lunarlander_demo_file),
    )  # fmt: skip
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    (line,) = error_lines
    match = re.search(r"at step (\d+) \(([^)]*)\)", line)
    assert match, line
    step = int(match.group(1))
    assert match.group(2).startswith("q_demo = "), line  # the statistics beside the loss: Q blew up
    # The checkpoint the message names exists, under --checkpoint.dirpath, and loads.
    path = checkpoints / f"nonfinite-step{step}.ckpt"
    assert str(path) in line
    assert path.is_file()
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == step
    # The guard runs before backward and the optimizer step: the saved weights are still finite.
    state = checkpoint["state_dict"]
    assert any(key.startswith("q_network.") for key in state)
    not_finite = [key for key, value in state.items() if not torch.isfinite(value).all()]
    assert not not_finite
    # The run stopped there: no later checkpoint (last.ckpt or a periodic one) was written.
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == [path.name]


# --- the callback alone (SAC's loss terms) ----------------------------------------------------------------


def _fake_trainer(tmp_path: Path, global_step: int) -> SimpleNamespace:
    def save_checkpoint(path, weights_only=None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"x")

    return SimpleNamespace(
        global_step=global_step, checkpoint_callback=None, default_root_dir=str(tmp_path), save_checkpoint=save_checkpoint
    )


def _sac_module(critic: float) -> SimpleNamespace:
    return SimpleNamespace(
        loss_terms={"critic": torch.tensor(critic), "actor": torch.tensor(1.0), "alpha": torch.tensor(0.0)}
    )


def test_nan_critic_loss_raises_naming_the_step_and_only_the_bad_term(tmp_path):
    guard = FiniteLossGuard()
    trainer = _fake_trainer(tmp_path, global_step=5)
    with pytest.raises(TrainingDivergedError) as raised:
        guard.on_before_backward(trainer, _sac_module(float("nan")), torch.tensor(float("nan")))
    message = str(raised.value)
    assert "step 5" in message
    assert "critic = nan" in message
    assert "actor =" not in message and "alpha =" not in message
    # Without a checkpoint callback it saves under default_root_dir/checkpoints, and says so.
    saved = tmp_path / "checkpoints" / "nonfinite-step5.ckpt"
    assert saved.is_file()
    assert str(saved) in message


def test_inf_loss_is_caught_too(tmp_path):
    with pytest.raises(TrainingDivergedError, match="critic = inf"):
        FiniteLossGuard().on_before_backward(
            _fake_trainer(tmp_path, 2), _sac_module(float("inf")), torch.tensor(float("inf"))
        )


def test_finite_loss_does_nothing(tmp_path):
    FiniteLossGuard().on_before_backward(_fake_trainer(tmp_path, 5), _sac_module(0.5), torch.tensor(1.5))
    assert not list(tmp_path.iterdir())


def test_every_n_steps_skips_the_steps_between_checks(tmp_path):
    guard = FiniteLossGuard(every_n_steps=3)
    nan = torch.tensor(float("nan"))
    for step in (1, 2, 4, 5):
        guard.on_before_backward(_fake_trainer(tmp_path, step), _sac_module(float("nan")), nan)
    assert not list(tmp_path.iterdir())
    with pytest.raises(TrainingDivergedError, match="step 3"):
        guard.on_before_backward(_fake_trainer(tmp_path, 3), _sac_module(float("nan")), nan)


@pytest.mark.parametrize("every_n_steps", [0, -1])
def test_non_positive_check_interval_is_a_config_error(every_n_steps):
    with pytest.raises(ConfigError, match="finite_loss.every_n_steps"):
        FiniteLossGuard(every_n_steps=every_n_steps)
