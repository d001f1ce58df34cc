"""What makes a run the run it is: its name, the settings a resume or an evaluation must agree on, and
how a config saved by earlier code reads today.

A run's name says what was trained (`inverse-energy`, `inverse-energy-gd_learned_step`,
`inverse-feedforward`; a preset's name plus the groups chosen on top of it, `sudoku_graph-energy.mlp`),
so runs of different models never share a folder. A command that resumes a
checkpoint, or evaluates one under another run's folder, compares the saved config with its own
(`same_run`): settings in `RESUMABLE` may change, everything else makes another run, and a key the
checkpoint predates counts as the same when the current value is that option's default. Saved
configs are upgraded first (`upgrade_config`): renamed packages and modules, classes whose config
changed form, settings that moved groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from irem.config import TrainerConfig, constructor_default, locate

# The settings that make a run what it is (its task and model); seed and trainer settings aside,
# a checkpoint evaluated under run_dir=... must agree with that run on these.
IDENTITY = ("task", "energy", "solver", "objective", "baseline", "model", "name")

# Keys that may change between a run and its resumption without making it a different run.
RESUMABLE = (
    "trainer.iterations",
    "trainer.time_limit",
    "trainer.progress",
    "trainer.learning_check",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "eval",
    "resume",
    "threads",
    "device",
    "overwrite_dir",
)


# IREM's plain descent, the default solver of irem-train and of irem-study's training: a run name
# leaves it unsaid (inverse-energy), any other solver is named (inverse-energy-gd_learned_step).
PLAIN_SOLVER = "gd"


def _unset(choice: Any) -> bool:
    return choice in (None, "None", "null")


def solver_suffix(solver_choice: Any) -> str:
    """The run-name suffix of a solver choice: empty for the plain solver (or none), else
    "-<solver>", so runs of other solvers get run directories, and checkpoints, of their own."""
    return "" if _unset(solver_choice) or str(solver_choice) == PLAIN_SOLVER else f"-{solver_choice}"


def model_name(baseline_choice: Any, solver_choice: Any = None) -> str:
    """The model part of a run name: `energy` (plus the solver unless it is the plain one), else the
    baseline's config name (a baseline has no solver to name)."""
    return "energy" + solver_suffix(solver_choice) if _unset(baseline_choice) else str(baseline_choice)


# The groups that say what a run trains; choosing one on top of an experiment preset makes another run.
MODEL_GROUPS = ("task", "energy", "solver", "objective", "baseline")


def preset_run_name(name: str, preset_choices: Mapping[str, Any], choices: Mapping[str, Any]) -> str:
    """The run name of a preset (`experiment=sudoku_graph`, named `sudoku_graph`) with groups chosen on
    top of it: `-<group>.<choice>` for each group in MODEL_GROUPS whose choice differs from the
    preset's own (`sudoku_graph-energy.mlp`), so an MLP trained from the Sudoku preset never lands in,
    or resumes, the preset's own folder. The preset alone, or a group chosen as the preset has it,
    keeps the preset's name, and with it the folder an earlier run of the same command resumes."""

    def shown(choice: Any) -> str:
        return "null" if _unset(choice) else str(choice)

    changed = [
        f"{g}.{shown(choices.get(g))}" for g in MODEL_GROUPS if shown(choices.get(g)) != shown(preset_choices.get(g))
    ]
    return "-".join([name, *changed])


def study_dir(run_dir: Any, fresh: str, stamp: str) -> str:
    """Where irem-study writes: `fresh` when it trains its own model, else a timestamped folder
    inside the studied run (as irem-eval does), so a study never overwrites the run's config."""
    return fresh if _unset(run_dir) else f"{run_dir}/study/{stamp}"


def register_resolvers() -> None:
    """The config resolvers that name runs (configs/train.yaml, study.yaml)."""
    for name, fn in (("model_name", model_name), ("solver_suffix", solver_suffix), ("study_dir", study_dir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def same_run(saved: dict, current: dict) -> list[str]:
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
        if key in a:
            return False
        if parent == "trainer":  # a typed section: its defaults are TrainerConfig's fields
            default = {f.name: f.default for f in fields(TrainerConfig)}.get(name, NO_DEFAULT)
            return default is not NO_DEFAULT and default == b[key]
        target = b.get(f"{parent}._target_" if parent else "_target_")
        if not isinstance(target, str):
            return False
        try:
            return constructor_default(target, name) == b[key]
        except (ImportError, AttributeError, ValueError, TypeError):
            return False

    a, b = flat(saved), flat(current)
    return sorted(
        k for k in set(a) | set(b) if a.get(k) != b.get(k) and not k.startswith(RESUMABLE) and not new_default(k)
    )


# Settings of IREM's objective that configs written before the objective group kept under `model`.
_MOVED_TO_OBJECTIVE = ("step_supervision", "input_stationarity")
IREM_OBJECTIVE = "irem.objectives.irem.IREMObjective"
# Plug-in folders that configs written before the namespaced install named at the top level.
_RENAMED_PACKAGES = ("tasks.", "energies.", "solvers.", "baselines.")
# Modules that moved: a saved `_target_` under the old prefix is read under the new one.
_MOVED_MODULES = {
    "irem.solvers.annealed.": "irem.ired.annealed.",
    "irem.objectives.ired.": "irem.ired.objective.",
}


def _renamed_targets(node: Any) -> Any:
    """`_target_: tasks.matrix.Inverse` as `irem.tasks.matrix.Inverse` (and a moved module's class under
    its new module), everywhere in a config."""
    if isinstance(node, dict):
        out = {k: _renamed_targets(v) for k, v in node.items()}
        target = out.get("_target_")
        if isinstance(target, str) and target.startswith(_RENAMED_PACKAGES):
            target = out["_target_"] = f"irem.{target}"
        for old, new in _MOVED_MODULES.items():
            if isinstance(target, str) and target.startswith(old):
                out["_target_"] = new + target.removeprefix(old)
        return out
    if isinstance(node, list):
        return [_renamed_targets(v) for v in node]
    return node


def _upgraded_nodes(node: Any, root: dict) -> Any:
    """Each `_target_` node as its class reads it today: a class whose config changed form offers
    `upgrade_config(node, root)` (GradientDescent's flat flags as a Descent's transforms)."""
    if isinstance(node, list):
        return [_upgraded_nodes(v, root) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _upgraded_nodes(v, root) for k, v in node.items()}
    target = out.get("_target_")
    if isinstance(target, str):
        try:
            upgrade = getattr(locate(target), "upgrade_config", None)
        except ValueError:  # a class that no longer exists: the build reports it
            upgrade = None
        if callable(upgrade):
            out = upgrade(out, root)
    return out


def upgrade_config(cfg: DictConfig | dict) -> DictConfig:
    """A saved config as today's code reads it, so older runs keep loading and resuming: plug-ins
    named by their old top-level packages (or modules) get their current names, a class whose config
    changed form upgrades its node (`_upgraded_nodes`), and a run saved before the objective
    group (trained with IREM's objective, whose settings it kept under `model`) gets it."""
    plain = OmegaConf.to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    plain = _renamed_targets(plain)
    plain = _upgraded_nodes(plain, plain)
    if plain.get("objective") is None and plain.get("baseline") is None and "energy" in plain:
        model = dict(plain.get("model") or {})
        moved = {k: model.pop(k) for k in _MOVED_TO_OBJECTIVE if k in model}
        plain["model"] = model
        plain["objective"] = {"_target_": IREM_OBJECTIVE, **moved}
    return OmegaConf.create(plain)
