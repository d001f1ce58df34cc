"""Config values refused before training, with the setting, the bad value and the valid range.

Each case used to fail late or cryptically: a ZeroDivisionError at the first iteration, an
autograd error, eval settings refused only after the whole training, a bare AssertionError for a
missing GPU, an ignored override, a TypeError from a constructor, Hydra's own error formatting.
Most cases call the check the commands run (precheck, before Hydra makes any folder; _fit, before
the Trainer exists) and assert that nothing was trained; two run the installed commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from commands import finish, start

from irem.build import build_model, build_task
from irem.cli import _fit, precheck
from irem.config import EvalConfig
from irem.device import resolve_device
from irem.errors import SettingError

# A run that would train at once if nothing refused it: one iteration, a small batch.
QUICK = ("trainer.iterations=1", "trainer.batch_size=8", "trainer.progress=false", "task.test_size=8")


def refused(config_name: str, argv: list[str], capsys) -> str:
    """What precheck prints when it refuses `argv` (exit status 2, before Hydra starts)."""
    with pytest.raises(SystemExit) as exit_info:
        precheck(config_name, argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def assert_nothing_trained(out_dir: Path) -> None:
    assert not (out_dir / "checkpoints").exists() and not (out_dir / "tb").exists()
    assert not (out_dir / "train_summary.json").exists()


# (override, what the message must say about the valid range)
TRAINER_CASES = [
    ("trainer.checkpoint_every=0", "whole number of iterations >= 1"),
    ("trainer.log_every=0", "whole number of iterations >= 1"),
    ("trainer.iterations=-1", "whole number >= 0"),
    ("trainer.batch_size=0", "whole number >= 1"),
    ("trainer.lr=0", "finite number > 0"),
    ("trainer.lr=nan", "finite number > 0"),
    ("trainer.weight_decay=-0.1", "finite number >= 0"),
    ("trainer.warmup=-5", "whole number of iterations >= 0"),
    ("trainer.min_lr_fraction=2", "in [0, 1]"),
    ("trainer.grad_clip=-1", "null (no clipping) or a number >= 0"),
    ("trainer.val_every=-1", ">= 0 (0: no validation)"),
    ("trainer.time_limit=-10", "null (no limit) or seconds >= 0"),
]


@pytest.mark.parametrize(("override", "valid"), TRAINER_CASES, ids=[c[0] for c in TRAINER_CASES])
def test_a_trainer_value_out_of_range_is_refused_before_hydra_starts(override: str, valid: str, capsys) -> None:
    """Before: precheck let these through; checkpoint_every=0 and log_every=0 then died with a
    ZeroDivisionError at the first iteration, the others trained or failed inside torch."""
    setting = override.split("=", 1)[0]
    err = refused("train", [override, "threads=1"], capsys)
    assert f"irem-train: {setting}=" in err and "is out of range" in err and valid in err
    assert f"e.g. {setting}=" in err  # the fix: the schema's default


def test_the_library_trainer_refuses_the_same_values(compose_config, out_dir: Path) -> None:
    """Trainer(**settings) builds a TrainerConfig, so library code gets the command's check. Before:
    Trainer(checkpoint_every=0) was accepted and fit() raised ZeroDivisionError."""
    from irem.trainer import Trainer

    cfg = compose_config("train", ("energy.width=16", "energy.depth=1", "task.size=3"))
    task = build_task(cfg.task)
    with pytest.raises(SettingError, match=r"trainer\.checkpoint_every=0 is out of range.*>= 1"):
        Trainer(task, build_model(cfg, task), out_dir, iterations=1, checkpoint_every=0)
    assert_nothing_trained(out_dir)


def test_trainer_values_are_refused_by_irem_train_before_its_first_iteration(compose_config, tmp_path) -> None:
    """The commands' own check, for a multirun (which precheck skips). Before: _fit trained until
    the ZeroDivisionError of `iteration % log_every`."""
    cfg = compose_config("train", (*QUICK, "trainer.log_every=0"))
    with pytest.raises(SettingError, match=r"trainer\.log_every=0 is out of range"):
        _fit(cfg, str(tmp_path))
    assert_nothing_trained(tmp_path)


def test_solver_max_steps_0_is_refused_before_training(compose_config, tmp_path) -> None:
    """Before: the first training solve took no step and backward raised `element 0 of tensors does
    not require grad`."""
    cfg = compose_config("train", (*QUICK, "solver.max_steps=0"))
    with pytest.raises(SettingError, match=r"solver\.max_steps=0 is out of range.*whole number >= 1"):
        _fit(cfg, str(tmp_path))
    assert_nothing_trained(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("solver.step_size=-1",),
            "solver.step_size=-1 refused by irem.solvers.descent.Descent: Descent: step_size "
            "must be a finite number > 0, got -1",
        ),
        (
            ("solver=langevin", "solver.transforms.noise.scale=-0.5"),
            "solver.transforms.noise.scale=-0.5 refused by "
            "irem.solvers.transforms.noise.Noise: Noise: scale must be a finite number >= 0",
        ),
        (
            ("solver=gd_momentum", "solver.transforms.momentum.coef=1.5"),
            "solver.transforms.momentum.coef=1.5 refused "
            "by irem.solvers.transforms.momentum.Momentum: Momentum: coef must be in [0, 1)",
        ),
        (
            ("solver.grad_tol=-1",),
            "solver.grad_tol=-1 refused by irem.solvers.descent.Descent: Descent: grad_tol must "
            "be null (no tolerance) or a number >= 0",
        ),
    ],
)
def test_a_solver_value_the_constructor_refuses_names_the_setting(
    overrides: tuple[str, ...], message: str, compose_config, tmp_path
) -> None:
    """Before: step_size=-1 surfaced as Hydra's InstantiationException trace (full_key: solver),
    and a negative noise, a zero clip or a negative tolerance were accepted; a transform's own check
    names the transform's setting inside the solver."""
    cfg = compose_config("train", (*QUICK, *overrides))
    with pytest.raises(SettingError) as err:
        _fit(cfg, str(tmp_path))
    assert message in str(err.value)
    assert_nothing_trained(tmp_path)


EVAL_CASES = [
    ("eval.budgets=[]", "eval.budgets is empty; give at least one step budget, e.g. eval.budgets=[1,2,5,10]"),
    ("eval.budgets=[-1]", "eval.budgets must be step counts >= 0, e.g. eval.budgets=[1,2,5,10]; got [-1]"),
    ("eval.batch_size=0", "eval.batch_size=0 is out of range: it must be a whole number of instances >= 1"),
    ("eval.instances=0", "eval.instances=0 is out of range"),
]


@pytest.mark.parametrize(("override", "message"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_settings_are_refused_by_irem_train_before_training(
    override: str, message: str, compose_config, tmp_path
) -> None:
    """Before: these were refused only after the whole training (here: _fit trained and returned)."""
    cfg = compose_config("train", (*QUICK, override))
    with pytest.raises(SettingError) as err:
        _fit(cfg, str(tmp_path))
    assert message in str(err.value)
    assert_nothing_trained(tmp_path)


@pytest.mark.parametrize(("override", "message"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_settings_are_refused_by_irem_eval_before_loading(override: str, message: str, capsys) -> None:
    """Before: irem-eval loaded the run and failed inside evaluate() (or, for batch_size=0, inside
    the batching), with a traceback."""
    err = refused("evaluate", ["run_dir=somewhere", override], capsys)
    assert f"irem-eval: {message}" in err


def test_nothing_to_evaluate_is_refused() -> None:
    """Before: eval.splits=[] eval.levels=[] trained and then printed an empty table."""
    with pytest.raises(SettingError, match="eval.splits and eval.levels are both empty"):
        EvalConfig(splits=[], levels=[])


def test_device_cuda_without_cuda_says_what_to_use(monkeypatch, capsys) -> None:
    """Before: resolve_device('cuda') returned a device and moving the model raised a bare
    AssertionError ('Torch not compiled with CUDA enabled' at best)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SettingError) as err:
        resolve_device("cuda")
    assert str(err.value).startswith("device=cuda but torch.cuda.is_available() is False")
    assert "use device=cpu or device=auto" in str(err.value)
    assert resolve_device("auto") == torch.device("cpu")
    for command in ("train", "evaluate"):  # both refuse it before anything is built
        argv = ["device=cuda"] + (["run_dir=somewhere"] if command == "evaluate" else [])
        assert "device=cuda but torch.cuda.is_available() is False" in refused(command, argv, capsys)


def test_an_unknown_device_lists_the_choices() -> None:
    """Before: torch's own RuntimeError about device strings."""
    with pytest.raises(SettingError, match="device=gpu is not a torch device. Valid choices: cpu, cuda"):
        resolve_device("gpu")


@pytest.mark.parametrize("override", ["+task.size=10", "+task.difficulty=3"])
def test_a_task_override_on_irem_eval_is_refused_naming_the_keys_it_accepts(override: str, capsys) -> None:
    """irem-eval refuses task overrides rather than applying them: the model was built with the
    task's sizes (an MLP for 20x20 matrices cannot load at size 10) and eval.levels is the way to
    other difficulty levels. Before: `+task.size=10` composed and was silently ignored."""
    err = refused("evaluate", ["run_dir=somewhere", override], capsys)
    assert f"Error in override '{override}'" in err
    assert "irem-eval accepts the keys run_dir, checkpoint, eval, solver, solver_settings, seed, device, threads" in err
    assert '"eval.levels=[1,0.2,0.05]"' in err


def test_an_energy_that_does_not_fit_the_task_lists_those_that_do(compose_config, tmp_path) -> None:
    """`irem-train task=text` with the default MLP energy. Before: TypeError("MLPEnergy.__init__()
    missing 2 required positional arguments: 'x_dim' and 'y_dim'")."""
    cfg = compose_config("train", ("task=text", *QUICK[:3]))
    with pytest.raises(SettingError) as err:
        _fit(cfg, str(tmp_path))
    message = str(err.value)
    assert "energy irem.energies.mlp.MLPEnergy does not fit task 'text': it needs x_dim, y_dim" in message
    assert "the task gives vocab_size, context" in message
    assert "Choices that fit task 'text': energy=transformer; baseline=transformer" in message
    assert_nothing_trained(tmp_path)


def test_an_energy_whose_shapes_do_not_fit_lists_those_that_do(compose_config) -> None:
    """The same list when the energy builds but cannot score the task's instances. Before: a
    ValueError naming the mismatch and no choice that works."""
    cfg = compose_config("train", ("energy=sudoku_conv", "task.size=3"))
    task = build_task(cfg.task)
    with pytest.raises(SettingError) as err:
        build_model(cfg, task)
    message = str(err.value)
    assert "does not fit task 'inverse'" in message and ".." not in message
    fitting = message.split("Choices that fit task 'inverse': ", 1)[1]
    assert "energy=matrix_product | mlp;" in fitting and "feedforward" in fitting and "sudoku" not in fitting


def test_irem_eval_without_run_dir_says_what_to_give(capsys) -> None:
    """Before: precheck passed and Hydra printed "An error occurred during Hydra's exception
    formatting: AssertionError()" with an interpolation traceback (hydra.run.dir is ${run_dir}/...)."""
    err = refused("evaluate", ["eval.budgets=[1,2]"], capsys)
    assert "irem-eval needs run_dir=<an irem-train run directory>, e.g. irem-eval run_dir=outputs/inverse-energy" in err


def test_irem_generate_without_prompt_says_what_to_give(monkeypatch, capsys, tmp_path) -> None:
    """Before: Hydra's raw MissingMandatoryValue for `prompt`."""
    from irem import cli

    monkeypatch.chdir(tmp_path)  # (before the change Hydra went on to make run_dir/generate/<time>/ here)
    monkeypatch.setattr(sys, "argv", ["irem-generate", "run_dir=somewhere"])
    with pytest.raises(SystemExit) as exit_info:
        cli.generate()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "irem-generate needs prompt=<the text to continue, quoted for Hydra>" in err
    assert """e.g. irem-generate run_dir=outputs/text-ebt_system2 'prompt="The "'""" in err


@pytest.fixture(scope="module")
def commands_run(tmp_path_factory) -> dict:
    """The installed commands, side by side: a late trainer error and a missing run_dir."""
    cwd = tmp_path_factory.mktemp("cwd")
    run_dir = cwd / "run"
    train = start("irem-train", ["trainer.checkpoint_every=0", "threads=1", f"hydra.run.dir={run_dir}"], cwd)
    evaluate = start("irem-eval", ["threads=1"], cwd)
    return {"cwd": cwd, "run_dir": run_dir, "train": finish(train), "eval": finish(evaluate)}


def test_irem_train_refuses_a_bad_value_without_making_its_run_folder(commands_run) -> None:
    """Before: the run folder was made and training started, to die with a ZeroDivisionError."""
    proc = commands_run["train"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "irem-train: trainer.checkpoint_every=0 is out of range" in proc.stderr
    assert "Traceback" not in proc.stderr and "ZeroDivisionError" not in proc.stderr
    assert not commands_run["run_dir"].exists()


def test_irem_eval_without_run_dir_exits_with_the_message(commands_run) -> None:
    proc = commands_run["eval"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "irem-eval needs run_dir=<an irem-train run directory>" in proc.stderr
    assert "AssertionError" not in proc.stderr and "Traceback" not in proc.stderr
    assert not any(commands_run["cwd"].iterdir())  # neither command made a folder
