"""irem-train / irem-eval end to end, as a user runs them (subprocesses of the venv's scripts).

The commands run once per module, independent ones side by side, to keep the suite fast.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from commands import finish, start

from irem.cli import CONFIG_DIR, _fit, precheck
from irem.errors import SettingError

TRAIN = [
    "trainer.iterations=3",
    "trainer.progress=false",
    "trainer.batch_size=32",
    "eval.budgets=[1,2]",
    "task.test_size=16",
    "threads=1",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    cwd = tmp_path_factory.mktemp("cwd")
    first = start("irem-train", [*TRAIN, f"hydra.run.dir={run_dir}"], cwd)
    typo_trainer = start("irem-train", ["trainer.iteratons=3", f"hydra.run.dir={run_dir}-typo"], cwd)
    typo_solver = start("irem-train", ["solver.stepsize=1", f"hydra.run.dir={run_dir}-typo"], cwd)
    out = {"run_dir": run_dir, "cwd": cwd, "first": finish(first)}
    out["typo_trainer"], out["typo_solver"] = finish(typo_trainer), finish(typo_solver)
    if out["first"].returncode == 0:
        again = start("irem-train", [*TRAIN, f"hydra.run.dir={run_dir}"], cwd)
        evaluate = start("irem-eval", [f"run_dir={run_dir}", "eval.budgets=[1,3]", "threads=1"], cwd)
        # a copy of the run: two trainings of one directory at once are refused by its lock
        other_dir = tmp_path_factory.mktemp("other") / "run"
        shutil.copytree(run_dir, other_dir)
        other = start("irem-train", [*TRAIN, "solver.max_steps=5", f"hydra.run.dir={other_dir}"], cwd)
        levels_dir = run_dir.parent / "levels"
        levels = start(
            "irem-eval", [f"run_dir={run_dir}", "eval.levels=[1,0.2,0.05]", f"hydra.run.dir={levels_dir}"], cwd
        )
        out["again"], out["eval"], out["other"] = finish(again), finish(evaluate), finish(other)
        out["levels"], out["levels_dir"] = finish(levels), levels_dir
    return out


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )


def test_train_runs_and_prints_a_table(runs) -> None:
    first = runs["first"]
    ok(first)
    assert "trained 3 iterations" in first.stdout
    for word in ("mse", "steps 1", "steps 2", "best", "test", "harder"):
        assert word in first.stdout, word


def test_train_writes_results_and_checkpoint(runs) -> None:
    ok(runs["first"])
    run_dir = runs["run_dir"]
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    rows = json.loads((run_dir / "eval.json").read_text())
    assert {(r["split"], r["budget"]) for r in rows} == {(s, b) for s in ("test", "harder") for b in ("1", "2", "best")}
    assert all(r["n"] == 16 for r in rows)
    with (run_dir / "eval.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert json.loads((run_dir / "train_summary.json").read_text())["iterations"] == 3
    assert not list(runs["cwd"].iterdir()), "the run wrote outside hydra.run.dir"


def test_running_again_resumes(runs) -> None:
    ok(runs["first"])
    again = runs["again"]
    ok(again)
    assert "Resuming" in again.stdout
    assert "resumed a finished run: evaluating only (it trained 3 iterations" in again.stdout
    first_rows = json.loads((runs["run_dir"] / "eval.json").read_text())
    assert first_rows  # rewritten by the resumed run, same splits and budgets


def test_resuming_with_another_config_is_refused(runs) -> None:
    ok(runs["first"])
    other = runs["other"]
    assert other.returncode != 0
    assert "solver.max_steps" in other.stdout + other.stderr
    assert "resume=false" in other.stdout + other.stderr
    assert "name=run-2 is free" in other.stdout + other.stderr  # a name that does not collide


def test_eval_of_a_run(runs) -> None:
    ok(runs["first"])
    ev = runs["eval"]
    ok(ev)
    assert "steps 3" in ev.stdout and "best" in ev.stdout
    results = list((runs["run_dir"] / "eval").glob("*/eval.json"))
    assert len(results) == 1
    rows = json.loads(results[0].read_text())
    assert {r["budget"] for r in rows} == {"1", "3", "best"}
    # the same seed and checkpoint give the same 1-step error as the training run's own evaluation
    train_rows = json.loads((runs["run_dir"] / "eval.json").read_text())
    one = {r["split"]: r["value"] for r in rows if r["budget"] == "1"}
    assert one == {r["split"]: r["value"] for r in train_rows if r["budget"] == "1"}


def test_eval_names_the_solver_and_reports_each_solve_once(runs) -> None:
    ok(runs["first"])
    ev = runs["eval"]
    ok(ev)
    assert "solver Descent(step_size=100, max_steps=10, backward=last): plain steps" in ev.stdout
    lines = ev.stdout.splitlines()
    solves = lines[next(i for i, x in enumerate(lines) if "steps used" in x) :]
    assert "instances" in solves[0] and "seconds" in solves[0]
    for split in ("test", "harder"):
        line = next(x.split() for x in solves if x.split() and x.split()[0] == split)
        assert line[1:3] == ["16", "3"]  # instances, and the steps of the one solve to the largest budget
    rows = json.loads(next((runs["run_dir"] / "eval").glob("*/eval.json")).read_text())
    for split in ("test", "harder"):
        mine = [r for r in rows if r["split"] == split]
        assert len({r["solve_seconds"] for r in mine}) == 1 and mine[0]["solve_seconds"] > 0  # one solve, one time
        assert {r["steps_mean"] for r in mine} == {3.0}
        assert "seconds" not in mine[0]


def test_eval_at_other_difficulty_levels_prints_a_row_per_level(runs) -> None:
    ok(runs["first"])
    levels = runs["levels"]
    ok(levels)
    lines = levels.stdout.splitlines()
    table = lines[: next(i for i, x in enumerate(lines) if "steps used" in x)]  # the mse table, not the solves
    for name in ("test", "harder", "level 1", "level 0.2", "level 0.05"):
        assert sum(1 for line in table if line.strip().startswith(name + " ")) == 1, name
    rows = json.loads((runs["levels_dir"] / "eval.json").read_text())
    by_set = {r["split"] for r in rows}
    assert by_set == {"test", "harder", "level 1", "level 0.2", "level 0.05"}
    assert {r["n"] for r in rows} == {16}  # task.test_size instances per level
    mse = {r["split"]: r["value"] for r in rows if r["budget"] == "1"}
    assert len(set(mse.values())) == 5  # fresh sets, not copies of one split


def test_a_missing_split_points_to_eval_levels(compose_config) -> None:
    from irem.build import build_task
    from irem.cli import check_eval_sets
    from irem.tasks.text import TextTask

    task = build_task(compose_config("train", ("task=inverse", "task.test_size=4", "task.val_size=4")).task)
    with pytest.raises(
        SettingError, match=r"harder_30, which task 'inverse' does not have.*eval\.levels=\[0\.5,0\.1\]"
    ):
        check_eval_sets(task, ["test", "harder_30"], [])
    with pytest.raises(SettingError, match="level 0 is rejected by task 'inverse'"):
        check_eval_sets(task, ["test"], [0.5, 0.0])
    with pytest.raises(SettingError) as err:  # text has no levels: the message names the splits only
        check_eval_sets(TextTask(context=4, test_size=2, val_size=2), ["harder"], [])
    assert "eval.levels" not in str(err.value) and "Valid splits: train, val, test" in str(err.value)


def test_misspelt_trainer_key(runs) -> None:
    proc = runs["typo_trainer"]
    assert proc.returncode != 0
    assert "Did you mean 'iterations'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_misspelt_solver_key(runs) -> None:
    proc = runs["typo_solver"]
    assert proc.returncode != 0
    assert "Did you mean 'step_size'" in proc.stderr
    assert "step_size, max_steps" in proc.stderr
    assert not Path(f"{runs['run_dir']}-typo").exists()


def test_key_of_an_unchosen_group_names_the_choices(capsys) -> None:
    """irem-eval's solver group is empty unless chosen: say so instead of Hydra's 'not in struct'."""
    with pytest.raises(SystemExit) as exit_info:
        precheck("evaluate", ["run_dir=somewhere", "solver.max_steps=40"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no solver is chosen" in err and "solver=<name> solver.max_steps=40" in err
    assert "adaptive" in err and "gd_accept" in err


@pytest.mark.parametrize("override", ["task.harder_difficulty=30", "task=inverse"])
def test_a_task_setting_for_irem_eval_points_to_eval_levels(override: str, capsys) -> None:
    """irem-eval has no task group (the run brings its task): the answer names eval.levels, not the
    `task=<name> task.harder_difficulty=30` that Hydra then refuses."""
    with pytest.raises(SystemExit) as exit_info:
        precheck("evaluate", ["run_dir=somewhere", override])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"Error in override '{override}'" in err and "run_dir" in err
    assert '"eval.levels=[1,0.2,0.05]"' in err and "task=<name>" not in err


def test_config_dir_is_the_repository_configs() -> None:
    assert (Path(CONFIG_DIR) / "train.yaml").is_file() and (Path(CONFIG_DIR) / "evaluate.yaml").is_file()


def test_eval_split_the_task_lacks_is_refused_before_training(compose_config, tmp_path) -> None:
    cfg = compose_config("train", ("task=inverse", "eval.splits=[test,hardr]", "trainer.iterations=1"))
    with pytest.raises(
        SettingError, match="hardr, which task 'inverse' does not have. Valid splits: train, val, test, harder"
    ):
        _fit(cfg, str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_solver_settings_change_the_trained_solver_and_keep_its_learned_step() -> None:
    import torch

    from irem.solver_settings import apply_solver_settings
    from irem.solvers.best_of_n import BestOfN
    from irem.solvers.gradient_descent import GradientDescent

    trained = GradientDescent(step_size=3.0, learnable_step=True)
    with torch.no_grad():
        trained.log_step_size.add_(0.5)  # as if training had moved it
    changed = apply_solver_settings(BestOfN(descent=trained), {"noise": 0.01, "accept_if_lower": True}).descent
    assert [repr(t) for t in changed.chain] == [
        "Noise(scale=0.01, schedule=constant, final_fraction=0.1)",
        "AcceptIfLower(shrink=0.5)",
    ]
    assert float(changed.step_size.detach()) == pytest.approx(3.0 * 2.718281828**0.5)  # the learned step
    assert changed.learnable_step and changed.log_step_size.requires_grad
    with pytest.raises(SettingError, match=r"solver_settings.noise=-0.5 refused: Noise: scale must be a finite"):
        apply_solver_settings(trained, {"noise": -0.5})  # the constructor's own check, not a setattr
    with pytest.raises(SettingError, match="Unknown key 'solver_settings.nois'. Did you mean 'noise'"):
        apply_solver_settings(trained, {"nois": 0.1})


def test_a_checkpoint_that_predates_a_new_option_resumes_when_the_option_is_at_its_default() -> None:
    """A run trained before GradientDescent had `momentum` saved no such key; resuming it with the
    option at its default continues the same run, with any other value it is a different run."""
    from irem.run_identity import same_run as _same_run

    saved = {"solver": {"_target_": "irem.solvers.gradient_descent.GradientDescent", "step_size": 3.0}, "seed": 0}

    def current(**solver) -> dict:
        return {"solver": {**saved["solver"], **solver}, "seed": 0}

    assert _same_run(saved, current(momentum=0.0, restart=False)) == []
    assert _same_run(saved, current(momentum=0.6)) == ["solver.momentum"]
    assert _same_run(saved, current(step_size=2.0, momentum=0.0)) == ["solver.step_size"]
    assert _same_run(saved, {**current(), "extra": 1}) == ["extra"]  # no constructor to ask: a difference


def test_the_command_line_imports_no_heavy_module_before_it_runs() -> None:
    """`irem-train --help` and a misspelt key answer at once: irem.cli imports Hydra, not torch, the
    study, matplotlib, scipy.stats, TensorBoard or torch-geometric (seconds on a busy machine)."""
    import sys

    heavy = ("torch", "torch_geometric", "scipy.stats", "matplotlib", "tensorboard", "irem.study")
    code = f"import sys, irem.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("preset", ["irem_inverse", "ired_inverse"])
def test_precheck_lets_an_experiment_preset_through(preset):
    """experiment= chooses a group of the train config (it has no `experiment` key of its own); the
    check that refuses a group a command does not take must not refuse it."""
    precheck("train", [f"experiment={preset}", "trainer.iterations=5"])  # raises SystemExit when refused


@pytest.mark.parametrize("config_name", ["train", "evaluate", "study", "generate"])
def test_help_names_the_command(config_name: str) -> None:
    """Issue 32: `irem-train --help` began "cli is powered by Hydra" (the module's name)."""
    from hydra import compose, initialize_config_dir

    from irem.precheck import COMMANDS

    required = {"evaluate": ["run_dir=x"], "generate": ["run_dir=x", "prompt=x"]}.get(config_name, [])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=required, return_hydra_config=True)
    assert cfg.hydra.help.app_name == COMMANDS[config_name]


def test_irem_train_help_begins_with_its_name(tmp_path: Path) -> None:
    done = finish(start("irem-train", ["--help"], tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("irem-train is powered by Hydra.")
