"""Descent solvers over learned energies."""

from irem.solvers.gradient_descent import GradientDescent

__all__ = ["GradientDescent"]
