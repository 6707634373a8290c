"""`data.collector: async`: env steps in a TorchRL worker process, overlapping the updates.

In-process fits on the tiny overlay tests/conf/fast.yaml compare async with sync (same env steps,
rows relabelled into the online partition, no worker left), and a Pong fit checks stacked pixel
frames; datamodule-level checks cover the worker acting with the learner's live weights, uniform
actions, shifted starts and SAC; subprocess runs cover SIGTERM + resume, a terminal's Ctrl+C (sent
to the whole process group) and DDP.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torchrl.collectors import MultiAsyncCollector
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer

import sqil_lightning.data.experience as experience_module
from sqil_lightning import SACSQIL, SoftQSQIL, SQILDataModule
from sqil_lightning.envs import atari
from sqil_lightning.cli import lightning_main
from sqil_lightning.demos.store import DemoSet
from sqil_lightning.envs.make import make_env, make_gym_env
from sqil_lightning.errors import ConfigError
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.data.snapshot import checkpoint_snapshot, load_snapshot
from sqil_lightning.envs.start_states import LunarLanderOffset

from fit_process import BASE_CONFIG, REPO, SQIL_COMMAND, FitProcess, fit_args

MAX_STEPS, INITIAL_FRAMES, ROLLOUT_EVERY, ROLLOUT_FRAMES = 300, 200, 4, 4  # fast.yaml's
CHECKPOINT_EVERY = 100  # fast.yaml's checkpoint.every_n_train_steps
# Generous: the machine may be busy; the waits end as soon as the condition holds.
START_TIMEOUT_S, EXIT_TIMEOUT_S, RUN_TIMEOUT_S = 120, 120, 300


# --- in-process fits: async against sync ---------------------------------------------------------------


def _fit(tmp_path: Path, collector: str, demo_path: Path) -> dict:
    """fast.yaml's 300-step fit with ``data.collector``; the datamodule and every collector it built."""
    built: list = []
    real = experience_module.make_async_collector

    def recording(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    args = fit_args(
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--data.demo_path", str(demo_path),
        "--data.collector", collector,
    )  # fmt: skip
    tmp_path.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        mp.setattr(experience_module, "make_async_collector", recording)
        cli = lightning_main(args)
    return {"datamodule": cli.datamodule, "collectors": built}


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("fits")
    demo_path = tmp_path / "demos" / "ll3.npz"
    return {mode: _fit(tmp_path / mode, mode, demo_path) for mode in ("sync", "async")}


def _online_rows(datamodule: SQILDataModule):
    online = datamodule.experience.buffer.online_buffer
    return online.storage.get(torch.arange(len(online)))


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_async_fit_collects_as_many_env_steps_as_sync(fits):
    expected = INITIAL_FRAMES + ROLLOUT_FRAMES * (MAX_STEPS // ROLLOUT_EVERY)
    for mode in ("sync", "async"):
        datamodule = fits[mode]["datamodule"]
        assert datamodule.experience.env_steps == expected, mode
        assert len(datamodule.experience.buffer.online_buffer) == expected, mode


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_async_rows_land_in_the_online_partition_with_reward_zero(fits):
    rows = _online_rows(fits["async"]["datamodule"])
    assert not rows["is_demo"].any()
    assert (rows["next", "reward"] == 0).all()
    # The worker's env starts from data.seed (0), as the sync collector's does.
    env = make_env("LunarLander-v3", seed=0)
    try:
        assert torch.equal(rows["observation"][0], env.reset()["observation"])
    finally:
        env.close()


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_async_fit_collects_in_a_worker_process_that_is_gone_after_fit(fits):
    (collector,) = fits["async"]["collectors"]  # one collector, built when fit asked for the data
    assert isinstance(collector, MultiAsyncCollector)
    (worker,) = collector.procs
    assert worker.exitcode is not None, "the worker process still runs after fit"
    assert not Path(f"/proc/{worker.pid}").exists()
    assert not multiprocessing.active_children()
    assert fits["sync"]["collectors"] == []


# --- the worker's policy, actions and env --------------------------------------------------------------


def _async_datamodule(learner_class=SoftQSQIL, **kwargs) -> tuple[SQILDataModule, SoftQSQIL | SACSQIL]:
    """A plain-RL data module with the async collector, connected to a small learner of ``learner_class``."""
    datamodule = SQILDataModule(reward="env", initial_env_steps=8, collector="async", **kwargs)
    module = learner_class(datamodule.observation_shape, datamodule.action_space, hidden_sizes=[16])
    datamodule.setup("fit")
    datamodule.connect(module)
    return datamodule, module


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_worker_acts_with_the_learners_current_weights():
    datamodule, module = _async_datamodule()
    datamodule.experience.start(module.policy(deterministic=False), module.device, 0)
    try:
        datamodule.experience.collect()
        last_layer = module.q_network[-1]
        with torch.no_grad():  # what an update could do: make action 2 the only likely one
            last_layer.weight.zero_()
            last_layer.bias.copy_(torch.tensor([0.0, 0.0, 100.0, 0.0]))
        datamodule.experience.collect()  # collected (partly) before the change: at most one batch behind
        datamodule.experience.collect()
        newest = datamodule.experience.buffer.storage.get(torch.arange(8, 12))
        assert newest["action"].tolist() == [2, 2, 2, 2]
    finally:
        datamodule.teardown("fit")


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_uniform_rollouts_from_shifted_starts_run_in_the_worker():
    shift = {"class_path": "sqil_lightning.envs.start_states.LunarLanderOffset", "init_args": {"x_offset": [0.4, 0.5]}}
    datamodule, _ = _async_datamodule(rollout_policy="uniform", start_shift=shift, seed=3)
    datamodule.experience.start(None, "cpu", 0)
    try:
        for _ in range(10):
            datamodule.experience.collect()
    finally:
        datamodule.teardown("fit")
    rows = datamodule.experience.buffer.storage.get(torch.arange(40))
    assert len(set(rows["action"].tolist())) > 1  # random actions, not a fixed policy
    env = make_env("LunarLander-v3", seed=3, start_shift=LunarLanderOffset(x_offset=(0.4, 0.5)))
    try:
        first = env.reset()["observation"]
    finally:
        env.close()
    assert torch.equal(rows["observation"][0], first)
    assert abs(first[0].item()) >= 0.3  # far from the helipad: the shift acted


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_sac_actor_collects_continuous_actions_in_the_worker():
    datamodule, module = _async_datamodule(SACSQIL, env_id="Pendulum-v1", demo_expert=None)
    datamodule.experience.start(module.policy(deterministic=False), module.device, 0)
    try:
        datamodule.experience.collect()
    finally:
        datamodule.teardown("fit")
    actions = datamodule.experience.buffer.storage.get(torch.arange(4))["action"]
    assert actions.shape == (4, 1) and actions.dtype == torch.float32
    assert ((actions >= -2) & (actions <= 2)).all() and len(set(actions.flatten().tolist())) == 4


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_frame_stacked_pixels_train_with_async_collection(tmp_path):
    # Pong through conf/pong.yaml's pipeline (4 stacked 84x84 frames, compacted to one frame a row).
    pixels = PixelPipeline(size=None, frame_stack=4)
    env = make_env(atari.ENV_ID, gym_env=make_gym_env(atari.ENV_ID, max_episode_steps=30), pixels=pixels)
    try:
        rollout = env.rollout(30, auto_reset=False, tensordict=env.reset(seed=0))
    finally:
        env.close()
    demo_path = tmp_path / "pong.npz"
    DemoSet.from_rollouts([rollout], metadata={"env_id": atari.ENV_ID, "source": "random"}).save(demo_path)
    args = [
        "fit", "--config", str(REPO / "conf" / "pong.yaml"),
        "--wandb.mode", "disabled", "--trainer.max_steps", "12", "--trainer.enable_progress_bar", "false",
        "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--data.initial_env_steps", "20", "--data.batch_size", "8", "--data.online_capacity", "1000",
        "--evaluation.every_n_steps", "1000", "--evaluation.final_episodes", "0", "--checkpoint.every_n_train_steps", "6",
        "--data.demo_path", str(demo_path), "--data.demo_expert", "null", "--data.collector", "async",
    ]  # fmt: skip
    datamodule = lightning_main(args).datamodule
    rows = _online_rows(datamodule)
    assert datamodule.experience.env_steps == len(rows) == 32  # 20 first, then 1 frame after each of 12 updates
    assert rows["observation"].shape == (32, 1, 84, 84)  # the newest frame of each stack
    assert rows["frames_back"].tolist()[:4] == [0, 1, 2, 3]  # a fresh episode, stacks reaching back
    assert not multiprocessing.active_children()


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_stopping_the_worker_keeps_this_process_thread_count():
    # TorchRL's shutdown sets the thread count to min(count at its import, count + workers): 1 in
    # this test process (conftest.py sets 1 first), so 2 threads here would drop to 1.
    datamodule, _ = _async_datamodule(rollout_policy="uniform")
    torch.set_num_threads(2)
    try:
        datamodule.experience.start(None, "cpu", 0)
        datamodule.experience.collect()
        datamodule.teardown("fit")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_async_refuses_a_learner_off_the_cpu():
    datamodule, module = _async_datamodule()
    with pytest.raises(ConfigError, match=r"data.collector = async .* is on cuda.*trainer.accelerator cpu, or data.collector sync"):
        datamodule.experience.start(module.policy(deterministic=False), "cuda", 0)
    assert not multiprocessing.active_children()


def test_unknown_collector_is_a_one_line_error(expect_user_error):
    line = expect_user_error(["fit", "--config", str(BASE_CONFIG), "--data.collector", "threads"])
    assert line == "error: data.collector = 'threads' is invalid; choose one of ['sync', 'async']"


# --- subprocess runs: stop, resume, Ctrl+C, DDP --------------------------------------------------------------


def _fit_command(tmp_path: Path, *extra: str) -> list[str]:
    return SQIL_COMMAND + fit_args(
        "--trainer.max_steps", "100000",
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--data.demo_episodes", "2",
        "--data.collector", "async",
        *extra,
    )  # fmt: skip


def _processes_in(folder: Path) -> dict[int, str]:
    """Processes (pid: command line) whose working directory lies in ``folder``: a run and its workers."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = Path(os.readlink(entry / "cwd"))
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # gone meanwhile, or a zombie
                continue
            if cwd == folder or folder in cwd.parents:
                found[int(entry.name)] = cmdline
    return found


def _workers_in(folder: Path) -> list[int]:
    return [pid for pid, cmdline in _processes_in(folder).items() if "spawn_main" in cmdline]


def _wait_until_gone(folder: Path, timeout: float = 10.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := _processes_in(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _interrupt(tmp_path: Path, send, *extra: str) -> dict:
    """Start a long async fit, wait for its step-100 checkpoint, stop it with ``send(run)``."""
    run = FitProcess(tmp_path, _fit_command(tmp_path, *extra), "interrupted", own_session=True)
    checkpoints = tmp_path / "logs" / "fast" / "version_0" / "checkpoints"
    run.wait_for(checkpoints / f"epoch=0-step={CHECKPOINT_EVERY}.ckpt", START_TIMEOUT_S)
    workers = _workers_in(tmp_path)
    send(run)
    status = run.wait(EXIT_TIMEOUT_S)
    return {"run": run, "status": status, "workers": workers, "left": _wait_until_gone(tmp_path), "checkpoints": checkpoints}


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _snapshot(checkpoint_path: Path):
    """The online rows a checkpoint's replay snapshot holds, and the episode it saved."""
    state = _load(checkpoint_path)["SQILDataModule"]
    buffer = ReplayBuffer(storage=LazyTensorStorage(100_000), sampler=RandomSampler())
    position = load_snapshot(buffer, checkpoint_snapshot(checkpoint_path, state, 0))
    return buffer.storage.get(torch.arange(len(buffer))), position.episode


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("async_sigterm")
    result = _interrupt(tmp_path, lambda run: os.kill(run.proc.pid, signal.SIGTERM))  # a scheduler's `kill`
    if result["status"] != 143:
        result["run"].fail(f"exit status {result['status']}, expected 143 (SIGTERM, handled)")
    result["tmp_path"] = tmp_path
    return result


@pytest.mark.slow
def test_sigterm_saves_an_async_run_and_leaves_no_worker(sigterm_run):
    assert len(sigterm_run["workers"]) == 1  # the collector's worker ran beside the training process
    assert sigterm_run["left"] == {}
    checkpoint = _load(sigterm_run["checkpoints"] / "last.ckpt")
    step, env_steps = checkpoint["global_step"], checkpoint["SQILDataModule"]["env_steps"]
    assert step >= CHECKPOINT_EVERY
    assert env_steps == INITIAL_FRAMES + ROLLOUT_FRAMES * (step // ROLLOUT_EVERY)
    rows, episode = _snapshot(sigterm_run["checkpoints"] / "last.ckpt")
    assert len(rows) == env_steps  # every row the learner took, none of the batch the worker held
    assert episode is None  # the env lives in the worker: a resumed async run starts a fresh episode


@pytest.fixture(scope="module")
def resumed_run(sigterm_run) -> dict:
    tmp_path = sigterm_run["tmp_path"]
    step = _load(sigterm_run["checkpoints"] / "last.ckpt")["global_step"]
    max_steps = (step // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY + 52  # a multiple of 4
    command = _fit_command(tmp_path, "--trainer.max_steps", str(max_steps), "--ckpt_path", "last")
    run = FitProcess(tmp_path, command, "resumed", own_session=True)
    status = run.wait(RUN_TIMEOUT_S)
    if status != 0:
        run.fail(f"the resumed run exited with status {status}")
    return {"max_steps": max_steps, "log_dir": tmp_path / "logs" / "fast" / "version_1", "left": _wait_until_gone(tmp_path)}


@pytest.mark.slow
def test_resumed_async_run_keeps_every_replay_row_and_counter(sigterm_run, resumed_run):
    interrupted = _load(sigterm_run["checkpoints"] / "last.ckpt")
    final = _load(resumed_run["log_dir"] / "checkpoints" / "last.ckpt")
    assert final["global_step"] == resumed_run["max_steps"]
    rollouts = resumed_run["max_steps"] // ROLLOUT_EVERY - interrupted["global_step"] // ROLLOUT_EVERY
    env_steps = interrupted["SQILDataModule"]["env_steps"] + ROLLOUT_FRAMES * rollouts  # no second warm-up
    assert final["SQILDataModule"]["env_steps"] == env_steps
    before, _ = _snapshot(sigterm_run["checkpoints"] / "last.ckpt")
    after, _ = _snapshot(resumed_run["log_dir"] / "checkpoints" / "last.ckpt")
    assert len(after) == env_steps
    assert (after[: len(before)] == before).all()  # the restored rows, then the resumed run's own
    assert resumed_run["left"] == {}


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_an_async_run_gracefully(tmp_path):
    # A terminal's Ctrl+C reaches every process of the foreground group, the worker included.
    # Rollouts of 64 env steps every 4 updates keep the training process waiting for the worker's
    # batch most of the time, so the signal, sent a while after the checkpoint (whose writing the
    # worker waits out idle), most likely arrives while it waits: a worker that died of it would
    # turn the graceful stop into a "worker failed" error.
    def ctrl_c(run: FitProcess) -> None:
        time.sleep(2)
        os.killpg(run.proc.pid, signal.SIGINT)

    result = _interrupt(tmp_path, ctrl_c, "--data.rollout_env_steps", "64")
    if result["status"] != 130:
        result["run"].fail(f"exit status {result['status']}, expected 130 (Ctrl+C, handled)")
    _, stderr = result["run"].output()
    assert "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("stopped by Ctrl+C after step")]) == 1
    assert _load(result["checkpoints"] / "last.ckpt")["global_step"] >= CHECKPOINT_EVERY
    assert len(result["workers"]) == 1 and result["left"] == {}


@pytest.mark.slow
def test_ddp_ranks_each_collect_with_their_own_worker(tmp_path):
    command = _fit_command(
        tmp_path,
        "--trainer.max_steps", "100",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--evaluation.every_n_steps", "1000", "--evaluation.final_episodes", "1",
        "--trainer.callbacks+=ddp_probe.DDPProbe", "--trainer.callbacks.init_args.out_dir", str(tmp_path / "probe"),
    )  # fmt: skip
    run = FitProcess(tmp_path, command, "ddp", own_session=True)
    status = run.wait(RUN_TIMEOUT_S)
    if status != 0:
        run.fail(f"the 2-process async DDP fit exited with status {status}")
    assert _wait_until_gone(tmp_path) == {}
    records = [_load(tmp_path / "probe" / f"rank{rank}.pt") for rank in (0, 1)]
    for record in records:
        assert record["global_step"] == 100
        assert record["env_steps"] == len(record["online_observations"]) == INITIAL_FRAMES + ROLLOUT_FRAMES * (100 // ROLLOUT_EVERY)
    assert all(torch.equal(records[0]["state_dict"][k], records[1]["state_dict"][k]) for k in records[0]["state_dict"])
    assert not torch.equal(records[0]["online_observations"], records[1]["online_observations"])
