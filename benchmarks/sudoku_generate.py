"""Speed of the Sudoku board machinery (tasks/sudoku_boards.py) on one thread.

Times, each on a fresh seeded batch of `--n` boards: random full grids; `generate` at 36 givens, in
the SAT-Net band (30-45 drawn per board), in the harder band (24-29) and at the minimum (givens 0:
remove until no given can go); then `solve(limit=2)` on the minimal puzzles (a uniqueness proof per
puzzle). Prints the histogram of the givens the minimal puzzles reached and of the solver's guesses
on them. The machine may be shared: the 1-minute load average is printed with the results.

    python benchmarks/sudoku_generate.py            # ~15 s on one core
    python benchmarks/sudoku_generate.py --n 5000

The last line is key=value pairs: grids_per_s, puzzles_per_s_36, puzzles_per_s_30_45,
puzzles_per_s_24_29, puzzles_per_s_min, solves_per_s_min, mean_min_givens, min_min_givens,
max_min_givens, mean_guesses_min.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from irem.tasks.sudoku_boards import generate, generate_band, random_grids, solve


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generation and solving speed of Sudoku boards.")
    parser.add_argument("--n", type=int, default=1000, help="boards per timed batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def histogram(values: torch.Tensor) -> str:
    counts = torch.bincount(values)
    return "  ".join(f"{v}:{int(c)}" for v, c in enumerate(counts.tolist()) if c)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    n = args.n

    def g(offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(args.seed * 100 + offset)

    _, t_grids = timed(lambda: random_grids(n, g(0)))
    b36, t36 = timed(lambda: generate(n, 36, g(1)))
    band, t_band = timed(lambda: generate_band(n, 30, 45, g(2)))
    harder, t_harder = timed(lambda: generate_band(n, 24, 29, g(3)))
    minimal, t_min = timed(lambda: generate(n, 0, g(4)))
    found, t_solve = timed(lambda: solve(minimal.puzzles, limit=2))
    assert bool((found.count == 1).all()) and torch.equal(found.solution, minimal.solutions)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"sudoku_generate: n={n} per batch, threads={args.threads}, load={load:.2f}")
    print(f"  random full grids          {n / t_grids:9.0f} /s")
    print(f"  generate, 36 givens        {n / t36:9.0f} /s   mean guesses {b36.guesses.float().mean():.2f}")
    print(f"  generate, 30-45 givens     {n / t_band:9.0f} /s   mean guesses {band.guesses.float().mean():.2f}")
    print(f"  generate, 24-29 givens     {n / t_harder:9.0f} /s   mean guesses {harder.guesses.float().mean():.2f}")
    print(f"  generate, minimal          {n / t_min:9.0f} /s   mean guesses {minimal.guesses.float().mean():.2f}")
    print(f"  solve minimal (limit 2)    {n / t_solve:9.0f} /s")
    print(f"  givens of minimal puzzles  {histogram(minimal.givens)}")
    print(f"  guesses on minimal puzzles {histogram(minimal.guesses.clamp(max=20))}  (20 = 20 or more)")
    print(
        f"grids_per_s={n / t_grids:.0f} puzzles_per_s_36={n / t36:.0f} puzzles_per_s_30_45={n / t_band:.0f} "
        f"puzzles_per_s_24_29={n / t_harder:.0f} puzzles_per_s_min={n / t_min:.0f} solves_per_s_min={n / t_solve:.0f} "
        f"mean_min_givens={minimal.givens.float().mean():.2f} min_min_givens={int(minimal.givens.min())} "
        f"max_min_givens={int(minimal.givens.max())} mean_guesses_min={minimal.guesses.float().mean():.2f}"
    )


if __name__ == "__main__":
    main()
