"""DDP on the CPU: 2 processes (gloo) train one learner on experience each collected itself.

A short `fit` runs as a subprocess with `--trainer.devices 2 --trainer.strategy ddp`; Lightning
starts rank 1 by re-running the same command line. The callback `ddp_probe.DDPProbe` (added with
`--trainer.callbacks+=`) writes what each rank ends with, and the tests compare the two ranks:
the weights must be identical (DDP broadcasts the initial weights and averages every gradient),
while the online replay differs (rank r collects from env seed data.seed + r). Once for the
soft-Q learner on LunarLander (SQIL, demos) and once for SAC on Pendulum (env reward, no demos).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from sqil_lightning.envs.make import make_env

from fit_process import BASE_CONFIG, FAST_CONFIG, REPO, SQIL_COMMAND, fit_env

RUN_TIMEOUT_S = 300  # generous: the machine may be busy; the run takes ~12 s when idle
SEED = 5  # --data.seed: rank r collects from env seed SEED + r
# Multiples of data.updates_per_step (4 in both configs), which global_step advances by.
MAX_STEPS, EVAL_EVERY = {"soft_q": 100, "sac": 60}, {"soft_q": 52, "sac": 32}
INITIAL_FRAMES = {"soft_q": 200, "sac": 128}
ROLLOUT_EVERY, ROLLOUT_FRAMES = 4, 4  # rollout.every_n_steps, data.rollout_env_steps of both configs

pytestmark = [
    pytest.mark.slow,  # 2-process fits as subprocesses
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with the gloo backend is unavailable"
    ),
]


def _command(name: str, tmp_path: Path) -> list[str]:
    common = [
        "--trainer.devices", "2",
        "--trainer.strategy", "ddp",
        "--trainer.accelerator", "cpu",
        "--trainer.max_steps", str(MAX_STEPS[name]),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(tmp_path / "root"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--evaluation.every_n_steps", str(EVAL_EVERY[name]),
        "--evaluation.episodes", "1",
        "--evaluation.final_episodes", "1",
        "--data.seed", str(SEED),
        "--trainer.callbacks+=ddp_probe.DDPProbe",
        "--trainer.callbacks.init_args.out_dir", str(tmp_path / "probe"),
    ]  # fmt: skip
    if name == "soft_q":  # SQIL on LunarLander, the 300-step test overlay cut to 100 steps
        config = [
            "--config", str(BASE_CONFIG),
            "--config", str(FAST_CONFIG),
            "--data.demo_episodes", "2",
            "--data.demo_path", str(tmp_path / "demos" / "ll2.npz"),
        ]  # fmt: skip
    else:  # SAC from Pendulum's own reward (the expert overlay): no demos
        config = [
            "--config", str(REPO / "conf" / "pendulum.yaml"),
            "--config", str(REPO / "conf" / "experts" / "pendulum.yaml"),
            "--data.initial_env_steps", str(INITIAL_FRAMES["sac"]),
            "--data.batch_size", "64",
            "--model.init_args.hidden_sizes", "[32,32]",
            "--checkpoint.dirpath", str(tmp_path / "ck"),
        ]  # fmt: skip
    return [*SQIL_COMMAND, "fit", *config, *common]


@pytest.fixture(scope="module", params=["soft_q", "sac"])
def ddp_run(request, tmp_path_factory) -> dict:
    name = request.param
    tmp_path = tmp_path_factory.mktemp(f"ddp_{name}")
    stdout_path, stderr_path = tmp_path / "fit.out", tmp_path / "fit.err"
    with stdout_path.open("w") as out, stderr_path.open("w") as err:
        # fit_env: tests/ on PYTHONPATH for `ddp_probe`; rank 1 inherits it.
        proc = subprocess.Popen(_command(name, tmp_path), cwd=tmp_path, env=fit_env(), stdout=out, stderr=err)
        try:
            status = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()  # rank 0, the process this test started; rank 1 exits when its peer is gone
            proc.wait()
            status = None
    stdout, stderr = stdout_path.read_text(), stderr_path.read_text()
    records = {}
    for rank in (0, 1):
        path = tmp_path / "probe" / f"rank{rank}.pt"
        if path.is_file():
            records[rank] = torch.load(path, map_location="cpu", weights_only=False)
    if status != 0 or len(records) != 2:
        why = f"did not exit within {RUN_TIMEOUT_S} s" if status is None else f"exited with status {status}"
        pytest.fail(
            f"the 2-process DDP fit ({name}) {why}; probe records from ranks {sorted(records)}\n"
            f"--- stdout ---\n{stdout[-3000:]}\n--- stderr ---\n{stderr[-6000:]}"
        )
    return {"name": name, "tmp_path": tmp_path, "stdout": stdout, "stderr": stderr, "records": records}


def test_both_ranks_run_ddp_to_max_steps_on_the_same_schedule(ddp_run):
    name, records = ddp_run["name"], ddp_run["records"]
    env_steps = INITIAL_FRAMES[name] + ROLLOUT_FRAMES * (MAX_STEPS[name] // ROLLOUT_EVERY)
    for rank, record in records.items():
        assert record["global_rank"] == rank
        assert record["world_size"] == 2
        assert record["strategy"] == "DDPStrategy"
        assert record["global_step"] == MAX_STEPS[name]
        assert record["env_steps"] == env_steps


def test_parameters_are_identical_across_ranks(ddp_run):
    rank0, rank1 = (ddp_run["records"][rank]["state_dict"] for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    different = [key for key in rank0 if not torch.equal(rank0[key], rank1[key])]
    assert not different, f"weights differ across ranks: {different}"
    # Not trivially equal: the weights trained, so the Polyak-averaged targets lag the online nets.
    online, target = ("q_network.", "target_network.") if ddp_run["name"] == "soft_q" else (
        "sac_loss.qvalue_network_params.", "sac_loss.target_qvalue_network_params."
    )
    pairs = [(key, target + key[len(online):]) for key in rank0 if key.startswith(online)]
    assert pairs
    assert all(not torch.equal(rank0[key], rank0[lagging]) for key, lagging in pairs)


def test_ranks_collect_different_experience(ddp_run):
    records = ddp_run["records"]
    online = {rank: record["online_observations"] for rank, record in records.items()}
    for rank, observations in online.items():
        assert len(observations) == records[rank]["env_steps"]  # online_capacity is not reached
    assert not torch.equal(online[0], online[1])
    # Each rank's collector started from its own env seed, data.seed + global_rank.
    env_id = "LunarLander-v3" if ddp_run["name"] == "soft_q" else "Pendulum-v1"
    for rank in (0, 1):
        env = make_env(env_id, seed=SEED + rank)
        try:
            first = env.reset()["observation"]
        finally:
            env.close()
        assert torch.equal(online[rank][0], first), f"rank {rank} did not start from env seed {SEED + rank}"
    # The demo partition is the same file on every rank; the env-reward run has none.
    demos = [records[rank]["demo_observations"] for rank in (0, 1)]
    if ddp_run["name"] == "soft_q":
        assert len(demos[0]) > 0
        assert torch.equal(demos[0], demos[1])
    else:
        assert demos == [None, None]


def test_ranks_sample_different_batches(ddp_run):
    # seed_everything gives every rank the same RNG state; without a per-rank reseed both would draw
    # the same replay indices, and the demo half of the global batch would hold each row twice.
    if ddp_run["name"] != "soft_q":
        pytest.skip("the env-reward run has no demo partition shared by the ranks")
    first = [ddp_run["records"][rank]["first_batch"] for rank in (0, 1)]
    assert len(first[0]) > 0 and first[0].shape == first[1].shape
    assert not torch.equal(first[0], first[1])


def test_rank_zero_alone_evaluates_periodically_and_at_the_end(ddp_run):
    name, records = ddp_run["name"], ddp_run["records"]
    assert records[0]["evaluations"] == [(EVAL_EVERY[name], 1), (MAX_STEPS[name], 1)]
    assert records[1]["evaluations"] == []
    # One final report (rank 1 shares the stdout) and one result.json.
    assert ddp_run["stdout"].count("final evaluation over 1 episodes") == 1
    results = list((ddp_run["tmp_path"] / "logs").rglob("result.json"))
    assert len(results) == 1, results
