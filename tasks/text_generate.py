"""Generating text from a prompt with a trained byte-level model (tasks/text.py): `generate()` and
`irem-generate`, whose config schema (`GenerateConfig`, configs/generate.yaml) is registered here.
It lives beside the text task because only a text task turns a prompt into a problem.

    irem-generate run_dir=outputs/text-energy 'prompt="The "' length=200
    irem-generate run_dir=outputs/text-energy 'prompt="The "' budget=8 answer=best solver=best_of_n   # System 2
    irem-generate run_dir=outputs/text-energy 'prompt="The "' solver=langevin temperature=0

Generation is autoregressive over bytes: the window is the last `context` bytes of prompt plus
what has been generated (shorter at the start: both text models accept T <= context), the model
predicts next-byte logits for it through `Predictor.predict` (descent on the energy for the EBT,
one forward pass for Transformer++), and the next byte is drawn from softmax(logits / temperature)
with the caller's seeded generator, or taken by argmax at temperature 0. The descent's random
start draws from the same generator, so a seed fixes the whole text.

`irem-generate` loads a run the way `irem-eval` does, takes the same `solver=<name>` override (so
best-of-N starts or Langevin noise run on the trained energy), prints the text (control bytes such
as ESC and backspace shown as escapes like `\\x1b`, so a sampled byte cannot drive the terminal)
and writes it
with its settings to `<run_dir>/generate/<time>/generation.json`. The prompt is quoted for Hydra
as above: unquoted, a trailing space is dropped and brackets are override syntax.
"""

# ruff: noqa: E402  (the OpenMP wait policy is set before torch is imported, as in irem/cli.py)
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irem.openmp import configure_wait_policy

# before torch loads, as in irem/cli.py: a short bounded spin between ops (hence E402 below)
configure_wait_policy()

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import Tensor
from tqdm.auto import tqdm

from irem.build import build_solver, load_run
from irem.cli import CONFIG_DIR, precheck, setup
from irem.config import DEFAULT_THREADS
from irem.device import resolve_device
from irem.predictor import Predictor
from irem.run_guard import claim_output_dir
from irem.task import Task


@dataclass
class GenerateConfig:
    """irem-generate: continue `prompt` by `length` bytes with a trained text run."""

    run_dir: str = MISSING
    checkpoint: str | None = None
    prompt: str = MISSING
    length: int = 200
    budget: int | None = None
    answer: str = "budget"
    temperature: float = 1.0
    solver: Any = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = DEFAULT_THREADS
    progress: bool = True


# configs/generate.yaml names this schema in its defaults list; it is stored when the command loads
ConfigStore.instance().store(name="generate_schema", node=GenerateConfig)

ANSWERS = ("budget", "best")  # the iterate at the budget, or the lowest-energy iterate (energy models)


def check_settings(length: int, temperature: float, answer: str, budget: int | None = None) -> None:
    """Refuse settings that cannot mean anything before a model is loaded or a byte is generated."""
    if isinstance(length, bool) or int(length) != length or length < 0:
        raise ValueError(f"length must be a whole number of bytes >= 0, got {length!r}.")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 takes the most likely byte), got {temperature!r}."
        )
    if answer not in ANSWERS:
        raise ValueError(
            f"Unknown answer '{answer}'. Valid choices: budget (the iterate after `budget` descent steps), "
            "best (the lowest-energy iterate, energy models only)."
        )
    if budget is not None and (isinstance(budget, bool) or int(budget) != budget or budget < 1):
        raise ValueError(
            f"budget must be a whole number of descent steps >= 1 (0 would answer with the random start), "
            f"got {budget!r}."
        )


def check_text_task(task: Task) -> None:
    """Generation needs a task that turns a prompt's ids into a problem (tasks/text.py's
    `prompt_problem`); the core names no task class."""
    if not callable(getattr(task, "prompt_problem", None)):
        raise ValueError(
            f"irem-generate needs a text task; this run's task is '{task.name}'. "
            "Train one with irem-train task=text energy=transformer (or baseline=transformer)."
        )


def next_logits(
    task: Task, model: Predictor, tokens: Tensor, budget: int, answer: str, generator: torch.Generator
) -> Tensor:
    """The model's next-byte logits [vocab] after `tokens` (on the model's device).

    The models score every position of the window and only the last row is used: a window of
    context <= a few hundred bytes costs little more than its last position at these model sizes,
    and it keeps one code path (`Predictor.predict`) for the EBT and Transformer++ alike.
    """
    device = next(model.parameters()).device
    problem = task.prompt_problem(tokens).to(device)
    predictions = model.predict(task, problem, [budget], generator)
    key = "best" if answer == "best" else str(budget)
    if key not in predictions.answers:
        raise ValueError(
            f"answer={answer} needs the lowest-energy iterate, which only an energy model has; this run holds a "
            f"{type(model).__name__}. Valid here: answer=budget."
        )
    return predictions.answers[key][-1].detach()


def sample(logits: Tensor, temperature: float, generator: torch.Generator) -> int:
    """A byte from softmax(logits / temperature), or the argmax at temperature 0.

    Drawn on the CPU in float64 with the caller's CPU generator, so a seed gives the same text on
    any device and a very low temperature does not overflow.
    """
    logits = logits.detach().double().cpu()
    if not torch.isfinite(logits).all():
        raise FloatingPointError(
            "the model's next-byte logits are not finite (the descent diverged); use fewer descent steps "
            "(budget=...) or a solver with a smaller step (e.g. solver=gd_accept)."
        )
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def generate_ids(
    task: Task,
    model: Predictor,
    prompt: Sequence[int] | Tensor,
    length: int,
    budget: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    answer: str = "budget",
    progress: bool = False,
) -> Tensor:
    """`length` new byte ids [length] (int64, CPU) after the byte ids `prompt`.

    `budget`: descent steps per byte (None: `model.default_budget`, the trained budget; a baseline
    ignores it). `answer`: "budget" takes the iterate after `budget` steps, "best" the lowest-energy
    iterate of the descent. The model is used as it is (train or eval mode, its device); callers
    that load a run call `.eval()`, as evaluation does.
    """
    check_text_task(task)
    budget = model.default_budget if budget is None else budget
    check_settings(length, temperature, answer, budget)
    ids = torch.as_tensor(prompt, dtype=torch.long).flatten().cpu()
    if ids.numel() == 0:
        raise ValueError("the prompt is empty; give at least one byte to continue, e.g. prompt='The '.")
    if ids.min() < 0 or ids.max() >= task.dims()["vocab_size"]:
        raise ValueError(f"prompt ids must be bytes in [0, {task.dims()['vocab_size']}), got {ids.tolist()[:10]}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    out = ids.tolist()
    for _ in tqdm(range(int(length)), desc="bytes", disable=not progress, mininterval=1.0):
        logits = next_logits(task, model, torch.tensor(out[-task.context :]), int(budget), answer, generator)
        out.append(sample(logits, float(temperature), generator))
    return torch.tensor(out[ids.numel() :], dtype=torch.long)


def generate(
    task: Task,
    model: Predictor,
    prompt: str,
    length: int,
    budget: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    answer: str = "budget",
    progress: bool = False,
) -> str:
    """The continuation of `prompt` by `length` bytes, decoded as UTF-8.

    Bytes that do not form valid UTF-8 (a sampled byte is not always a whole character) decode as
    U+FFFD, so the string may hold fewer characters than `length`; `generate_ids` gives the bytes.
    """
    new = generate_ids(
        task, model, list(prompt.encode("utf-8")), length, budget, temperature, generator, answer, progress
    )
    return bytes(new.tolist()).decode("utf-8", errors="replace")


# Characters a terminal acts on instead of showing: C0 controls but newline and tab (ESC starts
# colour and cursor sequences, backspace erases), DEL, and the C1 controls (U+009B is a CSI).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


def printable(text: str) -> str:
    """`text` safe to print to a terminal: each control character as a visible escape (`\\x1b`).

    A byte model samples any byte, so a continuation may hold ESC or backspace, which would recolour,
    move the cursor or erase what was printed; generation.json keeps the text as generated.
    """
    return text.translate(_CONTROLS)


@hydra.main(config_path=CONFIG_DIR, config_name="generate", version_base="1.3")
def _generate(cfg: DictConfig) -> None:
    setup(cfg)
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
        "solver": HydraConfig.get().runtime.choices.get("solver"),
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
    out = Path(HydraConfig.get().runtime.output_dir) / "generation.json"
    out.write_text(json.dumps(record, indent=2))
    print(
        f"{cfg.length} bytes in {seconds:.1f}s (budget={budget} a byte, answer={cfg.answer}) -> {out}",
        file=sys.stderr,
    )


def main() -> None:
    cfg = precheck(
        "generate",
        sys.argv[1:],
        required={"run_dir": "an irem-train run of task=text", "prompt": "the text to continue, quoted for Hydra"},
        usage="""irem-generate run_dir=outputs/text-energy 'prompt="The "'""",
    )
    if cfg is not None:
        claim_output_dir(cfg, sys.argv)
    _generate()


if __name__ == "__main__":  # python -m irem.tasks.text_generate ...
    main()
