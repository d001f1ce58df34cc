"""Figures of a compute-vs-difficulty study (irem/study.py), as PNG files next to its records.

    error_vs_steps.png        the error after each step budget, one line per difficulty level;
                              an adaptive solver is a point at the mean steps it used
    steps_vs_difficulty.png   the steps an adaptive solver used per instance against the
                              difficulty the task records, with the median of each level
    error_vs_seconds.png      the error against measured wall-clock: a fixed solver's budgets
                              as a line per level, an adaptive solver as points

Drawn on matplotlib Figures with the Agg canvas, never through pyplot, so no window or global
backend is involved and a study can run on a headless machine or in a test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib import colormaps, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

if TYPE_CHECKING:
    from irem.study import Study

STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")
MIXED_COLOR = "0.35"


def _colors(sets: list[str]) -> dict[str, Any]:
    """Levels in the order studied, from light (first) to dark (last); the mixed set grey."""
    levels = [s for s in sets if s != "mixed"]
    cmap = colormaps["viridis"]
    out = {s: cmap(0.9 - 0.8 * i / max(len(levels) - 1, 1)) for i, s in enumerate(levels)}
    out["mixed"] = MIXED_COLOR
    return out


def _spans_decades(values: list[float]) -> bool:
    """A log axis is worth it when every value is positive and they span more than 10x."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 10


def _label_2_3_5(value: float, _: Any) -> str:
    """Minor log ticks labelled at 2, 3 and 5 times a power of ten only, so labels do not collide."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:g}" if any(abs(mantissa - m) < 1e-6 for m in (2, 3, 5)) else ""


def _log_y(ax: Any, values: list[float]) -> None:
    """Log-y when the values span decades; under two decades the 2..9 ticks are labelled too, so a
    reader is not left with two labelled ticks."""
    if not _spans_decades(values):
        return
    ax.set_yscale("log")
    if max(values) / min(values) < 100:
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(_label_2_3_5))


def _figure(width: float = 8.5, height: float = 5.2) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _metric_axis(study: Study) -> str:
    """The study's metric, and its direction where a larger value is the better one."""
    better = ", higher is better" if study.metric in study.higher_is_better else ""
    return f"{study.metric} (mean over instances{better})"


def _set_label(study: Study, name: str) -> str:
    return "mixed levels" if name == "mixed" else f"{study.level_label} = {name}"


def _legend(ax: Any, study: Study, sets: list[str], colors: dict[str, Any], solvers: dict[str, Any]) -> None:
    """Colours name the levels, line styles and markers name the solvers."""
    handles = [Line2D([], [], color=colors[s], lw=2.5, label=_set_label(study, s)) for s in sets]
    handles += [Line2D([], [], color="black", label=name, **style) for name, style in solvers.items()]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _solver_styles(study: Study) -> dict[str, dict[str, Any]]:
    styles, fixed, adaptive = {}, 0, 0
    for name, info in study.solvers.items():
        if info["adaptive"]:
            styles[name] = {"ls": "none", "marker": MARKERS[adaptive % len(MARKERS)], "markersize": 8}
            adaptive += 1
        else:
            styles[name] = {"ls": STYLES[fixed % len(STYLES)], "marker": "."}
            fixed += 1
    return styles


def error_vs_steps(study: Study, path: Path) -> Path:
    sets = list(dict.fromkeys(c["set"] for c in study.cells))
    colors, styles = _colors(sets), _solver_styles(study)
    fig = _figure()
    ax = fig.add_subplot()
    for name, info in study.solvers.items():
        for s in sets:
            cells = [c for c in study.cells if c["solver"] == name and c["set"] == s]
            if info["adaptive"]:
                for c in cells:
                    ax.plot(c["steps_mean"], c["error"], color=colors[s], mec="black", **styles[name])
            else:
                ax.plot([c["budget"] for c in cells], [c["error"] for c in cells], color=colors[s], **styles[name])
    ax.set_xscale("log")
    budgets = sorted({c["budget"] for c in study.cells})
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    _log_y(ax, [c["error"] for c in study.cells])
    ax.set_xlabel("descent steps (fixed solvers: the budget; adaptive: mean steps used)")
    ax.set_ylabel(_metric_axis(study))
    ax.set_title(f"{study.title}: {study.metric} against steps, per {study.level_label}")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, study, sets, colors, styles)
    fig.savefig(path, dpi=110)
    return path


def steps_vs_difficulty(study: Study, path: Path) -> Path | None:
    """None when the study ran no adaptive solver (nothing decided its own step count)."""
    adaptive = [n for n, info in study.solvers.items() if info["adaptive"]]
    if not adaptive or not study.instances:
        return None
    sets = list(dict.fromkeys(r["set"] for r in study.instances))
    colors = _colors(sets)
    fig = _figure(width=6.0 * len(adaptive) + 2.5)
    axes = fig.subplots(1, len(adaptive), squeeze=False)[0]
    for ax, name in zip(axes, adaptive, strict=True):
        rows = [r for r in study.instances if r["solver"] == name]
        for s in sets:
            mine = [r for r in rows if r["set"] == s]
            ax.scatter(
                [r["difficulty"] for r in mine],
                [r["steps"] for r in mine],
                s=12 if s != "mixed" else 18,
                marker="o" if s != "mixed" else "x",
                color=colors[s],
                alpha=0.45 if s != "mixed" else 0.6,
                linewidths=0.8 if s == "mixed" else 0,
                label=_set_label(study, s),
            )
        medians = [lv for lv in study.levels if lv["set"] != "mixed" and f"{name}_steps_median" in lv]
        ax.plot(
            [lv["difficulty_median"] for lv in medians],
            [lv[f"{name}_steps_median"] for lv in medians],
            color="crimson",
            marker="D",
            lw=2,
            label="median per level",
        )
        max_steps = study.solvers[name]["max_steps"]
        ax.axhline(max_steps, color="black", ls="--", lw=1, label=f"max_steps = {max_steps}")
        if _spans_decades([r["difficulty"] for r in rows]):
            ax.set_xscale("log")
        ax.set_ylim(0, max_steps * 1.08)
        rho = study.correlations.get(name, {}).get("all")
        note = "" if rho is None else f" (Spearman rho = {rho:.2f})"
        ax.set_title(f"{name}: steps used per instance{note}")
        ax.set_xlabel(f"{study.difficulty_label} (per instance)")
        ax.set_ylabel("descent steps used")
        ax.grid(True, which="both", alpha=0.3)
    legend = axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    for handle in legend.legend_handles:  # the points are translucent; their legend keys need not be
        handle.set_alpha(1.0)
    fig.suptitle(f"{study.title}: compute against difficulty")
    fig.savefig(path, dpi=110)
    return path


def error_vs_seconds(study: Study, path: Path) -> Path:
    sets = list(dict.fromkeys(c["set"] for c in study.cells))
    colors, styles = _colors(sets), _solver_styles(study)
    fig = _figure()
    ax = fig.add_subplot()
    n = study.cells[0]["n"]
    for name, info in study.solvers.items():
        for s in sets:
            cells = [c for c in study.cells if c["solver"] == name and c["set"] == s]
            if info["adaptive"]:
                for c in cells:
                    ax.plot(c["seconds"], c["error"], color=colors[s], mec="black", **styles[name])
                continue
            ax.plot([c["seconds"] for c in cells], [c["timed_error"] for c in cells], color=colors[s], **styles[name])
            if s == sets[-1]:  # the budgets once, on the last line, so the others stay readable
                for c in cells:
                    ax.annotate(
                        str(c["budget"]),
                        (c["seconds"], c["timed_error"]),
                        textcoords="offset points",
                        xytext=(3, 4),
                        fontsize=7,
                    )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    _log_y(ax, [c["error"] for c in study.cells])
    ax.set_xlabel(f"wall-clock seconds to solve the set ({n} instances per level)")
    ax.set_ylabel(_metric_axis(study))
    ax.set_title(f"{study.title}: {study.metric} against wall-clock (numbers: fixed step budgets)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, study, sets, colors, styles)
    fig.savefig(path, dpi=110)
    return path


def study_plots(study: Study, out_dir: str | Path) -> list[Path]:
    """Every figure the study has data for; the paths written."""
    out_dir = Path(out_dir)
    paths = [
        error_vs_steps(study, out_dir / "error_vs_steps.png"),
        steps_vs_difficulty(study, out_dir / "steps_vs_difficulty.png"),
        error_vs_seconds(study, out_dir / "error_vs_seconds.png"),
    ]
    return [p for p in paths if p is not None]
