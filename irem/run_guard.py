"""What the commands check about a run directory before Hydra creates anything in it.

Hydra makes the output folder (and writes .hydra/config.yaml there) before a command's function
runs, so a second irem-train in a busy directory, or an irem-eval of a directory that does not
exist, would already have written something by the time the function could refuse. The commands'
entry points call these first, on the config they composed (its `hydra.run.dir` says where Hydra
is about to write): `check_run_dir` refuses a run_dir that is missing or holds no run, listing the runs
that exist, `check_eval_target` also a checkpoint of another run (whose results would land in the wrong
folder), `check_train_target` refuses a folder that holds files irem did not write,
`fresh_output_dir` gives each evaluation, study and generation a folder of its own (two started in
the same second no longer share one), and `exit_status` turns a stop by signal into that signal's
exit status.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from irem.errors import SettingError
from irem.run_identity import IDENTITY, same_run, upgrade_config


def is_run(folder: Path) -> bool:
    """Whether `folder` holds a trained run: a checkpoint of irem-train's (or the previous one a
    damaged last.pt falls back to)."""
    from irem.checkpoint import previous_checkpoint, run_checkpoint

    ckpt = run_checkpoint(folder)
    return ckpt.is_file() or previous_checkpoint(ckpt).is_file()


def _runs_under(folder: Path) -> list[str]:
    try:
        return sorted(str(p) for p in folder.iterdir() if p.is_dir() and is_run(p))
    except OSError:  # not a folder, or not readable: nothing to list
        return []


def runs_hint(run_dir: Path, most: int = 8) -> str:
    """The trained runs a wrong `run_dir` may have meant: those beside it and those in outputs/ (where
    irem-train writes, relative to where the command runs), as a sentence for the message."""
    seen: dict[str, str] = {}
    for folder in (run_dir.parent, Path("outputs")):
        for run in _runs_under(folder):
            seen.setdefault(str(Path(run).resolve()), run)
    runs = sorted(seen.values())
    if not runs:
        return (
            f" No trained run was found in {run_dir.parent}/ or outputs/: train one with irem-train "
            "(it prints the folder it writes)."
        )
    more = f" and {len(runs) - most} more" if len(runs) > most else ""
    return f" Trained runs found: {', '.join(runs[:most])}{more}."


def check_run_dir(cfg: Any) -> None:
    """Refuse, before Hydra creates `<run_dir>/<what>/<time>/` (irem-eval, irem-study of a run,
    irem-generate), a `run_dir` that does not exist, or (without `checkpoint=`) one that holds no
    trained run, listing the runs that do exist, so a typo or a run never made is answered with what
    to give instead of a traceback and an empty folder."""
    if OmegaConf.is_missing(cfg, "run_dir") or cfg.get("run_dir") is None:
        return
    run_dir = Path(str(cfg.run_dir))
    check_not_a_loop(run_dir, "run_dir")
    if not run_dir.is_dir():
        raise SettingError(
            f"run_dir={run_dir} does not exist. Give the folder of a trained run (irem-train writes "
            f"outputs/<name>, with checkpoints/last.pt inside).{runs_hint(run_dir)}"
        )
    if cfg.get("checkpoint") is None and not is_run(run_dir):
        from irem.checkpoint import run_checkpoint

        raise SettingError(
            f"run_dir={run_dir} is not a trained run: it has no {run_checkpoint(run_dir).relative_to(run_dir)} "
            f"(irem-train saves one every trainer.checkpoint_every iterations and at the end).{runs_hint(run_dir)}"
        )


def check_eval_target(cfg: Any) -> None:
    """Refuse, before Hydra creates `<run_dir>/eval/<time>/`, a `run_dir` that does not exist and a
    `checkpoint` that is not of the run in `run_dir`. Such a checkpoint is refused rather than its
    results written elsewhere: the results of a run belong in that run's folder, and which folder
    that is only the user knows (a copied checkpoint has no run directory of its own)."""
    if OmegaConf.is_missing(cfg, "run_dir") or cfg.get("run_dir") is None:
        return
    check_run_dir(cfg)
    run_dir = Path(str(cfg.run_dir))
    checkpoint = cfg.get("checkpoint")
    if checkpoint is None:
        return
    ckpt = Path(str(checkpoint))
    if not ckpt.is_file():
        raise SettingError(f"checkpoint={ckpt} does not exist (or is not a file).")
    if ckpt.resolve().is_relative_to(run_dir.resolve()):
        return
    from irem.checkpoint import load_run_state, run_checkpoint
    from irem.config import to_container

    own = run_checkpoint(run_dir)
    theirs = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    where = f" Evaluate it with run_dir={theirs}." if theirs is not None else ""
    if not own.is_file():
        raise SettingError(
            f"checkpoint={ckpt} is outside run_dir={run_dir}, and {own} is missing, so nothing says the two "
            f"are one run; its results would be written into {run_dir}.{where}"
        )
    mine, other = (to_container(upgrade_config(load_run_state(p)["config"])) for p in (own, ckpt))
    differ = [k for k in same_run(other, mine) if k.split(".", 1)[0] in IDENTITY]
    if differ:
        raise SettingError(
            f"checkpoint={ckpt} is of another run than run_dir={run_dir} (they differ in: {', '.join(differ)}), "
            f"so its results would be written into the wrong run's folder.{where}"
        )


# What irem-train, irem-eval, irem-study and irem-generate (and Hydra for them) write into a run
# directory; anything else there is someone else's.
RUN_ENTRIES = frozenset(
    {".hydra", "checkpoints", "tb", "train.lock", "train_summary.json", "eval.json", "eval.csv", "eval", "study"}
    | {"generate", "study.json", "study.csv", "instances.csv"}
    | {"error_vs_steps.png", "steps_vs_difficulty.png", "error_vs_seconds.png"}
)


RUN_MARKERS = (".hydra", "checkpoints", "train.lock")  # what every run directory has from its start


def foreign_entries(folder: Path) -> list[str]:
    """The entries of `folder` that no irem command writes (a job's `<name>.log` is Hydra's); every
    entry when the folder has none of a run's markers (an `eval.csv` of one's own is not a run)."""
    if not folder.is_dir():
        return []
    names = sorted(p.name for p in folder.iterdir())
    if not any((folder / marker).exists() for marker in RUN_MARKERS):
        return names
    return [n for n in names if n not in RUN_ENTRIES and not n.endswith(".log")]


def check_not_a_loop(path: Path, what: str) -> None:
    """Refuse a folder whose path runs into a loop of symbolic links, naming it, before anything
    tries to create or resolve it (which fails deep inside pathlib)."""
    try:
        (path / "probe").resolve(strict=False)  # a child: resolving it follows the link the path may be
    except (RuntimeError, OSError):
        raise SettingError(
            f"{what}={path} cannot be used: its path runs into a loop of symbolic links. Point it at a real "
            "folder, or remove the link."
        ) from None


def check_train_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to train into a folder that holds files irem did not write (hydra.run.dir pointed at a
    folder of one's own): the run's config, logs and results would land among them, over any of the
    same name. `overwrite_dir=true` says to go ahead."""
    check_not_a_loop(out_dir, "hydra.run.dir")
    foreign = foreign_entries(out_dir)
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SettingError(
            f"{out_dir} holds files that no irem run wrote ({shown}): a training writes .hydra/, checkpoints/, tb/ "
            "and its results there, over any of the same names. Give an empty or new folder (hydra.run.dir=... or "
            "name=...), or pass overwrite_dir=true to write into it anyway."
        )


def fresh_output_dir(planned: Path) -> Path:
    """`planned` (<run_dir>/eval/<time>), or <time>-2, -3, ... when that exists: made here with one
    atomic mkdir each, so two commands started in the same second never write into one folder."""
    planned.parent.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        folder = planned if k == 1 else planned.with_name(f"{planned.name}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            k += 1


def hydra_path(path: Path) -> str:
    """A path as a Hydra override value (quoted, so spaces, commas and '=' survive)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def claim_output_dir(cfg: Any, argv: list[str]) -> None:
    """Give this command (irem-eval, irem-study of a run, irem-generate: <run_dir>/<what>/<time>) a
    folder of its own before Hydra computes one from the clock: add `hydra.run.dir=<a fresh folder>`
    to `argv` (in place), unless the command line names the folder itself or is not a single run."""
    if any(a.startswith("hydra.run.dir=") for a in argv):
        return
    planned = Path(str(cfg.hydra.run.dir))
    if planned.parent.parent.is_dir():  # a missing run is the command's to report
        argv.append(f"hydra.run.dir={hydra_path(fresh_output_dir(planned))}")


def exit_status(err: BaseException) -> int:
    """The status of a command stopped by a signal: 128 + its number (130 for SIGINT, 143 for
    SIGTERM), as a shell reports a process the signal ended."""
    return 128 + int(getattr(err, "signum", signal.SIGINT))


@contextmanager
def holding_run_dir(out_dir: str | Path, command: str) -> Iterator[None]:
    """The run directory's lock for the block; a directory in use ends the command with the
    lock's message (which names the process holding it), not a traceback."""
    from irem.run_lock import run_lock

    lock = run_lock(out_dir)
    try:
        lock.__enter__()
    except SettingError as err:
        raise SystemExit(f"{command}: {err}") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)
