"""An exponential moving average (EMA) of a model's weights, the copy IRED trains beside its model
and evaluates (Du et al. 2024: ema_pytorch, decay 0.995, updated every 10 optimizer steps).

The average is kept as a plain dict of tensors, keyed as the model's state_dict names them, so a
checkpoint stores it as tensors (the safe loader reads it with weights_only=True) and loading it
over the model's state_dict gives the averaged model with no second module to build. It covers
every entry of the state_dict that is a tensor: parameters and persistent buffers. Floating-point
ones are averaged; the others (counters, masks) are copied, since an average of them means
nothing. Non-persistent buffers are constants the model rebuilds, and extra state (the replay
buffer) is training data, not weights: neither is averaged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def tracked_tensors(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """(state_dict key, live tensor) of each parameter and persistent buffer, as `state_dict`
    names them, without building the state_dict (which would clone the replay buffer)."""
    for prefix, module in model.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for name, param in module._parameters.items():
            if param is not None:
                yield dot + name, param
        for name, buf in module._buffers.items():
            if buf is not None and name not in module._non_persistent_buffers_set:
                yield dot + name, buf


def warmed_decay(decay: float, update: int) -> float:
    """ema_pytorch's warm-up (inv_gamma 1, power 2/3): the decay of the `update`-th update (from 1)
    rises as 1 - (1 + u)^(-2/3) until it reaches `decay`, so the average forgets its random start
    within the first few hundred updates instead of over 1 / (1 - decay) of them."""
    return min(decay, 1.0 - (1.0 + update) ** (-2.0 / 3.0))


class WeightEMA:
    """ema = decay * ema + (1 - decay) * weight for floating-point weights at each `update`; the
    other tensors are copied. Starts as an exact copy of `model`'s weights. With `warmup`, the
    `update`-th update uses `warmed_decay`; the caller passes the update's number (the trainer
    derives it from the iteration), so a resumed run needs no count of its own."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"WeightEMA: decay must be in [0, 1), got {decay}.")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        with torch.no_grad():
            self.tensors: dict[str, Tensor] = {k: t.detach().clone() for k, t in tracked_tensors(model)}

    def _pairs(self, model: nn.Module) -> list[tuple[str, Tensor, Tensor]]:
        live = dict(tracked_tensors(model))
        if live.keys() != self.tensors.keys():
            missing, extra = sorted(self.tensors.keys() - live.keys()), sorted(live.keys() - self.tensors.keys())
            raise ValueError(f"WeightEMA: the model's weights changed names (missing {missing}, new {extra}).")
        return [(k, self.tensors[k], live[k]) for k in self.tensors]

    @torch.no_grad()
    def update(self, model: nn.Module, number: int = 1) -> None:
        """The `number`-th update (from 1; read only with `warmup`)."""
        decay = warmed_decay(self.decay, number) if self.warmup else self.decay
        pairs = self._pairs(model)
        floats = [(e, w) for _, e, w in pairs if e.is_floating_point()]
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [w.detach() for _, w in floats], 1.0 - decay)
        for _, e, w in pairs:
            if not e.is_floating_point():
                e.copy_(w)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged tensors (plain tensors: what a checkpoint's "ema" holds)."""
        return self.tensors

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a checkpoint's averages exactly (same keys, shapes and dtypes required)."""
        if state.keys() != self.tensors.keys():
            missing, extra = sorted(self.tensors.keys() - state.keys()), sorted(state.keys() - self.tensors.keys())
            raise ValueError(f"The checkpoint's EMA does not match this model: missing {missing}, unexpected {extra}.")
        for k, t in self.tensors.items():
            if state[k].shape != t.shape or state[k].dtype != t.dtype:
                raise ValueError(
                    f"The checkpoint's EMA of {k} is {state[k].dtype} {tuple(state[k].shape)}, "
                    f"the model's {t.dtype} {tuple(t.shape)}."
                )
            t.copy_(state[k])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite `model`'s weights with the averages (what is evaluated after training)."""
        for _, e, w in self._pairs(model):
            w.copy_(e)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """`model` holds the averages inside the block and its own weights, bit for bit, after it."""
        with torch.no_grad():
            raw = {k: w.detach().clone() for k, _, w in self._pairs(model)}
            self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, _, w in self._pairs(model):
                    w.copy_(raw[k])
