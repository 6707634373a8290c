"""The command line: config parsing and links, a short end-to-end `fit`, and one-line user errors."""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import json
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from sqil_lightning import SACSQIL, SoftQSQIL, SQILDataModule
from sqil_lightning.cli import lightning_main
from sqil_lightning.commands import main
from sqil_lightning.demos.store import DemoSet
from sqil_lightning.learners.soft_q import SoftQLearner

from fit_process import BASE_CONFIG, FAST_CONFIG, REPO, fit_args

CONFIGS = sorted((REPO / "conf").glob("*.yaml"))
# Each expert overlay is applied on top of the task config of the same name.
EXPERT_OVERLAYS = sorted((REPO / "conf" / "experts").glob("*.yaml"))


# --- parsing ------------------------------------------------------------------------------------------


def test_there_is_at_least_one_config():
    assert BASE_CONFIG in CONFIGS


def _check_learner_matches_env(cli) -> None:
    """Discrete envs get the soft-Q learner, Box envs SAC, with sizes and bounds linked from the env."""
    assert isinstance(cli.datamodule, SQILDataModule)
    assert tuple(cli.model.hparams.observation_shape) == cli.datamodule.observation_shape
    if cli.datamodule.task.spaces.discrete:
        assert isinstance(cli.model, SoftQSQIL)
        assert cli.model.hparams.action_space == {"n": cli.datamodule.task.spaces.num_actions}
    else:
        assert isinstance(cli.model, SACSQIL)
        assert cli.model.hparams.action_space["low"] == cli.datamodule.task.spaces.action_low.tolist()
        assert cli.model.hparams.action_space["high"] == cli.datamodule.task.spaces.action_high.tolist()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses_and_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = lightning_main(["--config", str(config)], run=False)
    assert cli.datamodule.hparams.reward == "sqil"
    _check_learner_matches_env(cli)


@pytest.mark.parametrize("overlay", EXPERT_OVERLAYS, ids=lambda p: p.name)
def test_every_expert_overlay_trains_from_env_reward(overlay, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = REPO / "conf" / overlay.name
    assert task in CONFIGS, f"expert overlay {overlay.name} has no task config conf/{overlay.name}"
    cli = lightning_main(["--config", str(task), "--config", str(overlay)], run=False)
    assert cli.datamodule.hparams.reward == "env"
    _check_learner_matches_env(cli)
    # The expert's checkpoint lands where the task config records demos from.
    expert_dir = Path(cli.trainer.checkpoint_callback.dirpath).resolve()
    assert expert_dir == (tmp_path / Path(cli.datamodule.hparams.demo_expert).parent).resolve()


@pytest.mark.parametrize("gamma", [0.95, 0.9123])  # two values, so one differs from the config's
def test_the_learners_gamma_is_the_one_that_relabels_the_demos(gamma, tmp_path, monkeypatch, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(BASE_CONFIG), "--model.gamma", str(gamma), "--data.demo_path", str(lunarlander_demo_file)]
    cli = lightning_main(args, run=False)
    assert cli.model.hparams.gamma == gamma
    assert "gamma" not in cli.datamodule.hparams  # γ is the learner's, handed over with `connect`
    cli.datamodule.setup("fit")
    cli.datamodule.connect(cli.model)
    demos = cli.datamodule.experience.batches.demos[:]
    terminal = demos["next", "terminated"].reshape(-1)
    assert terminal.any()  # the scripted expert's episodes end by landing (or crashing)
    reward = demos["next", "reward"].reshape(-1)
    torch.testing.assert_close(reward[terminal], torch.full_like(reward[terminal], 1.0 / (1.0 - gamma)))
    assert (reward[~terminal] == 1.0).all()


def test_lunarlander_config_links_env_sizes_into_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = lightning_main(["--config", str(BASE_CONFIG)], run=False)
    assert tuple(cli.model.hparams.observation_shape) == (8,)
    assert cli.model.hparams.action_space == {"n": 4}
    assert cli.model.q_network(torch.zeros(1, 8)).shape == (1, 4)


@pytest.mark.parametrize("learner", ["SoftQSQILT", "GAILSoftQ"])
def test_the_baselines_take_every_soft_q_knob_from_the_command_line(learner, tmp_path, monkeypatch):
    # The baselines extend SoftQLearner; a knob added there must reach them through the CLI too.
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(BASE_CONFIG), "--model.class_path", f"sqil_lightning.{learner}"]
    cli = lightning_main([*args, "--model.init_args.acting_temperature", "0.7", "--model.init_args.huber_delta", "2.0"], run=False)
    soft_q_knobs = set(inspect.signature(SoftQLearner.__init__).parameters) - {"self"}
    assert soft_q_knobs <= set(cli.model.hparams)
    assert (cli.model.hparams.acting_temperature, cli.model.hparams.huber_delta) == (0.7, 2.0)
    assert cli.model.policy(deterministic=False) is not None


# --- a short fit -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """One short `fit` through the real entry point, shared by the assertions below."""
    tmp_path = tmp_path_factory.mktemp("fit")
    demo_path = tmp_path / "demos" / "ll3.npz"
    args = fit_args(
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--data.demo_path", str(demo_path),
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            main(args)
    log_dir = tmp_path / "logs" / "fast" / "version_0"
    return {"tmp_path": tmp_path, "demo_path": demo_path, "log_dir": log_dir, "stdout": stdout.getvalue()}


def test_fit_generates_the_missing_demo_file_with_the_configured_episodes(fit_run):
    demos = DemoSet.load(fit_run["demo_path"])
    assert demos.num_episodes == 3
    assert demos.metadata["source"] == "lunarlander_scripted"


def test_fit_writes_a_last_checkpoint_with_q_network_weights(fit_run):
    last = fit_run["log_dir"] / "checkpoints" / "last.ckpt"
    assert last.is_file()
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 300
    state = checkpoint["state_dict"]
    assert state["q_network.0.weight"].shape == (32, 8)
    assert state["q_network.4.weight"].shape == (4, 32)
    assert any(key.startswith("target_network.") for key in state)
    # The weights trained: the target network (Polyak-averaged) lags the online one.
    assert not torch.equal(state["q_network.0.weight"], state["target_network.0.weight"])


def test_learning_rate_has_decayed_to_its_final_fraction_at_max_steps(fit_run):
    checkpoint = torch.load(fit_run["log_dir"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    (scheduler,) = checkpoint["lr_schedulers"]
    assert scheduler["_step_count"] == checkpoint["global_step"] + 1
    assert scheduler["_last_lr"][0] == pytest.approx(hparams["lr"] * hparams["final_lr_fraction"])


def test_checkpoint_loads_into_a_module_whose_policy_acts(fit_run):
    last = fit_run["log_dir"] / "checkpoints" / "last.ckpt"
    module = SoftQSQIL.load_from_checkpoint(last, map_location="cpu")
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    torch.testing.assert_close(module.q_network[0].weight, checkpoint["state_dict"]["q_network.0.weight"])
    for name in ("gamma", "temperature", "lambda_samp", "target_tau"):
        assert module.hparams[name] == checkpoint["hyper_parameters"][name]
    obs = TensorDict({"observation": torch.randn(5, 8)}, batch_size=[5])
    actions = module.policy(deterministic=True)(obs)["action"]
    assert actions.shape == (5,) and actions.dtype == torch.int64
    assert ((actions >= 0) & (actions < 4)).all()
    torch.testing.assert_close(actions, module.q_network(obs["observation"]).argmax(-1))


def test_fit_writes_result_json_with_the_final_evaluation(fit_run):
    result = json.loads((fit_run["log_dir"] / "result.json").read_text())
    assert result["env_id"] == "LunarLander-v3"
    assert result["global_step"] == 300
    # initial_env_steps 200, then rollout_env_steps 4 every rollout.every_n_steps 4 of 300 steps.
    assert result["env_steps"] == 200 + (300 // 4) * 4
    greedy = result["greedy"]
    episodes = greedy["per_episode"]
    assert greedy["episodes"] == 2 and greedy["seed"] == episodes["seed"] == 1_000_000  # data.eval_seed
    assert len(episodes["returns"]) == len(episodes["lengths"]) == len(episodes["successes"]) == 2
    # The summary is the per-episode outcomes' mean, not a stale or partial one.
    assert greedy["mean_return"] == pytest.approx(sum(episodes["returns"]) / 2)
    assert greedy["std_return"] == pytest.approx(abs(episodes["returns"][0] - episodes["returns"][1]) / 2)
    assert greedy["mean_length"] == pytest.approx(sum(episodes["lengths"]) / 2)
    assert greedy["success_rate"] == pytest.approx(sum(episodes["successes"]) / 2)
    # And those outcomes are the final greedy policy's (last.ckpt's Q network) on episodes seeded
    # eval_seed + i, replayed here straight on gymnasium: return, length and success match.
    from sqil_lightning.envs.make import make_gym_env  # the task's env with its success signal

    module = SoftQSQIL.load_from_checkpoint(fit_run["log_dir"] / "checkpoints" / "last.ckpt", map_location="cpu")
    env = make_gym_env("LunarLander-v3")
    for i in range(2):
        obs, _ = env.reset(seed=greedy["seed"] + i)
        episode_return, length, done = 0.0, 0, False
        while not done:
            with torch.no_grad():
                action = int(module.q_network(torch.as_tensor(obs, dtype=torch.float32)).argmax())
            obs, reward, terminated, truncated, info = env.step(action)
            episode_return, length, done = episode_return + reward, length + 1, terminated or truncated
        assert episodes["lengths"][i] == length
        assert episodes["returns"][i] == pytest.approx(episode_return, rel=1e-4, abs=1e-3)
        assert episodes["successes"][i] == bool(info["success"])
    env.close()


def test_fit_prints_where_the_checkpoint_and_result_are(fit_run):
    out = fit_run["stdout"]
    log_dir = fit_run["log_dir"]
    assert f"checkpoint: {log_dir / 'checkpoints' / 'last.ckpt'}" in out
    assert str(log_dir / "result.json") in out


def test_fit_logs_training_and_evaluation_metrics(fit_run):
    with open(fit_run["log_dir"] / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0].keys())
    assert {"train/loss", "train/q_demo", "train/q_online", "eval/greedy/return", "env_steps"} <= columns
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 3  # steps 100, 200, 300 with log_every_n_steps 100
    assert all(loss == loss and loss >= 0 for loss in losses)


def test_fit_logs_updates_and_env_steps_per_second(fit_run):
    with open(fit_run["log_dir"] / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("perf/updates_per_s")]
    assert [int(r["step"]) for r in rows] == [99, 199, 299]  # every log_every_n_steps (Lightning counts from 0)
    for row in rows:
        updates, env_steps = float(row["perf/updates_per_s"]), float(row["perf/env_steps_per_s"])
        assert updates > 0
        # fast.yaml collects 4 env steps every 4 gradient steps and both rates share one clock; a
        # window's edge may fall before or after one 4-step rollout (4% of a 100-step window).
        assert env_steps == pytest.approx(updates, rel=0.045)


def test_fit_saves_the_resolved_config_next_to_the_logs(fit_run):
    config = (fit_run["log_dir"] / "config.yaml").read_text()
    assert "max_steps: 300" in config
    assert str(fit_run["demo_path"]) in config


def test_test_subcommand_plays_the_configured_episodes_with_the_checkpoint(fit_run, monkeypatch):
    """`test --ckpt_path` evaluates the trained greedy policy on data.eval_seed + i, like fit's final evaluation."""
    tmp_path = fit_run["tmp_path"]
    monkeypatch.chdir(tmp_path)
    args = [
        "test",
        "--config", str(BASE_CONFIG),
        "--config", str(FAST_CONFIG),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "test_logs"),
        "--data.demo_path", str(fit_run["demo_path"]),
        "--data.eval_episodes", "2",
        "--ckpt_path", str(fit_run["log_dir"] / "checkpoints" / "last.ckpt"),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
    rows = list(csv.DictReader((tmp_path / "test_logs" / "fast" / "version_0" / "metrics.csv").open()))
    tested = [r for r in rows if r.get("test/greedy/return")]
    assert len(tested) == 1
    final = json.loads((fit_run["log_dir"] / "result.json").read_text())["greedy"]["per_episode"]
    # fit's final evaluation played the same two start states with the same weights.
    assert float(tested[0]["test/greedy/return"]) == pytest.approx(sum(final["returns"][:2]) / 2, rel=1e-4)
    assert float(tested[0]["test/greedy/success_rate"]) == pytest.approx(sum(final["successes"][:2]) / 2)


# --- user errors -----------------------------------------------------------------------------------------


def test_negative_temperature_is_a_one_line_error_naming_the_key(tmp_path, monkeypatch, expect_user_error):
    monkeypatch.chdir(tmp_path)
    line = expect_user_error(["fit", "--config", str(BASE_CONFIG), "--model.temperature", "-1"])
    assert "model.temperature" in line


@pytest.mark.parametrize("extra", [[], ["--data.demo_expert", "null"]], ids=["default-expert", "no-expert"])
def test_unknown_env_id_is_a_one_line_error_naming_the_id(extra, tmp_path, monkeypatch, expect_user_error):
    monkeypatch.chdir(tmp_path)
    line = expect_user_error(
        ["fit", "--config", str(BASE_CONFIG), "--data.env_id", "NotAnEnv-v0", *extra]
    )
    assert "NotAnEnv-v0" in line


def test_missing_demo_file_without_expert_is_a_one_line_error_saying_how_to_generate(tmp_path, monkeypatch, expect_user_error):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nope.npz"
    line = expect_user_error(fit_args("--data.demo_expert", "null", "--data.demo_path", str(missing)))
    assert str(missing) in line and "demos generate" in line
    assert not missing.exists()


def test_demo_file_recorded_in_another_env_is_a_one_line_spec_mismatch(tmp_path, monkeypatch, expect_user_error, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    line = expect_user_error(
        fit_args("--data.env_id", "CartPole-v1", "--data.demo_expert", "null", "--data.demo_path", str(lunarlander_demo_file))
    )
    assert str(lunarlander_demo_file) in line and "CartPole-v1" in line


def test_demo_fraction_out_of_range_is_a_one_line_error(tmp_path, monkeypatch, expect_user_error):
    monkeypatch.chdir(tmp_path)
    line = expect_user_error(["fit", "--config", str(BASE_CONFIG), "--data.demo_fraction", "1.5"])
    assert "data.demo_fraction" in line


def test_gamma_one_with_absorbing_reward_is_a_one_line_error(tmp_path, monkeypatch, expect_user_error, lunarlander_demo_file):
    # r/(1-γ) is undefined at γ = 1: a config mistake, so it must be reported like the others.
    monkeypatch.chdir(tmp_path)
    line = expect_user_error(
        fit_args("--data.demo_path", str(lunarlander_demo_file), "--data.absorbing_reward", "true", "--model.gamma", "1.0")
    )
    assert "gamma" in line


def test_evaluations_log_training_time_without_the_earlier_evaluations(fit_run):
    with open(fit_run["log_dir"] / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("time/train_s")]
    assert len(rows) == 2  # the periodic evaluation and the final one
    (periodic_elapsed, periodic_train), (final_elapsed, final_train) = (
        (float(r["time/elapsed_s"]), float(r["time/train_s"])) for r in rows
    )
    assert 0 < periodic_train <= periodic_elapsed
    # Between the two the periodic evaluation ran: elapsed time counts it, training time does not.
    assert final_elapsed - periodic_elapsed > final_train - periodic_train > 0


def test_checkpoint_monitor_keeps_the_best_periodic_evaluation(tmp_path, monkeypatch, lunarlander_demo_file):
    monkeypatch.chdir(tmp_path)
    args = fit_args(
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--data.demo_path", str(lunarlander_demo_file),
        "--evaluation.every_n_steps", "40", "--evaluation.episodes", "2", "--evaluation.final_episodes", "0",
        "--checkpoint.every_n_train_steps", "40", "--checkpoint.dirpath", str(tmp_path / "ckpt"),
        "--checkpoint.monitor", "eval/greedy/return", "--checkpoint.mode", "max",
        "--checkpoint.save_top_k", "1", "--checkpoint.filename", "best",
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
    with open(tmp_path / "logs" / "fast" / "version_0" / "metrics.csv") as f:
        evaluations = {int(r["step"]): float(r["eval/greedy/return"]) for r in csv.DictReader(f) if r.get("eval/greedy/return")}
    assert sorted(evaluations) == [40, 80, 120, 160, 200, 240, 280]
    best_step = max(evaluations, key=evaluations.get)
    best = torch.load(tmp_path / "ckpt" / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["global_step"] == best_step
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
