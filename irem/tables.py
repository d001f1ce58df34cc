"""The tables the commands print: evaluation rows (irem-train, irem-eval) and a study (irem-study).

Splits or sets down, step budgets across, one block per metric; a metric the task declares
higher-is-better (`Task.higher_is_better`: accuracy, PSNR) says so in its heading, every other
one is an error.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irem.study import Study


def metric_label(metric: str, higher_is_better: Collection[str] = ()) -> str:
    """The metric's name, with "(higher is better)" where a larger value is the better one."""
    return f"{metric} (higher is better)" if metric in higher_is_better else metric


def _order(label: str) -> tuple[int, int]:
    return (0, int(label)) if label.isdigit() else (1, 0)


def _number(value: float, width: int = 12) -> str:
    """A table entry: 4 significant digits, or a dash where the row has no such number."""
    return f"{value:>{width}.4g}" if math.isfinite(value) else f"{'-':>{width}}"


def _row(values: tuple[float, ...], widths: list[int]) -> str:
    return "".join(_number(v, w) for v, w in zip(values, widths, strict=True))


def format_table(rows: list[dict[str, Any]], title: str = "", higher_is_better: Collection[str] = ()) -> str:
    """One block per metric: splits down, budgets across (one "any budget" column for a predictor
    whose answer is the same at every budget, rows marked `ignores_budget`)."""
    out = []
    for metric in dict.fromkeys(r["metric"] for r in rows):
        sub = [r for r in rows if r["metric"] == metric]
        labels = sorted(dict.fromkeys(r["budget"] for r in sub), key=_order)
        splits = list(dict.fromkeys(r["split"] for r in sub))
        value = {(r["split"], r["budget"]): r["value"] for r in sub}
        heads = [f"steps {lb}" if lb.isdigit() else lb for lb in labels]
        if all(r.get("ignores_budget") for r in sub):  # one answer whatever the budget: one column
            labels, heads = labels[-1:], ["any budget"]
        name = metric_label(metric, higher_is_better)
        width = max(10, len(name) + 1, *(len(s) + 1 for s in splits))  # long names keep columns aligned
        head = f"{name:<{width}}" + "".join(f"{h:>12}" for h in heads)
        out.append((f"{title}  " if title else "") + head)
        for s in splits:
            out.append(
                f"{'':{len(title) + 2 if title else 0}}{s:<{width}}"
                + "".join(f"{value.get((s, lb), float('nan')):>12.4g}" for lb in labels)
            )
    return "\n".join(out)


def format_solves(rows: list[dict[str, Any]], title: str = "") -> str:
    """Per split, once: the instances, the mean steps the solve used per instance (an adaptive
    solver's own count; a fixed one takes its largest budget) and the seconds of the whole solve,
    which answered every budget of the split at once, and where the rows count them (energy models)
    the instances of the whole solve that diverged and that were still moving at its end (`max_steps`),
    so an error averaged over diverged instances is seen as such. Then the same counts at each smaller
    budget, where they differ: the largest budget and `best` would only repeat the solve's own."""
    pad = " " * (len(title) + 2 if title else 0)
    solves = {r["split"]: r for r in rows}
    counted = [r for r in rows if r.get("diverged") is not None]
    largest = max((int(r["budget"]) for r in rows if str(r["budget"]).isdigit()), default=0)
    # the whole solve's status: what its largest budget and its best iterate report
    final = {r["split"]: r for r in counted if r["budget"] in ("best", str(largest))}
    columns = ("instances", "steps used", "seconds") + (("diverged", "max_steps") if final else ())
    width = max(10, *(len(s) + 1 for s in solves))
    head = f"{'solve':<{width}}" + "".join(f"{c:>12}" for c in columns)
    lines = [(f"{title}  " if title else "") + head]
    for split, r in solves.items():
        values = (float(r["n"]), float(r["steps_mean"]), float(r["solve_seconds"]))
        if final:
            f = final.get(split)
            values += (math.nan, math.nan) if f is None else (float(f["diverged"]), float(f["max_steps"]))
        lines.append(f"{pad}{split:<{width}}" + "".join(map(_number, values)))
    # per budget, only the smaller budgets, whose counts differ from the whole solve's
    smaller = {
        (r["split"], r["budget"]): r for r in counted if str(r["budget"]).isdigit() and int(r["budget"]) < largest
    }
    if smaller:  # (keyed by split and budget: the counts repeat per metric)
        status = [
            {"split": r["split"], "budget": r["budget"], "metric": f"{key} (instances)", "value": float(r[key])}
            for key in ("diverged", "max_steps")
            for r in smaller.values()
        ]
        lines.append(format_table(status, title))
    return "\n".join(lines)


def format_study(study: Study) -> str:
    """irem-eval's table for each fixed solver (sets down, budgets across: the study's metric,
    then seconds), then one line per set and level for each adaptive solver."""
    fixed = [c for c in study.cells if not c["adaptive"]]
    metric = metric_label(study.metric, study.higher_is_better)
    rows = [
        {"split": c["set"], "budget": str(c["budget"]), "metric": f"{c['solver']} {metric}", "value": c["error"]}
        for c in fixed
    ]
    rows += [
        {"split": c["set"], "budget": str(c["budget"]), "metric": f"{c['solver']} seconds", "value": c["seconds"]}
        for c in fixed
    ]
    blocks = [format_table(rows, study.title)] if rows else []
    pad = " " * (len(study.title) + 2)
    for name in dict.fromkeys(c["solver"] for c in study.cells if c["adaptive"]):
        cell = {c["set"]: c for c in study.cells if c["solver"] == name}
        budget = next(iter(cell.values()))["budget"]
        head = f"{name} (max {budget} steps)"
        cols = ("level", "difficulty", "steps mean", "steps med", study.metric, "seconds")
        widths = [max(12, len(c) + 1) for c in cols]  # a long metric name keeps its column apart
        lines = [f"{study.title}  {head:<24}" + "".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))]
        # what the two first columns hold, in the task's words (inverse: the shift c, the condition number)
        lines.append(
            f"{pad}(level: {study.level_label}; difficulty: the median {study.difficulty_label} of its instances)"
        )
        for lv in study.levels:
            if f"{name}_steps_mean" not in lv:
                continue
            seconds = cell[lv["set"]]["seconds"] if lv["set"] != "mixed" else math.nan
            values = (
                lv["level"],
                lv["difficulty_median"],
                lv[f"{name}_steps_mean"],
                lv[f"{name}_steps_median"],
                lv[f"{name}_error"],
                seconds,
            )
            lines.append(f"{pad}{lv['set']:<24}" + _row(values, widths))
        if "mixed" in cell:
            c = cell["mixed"]
            values = (math.nan, math.nan, c["steps_mean"], c["steps_median"], c["error"], c["seconds"])
            lines.append(f"{pad}{'mixed (all)':<24}" + _row(values, widths))
        rho = study.correlations.get(name, {})
        lines.append(
            f"{pad}Spearman(steps, {study.difficulty_label}): "
            + ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in rho.items())
        )
        if study.metric in study.higher_is_better:
            lines.append(f"{pad}{metric_label(study.metric, study.higher_is_better)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
