"""Mazes on disk in the field's public layouts, read and written with errors that name the file and row.

- deep-thinking (easy-to-hard-data's make_mazes.py): a folder per size holding `inputs.npy`
  [N, 3, H, W] (open 1 1 1, wall 0, start 0 1 0, goal 1 0 0; H = W = 2 * size + 6, every maze unit a
  2 x 2 block inside a one-pixel wall border) and `solutions.npy` [N, H, W] (1 on the path's pixels).
- Maze-Hard (HRM / TRM, sapientinc/maze-30x30-hard-1k): a CSV with the header
  `source,question,answer,rating`, each grid row-major as one string over `# SGo` (wall, open, start,
  goal, and in the answer `o` on the path's open units); 30 x 30 units there, any square side here.

Both read into `maze_gen.Mazes` on the unit grid, which the task then draws in its own layout, and
both writers round-trip. A maze from a file need not be perfect (Maze-Hard's have loops): its target
is the file's path, and the task's check asks for a shortest path.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from irem.data_files import DataFileError, csv_rows, shown
from irem.tasks import maze_gen as gen

CHARSET = "# SGo"  # Maze-Hard: wall, open, start, goal, path
CODE_OF = {"#": gen.WALL, " ": gen.OPEN, "S": gen.START, "G": gen.GOAL}
CHAR_OF = {v: k for k, v in CODE_OF.items()}
HEADER = ("source", "question", "answer", "rating")


def load(path: str | Path, max_rows: int | None = None) -> gen.Mazes:
    """A deep-thinking folder (or its inputs.npy) or a Maze-Hard CSV, told apart by what `path` is."""
    path = Path(path).expanduser()
    if path.is_dir() or path.suffix == ".npy":
        return load_npy(path if path.is_dir() else path.parent, max_rows)
    if path.suffix == ".csv":
        return load_csv(path, max_rows)
    raise DataFileError(
        f"{path}: not a maze file this loader knows: give a deep-thinking folder (inputs.npy, solutions.npy) or a "
        "Maze-Hard .csv."
    )


# -- deep-thinking .npy ------------------------------------------------------------------------


def _check_codes(codes: Tensor, where: list[str]) -> None:
    """One start and one goal per maze; `where[i]` names maze i in a message."""
    for code, what in ((gen.START, "start"), (gen.GOAL, "goal")):
        count = (codes == code).flatten(1).sum(1)
        bad = (count != 1).nonzero(as_tuple=True)[0]
        if len(bad):
            i = int(bad[0])
            found = "no" if int(count[i]) == 0 else f"{int(count[i])}"
            raise DataFileError(f"{where[i]}: {found} {what} cell{'s' if int(count[i]) > 1 else ''}; a maze has one.")


def load_npy(folder: str | Path, max_rows: int | None = None) -> gen.Mazes:
    """deep-thinking's inputs.npy / solutions.npy in `folder` (rows: maze index in the arrays)."""
    folder = Path(folder)
    inputs_path, solutions_path = folder / "inputs.npy", folder / "solutions.npy"
    for p in (inputs_path, solutions_path):
        if not p.is_file():
            raise DataFileError(f"{p}: missing; a deep-thinking maze folder holds inputs.npy and solutions.npy.")
    inputs = np.load(inputs_path, mmap_mode="r", allow_pickle=False)
    solutions = np.load(solutions_path, mmap_mode="r", allow_pickle=False)
    if inputs.ndim != 4 or inputs.shape[1] != 3 or inputs.shape[2] != inputs.shape[3]:
        raise DataFileError(f"{inputs_path}: shape {inputs.shape}, expected [mazes, 3, side, side].")
    n, _, side, _ = inputs.shape
    size = (side - 6) // 2
    if side < 12 or (side - 6) % 2 or size % 2 == 0:
        raise DataFileError(
            f"{inputs_path}: side {side} is no deep-thinking maze size (2 * size + 6 with size odd: 24, 28, ..., 124)."
        )
    if solutions.shape != (n, side, side):
        raise DataFileError(f"{solutions_path}: shape {solutions.shape}, expected {(n, side, side)} to match inputs.")
    if max_rows is not None:
        n = min(n, int(max_rows))
    x = torch.from_numpy(np.array(inputs[:n], dtype=np.float32))
    path = torch.from_numpy(np.array(solutions[:n], dtype=np.float32))
    where = [f"{inputs_path} (maze {i})" for i in range(n)]
    colours = x.permute(0, 2, 3, 1)
    known = (colours[..., None, :] == gen.COLOURS).all(-1).any(-1)
    bad = (~known).flatten(1).any(1).nonzero(as_tuple=True)[0]
    if len(bad):
        i = int(bad[0])
        r, c = (~known[i]).nonzero()[0].tolist()
        raise DataFileError(
            f"{where[i]}: pixel ({r}, {c}) has colour {colours[i, r, c].tolist()}, not open (1,1,1), wall (0,0,0), "
            "start (0,1,0) or goal (1,0,0)."
        )
    if not ((path == 0) | (path == 1)).all():
        i = int(((path != 0) & (path != 1)).flatten(1).any(1).nonzero()[0])
        raise DataFileError(f"{solutions_path} (maze {i}): values other than 0 and 1 in the path mask.")
    for t, p, what in ((x.amax(1), inputs_path, "maze"), (path, solutions_path, "path")):
        drawn = gen.pixels_well_formed(t, "image")
        if not drawn.all():
            i = int((~drawn).nonzero()[0])
            raise DataFileError(
                f"{p} (maze {i}): the {what} is not drawn in 2 x 2 blocks inside a one-pixel wall border."
            )
    codes = gen.codes_of(x, "image")
    _check_codes(codes, where)
    on = gen.units_from_pixels(path, "image").bool()
    return gen.Mazes(codes, on, torch.full((n,), size, dtype=torch.long), on.flatten(1).sum(1) - 1)


def save_npy(folder: str | Path, mazes: gen.Mazes) -> None:
    """Write `mazes` (one size) as deep-thinking's inputs.npy and solutions.npy (float32) in `folder`."""
    if len(set(mazes.size.tolist())) != 1:
        raise ValueError("save_npy: deep-thinking keeps one size per folder; save each size on its own.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, target = gen.render(mazes, "image")
    for name, array in (("inputs.npy", x.numpy()), ("solutions.npy", target.float().numpy())):
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, array.astype(np.float32))
        os.replace(tmp, folder / name)


# -- Maze-Hard CSV -------------------------------------------------------------------------------


def _grid(path: Path, line: int, text: str, side: int, what: str, allowed: str) -> list[int]:
    if len(text) != side * side:
        raise DataFileError(
            f"{path}:{line}: the {what} has {len(text)} characters, expected {side * side} ({side} x {side})."
        )
    for i, ch in enumerate(text):
        if ch not in allowed:
            raise DataFileError(
                f"{path}:{line}: unknown character {shown(ch)} in the {what} at row {i // side + 1}, column "
                f"{i % side + 1}; a Maze-Hard grid holds only {allowed!r}."
            )
    return [ord(ch) for ch in text]


def load_csv(path: str | Path, max_rows: int | None = None) -> gen.Mazes:
    """Maze-Hard's CSV (rows: the file's lines); the side is read from the first grid (30 there)."""
    path = Path(path)
    rows = csv_rows(path, "Maze-Hard file")
    first = next(rows, None)
    if first is None:
        raise DataFileError(f"{path}: the file is empty; expected the header {','.join(HEADER)}.")
    header = [h.strip().lower() for h in first[1]]
    if "question" not in header or "answer" not in header:
        raise DataFileError(f"{path}:{first[0]}: the header {first[1]} has no question and answer columns.")
    qi, ai = header.index("question"), header.index("answer")
    lines, questions, answers = [], [], []
    side = None
    for line, row in rows:
        if max_rows is not None and len(lines) >= max_rows:
            break
        if len(row) <= max(qi, ai):
            raise DataFileError(f"{path}:{line}: {len(row)} field(s), expected the {len(header)} of the header.")
        if side is None:
            side = math.isqrt(len(row[qi]))
            if side * side != len(row[qi]) or side < 3:
                raise DataFileError(
                    f"{path}:{line}: the question has {len(row[qi])} characters, not a square grid (30 x 30 = 900)."
                )
        questions.append(_grid(path, line, row[qi], side, "question", CHARSET[:4]))
        answers.append(_grid(path, line, row[ai], side, "answer", CHARSET))
        lines.append(line)
    if not lines:
        raise DataFileError(f"{path}: the file has a header but no mazes.")
    lut = torch.full((256,), 255, dtype=torch.uint8)
    for ch, code in CODE_OF.items():
        lut[ord(ch)] = code
    q = torch.tensor(questions, dtype=torch.long).reshape(-1, side, side)
    a = torch.tensor(answers, dtype=torch.long).reshape(-1, side, side)
    codes = lut[q]
    where = [f"{path}:{line}" for line in lines]
    _check_codes(codes, where)
    path_on = (a == ord("o")) | (codes == gen.START) | (codes == gen.GOAL)
    same = (a == q) | ((a == ord("o")) & (codes == gen.OPEN))
    bad = (~same).flatten(1).any(1).nonzero(as_tuple=True)[0]
    if len(bad):
        raise DataFileError(
            f"{where[int(bad[0])]}: the answer changes the maze itself (it may only mark open units 'o')."
        )
    n = len(lines)
    return gen.Mazes(codes, path_on, torch.full((n,), side - 2, dtype=torch.long), path_on.flatten(1).sum(1) - 1)


def save_csv(path: str | Path, mazes: gen.Mazes, source: str = "irem") -> None:
    """Write `mazes` in Maze-Hard's CSV layout (rating: the path length in units)."""
    path = Path(path)
    lines = [",".join(HEADER)]
    for codes, on, length in zip(mazes.codes, mazes.path, mazes.path_length, strict=True):
        q = "".join(CHAR_OF[int(v)] for v in codes.flatten())
        a = "".join(
            "o" if bool(p) and int(v) == gen.OPEN else CHAR_OF[int(v)]
            for v, p in zip(codes.flatten(), on.flatten(), strict=True)
        )
        lines.append(f"{source},{q},{a},{int(length)}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".csv.tmp")
    with os.fdopen(fd, "w", newline="") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
