"""Config schemas and the checks that turn a wrong key into a message listing the right ones.

The core's own sections (trainer, eval, model) are typed dataclasses registered with Hydra's
ConfigStore, so a misspelt key or a wrong type fails at composition. The pluggable groups
(task, energy, solver, baseline) are checked against the signature of their `_target_` before
anything is built: a new task file gets the same check for free, with no schema to register.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from irem.budgets import DEFAULT_BUDGETS, check_budgets
from irem.data_files import missing_files
from irem.errors import SettingError, unknown_key_message
from irem.settings import TrainerConfig, check_ranges, is_finite, is_whole


def _config_dir() -> str:
    """The Hydra configs: inside the package in an installed wheel (irem/configs), beside it in a
    checkout (configs/ at the repository's top level)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"irem's configs are missing: neither {here / 'configs'} nor {here.parent / 'configs'} exists."
    )


CONFIG_DIR = _config_dir()


# Torch threads of every command; null (threads=null) keeps torch's default, one per core. One
# thread by default: on the 2-core machine this project runs on, shared with other jobs, an
# irem-train iteration (inverse, batch 512) took 0.27 s with one thread and 0.78 s with torch's
# two, measured back to back (2.9x); a dedicated many-core machine is faster with threads=null.
DEFAULT_THREADS: int | None = 1


@dataclass
class ModelConfig:
    """How an energy is trained (ignored for baselines)."""

    replay_capacity: int = 10_000
    replay_fraction: float = 0.5
    step_lr_multiplier: float = 1.0  # the learnable step size's lr, relative to the energy's


@dataclass
class EvalConfig:
    """What irem-train evaluates after training and irem-eval evaluates of a trained run."""

    run: bool = True
    splits: list[str] = field(default_factory=lambda: ["test", "harder"])
    # fresh seeded sets at these difficulty levels (the values task.generate takes), as irem-study
    # draws them, one table row each ("level 0.2"), besides the splits
    levels: list[float] = field(default_factory=list)
    instances: int | None = None  # per level; null: the task's test_size
    budgets: list[int] = field(default_factory=lambda: list(DEFAULT_BUDGETS))
    batch_size: int = 1000
    # splits read from data files, {name: path}, evaluated besides `splits`, for a task that reads
    # files (Sudoku: eval.files={mine: puzzles.csv}); each is read and checked before any evaluation
    # (typed Any, null by default: a dict-typed field takes no new key without a plus on the command line)
    files: Any = None

    def __post_init__(self) -> None:
        """The ranges that need no task: irem-train checks them before training, not after it
        (the splits and levels, which the task judges, are irem/cli.py's check_eval_sets)."""
        check_budgets(self.budgets, name="eval.budgets")
        check_ranges(
            self,
            "eval",
            {
                "batch_size": (lambda v: is_whole(v) and v >= 1, "a whole number of instances >= 1"),
                "instances": (lambda v: v is None or (is_whole(v) and v >= 1), "null (the task's test_size) or >= 1"),
            },
        )
        bad = [v for v in self.levels if not is_finite(v)]
        if bad:
            raise SettingError(
                f"eval.levels holds {bad[0]!r}: a difficulty level must be a finite number, e.g. eval.levels=[1,0.2]."
            )
        if self.files is not None and not isinstance(self.files, Mapping):
            raise SettingError(
                f"eval.files={self.files!r}: give {{split name: path}}, e.g. eval.files={{mine: puzzles.csv}}."
            )
        missing = missing_files(self.files or {}, "eval.files")
        if missing:
            raise SettingError(
                f"{', '.join(missing)}: no such file. Give the path of a data file (relative to the folder the "
                "command runs in), e.g. eval.files={mine: puzzles.csv}."
            )
        if not self.splits and not self.levels and not self.files:
            raise SettingError(
                "eval.splits and eval.levels are both empty, so there is nothing to evaluate; name a split "
                "(e.g. eval.splits=[test]) or give levels, or pass eval.run=false to skip the evaluation."
            )


@dataclass
class TrainConfig:
    task: Any = MISSING
    energy: Any = MISSING
    solver: Any = MISSING
    objective: Any = MISSING
    baseline: Any = None
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    device: str = "cpu"
    threads: int | None = DEFAULT_THREADS
    resume: bool = True
    name: str = "run"
    overwrite_dir: bool = False  # train into a folder that holds files no irem run wrote (refused otherwise)


@dataclass
class EvaluateConfig:
    run_dir: str = MISSING
    checkpoint: str | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    solver: Any = None
    # settings of the trained solver to change at inference, e.g. noise (Langevin), accept_if_lower
    solver_settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    threads: int | None = DEFAULT_THREADS


@dataclass
class StudyConfig:
    """irem-study: a sweep of difficulty levels x step budgets x solvers over one trained model (a
    baseline, which no solver descends, answers through its own predict).

    With `run_dir` set the run's checkpoint and saved config are studied; with it null a short
    training of `task` / `energy` / `train_solver` / `trainer` runs first (into the study's own
    output dir), so one command goes from nothing to a compute-vs-difficulty picture.
    """

    run_dir: str | None = None
    checkpoint: str | None = None
    task: Any = MISSING
    energy: Any = MISSING
    train_solver: Any = MISSING
    objective: Any = MISSING
    solver: Any = None
    # settings of the trained solver for the study (as irem-eval's), e.g. momentum, accept_if_lower:
    # every solver that wraps the trained one (adaptive, best_of_n) descends with them
    solver_settings: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    solvers: list[str] = field(default_factory=lambda: ["gd", "adaptive"])
    levels: list[float] | None = None  # null: the task's own (Task.study_levels, else its split levels)
    # sets read from data files, {name: path}, studied besides the levels (a task that reads files)
    files: Any = None
    mixed: bool = True
    instances: int = 200
    budgets: list[int] = field(default_factory=lambda: list(DEFAULT_BUDGETS))
    batch_size: int = 1000
    plots: bool = True
    progress: bool = True
    seed: int = 0
    device: str = "cpu"
    threads: int | None = DEFAULT_THREADS
    resume: bool = True
    name: str = "study"


SCHEMAS: dict[str, type] = {"train": TrainConfig, "evaluate": EvaluateConfig, "study": StudyConfig}


def _kind(hint: Any) -> str | None:
    """A type hint in words, as a command line gives the value."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = _kind(args[0]) if len(args) == 1 else None
        return None if inner is None else f"{inner}, or null"
    if typing.get_origin(hint) is list:
        item = {int: "whole numbers", float: "numbers", str: "names"}.get(args[0] if args else None)
        return None if item is None else f"a list of {item} in brackets"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(hint)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def typed_value_message(config_name: str, path: str, value: str) -> str | None:
    """What a typed setting (irem's own schemas: trainer.*, eval.*, seed, ...) takes, when `value` is
    not of its type, with an example: Hydra's own words are about OmegaConf's internals."""
    import typing

    schema: Any = SCHEMAS.get(config_name)
    hint: Any = None
    default: Any = NO_DEFAULT
    for part in path.split("."):
        if schema is None or not hasattr(schema, "__dataclass_fields__"):
            return None
        hints = typing.get_type_hints(schema)
        found = {f.name: f for f in fields(schema)}.get(part)
        if found is None:
            return None
        hint = hints[part]
        default = found.default if found.default is not NO_DEFAULT else found.default_factory()  # type: ignore[misc]
        schema = hint if hasattr(hint, "__dataclass_fields__") else None
    kind = _kind(hint)
    if kind is None:
        return None
    if isinstance(default, list) and not default:  # an empty default shows nothing of the form
        default = {"whole": [1, 2], "numbers": [1, 0.2], "names": ["test", "harder"]}.get(kind.split()[3], default)
    example = f"; e.g. {path}={_shown(default)}" if default is not NO_DEFAULT and default is not MISSING else ""
    return f"{path} takes {kind}, not {value!r}{example}."


@dataclass
class GenerateConfig:
    """irem-generate: continue `prompt` by `length` bytes with a trained text run."""

    run_dir: str = MISSING
    checkpoint: str | None = None
    prompt: str = MISSING
    length: int = 200
    budget: int | None = None
    answer: str = "budget"
    temperature: float = 1.0
    solver: Any = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = DEFAULT_THREADS
    progress: bool = True


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="study_schema", node=StudyConfig)
    cs.store(name="generate_schema", node=GenerateConfig)


def locate(target: str) -> Any:
    module_name, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"Cannot import _target_ '{target}': {err}") from err


def _parameters(obj: Any) -> tuple[list[inspect.Parameter], bool]:
    """The parameters a callable, or a class's constructor, takes by name, and whether it still
    takes **kwargs. A class whose __init__ passes **kwargs on is followed to its base classes'."""
    if not inspect.isclass(obj):
        params = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"]
        return params, any(p.kind is p.VAR_KEYWORD for p in params)
    out: list[inspect.Parameter] = []
    for cls in obj.__mro__:
        if cls is object or "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        seen = {p.name for p in out}
        out += [
            p
            for p in params
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in seen
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return out, False
    return out, True


def constructor_default(target: str, name: str) -> Any:
    """The default of parameter `name` of `target` (a `_target_` path); `inspect.Parameter.empty`
    when it has none or takes no such parameter."""
    params, _ = _parameters(locate(target))
    for p in params:
        if p.name == name and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return p.default
    return inspect.Parameter.empty


def valid_keys(node: DictConfig | dict) -> list[str] | None:
    """Parameter names of a node's `_target_`, or None when it takes **kwargs."""
    params, takes_kwargs = _parameters(locate(str(node["_target_"])))
    return None if takes_kwargs else [p.name for p in params]


def required_keys(node: DictConfig | dict) -> list[str]:
    """Parameter names of a node's `_target_` that have no default: what the config or the task's
    dims must supply (an energy's x_dim and y_dim, a sequence energy's vocab_size and context)."""
    params, _ = _parameters(locate(str(node["_target_"])))
    return [p.name for p in params if p.default is p.empty and p.kind is not p.POSITIONAL_ONLY]


def check_node(node: DictConfig | dict | None, group: str) -> None:
    """Every key of a `_target_` node must be a parameter of the target, and so in every `_target_` node
    nested in it (a solver's transforms, an adaptive solver's rules)."""
    if node is None:
        return
    if "_target_" not in node:
        raise ValueError(f"The '{group}' config has no _target_; it must name the class to build.")
    valid = valid_keys(node)
    for key in map(str, node):
        if valid is not None and not key.startswith("_") and key not in valid:
            raise ValueError(unknown_key_message(f"{group}.{key}", key, valid) + f" (for {node['_target_']})")
        value = node[key]
        children = (
            value.items()
            if isinstance(value, (dict, DictConfig))
            else enumerate(value)
            if isinstance(value, (list, ListConfig))
            else ()
        )
        if isinstance(value, (dict, DictConfig)) and "_target_" in value:
            check_node(value, f"{group}.{key}")
            continue
        for name, child in children:
            if isinstance(child, (dict, DictConfig)) and "_target_" in child:
                check_node(child, f"{group}.{key}.{name}")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
