"""Periodic and final evaluation of the learner, logged through Lightning's logger."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from sqil_lightning.callbacks.step_interval import intervals_passed
from sqil_lightning.envs.policy_evaluation import EvalResult, evaluate_policy
from sqil_lightning.envs.video import render_episode, save_gif
from sqil_lightning.errors import ConfigError

VIDEO_HINT = "MuJoCo renders off-screen with MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU, needs OSMesa)"

MODES = ("deterministic", "stochastic")


class Evaluation(Callback):
    """Evaluate every ``every_n_steps`` gradient steps and once more, longer, at the end of fit.

    Metrics are logged as ``eval/<how>/return``, ``eval/<how>/success_rate`` and
    ``eval/<how>/episode_length``, where <how> says how the policy acted: ``greedy`` (argmax Q),
    ``mean_action`` (SAC's deterministic action) or ``stochastic`` (sampling the policy the agent
    trains with). The final evaluation is written to ``<log_dir>/result.json``. The periodic
    figures are also the trainer's callback metrics, so ``checkpoint.monitor:
    eval/greedy/success_rate`` (with ``mode: max``, ``save_top_k: 1``) keeps the checkpoint of the
    best evaluation.

    Args:
        every_n_steps: gradient steps between evaluations.
        episodes: episodes per periodic evaluation.
        final_episodes: episodes of the evaluation at the end of fit (0 skips it).
        modes: which policies to evaluate, any of ``deterministic`` (greedy / mean action) and
            ``stochastic``.
        video_every_n_evaluations: every n-th evaluation (rank 0) also renders its first episode
            of each mode into ``<trainer.default_root_dir>/videos/`` as a GIF and logs it to any
            W&B logger as ``eval/<how>/video``; 0 never renders (see `sqil_lightning.envs.video`).

    Episode i of every evaluation starts from ``reset(seed=data.eval_seed + i)``.
    """

    def __init__(
        self,
        every_n_steps: int = 5_000,
        episodes: int = 10,
        final_episodes: int = 100,
        modes: list[str] = ["deterministic"],
        video_every_n_evaluations: int = 0,
    ) -> None:
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ConfigError(f"evaluation.modes = {modes} is invalid; choose one or more of {list(MODES)}")
        if every_n_steps < 1 or episodes < 1 or final_episodes < 0 or video_every_n_evaluations < 0:
            raise ConfigError(
                "evaluation.every_n_steps and evaluation.episodes must be positive, "
                "evaluation.final_episodes and evaluation.video_every_n_evaluations non-negative"
            )
        self.every_n_steps = every_n_steps
        self.episodes = episodes
        self.final_episodes = final_episodes
        self.modes = list(modes)
        self.video_every_n_evaluations = video_every_n_evaluations
        self.evaluations_done = 0
        self.latest_metrics: dict[str, float] = {}  # the latest evaluation's eval/… figures
        self.result_path: Path | None = None
        self._fit_start = time.perf_counter()
        self._evaluating_s = 0.0  # wall-clock spent in this fit's evaluations so far
        self._train_s = 0.0  # wall-clock spent training when the current evaluation began

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._evaluating_s = 0.0

    def state_dict(self) -> dict[str, int]:
        # A resumed run keeps the video cadence (every n-th evaluation) of the interrupted one.
        return {"evaluations_done": self.evaluations_done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.evaluations_done = state_dict["evaluations_done"]

    def evaluate(self, trainer: Trainer, pl_module: LightningModule, episodes: int) -> dict[str, EvalResult]:
        """Evaluate each configured mode for ``episodes`` episodes, logging the means.

        With ``data.start_shift`` set, every mode is evaluated twice, on the same seeds: from the
        env's own starts (S0^demo, ``eval/<how>/…``) and from the shifted ones (S0^train,
        ``eval_shifted/<how>/…``; result key ``<how>_shifted``).
        """
        task = trainer.datamodule.task
        started = time.perf_counter()
        # Training alone (the time-to-success figures): this fit's wall-clock without its evaluations.
        self._train_s = started - self._fit_start - self._evaluating_s
        self.evaluations_done += 1
        every = self.video_every_n_evaluations
        with_video = every > 0 and self.evaluations_done % every == 0
        self.latest_metrics = {}
        start_sets = [("eval", "", None)]
        if task.start_shift is not None:
            start_sets.append(("eval_shifted", "_shifted", task.start_shift))
        results = {}
        for mode in self.modes:
            deterministic = mode == "deterministic"
            policy = pl_module.policy(deterministic=deterministic)
            label = pl_module.deterministic_label if deterministic else mode
            for prefix, suffix, shift in start_sets:
                result = evaluate_policy(task.env_id, policy, episodes, task.eval_seed, start_shift=shift, pixels=task.pixels)
                results[label + suffix] = result
                self._log_result(trainer, f"{prefix}/{label}", result, progress_key=label + suffix)
            if with_video:
                self._log_video(trainer, policy, label, task.eval_seed)
        self._evaluating_s += time.perf_counter() - started
        return results

    def _log_result(self, trainer: Trainer, prefix: str, result: EvalResult, progress_key: str) -> None:
        metrics = {f"{prefix}/return": result.mean_return, f"{prefix}/episode_length": result.mean_length}
        if result.success_rate is not None:
            metrics[f"{prefix}/success_rate"] = result.success_rate
        metrics["env_steps"] = float(trainer.datamodule.experience.env_steps)
        metrics["time/elapsed_s"] = time.perf_counter() - self._fit_start
        metrics["time/train_s"] = self._train_s
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        self.latest_metrics.update({key: value for key, value in metrics.items() if key.startswith(prefix)})
        key = "success" if result.success_rate is not None else "return"
        value = result.success_rate if result.success_rate is not None else result.mean_return
        trainer.progress_bar_metrics[f"{progress_key}_{key}"] = round(value, 3)

    @staticmethod
    def _log_video(trainer: Trainer, policy, label: str, seed: int) -> None:
        """Render the evaluation's first episode to a GIF and hand it to every W&B logger."""
        task = trainer.datamodule.task
        try:
            frames = render_episode(task.env_id, policy, seed, pixels=task.pixels)
        except Exception as err:  # noqa: BLE001 - rendering needs a GL stack the machine may lack
            rank_zero_warn(f"evaluation video skipped ({type(err).__name__}: {err}); {VIDEO_HINT}")
            return
        path = save_gif(frames, Path(trainer.default_root_dir) / "videos" / f"{label}_step{trainer.global_step}.gif")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_video(f"eval/{label}/video", [str(path)], step=trainer.global_step, format=["gif"])

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # The last step is left to the longer final evaluation. Under DDP every rank holds the same
        # weights, so rank 0 alone plays the episodes (loggers write from rank 0 only anyway).
        periodic = intervals_passed(trainer, batch, self.every_n_steps) > 0 and trainer.global_step < trainer.max_steps
        if not periodic:
            return
        if trainer.is_global_zero:
            self.evaluate(trainer, pl_module, self.episodes)
        # Every rank gets rank 0's figures as callback metrics, so `checkpoint.monitor` can keep the
        # best evaluation's checkpoint (ModelCheckpoint runs after this callback and decides on every rank).
        latest = trainer.strategy.broadcast(self.latest_metrics, src=0)
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in latest.items()})

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.final_episodes == 0 or trainer.interrupted:
            return
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective call under DDP: every rank
        if not trainer.is_global_zero:
            return
        train_seconds = time.perf_counter() - self._fit_start
        results = self.evaluate(trainer, pl_module, self.final_episodes)
        self._write_result(trainer, log_dir, results, train_seconds)

    @staticmethod
    def _metrics_location(logger: Logger) -> str:
        """Where a logger's metrics are: the CSV file itself, or the logger's directory."""
        csv_file = Path(logger.log_dir or "") / "metrics.csv" if isinstance(logger, CSVLogger) else None
        if csv_file is not None and csv_file.exists():
            return str(csv_file)
        if isinstance(logger, WandbLogger):  # the run's own folder (its `files/` sit inside)
            return f"W&B {os.path.relpath(Path(logger.experiment.dir).parent)}"
        return f"{type(logger).__name__} in {logger.save_dir}"

    def _write_result(self, trainer: Trainer, log_dir: Path, results: dict[str, EvalResult], train_seconds: float) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.result_path = log_dir / "result.json"
        payload = {
            "env_id": trainer.datamodule.task.env_id,
            "global_step": trainer.global_step,
            "env_steps": trainer.datamodule.experience.env_steps,
            "train_seconds": train_seconds,
            "final_eval_seconds": time.perf_counter() - self._fit_start - train_seconds,
            **{mode: result.to_dict() for mode, result in results.items()},
        }
        self.result_path.write_text(json.dumps(payload, indent=2))
        checkpoint = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else None
        for logger in trainer.loggers:
            logger.save()  # flush buffered metrics so the file printed below is complete
        metrics = [self._metrics_location(lg) for lg in trainer.loggers]
        seed = trainer.datamodule.task.eval_seed
        lines = [f"final evaluation over {self.final_episodes} episodes (seeds {seed}…{seed + self.final_episodes - 1}):"]
        for mode, result in results.items():
            success = "" if result.success_rate is None else f", success rate {result.success_rate:.2f}"
            lines.append(f"  {mode}: mean return {result.mean_return:.1f}{success}, mean length {result.mean_length:.0f}")
        lines += [
            f"checkpoint: {checkpoint or '(none written)'}",
            f"metrics:    {', '.join(metrics) or '(no logger configured)'}",
            f"result:     {self.result_path}",
        ]
        print("\n".join(lines), flush=True)
