"""Command-line entry points: `irem-train`, `irem-eval` and `irem-study` (Hydra).

    irem-train                                   # embedded default: short inverse run + table
    irem-train experiment=irem_inverse           # the paper's settings
    irem-train task=addition baseline=feedforward trainer.iterations=500
    irem-eval run_dir=outputs/inverse-energy eval.budgets=[10,80] solver=gd_accept
    irem-study                                   # compute vs difficulty (irem/study.py)

Each run writes into `outputs/<name>`: the resolved config (.hydra/), TensorBoard events (tb/),
checkpoints/last.pt, train_summary.json, eval.json/eval.csv. Running the same command again
resumes from the checkpoint, so a killed run loses at most `trainer.checkpoint_every` iterations.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from irem.openmp import configure_wait_policy

# before torch loads: a short bounded spin between ops (see irem/openmp.py for the measurements)
configure_wait_policy()

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from irem.build import build_model, build_solver, build_task, load_run
from irem.checkpoint import load, run_checkpoint
from irem.config import CONFIG_DIR, constructor_default, register_schemas, to_container, unknown_key_message, valid_keys
from irem.evaluation import evaluate as run_evaluation
from irem.evaluation import format_table, write_results
from irem.predictor import Predictor
from irem.study import StudyError, ignored_overrides, preflight, training_config
from irem.study import run as run_study
from irem.task import Task
from irem.trainer import Trainer, resolve_device

register_schemas()

# Keys that may change between a run and its resumption without making it a different run.
RESUMABLE = (
    "trainer.iterations",
    "trainer.time_limit",
    "trainer.progress",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "eval",
    "resume",
    "threads",
    "device",
)


def _setup(cfg: DictConfig) -> None:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))


def _report(rows: list[dict], out_dir: str, title: str) -> None:
    json_path, csv_path = write_results(rows, out_dir)
    print(format_table(rows, title))
    print(f"results: {json_path} {csv_path}")


def _same_run(saved: dict, current: dict) -> list[str]:
    """Config keys that differ between a checkpoint and the command resuming it."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    def new_default(key: str) -> bool:
        """A key the checkpoint predates (an option added to the code since), at its default: the
        run it describes is the one the checkpoint continues."""
        parent, _, name = key.rpartition(".")
        target = b.get(f"{parent}._target_" if parent else "_target_")
        if key in a or not isinstance(target, str):
            return False
        try:
            return constructor_default(target, name) == b[key]
        except (ImportError, AttributeError, ValueError, TypeError):
            return False

    a, b = flat(saved), flat(current)
    return sorted(
        k for k in set(a) | set(b) if a.get(k) != b.get(k) and not k.startswith(RESUMABLE) and not new_default(k)
    )


def _fit(cfg: DictConfig, out_dir: str) -> tuple[Task, Predictor, Trainer]:
    """Build the run `cfg` describes and train it in `out_dir`, resuming a checkpoint of the same
    config (irem-train, and irem-study's own short training)."""
    task = build_task(cfg.task)
    if cfg.get("eval") is not None and cfg.eval.get("run", False):  # before training, not after it
        valid = task.split_levels()
        missing = [s for s in cfg.eval.splits if s not in valid]
        if missing:
            raise SystemExit(
                f"eval.splits names {', '.join(missing)}, which task '{task.name}' does not have. "
                f"Valid splits: {', '.join(valid)} (e.g. eval.splits=[{', '.join(list(valid)[1:3])}])."
            )
    model = build_model(cfg, task)
    config = to_container(cfg)
    ckpt = run_checkpoint(out_dir)
    if cfg.resume and ckpt.exists():
        differ = _same_run(load(ckpt)["config"], config)
        if differ:
            raise SystemExit(
                f"{ckpt} was written by a different config (differs in: {', '.join(differ)}). "
                "Choose another name=..., or pass resume=false to start over."
            )
        print(f"Resuming from {ckpt}")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.name}: task={task.name} model={type(model).__name__} params={n_params} -> {out_dir}")
    trainer = Trainer(task, model, out_dir, seed=cfg.seed, device=cfg.device, config=config, **cfg.trainer)
    summary = trainer.fit(resume=cfg.resume)
    print(
        f"trained {summary['iterations']} iterations in {summary['train_seconds']:.1f}s, final loss {summary['final_loss']:.4g}"
    )
    return task, model, trainer


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _train(cfg: DictConfig) -> None:
    _setup(cfg)
    out_dir = HydraConfig.get().runtime.output_dir
    task, model, trainer = _fit(cfg, out_dir)
    if trainer.world_size > 1:  # under torchrun: rank 0 alone evaluates what the ranks trained together
        torch.distributed.destroy_process_group()
    if cfg.eval.run and trainer.rank == 0:
        rows = run_evaluation(
            task, model, cfg.eval.splits, cfg.eval.budgets, cfg.seed, cfg.eval.batch_size, trainer.device
        )
        _report(rows, out_dir, cfg.name)


def apply_solver_settings(solver: torch.nn.Module, settings: dict) -> None:
    """Change plain settings of a trained solver (System 2 inference: Langevin noise, accept-if-lower,
    clipping) while it keeps what it learned (a learnable step size); a wrapper passes them to the
    descent it wraps. Only constructor arguments stored as plain attributes can change."""
    target = getattr(solver, "descent", None) or solver
    names = valid_keys({"_target_": f"{type(target).__module__}.{type(target).__qualname__}"}) or []
    changeable = [n for n in names if n in vars(target) and not isinstance(vars(target)[n], torch.Tensor)]
    for key, value in settings.items():
        if key not in changeable:
            message = unknown_key_message(f"solver_settings.{key}", key, changeable)
            raise SystemExit(f"{message} (for {type(target).__name__})")
        old = vars(target)[key]
        setattr(target, key, value if old is None or value is None else type(old)(value))


def _set_solver_settings(model: Predictor, settings: DictConfig | dict, source: str) -> None:
    """`solver_settings` of irem-eval and irem-study, for the model from `source`."""
    if not settings:
        return
    if not hasattr(model, "solver"):
        raise SystemExit(f"solver_settings apply to energy models; {source} holds a {type(model).__name__}.")
    apply_solver_settings(model.solver, dict(settings))


@hydra.main(config_path=CONFIG_DIR, config_name="evaluate", version_base="1.3")
def _evaluate(cfg: DictConfig) -> None:
    _setup(cfg)
    path, saved, task, model = load_run(cfg.run_dir, cfg.checkpoint)
    if cfg.get("solver") is not None:
        if not hasattr(model, "solver"):
            raise SystemExit(f"solver=... applies to energy models; {path} holds a {type(model).__name__}.")
        model.solver = build_solver(cfg.solver).with_base(model.solver)
    _set_solver_settings(model, cfg.solver_settings, str(path))
    device = resolve_device(cfg.device)
    model.to(device)
    rows = run_evaluation(task, model, cfg.eval.splits, cfg.eval.budgets, cfg.seed, cfg.eval.batch_size, device)
    _report(rows, HydraConfig.get().runtime.output_dir, saved.name)


@hydra.main(config_path=CONFIG_DIR, config_name="study", version_base="1.3")
def _study(cfg: DictConfig) -> None:
    _setup(cfg)
    out_dir = HydraConfig.get().runtime.output_dir
    try:
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
        _set_solver_settings(model, cfg.solver_settings, str(cfg.run_dir or "the study's own training"))
        device = resolve_device(cfg.device)
        model.to(device)
        run_study(cfg, task, model, out_dir, CONFIG_DIR, device)
    except StudyError as err:  # a solver or level the study cannot use: the message lists the valid ones
        raise SystemExit(f"irem-study: {err}") from err


def _precheck(config_name: str, argv: list[str]) -> None:
    """Compose once before Hydra does, so a misspelt key is answered with the valid ones."""
    if any(a in ("-m", "--multirun", "--help", "-h", "--cfg", "-c", "--info", "--hydra-help") for a in argv):
        return
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            compose(config_name, overrides=overrides)
        return
    except Exception:
        pass
    dotted = [
        o for o in overrides if not o.startswith(("+", "~")) and "." in o.split("=", 1)[0] and not o.startswith("hydra")
    ]
    rest = [o for o in overrides if o not in dotted]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=rest)
    except Exception:
        return  # a group choice or syntax error: Hydra's own message lists the options
    for o in dotted:
        path = o.split("=", 1)[0]
        group, _, key = path.rpartition(".")
        node = OmegaConf.select(cfg, group)
        if node is None and (Path(CONFIG_DIR) / group).is_dir():  # e.g. solver.max_steps=40 with no solver chosen
            choices = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
            print(
                f"Error in override '{o}': no {group} is chosen in this config, so it has no key '{key}'. "
                f"Choose one first ({group}=<name> {o}); valid choices: {', '.join(choices)}.",
                file=sys.stderr,
            )
            raise SystemExit(2)
        if isinstance(node, DictConfig) and key not in node:
            keys = (valid_keys(node) if "_target_" in node else None) or [
                str(k) for k in node if not str(k).startswith("_")
            ]
            print(f"Error in override '{o}': {unknown_key_message(path, key, keys)}", file=sys.stderr)
            raise SystemExit(2)


def train() -> None:
    _precheck("train", sys.argv[1:])
    _train()


def evaluate() -> None:
    _precheck("evaluate", sys.argv[1:])
    _evaluate()


def study() -> None:
    _precheck("study", sys.argv[1:])
    _study()


if __name__ == "__main__":  # python -m irem.cli ...
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    train()
