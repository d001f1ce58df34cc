"""Command-line entry points: `irem-train`, `irem-eval`, `irem-study` and `irem-generate` (Hydra).

    irem-train                                   # embedded default: short inverse run + table
    irem-train experiment=irem_inverse           # the paper's settings
    irem-train task=addition baseline=feedforward trainer.iterations=500
    irem-eval run_dir=outputs/inverse-energy eval.budgets=[10,80] solver=gd_accept
    irem-eval run_dir=outputs/inverse-energy "eval.levels=[1,0.2,0.05]"   # fresh sets at other levels
    irem-study                                   # compute vs difficulty (irem/study_command.py)
    irem-generate run_dir=outputs/text-ebt_system2 'prompt="The "'   # irem/generate_command.py

Each run writes into `outputs/<name>`: the resolved config (.hydra/), TensorBoard events (tb/),
checkpoints/last.pt, train_summary.json, eval.json/eval.csv. Running the same command again
resumes from the checkpoint, so a killed run loses at most `trainer.checkpoint_every` iterations.
The run name says what was trained (inverse-energy, inverse-energy-gd_learned_step,
inverse-feedforward; a preset with groups chosen on top of it, sudoku_graph-energy.mlp), so runs of
different models do not share a checkpoint.

This module imports only Hydra at the top: torch, the trainer, the study and whatever a task
needs load inside the command that uses them, so `--help` and a misspelt key answer at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irem.openmp import configure_wait_policy

# before torch loads: a short bounded spin between ops (see irem/openmp.py for the measurements)
configure_wait_policy()

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from irem.config import (
    CONFIG_DIR,
    register_schemas,
    to_container,
)
from irem.errors import SettingError
from irem.precheck import check_config, name_preset_overrides, precheck
from irem.run_identity import register_resolvers, same_run

if TYPE_CHECKING:
    from irem.predictor import Predictor
    from irem.task import Task
    from irem.trainer import Trainer

register_schemas()
register_resolvers()


def setup(cfg: DictConfig) -> None:
    """Threads and the global seed of a command, before anything is built."""
    import torch

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))


def _report(rows: list[dict], out_dir: str, title: str, task: Task, solves: bool = False) -> None:
    """The table, and with `solves` the steps and seconds of each set's one solve (irem-eval)."""
    from irem.records import write_results
    from irem.tables import format_solves, format_table

    json_path, csv_path = write_results(rows, out_dir)
    print(format_table(rows, title, task.higher_is_better))
    if solves:
        print(format_solves(rows, title))
    print(f"results: {json_path} {csv_path}")


def free_name(out_dir: str | Path) -> str:
    """A run name whose directory beside `out_dir` is free: <name>-2, <name>-3, ..."""
    out = Path(out_dir)
    k = 2
    while (out.parent / f"{out.name}-{k}").exists():
        k += 1
    return f"{out.name}-{k}"


def check_eval_sets(task: Task, splits: list[str], levels: list[float]) -> None:
    """Splits the task has and levels it accepts, before minutes of training or loading."""
    from irem.problem_sets import levels_to_use, make_sets

    valid = task.split_levels()
    missing = [s for s in splits if s not in valid]
    if missing:
        hint = ""
        if task.level_label is not None:  # a task whose generate takes a level: any level can be evaluated
            shown = ",".join(f"{v:g}" for v in dict.fromkeys(valid.values()) if v is not None)
            hint = (
                f" For other difficulty levels ({task.level_label}), evaluate fresh seeded sets: "
                f"eval.levels=[{shown}] takes any values task.generate accepts."
            )
        raise SettingError(
            f"eval.splits names {', '.join(missing)}, which task '{task.name}' does not have. "
            f"Valid splits: {', '.join(valid)} (e.g. eval.splits=[{', '.join(list(valid)[1:3])}]).{hint}"
        )
    if levels:
        make_sets(task, levels_to_use(task, levels), 1, 0, mixed=False)  # the task judges its own levels


def _fit(cfg: DictConfig, out_dir: str) -> tuple[Task, Predictor, Trainer]:
    """Build the run `cfg` describes and train it in `out_dir`, resuming a checkpoint of the same
    config (irem-train, and irem-study's own short training)."""
    from irem.build import build_model, build_task
    from irem.checkpoint import load_run_state, recover, run_checkpoint
    from irem.data_files import add_task_files, read_task_files
    from irem.run_identity import upgrade_config
    from irem.trainer import Trainer

    check_config(cfg)
    task = build_task(cfg.task)
    model = build_model(cfg, task)  # first: an energy that does not fit the task is the choice to fix
    read_task_files(task)  # every data file read and checked before the first iteration
    if cfg.get("eval") is not None and cfg.eval.get("run", False):  # before training, not after it
        add_task_files(task, cfg.eval.get("files") or {})
        check_eval_sets(task, eval_splits(cfg.eval), list(cfg.eval.get("levels") or []))
    config = to_container(cfg)
    ckpt = run_checkpoint(out_dir)
    if cfg.resume and recover(ckpt) is not None:  # a corrupted last.pt falls back to previous.pt, with a note
        differ = same_run(to_container(upgrade_config(load_run_state(ckpt)["config"])), config)
        if differ:
            raise SystemExit(
                f"{ckpt} was written by a different config (differs in: {', '.join(differ)}). "
                f"Choose another name (name={free_name(out_dir)} is free), or pass resume=false to start over."
            )
        print(f"Resuming from {ckpt}")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.name}: task={task.name} model={type(model).__name__} params={n_params} -> {out_dir}")
    trainer = Trainer(task, model, out_dir, seed=cfg.seed, device=cfg.device, config=config, **cfg.trainer)
    trainer.fit(resume=cfg.resume)
    print(trainer.outcome())
    trainer.use_ema_weights()  # evaluated as load_run gives the run to irem-eval: its EMA, if it has one
    return task, model, trainer


def eval_splits(e: DictConfig) -> list[str]:
    """The splits an evaluation covers: `eval.splits`, then those read from `eval.files`."""
    return list(dict.fromkeys([*map(str, e.splits), *map(str, e.get("files") or {})]))


def _evaluation(task: Task, model: Predictor, cfg: DictConfig, device: Any) -> list[dict]:
    from irem.evaluation import evaluate

    e = cfg.eval
    return evaluate(
        task,
        model,
        eval_splits(e),
        e.budgets,
        cfg.seed,
        e.batch_size,
        device,
        levels=list(e.levels),
        instances=e.instances,
    )


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _train(cfg: DictConfig) -> None:
    from irem.run_guard import holding_run_dir

    setup(cfg)
    out_dir = HydraConfig.get().runtime.output_dir
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 holds the run directory's lock
        _train_locked(cfg, out_dir)
        return
    with holding_run_dir(out_dir, "irem-train"):  # taken already by train() unless a multirun: re-entrant
        _train_locked(cfg, out_dir)


def _train_locked(cfg: DictConfig, out_dir: str) -> None:
    from irem.errors import TrainingDiverged

    try:
        task, model, trainer = _fit(cfg, out_dir)
    except (SettingError, TrainingDiverged) as err:
        raise SystemExit(f"irem-train: {err}") from None
    if trainer.world_size > 1:  # under torchrun: rank 0 alone evaluates what the ranks trained together
        import torch.distributed

        torch.distributed.destroy_process_group()
    if cfg.eval.run and trainer.rank == 0:
        _report(_evaluation(task, model, cfg, trainer.device), out_dir, cfg.name, task)


def describe_model(model: Predictor, label: str | None = None) -> str:
    """Which solver a table is for: its config name when one was chosen, its class and the settings
    that matter; a model without a solver (a baseline) answers through its own predict."""
    from irem.solver_settings import describe_solver

    solver = getattr(model, "solver", None)
    if solver is None:
        return f"{type(model).__name__} (a direct predictor: no solver, its own steps per budget)"
    return f"solver {label + ': ' if label else ''}{describe_solver(solver)}"


@hydra.main(config_path=CONFIG_DIR, config_name="evaluate", version_base="1.3")
def _evaluate(cfg: DictConfig) -> None:
    from irem.build import build_solver, load_run
    from irem.data_files import add_task_files
    from irem.device import resolve_device
    from irem.solver_settings import set_solver_settings

    setup(cfg)
    try:
        check_config(cfg)
        path, saved, task, model = load_run(cfg.run_dir, cfg.checkpoint)
        add_task_files(task, cfg.eval.files or {})  # the user's own data, read and checked before any evaluation
        check_eval_sets(task, eval_splits(cfg.eval), list(cfg.eval.levels))
        label = None
        if cfg.get("solver") is not None:
            if not hasattr(model, "solver"):
                raise SettingError(f"solver=... applies to energy models; {path} holds a {type(model).__name__}.")
            model.use_solver(build_solver(cfg.solver))
            label = HydraConfig.get().runtime.choices.get("solver")
        set_solver_settings(model, cfg.solver_settings, str(path))
        device = resolve_device(cfg.device)
    except (SettingError, FileNotFoundError) as err:
        raise SystemExit(f"irem-eval: {err}") from err
    model.to(device)
    print(f"{saved.name}: {describe_model(model, label)}")
    rows = _evaluation(task, model, cfg, device)
    _report(rows, HydraConfig.get().runtime.output_dir, saved.name, task, solves=True)


@hydra.main(config_path=CONFIG_DIR, config_name="study", version_base="1.3")
def _study(cfg: DictConfig) -> None:
    from irem.build import build_task, load_run
    from irem.device import resolve_device
    from irem.errors import TrainingDiverged
    from irem.solver_settings import set_solver_settings
    from irem.study_command import ignored_overrides, preflight, run, training_config

    setup(cfg)
    out_dir = HydraConfig.get().runtime.output_dir
    try:
        check_config(cfg)
        if cfg.run_dir is None:
            preflight(cfg, build_task(cfg.task), CONFIG_DIR)  # before the training, not after it
            task, model, _ = _fit(training_config(cfg), out_dir)
        else:
            ignored = ignored_overrides(HydraConfig.get().overrides.task)
            if ignored:
                raise SystemExit(
                    f"{', '.join(ignored)}: these configure the study's own training, and run_dir={cfg.run_dir} "
                    "is studied as it was trained. Drop them, or drop run_dir to train a new model."
                )
            _, saved, task, model = load_run(cfg.run_dir, cfg.checkpoint)
            if "name" in saved:  # tables and plots are titled by the studied run, not the study's defaults
                with open_dict(cfg):
                    cfg.name = saved.name
        set_solver_settings(model, cfg.solver_settings, str(cfg.run_dir or "the study's own training"))
        device = resolve_device(cfg.device)
        model.to(device)
        run(cfg, task, model, out_dir, CONFIG_DIR, device)
    except (SettingError, TrainingDiverged) as err:  # a solver or level it cannot use; its own training exploding
        raise SystemExit(f"irem-study: {err}") from None


@hydra.main(config_path=CONFIG_DIR, config_name="generate", version_base="1.3")
def _generate(cfg: DictConfig) -> None:
    from irem.generate_command import run

    setup(cfg)
    run(cfg, HydraConfig.get().runtime.output_dir, HydraConfig.get().runtime.choices.get("solver"))


def train() -> None:
    from irem.run_guard import check_train_target, exit_status, holding_run_dir

    cfg = name_preset_overrides(sys.argv, precheck("train", sys.argv[1:]))
    out_dir = Path(str(cfg.hydra.run.dir)) if cfg is not None and int(os.environ.get("RANK", "0")) == 0 else None
    if out_dir is not None:
        try:
            check_train_target(out_dir, bool(cfg.overwrite_dir))
        except SettingError as err:
            raise SystemExit(f"irem-train: {err}") from None
    try:
        if out_dir is None:
            _train()
            return
        with holding_run_dir(out_dir, "irem-train"):  # before Hydra writes the run's .hydra/config.yaml
            _train()
    except KeyboardInterrupt as err:  # stopped by SIGINT or SIGTERM: its own status, no traceback
        raise SystemExit(exit_status(err)) from None


def evaluate() -> None:
    from irem.run_guard import check_eval_target, claim_output_dir

    cfg = precheck("evaluate", sys.argv[1:])
    if cfg is not None:
        try:  # before Hydra creates <run_dir>/eval/<time>/
            check_eval_target(cfg)
        except SettingError as err:
            raise SystemExit(f"irem-eval: {err}") from None
        claim_output_dir(cfg, sys.argv)
    _evaluate()


def study() -> None:
    from irem.run_guard import check_run_dir, claim_output_dir

    cfg = precheck("study", sys.argv[1:])
    if cfg is not None and cfg.get("run_dir") is not None:  # a study of a run writes into <run_dir>/study/<time>
        try:
            check_run_dir(cfg)
        except SettingError as err:
            raise SystemExit(f"irem-study: {err}") from None
        claim_output_dir(cfg, sys.argv)
    _study()


def generate() -> None:
    from irem.run_guard import check_run_dir, claim_output_dir

    cfg = precheck(
        "generate",
        sys.argv[1:],
        required={"run_dir": "an irem-train run of task=text", "prompt": "the text to continue, quoted for Hydra"},
        usage="""irem-generate run_dir=outputs/text-ebt_system2 'prompt="The "'""",
    )
    if cfg is not None:
        try:  # before Hydra creates <run_dir>/generate/<time>/
            check_run_dir(cfg)
        except SettingError as err:
            raise SystemExit(f"irem-generate: {err}") from None
        claim_output_dir(cfg, sys.argv)
    _generate()


if __name__ == "__main__":  # python -m irem.cli ...
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    train()
