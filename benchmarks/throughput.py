"""Gradient updates per second: the full Lightning loop against a bare PyTorch loop, in one run,
for the soft-Q module (LunarLander, 128x128) and the SAC module (HalfCheetah, 256x256).

Both loops of a module run the same networks, loss, Adam, learning-rate schedule and Polyak update
on the same batch size. The bare loop samples by random indexing into preallocated tensors; the
Lightning loop is `Trainer.fit` on the module + `SQILDataModule` (TorchRL buffer sampling included,
a CSV logger and the progress bar on), with one update per Lightning step and with
``data.updates_per_step`` updates (the configs' 4). The timed updates step no env, so the ratios
isolate the trainer's overhead; collection, and the whole loop with its rollouts, are timed apart.

    python benchmarks/throughput.py --steps 3000 --repeats 3 --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from tensordict import TensorDict
from torchrl.envs.utils import RandomPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results_file import append_section, machine_line  # noqa: E402

from callbacks import PeriodicRollout  # noqa: E402
from sqil_lightning.datamodule import SQILDataModule  # noqa: E402
from sqil_lightning.envs import make_env  # noqa: E402
from sqil_lightning.experts import record_demos  # noqa: E402
from sqil_lightning.learner import OffPolicyLearner  # noqa: E402
from sqil_lightning.sac_module import SACSQIL  # noqa: E402
from sqil_lightning.soft_bellman import soft_bellman_target, soft_value, sqil_loss  # noqa: E402
from sqil_lightning.soft_q_module import SoftQSQIL  # noqa: E402

KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "terminated"))


@dataclass
class Bench:
    """One module's benchmark setting."""

    name: str
    module_class: type[OffPolicyLearner]
    env_id: str
    demo_path: str | None  # None: the datamodule's default expert makes the demos


class StepTimer(Callback):
    """Wall-clock of the updates after ``warmup`` of them, excluding fit start-up and teardown."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def random_demos(env_id: str, path: Path, episodes: int) -> str:
    """Demos of uniformly random actions: the update's cost does not depend on who made them."""
    record_demos(env_id, RandomPolicy(make_env(env_id).action_spec), episodes, seed=0, source="random").save(path)
    return str(path)


def make_datamodule(bench: Bench, batch_size: int, sample_chunk: int, updates_per_step: int) -> SQILDataModule:
    torch.manual_seed(0)
    datamodule = SQILDataModule(
        env_id=bench.env_id,
        demo_path=bench.demo_path,
        demo_expert="lunarlander_scripted" if bench.demo_path is None else None,
        gamma=0.99,
        batch_size=batch_size,
        sample_chunk=sample_chunk,
        initial_frames=5000,
        updates_per_step=updates_per_step,
    )
    datamodule.setup("fit")
    return datamodule


def new_module(bench: Bench, datamodule: SQILDataModule) -> OffPolicyLearner:
    return bench.module_class(datamodule.observation_shape, datamodule.action_space)


def lightning_updates_per_second(
    bench: Bench, datamodule: SQILDataModule, steps: int, warmup: int, log_dir: str, callbacks: tuple = ()
) -> float:
    """Updates/s of `Trainer.fit` (``callbacks`` added: `PeriodicRollout` times the whole loop)."""
    per_step = datamodule.hparams.updates_per_step
    timer = StepTimer(warmup)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps + warmup,
        log_every_n_steps=500,
        logger=CSVLogger(log_dir),
        callbacks=[timer, TQDMProgressBar(refresh_rate=100), *callbacks],
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    assert warmup % per_step == 0 and steps % per_step == 0, "steps and warm-up must be multiples of updates_per_step"
    trainer.fit(new_module(bench, datamodule), datamodule=datamodule)
    return steps / (timer.end - timer.start)


def bare_updates_per_second(bench: Bench, datamodule: SQILDataModule, steps: int, warmup: int) -> float:
    """The same updates with no framework: random rows of preallocated tensors, plain Adam."""
    hp = datamodule.hparams
    demo, online = datamodule.buffer.offline_buffer[:], datamodule.buffer.online_buffer[:]
    n_demo = round(hp.demo_fraction * hp.batch_size)
    n_online = hp.batch_size - n_demo
    is_demo = torch.cat([torch.ones(n_demo, dtype=torch.bool), torch.zeros(n_online, dtype=torch.bool)])
    tensors = {key: (demo.get(key), online.get(key)) for key in KEYS}
    module = new_module(bench, datamodule)
    update = bare_soft_q_update(module, steps + warmup) if isinstance(module, SoftQSQIL) else bare_sac_update(module)
    start = 0.0
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        i, j = torch.randint(len(demo), (n_demo,)), torch.randint(len(online), (n_online,))
        rows = {key: torch.cat([d[i], o[j]]) for key, (d, o) in tensors.items()}
        update(rows, is_demo)
    return steps / (time.perf_counter() - start)


def bare_soft_q_update(module: SoftQSQIL, total: int):
    q_net, target_net, hp = module.q_network, module.target_network, module.hparams
    optimizer = torch.optim.Adam(q_net.parameters(), lr=hp.lr)
    decay = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, hp.final_lr_fraction, total_iters=total)
    q_params, target_params = list(q_net.parameters()), list(target_net.parameters())

    def update(rows: dict, is_demo: torch.Tensor) -> None:
        q_taken = q_net(rows["observation"]).gather(-1, rows["action"].unsqueeze(-1))
        with torch.no_grad():
            next_value = soft_value(target_net(rows["next", "observation"]), hp.temperature)
            target = soft_bellman_target(rows["next", "reward"], next_value, rows["next", "terminated"], hp.gamma)
        loss = sqil_loss((q_taken - target).pow(2).squeeze(-1), is_demo, hp.lambda_samp)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
        with torch.no_grad():
            torch._foreach_lerp_(target_params, q_params, hp.target_tau)

    return update


def bare_sac_update(module: SACSQIL):
    """TorchRL's SACLoss called directly (the loss is the same object the module trains)."""
    optimizer, hp = module.configure_optimizers(), module.hparams

    def update(rows: dict, is_demo: torch.Tensor) -> None:
        batch = TensorDict(
            {
                "observation": rows["observation"],
                "action": rows["action"],
                "next": {key: rows["next", key] for key in ("observation", "reward", "terminated")},
            },
            batch_size=is_demo.shape,
        )
        batch["next", "done"] = batch["next", "terminated"]
        losses = module.sac_loss(batch)
        critic = sqil_loss(losses["loss_qvalue"], is_demo, hp.lambda_samp)
        loss = critic + losses["loss_actor"].mean() + losses["loss_alpha"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module.target_update.step()

    return update


def collection_steps_per_second(bench: Bench, datamodule: SQILDataModule, frames: int) -> float:
    module = new_module(bench, datamodule)
    datamodule.start_collector(module.policy(deterministic=False), "cpu")
    start_steps, start = datamodule.env_steps, time.perf_counter()
    while datamodule.env_steps - start_steps < frames:
        datamodule.collect()
    return (datamodule.env_steps - start_steps) / (time.perf_counter() - start)


def measure(bench: Bench, args: argparse.Namespace, log_dir: str) -> dict[str, list[float]]:
    one = make_datamodule(bench, args.batch_size, args.sample_chunk, 1)
    several = make_datamodule(bench, args.batch_size, args.sample_chunk, args.updates_per_step)
    figures: dict[str, list[float]] = {"bare": [], "lightning_1": [], "lightning_k": []}
    for _ in range(args.repeats):  # alternating, so a slow spell of the machine hits all three
        figures["bare"].append(bare_updates_per_second(bench, one, args.steps, args.warmup))
        figures["lightning_1"].append(lightning_updates_per_second(bench, one, args.steps, args.warmup, log_dir))
        figures["lightning_k"].append(lightning_updates_per_second(bench, several, args.steps, args.warmup, log_dir))
        print(f"{bench.name}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in figures.items()) + " updates/s", flush=True)
    figures["collection"] = [collection_steps_per_second(bench, one, 4000)]
    # The whole loop: rollouts of 4 env steps every 4 updates (update-to-data 1, the configs').
    whole = lightning_updates_per_second(bench, several, args.steps, args.warmup, log_dir, (PeriodicRollout(4),))
    figures["whole_loop"] = [whole]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="timed updates per loop (a multiple of --updates-per-step)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="alternate the loops this many times; the best counts")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sample-chunk", type=int, default=32)
    parser.add_argument("--updates-per-step", type=int, default=4)
    parser.add_argument("--modules", nargs="+", default=["soft_q", "sac"], choices=["soft_q", "sac"])
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # every loop, as the CLI's default `torch_threads: 1`

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        benches = {
            "soft_q": Bench("soft-Q, LunarLander-v3, 128x128", SoftQSQIL, "LunarLander-v3", None),
            "sac": Bench("SAC, HalfCheetah-v5, 256x256", SACSQIL, "HalfCheetah-v5", None),
        }
        if "sac" in args.modules:
            benches["sac"].demo_path = random_demos("HalfCheetah-v5", Path(tmp) / "halfcheetah_random.npz", 5)
        for name in args.modules:
            results[name] = measure(benches[name], args, tmp)
    rows = []
    for name, figures in results.items():
        bare, one, several = (max(figures[k]) for k in ("bare", "lightning_1", "lightning_k"))
        rows.append(
            f"| {benches[name].name} | {bare:.0f} | {one:.0f} ({one / bare:.3f}) | **{several:.0f} ({several / bare:.3f})** "
            f"| {figures['collection'][0]:.0f} | {figures['whole_loop'][0]:.0f} |"
        )
        print(rows[-1])
    if args.write:
        pairs = "; ".join(
            f"{name}: " + ", ".join(f"{b:.0f}/{o:.0f}/{s:.0f}" for b, o, s in zip(f["bare"], f["lightning_1"], f["lightning_k"]))
            for name, f in results.items()
        )
        append_section(
            "Throughput: Lightning loop vs bare PyTorch, soft-Q and SAC",
            "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
            [
                machine_line(),
                f"batch {args.batch_size}, sample_chunk {args.sample_chunk}, {args.steps} timed updates per loop after "
                f"{args.warmup} warm-up, best of {args.repeats} alternating runs; 1 torch thread.",
                "",
                f"| module | bare PyTorch updates/s | Lightning, 1 update a step (ratio) | Lightning, "
                f"updates_per_step {args.updates_per_step} (ratio) | collection env steps/s | whole loop updates/s "
                "(= env steps/s, update-to-data 1) |",
                "| --- | --- | --- | --- | --- | --- |",
                *rows,
                "",
                f"Each run (bare / Lightning 1 / Lightning {args.updates_per_step}, updates/s): {pairs}.",
            ],
        )


if __name__ == "__main__":
    main()
