"""Atomic, safe checkpoints, and where a run keeps its own; the lock on a run directory.

A checkpoint is written to a temporary file in the same folder, then renamed, so a run killed
mid-write leaves the previous checkpoint intact, never a truncated file (the temporary files such
a kill leaves are removed when the next run starts). It is read with `torch.load(weights_only=True)`:
tensors and plain containers only, so opening a file can never run code it carries. `run_checkpoint`
is the one place that says where inside a run directory irem-train writes it (and irem-eval,
irem-study and the composition of trained runs read it). `run_lock` keeps two trainings out of one
run directory, where they would interleave checkpoints, configs and logs.
"""

from __future__ import annotations

import errno
import math
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from irem.config import SettingError

CHECKPOINT = "last.pt"
LOCK = "train.lock"


class CheckpointError(SettingError):
    """A checkpoint that cannot be written or must not be used (unsafe, damaged, non-finite, no
    room on the disk): the message names the file, why, and what to do, and the commands print it
    without a traceback, as they do a SettingError."""


def run_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint irem-train keeps inside its run directory: <run_dir>/checkpoints/last.pt."""
    return Path(run_dir) / "checkpoints" / CHECKPOINT


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files that writes of `path` killed mid-way left beside it (only that
    checkpoint's own `.<name>.*.tmp`, only in its folder). Call it with the run's lock held: a
    running writer's temp file looks the same."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f"{_temp_prefix(path)}*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _tensor_bytes(obj: Any) -> int:
    """About the size torch.save writes for `obj`: its tensors' bytes (the rest is small)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def save_atomic(obj: Any, path: str | Path) -> Path:
    import torch  # here, not at the top: the command line resolves checkpoint paths before torch loads

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        import shutil

        free = shutil.disk_usage(path.parent).free
        kept = f"the previous checkpoint {path} is kept" if path.exists() else f"no checkpoint was at {path} before"
        raise CheckpointError(
            f"No space left on the device to write checkpoint {path}: it needs about "
            f"{_mib(_tensor_bytes(obj))} and {path.parent} has {_mib(free)} free; {kept}. Free some space "
            "(or move the run to another disk), then run the same command again to resume."
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def non_finite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """The keys of the floating-point tensors in `obj` (nested dicts and lists) holding NaN or inf."""
    import torch

    if isinstance(obj, torch.Tensor):
        bad = obj.is_floating_point() or obj.is_complex()
        return [prefix or "tensor"] if bad and not bool(torch.isfinite(obj).all()) else []
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in non_finite_tensors(v, f"{prefix}{key}.")]
    if isinstance(obj, (list, tuple)):
        return [k for i, v in enumerate(obj) for k in non_finite_tensors(v, f"{prefix}{i}.")]
    return []


def check_finite_weights(state: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose weights, or their moving average (EMA, what is evaluated when
    present), are not finite (written by a diverged run before irem refused to save one): its
    predictions would be garbage that looks like numbers."""
    bad = [k.rstrip(".") for k in non_finite_tensors(state.get("model", {}))]
    bad += [k.rstrip(".") for k in non_finite_tensors(state.get("ema", {}), "ema.")]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"Checkpoint {path} holds non-finite (NaN or inf) weights in {shown}: the run that wrote it "
            "diverged. Train it again (resume=false, with a lower trainer.lr or solver.step_size)."
        )


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, read with weights_only=True: tensors and plain containers only."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:  # not a pickle of objects, only not a checkpoint
            raise CheckpointError(
                f"Could not read checkpoint {path}: it is damaged or not a checkpoint. Train the run again "
                "(resume=false) or give another file."
            ) from None
        why = f"it names {found.group(1)}, which only a full unpickling would build (or call)"
        raise CheckpointError(
            f"Checkpoint {path} holds more than tensors and plain values, so it is not loaded (loading it "
            f"could run code stored in it): {why}. Train the run again, or, only if you trust the file "
            f"(an older irem's own checkpoint), re-save it with this version: "
            f"python -c \"from irem.checkpoint import resave_trusted; resave_trusted('{path}')\"."
        ) from None
    except Exception as err:  # a foreign or damaged file: say which
        raise CheckpointError(
            f"Could not read checkpoint {path}: {err}. It is damaged or not a checkpoint; train the run "
            "again (resume=false) or give another file."
        ) from err


def resave_trusted(path: str | Path) -> Path:
    """Rewrite a checkpoint an older irem wrote (its config stored as an OmegaConf object) so the
    safe loader reads it. This unpickles the file as it stands: use it only on files you trust."""
    import torch
    from omegaconf import DictConfig, OmegaConf

    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state.get("config"), DictConfig):
        state["config"] = OmegaConf.to_container(state["config"], resolve=True)
    save_atomic(state, path)
    load(path)  # fails with the reason if something else in it still is not plain
    return Path(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _read_owner(lock: Path) -> dict[str, Any]:
    try:
        pid, host = lock.read_text().split()[:2]
        return {"pid": int(pid), "host": host}
    except (OSError, ValueError):
        return {}  # being written, removed meanwhile, or not ours: treated as held by someone unknown


_held: dict[Path, int] = {}  # locks this process holds, with how many `run_lock` blocks hold each


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run directory's lock (<run_dir>/train.lock, with this process's pid and host) for
    the block. Another process holding it: refused with its pid, host and the lock's path. A lock
    whose process no longer runs on this host (a run killed with SIGKILL) is taken over, with a
    note. Re-entrant within a process (irem-train takes it before Hydra writes the run's config,
    the trainer again around its loop)."""
    lock = (Path(run_dir) / LOCK).resolve()
    if lock in _held:
        _held[lock] += 1
        try:
            yield lock
        finally:
            _held[lock] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    me, host = os.getpid(), socket.gethostname()
    for _attempt in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            if owner and owner["host"] == host and not _alive(owner["pid"]):
                print(
                    f"Note: taking over the stale lock {lock} of process {owner['pid']} on {host}, "
                    "which no longer runs (a killed run).",
                    file=sys.stderr,
                )
                lock.unlink(missing_ok=True)
                continue
            who = f"process {owner['pid']} on host {owner['host']}" if owner else "another process"
            raise CheckpointError(
                f"Run directory {lock.parent} is in use by {who} (lock file {lock}): two trainings in one "
                "directory would overwrite each other's checkpoints and configs. Wait for it to finish, "
                f"or give this run another directory (name=... or hydra.run.dir=...). If that process is "
                f"gone (e.g. on another host), delete {lock}."
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{me} {host}\n")
        break
    else:
        raise CheckpointError(f"Could not take the lock {lock}: it keeps reappearing; another run is starting there.")
    _held[lock] = 1
    try:
        yield lock
    finally:
        _held[lock] -= 1
        if _held[lock] == 0:
            del _held[lock]
            if _read_owner(lock).get("pid") == me:
                lock.unlink(missing_ok=True)


def finite_or_none(x: float) -> float | None:
    """A float for JSON, which has no NaN or inf: those become null."""
    return x if math.isfinite(x) else None
