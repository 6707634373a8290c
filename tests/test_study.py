"""The study command on a tiny budget: it runs methods x start settings x seeds, writes the table and
plots, and a second call repeats no finished run but continues a half-finished one."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sqil_lightning.commands import main
from sqil_lightning.envs.policy_evaluation import evaluate_policy
from sqil_lightning.envs.start_states import build_start_shift
from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.checkpoint import load_learner
from sqil_lightning.studies.report import START_SHIFT_KEY, reference_identity, reference_scores
from sqil_lightning.studies.spec import StudySpec
from sqil_lightning.studies.study import mean_and_standard_error

from fit_process import BASE_CONFIG, FAST_CONFIG, REPO, SQIL_COMMAND

SHIFT = {"class_path": "sqil_lightning.envs.start_states.LunarLanderOffset", "init_args": {"x_offset": [0.5, 0.6], "tilt": 0.1}}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, lunarlander_demo_file):
    tmp_path = tmp_path_factory.mktemp("study")
    config = {
        "out_dir": str(tmp_path / "out"),
        "configs": [str(BASE_CONFIG), str(FAST_CONFIG)],
        "seeds": [0, 1],
        "parallel": 2,
        "expert": "lunarlander_scripted",
        "demo_path": str(lunarlander_demo_file),
        "eval_episodes": 2,
        "eval_seed": 1000000,
        "common": {"data.demo_path": str(lunarlander_demo_file), "trainer.max_steps": 120, "data.initial_env_steps": 100},
        "start_settings": {
            "s0_demo": {"result_key": "greedy"},
            "s0_train": {"result_key": "greedy_shifted", "overrides": {"data.start_shift": SHIFT}},
        },
        "methods": {
            "sqil": {"start_settings": ["s0_train"], "paper": {"s0_train": "0.89 ± 0.02"}},
            "bc": {"overrides": {"model.class_path": "sqil_lightning.BehaviouralCloning"}, "start_settings": ["s0_demo"]},
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["study", "--config", str(path)])
    return {"path": path, "spec": StudySpec.load(path), "stdout": out.getvalue()}


def _run_folders(spec: StudySpec) -> list[Path]:
    return [run.folder for run in spec.runs()]


@pytest.mark.slow
def test_study_runs_each_method_on_its_start_settings_and_seeds(tiny_study):
    spec = tiny_study["spec"]
    assert [(r.method.name, r.start, r.seed) for r in spec.runs()] == [
        ("sqil", "s0_train", 0), ("bc", "s0_demo", 0), ("sqil", "s0_train", 1), ("bc", "s0_demo", 1),
    ]  # fmt: skip
    for run in spec.runs():
        result = json.loads(run.result_path.read_text())
        assert result["global_step"] == 120
        assert ("greedy_shifted" in result) == (run.start == "s0_train")
        config = (run.log_dir / "config.yaml").read_text()
        assert f"seed_everything: {run.seed}" in config
    assert "BehaviouralCloning" in (spec.runs()[1].log_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_study_writes_a_table_with_the_expert_row_and_plots(tiny_study):
    spec = tiny_study["spec"]
    report = (spec.out_dir / "results.md").read_text()
    lines = report.splitlines()
    assert "| method | s0_demo | s0_train | paper s0_demo | paper s0_train |" in lines
    sqil_scores = [run.score() for run in spec.runs() if run.method.name == "sqil"]
    mean, error = mean_and_standard_error(sqil_scores)
    assert f"| sqil | — | {mean:.2f} ± {error:.2f} | — | 0.89 ± 0.02 |" in lines  # ours, then the paper's
    assert any(line.startswith("| expert | ") for line in lines)
    # The second table scores each run by its best evaluation during training: never below its final one.
    assert "Best periodic evaluation during training" in report
    for run in spec.runs():
        assert run.score(best=True) >= run.score()
    assert any(line.startswith("| random | ") for line in lines)
    for png in ("curves.png", "coverage.png"):
        assert (spec.out_dir / png).stat().st_size > 10_000
    assert f"wrote {spec.out_dir / 'results.md'}" in tiny_study["stdout"]


@pytest.mark.slow
def test_a_second_call_repeats_no_finished_run_and_continues_a_half_finished_one(tiny_study):
    spec = tiny_study["spec"]
    logs_before = {folder: (folder / "fit.log").read_text() for folder in _run_folders(spec)}
    half_finished = spec.runs()[2]
    curve_before = half_finished.curve()
    half_finished.result_path.unlink()  # as if the study had stopped during its final evaluation
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["study", "--config", str(tiny_study["path"])])
    assert "3 of 4 runs finished, 1 to go" in out.getvalue()
    for folder, before in logs_before.items():
        after = (folder / "fit.log").read_text()
        if folder == half_finished.folder:
            assert after.startswith(before) and "Restored all states from the checkpoint" in after[len(before):]
        else:
            assert after == before  # not run again
    assert half_finished.result_path.exists()
    # The continued fit logged into a new folder; the curve still holds the first fit's evaluations.
    assert [p.name for p in half_finished.log_dirs] == ["version_0", "version_1"]
    assert half_finished.curve()[: len(curve_before)] == curve_before


@pytest.mark.slow
def test_an_expert_checkpoint_gives_the_expert_row_of_its_greedy_policy(tiny_study, tmp_path):
    checkpoint = tiny_study["spec"].runs()[0].log_dir / "checkpoints" / "last.ckpt"  # a tiny SQIL fit on LunarLander
    raw = yaml.safe_load(tiny_study["path"].read_text())
    raw.update(out_dir=str(tmp_path / "out"), expert=str(checkpoint))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = StudySpec.load(tmp_path / "study.yaml")
    rows = reference_scores(spec, spec.expert)
    learner, env_id = load_learner(checkpoint)
    greedy = learner.policy(deterministic=True)
    for start, overrides in spec.start_settings.items():
        shift = build_start_shift(overrides.get(START_SHIFT_KEY))
        expected = evaluate_policy(env_id, greedy, spec.eval_episodes, spec.eval_seed, start_shift=shift).success_rate
        assert rows["expert"][start][0] == expected
    # Not the scripted expert's row: the tiny fit lands none of the episodes the scripted expert lands.
    assert rows["expert"] != reference_scores(tiny_study["spec"], tiny_study["spec"].expert)["expert"]


def test_the_reference_rows_are_made_again_when_what_made_them_changed(tmp_path):
    def spec_with(**changes) -> StudySpec:
        raw = {"out_dir": str(tmp_path / "out"), "configs": [], "seeds": [0], "start_settings": {"s0_demo": {}}}
        raw.update(methods={"sqil": {}}, expert="lunarlander_scripted", eval_episodes=2, eval_seed=1000000)
        raw.update(changes)
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(raw))
        return StudySpec.load(path)

    spec = spec_with()
    reference_scores(spec, spec.expert)
    cache = spec.out_dir / "references.json"
    marked = json.loads(cache.read_text())
    marked["scores"]["expert"]["s0_demo"] = [0.123, 0.0]  # a value no evaluation of 2 episodes gives
    cache.write_text(json.dumps(marked))
    assert reference_scores(spec, spec.expert)["expert"]["s0_demo"] == (0.123, 0.0)  # same expert and episodes: cached
    cache.write_text(json.dumps(marked))
    other_episodes = spec_with(eval_seed=7)
    assert reference_scores(other_episodes, other_episodes.expert)["expert"]["s0_demo"] != (0.123, 0.0)
    # A checkpoint retrained at the same path is another expert.
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"first")
    before = reference_identity(spec, str(checkpoint))
    checkpoint.write_bytes(b"second")
    assert reference_identity(spec, str(checkpoint)) != before


def test_an_unknown_expert_is_refused_when_the_study_starts(tmp_path):
    path = tmp_path / "study.yaml"
    raw = {"out_dir": "x", "configs": [], "seeds": [0], "start_settings": {"a": {}}, "methods": {"sqil": {}}, "expert": "lunar_scripted"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"expert = 'lunar_scripted' is neither a built-in expert \[.*'lunarlander_scripted'.*\] nor a checkpoint"):
        StudySpec.load(path)


def test_a_study_config_without_methods_names_what_is_missing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"out_dir": "x", "configs": [], "seeds": [0], "start_settings": {"a": {}}}))
    with pytest.raises(ConfigError, match=r"lacks methods; it needs out_dir, configs, start_settings, methods, seeds"):
        StudySpec.load(path)


def _study_config(tmp_path: Path, demo_file: Path, methods: dict, common: dict) -> Path:
    config = {
        "out_dir": str(tmp_path / "out"),
        "configs": [str(BASE_CONFIG), str(FAST_CONFIG)],
        "seeds": [0],
        "parallel": 2,
        "common": {"data.demo_path": str(demo_file), "data.initial_env_steps": 100, **common},
        "start_settings": {"s0_demo": {"result_key": "greedy"}},
        "methods": methods,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_failing_run_is_reported_in_one_line_after_the_others_finish(tmp_path, lunarlander_demo_file, capsys):
    methods = {"broken": {"overrides": {"model.init_args.lr": -1.0}}, "sqil": {}}
    path = _study_config(tmp_path, lunarlander_demo_file, methods, {"trainer.max_steps": 60})
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--config", str(path)])
    assert exit_info.value.code == 1
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "1 run(s) failed" in error_lines[0] and "broken" in error_lines[0] and "fit.log" in error_lines[0]
    spec = StudySpec.load(path)
    broken, sqil = spec.runs()
    assert "model.lr = -1.0 is invalid" in (broken.folder / "fit.log").read_text()
    assert sqil.result_path.exists()  # the healthy run was not held back by the broken one


@pytest.mark.slow
def test_sigterm_to_the_study_stops_its_fits_with_checkpoints_to_resume_from(tmp_path, lunarlander_demo_file):
    methods = {"a": {}, "b": {}}
    path = _study_config(tmp_path, lunarlander_demo_file, methods, {"trainer.max_steps": 100000})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    with (tmp_path / "study.out").open("w") as out:
        # A session of its own, so that whatever happens the test can end the study and its fits.
        study = subprocess.Popen(
            [*SQIL_COMMAND, "study", "--config", str(path)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    spec = StudySpec.load(path)
    try:
        deadline = time.monotonic() + 180
        checkpoints = [run.folder / "logs" / "version_0" / "checkpoints" / "last.ckpt" for run in spec.runs()]
        while not all(c.exists() for c in checkpoints):  # both fits are training
            assert study.poll() is None, (tmp_path / "study.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the study's fits wrote no checkpoint"
            time.sleep(0.2)
        study.send_signal(signal.SIGTERM)  # to the study alone: it must stop its fits itself
        assert study.wait(timeout=120) == 130
    finally:
        if study.poll() is None:
            os.killpg(study.pid, signal.SIGKILL)
    output = (tmp_path / "study.out").read_text()
    assert "study stopped; run the same study command again to resume" in output
    for run in spec.runs():
        log = (run.folder / "fit.log").read_text()
        assert "stopped by SIGTERM after step" in log  # each fit saved and exited, none was orphaned
        assert (run.log_dir / "checkpoints" / "last.ckpt").exists()
        assert run.command()[-2:] == ["--ckpt_path", "last"]


def test_a_half_finished_run_refuses_to_continue_under_edited_settings(tmp_path, lunarlander_demo_file, expect_user_error):
    path = _study_config(tmp_path, lunarlander_demo_file, {"sqil": {}}, {"trainer.max_steps": 60})
    (run,) = StudySpec.load(path).runs()
    run.record_settings()  # as execute() does when the run first starts
    checkpoints = run.folder / "logs" / "version_0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"")  # then the study was stopped mid-run
    run.check_settings_unchanged()  # same settings: it may continue
    edited = yaml.safe_load(path.read_text())
    edited["common"]["trainer.max_steps"] = 90
    path.write_text(yaml.safe_dump(edited, sort_keys=False))
    line = expect_user_error(["study", "--config", str(path)])
    assert f"study run {run.folder} was started with other settings (trainer.max_steps changed" in line
    assert "delete that folder" in line


@pytest.mark.slow
def test_start_settings_and_methods_can_be_run_alone(tmp_path, lunarlander_demo_file, capsys, expect_user_error):
    methods = {"sqil": {}, "sqil_t": {"overrides": {"model.class_path": "sqil_lightning.SoftQSQILT"}}}
    config = yaml.safe_load(_study_config(tmp_path, lunarlander_demo_file, methods, {"trainer.max_steps": 60}).read_text())
    config["start_settings"]["s0_train"] = {"result_key": "greedy_shifted", "overrides": {"data.start_shift": SHIFT}}
    path = tmp_path / "two_starts.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    main(["study", "--config", str(path), "--start-settings", "s0_demo", "--methods", "sqil"])
    assert "0 of 1 runs finished, 1 to go" in capsys.readouterr().out
    demo_run, train_run, demo_run_t, train_run_t = StudySpec.load(path).runs()
    assert demo_run.result_path.exists()
    assert not any(run.folder.exists() for run in (train_run, demo_run_t, train_run_t))
    line = expect_user_error(["study", "--config", str(path), "--methods", "dqn"])
    assert "--methods dqn: not in" in line and "known: ['sqil', 'sqil_t']" in line
