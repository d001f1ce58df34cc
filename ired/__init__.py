"""IRED (Du, Mao, Tenenbaum, ICML 2024): annealed energy landscapes, their objective and their solver.

A wing of its own: landscapes.py (the noise schedule, the landscape embedding energies take, a
landscape as an energy of the answer), objective.py (objective=ired: denoising and contrast) and
annealed.py (solver=annealed). The engine knows none of it; an energy opts in with `landscapes`.
"""
