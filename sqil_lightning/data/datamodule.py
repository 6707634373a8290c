"""The SQIL data module: assembles the task, the demos, the replay and the agent's experience.

`setup` and `connect` are short sequences of ``make_*`` steps, in the manner of TorchRL's sota
scripts; each job lives in its own object (`DemoSource`, `Experience`, `ReplayBatches`).
"""

from __future__ import annotations

import uuid
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader

from sqil_lightning.data.experience import Acting, Experience
from sqil_lightning.data.frame_replay import StackedFrames
from sqil_lightning.data.replay import ReplayBatches, make_replay
from sqil_lightning.data.settings import DATA_SETTINGS_DOC, check_data_settings
from sqil_lightning.data.snapshot import set_rng_states
from sqil_lightning.demos.sources import DemoSource
from sqil_lightning.envs.make import env_spaces
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.envs.start_states import build_start_shift
from sqil_lightning.envs.task import Task


class SQILDataModule(LightningDataModule):
    __doc__ = DATA_SETTINGS_DOC  # beside the checks of the same keys (`sqil_lightning.data.settings`)

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
        demo_fraction: float = 0.5,
        batch_size: int = 256,
        online_capacity: int = 100_000,
        initial_env_steps: int = 1_000,
        rollout_env_steps: int = 4,
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
        pipeline = PixelPipeline.from_config(pixels)
        check_data_settings(locals(), pipeline)
        self.save_hyperparameters()
        spaces = env_spaces(env_id, pipeline)
        self.task = Task(env_id, spaces, pipeline, build_start_shift(start_shift), seed, eval_seed)
        self.demos = DemoSource(env_id, spaces, pipeline, demo_path, demo_expert, demo_minari, demo_episodes, demo_seed, demo_success_only)
        if self.uses_demos:
            self.demos.check()
        # Names this run's replay snapshots; the same on every rank (`setup`) and kept by a resume.
        self.run_id = uuid.uuid4().hex[:12]
        self.experience: Experience | None = None
        self._acting: Acting | None = None
        self._frame_stack = pipeline.frame_stack if pipeline is not None else 1

    @property
    def uses_demos(self) -> bool:
        """Whether this run imitates (reward source ``sqil``) and so needs demos."""
        return self.hparams.reward == "sqil"

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.task.spaces.observation_shape)

    @property
    def action_space(self) -> dict[str, Any]:
        """The env's actions for the learner (linked into ``model.init_args.action_space``)."""
        return self.task.spaces.action_space_of_learner()

    def prepare_data(self) -> None:
        # Runs once per node before any `setup`: make the demo file here, not in every rank.
        if self.uses_demos:
            self.demos.load()

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.world_size > 1:
            self.run_id = self.trainer.strategy.broadcast(self.run_id)  # rank 0's, for every rank

    def connect(self, acting: Acting) -> None:
        """Hand over the learner: its γ relabels the demos (the absorbing reward) and folds n-step
        windows, and its policy acts in the agent's rollouts. Builds the replay and the experience."""
        self._acting = acting  # the learner of this fit: a data module kept across fits acts with the newest
        if self.experience is not None:
            return
        hp = self.hparams
        frames = StackedFrames.for_stack(self._frame_stack, self.observation_shape)
        demo_set = self.demos.load() if self.uses_demos else None
        buffer = make_replay(demo_set, acting.discount, frames, self.task.pixels is not None, self.observation_shape,
                             hp.demo_reward, hp.absorbing_reward, hp.online_capacity, hp.demo_fraction, hp.batch_size)
        n_step = hp.n_step if acting.discount is not None else 1  # a learner without γ reads no reward (BC)
        batches = ReplayBatches(buffer, hp.batch_size, hp.sample_chunk, frames, hp.updates_per_step, n_step, acting.discount, self._start_online)
        self.experience = Experience(self.task, buffer, batches, hp.reward, hp.rollout_env_steps, hp.collector, frames, self.run_id)

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

    def train_dataloader(self) -> ReplayBatches:
        experience = self.experience
        if self.trainer.world_size > 1 and experience.restored_rng is None:
            # seed_everything gave every rank the same RNG state, so every rank would draw the same
            # replay indices and exploration noise. The weights are already synced by DDP here.
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)
        # Demo pretraining steps no env: its batches come first, and the agent's first rows only when
        # the first balanced batch is drawn.
        if experience.batches.begin(self.hparams.pretrain_steps, updates_done=self.trainer.global_step):
            self._start_online()
        if experience.restored_rng is not None:
            # Applied last: building the collector runs the policy once (consuming random numbers),
            # which the checkpointed run had done long before it saved these states.
            set_rng_states(experience.restored_rng)
            experience.restored_rng = None
        return experience.batches

    def _start_online(self) -> None:
        """Start the collector with the learner's policy and fill the online partition up to
        ``initial_env_steps`` (a resumed run's restored replay usually holds that many already)."""
        # None makes TorchRL's collector act uniformly at random from the env's action spec.
        policy = self._acting.policy(deterministic=False) if self.hparams.rollout_policy == "learner" else None
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.experience.start(policy, self._acting.device, rank)
        while len(self.experience.batches.online) < self.hparams.initial_env_steps:
            self.experience.collect()

    def on_exception(self, exception: BaseException) -> None:
        # A failed or stopped fit (SIGTERM, Ctrl+C, an error) skips `teardown`; the async
        # collector's worker process must still go.
        self.teardown("fit")

    def teardown(self, stage: str) -> None:
        if self.experience is not None:
            self.experience.stop()

    def state_dict(self) -> dict[str, Any]:
        """Counters and recent episode statistics, and the step of this checkpoint's replay snapshot
        (written beside it by the `ReplaySnapshot` callback); no file is written here."""
        if self.experience is None or self.trainer is None:
            return {"run_id": self.run_id}
        return {**self.experience.state_dict(), "replay_step": self.trainer.global_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.experience.load_state_dict(state_dict)
        self.run_id = self.experience.run_id
        if "replay_step" in state_dict:
            # Beside the checkpoint being restored, never a path recorded inside it: a copied or
            # moved checkpoint must not pick up the rows another run has since written there.
            rank = self.trainer.global_rank if self.trainer is not None else 0
            self.experience.load_snapshot(self.trainer.ckpt_path, state_dict, rank)
