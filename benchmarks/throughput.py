"""Gradient updates per second: the full Lightning loop against a bare PyTorch loop, in one run,
for the soft-Q module (LunarLander, 128x128) and the SAC module (HalfCheetah, 256x256), and the
effect of each fast path.

Both loops of a module run the same networks, loss, Adam, learning-rate schedule and Polyak update
on the same batch size. The bare loop samples by random indexing into preallocated tensors; the
Lightning loop is `Trainer.fit` on the module + `SQILDataModule` (TorchRL buffer sampling included,
a CSV logger and the progress bar on): with one update per Lightning step, with
``data.updates_per_step`` updates (the configs' 4), then adding `fast.fused_adam` and
`fast.compile`. The timed updates step no env, so the ratios isolate the trainer's overhead;
collection, and the whole loop with its rollouts, are timed apart: the whole loop once with each
`data.collector` (sync: env steps between the updates; async: in a worker process, overlapping them).

    python benchmarks/throughput.py --repeats 3 --write
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

from sqil_lightning.callbacks import FastPaths, PeriodicRollout  # noqa: E402
from sqil_lightning.data.collectors import COLLECTORS  # noqa: E402
from sqil_lightning.data.datamodule import SQILDataModule  # noqa: E402
from sqil_lightning.envs.make import make_env  # noqa: E402
from sqil_lightning.demos.experts import record_demos  # noqa: E402
from sqil_lightning.learners.base import OffPolicyLearner  # noqa: E402
from sqil_lightning.learners.sac import SACSQIL  # noqa: E402
from sqil_lightning.learners.soft_bellman import soft_bellman_target, soft_value, sqil_loss  # noqa: E402
from sqil_lightning.learners.soft_q import SoftQSQIL  # noqa: E402

KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "terminated"))


@dataclass
class Bench:
    """One module's benchmark setting."""

    name: str
    module_class: type[OffPolicyLearner]
    env_id: str
    demo_path: str | None  # None: the datamodule's default expert makes the demos
    steps: int  # timed updates per loop


# The loops timed for each module: (label, updates per Lightning step, fast.fused_adam, fast.compile);
# None as updates per step is the bare loop.
LOOPS = [
    ("bare PyTorch", None, False, None),
    ("bare PyTorch, fused Adam", None, True, None),
    ("Lightning, 1 update a step", 1, False, None),
    ("Lightning, updates_per_step 4", 4, False, None),
    ("Lightning, updates_per_step 4 + fused_adam", 4, True, None),
    ("Lightning, updates_per_step 4 + fused_adam + compile", 4, True, "default"),
]


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


def make_datamodule(
    bench: Bench, batch_size: int, sample_chunk: int, updates_per_step: int, collector: str = "sync"
) -> SQILDataModule:
    torch.manual_seed(0)
    datamodule = SQILDataModule(
        env_id=bench.env_id,
        demo_path=bench.demo_path,
        demo_expert="lunarlander_scripted" if bench.demo_path is None else None,
        batch_size=batch_size,
        sample_chunk=sample_chunk,
        initial_env_steps=5000,
        updates_per_step=updates_per_step,
        collector=collector,
    )
    datamodule.setup("fit")
    datamodule.connect(new_module(bench, datamodule))
    experience = datamodule.experience
    experience.start(None, "cpu", 0)  # uniformly random actions fill the online partition
    while experience.env_steps < datamodule.hparams.initial_env_steps:
        experience.collect()
    datamodule.teardown("fit")  # `fit` starts its own collector, acting with its module's policy
    return datamodule


def new_module(bench: Bench, datamodule: SQILDataModule) -> OffPolicyLearner:
    return bench.module_class(datamodule.observation_shape, datamodule.action_space)


def lightning_updates_per_second(
    bench: Bench, datamodule: SQILDataModule, steps: int, warmup: int, log_dir: str, callbacks: tuple = ()
) -> float:
    """Updates/s of `Trainer.fit` (``callbacks`` added: `FastPaths`, `PeriodicRollout` for the whole loop)."""
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


def bare_updates_per_second(bench: Bench, datamodule: SQILDataModule, steps: int, warmup: int, fused: bool) -> float:
    """The same updates with no framework: random rows of preallocated tensors, plain Adam."""
    hp = datamodule.hparams
    demo, online = datamodule.experience.batches.demos[:], datamodule.experience.batches.online[:]
    n_demo = round(hp.demo_fraction * hp.batch_size)
    n_online = hp.batch_size - n_demo
    is_demo = torch.cat([torch.ones(n_demo, dtype=torch.bool), torch.zeros(n_online, dtype=torch.bool)])
    tensors = {key: (demo.get(key), online.get(key)) for key in KEYS}
    module = new_module(bench, datamodule)
    module.use_fast_paths(None, fused)  # the module's own `adam` builds the optimiser
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
    optimizer = module.adam(q_net.parameters(), lr=hp.lr)
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
    experience = datamodule.experience
    experience.start(module.policy(deterministic=False), "cpu", 0)
    start_steps, start = experience.env_steps, time.perf_counter()
    while experience.env_steps - start_steps < frames:
        experience.collect()
    rate = (experience.env_steps - start_steps) / (time.perf_counter() - start)
    datamodule.teardown("fit")
    return rate


def measure(bench: Bench, args: argparse.Namespace, log_dir: str) -> dict[str, list[float]]:
    datamodules = {k: make_datamodule(bench, args.batch_size, args.sample_chunk, k) for k in (1, 4)}
    figures: dict[str, list[float]] = {label: [] for label, *_ in LOOPS}
    for _ in range(args.repeats):  # alternating, so a slow spell of the machine hits every loop
        for label, per_step, fused, compile_mode in LOOPS:
            if per_step is None:
                rate = bare_updates_per_second(bench, datamodules[1], bench.steps, args.warmup, fused)
            else:
                fast = FastPaths(compile=compile_mode, fused_adam=fused)
                rate = lightning_updates_per_second(bench, datamodules[per_step], bench.steps, args.warmup, log_dir, (fast,))
            figures[label].append(rate)
        print(f"{bench.name}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in figures.items()) + " updates/s", flush=True)
    figures["collection"] = [collection_steps_per_second(bench, datamodules[1], 4000)]
    # The whole loop: rollouts of 4 env steps every 4 updates (update-to-data 1, the configs'), fast
    # paths on, with each data.collector.
    async_datamodule = make_datamodule(bench, args.batch_size, args.sample_chunk, 4, collector="async")
    for collector in COLLECTORS:
        whole = (FastPaths(compile="default", fused_adam=True), PeriodicRollout(4))
        datamodule = datamodules[4] if collector == "sync" else async_datamodule
        rate = lightning_updates_per_second(bench, datamodule, bench.steps, args.warmup, log_dir, whole)
        figures[f"whole_loop_{collector}"] = [rate]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--soft-q-steps", type=int, default=3000, help="timed updates per soft-Q loop (a multiple of 4)")
    parser.add_argument("--sac-steps", type=int, default=600, help="timed updates per SAC loop (a multiple of 4)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed updates first (compiling happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="alternate the loops this many times; the best counts")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sample-chunk", type=int, default=32)
    parser.add_argument("--modules", nargs="+", default=["soft_q", "sac"], choices=["soft_q", "sac"])
    parser.add_argument("--write", action="store_true", help="append the figures to docs/results.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # every loop, as the CLI's default `torch_threads: 1`

    benches = {
        "soft_q": Bench("soft-Q, LunarLander-v3, 128x128", SoftQSQIL, "LunarLander-v3", None, args.soft_q_steps),
        "sac": Bench("SAC, HalfCheetah-v5, 256x256", SACSQIL, "HalfCheetah-v5", None, args.sac_steps),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "sac" in args.modules:
            benches["sac"].demo_path = random_demos("HalfCheetah-v5", Path(tmp) / "halfcheetah_random.npz", 5)
        for name in args.modules:
            results[name] = measure(benches[name], args, tmp)
    lines = []
    for name, figures in results.items():
        best = {label: max(figures[label]) for label, *_ in LOOPS}
        lines += [f"**{benches[name].name}** ({benches[name].steps} timed updates a loop)", ""]
        lines += ["| loop | updates/s | ÷ bare loop with the same Adam |", "| --- | --- | --- |"]
        for label, per_step, fused, _ in LOOPS:
            bare = best["bare PyTorch, fused Adam" if fused else "bare PyTorch"]
            lines.append(f"| {label} | {best[label]:.0f} | {best[label] / bare:.3f} |")
        runs = "; ".join(f"{label}: " + "/".join(f"{v:.0f}" for v in figures[label]) for label, *_ in LOOPS)
        lines += [
            "",
            f"Collection alone (TorchRL `Collector`, sampling policy, relabel + buffer write): {figures['collection'][0]:.0f} env steps/s. "
            f"Whole loop (rollouts of 4 env steps every 4 updates, updates_per_step 4, fused Adam, compile), "
            f"updates/s = env steps/s: {figures['whole_loop_sync'][0]:.0f} with `data.collector: sync`, "
            f"{figures['whole_loop_async'][0]:.0f} with `async` (env steps in a worker process).",
            "",
            f"Every run (updates/s): {runs}.",
            "",
        ]
    print("\n".join(lines))
    if args.write:
        append_section(
            "Throughput and fast paths: Lightning loop vs bare PyTorch, soft-Q and SAC",
            "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
            [
                machine_line(),
                f"batch {args.batch_size}, sample_chunk {args.sample_chunk}, timed after {args.warmup} warm-up updates, "
                f"best of {args.repeats} alternating runs; 1 torch thread.",
                "",
                *lines,
            ],
        )


if __name__ == "__main__":
    main()
