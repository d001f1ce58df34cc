"""Checkpoints that are written atomically, prove their integrity, and load without running code.

A checkpoint is serialised in memory, written to a temporary file in the same folder, flushed to
the disk and renamed, so a run killed mid-write leaves the previous checkpoint intact, never a
truncated file (the temporary files such a kill leaves are removed when the next run starts).
Serialising first means a full disk or a failing device is reported by the operating system's own
error (OSError), never by torch's zip writer ("unexpected pos ..."), so every write failure gets one
message: what was being written, the space it needs and the space free, and what was kept.

Integrity: the saved dict carries a SHA-256 digest of its whole content (every tensor's bytes,
dtype and shape, every key and plain value), checked on every load: a flipped bit anywhere in the
data is refused as corrupted, naming the file (torch's loader does not check the zip archive's
CRCs). The trainer keeps the checkpoint it replaces as `previous.pt`, a hard link when the
filesystem allows it, so a resume whose `last.pt` is corrupted falls back to it with a message.

Safety: files are read with `torch.load(weights_only=True)` (tensors and plain containers only),
which can run code stored in a file before torch 2.6 (CVE-2025-32434), so older torch versions
are refused at load time. `run_checkpoint` is the one place that says where inside a run
directory irem-train writes its checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from irem.errors import SettingError

CHECKPOINT = "last.pt"
PREVIOUS = "previous.pt"
CORRUPTED_SUFFIX = ".corrupted"
INTEGRITY = "integrity"  # the key of the digest inside a saved dict
SAFE_TORCH = (2, 6)  # the first torch whose weights_only loading cannot run code (CVE-2025-32434)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class CheckpointError(SettingError):
    """A checkpoint that cannot be written or must not be used (unsafe, corrupted, non-finite, no
    room on the disk): the message names the file, why, and what to do, and the commands print it
    without a traceback, as they do a SettingError."""


class CorruptedCheckpoint(CheckpointError):
    """A checkpoint whose content no longer matches the digest written with it."""


def run_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint irem-train keeps inside its run directory: <run_dir>/checkpoints/last.pt."""
    return Path(run_dir) / "checkpoints" / CHECKPOINT


def previous_checkpoint(path: str | Path) -> Path:
    """Where the checkpoint `path` replaced is kept (checkpoints/previous.pt beside last.pt)."""
    return Path(path).with_name(PREVIOUS)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files that writes of `path` (and of its previous copy) killed mid-way left
    beside it (only those files' own `.<name>.*.tmp`, only in its folder). Call it with the run's lock
    held: a running writer's temp file looks the same."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(
        tmp
        for name in (path.name, previous_checkpoint(path).name)
        for tmp in path.parent.glob(f"{_temp_prefix(Path(name))}*.tmp")
    )
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


# -- the digest ------------------------------------------------------------------------------------


def _feed(h: Any, obj: Any) -> None:
    """Hash `obj` with a tag per type, so that no two different contents feed the same bytes."""
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    elif isinstance(obj, str):
        data = obj.encode("utf-8", errors="surrogatepass")
        h.update(f"S{len(data)}:".encode() + data)
    elif isinstance(obj, bytes):
        h.update(f"B{len(obj)}:".encode() + obj)
    else:  # bool, int, float, None and other plain values: their exact repr (floats round-trip)
        h.update(f"V{type(obj).__name__}:{obj!r};".encode())


def content_digest(obj: Any) -> str:
    """SHA-256 of everything in `obj` (nested dicts, lists, tensors and plain values), key order
    included: what a checkpoint carries under `INTEGRITY` and is checked against on load."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _with_digest(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    payload = {k: v for k, v in obj.items() if k != INTEGRITY}
    return {**payload, INTEGRITY: {"sha256": content_digest(payload)}}


def _verified(state: Any, path: Path) -> Any:
    """The payload of a loaded dict whose digest matches; a file written before digests (no
    `INTEGRITY` key) is taken as it is."""
    if not isinstance(state, dict) or INTEGRITY not in state:
        return state
    payload = {k: v for k, v in state.items() if k != INTEGRITY}
    written = state[INTEGRITY].get("sha256") if isinstance(state[INTEGRITY], dict) else None
    if written != content_digest(payload):
        raise CorruptedCheckpoint(
            f"Checkpoint {path} is corrupted: its content no longer matches the SHA-256 digest written with it "
            "(a disk, copy or transfer changed its bytes). It is not used."
        )
    return payload


# -- writing ---------------------------------------------------------------------------------------


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


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def free_space(folder: str | Path) -> int | None:
    """Bytes free on the filesystem of `folder` (or of its nearest existing parent); None if unknown."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def write_failure(
    err: OSError,
    what: str,
    path: Path,
    needed: int | None,
    kept: str,
    then: str = "run the same command again to resume",
) -> CheckpointError:
    """One message for a write that failed, however the OS said it: what was being written, the
    space it needs and the space free, what was kept, and what to do (`then`: after the fix)."""
    free = free_space(path.parent)
    room = (f"it needs about {_size(needed)} and " if needed is not None else "") + (
        f"{path.parent} has {_size(free)} free" if free is not None else f"the free space on {path.parent} is unknown"
    )
    if err.errno in NO_SPACE:
        why = f"No space left on the device to write {what} {path}: {room}"
        fix = f"Free some space (or move the run to another disk), then {then}."
    else:
        why = f"Could not write {what} {path}: {err.strerror or err} (errno {err.errno}); {room}"
        fix = f"Check the disk and the folder's permissions, then {then}."
    return CheckpointError(f"{why}; {kept}. {fix}")


def _place_copy(source: Path, target: Path) -> None:
    """Make `target` a copy of `source` atomically: a hard link (no copy, and `target` exists at every
    moment) where the filesystem allows it, else a copy through a temporary file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target), suffix=".tmp")
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_atomic(obj: Any, path: str | Path, keep_previous: bool = False) -> Path:
    """Write `obj` to `path` atomically, with its digest (a dict); `keep_previous` keeps the file it
    replaces as previous.pt. A failed write raises one CheckpointError and leaves `path` as it was."""
    import torch  # here, not at the top: the command line resolves checkpoint paths before torch loads

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(_with_digest(obj), buffer)  # in memory: the disk's own errors come from the writes below
    data = buffer.getbuffer()
    kept = f"the previous checkpoint {path} is kept" if path.exists() else f"no checkpoint was at {path} before"
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            _place_copy(path, previous_checkpoint(path))
        os.replace(tmp, path)
    except OSError as err:
        raise write_failure(err, "checkpoint", path, len(data) or _tensor_bytes(obj), kept) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


# -- reading ---------------------------------------------------------------------------------------


def _torch_version(version: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def check_safe_torch() -> None:
    """Refuse to read checkpoints with a torch whose weights_only loading can run code."""
    import torch

    if _torch_version(torch.__version__) < SAFE_TORCH:
        need = ".".join(map(str, SAFE_TORCH))
        raise CheckpointError(
            f"torch {torch.__version__} is installed, and before torch {need} loading a file with weights_only=True "
            f"can still run code stored in it (CVE-2025-32434), so irem does not read checkpoints with it. "
            f"Install torch>={need} (pip install 'torch>={need}')."
        )


def _unpickling_error(err: Exception, path: Path) -> CheckpointError:
    """Why the safe loader refused a file, in words: a named global (unsafe), other pickle
    instructions it does not run (unsafe, not irem's format), or plain damage."""
    text = str(err)
    found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", text)
    if found is not None:
        why = f"it names {found.group(1)}, which only a full unpickling would build (or call)"
        return CheckpointError(
            f"Checkpoint {path} is unsafe and was not loaded: it holds more than tensors and plain values "
            f"(loading it could run code stored in it): {why}. Train the run again, or, only if you trust the "
            f"file (an older irem's own checkpoint), re-save it with this version: "
            f"python -c \"from irem.checkpoint import resave_trusted; resave_trusted('{path}')\"."
        )
    if "Weights only load failed" in text:
        detail = re.search(r"(Unsupported operand \d+|Unsupported class [^\n]+)", text)
        return CheckpointError(
            f"Checkpoint {path} is unsafe and was not loaded: it holds pickle instructions the safe loader does not "
            f"run ({detail.group(1) if detail else 'refused by torch.load(weights_only=True)'}), so it is not a "
            "checkpoint irem wrote, and loading it in full could run code stored in it. Give a checkpoint written "
            "by irem-train."
        )
    return CheckpointError(
        f"Could not read checkpoint {path}: it is damaged or not a checkpoint ({text.splitlines()[0][:200]}). "
        "Train the run again (resume=false) or give another file."
    )


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, read with weights_only=True (tensors and plain containers only) and
    checked against its digest."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    check_safe_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _unpickling_error(err, path) from None
    except Exception as err:  # a foreign or damaged file: say which
        raise CheckpointError(
            f"Could not read checkpoint {path}: {str(err).splitlines()[0][:300]}. It is damaged or not a "
            "checkpoint; train the run again (resume=false) or give another file."
        ) from err
    return _verified(state, path)


RUN_KEYS = ("model", "config")


def load_run_state(path: str | Path) -> dict[str, Any]:
    """A checkpoint irem-train wrote (its weights and its config): anything else, such as a plain
    `torch.save(model.state_dict())`, is refused naming what the file holds."""
    state = load(path)
    missing = [k for k in RUN_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        held = (
            f"a dict with keys {', '.join(map(str, list(state)[:6]))}{' ...' if len(state) > 6 else ''}"
            if isinstance(state, dict)
            else f"a {type(state).__name__}"
        )
        plain = " (a plain state_dict?)" if isinstance(state, dict) and state and "model" not in state else ""
        raise CheckpointError(
            f"{path} is not an irem-train checkpoint: it holds {held}{plain}, without {' and '.join(missing)}. "
            "irem commands load the checkpoints irem-train writes (<run_dir>/checkpoints/last.pt, with the run's "
            "weights and config); to use bare weights, build the model in Python and call load_state_dict."
        )
    return state


def _sound_iteration(path: Path) -> int | None:
    """The iteration of the checkpoint at `path` when it reads soundly, else None."""
    try:
        return load(path).get("iteration") if path.is_file() else None
    except CheckpointError:
        return None


def load_or_point_back(path: str | Path) -> dict[str, Any]:
    """`load_run_state(path)`, and when that fails, the message also names the previous checkpoint
    beside it if that one reads soundly (irem-eval, irem-study: checkpoint=<it> evaluates it)."""
    path = Path(path)
    try:
        return load_run_state(path)
    except CheckpointError as err:
        previous = previous_checkpoint(path)
        iteration = None if previous == path else _sound_iteration(previous)
        if iteration is None:
            raise
        raise type(err)(
            f"{err} The previous checkpoint {previous} (iteration {iteration}) is sound: give checkpoint={previous} "
            "to use it, or run irem-train again, which resumes from it."
        ) from None


def recover(path: str | Path) -> Path | None:
    """Before a resume: `path` if it reads soundly; if it does not (corrupted, damaged) and the previous
    checkpoint beside it does, set the bad file aside (last.pt.corrupted), put the previous one in its
    place and say so; None when there is no checkpoint. A bad checkpoint without a sound previous one
    is refused with the way forward."""
    path = Path(path)
    if not path.exists():
        return None
    check_safe_torch()
    try:
        load(path)
        return path
    except CheckpointError as err:
        previous = previous_checkpoint(path)
        iteration = _sound_iteration(previous)
        if iteration is None:
            raise type(err)(
                f"{err} No sound previous checkpoint is beside it ({previous}), so there is nothing to resume "
                "from: train again with resume=false."
            ) from None
        aside = path.with_name(path.name + CORRUPTED_SUFFIX)
        os.replace(path, aside)
        _place_copy(previous, path)
        print(
            f"Note: {err} It was moved to {aside}; resuming from the previous checkpoint {previous} "
            f"(iteration {iteration}) instead.",
            file=sys.stderr,
        )
        return path


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


def finite_or_none(x: float) -> float | None:
    """A float for JSON, which has no NaN or inf: those become null."""
    return x if math.isfinite(x) else None
