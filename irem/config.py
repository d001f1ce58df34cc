"""Config schemas and the checks that turn a wrong key into a message listing the right ones.

The core's own sections (trainer, eval, model) are typed dataclasses registered with Hydra's
ConfigStore, so a misspelt key or a wrong type fails at composition. The pluggable groups
(task, energy, solver, baseline) are checked against the signature of their `_target_` before
anything is built: a new task file gets the same check for free, with no schema to register.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from irem.budgets import DEFAULT_BUDGETS, check_budgets
from irem.errors import SettingError, unknown_key_message


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


def _whole(value: Any) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value == int(value)
    )


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_ranges(settings: Any, section: str, rules: dict[str, tuple[Any, str]]) -> None:
    """Refuse the first field of a schema instance outside its range, naming the setting, its value,
    the valid range and the field's default (the one copy of it) as the fix. A rule is
    (predicate, range in words); a field set to None passes only when the predicate accepts None."""
    defaults = {f.name: f.default for f in fields(settings)}
    for name, (ok, valid) in rules.items():
        value = getattr(settings, name)
        if not ok(value):
            default = defaults.get(name, NO_DEFAULT)
            shown = "null" if default is None else default
            fix = (
                f"; e.g. {section}.{name}={shown} ({type(settings).__name__}'s default)"
                if default is not NO_DEFAULT
                else ""
            )
            raise SettingError(f"{section}.{name}={value!r} is out of range: it must be {valid}{fix}.")


@dataclass
class TrainerConfig:
    """The trainer's settings and the one copy of their defaults: irem-train's `trainer:` section
    and `Trainer(..., **settings)` in library code both start from these. configs/train.yaml sets
    its own short run on top (300 iterations at lr 1e-3)."""

    iterations: int = 300
    batch_size: int = 512
    lr: float = 1e-4
    optimizer: str = "adam"  # adam, adamw (decoupled weight decay) or sgd; library code may pass the class
    weight_decay: float = 0.0
    warmup: int = 0  # iterations of linear learning-rate warm-up
    lr_schedule: str = "constant"  # constant, linear, cosine or exponential, to min_lr_fraction * lr after warm-up
    min_lr_fraction: float = 0.1
    grad_clip: float | None = None
    log_every: int = 25
    checkpoint_every: int = 100
    val_every: int = 0
    time_limit: float | None = None  # seconds of training; stops early for equal wall-clock comparisons
    progress: bool = True
    # stop, keeping the last checkpoint, once the training loss exceeds this: a run that explodes
    # (e.g. solver.step_size=1e12 trained on to a loss of 2.9e18) rather than learns; null: no bound
    max_loss: float | None = 1e6
    # an exponential moving average of the weights, evaluated in their place (IRED: 0.995, every
    # 10 optimizer steps); null: none, the trained weights are evaluated
    ema_decay: float | None = None
    ema_every: int = 1  # update the average every this many optimizer steps
    # ema_pytorch's warm-up: the u-th update uses min(ema_decay, 1 - (1 + u)^(-2/3)), so a short run's
    # average is not held back by its random initial weights; false: ema_decay from the first update
    ema_warmup: bool = True

    def __post_init__(self) -> None:
        """Every range at construction: the commands build one from the composed `trainer:` section
        before anything trains (a log_every of 0 used to surface as a ZeroDivisionError at the
        first iteration), and `Trainer(**settings)` builds one from library code's settings."""
        _check_ranges(
            self,
            "trainer",
            {
                "iterations": (lambda v: _whole(v) and v >= 0, "a whole number >= 0 (0 trains nothing)"),
                "batch_size": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
                "lr": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
                "weight_decay": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
                "warmup": (lambda v: _whole(v) and v >= 0, "a whole number of iterations >= 0"),
                "min_lr_fraction": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
                "grad_clip": (lambda v: v is None or (_finite(v) and v >= 0), "null (no clipping) or a number >= 0"),
                "log_every": (lambda v: _whole(v) and v >= 1, "a whole number of iterations >= 1"),
                "checkpoint_every": (lambda v: _whole(v) and v >= 1, "a whole number of iterations >= 1"),
                "val_every": (lambda v: _whole(v) and v >= 0, "a whole number of iterations >= 0 (0: no validation)"),
                "time_limit": (lambda v: v is None or (_finite(v) and v >= 0), "null (no limit) or seconds >= 0"),
                "max_loss": (lambda v: v is None or (_finite(v) and v > 0), "null (no bound) or a number > 0"),
                "ema_decay": (
                    lambda v: v is None or (_finite(v) and 0 <= v < 1),
                    "null (no EMA) or a number in [0, 1)",
                ),
                "ema_every": (lambda v: _whole(v) and v >= 1, "a whole number of optimizer steps >= 1"),
            },
        )


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

    def __post_init__(self) -> None:
        """The ranges that need no task: irem-train checks them before training, not after it
        (the splits and levels, which the task judges, are irem/cli.py's check_eval_sets)."""
        check_budgets(self.budgets, name="eval.budgets")
        _check_ranges(
            self,
            "eval",
            {
                "batch_size": (lambda v: _whole(v) and v >= 1, "a whole number of instances >= 1"),
                "instances": (lambda v: v is None or (_whole(v) and v >= 1), "null (the task's test_size) or >= 1"),
            },
        )
        bad = [v for v in self.levels if not _finite(v)]
        if bad:
            raise SettingError(
                f"eval.levels holds {bad[0]!r}: a difficulty level must be a finite number, e.g. eval.levels=[1,0.2]."
            )
        if not self.splits and not self.levels:
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


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="study_schema", node=StudyConfig)


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
