"""Generating a continuation of a prompt with a trained model, token by token: `generate()` and
`generate_ids()`, which `irem-generate` (irem/generate_command.py) calls.

A task opts in by turning a prompt's ids into a problem (`Prompted`, as the byte-level text task of
tasks/text.py does). Generation is autoregressive: the window is the last `context` ids of the
prompt plus what has been generated (shorter at the start), the model predicts next-id logits for
it through `Predictor.predict` (descent on the energy for an energy model, one forward pass for a
baseline), and the next id is drawn from softmax(logits / temperature) with the caller's seeded
generator, or taken by argmax at temperature 0. The descent's random start draws from the same
generator, so a seed fixes the whole text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from irem.predictor import Predictor
from irem.problem import Problem
from irem.task import Task


@runtime_checkable
class Prompted(Protocol):
    """What a task defines to be continued from a prompt: the problem of predicting the ids after
    `ids` (the window's last row is the next id), and the longest window its models take."""

    context: int

    def prompt_problem(self, ids: Tensor) -> Problem: ...


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
    """Generation needs a task that turns a prompt's ids into a problem (`Prompted`)."""
    if not isinstance(task, Prompted):
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
