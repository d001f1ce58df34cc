"""`irem-generate` as a command: from its config (configs/generate.yaml) to a printed and recorded
continuation of a prompt, with a trained run (irem/generation.py does the generating).

    irem-generate run_dir=outputs/text-ebt_system2 'prompt="The "' length=200
    irem-generate run_dir=outputs/text-ebt_system2 'prompt="The "' budget=8 answer=best solver=best_of_n
    irem-generate run_dir=outputs/text-ebt_system2 'prompt="The "' solver=langevin temperature=0

It loads a run the way `irem-eval` does and takes the same `solver=<name>` override (so best-of-N
starts or Langevin noise run on the trained energy), prints the text (control bytes such as ESC and
backspace shown as escapes like `\\x1b`, so a sampled byte cannot drive the terminal) and writes it
with its settings to `<run_dir>/generate/<time>/generation.json`. The prompt is quoted for Hydra as
above: unquoted, a trailing space is dropped and brackets are override syntax.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from irem.build import build_solver, load_run
from irem.device import resolve_device
from irem.generation import check_settings, check_text_task, generate, printable


def run(cfg: DictConfig, output_dir: str | Path, solver_choice: str | None) -> None:
    """Generate as `cfg` says and write generation.json into `output_dir`; a setting that cannot
    work exits with its message before (or instead of) a traceback."""
    try:
        check_settings(cfg.length, cfg.temperature, cfg.answer, cfg.budget)
        path, saved, task, model = load_run(cfg.run_dir, cfg.checkpoint)
        check_text_task(task)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    budget = model.default_budget if cfg.budget is None else int(cfg.budget)  # the trained one, not the override's
    if cfg.get("solver") is not None:
        if not hasattr(model, "solver"):
            raise SystemExit(f"solver=... applies to energy models; {path} holds a {type(model).__name__}.")
        model.use_solver(build_solver(cfg.solver))
    model.to(resolve_device(cfg.device)).eval()
    generator = torch.Generator().manual_seed(int(cfg.seed))
    start = time.perf_counter()
    try:
        text = generate(
            task, model, cfg.prompt, cfg.length, budget, cfg.temperature, generator, cfg.answer, cfg.progress
        )
    except ValueError as err:
        raise SystemExit(str(err)) from err
    seconds = time.perf_counter() - start
    print(printable(cfg.prompt + text))
    record = {
        "run": str(path),
        "name": saved.get("name"),
        "model": type(model).__name__,
        "solver": solver_choice,
        "prompt": cfg.prompt,
        "continuation": text,
        "length": int(cfg.length),
        "budget": budget,
        "answer": cfg.answer,
        "temperature": float(cfg.temperature),
        "seed": int(cfg.seed),
        "seconds": seconds,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    out = Path(output_dir) / "generation.json"
    out.write_text(json.dumps(record, indent=2))
    print(
        f"{cfg.length} bytes in {seconds:.1f}s (budget={budget} a byte, answer={cfg.answer}) -> {out}",
        file=sys.stderr,
    )
