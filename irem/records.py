"""The result files of evaluation and studies: strict JSON and flat CSV, and a study's TensorBoard.

One writer for both commands: irem-train / irem-eval write their rows as eval.json / eval.csv,
irem-study its cells as study.json / study.csv (and instances.csv). JSON is strict (NaN and
infinity, which a diverged instance can give, are written as null) and the CSV holds the same
rows, a column per key any row has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irem.study import Study

INSTANCE_FIELDS = ("solver", "set", "instance", "level", "difficulty", "steps", "status", "stopped_by", "error")


def finite(value: Any) -> Any:
    """NaN and infinity as null: strict JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def write_json(record: Any, path: Path) -> Path:
    path.write_text(json.dumps(finite(record), indent=2))
    return path


def write_csv(rows: list[dict[str, Any]], path: Path, fields: Sequence[str] | None = None) -> Path:
    """A column per key of any row (`fields` first); an empty cell where a row has no value or a
    non-finite one, as the JSON's null."""
    import csv

    names = list(fields or (rows[0] if rows else ()))
    for r in rows:
        names += [k for k in r if k not in names]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(finite(rows))
    return path


def write_results(rows: list[dict[str, Any]], out_dir: str | Path, stem: str = "eval") -> tuple[Path, Path]:
    """<stem>.json and <stem>.csv of evaluation rows (irem-train, irem-eval)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_json(rows, out_dir / f"{stem}.json"), write_csv(rows, out_dir / f"{stem}.csv")


def write_study(study: Study, out_dir: str | Path) -> list[Path]:
    """study.json (everything), study.csv (every cell), instances.csv (every adaptive instance)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "title": study.title,
        "task": study.task,
        "metric": study.metric,
        "higher_is_better": study.higher_is_better,
        "level_label": study.level_label,
        "difficulty_label": study.difficulty_label,
        "solvers": study.solvers,
        "level_values": study.level_values,
        "budgets": study.budgets,
        "correlations": study.correlations,
        "levels": study.levels,
        "cells": study.cells,
    }
    return [
        write_json(record, out_dir / "study.json"),
        write_csv(study.cells, out_dir / "study.csv"),
        write_csv(study.instances, out_dir / "instances.csv", INSTANCE_FIELDS),
    ]


def log_tensorboard(study: Study, out_dir: str | Path) -> Path:
    """study/<solver>/<metric>/<set> against the step budget as x-axis (an adaptive solver: at its
    mean steps), study/<solver>/seconds/<set>, and study/<solver>/steps/<set> histograms."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    path = Path(out_dir) / "tb"
    writer = SummaryWriter(str(path))
    try:
        for c in study.cells:
            step = round(c["steps_mean"]) if c["adaptive"] else c["budget"]
            writer.add_scalar(f"study/{c['solver']}/{c['metric']}/{c['set']}", c["error"], global_step=step)
            writer.add_scalar(f"study/{c['solver']}/seconds/{c['set']}", c["seconds"], global_step=step)
        groups: dict[tuple[str, str], list[int]] = {}
        for r in study.instances:
            groups.setdefault((r["solver"], r["set"]), []).append(r["steps"])
        for (solver, name), steps in groups.items():
            writer.add_histogram(f"study/{solver}/steps/{name}", torch.tensor(steps), global_step=0)
    finally:
        writer.close()
    return path
