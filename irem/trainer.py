"""The training loop, generic over any `Predictor` and `Task`.

Seeded from one generator that also draws the data, so a checkpoint (model, optimiser, replay
buffer, generator state) resumes a run exactly. Logs scalars to TensorBoard under `/`-namespaced
tags, shows a progress bar with the loss, and checkpoints atomically every `checkpoint_every`
iterations and on interruption.

Optimiser: Adam or AdamW, a linear warm-up and a constant or cosine learning rate, computed from
the iteration count alone (no scheduler state to checkpoint, so resumption stays exact), with
per-group base rates from `Predictor.param_groups` (an energy model's step size has its own).

EMA: with `ema_decay` set, an exponential moving average of the weights (irem/ema.py) is updated
every `ema_every` optimizer steps, checkpointed under "ema" and evaluated in place of the trained
weights (validation here, irem.build.load_run for every command that loads a run).

Scale-out: started under `torchrun` (WORLD_SIZE > 1) the trainer joins the process group (gloo on
CPU, NCCL on GPUs) and wraps the model in DistributedDataParallel; nothing else changes. Each
process draws its own batches of `batch_size` (the global batch is world size x batch_size) from
its own generator; rank 0 alone logs and writes checkpoints, which hold every rank's generator so
a resumed run continues exactly. Ranks agree each iteration on whether to stop (time limit,
interruption), so none waits forever on another.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from irem.checkpoint import (
    check_finite_weights,
    finite_or_none,
    load,
    non_finite_tensors,
    recover,
    remove_stale_temps,
    run_checkpoint,
    save_atomic,
)
from irem.config import TrainerConfig
from irem.ema import WeightEMA
from irem.errors import SettingError, unknown_key_message
from irem.evaluation import eval_generator
from irem.predictor import Predictor
from irem.run_lock import run_lock
from irem.schedules import Schedule, warmup_then
from irem.task import Task

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
LR_SCHEDULES = ("constant", "cosine")
RANK_SEED_STRIDE = 1_000_003  # rank r draws from seed + r * stride; rank 0 is the one-process run


DEVICE_CHOICES = "cpu, cuda, cuda:<index>, auto (cuda when available, else cpu)"


def resolve_device(name: str) -> torch.device:
    """The torch device `device=` names, refused with the choices when this machine lacks it: a
    CUDA device asked for without CUDA used to fail with a bare AssertionError inside torch."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise SettingError(f"device={name} is not a torch device. Valid choices: {DEVICE_CHOICES}.") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError(
                f"device={name} but torch.cuda.is_available() is False (no CUDA GPU or a CPU-only torch); "
                "use device=cpu or device=auto."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingError(
                f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; use one of those, device=cuda or device=auto."
            )
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun process
    return device


def distributed_world(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def lr_factor(
    iteration: int,
    iterations: int,
    warmup: int = 0,
    schedule: str = "constant",
    min_fraction: float = 0.1,
    time_fraction: float = 0.0,
) -> float:
    """The learning-rate multiplier for the step that makes iteration `iteration` + 1: a linear warm-up,
    then `schedule` down to `min_fraction`, its progress the larger of the iterations' and the
    wall-clock's (irem/schedules.py)."""
    return warmup_then(Schedule(schedule, min_fraction), iteration, iterations, warmup, time_fraction)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM after checkpointing a whole iteration; `signum` says
    which, so a command exits with that signal's status (130, 143) rather than a traceback."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)


class TrainingDiverged(FloatingPointError):
    """The loss turned non-finite, lost its gradient (every instance diverged) or exceeded
    trainer.max_loss: training stops rather than checkpoint what follows. The message names the
    last good checkpoint (or says there is none) and the remedy."""


@contextmanager
def deferred_interrupt():
    """Turn Ctrl-C (or SIGTERM, as a cluster sends on preemption) into a flag the loop reads
    between iterations, with the signal that set it.

    An interrupt in the middle of an iteration would checkpoint a generator and replay buffer
    that have moved on while the weights have not, and the resumed run would differ; one during
    the save would abort it. So further signals only say that the run is stopping: a run stopped
    without its checkpoint takes SIGKILL (the previous checkpoint is kept).
    """
    flag: dict[str, Any] = {"set": False, "signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag["set"]:
            print(
                f"\nAlready stopping: finishing this iteration and saving its checkpoint. To stop without "
                f"saving, kill -9 {os.getpid()} (the previous checkpoint is kept).",
                file=sys.stderr,
                flush=True,
            )
            return
        flag["set"], flag["signum"] = True, signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class TrainingLoss(torch.nn.Module):
    """A predictor's training loss as a module's forward, the call DistributedDataParallel wraps
    (DDP synchronises the gradients of what its module's forward computed); predictors keep their
    own `forward` for whatever their network computes."""

    def __init__(self, model: Predictor) -> None:
        super().__init__()
        self.model = model

    def forward(self, task: Task, problem: Any, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_loss(task, problem, generator)


def trainer_settings(settings: dict[str, Any]) -> TrainerConfig:
    """`settings` as a TrainerConfig, whose fields hold every default (irem/config.py): the same
    defaults whether a run starts from irem-train's config or from library code. An unknown key
    is refused with the valid ones, as a misspelt `trainer.` override is."""
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
        s = trainer_settings(settings)  # TrainerConfig refuses values out of range (irem/config.py)
        if s.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer '{s.optimizer}'. Valid choices: {', '.join(OPTIMIZERS)}.")
        if s.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Unknown lr_schedule '{s.lr_schedule}'. Valid choices: {', '.join(LR_SCHEDULES)}.")
        self.task, self.model = task, model
        self.warmup, self.lr_schedule, self.min_lr_fraction = int(s.warmup), s.lr_schedule, float(s.min_lr_fraction)
        self.out_dir = Path(out_dir)
        self.iterations, self.batch_size = int(s.iterations), int(s.batch_size)
        self.grad_clip = s.grad_clip
        self.seed = int(seed)
        self.log_every, self.checkpoint_every, self.val_every = (
            int(s.log_every),
            int(s.checkpoint_every),
            int(s.val_every),
        )
        self.time_limit = s.time_limit
        self.device = resolve_device(device)
        self.progress = s.progress
        self.lr, self.max_loss = float(s.lr), s.max_loss
        self.ema_decay, self.ema_every, self.ema_warmup = s.ema_decay, int(s.ema_every), bool(s.ema_warmup)
        self.ema: WeightEMA | None = None  # made from the weights the first iteration starts from
        # plain containers: a checkpoint holds nothing the safe loader (weights_only) refuses
        self.config = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config or {}
        self.model.to(self.device)
        groups = [g for g in self.model.param_groups(s.lr) if g["params"]]
        if not groups:
            raise ValueError(f"Trainer: {type(model).__name__} has no trainable parameters.")
        self.optimizer = OPTIMIZERS[s.optimizer](groups, lr=s.lr, weight_decay=s.weight_decay)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.rank, self.world_size = distributed_world(self.device)
        self.train_module: torch.nn.Module = TrainingLoss(self.model)
        if self.world_size > 1:
            self.train_module = DistributedDataParallel(
                self.train_module, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            self.progress = self.progress and self.rank == 0
        self.generator = torch.Generator().manual_seed(self.seed + RANK_SEED_STRIDE * self.rank)
        self.iteration = 0
        self.train_seconds = 0.0
        self.last_loss = math.nan
        self.saved_iteration: int | None = None  # of the checkpoint this run wrote or resumed, if any

    @property
    def checkpoint_path(self) -> Path:
        return run_checkpoint(self.out_dir)

    def state(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "loss": self.last_loss,
            "config": self.config,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.world_size > 1:  # a collective: every rank calls state() at the same iteration
            generators: list[Any] = [None] * self.world_size
            dist.all_gather_object(generators, self.generator.get_state())
            state["rank_generators"] = generators
        return state

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error that stops a diverged run: what happened, the checkpoint it can go back to."""
        if self.saved_iteration is not None and self.checkpoint_path.exists():
            good = f"The last good checkpoint is {self.checkpoint_path} (iteration {self.saved_iteration}), kept."
        else:
            good = "No checkpoint was saved yet, so there is none to go back to."
        return TrainingDiverged(
            f"Training stopped at iteration {self.iteration}: {what}. {good} Lower trainer.lr (now {self.lr:g}) "
            "or solver.step_size (the energy's descent step), or add trainer.grad_clip, and start over with "
            "resume=false (resuming the same settings diverges the same way)."
        )

    def save(self) -> Path:
        state = self.state()
        bad = non_finite_tensors(
            {"model": state["model"], "optimizer": state["optimizer"]["state"], "ema": state.get("ema", {})}
        )
        if bad:  # never write a diverged state over the last good one
            shown = ", ".join(k.rstrip(".") for k in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise self._diverged(f"the weights or optimizer state hold NaN or inf ({shown})")
        if self.rank == 0:
            save_atomic(state, self.checkpoint_path, keep_previous=True)
        self.saved_iteration = self.iteration
        if self.world_size > 1:
            dist.barrier()  # no rank reads or resumes a checkpoint rank 0 is still writing
        return self.checkpoint_path

    def _save_once(self) -> None:
        """Checkpoint the loop's current iteration unless that iteration is saved already: a second
        write of the same state would make previous.pt a copy of last.pt, not the checkpoint before."""
        if self.saved_iteration != self.iteration or not self.checkpoint_path.exists():
            self.save()

    def restore(self, path: str | Path) -> None:
        state = load(path)
        check_finite_weights(state, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema = None
        if self.ema_decay is not None and "ema" in state:
            self.ema = WeightEMA(self.model, self.ema_decay, self.ema_warmup)
            self.ema.load_state_dict(state["ema"])
        generators = state.get("rank_generators")
        if self.world_size > 1 or generators is not None:
            if generators is None or len(generators) != self.world_size:
                raise ValueError(
                    f"{path} was written by {1 if generators is None else len(generators)} training "
                    f"process(es); resume it with the same number (this run has {self.world_size}), "
                    "or start a new run."
                )
            self.generator.set_state(generators[self.rank])
        else:
            self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration = int(state["iteration"])
        self.train_seconds = float(state["train_seconds"])
        self.last_loss = float(state.get("loss", math.nan))  # checkpoints before it kept no loss
        self.saved_iteration = self.iteration

    def _set_lr(self) -> None:
        time_fraction = self.train_seconds / self.time_limit if self.time_limit else 0.0
        factor = lr_factor(
            self.iteration, self.iterations, self.warmup, self.lr_schedule, self.min_lr_fraction, time_fraction
        )
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def validate(self) -> float:
        """The task's headline metric (`Task.error_metric`) on the fixed `val` split (never the
        test splits), averaged over instances; of the EMA weights when there are any (those are
        what is evaluated), with the trained weights put back exactly afterwards."""
        problem = self.task.split("val").to(self.device)
        g = eval_generator(self.seed, "val")
        self.model.eval()
        budget = self.model.default_budget
        try:
            if self.ema is None:
                preds = self.model.predict(self.task, problem, [budget], g)
            else:
                with self.ema.swapped_in(self.model):
                    preds = self.model.predict(self.task, problem, [budget], g)
        finally:
            self.model.train()
        metrics = self.task.metrics(problem, preds.answers[str(budget)])
        return float(metrics[self.task.error_metric].mean())

    def _step(self) -> tuple[float, dict[str, float]]:
        t0 = time.perf_counter()
        problem = self.task.sample(self.batch_size, self.generator).to(self.device)
        self._set_lr()
        loss, logs = self.train_module(self.task, problem, self.generator)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise self._diverged(f"the training loss is {value}")
        if not loss.requires_grad:
            raise self._diverged(
                f"the training loss ({value:g}) has no gradient: every instance of the batch diverged, so "
                "nothing is left to learn from"
            )
        if self.max_loss is not None and value > self.max_loss:
            raise self._diverged(
                f"the training loss {value:.4g} exceeds trainer.max_loss={self.max_loss:g}, so the run is "
                "exploding rather than learning (raise trainer.max_loss, or null, if such losses are expected)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.iteration += 1
        if self.ema is not None and self.iteration % self.ema_every == 0:
            self.ema.update(self.model, self.iteration // self.ema_every)
        self.train_seconds += time.perf_counter() - t0
        self.last_loss = value
        return value, logs

    def use_ema_weights(self) -> None:
        """Put the EMA weights into the model for good, for an evaluation after training (irem-train
        and irem-study's own training evaluate this model, as load_run gives it from the checkpoint);
        nothing without an EMA. The checkpoint keeps the trained weights."""
        if self.ema is not None:
            self.ema.copy_to(self.model)

    def _out_of_time(self) -> bool:
        """For comparisons at equal wall-clock: stop once `time_limit` seconds of training are spent."""
        return self.time_limit is not None and self.train_seconds >= self.time_limit

    def _should_stop(self, interrupted: bool) -> tuple[bool, bool]:
        """(out of time, interrupted), agreed by all ranks: one rank stopping alone would leave the
        others waiting in the next gradient all-reduce."""
        flags = (self._out_of_time(), interrupted)
        if self.world_size == 1:
            return flags
        both = torch.tensor([float(f) for f in flags])
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        return bool(both[0]), bool(both[1])

    def fit(self, resume: bool = True) -> dict[str, Any]:
        """Train to `iterations`, resuming this run's checkpoint when `resume`, with the run
        directory locked (rank 0) so no second training writes into it meanwhile."""
        if self.rank != 0:
            return self._fit(resume)
        with run_lock(self.out_dir):
            remove_stale_temps(self.checkpoint_path)  # left by a write killed mid-way; safe under the lock
            if resume:
                recover(self.checkpoint_path)  # a corrupted last.pt falls back to previous.pt, with a note
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict[str, Any]:
        if resume and self.checkpoint_path.exists():
            self.restore(self.checkpoint_path)
        if self.ema_decay is not None and self.ema is None:
            # from the weights training starts from (or, resuming a checkpoint kept without an
            # average, from the weights it resumes)
            self.ema = WeightEMA(self.model, self.ema_decay, self.ema_warmup)
        start = self.iteration
        summary_path = self.out_dir / "train_summary.json"
        writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.iteration) if self.rank == 0 else None
        bar = tqdm(
            total=self.iterations, initial=self.iteration, disable=not self.progress, desc="train", mininterval=1.0
        )
        self.model.train()
        window_start, window_iters = time.perf_counter(), 0
        with deferred_interrupt() as interrupted:
            try:
                while self.iteration < self.iterations:
                    out_of_time, stop = self._should_stop(interrupted["set"])
                    if stop:
                        self._save_once()  # between iterations: the state of a whole number of them
                        raise TrainingInterrupted(
                            f"Interrupted at iteration {self.iteration}; checkpoint saved to {self.checkpoint_path}.",
                            interrupted["signum"] or signal.SIGINT,
                        )
                    if out_of_time:
                        break
                    last_loss, logs = self._step()
                    window_iters += 1
                    bar.update(1)
                    log_now = self.iteration % self.log_every == 0 or self.iteration == self.iterations
                    if writer is not None and log_now:
                        now = time.perf_counter()
                        writer.add_scalar("train/loss", last_loss, self.iteration)
                        writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.iteration)
                        writer.add_scalar(
                            "train/it_per_s", window_iters / max(now - window_start, 1e-9), self.iteration
                        )
                        for k, v in logs.items():
                            writer.add_scalar(f"train/{k}", v, self.iteration)
                        window_start, window_iters = now, 0
                        bar.set_postfix(loss=f"{last_loss:.4g}")
                    if writer is not None and self.val_every and self.iteration % self.val_every == 0:
                        writer.add_scalar("val/metric", self.validate(), self.iteration)
                    if self.iteration % self.checkpoint_every == 0:
                        self.save()
                if self.iteration > start or not resume or not self.checkpoint_path.exists():
                    self._save_once()  # still under deferred_interrupt: a Ctrl-C now does not abort the write
            except TrainingInterrupted as stop:
                print(f"\n{stop}", flush=True)
                raise
            finally:
                bar.close()
                if writer is not None:
                    writer.close()
        summary = {
            "iterations": self.iteration,
            "train_seconds": self.train_seconds,
            "final_loss": finite_or_none(self.last_loss),  # JSON has no NaN: null when no loss is known
            "processes": self.world_size,
        }
        if self.rank == 0 and (self.iteration > start or not resume or not summary_path.exists()):
            # a rerun of a finished run trains nothing and leaves its summary as that run wrote it
            summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False))
        return summary
