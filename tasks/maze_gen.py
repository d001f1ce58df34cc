"""Perfect mazes made in whole batches: the generators, the unique path, and the two image layouts.

A maze of size N (odd, deep-thinking's "maze size") has c = (N + 1) / 2 cells per side, drawn as a
grid of G = 2c + 1 = N + 2 units: cell (r, q) is unit (2r + 1, 2q + 1), the unit between two
neighbouring cells is a passage (open when the maze joins them) and every other unit is wall. A
perfect maze is a spanning tree of the c x c cell grid, so between any two cells there is exactly
one path. Two generators grow that tree from the start cell, every maze of the batch one step at a
time (the loop runs over steps, never over mazes):

- `dfs`: randomized depth-first search, deep-thinking's generator (easy-to-hard-data's
  make_mazes.py): from the current cell move to a random unvisited neighbour, knocking the wall
  down, and backtrack along the stack at a dead end. Long winding corridors, few branches.
- `kruskal`: the spanning tree randomized Kruskal makes, i.e. the minimum spanning tree under
  independent uniform edge weights (Kruskal takes the edges in a random order, which is sorting by
  such weights; the tree is unique), grown here by Prim's rule on the same weights (add the
  lightest edge leaving the tree), which builds the same tree one cell per step. Many short dead
  ends: a different statistic from DFS, so a model that only learnt DFS corridors shows it.

Either way each cell records its parent towards the start, so the unique path is the goal's chain
of parents, found in as many vectorized steps as the path is long.

Layouts of what a model sees (`render`): "grid", one pixel per unit (N + 2 per side), and "image",
deep-thinking's exact layout: every unit a 2 x 2 block of pixels inside a one-pixel wall border,
2N + 6 pixels per side (9 -> 24, 59 -> 124). Three channels: open (1, 1, 1), wall 0, start green
(0, 1, 0), goal red (1, 0, 0); the target marks the path's pixels (start, goal and the passages
between them). Mazes of several sizes in one batch are padded with wall at the bottom and right to
the largest size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

GENERATORS = ("dfs", "kruskal")
LAYOUTS = ("grid", "image")
WALL, OPEN, START, GOAL = 0, 1, 2, 3  # unit codes
COLOURS = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # per code, RGB
MAX_ROUNDS = 1000  # batches drawn at most to find mazes with a long enough path


@dataclass
class Mazes:
    """A batch of mazes on the unit grid: `codes` [B, G, G] (WALL, OPEN, START, GOAL), `path` [B, G, G]
    bool, `size` [B] (N), `path_length` [B] (units stepped from start to goal: twice the cells)."""

    codes: Tensor
    path: Tensor
    size: Tensor
    path_length: Tensor

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def select(self, index: Tensor) -> Mazes:
        return Mazes(self.codes[index], self.path[index], self.size[index], self.path_length[index])


def check_size(size: int, owner: str = "maze") -> int:
    """A maze size must be odd and >= 3 (deep-thinking's sizes: 9, 11, ..., 59, 201)."""
    if isinstance(size, bool) or int(size) != size or size < 3 or int(size) % 2 == 0:
        raise ValueError(f"{owner}: a maze size must be an odd whole number >= 3 (9, 11, ..., 59), got {size!r}.")
    return int(size)


def grid_neighbours(c: int) -> Tensor:
    """[c*c, 4]: the cell to the west, east, south and north of each cell (row-major index), -1 off the grid."""
    r, q = torch.div(torch.arange(c * c), c, rounding_mode="floor"), torch.arange(c * c) % c
    out = torch.full((c * c, 4), -1, dtype=torch.long)
    for j, (dr, dq) in enumerate(((0, -1), (0, 1), (1, 0), (-1, 0))):
        rr, qq = r + dr, q + dq
        inside = (rr >= 0) & (rr < c) & (qq >= 0) & (qq < c)
        out[:, j] = torch.where(inside, rr * c + qq, torch.full_like(rr, -1))
    return out


def grid_edges(c: int) -> Tensor:
    """[2, E]: every pair of neighbouring cells (right and down neighbours), row-major indices."""
    idx = torch.arange(c * c).reshape(c, c)
    right = torch.stack([idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1)])
    down = torch.stack([idx[:-1, :].reshape(-1), idx[1:, :].reshape(-1)])
    return torch.cat([right, down], dim=1)


def dfs_tree(c: int, start: Tensor, generator: torch.Generator) -> Tensor:
    """Parents [B, c*c] (-1 at the root) of randomized depth-first search trees grown from `start`."""
    b, cells = start.shape[0], c * c
    nb = grid_neighbours(c)
    rows = torch.arange(b)
    visited = torch.zeros(b, cells, dtype=torch.bool)
    visited[rows, start] = True
    parent = torch.full((b, cells), -1, dtype=torch.long)
    stack = torch.zeros(b, cells, dtype=torch.long)
    sp = torch.zeros(b, dtype=torch.long)
    cur = start.clone()
    seen = torch.ones(b, dtype=torch.long)
    while bool((seen < cells).any()):
        active = seen < cells
        cand = nb[cur]  # [B, 4]
        safe = cand.clamp_min(0)
        ok = (cand >= 0) & ~visited.gather(1, safe) & active[:, None]
        score = torch.rand(b, 4, generator=generator).masked_fill(~ok, -1.0)
        nxt = safe.gather(1, score.argmax(1, keepdim=True)).squeeze(1)
        adv = ok.any(1)
        back = active & ~adv
        # advance: push the current cell, knock the wall down, move on
        pos = sp.clamp_max(cells - 1)[:, None]
        stack.scatter_(1, pos, torch.where(adv, cur, stack.gather(1, pos).squeeze(1))[:, None])
        parent.scatter_(1, nxt[:, None], torch.where(adv, cur, parent.gather(1, nxt[:, None]).squeeze(1))[:, None])
        visited.scatter_(1, nxt[:, None], (visited.gather(1, nxt[:, None]).squeeze(1) | adv)[:, None])
        # dead end: pop
        top = stack.gather(1, (sp - 1).clamp_min(0)[:, None]).squeeze(1)
        cur = torch.where(adv, nxt, torch.where(back, top, cur))
        sp = sp + adv.long() - back.long()
        seen = seen + adv.long()
    return parent


def mst_tree(c: int, start: Tensor, weights: Tensor) -> Tensor:
    """Parents [B, c*c] of the minimum spanning trees of the c x c grid under `weights` [B, E] (one per
    edge of `grid_edges`), grown from `start` by Prim's rule: the lightest edge leaving the tree."""
    b, cells = start.shape[0], c * c
    u, v = grid_edges(c)
    rows = torch.arange(b)
    inside = torch.zeros(b, cells, dtype=torch.bool)
    inside[rows, start] = True
    parent = torch.full((b, cells), -1, dtype=torch.long)
    inf = torch.tensor(float("inf"), dtype=weights.dtype)
    for _ in range(cells - 1):
        iu, iv = inside[:, u], inside[:, v]
        e = torch.where(iu ^ iv, weights, inf).argmin(1)
        eu, ev = u[e], v[e]
        u_in = inside[rows, eu]
        new, old = torch.where(u_in, ev, eu), torch.where(u_in, eu, ev)
        parent[rows, new] = old
        inside[rows, new] = True
    return parent


def path_cells(parent: Tensor, start: Tensor, goal: Tensor) -> tuple[Tensor, Tensor]:
    """(on [B, c*c] bool: the cells of the path from start to goal, cell steps [B]) by walking the goal's parents."""
    b = parent.shape[0]
    rows = torch.arange(b)
    on = torch.zeros_like(parent, dtype=torch.bool)
    node = goal.clone()
    on[rows, node] = True
    steps = torch.zeros(b, dtype=torch.long)
    while bool((node != start).any()):
        moving = node != start
        node = torch.where(moving, parent[rows, node.clamp_min(0)], node)
        steps += moving.long()
        on[rows, node] = True
    return on, steps


def units_of(c: int, parent: Tensor, keep: Tensor) -> Tensor:
    """[B, G, G] bool: the units of the cells in `keep` [B, c*c] and of the passage from each kept
    non-root cell to its parent (a tree's passages when `keep` is every cell)."""
    b, g = parent.shape[0], 2 * c + 1
    out = torch.zeros(b, g, g, dtype=torch.bool)
    cell = torch.arange(c * c)
    r, q = torch.div(cell, c, rounding_mode="floor"), cell % c
    out[:, 2 * r + 1, 2 * q + 1] = keep
    has_parent = (parent >= 0) & keep
    p = parent.clamp_min(0)
    pr, pq = torch.div(p, c, rounding_mode="floor"), p % c
    bi, ci = has_parent.nonzero(as_tuple=True)
    out[bi, (2 * r[ci] + 1 + 2 * pr[bi, ci] + 1) // 2, (2 * q[ci] + 1 + 2 * pq[bi, ci] + 1) // 2] = True
    return out


def generate_size(n: int, size: int, generator: torch.Generator, kind: str = "dfs") -> Mazes:
    """`n` perfect mazes of one size with distinct start and goal cells drawn uniformly."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown maze generator '{kind}'. Valid choices: {', '.join(GENERATORS)}.")
    c = (check_size(size) + 1) // 2
    cells = c * c
    start = torch.randint(cells, (n,), generator=generator)
    goal = torch.randint(cells - 1, (n,), generator=generator)
    goal = goal + (goal >= start).long()  # distinct from the start, uniform over the rest
    if kind == "dfs":
        parent = dfs_tree(c, start, generator)
    else:
        parent = mst_tree(c, start, torch.rand(n, grid_edges(c).shape[1], generator=generator))
    on, steps = path_cells(parent, start, goal)
    codes = units_of(c, parent, torch.ones_like(on)).to(torch.uint8) * OPEN
    rows = torch.arange(n)
    codes[rows, 2 * (start // c) + 1, 2 * (start % c) + 1] = START
    codes[rows, 2 * (goal // c) + 1, 2 * (goal % c) + 1] = GOAL
    path = units_of(c, parent, on)
    return Mazes(codes, path, torch.full((n,), size, dtype=torch.long), 2 * steps)


def generate(n: int, sizes: Tensor, generator: torch.Generator, kind: str = "dfs", min_path_length: int = 0) -> Mazes:
    """`n` mazes, instance i of size `sizes[i]`, padded with wall to the largest; with
    `min_path_length` > 0 only mazes whose path is at least that many units long (Maze-Hard keeps
    long paths), drawn batch after batch until enough are found."""
    sizes = sizes.long()
    groups = {}
    for size in sorted({int(s) for s in sizes.tolist()}):
        want = int((sizes == size).sum())
        found, have = [], 0
        for _ in range(MAX_ROUNDS):
            batch = generate_size(max(want - have, 16) if min_path_length else want, size, generator, kind)
            if min_path_length:
                batch = batch.select(batch.path_length >= min_path_length)
            found.append(batch)
            have += len(batch)
            if have >= want:
                break
        else:
            raise ValueError(
                f"maze: found {have} of {want} mazes of size {size} with a path of at least {min_path_length} units "
                f"in {MAX_ROUNDS} batches; lower min_path_length or raise the size."
            )
        groups[size] = cat(found).select(torch.arange(want))
    return place(groups, sizes)


def cat(parts: list[Mazes]) -> Mazes:
    """Mazes of one size joined."""
    return Mazes(*(torch.cat([getattr(p, k) for p in parts]) for k in ("codes", "path", "size", "path_length")))


def pad_units(t: Tensor, g: int) -> Tensor:
    """[B, h, h] -> [B, g, g], padded with zeros (wall, off the path) at the bottom and right."""
    extra = g - t.shape[-1]
    return t if extra == 0 else F.pad(t, (0, extra, 0, extra))


def place(groups: dict[int, Mazes], sizes: Tensor) -> Mazes:
    """Mazes grouped by size, put back in the order `sizes` asks for, padded to the largest."""
    g = max(s for s in groups) + 2
    n = sizes.shape[0]
    codes = torch.zeros(n, g, g, dtype=torch.uint8)
    path = torch.zeros(n, g, g, dtype=torch.bool)
    length = torch.zeros(n, dtype=torch.long)
    for size, mazes in groups.items():
        where = (sizes == size).nonzero(as_tuple=True)[0]
        codes[where] = pad_units(mazes.codes, g)
        path[where] = pad_units(mazes.path.to(torch.uint8), g).bool()
        length[where] = mazes.path_length
    return Mazes(codes, path, sizes.clone(), length)


# -- layouts -------------------------------------------------------------------------------------


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown maze layout '{layout}'. Valid choices: {', '.join(LAYOUTS)}.")
    return layout


def upsample(t: Tensor) -> Tensor:
    """Units [..., G, G] to deep-thinking's pixels [..., 2G + 2, 2G + 2]: 2 x 2 per unit, a zero border."""
    big = t.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    return F.pad(big, (1, 1, 1, 1))


def render(mazes: Mazes, layout: str) -> tuple[Tensor, Tensor]:
    """(x [B, 3, H, W] float colours, target [B, H, W] long path mask) in `layout`."""
    x = COLOURS[mazes.codes.long()].permute(0, 3, 1, 2).contiguous()
    target = mazes.path.long()
    if check_layout(layout) == "image":
        x, target = upsample(x), upsample(target)
    return x, target


def units_from_pixels(t: Tensor, layout: str) -> Tensor:
    """The unit grid [..., G, G] behind pixels [..., H, W] (the top-left pixel of each 2 x 2 block)."""
    return t if check_layout(layout) == "grid" else t[..., 1:-1:2, 1:-1:2]


def codes_of(x: Tensor, layout: str) -> Tensor:
    """Unit codes [B, G, G] (WALL, OPEN, START, GOAL) from colour inputs [B, 3, H, W]."""
    u = units_from_pixels(x, layout)
    r, g, b = u[:, 0] > 0.5, u[:, 1] > 0.5, u[:, 2] > 0.5
    codes = torch.full(r.shape, WALL, dtype=torch.uint8)
    codes[r & g & b] = OPEN
    codes[~r & g & ~b] = START
    codes[r & ~g & ~b] = GOAL
    return codes


def open_pixels(x: Tensor) -> Tensor:
    """[B, H, W] bool: pixels that are not wall (deep-thinking's loss mask: any channel above 0)."""
    return x.amax(dim=1) > 0.5


# -- checking a path ----------------------------------------------------------------------------


def neighbour_count(mask: Tensor) -> Tensor:
    """[B, G, G]: how many of each unit's four neighbours are in `mask`."""
    m = F.pad(mask.to(torch.int16), (1, 1, 1, 1))
    return m[:, :-2, 1:-1] + m[:, 2:, 1:-1] + m[:, 1:-1, :-2] + m[:, 1:-1, 2:]


def dilate(mask: Tensor) -> Tensor:
    return mask | (neighbour_count(mask) > 0)


def shortest_steps(codes: Tensor) -> Tensor:
    """[B]: units stepped on a shortest path from start to goal over open units (breadth-first, the
    whole batch at once); -1 where the goal cannot be reached."""
    free = codes != WALL
    reach = codes == START
    goal = codes == GOAL
    dist = torch.full((codes.shape[0],), -1, dtype=torch.long)
    t = 0
    while True:
        hit = (reach & goal).flatten(1).any(1) & (dist < 0)
        dist[hit] = t
        if bool((dist >= 0).all()):
            return dist
        grown = dilate(reach) & free
        if torch.equal(grown, reach):
            return dist
        reach, t = grown, t + 1


def is_exact_path(codes: Tensor, on: Tensor) -> Tensor:
    """[B] bool: the units `on` are a chain of open units from start to goal, each joined to the next,
    with no unit off it, and no longer than a shortest path (in a perfect maze: the unique path).

    Start and goal have one neighbour on the chain, every other unit two; units meeting that are a
    chain from start to goal plus, possibly, separate loops, and a count of one more than the shortest
    distance leaves no room for a loop or a detour."""
    free = codes != WALL
    ends = (codes == START) | (codes == GOAL)
    deg = neighbour_count(on)
    flat = lambda t: t.flatten(1)  # noqa: E731
    ok = ~flat(on & ~free).any(1)
    ok &= flat(on & (codes == START)).any(1) & flat(on & (codes == GOAL)).any(1)
    ok &= ~flat(on & ends & (deg != 1)).any(1)
    ok &= ~flat(on & ~ends & (deg != 2)).any(1)
    dist = shortest_steps(codes)
    return ok & (dist >= 0) & (flat(on).sum(1) == dist + 1)


def pixels_well_formed(pixels: Tensor, layout: str) -> Tensor:
    """[B] bool: a pixel mask the layout can draw (image: every 2 x 2 block one value, the border zero)."""
    if check_layout(layout) == "grid":
        return torch.ones(pixels.shape[0], dtype=torch.bool, device=pixels.device)
    return (upsample(units_from_pixels(pixels, layout)) == pixels).flatten(1).all(1)
