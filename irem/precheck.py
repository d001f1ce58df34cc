"""What every command checks before Hydra runs it: its config composed once, so a misspelt key is
answered with the valid ones, a missing mandatory key with what to give, a value out of range and a
data file that is not there before any output folder is made, and a preset's run named after the
groups chosen on top of it. irem/cli.py calls `precheck` first thing in each command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from irem.config import (
    CONFIG_DIR,
    TrainerConfig,
    register_schemas,
    to_container,
    typed_value_message,
    valid_keys,
)
from irem.errors import SettingError, unknown_key_message
from irem.run_identity import register_resolvers

register_schemas()  # what every composition below needs, whoever imports this module first
register_resolvers()

# The console script of each config, for messages that name the command.
COMMANDS = {"train": "irem-train", "evaluate": "irem-eval", "study": "irem-study", "generate": "irem-generate"}
# What a mandatory (???) top-level key of a command's config holds, and a command line that gives it.
REQUIRED = {"run_dir": "an irem-train run directory"}
USAGE = {"evaluate": "irem-eval run_dir=outputs/inverse-energy"}


def check_config(cfg: DictConfig) -> None:
    """Every value that needs no built task, from the composed config: the trainer's and the
    evaluation's ranges (irem/config.py's schemas) and the device. precheck runs it before Hydra
    makes the output folder and each command again first thing (a multirun skips precheck), so a
    bad value is refused in seconds, never after minutes of training."""
    from irem.config import EvalConfig
    from irem.device import resolve_device

    if cfg.get("trainer") is not None:
        TrainerConfig(**to_container(cfg.trainer))
    if cfg.get("eval") is not None:
        EvalConfig(**to_container(cfg.eval))
    if cfg.get("device") is not None:
        resolve_device(str(cfg.device))
    if cfg.get("files"):  # irem-study's files: each must be a file before anything is trained or loaded
        from irem.data_files import missing_files

        missing = missing_files(cfg.files, "files")
        if missing:
            raise SettingError(
                f"{', '.join(missing)}: no such file. Give the path of a data file, e.g. files={{mine: puzzles.csv}}."
            )


def _no_group_message(config_name: str, group: str, cfg: DictConfig) -> str:
    """Why a command has no `group` to choose or configure (irem-eval takes the task, energy and
    solver settings from the run it loads), and what to give instead for other difficulty levels."""
    why = f"the '{config_name}' config has no {group} to choose or configure"
    if "run_dir" in list(cfg.keys()):  # (`in cfg` is False for a value still ???)
        why += f": it takes the {group} from the trained run it loads (run_dir=...), as it was trained"
    why += f". {COMMANDS.get(config_name, config_name)} accepts the keys {', '.join(map(str, cfg.keys()))}"
    levels = "eval.levels" if "levels" in (cfg.get("eval") or {}) else "levels" if "levels" in cfg else None
    if levels is None:
        return why + "."
    return (
        f"{why}. To evaluate other difficulty levels, give {levels}=[...] (values task.generate takes), "
        f'e.g. "{levels}=[1,0.2,0.05]".'
    )


def _check_required(config_name: str, cfg: DictConfig, required: dict[str, str], usage: str | None) -> None:
    """A mandatory key left unset (???), named with what it holds and an example, before Hydra
    interpolates it into the output folder (hydra.run.dir is ${run_dir}/...), where it would fail
    inside Hydra's own error formatting."""
    missing = [str(k) for k in cfg if OmegaConf.is_missing(cfg, str(k))]
    if not missing:
        return
    command = COMMANDS.get(config_name, config_name)
    wanted = " ".join(f"{k}=<{required.get(k, REQUIRED.get(k, 'a value'))}>" for k in missing)
    example = usage or USAGE.get(config_name)
    print(
        f"{command} needs {wanted}" + (f", e.g. {example}" if example else "") + f" (configs/{config_name}.yaml).",
        file=sys.stderr,
    )
    raise SystemExit(2)


NOT_ONE_RUN = ("-m", "--multirun", "--help", "-h", "--cfg", "-c", "--info", "--hydra-help")


def compose_command(config_name: str, overrides: list[str]) -> DictConfig | None:
    """The command's config as Hydra is about to compose it, with its `hydra` section (where the run
    writes) resolvable; None when Hydra will refuse it (Hydra then says why)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)  # for ${hydra:runtime.choices...} in the run's name
            return cfg
    except Exception:
        return None


def precheck(
    config_name: str, argv: list[str], required: dict[str, str] | None = None, usage: str | None = None
) -> DictConfig | None:
    """Compose the command's config once, before Hydra does, so a misspelt key is answered with the
    valid ones, a missing mandatory key (`required`: what each holds; `usage`: an example command
    line) with what to give, and a value out of range (check_config) before any output folder is
    made. The config, for the checks the command makes before Hydra runs it; None for a multirun or
    a help flag (and where Hydra will report the line)."""
    from hydra import compose, initialize_config_dir

    if any(a in NOT_ONE_RUN for a in argv):
        return None
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    composed = compose_command(config_name, overrides)
    grouped = [o for o in overrides if (Path(CONFIG_DIR) / o.lstrip("+~").split("=", 1)[0].split(".", 1)[0]).is_dir()]
    if composed is not None:  # a group the config chooses (experiment=...) composed: only an added one is suspect
        grouped = [o for o in grouped if o.startswith("+")]
    if composed is None or grouped:  # +task.size=10 composes on irem-eval, and would be ignored
        try:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                base = compose(config_name, overrides=[])
        except Exception:
            return
        for o in grouped:  # e.g. irem-eval task.harder_difficulty=30 or +task.size=10: the run brings its own task
            group = o.lstrip("+~").split("=", 1)[0].split(".", 1)[0]
            if group not in base:
                print(f"Error in override '{o}': {_no_group_message(config_name, group, base)}", file=sys.stderr)
                raise SystemExit(2)
    if composed is not None:
        _check_required(config_name, composed, required or {}, usage)
        try:
            check_config(composed)
        except SettingError as err:
            print(f"{COMMANDS.get(config_name, config_name)}: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return composed
    errors = _override_errors(config_name, overrides)
    for message in errors:
        print(message, file=sys.stderr)
    if errors:
        raise SystemExit(2)
    return None


def _override_errors(config_name: str, overrides: list[str]) -> list[str]:
    """Why each override that fails fails, every one of them (not only the first): composed with the
    line's group choices alone, so one bad key does not hide, or take the blame for, another."""
    from hydra import compose, initialize_config_dir

    def is_choice(o: str) -> bool:  # task=..., experiment=..., solver@train_solver=...
        key = o.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        return "." not in key and (Path(CONFIG_DIR) / key).is_dir()

    choices = [o for o in overrides if is_choice(o)]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name, overrides=choices)
    except Exception:
        return []  # a group choice or syntax error: Hydra's own message lists the options
    errors = []
    for o in overrides:
        if o in choices or o.startswith(("hydra", "~")):
            continue
        try:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                compose(config_name, overrides=[*choices, o])
            continue
        except Exception as err:  # noqa: BLE001  (Hydra's and OmegaConf's errors alike: explained below)
            failure = err
        path, _, value = o.lstrip("+").partition("=")
        group, _, key = path.rpartition(".")
        node = OmegaConf.select(cfg, group) if group else cfg
        if node is None and (Path(CONFIG_DIR) / group).is_dir():  # e.g. solver.max_steps=40 with no solver chosen
            choices_of = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
            errors.append(
                f"Error in override '{o}': no {group} is chosen in this config, so it has no key '{key}'. "
                f"Choose one first ({group}=<name> {o}); valid choices: {', '.join(choices_of)}."
            )
        elif isinstance(node, DictConfig) and key in node and o.startswith("+") and not o.startswith("++"):
            errors.append(
                f"Error in override '{o}': {path} is in the config already, so it is set without the plus: "
                f"{o.lstrip('+')}"
            )
        elif isinstance(node, DictConfig) and key not in node and not o.startswith("+"):
            params = valid_keys(node) if "_target_" in node else None
            if params is not None and key in params:  # a constructor setting the config file does not list
                errors.append(
                    f"Error in override '{o}': {path} is a setting of {node._target_}, but the {group} config does "
                    f"not list it, so Hydra needs it added with a plus: +{o}"
                )
            else:
                keys = params or [str(k) for k in node if not str(k).startswith("_")]
                errors.append(f"Error in override '{o}': {unknown_key_message(path, key, keys)}")
        else:
            typed = typed_value_message(config_name, path, value)
            first = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
            errors.append(f"Error in override '{o}': {typed or first}")
    return errors


def name_preset_overrides(argv: list[str], cfg: DictConfig | None) -> DictConfig | None:
    """irem-train's config with the run named after every group chosen on top of its experiment
    preset (`experiment=sudoku_graph energy=mlp` trains into outputs/sudoku_graph-energy.mlp, not the
    preset's folder): `name=<that name>` is appended to `argv` (in place) for Hydra to compose, and
    the config recomposed with it. Unchanged without a preset, without a group choice on the command
    line, with a `name=` of the user's, and for a multirun or a help flag (`cfg` None)."""
    from irem.run_identity import MODEL_GROUPS, preset_run_name

    if cfg is None or str(cfg.hydra.runtime.choices.get("experiment")) in ("None", "null"):
        return cfg
    overrides = [a for a in argv[1:] if "=" in a and not a.startswith("-")]
    if any(o.lstrip("+~").split("=", 1)[0] == "name" for o in overrides):
        return cfg
    groups = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] in MODEL_GROUPS]
    preset = compose_command("train", [o for o in overrides if o not in groups]) if groups else None
    if preset is None:
        return cfg
    name = preset_run_name(str(preset.name), preset.hydra.runtime.choices, cfg.hydra.runtime.choices)
    if name == str(cfg.name):
        return cfg
    argv.append(f"name={name}")
    return compose_command("train", [*overrides, f"name={name}"])
