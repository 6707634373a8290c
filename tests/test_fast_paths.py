"""The `fast:` config section: torch.compile and fused Adam change the speed, not the training."""

from __future__ import annotations

import pytest
import torch
from fit_process import fit_args
from test_updates_per_step import _fit


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_compiled_update_and_fused_adam_train_like_eager_up_to_rounding(tmp_path, monkeypatch, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    compiled_modes = []
    real_compile = torch.compile

    def recording_compile(function, **kwargs):
        compiled_modes.append((function.__name__, kwargs.get("mode")))
        return real_compile(function, **kwargs)

    monkeypatch.setattr(torch, "compile", recording_compile)
    eager = _fit(tmp_path, lunarlander_demo_file, "eager")
    assert compiled_modes == []
    fast = _fit(tmp_path, lunarlander_demo_file, "fast", "--fast.compile", "default", "--fast.fused_adam", "true")
    assert compiled_modes == [("losses", "default")]  # compiled once, on the first update
    assert fast["optimizer_states"][0]["param_groups"][0]["fused"] is True
    assert eager["optimizer_states"][0]["param_groups"][0]["fused"] is None
    # The same 120 updates on the same batches: the weights differ only by float rounding.
    for key, value in eager["state_dict"].items():
        torch.testing.assert_close(fast["state_dict"][key], value, rtol=0, atol=1e-5)
    assert fast["SQILDataModule"]["env_steps"] == eager["SQILDataModule"]["env_steps"]


def test_an_unknown_compile_mode_is_a_one_line_error(tmp_path, monkeypatch, expect_user_error, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    line = expect_user_error(fit_args("--data.demo_path", str(lunarlander_demo_file), "--fast.compile", "fastest"))
    assert "fast.compile = 'fastest' is invalid" in line and "reduce-overhead" in line
