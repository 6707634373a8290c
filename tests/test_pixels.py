"""Image observations: the pixel pipeline from env to batch, uint8 storage, Car Racing's pieces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer

from sqil_lightning import SoftQSQIL
from sqil_lightning.envs import atari
from sqil_lightning.envs.car_racing import ENV_ID, RotatedStart, TrackFollower
from sqil_lightning.commands import main
from sqil_lightning.data.datamodule import SQILDataModule
from sqil_lightning.demos.store import DemoSet
from sqil_lightning.envs.make import attach_simulator, env_spaces, make_env, make_gym_env
from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.networks import build_network
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.data.frame_replay import StackedFrames
from sqil_lightning.data.replay import online_storage
from sqil_lightning.sqil import agent_rows

from fit_process import REPO

CAR_RACING = PixelPipeline(size=64, grayscale=False, frame_stack=1)


def _expert_rollout(pixels: PixelPipeline, steps: int, seed: int = 0):
    """``steps`` env steps of the track follower, observed through ``pixels``."""
    gym_env = make_gym_env(ENV_ID, max_episode_steps=steps)
    expert = TrackFollower()
    attach_simulator(expert, gym_env)
    env = make_env(ENV_ID, gym_env=gym_env, pixels=pixels)
    with torch.no_grad():
        rollout = env.rollout(steps, expert, auto_reset=False, tensordict=env.reset(seed=seed))
    env.close()
    return rollout


@pytest.fixture(scope="module")
def car_racing_demo_file(tmp_path_factory) -> Path:
    """Two 40-step Car Racing episodes of the scripted expert as 64x64 RGB frames."""
    rollouts = [_expert_rollout(CAR_RACING, 40, seed=s) for s in (0, 1)]
    path = tmp_path_factory.mktemp("demos") / "carracing.npz"
    DemoSet.from_rollouts(rollouts, metadata={"env_id": ENV_ID, "source": "test"}).save(path)
    return path


def test_pipeline_turns_car_racing_frames_into_uint8_channels_first_images():
    rollout = _expert_rollout(PixelPipeline(size=64), steps=5)
    assert rollout["observation"].shape == (5, 3, 64, 64)
    assert rollout["observation"].dtype == torch.uint8
    assert rollout["next", "observation"].shape == (5, 3, 64, 64)
    # Grayscale and stacking change the channel count; the spec the learner is built from agrees.
    pixels = PixelPipeline(size=48, grayscale=True, frame_stack=4)
    assert env_spaces(ENV_ID, pixels).observation_shape == (4, 48, 48)
    assert _expert_rollout(pixels, steps=3)["observation"].shape == (3, 4, 48, 48)


def test_resize_keeps_the_picture():
    # A downscaled frame is the full frame averaged over 1.5x1.5 blocks: the mean colour survives.
    full = _expert_rollout(PixelPipeline(size=None), steps=30)["observation"][-1].float()
    small = _expert_rollout(PixelPipeline(size=64), steps=30)["observation"][-1].float()
    assert full.shape == (3, 96, 96)
    assert torch.allclose(full.mean(dim=(1, 2)), small.mean(dim=(1, 2)), atol=2.0)


def test_frame_stack_holds_the_newest_frames_oldest_first():
    single = _expert_rollout(PixelPipeline(size=32, grayscale=True), steps=6)["next", "observation"]
    stacked = _expert_rollout(PixelPipeline(size=32, grayscale=True, frame_stack=3), steps=6)
    frames = single[:, 0]  # the frame after each step, [6, 32, 32]
    for t in range(2, 6):
        assert torch.equal(stacked["next", "observation"][t], frames[t - 2 : t + 1])
    # The first observation repeats the reset frame ("same" padding) rather than showing black.
    first = stacked["observation"][0]
    assert torch.equal(first[0], first[2]) and first.float().mean() > 10


def test_demo_file_keeps_uint8_frames_exactly(car_racing_demo_file):
    demos = DemoSet.load(car_racing_demo_file)
    assert demos.observations.dtype == np.uint8 and demos.observations.shape[1:] == (3, 64, 64)
    rows = demos.to_tensordict()
    assert rows["observation"].dtype == torch.uint8
    assert np.array_equal(rows["next", "observation"].numpy(), demos.next_observations)
    # Consecutive rows of an episode chain: the next frame of row t is the frame of row t + 1.
    assert np.array_equal(demos.next_observations[:-1][demos.episode_ids[:-1] == demos.episode_ids[1:]],
                          demos.observations[1:][demos.episode_ids[:-1] == demos.episode_ids[1:]])  # fmt: skip


def test_large_image_replay_is_memory_mapped_and_round_trips_uint8():
    frame_bytes = 3 * 64 * 64
    assert type(online_storage(1000, frame_bytes)).__name__ == "LazyTensorStorage"
    storage = online_storage(100_000, frame_bytes)  # 2.5 GB of frames
    assert type(storage).__name__ == "LazyMemmapStorage"
    rows = _expert_rollout(CAR_RACING, steps=8)
    storage.set(torch.arange(8), rows)
    back = storage.get(torch.arange(8))
    assert back["observation"].dtype == torch.uint8
    assert torch.equal(back["observation"], rows["observation"])
    assert torch.equal(back["next", "observation"], rows["next", "observation"])


def test_batches_reach_the_network_as_uint8_and_train_it(car_racing_demo_file):
    datamodule = SQILDataModule(
        env_id=ENV_ID, demo_path=str(car_racing_demo_file), demo_expert=None, batch_size=8,
        online_capacity=100, pixels={"size": 64, "grayscale": False, "frame_stack": 1},
    )  # fmt: skip
    datamodule.setup("fit")
    datamodule.connect(SoftQSQIL(datamodule.observation_shape, datamodule.action_space, hidden_sizes=[8], encoder="car_racing_cnn"))
    datamodule.experience.buffer.extend(agent_rows(_expert_rollout(CAR_RACING, steps=10)))
    [batch] = next(iter(datamodule.experience.batches))
    assert batch["observation"].dtype == torch.uint8 and batch["observation"].shape == (8, 3, 64, 64)
    net = build_network(datamodule.observation_shape, 3, [16], encoder="car_racing_cnn")
    q = net(batch["observation"])
    assert q.dtype == torch.float32 and q.shape == (8, 3)
    q.sum().backward()
    assert net.encoder[0].weight.grad.abs().sum() > 0


def test_pixels_on_a_vector_env_is_a_clear_error():
    with pytest.raises(ConfigError, match="not image frames"):
        env_spaces("LunarLander-v3", PixelPipeline())
    with pytest.raises(ConfigError, match="data.pixels"):
        PixelPipeline.from_config({"size": 64, "stack": 4})
    with pytest.raises(ConfigError, match="data.pixels.frame_stack"):
        PixelPipeline.from_config({"size": 64, "frame_stack": "4"})


def test_rotated_start_faces_perpendicular_to_the_track():
    env = make_gym_env(ENV_ID, start_shift=RotatedStart())
    aligned = make_gym_env(ENV_ID)
    for seed in range(3):
        env.reset(seed=seed)
        aligned.reset(seed=seed)
        car, track = env.unwrapped.car.hull, env.unwrapped.track
        heading = track[0][1]
        turn = math.remainder(car.angle - heading, 2 * math.pi)
        # Within 6°: the reset's physics step lets the wheels' joints settle (measured 87°).
        assert turn == pytest.approx(math.pi / 2, abs=0.1)
        # Same place as the aligned start, which itself points along the track.
        assert (car.position - aligned.unwrapped.car.hull.position).length < 0.1
        assert math.remainder(aligned.unwrapped.car.hull.angle - heading, 2 * math.pi) == pytest.approx(0, abs=0.02)
    env.close()
    aligned.close()


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_track_follower_drives_along_the_track():
    # Each new tile is worth 1000/N points, each step costs 0.1. Through the first bends the
    # follower collects far more than driving straight on, which leaves the road (measured on
    # seed 0 over 300 steps: 167.5 vs 32.7).
    pixels = PixelPipeline(size=32)
    followed = _expert_rollout(pixels, steps=300)["next", "episode_reward"][-1].item()
    env = make_env(ENV_ID, gym_env=make_gym_env(ENV_ID, max_episode_steps=300), pixels=pixels)
    straight = TensorDictModule(lambda obs: torch.ones(obs.shape[:-3], dtype=torch.int64), in_keys=["observation"], out_keys=["action"])
    straight_on = env.rollout(300, straight, auto_reset=False, tensordict=env.reset(seed=0))["next", "episode_reward"][-1].item()
    env.close()
    assert followed > straight_on + 100


def _short_fit_args(config: str, tmp_path: Path, steps: int = 12, overlay: str | None = None) -> list[str]:
    """A `fit` of ``steps`` gradient steps on ``config`` (then ``overlay``) with tiny batches, no evaluation."""
    overlays = ["--config", str(REPO / "conf" / overlay)] if overlay else []
    return [
        "fit", "--config", str(REPO / "conf" / config), *overlays,
        "--wandb.mode", "disabled", "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--data.initial_env_steps", "20", "--data.batch_size", "8", "--data.online_capacity", "1000",
        "--evaluation.every_n_steps", "1000", "--evaluation.final_episodes", "0",
        "--checkpoint.every_n_train_steps", str(steps // 2),
    ]  # fmt: skip


def _trained_steps(tmp_path: Path) -> int:
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]


def test_short_car_racing_fit_runs_on_cpu(car_racing_demo_file, tmp_path):
    main([*_short_fit_args("carracing.yaml", tmp_path), "--data.demo_path", str(car_racing_demo_file), "--data.demo_expert", "null"])
    assert _trained_steps(tmp_path) == 12
    assert "encoder: car_racing_cnn" in next(tmp_path.rglob("config.yaml")).read_text()


def test_short_pong_fit_runs_on_cpu(tmp_path):
    # Demos: one 30-step Pong episode of random play through the config's pipeline (4 stacked frames).
    pixels = PixelPipeline(size=None, frame_stack=4)
    env = make_env(atari.ENV_ID, gym_env=make_gym_env(atari.ENV_ID, max_episode_steps=30), pixels=pixels)
    rollout = env.rollout(30, auto_reset=False, tensordict=env.reset(seed=0))
    demo_path = tmp_path / "pong.npz"
    DemoSet.from_rollouts([rollout], metadata={"env_id": atari.ENV_ID, "source": "random"}).save(demo_path)
    main([*_short_fit_args("pong.yaml", tmp_path / "run"), "--data.demo_path", str(demo_path), "--data.demo_expert", "null"])
    assert _trained_steps(tmp_path / "run") == 12


def test_pong_expert_overlay_trains_from_the_game_reward(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(_short_fit_args("pong.yaml", tmp_path / "run", steps=6, overlay="experts/pong.yaml"))
    # Where conf/pong.yaml's data.demo_expert records the demos from.
    assert (tmp_path / "experts" / atari.ENV_ID / "last.ckpt").is_file()


# --- frame-stacked replay (sqil_lightning.data.frame_replay) -------------------------------------------


def _stacked_rows(steps: int, episode_steps: int) -> TensorDict:
    """``steps`` rows of random play, 3 stacked 32x32 grayscale frames, episodes of ``episode_steps``."""
    pixels = PixelPipeline(size=32, grayscale=True, frame_stack=3)
    env = make_env(ENV_ID, gym_env=make_gym_env(ENV_ID, max_episode_steps=episode_steps), pixels=pixels)
    torch.manual_seed(0)
    rows = env.rollout(steps, break_when_any_done=False, tensordict=env.reset(seed=0))
    env.close()
    return rows


def _replay_of(rows, capacity: int) -> tuple[StackedFrames, ReplayBuffer]:
    frames = StackedFrames(frame_stack=3, frame_channels=1)
    buffer = ReplayBuffer(storage=LazyTensorStorage(capacity), sampler=RandomSampler())
    buffer.extend(frames.compact(agent_rows(rows), rows["step_count"].reshape(-1)))
    return frames, buffer


def test_stacked_replay_stores_one_frame_a_row_and_rebuilds_the_observed_stacks():
    rows = _stacked_rows(steps=25, episode_steps=10)  # episodes restart at rows 10 and 20
    assert rows["step_count"][10].item() == 0 and torch.equal(rows["observation"][10, 0], rows["observation"][10, 2])
    frames, buffer = _replay_of(rows, capacity=100)
    assert buffer.storage.get(0)["observation"].shape == (1, 32, 32)
    rebuilt = frames.restack(buffer.storage, torch.arange(25))
    # Every row comes back as the stacks the agent saw, episode starts (repeated frames) included.
    assert torch.equal(rebuilt["observation"], rows["observation"])
    assert torch.equal(rebuilt["next", "observation"], rows["next", "observation"])
    drawn = frames.sample(buffer, 64)
    assert drawn["observation"].shape == (64, 3, 32, 32) and drawn["observation"].dtype == torch.uint8


def test_stacked_replay_pads_stacks_whose_older_frames_were_overwritten():
    rows = _stacked_rows(steps=30, episode_steps=100)  # one episode; the storage keeps rows 14..29
    frames, buffer = _replay_of(rows, capacity=16)
    steps = torch.arange(14, 30)
    rebuilt = frames.restack(buffer.storage, steps % 16)
    assert torch.equal(rebuilt["observation"][2:], rows["observation"][16:])
    newest = rows["observation"][:, -1]
    # Rows 14 and 15 reach back past the oldest surviving row: they repeat its frame.
    assert torch.equal(rebuilt["observation"][0], newest[[14, 14, 14]])
    assert torch.equal(rebuilt["observation"][1], newest[[14, 14, 15]])


def test_sac_trains_on_pixels_with_the_shared_encoders(tmp_path):
    # Continuous-action Car Racing through the same pipeline: actor and both critics get a CNN.
    env_id = "CarRacing-v3"
    env = make_env(env_id, gym_env=make_gym_env(env_id, max_episode_steps=30), pixels=CAR_RACING)
    rollout = env.rollout(30, auto_reset=False, tensordict=env.reset(seed=0))
    demo_path = tmp_path / "carracing_continuous.npz"
    DemoSet.from_rollouts([rollout], metadata={"env_id": env_id, "source": "random"}).save(demo_path)
    overrides = ["--data.env_id", env_id, "--model.class_path", "sqil_lightning.SACSQIL", "--model.init_args.encoder", "car_racing_cnn",
                 "--data.demo_path", str(demo_path), "--data.demo_expert", "null"]  # fmt: skip
    main([*_short_fit_args("carracing.yaml", tmp_path / "run", steps=6), *overrides])
    state = torch.load(next((tmp_path / "run").rglob("last.ckpt")), map_location="cpu", weights_only=False)["state_dict"]
    encoders = {key.rsplit(".encoder.", 1)[0] for key in state if ".encoder.0.weight" in key}
    assert any("actor" in key for key in encoders) and any("qvalue" in key for key in encoders)
