"""The `EnergyFunction` interface: a learned landscape E(x, y), one energy per instance.

The solver only ever calls `energy(x, y, step)`; `step` lets an energy give each descent step
its own landscape (EBT's step embedding) and is ignored by most energies.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


class EnergyFunction(nn.Module, abc.ABC):
    """E(x, y) -> Tensor[N]. Must be differentiable in y."""

    @abc.abstractmethod
    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        """One scalar per instance (per position for sequence energies)."""

    def prepare(self, x: Any) -> Any:
        """What depends on x alone, computed once per descent and passed to `energy` in place of x.

        The solver calls it once per solve; an energy that embeds its input (MLPEnergy's x half
        of the first layer, GNNEnergy's edge embedding) saves that work at every step. The
        default hands x back unchanged. A prepared input may offer `select_instances(keep)`, the same input
        for the instances `keep` only, so an adaptive solver whose batch shrinks indexes it
        instead of preparing again.
        """
        return x

    def forward(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        return self.energy(x, y, step)


@runtime_checkable
class SelectablePrepared(Protocol):
    """A prepared input that can pick its instances without being prepared again (see `prepare`)."""

    def select_instances(self, keep: Tensor) -> Any: ...


def select_prepared(energy: EnergyFunction, prepared: Any, x: Any, keep: Tensor) -> Any:
    """The prepared input of instances `keep`, whose own input is `x`: indexed when the prepared
    input can pick instances, else prepared again from `x` (without a graph: inference only)."""
    if isinstance(prepared, SelectablePrepared):
        return prepared.select_instances(keep)
    with torch.no_grad():
        return energy.prepare(x)


def describe(module: nn.Module) -> str:
    """A short name with the sizes a user set, for error messages."""
    sizes = {k: v for k, v in vars(module).items() if k.endswith("_dim") and isinstance(v, int)}
    inner = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return f"{type(module).__name__}({inner})"


def check_energy_fits(energy: EnergyFunction, task: Any, generator: torch.Generator | None = None) -> None:
    """Run the energy once on two instances of `task` and turn any failure into a clear error.

    Without this, a task/energy mismatch surfaces as a bare matmul shape error deep in a layer.
    """
    g = generator or torch.Generator().manual_seed(0)
    problem = task.generate(2, task.difficulty, g)
    y = task.init_answer(problem, g)
    where = f"energy {describe(energy)} does not fit task '{task.name}' (task dims {task.dims()})"
    try:
        with torch.no_grad():
            e = energy.energy(problem.x, y)
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(f"{where}: {str(err).rstrip('.')}. Build the energy with the task's dims.") from err
    if not isinstance(e, Tensor) or e.shape != (problem.num_instances,):
        got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
        raise ValueError(
            f"{where}: energy must return one value per instance, shape ({problem.num_instances},), got {got}."
        )
