"""The study's launcher choice without a cluster: its options and the study config's `resources`
as one-line errors, the W&B group of a study's fits, and the check that out_dir is shared.
(tests/test_study_ray.py runs studies on a real Ray cluster.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from sqil_lightning.errors import ConfigError
from sqil_lightning.studies.spec import Resources, StudySpec
from sqil_lightning.studies.fit_processes import FinishedRun
from sqil_lightning.studies.launchers import wait_for_result
from sqil_lightning.wandb_logger import WandbSettings

from fit_process import BASE_CONFIG


def _study_config(tmp_path: Path, **extra) -> Path:
    config = {
        "out_dir": str(tmp_path / "out"),
        "configs": [str(BASE_CONFIG)],
        "seeds": [0],
        "start_settings": {"s0_demo": {}},
        "methods": {"sqil": {}},
        **extra,
    }
    path = tmp_path / "launch_test.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_resources_per_fit_default_to_one_cpu_and_reject_what_ray_could_not_reserve(tmp_path):
    assert StudySpec.load(_study_config(tmp_path)).resources == Resources(cpus=1.0, gpus=0.0)
    assert StudySpec.load(_study_config(tmp_path, resources={"cpus": 0.5, "gpus": 1})).resources == Resources(0.5, 1.0)
    bad = {
        "cpus = 0 is invalid; it must be a number above 0": {"cpus": 0},
        "gpus = -1 is invalid; it must be a number 0 or more": {"gpus": -1},
        "cpus = 'two' is invalid": {"cpus": "two"},
        "resources must be a mapping of cpus and gpus per fit": {"cpu": 1},
    }
    for message, resources in bad.items():
        with pytest.raises(ConfigError, match=message):
            StudySpec.load(_study_config(tmp_path, resources=resources))


def test_an_address_without_the_ray_launcher_is_one_error_line(tmp_path, expect_user_error):
    line = expect_user_error(["study", "--config", str(_study_config(tmp_path)), "--address", "auto"])
    assert line == "error: --address auto is for --launcher ray; the local launcher runs the fits on this machine"


def test_the_ray_launcher_without_ray_says_how_to_install_it(tmp_path, expect_user_error, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where the extra is not installed
    line = expect_user_error(["study", "--config", str(_study_config(tmp_path)), "--launcher", "ray"])
    assert line == 'error: --launcher ray needs Ray: pip install -e ".[ray]" (on every node of the cluster)'
    assert not (tmp_path / "out").exists()  # no fit started


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_address_where_no_ray_head_answers_is_one_error_line_in_seconds(tmp_path, expect_user_error, address):
    pytest.importorskip("ray")
    line = expect_user_error(["study", "--config", str(_study_config(tmp_path)), "--launcher", "ray", "--address", address])
    assert line.startswith(f"error: --address {address}: nothing answers at 127.0.0.1:1 (")
    assert "ray start --head" in line
    assert not (tmp_path / "out").exists()  # no fit started


def test_a_result_this_machine_cannot_see_says_out_dir_must_be_shared(tmp_path):
    (run,) = StudySpec.load(_study_config(tmp_path)).runs()
    shared = r"finished on node-b, but its result.json is not in .*out on .*: out_dir must be on a filesystem every node shares"
    with pytest.raises(ConfigError, match=shared):
        wait_for_result(run, FinishedRun("success 1.00", 3.0, "node-b"), timeout=0)
    run.result_path.parent.mkdir(parents=True)
    run.result_path.write_text("{}")
    wait_for_result(run, FinishedRun("success 1.00", 3.0, "node-b"), timeout=0)  # visible: no error


def test_a_study_puts_its_fits_in_one_wandb_group_named_after_it(tmp_path):
    path = _study_config(tmp_path, common={"wandb.mode": "offline"})
    (run,) = StudySpec.load(path).runs()
    command = run.command()
    group = command.index("--wandb.group")
    assert command[group + 1] == "launch_test"
    # Before the overrides: a study config's own `wandb.group` wins.
    assert group < command.index("--wandb.mode")
    logger = WandbSettings(mode="offline", group="launch_test", save_dir=str(tmp_path)).make_logger("run")
    assert logger._wandb_init["group"] == "launch_test"
