"""The training loop, generic over any `Predictor` and `Task`, and the callbacks it calls.

One iteration: a batch from the task (drawn from the run's own generator, which also draws the
model's starts and noise, so a checkpoint resumes exactly), the learning rate for this step (a
warm-up and a schedule computed from the iteration count and the wall-clock spent, no scheduler
state to checkpoint), the predictor's training loss, the divergence check, backward, an optional
gradient clip, the optimizer's step. Everything else (checkpoints and resuming, the moving average
of the weights, signals, TensorBoard, the progress bar, validation, the summary) is a callback
(irem/callbacks.py); device and data parallelism are irem/device.py's.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from irem import callbacks as cb
from irem.checkpoint import run_checkpoint
from irem.device import all_agree, data_parallel, distributed_world, resolve_device
from irem.ema import WeightEMA
from irem.errors import TrainingInterrupted, unknown_key_message
from irem.predictor import Predictor
from irem.resolve import learning_rate_schedule, optimizer_class
from irem.run_lock import run_lock
from irem.schedules import warmup_then
from irem.seeds import training_generator
from irem.settings import TrainerConfig
from irem.task import Task


class TrainingLoss(torch.nn.Module):
    """A predictor's training loss as a module's forward, the call DistributedDataParallel wraps."""

    def __init__(self, model: Predictor) -> None:
        super().__init__()
        self.model = model

    def forward(self, task: Task, problem: Any, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_loss(task, problem, generator)


def plain(value: Any) -> Any:
    """A config as plain dicts, lists and scalars (an OmegaConf config, resolved, as library code may
    pass one), so a checkpoint holds only what the safe loader reads back."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    return value


def trainer_settings(settings: dict[str, Any]) -> TrainerConfig:
    """`settings` as a TrainerConfig, the one copy of every default; an unknown key is refused with
    the valid ones, as a misspelt `trainer.` override is."""
    valid = [f.name for f in fields(TrainerConfig)]
    for key in settings:
        if key not in valid:
            raise ValueError(unknown_key_message(f"trainer.{key}", key, valid) + " (for irem.trainer.Trainer)")
    return TrainerConfig(**settings)


class Trainer:
    """Trains `model` on `task` into `out_dir`; `settings` are the fields of TrainerConfig
    (iterations, batch_size, lr, ...), `config` the run's whole config, saved in each checkpoint."""

    def __init__(
        self,
        task: Task,
        model: Predictor,
        out_dir: str | Path,
        *,
        seed: int = 0,
        device: str = "cpu",
        config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        s = self.settings = trainer_settings(settings)  # TrainerConfig refuses values out of range
        self.task, self.model, self.out_dir, self.seed = task, model, Path(out_dir), int(seed)
        self.iterations, self.lr = int(s.iterations), float(s.lr)
        self.schedule = learning_rate_schedule(s.lr_schedule, s.min_lr_fraction)
        self.config = plain(config or {})
        self.device = resolve_device(device)
        self.model.to(self.device)
        groups = [g for g in self.model.param_groups(s.lr) if g["params"]]
        if not groups:
            raise ValueError(f"Trainer: {type(model).__name__} has no trainable parameters.")
        self.optimizer = optimizer_class(s.optimizer)(groups, lr=s.lr, weight_decay=s.weight_decay)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.rank, self.world_size = distributed_world(self.device)
        self.train_module = data_parallel(TrainingLoss(self.model), self.device, self.world_size)
        self.generator = training_generator(self.seed, self.rank)
        self.iteration, self.train_seconds, self.last_loss = 0, 0.0, math.nan
        self.start, self.start_seconds = 0, 0.0  # where this invocation's fit began (a resume: the checkpoint's)
        self.saved_iteration: int | None = None  # of the checkpoint this run wrote or resumed, if any
        self.notes: list[str] = []  # what the callbacks found worth saying (LearningCheck)
        self.ema_callback = cb.EMAWeights(s.ema_decay, s.ema_every, s.ema_warmup) if s.ema_decay is not None else None
        self.checkpoints, self.interrupts = cb.Checkpoints(s.checkpoint_every), cb.Interrupts()
        self.callbacks: list[cb.Callback] = [self.checkpoints, self.interrupts, cb.Divergence(s.max_loss)]
        self.callbacks += [self.ema_callback] if self.ema_callback else []
        if self.rank == 0:
            board = cb.TensorBoard(s.log_every)
            self.callbacks += [board, cb.Summary()] + ([cb.Validation(s.val_every, board)] if s.val_every else [])
            self.callbacks += [cb.LearningCheck(s.learning_check)] if s.learning_check else []
            self.callbacks += [cb.Progress(s.log_every)] if s.progress else []

    @property
    def checkpoint_path(self) -> Path:
        return run_checkpoint(self.out_dir)

    @property
    def ema(self) -> WeightEMA | None:
        """The moving average of the weights (None without trainer.ema_decay)."""
        return None if self.ema_callback is None else self.ema_callback.ema

    @ema.setter
    def ema(self, value: WeightEMA | None) -> None:
        if self.ema_callback is not None:
            self.ema_callback.ema = value

    def fit(self, resume: bool = True) -> dict[str, Any]:
        """Train to `iterations`, resuming this run's checkpoint when `resume`, with the run directory
        locked (rank 0) so no second training writes into it meanwhile."""
        if self.rank != 0:
            return self._fit(resume)
        with run_lock(self.out_dir):
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict[str, Any]:
        self.resume, self.start, completed, started = resume, self.iteration, False, []
        try:
            for c in self.callbacks:
                c.on_fit_start(self)
                started.append(c)
            self.start, self.start_seconds = self.iteration, self.train_seconds
            self.model.train()
            while self.iteration < self.iterations:
                out_of_time, interrupted = all_agree(
                    (
                        self.settings.time_limit is not None and self.train_seconds >= self.settings.time_limit,
                        self.interrupts.signum is not None,
                    ),
                    self.world_size,
                )
                if interrupted:  # between iterations: the state of a whole number of them
                    self.save_once()
                    raise TrainingInterrupted(
                        f"Interrupted at iteration {self.iteration}; checkpoint saved to {self.checkpoint_path}.",
                        self.interrupts.signum or signal.SIGINT,
                    )
                if out_of_time:
                    break
                loss, logs = self.step()
                for c in self.callbacks:
                    c.on_iteration_end(self, loss, logs)
            completed = True
        except TrainingInterrupted as stop:
            print(f"\n{stop}", flush=True)
            raise
        finally:  # the final checkpoint first, while signals still only set the flag
            for c in started:
                c.on_fit_end(self, completed)
        return self.summary()

    def step(self) -> tuple[float, dict[str, float]]:
        t0 = time.perf_counter()
        problem = self.task.sample(self.settings.batch_size, self.generator).to(self.device)
        fraction = self.train_seconds / self.settings.time_limit if self.settings.time_limit else 0.0
        factor = warmup_then(self.schedule, self.iteration, self.iterations, self.settings.warmup, fraction)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        loss, logs = self.train_module(self.task, problem, self.generator)
        value = float(loss.detach())
        for c in self.callbacks:
            c.on_loss(self, value, loss.requires_grad)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.iteration += 1
        for c in self.callbacks:
            c.after_optimizer_step(self)
        self.train_seconds += time.perf_counter() - t0
        self.last_loss = value
        return value, logs

    def save(self) -> Path:
        """Checkpoint the current iteration now (irem/callbacks.py: Checkpoints)."""
        return self.checkpoints.save(self)

    def save_once(self) -> None:
        self.checkpoints.save_once(self)

    def validate(self) -> float:
        return cb.validate(self)

    def summary(self) -> dict[str, Any]:
        return cb.summary_of(self)

    def outcome(self) -> str:
        return cb.outcome_of(self)

    def use_ema_weights(self) -> None:
        """Put the EMA weights into the model for good, for an evaluation after training (the
        checkpoint keeps the trained weights); nothing without an EMA."""
        if self.ema is not None:
            self.ema.copy_to(self.model)
