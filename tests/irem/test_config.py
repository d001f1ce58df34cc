"""configs/ and irem/config.py, irem/build.py: every preset and group choice composes and builds,
and a wrong key or choice is answered with the valid ones."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
from omegaconf import OmegaConf

from irem.build import build_model, build_solver, build_task
from irem.cli import CONFIG_DIR
from irem.config import check_node, valid_keys
from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.errors import unknown_key_message
from irem.predictor import Predictor
from irem.run_identity import model_name
from irem.solver import Solver
from irem.task import Task
from irem.trainer import Trainer

SMALL = ("++task.test_size=8", "++task.val_size=8")


def test_every_experiment_composes_and_builds(experiment_name: str, compose_config, tmp_path) -> None:
    cfg = compose_config("train", (f"experiment={experiment_name}", *SMALL))
    task = build_task(cfg.task)
    assert isinstance(task, Task) and task.test_size == 8
    model = build_model(cfg, task)
    assert isinstance(model, Predictor)
    assert model.default_budget >= 1
    # the trainer and eval sections are what the CLI passes on: they must fit their consumers
    trainer = Trainer(task, model, tmp_path, seed=cfg.seed, device="cpu", **{**cfg.trainer, "progress": False})
    assert trainer.iterations == cfg.trainer.iterations
    assert set(cfg.eval.splits) <= set(task.split_levels())
    assert all(int(b) >= 1 for b in cfg.eval.budgets)


def test_paper_inverse_preset_matches_reference(compose_config) -> None:
    cfg = compose_config("train", ("experiment=irem_inverse", *SMALL))
    task = build_task(cfg.task)
    model = build_model(cfg, task)
    assert isinstance(model, EnergyModel)
    assert task.dims() == {"x_dim": 400, "y_dim": 400}
    assert 930_000 <= sum(p.numel() for p in model.energy.parameters()) <= 950_000
    assert float(model.solver.step_size.detach()) == pytest.approx(100.0)
    assert model.solver.max_steps == 10 and str(model.solver.backward) == "last" and model.solver.chain == ()
    assert model.replay.capacity == 10_000
    assert cfg.trainer.lr == pytest.approx(1e-4) and cfg.trainer.batch_size == 512
    assert list(cfg.eval.budgets)[-1] == 80


def test_every_solver_composes_and_builds(solver_name: str, compose_config) -> None:
    cfg = compose_config("train", (f"solver={solver_name}",))
    solver = build_solver(cfg.solver)
    assert isinstance(solver, Solver)
    if "landscapes" in cfg.solver:  # annealed: its budget is steps per landscape times the energy's landscapes
        assert cfg.solver.landscapes is None  # read from the energy: the count is set in one place
        energy = MLPEnergy(x_dim=4, y_dim=4, width=8, landscapes=7)
        assert solver.for_energy(energy).max_steps == 7 * cfg.solver.steps_per_landscape
        return
    assert solver.max_steps == cfg.solver.max_steps
    if "descent" in cfg.solver and cfg.solver.descent is None:  # a wrapper: takes the trained model's solver
        trained = build_solver(compose_config("train", ()).solver)
        assert solver.with_base(trained).descent is trained
        return
    assert float(solver.step_size.detach()) == pytest.approx(cfg.solver.step_size)


def _builds(cfg) -> EnergyModel | None:
    """The energy model of a composed config, or None when its energy does not fit its task."""
    try:
        return build_model(cfg, build_task(cfg.task))
    except (ValueError, InstantiationException):
        return None


def test_every_task_composes_and_builds(task_name: str, compose_config, config_names) -> None:
    cfg = compose_config("train", (f"task={task_name}", *SMALL))
    task = build_task(cfg.task)
    assert isinstance(task, Task)
    # the energy is sized from the task: the default one (MLP) for dense tasks, another config
    # (the GNN) for graph tasks
    models = [
        _builds(compose_config("train", (f"task={task_name}", f"energy={e}", *SMALL))) for e in config_names("energy")
    ]
    assert any(isinstance(m, EnergyModel) for m in models)
    if "x_dim" in task.dims():
        assert isinstance(build_model(cfg, task), EnergyModel)


def test_every_energy_builds_with_some_task(energy_name: str, compose_config, config_names) -> None:
    """The default task when the energy fits it, else the first task config that does."""
    for task_name in ["inverse", *config_names("task")]:
        model = _builds(compose_config("train", (f"energy={energy_name}", f"task={task_name}", *SMALL)))
        if model is not None:
            assert sum(p.numel() for p in model.parameters()) > 0
            return
    pytest.fail(f"energy {energy_name} builds with no task config")


def test_unknown_group_choice_fails() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"), pytest.raises(MissingConfigException) as err:
        compose("train", overrides=["task=nope"])
    assert "nope" in str(err.value) and "inverse" in str(err.value)


def test_misspelt_schema_key_fails_to_compose() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"), pytest.raises(ConfigCompositionException):
        compose("train", overrides=["trainer.iteratons=3"])


def test_wrong_type_in_schema_fails_to_compose() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"), pytest.raises(ConfigCompositionException):
        compose("train", overrides=["trainer.iterations=many"])


def test_check_node_names_valid_keys_and_suggests(compose_config) -> None:
    node = compose_config("train", ("solver=gd",)).solver
    check_node(node, "solver")  # the config as shipped is fine
    OmegaConf.set_struct(node, False)
    node.stepsize = 1.0
    with pytest.raises(ValueError) as err:
        check_node(node, "solver")
    msg = str(err.value)
    assert "Unknown key 'solver.stepsize'" in msg
    assert "Did you mean 'step_size'?" in msg
    for key in ("step_size", "max_steps", "backward", "transforms"):
        assert key in msg
    assert "irem.solvers.descent.Descent" in msg


def assert_typo_reported(group: str, name: str, compose_config) -> None:
    """A misspelt copy of the config's first key must be reported with a suggestion."""
    node = compose_config("train", (f"{group}={name}",))[group]
    check_node(node, group)  # the config as shipped is fine
    key = next(str(k) for k in node if not str(k).startswith("_"))
    typo = key[:-1] + key[-1] * 2
    OmegaConf.set_struct(node, False)
    node[typo] = node[key]
    with pytest.raises(ValueError, match=f"Did you mean '{key}'") as err:
        check_node(node, group)
    assert f"{group}.{typo}" in str(err.value)


def test_check_node_catches_a_typo_in_every_task(task_name: str, compose_config) -> None:
    assert_typo_reported("task", task_name, compose_config)


def test_check_node_catches_a_typo_in_every_energy(energy_name: str, compose_config) -> None:
    assert_typo_reported("energy", energy_name, compose_config)


def test_check_node_catches_a_typo_in_every_solver(solver_name: str, compose_config) -> None:
    assert_typo_reported("solver", solver_name, compose_config)


def test_check_node_needs_a_target() -> None:
    with pytest.raises(ValueError, match="_target_"):
        check_node(OmegaConf.create({"size": 3}), "task")
    check_node(None, "baseline")  # an absent group is fine


def test_unknown_target_is_reported() -> None:
    with pytest.raises(ValueError, match="irem.tasks.matrix.Nope"):
        valid_keys(OmegaConf.create({"_target_": "irem.tasks.matrix.Nope"}))


def test_unknown_key_message_without_close_match() -> None:
    msg = unknown_key_message("solver.zzz", "zzz", ["step_size", "max_steps"])
    assert "Did you mean" not in msg and "step_size, max_steps" in msg


def test_energy_of_wrong_size_is_reported_before_training(compose_config) -> None:
    cfg = compose_config("train", ("+energy.x_dim=5", *SMALL))
    with pytest.raises(ValueError) as err:
        build_model(cfg, build_task(cfg.task))
    assert "MLPEnergy(x_dim=5, y_dim=400)" in str(err.value) and "inverse" in str(err.value)


def test_build_rejects_a_target_of_the_wrong_kind(compose_config) -> None:
    cfg = compose_config("train", SMALL)
    cfg.solver = OmegaConf.create({"_target_": "torch.nn.Identity"})
    with pytest.raises(TypeError, match="not an irem Solver"):
        build_solver(cfg.solver)


def run_name(config_name: str, overrides: list[str]) -> str:
    """The `name` a command's config resolves to, as under Hydra (runtime choices set)."""
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        return str(cfg.name)
    finally:
        HydraConfig.instance().cfg = None


def test_run_name_resolver() -> None:
    assert model_name(None) == "energy" and model_name("null") == "energy"
    assert model_name("feedforward") == "feedforward"
    assert model_name(None, "gd") == "energy" and model_name(None, "langevin") == "energy-langevin"
    assert model_name("feedforward", "langevin") == "feedforward"  # a baseline has no solver to name
    assert run_name("train", ["task=addition"]) == "addition-energy"


def test_run_names_tell_apart_what_was_trained() -> None:
    """Another solver or a baseline gets its own outputs/<name> and checkpoint; presets keep theirs."""
    assert run_name("train", []) == "inverse-energy"  # the default run's name stays
    assert run_name("train", ["solver=gd_learned_step"]) == "inverse-energy-gd_learned_step"
    assert run_name("train", ["baseline=feedforward"]) == "inverse-feedforward"
    assert run_name("train", ["baseline=feedforward", "solver=langevin"]) == "inverse-feedforward"
    assert run_name("train", ["experiment=irem_inverse_adaptive"]) == "irem_inverse_adaptive"
    assert run_name("study", []) == "study-inverse-mlp"
    assert run_name("study", ["solver@train_solver=gd_accept"]) == "study-inverse-mlp-gd_accept"


def train_folder(*args: str) -> tuple[str, list[str]]:
    """Where irem-train would write for this command line, and the line Hydra is then given."""
    from hydra.core.hydra_config import HydraConfig

    from irem.cli import name_preset_overrides, precheck

    argv = ["irem-train", *args]
    try:
        cfg = name_preset_overrides(argv, precheck("train", argv[1:]))
        return str(cfg.hydra.run.dir), argv[1:]
    finally:
        HydraConfig.instance().cfg = None


def test_a_preset_with_groups_chosen_on_top_names_them() -> None:
    """Issue 32, item 7: `experiment=sudoku_graph energy=mlp` trained an MLP into outputs/sudoku_graph
    without a word (and the real preset was then refused there)."""
    assert train_folder("experiment=sudoku_graph", "energy=mlp") == (
        "outputs/sudoku_graph-energy.mlp",
        ["experiment=sudoku_graph", "energy=mlp", "name=sudoku_graph-energy.mlp"],
    )
    assert train_folder("experiment=irem_inverse", "baseline=feedforward", "solver=gd_accept")[0] == (
        "outputs/irem_inverse-solver.gd_accept-baseline.feedforward"
    )
    assert train_folder("task=addition", "experiment=irem_inverse")[0] == "outputs/irem_inverse-task.addition"


def test_unchanged_commands_keep_their_run_folders() -> None:
    """A changed name would start a new run where the same command used to resume the old one."""
    assert train_folder() == ("outputs/inverse-energy", [])
    assert train_folder("solver=gd_learned_step")[0] == "outputs/inverse-energy-gd_learned_step"
    assert train_folder("experiment=sudoku_graph", "trainer.iterations=5") == (
        "outputs/sudoku_graph",
        ["experiment=sudoku_graph", "trainer.iterations=5"],
    )
    assert train_folder("experiment=sudoku_graph", "energy=sudoku_graph")[0] == "outputs/sudoku_graph"  # its own
    assert train_folder("experiment=sudoku_graph", "energy=mlp", "name=mine")[0] == "outputs/mine"


def test_default_config_is_a_short_cpu_inverse_run(compose_config) -> None:
    cfg = compose_config("train", SMALL)
    assert cfg.task._target_ == "irem.tasks.matrix.Inverse" and cfg.device == "cpu" and cfg.resume is True
    assert torch.device(cfg.device).type == "cpu"


def test_one_budget_list_is_the_default_everywhere(compose_config) -> None:
    """irem-train's evaluation, irem-eval, irem-study and evaluate() share DEFAULT_BUDGETS."""
    import inspect

    from irem.budgets import DEFAULT_BUDGETS
    from irem.evaluation import evaluate

    assert list(compose_config("train", ()).eval.budgets) == list(DEFAULT_BUDGETS)
    assert list(compose_config("evaluate", ("run_dir=x",)).eval.budgets) == list(DEFAULT_BUDGETS)
    assert list(compose_config("study", ()).budgets) == list(DEFAULT_BUDGETS)
    assert inspect.signature(evaluate).parameters["budgets"].default == DEFAULT_BUDGETS


def test_one_torch_thread_by_default_and_null_keeps_torchs(compose_config) -> None:
    from irem.config import DEFAULT_THREADS

    assert DEFAULT_THREADS == 1
    for name in ("train", "study"):
        assert compose_config(name, ()).threads == 1
        assert compose_config(name, ("threads=null",)).threads is None
    assert compose_config("evaluate", ("run_dir=x",)).threads == 1


def test_a_config_saved_before_the_namespaced_install_and_the_objective_group_still_builds() -> None:
    """Runs saved by older code name plug-ins by their top-level packages and keep IREM's objective
    settings under `model`; they load as today's code names them, and a resume compares equal."""
    from irem.build import build_model, build_task
    from irem.run_identity import upgrade_config

    old = {
        "task": {"_target_": "tasks.matrix.Addition", "size": 2, "test_size": 4, "val_size": 4},
        "energy": {"_target_": "energies.mlp.MLPEnergy", "width": 8},
        "solver": {"_target_": "solvers.gradient_descent.GradientDescent", "step_size": 1.0, "max_steps": 2},
        "baseline": None,
        "model": {"replay_capacity": 0, "step_supervision": True, "input_stationarity": 0.5},
    }
    cfg = upgrade_config(old)
    assert cfg.task._target_ == "irem.tasks.matrix.Addition" and cfg.solver._target_.startswith("irem.solvers.")
    assert cfg.objective == {
        "_target_": "irem.objectives.irem.IREMObjective",
        "step_supervision": True,
        "input_stationarity": 0.5,
    }
    assert dict(cfg.model) == {"replay_capacity": 0}
    model = build_model(cfg, build_task(cfg.task))
    assert model.objective.step_supervision and model.objective.input_stationarity == 0.5
    assert upgrade_config(cfg) == cfg  # today's configs pass through unchanged
