"""The training loop, generic over any `Predictor` and `Task`.

Seeded from one generator that also draws the data, so a checkpoint (model, optimiser, replay
buffer, generator state) resumes a run exactly. Logs scalars to TensorBoard under `/`-namespaced
tags, shows a progress bar with the loss, and checkpoints atomically every `checkpoint_every`
iterations and on interruption.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from irem.checkpoint import load, save_atomic
from irem.evaluation import eval_generator
from irem.predictor import Predictor
from irem.task import Task

CHECKPOINT = "last.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextmanager
def deferred_interrupt():
    """Turn the first Ctrl-C (or SIGTERM, as a cluster sends on preemption) into a flag the
    loop reads between iterations.

    An interrupt in the middle of an iteration would checkpoint a generator and replay buffer
    that have moved on while the weights have not, and the resumed run would differ. A second
    Ctrl-C interrupts at once, as usual.
    """
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    def __init__(
        self,
        task: Task,
        model: Predictor,
        out_dir: str | Path,
        iterations: int = 1000,
        batch_size: int = 512,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        grad_clip: float | None = None,
        seed: int = 0,
        log_every: int = 25,
        checkpoint_every: int = 250,
        val_every: int = 0,
        time_limit: float | None = None,
        device: str = "cpu",
        progress: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        if iterations < 0 or batch_size < 1 or lr <= 0:
            raise ValueError(
                f"Trainer: need iterations >= 0, batch_size >= 1, lr > 0; got {iterations}, {batch_size}, {lr}."
            )
        self.task, self.model = task, model
        self.out_dir = Path(out_dir)
        self.iterations, self.batch_size = int(iterations), int(batch_size)
        self.grad_clip = grad_clip
        self.seed = int(seed)
        self.log_every, self.checkpoint_every, self.val_every = int(log_every), int(checkpoint_every), int(val_every)
        self.time_limit = time_limit
        self.device = resolve_device(device)
        self.progress = progress
        self.config = config or {}
        self.model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"Trainer: {type(model).__name__} has no trainable parameters.")
        self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.iteration = 0
        self.train_seconds = 0.0

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / CHECKPOINT

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "config": self.config,
        }

    def save(self) -> Path:
        return save_atomic(self.state(), self.checkpoint_path)

    def restore(self, path: str | Path) -> None:
        state = load(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration = int(state["iteration"])
        self.train_seconds = float(state["train_seconds"])

    def validate(self) -> float:
        """Mean loss on the fixed `val` split (never the test splits)."""
        problem = self.task.split("val").to(self.device)
        g = eval_generator(self.seed, "val")
        self.model.eval()
        budget = self.model.default_budget
        preds = self.model.predict(self.task, problem, [budget], g)
        self.model.train()
        metrics = self.task.metrics(problem, preds.answers[str(budget)])
        return float(next(iter(metrics.values())).mean())

    def _step(self) -> tuple[float, dict[str, float]]:
        t0 = time.perf_counter()
        problem = self.task.sample(self.batch_size, self.generator).to(self.device)
        loss, logs = self.model.training_loss(self.task, problem, self.generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Non-finite training loss at iteration {self.iteration}; the last good checkpoint is "
                f"{self.checkpoint_path}. Lower the learning rate or the solver's step size."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.train_seconds += time.perf_counter() - t0
        self.iteration += 1
        return float(loss.detach()), logs

    def _out_of_time(self) -> bool:
        """For comparisons at equal wall-clock: stop once `time_limit` seconds of training are spent."""
        return self.time_limit is not None and self.train_seconds >= self.time_limit

    def fit(self, resume: bool = True) -> dict[str, float]:
        if resume and self.checkpoint_path.exists():
            self.restore(self.checkpoint_path)
        writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.iteration)
        bar = tqdm(
            total=self.iterations, initial=self.iteration, disable=not self.progress, desc="train", mininterval=1.0
        )
        self.model.train()
        last_loss = math.nan
        window_start, window_iters = time.perf_counter(), 0
        with deferred_interrupt() as interrupted:
            try:
                while self.iteration < self.iterations and not self._out_of_time():
                    if interrupted["set"]:
                        raise KeyboardInterrupt
                    last_loss, logs = self._step()
                    window_iters += 1
                    bar.update(1)
                    if self.iteration % self.log_every == 0 or self.iteration == self.iterations:
                        now = time.perf_counter()
                        writer.add_scalar("train/loss", last_loss, self.iteration)
                        writer.add_scalar(
                            "train/it_per_s", window_iters / max(now - window_start, 1e-9), self.iteration
                        )
                        for k, v in logs.items():
                            writer.add_scalar(f"train/{k}", v, self.iteration)
                        window_start, window_iters = now, 0
                        bar.set_postfix(loss=f"{last_loss:.4g}")
                    if self.val_every and self.iteration % self.val_every == 0:
                        writer.add_scalar("val/metric", self.validate(), self.iteration)
                    if self.iteration % self.checkpoint_every == 0:
                        self.save()
            except KeyboardInterrupt:
                self.save()
                bar.close()
                writer.close()
                print(f"\nInterrupted at iteration {self.iteration}; checkpoint saved to {self.checkpoint_path}.")
                raise
        bar.close()
        writer.close()
        self.save()
        summary = {"iterations": self.iteration, "train_seconds": self.train_seconds, "final_loss": last_loss}
        (self.out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        return summary
