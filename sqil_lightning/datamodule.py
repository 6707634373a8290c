"""The SQIL DataModule: env, collector and the pinned-demo replay buffer.

Data flow: demos → relabelled (reward r) → pinned demo partition; collector (current policy) →
relabelled (reward 0) → online partition; `BalancedBatches` → Lightning's fit loop. With the reward
source ``env`` (plain RL, how experts are trained) there are no demos and rows keep the env's reward.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.trainer.states import TrainerFn
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch.utils.data import DataLoader
from torchrl.collectors import BaseCollector, Collector
from torchrl.envs import EnvBase

from sqil_lightning.async_collector import COLLECTORS, make_async_collector, shutdown_collector, worker_seeds
from sqil_lightning.checkpoint_io import checkpoint_dir
from sqil_lightning.demos import DemoFileNotFoundError, DemoSet
from sqil_lightning.envs import env_spaces, has_success, make_env, make_gym_env
from sqil_lightning.errors import ConfigError
from sqil_lightning.frame_replay import StackedFrames
from sqil_lightning.experts import (
    EXPERTS,
    TRAIN_EXPERT_HINT,
    expert_env_id,
    generate_expert_demos,
    is_checkpoint,
    record_checkpoint_demos,
)
from sqil_lightning.minari_demos import load_minari_demos
from sqil_lightning.pixels import PixelPipeline
from sqil_lightning.replay_snapshot import (
    RunPosition,
    checkpoint_snapshot,
    load_snapshot,
    save_snapshot,
    set_rng_states,
    snapshot_dir,
)
from sqil_lightning.resumable_episode import ResumableEpisode
from sqil_lightning.start_states import build_start_shift
from sqil_lightning.replay import (
    REWARD_SOURCES,
    BalancedBatches,
    check_batch_split,
    absorbing_needs_discount,
    keep_env_rewards,
    make_online_buffer,
    make_sqil_buffer,
    relabel_demo_rewards,
    relabel_online_rewards,
)

log = logging.getLogger(__name__)

# Who acts in the agent's rollouts: the learner's sampling policy, or uniformly random actions.
ROLLOUT_POLICIES = ("learner", "uniform")


class SQILDataModule(LightningDataModule):
    """Env, collector and replay for SQIL.

    Args:
        env_id: gymnasium env id.
        reward: ``sqil`` (demo rows reward r, the agent's rows 0: imitation) or ``env`` (the env's
            own reward and no demos: plain soft-Q / SAC, how experts are trained).
        demo_path: demo file (.npz, see `sqil_lightning.demos`). Default:
            ``demos/<env_id>_<demo source>_<demo_episodes>ep[_success]_seed<demo_seed>.npz``.
        demo_expert: what generates the demo file on first use when it is missing: a built-in
            expert (e.g. ``lunarlander_scripted``) or an expert checkpoint (``*.ckpt``, trained
            with ``reward: env``); ``null`` means the file must exist or come from Minari.
        demo_minari: a Minari dataset (id in the local Minari root, or a dataset folder) converted
            into the demo file on first use; needs ``pip install -e ".[minari]"``.
        demo_episodes: episodes the expert records when it generates demos.
        demo_seed: episode i of the demos starts from ``reset(seed=demo_seed + i)``.
        demo_success_only: the expert records only episodes that end in the task's success
            (LunarLander: at rest between the flags), skipping the seeds of failed ones, until it
            has ``demo_episodes``; a failed demo would be rewarded like a good one.
        demo_reward: the constant reward r of demo transitions (paper Algorithm 1).
        absorbing_reward: give demo transitions into a terminal state r/(1-γ) (paper sec. 3.3).
        gamma: discount, linked from ``model.gamma`` (the absorbing reward and ``n_step`` windows need it).
        demo_fraction: exact fraction of demo rows in every batch (paper: balanced, 0.5).
        batch_size: transitions per gradient step.
        online_capacity: size of the online partition; the oldest agent transitions go first.
        initial_frames: agent env steps collected before the first gradient step.
        rollout_frames: env steps each `PeriodicRollout` adds.
        sample_chunk: batches drawn per buffer `sample()` call (a speed knob, see `BalancedBatches`).
        updates_per_step: gradient updates per Lightning step (a speed knob, see `OffPolicyLearner`):
            the same updates on the same batches in the same order, with Lightning's per-step hooks
            paid once for all of them. Keep ``rollout.every_n_steps`` a multiple of it (rollouts
            then fall between the same updates as with 1); ``trainer.max_steps`` and
            ``checkpoint.every_n_train_steps`` must be multiples of it.
        n_step: rows per multi-step window of the soft Bellman target (`sqil_lightning.n_step`):
            Σ_{i<k} γ^i r_{t+i} + γ^k V(s_{t+k}), the window cut at an episode's end (k ≤ n_step),
            the same rule for demo and agent rows; 1 is the paper's one-step backup. Not with
            frame-stacked pixels.
        pretrain_steps: linked from ``pretrain.steps``: the first gradient updates train on
            batches of demo rows alone, before the first env step (`BalancedBatches`).
        seed: seed of the training env.
        eval_seed: evaluation episode i starts from ``reset(seed=eval_seed + i)``, apart from the
            demo seeds, so the agent is tested on start states the demos never began at.
        eval_episodes: episodes that the `validate` and `test` subcommands play.
        start_shift: shifted start states for the agent's own episodes (the paper's S0^train):
            ``{class_path: …, init_args: {…}}`` naming a shift (`sqil_lightning.start_states`);
            ``null`` keeps the env's own starts (S0^demo). Demos always start from S0^demo;
            evaluation then reports both.
        rollout_policy: who acts in the agent's rollouts: ``learner`` (Algorithm 1 line 6) or
            ``uniform`` (uniformly random actions: the paper's π = Unif ablation, sec. 5.5).
        pixels: image observations (`sqil_lightning.pixels`): ``{size, grayscale, frame_stack}``
            turns the env's RGB frames into uint8 [C, size, size] stacks; ``null`` for vectors.
        collector: where the agent's env steps happen: ``sync`` (in the training process, between
            updates) or ``async`` (a TorchRL worker process collects the next batch while the
            learner updates, `sqil_lightning.async_collector`; the same env steps per update, acting
            with weights up to one rollout interval older; CPU learners only; a resumed run starts
            a fresh training episode).
    """

    def __init__(
        self,
        env_id: str = "LunarLander-v3",
        reward: str = "sqil",
        demo_path: str | None = None,
        demo_expert: str | None = "lunarlander_scripted",
        demo_minari: str | None = None,
        demo_episodes: int = 100,
        demo_seed: int = 0,
        demo_success_only: bool = False,
        demo_reward: float = 1.0,
        absorbing_reward: bool = True,
        gamma: float = 0.97,
        demo_fraction: float = 0.5,
        batch_size: int = 256,
        online_capacity: int = 100_000,
        initial_frames: int = 1_000,
        rollout_frames: int = 4,
        sample_chunk: int = 32,
        updates_per_step: int = 1,
        n_step: int = 1,
        pretrain_steps: int = 0,
        seed: int = 0,
        eval_seed: int = 1_000_000,
        eval_episodes: int = 100,
        start_shift: dict[str, Any] | None = None,
        rollout_policy: str = "learner",
        pixels: dict[str, Any] | None = None,
        collector: str = "sync",
    ) -> None:
        super().__init__()
        self.pixels = PixelPipeline.from_config(pixels)
        if n_step > 1 and self.pixels is not None and self.pixels.frame_stack > 1:
            raise ConfigError(f"data.n_step = {n_step} needs one frame a row; it does not work with data.pixels.frame_stack > 1")
        self.spaces = env_spaces(env_id, self.pixels)
        self.start_shift = build_start_shift(start_shift)
        if rollout_policy not in ROLLOUT_POLICIES:
            raise ConfigError(f"data.rollout_policy = {rollout_policy!r} is invalid; choose one of {list(ROLLOUT_POLICIES)}")
        if collector not in COLLECTORS:
            raise ConfigError(f"data.collector = {collector!r} is invalid; choose one of {list(COLLECTORS)}")
        if not 0.0 < demo_fraction < 1.0:
            raise ConfigError(f"data.demo_fraction = {demo_fraction} is invalid; it must lie in (0, 1)")
        for name, value in (
            ("demo_episodes", demo_episodes),
            ("batch_size", batch_size),
            ("online_capacity", online_capacity),
            ("initial_frames", initial_frames),
            ("rollout_frames", rollout_frames),
            ("sample_chunk", sample_chunk),
            ("updates_per_step", updates_per_step),
            ("n_step", n_step),
            ("eval_episodes", eval_episodes),
        ):
            if value < 1:
                raise ConfigError(f"data.{name} = {value} is invalid; it must be a positive integer")
        if pretrain_steps < 0 or (pretrain_steps and reward != "sqil"):
            raise ConfigError(f"pretrain.steps = {pretrain_steps} is invalid; it must be 0 or more, and 0 without demos (data.reward env)")
        if reward not in REWARD_SOURCES:
            raise ConfigError(f"data.reward = {reward!r} is invalid; choose one of {list(REWARD_SOURCES)}")
        if reward == "sqil":
            check_batch_split(batch_size, demo_fraction)
            self._check_demo_settings(env_id, demo_path, demo_expert, demo_minari, absorbing_reward, gamma)
            self._check_demo_reward(demo_reward, absorbing_reward, gamma)
        self.save_hyperparameters()
        # Names this run's replay snapshots (`replay_snapshot`); the same on every rank (`setup`)
        # and kept by a resume, so a lineage of resumed runs shares one.
        self.run_id = uuid.uuid4().hex[:12]
        self.env_steps = 0
        self.buffer = None
        self._batches: BalancedBatches | None = None
        self._collector: BaseCollector | None = None
        self._collector_iter: Iterator[TensorDictBase] | None = None
        self._recent_returns: deque[float] = deque(maxlen=20)
        self._recent_successes: deque[bool] = deque(maxlen=20)
        self._eval_env: EnvBase | None = None
        self._frames: StackedFrames | None = None  # set in `setup` for frame-stacked pixels
        self._restored_rng: dict[str, Any] | None = None  # RNG states of the checkpoint resumed from
        self._episode: ResumableEpisode | None = None  # the training env, whose episode a checkpoint saves
        self._restored_episode: dict[str, Any] | None = None
        self._resumed_return = 0.0  # return of the resumed episode's steps before the checkpoint

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.spaces.observation_shape)

    @staticmethod
    def _check_demo_settings(
        env_id: str, demo_path: str | None, demo_expert: str | None, demo_minari: str | None, absorbing: bool, gamma: float
    ) -> None:
        if absorbing and gamma >= 1.0:
            raise ConfigError(absorbing_needs_discount(gamma))
        if demo_expert is not None and demo_minari is not None:
            raise ConfigError("set at most one of data.demo_expert and data.demo_minari: both would make the demo file")
        if demo_path is None and demo_expert is None and demo_minari is None:
            raise ConfigError(f"data.reward = sqil needs demos. {SQILDataModule.demo_sources_help(env_id)}")

    @staticmethod
    def _check_demo_reward(demo_reward: float, absorbing: bool, gamma: float) -> None:
        # Rewards are stored as float32: r (and r/(1-γ) into terminal states) must fit there.
        largest = demo_reward / (1.0 - gamma) if absorbing else demo_reward
        if not (demo_reward >= 0 and abs(largest) <= np.finfo(np.float32).max):
            raise ConfigError(
                f"data.demo_reward = {demo_reward} is invalid; it must be a non-negative number whose "
                f"{'absorbing-state reward r/(1-gamma)' if absorbing else 'value'} fits in float32 (paper: r = 1 to 100)"
            )

    @staticmethod
    def demo_sources_help(env_id: str) -> str:
        """The ways a user can get demos, for error messages."""
        return (
            "Ways to get demos: (1) data.demo_path: an existing .npz demo file; "
            f"(2) data.demo_expert: a built-in expert ({', '.join(sorted(EXPERTS))}) or an expert checkpoint (*.ckpt) "
            f"that records the demo file on first use ({TRAIN_EXPERT_HINT}); "
            "(3) write a demo file with `python -m sqil_lightning demos generate --expert NAME --out FILE.npz` "
            "or `python -m sqil_lightning demos record --checkpoint CKPT --episodes N --out FILE.npz`; "
            "(4) data.demo_minari: a local Minari dataset id or folder (pip install -e \".[minari]\")."
        )

    @property
    def action_space(self) -> dict[str, Any]:
        """The env's actions for the learner: ``{"n": N}`` (discrete) or ``{"low": [...], "high": [...]}`` (Box)."""
        if self.spaces.discrete:
            return {"n": int(self.spaces.num_actions)}
        return {
            "low": [float(x) for x in self.spaces.action_low.reshape(-1)],
            "high": [float(x) for x in self.spaces.action_high.reshape(-1)],
        }

    @property
    def uses_demos(self) -> bool:
        """Whether this run imitates (reward source ``sqil``) and so needs demos."""
        return self.hparams.reward == "sqil"

    @property
    def resolved_demo_path(self) -> Path:
        hp = self.hparams
        if hp.demo_path is not None:
            return Path(hp.demo_path)
        source = hp.demo_expert if hp.demo_expert is not None else f"minari-{hp.demo_minari}"
        # A checkpoint or dataset path becomes one file-name-safe token.
        token = Path(source).with_suffix("").as_posix().strip("./").replace("/", "-")
        outcome = "_success" if hp.demo_success_only else ""
        return Path("demos") / f"{hp.env_id}_{token}_{hp.demo_episodes}ep{outcome}_seed{hp.demo_seed}.npz"

    def load_demos(self) -> DemoSet:
        """The demo file, made from ``demo_expert`` or ``demo_minari`` if missing, checked against the env."""
        path = self.resolved_demo_path
        if not path.exists():
            self._make_demo_file(path)
        demos = DemoSet.load(path)
        demos.check_against(self.spaces, self.hparams.env_id, source=f"demo file {path}")
        return demos

    def _make_demo_file(self, path: Path) -> None:
        hp = self.hparams
        if hp.demo_minari is not None:
            log.info("converting Minari dataset %s into %s", hp.demo_minari, path)
            demos = load_minari_demos(hp.demo_minari)
            demos.check_against(self.spaces, hp.env_id, source=f"Minari dataset {hp.demo_minari}")
            demos.save(path)
        elif hp.demo_expert is not None and is_checkpoint(hp.demo_expert):
            log.info("recording %d episodes of %s into %s", hp.demo_episodes, hp.demo_expert, path)
            record_checkpoint_demos(
                hp.demo_expert,
                hp.demo_episodes,
                hp.demo_seed,
                path,
                expected_env_id=hp.env_id,
                pixels=self.pixels,
                success_only=hp.demo_success_only,
            )
        elif hp.demo_expert is not None:
            # Checked here, not in __init__, so a model/env mismatch (the likelier mistake) is reported first.
            if expert_env_id(hp.demo_expert) != hp.env_id:
                raise ConfigError(
                    f"data.demo_expert = {hp.demo_expert!r} acts in {expert_env_id(hp.demo_expert)}, not data.env_id = {hp.env_id!r}"
                )
            log.info("generating %d %s demo episodes into %s", hp.demo_episodes, hp.demo_expert, path)
            generate_expert_demos(
                hp.demo_expert, hp.demo_episodes, hp.demo_seed, path, pixels=self.pixels, success_only=hp.demo_success_only
            )
        else:
            raise DemoFileNotFoundError(f"data.demo_path = {path} does not exist. {self.demo_sources_help(hp.env_id)}")

    def prepare_data(self) -> None:
        # Runs once per node before any `setup`: make the demo file here, not in every rank.
        if self.uses_demos:
            self.load_demos()

    def setup(self, stage: str) -> None:
        if self.buffer is not None:
            return
        if self.trainer is not None and self.trainer.world_size > 1:
            self.run_id = self.trainer.strategy.broadcast(self.run_id)  # rank 0's, for every rank
        hp = self.hparams
        stack = self.pixels.frame_stack if self.pixels is not None else 1
        # Stacked frames are stored one frame a row and re-stacked when drawn (`frame_replay`).
        self._frames = StackedFrames(stack, self.observation_shape[0] // stack) if stack > 1 else None
        if self.uses_demos:
            demo_set = self.load_demos()
            demos = relabel_demo_rewards(demo_set.to_tensordict(), hp.demo_reward, hp.gamma, hp.absorbing_reward)
            if self._frames is not None:
                demos = self._frames.compact(demos, torch.as_tensor(demo_set.steps_into_episode()))
            self.buffer = make_sqil_buffer(demos, hp.online_capacity, hp.demo_fraction, hp.batch_size)
        else:
            # Image frames are stored as uint8 (1 byte each), vector observations as float32.
            observation_bytes = int(np.prod(self.observation_shape)) * (1 if self.pixels is not None else 4) // stack
            self.buffer = make_online_buffer(hp.online_capacity, observation_bytes)
        self._batches = BalancedBatches(
            self.buffer, hp.batch_size, hp.sample_chunk, self._frames, hp.updates_per_step, hp.n_step, hp.gamma, self._start_online
        )

    def make_env(self, seed: int) -> EnvBase:
        """A fresh env of the configured task (for evaluation and rollouts)."""
        return make_env(self.hparams.env_id, seed=seed, pixels=self.pixels)

    @property
    def eval_env(self) -> EnvBase:
        """One env kept for evaluation episodes (each episode reseeds it)."""
        if self._eval_env is None:
            self._eval_env = self.make_env(self.hparams.eval_seed)
        return self._eval_env

    def _episode_seeds(self, stage: TrainerFn) -> DataLoader:
        # `fit` evaluates in the Evaluation callback, so its validation loop gets no episodes.
        episodes = self.hparams.eval_episodes if self.trainer is None or self.trainer.state.fn == stage else 0
        return DataLoader(torch.arange(episodes) + self.hparams.eval_seed, batch_size=1)

    def val_dataloader(self) -> DataLoader:
        """Evaluation episode seeds, one per batch, for `python -m sqil_lightning validate`."""
        return self._episode_seeds(TrainerFn.VALIDATING)

    def test_dataloader(self) -> DataLoader:
        """Evaluation episode seeds, one per batch, for `python -m sqil_lightning test`."""
        return self._episode_seeds(TrainerFn.TESTING)

    def train_dataloader(self) -> BalancedBatches:
        # The collector is built from here (`_start_online`), after the model is on its device, and
        # acts with the module's own Q-network, so rollouts always use the latest weights.
        self._check_step_multiples()
        if self.trainer.world_size > 1 and self._restored_rng is None:
            # seed_everything gave every rank the same RNG state, so every rank would draw the same
            # replay indices and exploration noise. The weights are already synced by DDP here.
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)
        # Demo pretraining steps no env: its batches come first, and the agent's first rows only
        # when the first balanced batch is drawn. Of the pretraining batches, those trained on and
        # those drawn but not trained yet (restored by a resume) are done.
        drawn = self.trainer.global_step + len(self._batches.untrained())
        self._batches.pretrain_left = max(0, self.hparams.pretrain_steps - drawn)
        if self._batches.pretrain_left == 0:
            self._start_online()
        if self._restored_rng is not None:
            # Applied last: building the collector runs the policy once (consuming random numbers),
            # which the checkpointed run had done long before it saved these states.
            set_rng_states(self._restored_rng)
            self._restored_rng = None
        return self._batches

    def _start_online(self) -> None:
        """Build the collector and fill the online partition up to ``initial_frames`` (a resumed
        run's restored replay usually holds that many already)."""
        module = self.trainer.lightning_module
        # None makes TorchRL's collector act uniformly at random from the env's action spec.
        policy = module.policy(deterministic=False) if self.hparams.rollout_policy == "learner" else None
        self.start_collector(policy, module.device)
        while len(self._batches.online) < self.hparams.initial_frames:
            self.collect()

    def _check_step_multiples(self) -> None:
        """Step counts Lightning tests with ``global_step % n`` must be multiples of ``updates_per_step``,
        which ``global_step`` advances by."""
        per_step = self.hparams.updates_per_step
        counts = {"trainer.max_steps": self.trainer.max_steps}
        for callback in self.trainer.checkpoint_callbacks:
            # ModelCheckpoint keeps its interval only in this private attribute (no public getter).
            counts["checkpoint.every_n_train_steps"] = callback._every_n_train_steps
        for name, count in counts.items():
            if count > 0 and count % per_step:
                raise ConfigError(
                    f"{name} = {count} is not a multiple of data.updates_per_step = {per_step}; "
                    f"global_step moves {per_step} updates at a time, so use a multiple (e.g. {count - count % per_step + per_step})"
                )

    def start_collector(self, policy: TensorDictModuleBase | None, policy_device: torch.device | str) -> None:
        """(Re)build the TorchRL collector that `collect` steps, acting with ``policy`` (None: uniformly random)."""
        self._stop_collector()
        # Under DDP each rank explores from its own env seed into its own online partition.
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if self.hparams.collector == "async":
            self._start_async_collector(policy, torch.device(policy_device), rank)
        else:
            self._start_sync_collector(policy, policy_device, rank)
        self._collector_iter = iter(self._collector)

    def _start_sync_collector(self, policy: TensorDictModuleBase | None, policy_device: torch.device | str, rank: int) -> None:
        env_id = self.hparams.env_id
        self._episode = ResumableEpisode(make_gym_env(env_id, start_shift=self.start_shift))
        seed = self.hparams.seed + rank
        if self._restored_episode is not None:
            # Continue the episode the checkpoint interrupted; its saved RNG state replaces the seed.
            self._episode.resume(self._restored_episode)
            self._restored_episode, seed = None, None
        self._collector = Collector(
            make_env(env_id, seed=seed, gym_env=self._episode, pixels=self.pixels),
            policy,
            frames_per_batch=self.hparams.rollout_frames,
            total_frames=-1,
            policy_device=policy_device,
            storing_device="cpu",
            auto_register_policy_transforms=False,  # the policy is stateless: no InitTracker needed
        )
        self._resumed_return = self._episode.replayed_return

    def _start_async_collector(self, policy: TensorDictModuleBase | None, policy_device: torch.device, rank: int) -> None:
        if policy is not None and policy_device.type != "cpu":
            raise ConfigError(
                f"data.collector = async shares the learner's weights with its worker in CPU memory, but the learner "
                f"is on {policy_device}; use trainer.accelerator cpu, or data.collector sync"
            )
        if self._restored_episode is not None:
            # The checkpoint's half-played episode can only be replayed into an env of this process.
            log.info("data.collector async: the training env starts a fresh episode instead of the checkpoint's")
        # The env lives in the worker, which runs up to a batch ahead of the learner's step: no
        # episode of this process to save, so a resumed async run starts a fresh one (`state_dict`).
        self._episode, self._restored_episode, self._resumed_return = None, None, 0.0
        hp = self.hparams
        env_seed, torch_seed = worker_seeds(hp.seed, rank, self.env_steps)
        make_env_fn = partial(make_env, hp.env_id, seed=env_seed, start_shift=self.start_shift, pixels=self.pixels)
        self._collector = make_async_collector(make_env_fn, policy, hp.rollout_frames, torch_seed)

    def _stop_collector(self) -> None:
        if self._collector is not None:
            shutdown_collector(self._collector)
            self._collector, self._collector_iter = None, None

    def collect(self) -> dict[str, float]:
        """Add ``rollout_frames`` on-policy env steps to the online partition (Algorithm 1, line 6).

        Under SQIL their reward is relabelled to 0; with the reward source ``env`` it is kept.

        Returns statistics of the episodes that ended in these steps (empty if none ended).
        """
        if self._collector_iter is None:
            return {}  # demo pretraining: no env yet (`train_dataloader`)
        # With data.collector async this batch was collected by the worker while the learner made
        # the updates since the previous rollout: at most one batch behind (`async_collector`).
        batch = next(self._collector_iter)
        rows = relabel_online_rewards(batch) if self.uses_demos else keep_env_rewards(batch)
        if self._frames is not None:
            rows = self._frames.compact(rows, batch["step_count"].reshape(-1))
        self.buffer.extend(rows)
        self.env_steps += batch.numel()
        done = batch["next", "done"].reshape(-1)
        if not done.any():
            return {}
        returns = batch["next", "episode_reward"].reshape(-1)[done].tolist()
        returns[0] += self._resumed_return  # the first episode to end may be one a resume continued
        self._resumed_return = 0.0
        self._recent_returns.extend(returns)
        if has_success(self.hparams.env_id):
            self._recent_successes.extend(batch["next", "success"].reshape(-1)[done].bool().tolist())
        return self.rollout_statistics()

    def rollout_statistics(self) -> dict[str, float]:
        """Mean return (and success rate) of the last 20 training episodes."""
        stats = {"train/episode_return": sum(self._recent_returns) / len(self._recent_returns)}
        if self._recent_successes:
            stats["train/success_rate"] = sum(self._recent_successes) / len(self._recent_successes)
        return stats

    def on_exception(self, exception: BaseException) -> None:
        # A failed or stopped fit (SIGTERM, Ctrl+C, an error) skips `teardown`; the async
        # collector's worker process must still go.
        self._stop_collector()

    def teardown(self, stage: str) -> None:
        self._stop_collector()
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None

    def state_dict(self) -> dict[str, Any]:
        """Counters and recent episode statistics, plus the run id and step of this checkpoint's
        replay snapshot, written beside it (see `replay_snapshot`)."""
        state: dict[str, Any] = {
            "env_steps": self.env_steps,
            "stacked_frames": self._frames.state_dict() if self._frames is not None else None,
            "recent_returns": list(self._recent_returns),
            "recent_successes": list(self._recent_successes),
            "run_id": self.run_id,
        }
        if self._batches is None or self.trainer is None:
            return state
        step, rank = self.trainer.global_step, self.trainer.global_rank
        position = RunPosition(
            # None with data.collector async: a resumed run then starts a fresh episode.
            episode=self._episode.episode_state() if self._episode is not None else None,
            untrained=self._batches.untrained(),
        )
        directory = snapshot_dir(Path(checkpoint_dir(self.trainer)), self.run_id, step, rank)  # each rank its own
        save_snapshot(self._batches.online, directory, position, self.run_id, step)
        state.update(replay_step=step)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.env_steps = int(state_dict["env_steps"])
        if self._frames is not None:
            self._frames.load_state_dict(state_dict["stacked_frames"])
        self._recent_returns.extend(state_dict.get("recent_returns", []))
        self._recent_successes.extend(state_dict.get("recent_successes", []))
        # The resumed run continues its lineage: same run id, so its snapshots stay in one folder.
        # A checkpoint from before run ids has none; its snapshot then lies in replay/ itself.
        run_id = state_dict.get("run_id")
        self.run_id = run_id if run_id is not None else self.run_id
        if "replay_step" in state_dict:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            # Beside the checkpoint being restored, never a path recorded inside it: a copied or
            # moved checkpoint must not pick up the rows another run has since written there.
            ckpt_path = getattr(self.trainer, "ckpt_path", None) if self.trainer is not None else None
            if ckpt_path is None:
                raise ConfigError("restoring the data module's replay needs the checkpoint's path (trainer.fit(ckpt_path=...))")
            directory = checkpoint_snapshot(ckpt_path, state_dict, rank)
            position = load_snapshot(self._batches.online, directory, run_id, state_dict["replay_step"])
            self._batches.restore_untrained(position.untrained)
            self._restored_episode = position.episode
            self._restored_rng = position.rng
