"""9x9 Sudoku boards in whole batches: validation and metrics, a batched solver, a seeded generator
of puzzles with a unique solution, and symmetry augmentation.

A batch of boards is an integer tensor [N, 81]: cells in row-major order, digits 1..9, 0 for a blank
(int8 on the way out; any integer dtype on the way in). A puzzle, its solution and a model's
prediction share that layout. Nothing here knows about energies or the Task interface: this is the
data layer a Sudoku task stands on (files, the disk cache and the fixed splits are in
tasks/sudoku_data.py, pictures in tasks/sudoku_pictures.py).

The solver works on candidate bitmasks (bit d-1 set = digit d still possible) held as a numpy
array [81, A] for the A boards still searching: naked and hidden singles are propagated across
the whole batch at once, and a board that stalls branches on its cell with the fewest candidates,
each board keeping its own depth-first stack. `count_solutions_reference` is the plain recursive
backtracking solver the tests compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from irem.task import per_instance_level

# -- the grid's geometry -------------------------------------------------------------------------

CELLS = 81
DIGITS = 9
ALL = (1 << DIGITS) - 1  # every digit still possible
ROW_OF = np.arange(CELLS) // 9
COL_OF = np.arange(CELLS) % 9
BOX_OF = (ROW_OF // 3) * 3 + COL_OF // 3
# 27 units of 9 cells: the rows, then the columns, then the boxes
UNITS = np.concatenate(
    [
        np.arange(CELLS).reshape(9, 9),
        np.arange(CELLS).reshape(9, 9).T,
        np.stack([np.flatnonzero(b == BOX_OF) for b in range(9)]),
    ]
)
UNITS_OF = np.stack([ROW_OF, 9 + COL_OF, 18 + BOX_OF], axis=1)  # [81, 3]: the three units of each cell
POPCOUNT = np.array([bin(m).count("1") for m in range(1 << DIGITS)], dtype=np.int8)
LOWEST_DIGIT = np.array([(m & -m).bit_length() for m in range(1 << DIGITS)], dtype=np.int8)  # 1..9, 0 for 0
# NTH_BIT[m, k]: the k-th lowest set bit of m (0 past its popcount), to branch on a random candidate
NTH_BIT = np.zeros((1 << DIGITS, DIGITS), dtype=np.uint16)
for _m in range(1 << DIGITS):
    _bits = [1 << d for d in range(DIGITS) if _m >> d & 1]
    NTH_BIT[_m, : len(_bits)] = _bits
del _m, _bits

GENERATOR_VERSION = 1  # bump when generate() would give other boards for the same seed (the cache keys on it)


def _units_torch(device: torch.device) -> Tensor:
    return torch.as_tensor(UNITS, device=device)


def check_boards(boards: Tensor, what: str = "boards") -> Tensor:
    """`boards` as a long tensor [N, 81] with values in 0..9, or a ValueError saying what is wrong."""
    boards = torch.as_tensor(boards)
    if boards.dim() == 1 and boards.numel() == CELLS:
        boards = boards.unsqueeze(0)
    if boards.dim() != 2 or boards.shape[1] != CELLS:
        raise ValueError(f"{what}: expected a tensor [N, 81] (row-major cells), got shape {tuple(boards.shape)}.")
    if boards.dtype.is_floating_point or boards.dtype == torch.bool or boards.is_complex():
        raise ValueError(f"{what}: expected integer digits (0 = blank, 1..9), got dtype {boards.dtype}.")
    boards = boards.long()
    if boards.numel() and (int(boards.min()) < 0 or int(boards.max()) > 9):
        bad = torch.nonzero(((boards < 0) | (boards > 9)).any(1)).flatten().tolist()[:5]
        raise ValueError(f"{what}: digits must lie in 0..9 (0 = blank); board(s) {bad} hold other values.")
    return boards


# -- validation and metrics ----------------------------------------------------------------------


def _unit_digit_counts(boards: Tensor) -> Tensor:
    """[N, 27, 9]: how often each digit 1..9 occurs in each unit (blanks are not counted)."""
    onehot = torch.nn.functional.one_hot(boards, 10)[..., 1:]  # [N, 81, 9]
    return onehot[:, _units_torch(boards.device)].sum(2)


def violations(boards: Tensor) -> Tensor:
    """Per board: duplicate digits summed over the 27 units (a digit k times in a unit counts k - 1).

    Blanks are not violations, so a partial board is judged only on what it has filled in; a full
    board is a valid solution exactly when this is 0. Every unit is checked digit by digit: row
    sums alone would accept 1, 1, 3, ... with 2 missing (sum 45, the weakness of checks by sums).
    """
    boards = check_boards(boards)
    return (_unit_digit_counts(boards) - 1).clamp(min=0).sum((1, 2))


def is_valid_solution(boards: Tensor) -> Tensor:
    """Per board: is it a full grid whose every row, column and box holds 1..9 exactly once?"""
    boards = check_boards(boards)
    return (_unit_digit_counts(boards) == 1).all(2).all(1)


def keeps_givens(puzzles: Tensor, boards: Tensor) -> Tensor:
    """Per board: does it agree with every given (non-blank) cell of its puzzle?"""
    puzzles, boards = check_boards(puzzles, "puzzles"), check_boards(boards, "boards")
    if puzzles.shape != boards.shape:
        raise ValueError(f"{puzzles.shape[0]} puzzles for {boards.shape[0]} boards; give one board per puzzle.")
    return ((puzzles == 0) | (puzzles == boards)).all(1)


def board_metrics(puzzles: Tensor, predictions: Tensor, solutions: Tensor) -> dict[str, Tensor]:
    """Per-board metrics of predicted full boards, independent of any model.

    solved:        1.0 if the prediction is a valid full grid that keeps the givens (with a unique
                   puzzle this is the same as matching the solution, and it does not need it).
    cell_accuracy: fraction of the puzzle's blank cells where the prediction equals the solution.
    violations:    duplicate digits over the 27 units (see `violations`); blanks in a prediction
                   are not counted here but make `solved` 0.
    """
    puzzles = check_boards(puzzles, "puzzles")
    predictions = check_boards(predictions, "predictions")
    solutions = check_boards(solutions, "solutions")
    if not puzzles.shape == predictions.shape == solutions.shape:
        raise ValueError(
            f"board_metrics: puzzles {tuple(puzzles.shape)}, predictions {tuple(predictions.shape)} and solutions "
            f"{tuple(solutions.shape)} must have the same shape [N, 81]."
        )
    blank = puzzles == 0
    hits = (blank & (predictions == solutions)).sum(1).float()
    return {
        "solved": (is_valid_solution(predictions) & keeps_givens(puzzles, predictions)).float(),
        "cell_accuracy": hits / blank.sum(1).clamp(min=1).float(),
        "violations": violations(predictions).float(),
    }


# -- the batched solver --------------------------------------------------------------------------


@dataclass(frozen=True)
class Solutions:
    """What `solve` found per board.

    solution: [N, 81] int8, the first solution the search reached (all zeros if there is none).
    count:    [N] long, solutions found, capped at the `limit` asked for: 0 none, 1 unique (when
              limit >= 2), limit = at least that many.
    guesses:  [N] long, the search effort: how many times the search stalled after propagating
              naked and hidden singles and had to guess (branch on a cell's digit). 0 means
              propagation alone solved the puzzle and proved the count. Each guess is a node of the
              binary search tree (cell = d, or cell != d); counting to limit 2 explores the tree until
              a second solution appears or the tree is exhausted.
    """

    solution: Tensor
    count: Tensor
    guesses: Tensor


def _candidates(puzzles: np.ndarray) -> np.ndarray:
    """Initial candidates [81, N] uint16: one bit for a given, all nine for a blank."""
    p = puzzles.astype(np.int64)
    return np.where(p > 0, np.left_shift(1, np.maximum(p - 1, 0)), ALL).astype(np.uint16).T.copy()


def _propagate(cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass of naked and hidden singles over every board at once.

    Returns (new candidates, solved, contradiction); `solved` judges the candidates passed in (all
    cells single and no digit twice in a unit), `contradiction` the pass (a cell with no candidate,
    a digit with no place or two places forced in a unit, two equal digits fixed in a unit).
    """
    pop = POPCOUNT[cand]
    single = pop == 1
    fixed = np.where(single, cand, 0).astype(np.uint16)
    unit_fixed = fixed[UNITS]  # [27, 9, A]
    fixed_or = np.bitwise_or.reduce(unit_fixed, axis=1)  # [27, A]
    duplicate = (POPCOUNT[unit_fixed].sum(1, dtype=np.int16) != POPCOUNT[fixed_or]).any(0)
    solved = single.all(0) & ~duplicate
    # naked singles: a fixed digit leaves the other cells of its units
    taken = fixed_or[ROW_OF] | fixed_or[9 + COL_OF] | fixed_or[18 + BOX_OF]
    cand = np.where(single, cand, cand & ~taken)
    # hidden singles: a digit with one place left in a unit goes there
    unit_cand = cand[UNITS]
    once = np.zeros_like(fixed_or)
    twice = np.zeros_like(fixed_or)
    for j in range(9):
        twice |= once & unit_cand[:, j]
        once |= unit_cand[:, j]
    exactly_once = once & ~twice
    forced = cand & (exactly_once[ROW_OF] | exactly_once[9 + COL_OF] | exactly_once[18 + BOX_OF])
    contradiction = duplicate | (once != ALL).any(0) | (POPCOUNT[forced] > 1).any(0)
    cand = np.where(forced != 0, forced, cand)
    contradiction |= (cand == 0).any(0)
    return cand, solved, contradiction


def _search(cand: np.ndarray, limit: int, rng: np.random.Generator | None) -> tuple[np.ndarray, ...]:
    """Depth-first search on candidates [81, N] for every board at once; see `solve`.

    Each round every board still searching does one propagation pass and then, by its own state:
    records a solution (and backtracks if it needs more), backtracks from a contradiction, keeps
    propagating if the pass changed something, or guesses. A guess takes the cell with the fewest
    candidates (first such cell, or a random one with `rng`) and its lowest (or a random) digit d,
    continues with cell = d and pushes cell != d on the board's own stack. Finished boards leave
    the batch, so the rounds cost what the boards still searching cost.
    """
    n = cand.shape[1]
    count = np.zeros(n, dtype=np.int64)
    guesses = np.zeros(n, dtype=np.int64)
    solution = np.zeros((n, CELLS), dtype=np.int8)
    ids = np.arange(n)
    depth = np.zeros(n, dtype=np.int64)
    stack = np.zeros((n, 8, CELLS), dtype=np.uint16)  # [board, depth, cell], grows when full
    cand = cand.copy()
    while ids.size:
        new, solved, contradiction = _propagate(cand)
        changed = (new != cand).any(0)
        done = np.zeros(ids.size, dtype=bool)
        backtrack = contradiction & ~solved
        if solved.any():
            s = np.flatnonzero(solved)
            first = s[count[ids[s]] == 0]
            solution[ids[first]] = LOWEST_DIGIT[cand[:, first].T]
            count[ids[s]] += 1
            done[s] = count[ids[s]] >= limit
            backtrack |= solved & ~done
        stalled = ~(solved | contradiction | changed)
        cand = new
        if stalled.any():
            b = np.flatnonzero(stalled)
            pop = POPCOUNT[cand[:, b]].astype(np.int64)
            key = np.where(pop > 1, pop, 99)
            if rng is not None:
                key = key * 128 + rng.integers(0, 128, size=key.shape)
            cell = key.argmin(0)
            options = cand[cell, b]
            k = 0 if rng is None else rng.integers(0, POPCOUNT[options])
            bit = NTH_BIT[options, k]
            if int(depth[b].max()) >= stack.shape[1]:
                stack = np.concatenate([stack, np.zeros_like(stack)], axis=1)
            stack[b, depth[b]] = cand[:, b].T
            stack[b, depth[b], cell] = options & ~bit
            depth[b] += 1
            cand[cell, b] = bit
            guesses[ids[b]] += 1
        if backtrack.any():
            b = np.flatnonzero(backtrack)
            empty = depth[b] == 0
            done[b[empty]] = True
            b = b[~empty]
            depth[b] -= 1
            cand[:, b] = stack[b, depth[b]].T
        if done.any():
            keep = ~done
            cand, stack, depth, ids = cand[:, keep], stack[keep], depth[keep], ids[keep]
    return solution, count, guesses


def solve(puzzles: Tensor, limit: int = 2, generator: torch.Generator | None = None) -> Solutions:
    """Solve every puzzle [N, 81] at once, counting solutions up to `limit` (2 tells unique from not).

    With a `generator` the search guesses a random cell among those with the fewest candidates and
    a random digit of it (that is how `random_grids` fills empty boards); without one it is fully
    deterministic. Givens that contradict each other give count 0.
    """
    puzzles = check_boards(puzzles, "solve")
    if int(limit) < 1:
        raise ValueError(f"solve: limit must be >= 1 (the number of solutions to look for), got {limit}.")
    rng = None
    if generator is not None:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    solution, count, guesses = _search(_candidates(puzzles.cpu().numpy()), int(limit), rng)
    return Solutions(torch.from_numpy(solution), torch.from_numpy(count), torch.from_numpy(guesses))


def count_solutions_reference(puzzle: list[int], limit: int = 2) -> tuple[int, list[int] | None]:
    """The readable reference: plain recursive backtracking on one puzzle (a list of 81 ints).

    Keeps the digits used in each row, column and box as sets, fills the blank cell with the
    fewest legal digits, tries digits in increasing order and stops after `limit` solutions.
    Returns (solutions found, the first one or None). Slow, and only meant to check `solve`.
    """
    board = list(puzzle)
    units_of = UNITS_OF.tolist()
    used = [set() for _ in range(27)]  # the digits in each unit
    for c in range(CELLS):
        if board[c]:
            for u in units_of[c]:
                if board[c] in used[u]:
                    return 0, None  # two equal givens in a unit
                used[u].add(board[c])
    found: list[list[int]] = []

    def legal(c: int) -> set[int]:
        r, k, b = units_of[c]
        return set(range(1, 10)) - used[r] - used[k] - used[b]

    def backtrack() -> None:
        blanks = [c for c in range(CELLS) if board[c] == 0]
        if not blanks:
            found.append(list(board))
            return
        c = min(blanks, key=lambda c: len(legal(c)))
        for d in sorted(legal(c)):
            board[c] = d
            for u in units_of[c]:
                used[u].add(d)
            backtrack()
            for u in units_of[c]:
                used[u].discard(d)
            board[c] = 0
            if len(found) >= limit:
                return

    backtrack()
    return len(found), (found[0] if found else None)


# -- symmetry augmentation -----------------------------------------------------------------------


def _batched_perm(n: int, k: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """n independent uniform permutations of range(k), [n, k]."""
    return torch.rand(n, k, generator=generator).argsort(1).to(device)


def random_symmetries(n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """One random validity-preserving transform per board: (cells [n, 81], digits [n, 10]).

    The new board's cell i holds the old board's cell `cells[:, i]`, relabelled by `digits`
    (`digits[:, 0] = 0` keeps blanks blank). Each transform draws, uniformly and independently: a
    digit relabelling, an order of the three bands and of the rows within each band, the same for
    stacks and columns, and a transpose (probability 1/2). Every such map sends rows, columns and
    boxes to rows, columns and boxes, so valid solutions stay valid.
    """
    device = torch.device(device)
    if int(n) < 1:
        raise ValueError(f"random_symmetries: n must be >= 1, got {n}.")

    def lines() -> Tensor:  # [n, 9]: a band (stack) order and a row (column) order within each
        bands = _batched_perm(n, 3, generator, device)
        within = _batched_perm(n * 3, 3, generator, device).view(n, 3, 3)
        return (bands.unsqueeze(2) * 3 + within).view(n, 9)

    rows, cols = lines(), lines()
    cells = rows.unsqueeze(2) * 9 + cols.unsqueeze(1)  # [n, 9, 9]
    transpose = (torch.rand(n, generator=generator) < 0.5).to(device)
    cells = torch.where(transpose.view(n, 1, 1), cells.transpose(1, 2), cells).reshape(n, CELLS)
    digits = torch.cat(
        [torch.zeros(n, 1, dtype=torch.long, device=device), _batched_perm(n, 9, generator, device) + 1], 1
    )
    return cells, digits


def apply_symmetries(boards: Tensor, cells: Tensor, digits: Tensor) -> Tensor:
    """Apply per-board transforms from `random_symmetries` to boards [N, 81]; keeps the dtype."""
    out = check_boards(boards)
    out = torch.gather(digits, 1, torch.gather(out, 1, cells))
    return out.to(torch.as_tensor(boards).dtype)


def augment(puzzles: Tensor, solutions: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The same random transform on each (puzzle, solution) pair, a fresh one per pair, in torch."""
    if puzzles.shape != solutions.shape:
        raise ValueError(f"augment: puzzles {tuple(puzzles.shape)} and solutions {tuple(solutions.shape)} differ.")
    cells, digits = random_symmetries(puzzles.shape[0], generator, puzzles.device)
    return apply_symmetries(puzzles, cells, digits), apply_symmetries(solutions, cells, digits)


# -- generation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Boards:
    """A set of puzzles with their unique solutions.

    puzzles, solutions: [N, 81] int8. givens: [N] long, the non-blank cells of each puzzle.
    guesses: [N] long, the search effort of `solve(puzzles, limit=2)` on each puzzle (see
    `Solutions`); -1 where it was not measured (files read without measuring it).
    """

    puzzles: Tensor
    solutions: Tensor
    givens: Tensor
    guesses: Tensor

    def __len__(self) -> int:
        return self.puzzles.shape[0]

    def __getitem__(self, index: Tensor | slice | list[int]) -> Boards:
        return Boards(self.puzzles[index], self.solutions[index], self.givens[index], self.guesses[index])

    @staticmethod
    def cat(parts: list[Boards]) -> Boards:
        return Boards(
            *(torch.cat([getattr(p, f) for p in parts]) for f in ("puzzles", "solutions", "givens", "guesses"))
        )

    def to_dict(self) -> dict[str, Tensor]:
        return {"puzzles": self.puzzles, "solutions": self.solutions, "givens": self.givens, "guesses": self.guesses}


def random_grids(n: int, generator: torch.Generator) -> Tensor:
    """n random valid full grids [n, 81] int8.

    Randomised solving of empty boards (random cell among the most constrained, random digit),
    then a random symmetry on top. Shuffling one canonical grid by the symmetry group alone would
    only ever give the ~1.2e12 grids of that grid's class, a structure a model could learn; random
    solving reaches every grid, and the symmetry makes grids of one class equally likely.
    """
    if int(n) < 1:
        raise ValueError(f"random_grids: n must be >= 1, got {n}.")
    found = solve(torch.zeros(n, CELLS, dtype=torch.int8), limit=1, generator=generator)
    cells, digits = random_symmetries(n, generator)
    return apply_symmetries(found.solution, cells, digits)


def _targets(givens: int | Tensor, n: int) -> Tensor:
    """The givens asked of each board (the Sudoku task's difficulty: a scalar or one per board)."""
    level = per_instance_level(givens, n)
    targets = level.round().long()
    if bool((level != targets.float()).any()):
        raise ValueError(f"generate: givens must be whole numbers, got {level.tolist()[:8]}.")
    if bool((targets < 0).any() | (targets > CELLS).any()):
        raise ValueError("generate: givens must lie in 0..81 (0 or anything below 17 asks for the fewest reachable).")
    return targets.clone()


def generate(n: int, givens: int | Tensor, generator: torch.Generator) -> Boards:
    """n seeded puzzles with a unique solution, each with `givens` givens or as few as it can reach.

    `givens` is a scalar or one value per board: the difficulty knob (0 asks for minimal puzzles).
    Each board starts from a random full grid and visits its cells in a random order, blanking a
    cell when the puzzle stays unique, until it has its number of givens or every cell has been
    tried (a puzzle from which no given can be removed: the fewest this order reaches). Uniqueness
    is checked for all boards at once, one cell each per round: blanking cell c of value v keeps
    the puzzle unique exactly when the puzzle with c forced to differ from v has no solution.
    The same generator state gives the same boards.
    """
    targets = _targets(givens, n)
    grids = random_grids(n, generator)
    order = torch.rand(n, CELLS, generator=generator).argsort(1).numpy()
    puzzle = grids.numpy().copy()
    solution_bits = _candidates(grids.numpy())  # [81, n]
    count = np.full(n, CELLS)
    target = targets.numpy()
    for step in range(CELLS):
        b = np.flatnonzero(count > target)
        if b.size == 0:
            break
        cell = order[b, step]
        cand = _candidates(puzzle[b])
        cand[cell, np.arange(b.size)] = ALL & ~solution_bits[cell, b]
        _, other, _ = _search(cand, limit=1, rng=None)
        unique = other == 0
        puzzle[b[unique], cell[unique]] = 0
        count[b[unique]] -= 1
    puzzles = torch.from_numpy(puzzle)
    final = solve(puzzles, limit=2)
    if not (bool((final.count == 1).all()) and torch.equal(final.solution, grids)):
        raise RuntimeError("generate: a puzzle lost its unique solution; this is a bug in the generator.")
    return Boards(puzzles, grids, (puzzles > 0).sum(1), final.guesses)


def generate_band(n: int, low: int, high: int, generator: torch.Generator, max_rounds: int = 20) -> Boards:
    """n puzzles with a number of givens drawn uniformly in [low, high] per board.

    A board whose random removal order gets stuck above `high` (its minimal puzzle has more
    givens than the band allows) is replaced by a fresh one, up to `max_rounds` times; a band
    the generator cannot reach is an error rather than a silent shift of the band.
    """
    if not 17 <= int(low) <= int(high) <= CELLS:
        raise ValueError(f"generate_band: need 17 <= low <= high <= 81, got low={low}, high={high}.")
    parts: list[Boards] = []
    missing = int(n)
    for _ in range(max_rounds):
        boards = generate(missing, torch.randint(low, high + 1, (missing,), generator=generator), generator)
        kept = boards[boards.givens <= high]
        parts.append(kept)
        missing -= len(kept)
        if missing == 0:
            return Boards.cat(parts)
    raise RuntimeError(
        f"generate_band: after {max_rounds} rounds {missing} of {n} boards still stop above {high} givens; "
        f"the band [{low}, {high}] is too low for this generator: ask for more givens, or generate(n, 0) for minimal puzzles."
    )
