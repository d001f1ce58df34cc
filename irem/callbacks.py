"""What a training does besides its loop: the trainer's callbacks, one concern each.

The trainer (irem/trainer.py) runs iterations; each callback is told when a fit starts and ends,
after each optimizer step (inside the timed step) and after each iteration, and may add to the
checkpoint and read its part back. In the order the trainer keeps them:

    Checkpoints   resume from the run's checkpoint, save every `checkpoint_every` and at the end
    Divergence    a non-finite, gradient-free or exploding loss stops the run, the checkpoint kept
    EMAWeights    the moving average of the weights (irem/ema.py), checkpointed under "ema"
    Interrupts    Ctrl-C and SIGTERM become a checkpoint at the next iteration boundary
    TensorBoard   scalars under train/ and val/
    Progress      a progress bar with the loss
    Validation    the task's headline metric on the val split every `val_every`
    LearningCheck says once, early, when the loss has not moved, and what to try
    Summary       train_summary.json
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from irem.checkpoint import (
    check_finite_weights,
    finite_or_none,
    load,
    non_finite_tensors,
    recover,
    remove_stale_temps,
    save_atomic,
)
from irem.ema import WeightEMA
from irem.errors import TrainingDiverged
from irem.predictor import predict_constrained
from irem.seeds import eval_generator

if TYPE_CHECKING:
    from irem.trainer import Trainer


class Callback:
    """Hooks with nothing to do by default (a callback overrides the ones it needs)."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def after_optimizer_step(self, trainer: Trainer) -> None: ...

    def on_loss(self, trainer: Trainer, value: float, has_grad: bool) -> None:
        """The loss of an iteration, before anything is stepped on it."""

    def on_iteration_end(self, trainer: Trainer, loss: float, logs: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        """`completed`: the loop ran to its end (the iterations or the time limit), no error."""

    def state(self, trainer: Trainer) -> dict[str, Any]:
        """What this callback adds to a checkpoint."""
        return {}

    def load_state(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Read this callback's part of a checkpoint back."""


class Checkpoints(Callback):
    """Resume the run's own checkpoint (a corrupted last.pt falls back to previous.pt), save every
    `every` iterations and once more at the end (an iteration saved already is not written twice).
    A checkpoint holds the weights, the optimizer, every random stream, the iteration, the seconds
    and the loss, the run's config and what the other callbacks add (the EMA)."""

    def __init__(self, every: int) -> None:
        self.every = int(every)

    def on_fit_start(self, trainer: Trainer) -> None:
        path = trainer.checkpoint_path
        if trainer.rank == 0:
            remove_stale_temps(path)  # left by a write killed mid-way; safe under the run's lock
            if trainer.resume:
                recover(path)
        if trainer.resume and path.exists():
            state = load(path)
            check_finite_weights(state, path)
            self.load(trainer, state)
            trainer.saved_iteration = trainer.iteration

    def on_iteration_end(self, trainer: Trainer, loss: float, logs: dict[str, float]) -> None:
        if trainer.iteration % self.every == 0:
            self.save(trainer)

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        if completed and (
            trainer.iteration > trainer.start or not trainer.resume or not trainer.checkpoint_path.exists()
        ):
            self.save_once(trainer)

    def state(self, trainer: Trainer) -> dict[str, Any]:
        state = {
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "generator": trainer.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "iteration": trainer.iteration,
            "train_seconds": trainer.train_seconds,
            "loss": trainer.last_loss,
            "config": trainer.config,
        }
        for c in trainer.callbacks:
            if c is not self:
                state.update(c.state(trainer))
        if trainer.world_size > 1:  # a collective: every rank calls state() at the same iteration
            generators: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(generators, trainer.generator.get_state())
            state["rank_generators"] = generators
        return state

    def load(self, trainer: Trainer, state: dict[str, Any]) -> None:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        for c in trainer.callbacks:
            if c is not self:
                c.load_state(trainer, state)
        generators = state.get("rank_generators")
        written = 1 if generators is None else len(generators)
        if written != trainer.world_size:
            raise ValueError(
                f"{trainer.checkpoint_path} was written by {written} training process(es); resume it with the same "
                f"number (this run has {trainer.world_size}), or start a new run."
            )
        trainer.generator.set_state(state["generator"] if generators is None else generators[trainer.rank])
        torch.set_rng_state(state["torch_rng"])
        trainer.iteration, trainer.train_seconds = int(state["iteration"]), float(state["train_seconds"])
        trainer.last_loss = float(state.get("loss", math.nan))  # checkpoints before it kept no loss

    def save(self, trainer: Trainer) -> Path:
        state = self.state(trainer)
        weights = {"model": state["model"], "optimizer": state["optimizer"]["state"], "ema": state.get("ema", {})}
        bad = non_finite_tensors(weights)
        if bad:  # never write a diverged state over the last good one
            shown = ", ".join(k.rstrip(".") for k in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise diverged(trainer, f"the weights or optimizer state hold NaN or inf ({shown})")
        if trainer.rank == 0:
            save_atomic(state, trainer.checkpoint_path, keep_previous=True)
        trainer.saved_iteration = trainer.iteration
        if trainer.world_size > 1:
            dist.barrier()  # no rank reads or resumes a checkpoint rank 0 is still writing
        return trainer.checkpoint_path

    def save_once(self, trainer: Trainer) -> None:
        """Checkpoint this iteration unless it is saved already: a second write of the same state would
        make previous.pt a copy of last.pt, not the checkpoint before."""
        if trainer.saved_iteration != trainer.iteration or not trainer.checkpoint_path.exists():
            self.save(trainer)


class Divergence(Callback):
    """The divergence policy: stop, keeping the last checkpoint, on a loss that is not finite, carries
    no gradient (every instance of the batch diverged) or exceeds `max_loss` (None: no bound)."""

    def __init__(self, max_loss: float | None) -> None:
        self.max_loss = max_loss

    def on_loss(self, trainer: Trainer, value: float, has_grad: bool) -> None:
        if not math.isfinite(value):
            raise diverged(trainer, f"the training loss is {value}")
        if not has_grad:
            raise diverged(
                trainer,
                f"the training loss ({value:g}) has no gradient: every instance of the batch diverged, so "
                "nothing is left to learn from",
            )
        if self.max_loss is not None and value > self.max_loss:
            raise diverged(
                trainer,
                f"the training loss {value:.4g} exceeds trainer.max_loss={self.max_loss:g}, so the run is "
                "exploding rather than learning (raise trainer.max_loss, or null, if such losses are expected)",
            )


def diverged(trainer: Trainer, what: str) -> TrainingDiverged:
    """The error that stops a diverged run: what happened, the checkpoint it can go back to."""
    path = trainer.checkpoint_path
    if trainer.saved_iteration is not None and path.exists():
        good = f"The last good checkpoint is {path} (iteration {trainer.saved_iteration}), kept."
    else:
        good = "No checkpoint was saved yet, so there is none to go back to."
    return TrainingDiverged(
        f"Training stopped at iteration {trainer.iteration}: {what}. {good} Lower trainer.lr (now {trainer.lr:g}) "
        "or solver.step_size (the energy's descent step), or add trainer.grad_clip, and start over with "
        "resume=false (resuming the same settings diverges the same way)."
    )


class EMAWeights(Callback):
    """An exponential moving average of the weights, updated every `every` optimizer steps (the
    update's number taken from the iteration, so a resumed run continues exactly) and evaluated in
    place of the trained weights (irem/ema.py)."""

    def __init__(self, decay: float, every: int, warmup: bool) -> None:
        self.decay, self.every, self.warmup = float(decay), int(every), bool(warmup)
        self.ema: WeightEMA | None = None

    def load_state(self, trainer: Trainer, state: dict[str, Any]) -> None:
        self.ema = None
        if "ema" in state:
            self.ema = WeightEMA(trainer.model, self.decay, self.warmup)
            self.ema.load_state_dict(state["ema"])

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.ema is None:  # from the weights training starts from (or resumes, kept without an average)
            self.ema = WeightEMA(trainer.model, self.decay, self.warmup)

    def after_optimizer_step(self, trainer: Trainer) -> None:
        if trainer.iteration % self.every == 0:
            self.ema.update(trainer.model, trainer.iteration // self.every)

    def state(self, trainer: Trainer) -> dict[str, Any]:
        return {} if self.ema is None else {"ema": self.ema.state_dict()}


class Interrupts(Callback):
    """Ctrl-C (or SIGTERM, as a cluster sends on preemption) becomes a flag the trainer reads between
    iterations: an interrupt in the middle of one would checkpoint a generator and replay buffer that
    have moved on while the weights have not, and one during the save would abort it. Further
    signals only say that the run is stopping; a run stopped without its checkpoint takes SIGKILL
    (the previous checkpoint is kept)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        self.signum = None
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):  # noqa: ARG001
            if self.signum is not None:
                print(
                    f"\nAlready stopping: finishing this iteration and saving its checkpoint. To stop without "
                    f"saving, kill -9 {os.getpid()} (the previous checkpoint is kept).",
                    file=sys.stderr,
                    flush=True,
                )
                return
            self.signum = signum

        self.previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)
        self.previous = {}


class TensorBoard(Callback):
    """train/loss, train/lr, train/it_per_s and the objective's logs every `every` iterations (rank 0)."""

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self.writer = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(trainer.out_dir / "tb"), purge_step=trainer.iteration)
        self.window_start, self.window_iters = time.perf_counter(), 0

    def on_iteration_end(self, trainer: Trainer, loss: float, logs: dict[str, float]) -> None:
        self.window_iters += 1
        if trainer.iteration % self.every and trainer.iteration != trainer.iterations:
            return
        now = time.perf_counter()
        self.writer.add_scalar("train/loss", loss, trainer.iteration)
        self.writer.add_scalar("train/lr", trainer.optimizer.param_groups[0]["lr"], trainer.iteration)
        self.writer.add_scalar(
            "train/it_per_s", self.window_iters / max(now - self.window_start, 1e-9), trainer.iteration
        )
        for k, v in logs.items():
            self.writer.add_scalar(f"train/{k}", v, trainer.iteration)
        self.window_start, self.window_iters = now, 0

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        self.writer.close()


class Progress(Callback):
    """A progress bar over the iterations, with the loss every `every` of them."""

    def __init__(self, every: int) -> None:
        self.every, self.bar = int(every), None

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.iterations, initial=trainer.iteration, desc="train", mininterval=1.0)

    def on_iteration_end(self, trainer: Trainer, loss: float, logs: dict[str, float]) -> None:
        self.bar.update(1)
        if trainer.iteration % self.every == 0 or trainer.iteration == trainer.iterations:
            self.bar.set_postfix(loss=f"{loss:.4g}")

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        self.bar.close()


class Validation(Callback):
    """The task's headline metric (`Task.error_metric`) on the fixed val split (never a test split)
    every `every` iterations, of the EMA weights when there are any (those are what is evaluated)."""

    def __init__(self, every: int, board: TensorBoard) -> None:
        self.every, self.board = int(every), board

    def on_iteration_end(self, trainer: Trainer, loss: float, logs: dict[str, float]) -> None:
        if trainer.iteration % self.every == 0:
            self.board.writer.add_scalar("val/metric", trainer.validate(), trainer.iteration)


class LearningCheck(Callback):
    """Says once, `at` iterations into a fresh training, when the loss has not moved: the median loss
    of the last `window` iterations is not below the first `window`'s by more than `tolerance`
    (relative) and more than the batches' own noise (two robust standard errors). A model
    that cannot learn (a descent whose steps overshoot the answer's scale or land on the boundary of
    a projection, where no gradient flows back; a learning rate far off) otherwise trains to its end
    in silence. The note goes above the progress bar and into train_summary.json ("notes")."""

    def __init__(self, at: int, window: int = 20, tolerance: float = 0.02) -> None:
        self.at, self.window, self.tolerance = int(at), max(1, min(int(window), int(at) // 4)), float(tolerance)
        self.first: list[float] = []
        self.recent: list[float] = []
        self.begin = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self.begin = trainer.iteration  # a resumed run was checked, or is past the point, already

    def on_iteration_end(self, trainer: Trainer, loss: float, logs: dict[str, float]) -> None:
        if self.begin > 0 or trainer.iteration > self.at:
            return
        if len(self.first) < self.window:
            self.first.append(loss)
        self.recent = [*self.recent[-(self.window - 1) :], loss] if self.window > 1 else [loss]
        if trainer.iteration == self.at:
            note = not_learning(trainer, self.first, self.recent, self.tolerance)
            if note is not None:
                trainer.notes.append(note)
                from tqdm.auto import tqdm

                tqdm.write(f"irem-train: {note}", file=sys.stderr)


def not_learning(trainer: Trainer, first: list[float], recent: list[float], tolerance: float) -> str | None:
    """The note LearningCheck gives, or None when the loss has moved."""
    a, b = torch.tensor(first, dtype=torch.float64), torch.tensor(recent, dtype=torch.float64)
    start, now = float(a.median()), float(b.median())
    # the batches' own noise, robustly (a median absolute deviation: one early spike must not hide a drop)
    spread = float(torch.cat([a - a.median(), b - b.median()]).abs().median()) * 1.4826
    noise = 2 * spread / len(first) ** 0.5
    if start - now > max(tolerance * abs(start), noise):  # a drop beyond 2% and beyond the batches' noise
        return None
    grads = [p.grad.detach().norm() for p in trainer.model.parameters() if p.grad is not None]
    norm = float(torch.stack(grads).norm()) if grads else 0.0
    solver = getattr(trainer.model, "solver", None)
    step = getattr(solver, "step_size", None)
    if solver is not None:
        shown = "learned" if step is None else f"{float(step.detach().mean()):g}"
        advice = (
            f"an energy model whose descent steps overshoot the answer's scale, or land on the boundary of the "
            f"answer's projection where no gradient flows back, learns nothing: try a smaller solver.step_size "
            f"(now {shown}), solver=gd_normalized (each step moves the answer a set distance), for rows on a simplex "
            "solver=gd_mirror solver.transforms.mirror.over=probabilities, or another trainer.lr (now "
            f"{trainer.lr:g}); baseline=feedforward shows whether the task can be learned at all"
        )
    else:
        advice = f"try another trainer.lr (now {trainer.lr:g}) or a larger model"
    return (
        f"the training loss has not moved in {trainer.iteration} iterations ({start:.4g} at the start, {now:.4g} now; "
        f"gradient norm {norm:.3g}), so the model is not learning. {advice[0].upper()}{advice[1:]}. "
        "(trainer.learning_check=0 turns this check off.)"
    )


class Summary(Callback):
    """train_summary.json: iterations, seconds, final loss, processes. A rerun of a finished run
    trains nothing and leaves its summary as that run wrote it."""

    def on_fit_end(self, trainer: Trainer, completed: bool) -> None:
        path = trainer.out_dir / "train_summary.json"
        if completed and (trainer.iteration > trainer.start or not trainer.resume or not path.exists()):
            path.write_text(json.dumps(trainer.summary(), indent=2, allow_nan=False))


def validate(trainer: Trainer) -> float:
    """The val split's headline metric for `trainer`'s model at its trained budget (see Validation)."""
    problem = trainer.task.split("val").to(trainer.device)
    g = eval_generator(trainer.seed, "val")
    model, budget, ema = trainer.model, trainer.model.default_budget, trainer.ema
    model.eval()
    try:
        with ema.swapped_in(model) if ema is not None else nullcontext():
            preds = predict_constrained(model, trainer.task, problem, [budget], g)
    finally:
        model.train()
    metrics = trainer.task.metrics(problem, preds.answers[str(budget)])
    return float(metrics[trainer.task.error_metric].mean())


def summary_of(trainer: Trainer) -> dict[str, Any]:
    return {
        "iterations": trainer.iteration,
        "train_seconds": trainer.train_seconds,
        "final_loss": finite_or_none(trainer.last_loss),  # JSON has no NaN: null when no loss is known
        "processes": trainer.world_size,
        "notes": list(trainer.notes),
    }


def outcome_of(trainer: Trainer) -> str:
    """What this invocation's fit did, in one line for the command to print: a rerun of a finished
    run says it trained nothing (not the earlier run's "trained N iterations in Xs" as if it were
    new), a resume says where it began, and a stop at `time_limit` says so, since the limit counts
    the training time of every invocation of the run (TrainerConfig.time_limit)."""
    loss = f"{trainer.last_loss:.4g}" if math.isfinite(trainer.last_loss) else "unknown"
    done, seconds, limit = (
        trainer.iteration - trainer.start,
        trainer.train_seconds - trainer.start_seconds,
        trainer.settings.time_limit,
    )
    out_of_time = limit is not None and trainer.train_seconds >= limit and trainer.iteration < trainer.iterations
    in_all = f"{trainer.iteration} iterations in {trainer.train_seconds:.1f}s, final loss {loss}"
    if trainer.start > 0 and done == 0:
        if out_of_time:
            return (
                f"resumed a run whose trainer.time_limit={limit:g}s is spent (it trained {in_all}): evaluating "
                f"only. The limit counts the training time of every invocation of a run; give a larger "
                f"trainer.time_limit to train on."
            )
        return f"resumed a finished run: evaluating only (it trained {in_all})"
    line = f"trained {done} iterations in {seconds:.1f}s"
    if trainer.start > 0:
        line = f"resumed at iteration {trainer.start}: {line} ({in_all} in all)"
    else:
        line += f", final loss {loss}"
    if out_of_time:
        line += f"; stopped by trainer.time_limit={limit:g}s (the training time of all invocations of the run)"
    return line
