"""The ``data:`` section: what each key means (the data module's docstring, hence `fit --help`)
and the checks made when a config is read, before any env or file is touched."""

from __future__ import annotations

from sqil_lightning.data.collectors import COLLECTORS
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.errors import ConfigError
from sqil_lightning.sqil import REWARD_SOURCES, check_batch_split, check_demo_reward

# Who acts in the agent's rollouts: the learner's sampling policy, or uniformly random actions.
ROLLOUT_POLICIES = ("learner", "uniform")

DATA_SETTINGS_DOC = """Env, demos, collector and the pinned-demo replay of a SQIL run.

    Data flow: demos → relabelled (reward r) → pinned demo partition; collector (current policy) →
    relabelled (reward 0) → online partition; `ReplayBatches` → Lightning's fit loop. With the reward
    source ``env`` (plain RL, how experts are trained) there are no demos and rows keep the env's reward.
    The learner hands its discount γ and its policy over with `connect`.

    Args:
        env_id: gymnasium env id.
        reward: ``sqil`` (demo rows reward r, the agent's rows 0: imitation) or ``env`` (the env's
            own reward and no demos: plain soft-Q / SAC, how experts are trained).
        demo_path: demo file (.npz, see `sqil_lightning.demos.store`). Default:
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
        absorbing_reward: give demo transitions into a terminal state r/(1-γ) (paper sec. 3.3),
            with the learner's own γ.
        demo_fraction: exact fraction of demo rows in every batch (paper: balanced, 0.5).
        batch_size: transitions per gradient step.
        online_capacity: size of the online partition; the oldest agent transitions go first.
        initial_env_steps: agent env steps collected before the first gradient step.
        rollout_env_steps: env steps each `PeriodicRollout` adds.
        sample_chunk: batches drawn per buffer `sample()` call (a speed knob, see `ReplayBatches`).
        updates_per_step: gradient updates per Lightning step (a speed knob, see `OffPolicyLearner`):
            the same updates on the same batches in the same order, with Lightning's per-step hooks
            paid once for all of them. Keep ``rollout.every_n_steps`` a multiple of it (rollouts
            then fall between the same updates as with 1); ``trainer.max_steps`` and
            ``checkpoint.every_n_train_steps`` must be multiples of it.
        n_step: rows per multi-step window of the soft Bellman target (`sqil_lightning.data.n_step`):
            Σ_{i<k} γ^i r_{t+i} + γ^k V(s_{t+k}), the window cut at an episode's end (k ≤ n_step),
            the same rule for demo and agent rows; 1 is the paper's one-step backup. Not with
            frame-stacked pixels.
        pretrain_steps: linked from ``pretrain.steps``: the first gradient updates train on
            batches of demo rows alone, before the first env step (`ReplayBatches`).
        seed: seed of the training env.
        eval_seed: evaluation episode i starts from ``reset(seed=eval_seed + i)``, apart from the
            demo seeds, so the agent is tested on start states the demos never began at.
        eval_episodes: episodes that the `validate` and `test` subcommands play.
        start_shift: shifted start states for the agent's own episodes (the paper's S0^train):
            ``{class_path: …, init_args: {…}}`` naming a shift (`sqil_lightning.envs.start_states`);
            ``null`` keeps the env's own starts (S0^demo). Demos always start from S0^demo;
            evaluation then reports both.
        rollout_policy: who acts in the agent's rollouts: ``learner`` (Algorithm 1 line 6) or
            ``uniform`` (uniformly random actions: the paper's π = Unif ablation, sec. 5.5).
        pixels: image observations (`sqil_lightning.envs.pixels`): ``{size, grayscale, frame_stack}``
            turns the env's RGB frames into uint8 [C, size, size] stacks; ``null`` for vectors.
        collector: where the agent's env steps happen: ``sync`` (in the training process, between
            updates) or ``async`` (a TorchRL worker process collects the next batch while the
            learner updates, `sqil_lightning.data.collectors`; the same env steps per update, acting
            with weights up to one rollout interval older; CPU learners only; a resumed run starts
            a fresh training episode).
    """

# Keys that must be positive integers.
POSITIVE = (
    "demo_episodes", "batch_size", "online_capacity", "initial_env_steps", "rollout_env_steps",
    "sample_chunk", "updates_per_step", "n_step", "eval_episodes",
)  # fmt: skip


def check_data_settings(settings: dict, pixels: PixelPipeline | None) -> None:
    """Refuse a ``data:`` section that no run could train with, naming the key and what is valid."""
    if settings["n_step"] > 1 and pixels is not None and pixels.frame_stack > 1:
        raise ConfigError(f"data.n_step = {settings['n_step']} needs one frame a row; it does not work with data.pixels.frame_stack > 1")
    for key, valid in (("rollout_policy", ROLLOUT_POLICIES), ("collector", COLLECTORS)):
        if settings[key] not in valid:
            raise ConfigError(f"data.{key} = {settings[key]!r} is invalid; choose one of {list(valid)}")
    if not 0.0 < settings["demo_fraction"] < 1.0:
        raise ConfigError(f"data.demo_fraction = {settings['demo_fraction']} is invalid; it must lie in (0, 1)")
    for key in POSITIVE:
        if settings[key] < 1:
            raise ConfigError(f"data.{key} = {settings[key]} is invalid; it must be a positive integer")
    pretrain, reward = settings["pretrain_steps"], settings["reward"]
    if pretrain < 0 or (pretrain and reward != "sqil"):
        raise ConfigError(f"pretrain.steps = {pretrain} is invalid; it must be 0 or more, and 0 without demos (data.reward env)")
    if reward not in REWARD_SOURCES:
        raise ConfigError(f"data.reward = {reward!r} is invalid; choose one of {list(REWARD_SOURCES)}")
    if reward == "sqil":
        check_batch_split(settings["batch_size"], settings["demo_fraction"])
        # γ is the learner's and arrives with it (`connect`); r must fit float32 whatever γ is.
        check_demo_reward(settings["demo_reward"], None, settings["absorbing_reward"])
