"""Atomic checkpoints, and where a run keeps its own.

A checkpoint is written to a temporary file in the same folder, then renamed, so a run killed
mid-write leaves the previous checkpoint intact, never a truncated file. `run_checkpoint` is the
one place that says where inside a run directory irem-train writes it (and irem-eval, irem-study
and the composition of trained runs read it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

CHECKPOINT = "last.pt"


def run_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint irem-train keeps inside its run directory: <run_dir>/checkpoints/last.pt."""
    return Path(run_dir) / "checkpoints" / CHECKPOINT


def save_atomic(obj: Any, path: str | Path) -> Path:
    import torch  # here, not at the top: the command line resolves checkpoint paths before torch loads

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> dict[str, Any]:
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a foreign or damaged file: say which
        raise RuntimeError(f"Could not read checkpoint {path}: {err}") from err
