"""Issue 27, items 6 to 8: settings refused before any work with a message that names the valid form
(landscape counts set once, every bad override on a line explained, typed values in words), folders
that cannot be misused (a symbolic-link loop, a folder of one's own, two evaluations in one second),
and difficulty levels that are not finite."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from commands import finish, start
from omegaconf import OmegaConf
from tiny_runs import TRAIN

from irem.build import build_model, build_task
from irem.config import EvalConfig
from irem.errors import SettingError
from irem.precheck import _override_errors, precheck
from irem.run_guard import check_eval_target, check_train_target, claim_output_dir, fresh_output_dir
from irem.run_identity import upgrade_config
from irem.task import per_instance_level

IRED_SMALL = ("task.size=3", "energy.width=16", "objective=ired", "solver=annealed")


# -- item 6: landscape counts set once; every bad override explained -------------------------------------


def test_energy_landscapes_works_as_the_readme_writes_it(compose_config, capsys) -> None:
    precheck("train", [*IRED_SMALL, "energy.landscapes=10"])  # no exit: the key is in the energy's config
    assert capsys.readouterr().err == ""
    cfg = compose_config("train", (*IRED_SMALL, "energy.landscapes=10"))
    model = build_model(cfg, build_task(cfg.task))
    assert model.solver.landscapes == 10 and model.solver.max_steps == 10 * cfg.solver.steps_per_landscape


def test_the_solver_descends_the_energys_landscapes_whatever_their_count(compose_config) -> None:
    cfg = compose_config("train", (*IRED_SMALL, "energy.landscapes=4", "task.test_size=8"))
    task = build_task(cfg.task)
    model = build_model(cfg, task)  # was: trained every iteration, then failed at evaluation (10 != 4)
    assert model.solver.landscapes == 4 and model.default_budget == 4 * cfg.solver.steps_per_landscape
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        answers = model.eval().predict(task, task.split("test"), [8, model.default_budget], g).answers
    assert all(bool(torch.isfinite(a).all()) for a in answers.values())


def test_counts_that_disagree_or_an_energy_without_landscapes_are_refused_at_build(compose_config) -> None:
    cfg = compose_config("train", (*IRED_SMALL, "energy.landscapes=4", "solver.landscapes=10"))
    with pytest.raises(
        SettingError, match=r"solver.landscapes=10, but the energy has 4 .*leave solver.landscapes unset"
    ):
        build_model(cfg, build_task(cfg.task))
    cfg = compose_config("train", (*IRED_SMALL, "energy.landscapes=0"))
    with pytest.raises(
        SettingError, match=r"objective=ired trains .* \(energy.landscapes=0\): give it some, e.g\. energy"
    ):
        build_model(cfg, build_task(cfg.task))  # was: a traceback at the first iteration


def test_a_saved_config_that_repeated_the_count_resumes(compose_config) -> None:
    saved = {"solver": {"_target_": "irem.ired.annealed.AnnealedDescent", "landscapes": 10}}
    saved["energy"] = {"_target_": "irem.energies.mlp.MLPEnergy", "landscapes": 10}
    assert upgrade_config(saved).solver.landscapes is None


def test_every_bad_override_on_a_line_is_explained() -> None:
    errors = _override_errors(
        "train",
        ["energy.head=squared_norm", "trainer.itrations=5", "+energy.landscapes=3", "seed=x", "eval.levels=abc"],
    )
    assert errors == [
        "Error in override 'energy.head=squared_norm': energy.head is a setting of irem.energies.mlp.MLPEnergy, but "
        "the energy config does not list it, so Hydra needs it added with a plus: +energy.head=squared_norm",
        "Error in override 'trainer.itrations=5': Unknown key 'trainer.itrations'. Did you mean 'iterations'? "
        "Valid keys: iterations, batch_size, lr, optimizer, weight_decay, warmup, lr_schedule, min_lr_fraction, "
        "grad_clip, log_every, checkpoint_every, val_every, time_limit, progress, max_loss, ema_decay, ema_every, "
        "ema_warmup, learning_check.",
        "Error in override '+energy.landscapes=3': energy.landscapes is in the config already, so it is set "
        "without the plus: energy.landscapes=3",
        "Error in override 'seed=x': seed takes a whole number, not 'x'; e.g. seed=0.",
        "Error in override 'eval.levels=abc': eval.levels takes a list of numbers in brackets, not 'abc'; "
        "e.g. eval.levels=[1,0.2].",
    ]


def test_a_typed_value_is_refused_in_words_by_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        precheck("evaluate", ["run_dir=x", "eval.levels=abc"])
    assert stop.value.code == 2
    assert "eval.levels takes a list of numbers in brackets, not 'abc'" in capsys.readouterr().err


# -- item 7: a symbolic-link loop --------------------------------------------------------------------------


def test_a_symbolic_link_loop_is_named_not_a_traceback(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(SettingError, match=rf"hydra.run.dir={loop} cannot be used: .*loop of symbolic links"):
        check_train_target(loop, overwrite=False)
    with pytest.raises(SettingError, match=rf"run_dir={loop} cannot be used"):
        check_eval_target(OmegaConf.create({"run_dir": str(loop), "checkpoint": None}))
    done = finish(start("irem-train", [*TRAIN, f"hydra.run.dir={loop}"], tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr and "loop of symbolic links" in done.stderr


# -- item 8: folders that cannot collide or be overwritten; finite levels -------------------------------


def test_two_evaluations_started_in_one_second_get_folders_of_their_own(tmp_path: Path) -> None:
    planned = tmp_path / "run" / "eval" / "2026-12-07_10-00-00"
    planned.parent.parent.mkdir()
    cfg = OmegaConf.create({"hydra": {"run": {"dir": str(planned)}}})  # both composed in the same second
    first, second = ["irem-eval", "run_dir=x"], ["irem-eval", "run_dir=x"]
    claim_output_dir(cfg, first)
    claim_output_dir(cfg, second)
    assert first[-1] == f"hydra.run.dir='{planned}'" and second[-1] == f"hydra.run.dir='{planned}-2'"
    assert planned.is_dir() and Path(f"{planned}-2").is_dir()
    assert fresh_output_dir(planned).name == f"{planned.name}-3"


def test_a_folder_of_ones_own_is_not_trained_into_without_being_told(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (mine / "eval.csv").write_text("my own table")
    done = finish(start("irem-train", [*TRAIN, "trainer.iterations=1", f"hydra.run.dir={mine}"], tmp_path))
    assert done.returncode == 1 and "holds files that no irem run wrote (eval.csv, notes.txt)" in done.stderr
    assert "overwrite_dir=true" in done.stderr and sorted(p.name for p in mine.iterdir()) == ["eval.csv", "notes.txt"]
    check_train_target(mine, overwrite=True)  # told to: no refusal
    run = tmp_path / "run"
    for name in (".hydra", "checkpoints", "tb", "eval"):
        (run / name).mkdir(parents=True)
    (run / "cli.log").write_text("")
    check_train_target(run, overwrite=False)  # a run's own files: resumed as before
    (run / "notes.txt").write_text("mine")
    with pytest.raises(SettingError, match=r"holds files that no irem run wrote \(notes.txt\)"):
        check_train_target(run, overwrite=False)


@pytest.mark.parametrize("level", [math.nan, math.inf, -math.inf])
def test_levels_that_are_not_finite_are_refused(level: float) -> None:
    with pytest.raises(ValueError, match="difficulty must be finite"):
        per_instance_level(level, 3)
    with pytest.raises(ValueError, match="difficulty must be finite"):
        per_instance_level(torch.tensor([1.0, level]), 2)
    with pytest.raises(SettingError, match="eval.levels holds .*a difficulty level must be a finite number"):
        EvalConfig(levels=[1.0, level])


@pytest.mark.parametrize("noise", [math.nan, math.inf])
def test_an_image_task_at_a_noise_that_is_not_finite_is_refused(noise: float) -> None:
    from irem.tasks.images import ImageDenoising

    with pytest.raises(ValueError, match="noise levels must be finite numbers > 0"):
        ImageDenoising(difficulty=noise)
    with pytest.raises(ValueError, match="noise levels must be finite numbers > 0"):
        ImageDenoising(harder_levels=[0.2, noise])
