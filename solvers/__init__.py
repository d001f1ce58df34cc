"""Descent solvers over learned energies."""

from solvers.gradient_descent import GradientDescent

__all__ = ["GradientDescent"]
