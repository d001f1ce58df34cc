"""System 1 and System 2 inference of trained text models: the tables of issue 6.

For each trained EBT run (irem-train experiment=text_ebt_system1 / text_ebt_system2) it reports,
on every split: bits per byte and perplexity after 1, 2, 4, 8 descent steps (one descent,
snapshots), best-of-N (N = 2, 4, 8 starts per position, at the trained budget, the lowest final
energy kept), longer descents with accept-only-if-lower, and adaptive halting (each position stops
when its energy plateaus, at most the largest budget; the mean steps it took are reported); then the energy diagnostics: the
correlation of each position's final energy with its loss (is the energy an uncertainty signal?)
and the energy gap between the first and the last step. For each Transformer++ run it reports its
one answer. Every row carries the training tokens and seconds of its run, so the table reads at
matched tokens and at matched wall-clock.

    python benchmarks/text_system2.py --ebt runs/text/ebt_system1 runs/text/ebt_system2 \\
        --transformer runs/text/transformer_pp runs/text/transformer_pp_tokens --out runs/text/report

Writes <out>/text_system2.json and .md; the last printed line is key=value pairs. The measured
tables are in docs/results/text.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irem.openmp import configure_wait_policy  # noqa: E402

configure_wait_policy()

import torch  # noqa: E402
from scipy.stats import pearsonr, spearmanr  # noqa: E402

from irem.build import load_run  # noqa: E402
from irem.energy_model import EnergyModel  # noqa: E402
from irem.seeds import eval_generator  # noqa: E402
from irem.solvers.adaptive import AdaptiveDescent  # noqa: E402
from irem.solvers.best_of_n import BestOfN  # noqa: E402
from irem.solvers.halting import EnergyPlateau  # noqa: E402

LN2 = math.log(2)


def run_info(run_dir: Path, cfg, task) -> dict:
    summary = json.loads((run_dir / "train_summary.json").read_text())
    processes = int(summary.get("processes", 1))
    tokens = int(summary["iterations"]) * int(cfg.trainer.batch_size) * task.context * processes
    return {
        "run": str(run_dir),
        "iterations": summary["iterations"],
        "tokens": tokens,
        "train_s": summary["train_seconds"],
    }


def row(label: str, info: dict, split: str, ce: torch.Tensor, **extra) -> dict:
    mean = float(ce.mean())
    return {
        "model": label,
        **info,
        "split": split,
        "bits_per_byte": mean / LN2,
        "perplexity": math.exp(mean),
        "positions": ce.numel(),
        **extra,
    }


def split_problem(task, split: str, args):
    problem = task.split(split)
    if args.max_windows is None:
        return problem
    return next(task.eval_batches(problem, args.max_windows * task.context))


def energy_rows(label: str, info: dict, model: EnergyModel, task, split: str, args) -> list[dict]:
    """Every inference variant of one EBT on one split, plus its energy diagnostics."""
    solver = model.solver
    trained = int(solver.max_steps)
    budgets = sorted(set(args.steps) | {trained})
    accept = copy.deepcopy(solver)
    accept.accept_if_lower = True
    ce: dict[str, list[torch.Tensor]] = {}
    first, final_e, final_ce, adaptive_steps = [], [], [], []
    problem = split_problem(task, split, args)
    g = eval_generator(args.seed, split)
    t0 = time.perf_counter()
    with torch.no_grad():
        for part in task.eval_batches(problem, args.windows * task.context):
            y0 = task.init_answer(part, g)
            res = solver.solve(
                model.energy, part.x, y0, budget=max(budgets), snapshots=budgets, record_history=True, generator=g
            )
            for b in budgets:
                ce.setdefault(f"{b} steps", []).append(task.loss(part, res.snapshots[b]))
            history = res.energy_history  # [steps + 1, n]: the energy of every iterate
            first.append(history[0])
            final_e.append(history[trained])
            final_ce.append(task.loss(part, res.snapshots[trained]))
            for n in args.best_of:
                picked = BestOfN(descent=solver, starts=n, pick="final", init="uniform").solve(
                    model.energy, part.x, y0, budget=trained, generator=g
                )
                ce.setdefault(f"best-of-{n}, {trained} steps", []).append(task.loss(part, picked.y))
            for b in args.accept_steps:
                kept = accept.solve(model.energy, part.x, y0, budget=b, generator=g)
                ce.setdefault(f"{b} steps, accept-if-lower", []).append(task.loss(part, kept.y))
            if args.plateau:
                halting = AdaptiveDescent(descent=solver, rules=[EnergyPlateau(tol=args.plateau, patience=1)])
                stopped = halting.solve(model.energy, part.x, y0, budget=max(budgets), generator=g)
                halted = f"adaptive (plateau {args.plateau:g}, <= {max(budgets)} steps)"
                ce.setdefault(halted, []).append(task.loss(part, stopped.y))
                adaptive_steps.append(stopped.steps.float())
    seconds = time.perf_counter() - t0
    e, loss = torch.cat(final_e), torch.cat(final_ce)
    diagnostics = {
        "energy_loss_pearson": float(pearsonr(e.numpy(), loss.numpy()).statistic),
        "energy_loss_spearman": float(spearmanr(e.numpy(), loss.numpy()).statistic),
        "energy_first": float(torch.cat(first).mean()),
        "energy_last": float(e.mean()),
    }
    diagnostics["energy_gap"] = diagnostics["energy_first"] - diagnostics["energy_last"]
    if adaptive_steps:
        diagnostics["adaptive_mean_steps"] = float(torch.cat(adaptive_steps).mean())
    rows = [row(label, info, split, torch.cat(v), inference=k) for k, v in ce.items()]
    rows.append({"model": label, **info, "split": split, "inference": "diagnostics", "eval_s": seconds, **diagnostics})
    return rows


def baseline_rows(label: str, info: dict, model, task, split: str, args) -> list[dict]:
    problem = split_problem(task, split, args)
    g = eval_generator(args.seed, split)
    losses = []
    with torch.no_grad():
        for part in task.eval_batches(problem, args.windows * task.context):
            losses.append(task.loss(part, model.predict(task, part, [1], g).answers["1"]))
    return [row(label, info, split, torch.cat(losses), inference="one pass")]


def markdown(rows: list[dict], splits: list[str]) -> str:
    lines = [
        f"| model | inference | training tokens | training s | {' | '.join(f'{s} bits/byte' for s in splits)} |",
        "|---" * (4 + len(splits)) + "|",
    ]
    keys = []
    for r in rows:
        if r["inference"] != "diagnostics" and (r["model"], r["inference"]) not in keys:
            keys.append((r["model"], r["inference"]))
    for model, inference in keys:
        cells = {r["split"]: r for r in rows if r["model"] == model and r["inference"] == inference}
        any_row = next(iter(cells.values()))
        values = " | ".join(f"{cells[s]['bits_per_byte']:.3f}" if s in cells else "" for s in splits)
        lines.append(f"| {model} | {inference} | {any_row['tokens']:,} | {any_row['train_s']:.0f} | {values} |")
    diag = [r for r in rows if r["inference"] == "diagnostics"]
    if diag:
        lines += [
            "",
            "| model | split | energy-loss Pearson | energy-loss Spearman | energy first step | energy last step "
            "| gap | adaptive mean steps |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in diag:
            steps = f"{r['adaptive_mean_steps']:.2f}" if "adaptive_mean_steps" in r else ""
            lines.append(
                f"| {r['model']} | {r['split']} | {r['energy_loss_pearson']:.3f} | {r['energy_loss_spearman']:.3f} | "
                f"{r['energy_first']:.3f} | {r['energy_last']:.3f} | {r['energy_gap']:.3f} | {steps} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ebt", nargs="*", default=[], help="run directories of trained EBTs")
    parser.add_argument("--transformer", nargs="*", default=[], help="run directories of Transformer++ runs")
    parser.add_argument("--splits", nargs="+", default=["val", "ood"])
    parser.add_argument("--steps", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--best-of", nargs="*", type=int, default=[2, 4, 8])
    parser.add_argument("--accept-steps", nargs="*", type=int, default=[8])
    parser.add_argument("--plateau", type=float, default=0.01, help="adaptive halting tolerance (0: no row)")
    parser.add_argument("--windows", type=int, default=32, help="windows per evaluation batch")
    parser.add_argument("--max-windows", type=int, default=None, help="evaluate only the first windows of a split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/text/report")
    args = parser.parse_args()
    if not args.ebt and not args.transformer:
        parser.error("give at least one run directory with --ebt or --transformer")
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    for kind, dirs in (("ebt", args.ebt), ("transformer", args.transformer)):
        for d in dirs:
            run_dir = Path(d)
            _, cfg, task, model = load_run(run_dir)
            model.eval()
            info = run_info(run_dir, cfg, task)
            label = str(cfg.get("name", run_dir.name))
            missing = [s for s in args.splits if s not in task.split_levels()]
            if missing:
                raise SystemExit(f"{run_dir}: task has no split(s) {missing}; valid: {list(task.split_levels())}")
            for split in args.splits:
                if kind == "ebt":
                    if not isinstance(model, EnergyModel):
                        raise SystemExit(f"{run_dir} is not an energy model; pass it with --transformer")
                    rows += energy_rows(label, info, model, task, split, args)
                else:
                    rows += baseline_rows(label, info, model, task, split, args)
                print(f"done {label} {split}", flush=True)
    table = markdown(rows, args.splits)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "text_system2.json").write_text(json.dumps(rows, indent=2))
    (out / "text_system2.md").write_text(table + "\n")
    print(table)
    pairs = [
        f"{r['model']}/{r['split']}/{r['inference'].replace(' ', '').replace(',', '_')}={r['bits_per_byte']:.4f}"
        for r in rows
        if r["inference"] != "diagnostics"
    ]
    print(" ".join(pairs))


if __name__ == "__main__":
    main()
