"""Nested reasoning: problems that need a computation inside another, with nesting depth as difficulty.

Each task is a chain of sub-problems that IREM's trained energies each solve on their own, so a
composition of those energies (irem/composition.py) can answer it, and it says so as data: the
`plan` of each depth, the `slots` (sub-models and their shapes) it needs, the named `parts` of a
problem and the `exact` operation of every slot. Depth d is the number of nodes of the plan.

- `NestedAddition`: the sum of d + 1 matrices, d binary additions in a chain.
- `NestedInverse`: addition and inverse alternating: A + B, (A + B)^-1, (A + B)^-1 + C, ...
- `NestedShortestPath`: all-pairs distances on a road network built in d stages, one shortest-path
  sub-problem per stage, each reading the previous stage's distances.

One fixed layout holds every depth up to `max_depth`, so a batch may mix depths, the study can
sweep depth like any other level, and an end-to-end baseline trained at depths 1-2 can still be
asked about depth 6: the inputs of unused stages are padded with values that leave the answer
unchanged (zero matrices; weight 1, never shorter than a distance) and the inverse chain, whose
padding could not be neutral, also carries a one-hot of its depth. Training draws depths
1..`train_depth`; `test` is at `train_depth`, `harder` one deeper and `harder_<d>` every depth up to
`max_depth`. Ground truth is computed in float64 from the float32 inputs the models see.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from irem.composition import ComposableTask, Node, Plan
from irem.problem import Problem, per_instance_mean, with_input_values
from irem.task import per_instance_level
from irem.tasks.graph import rows_close
from irem.tasks.graph_batch import complete_pairs, edge_segment, graph_counts, make_batch, symmetric_values
from irem.tasks.graph_truth import pair_values, shortest_paths_dense, shortest_paths_networkx


class NestedTask(ComposableTask):
    """Depth as the difficulty: whole depths 1..max_depth, training at 1..train_depth."""

    study_levels = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    level_label = "nesting depth"
    difficulty_label = "nesting depth"

    def __init__(
        self,
        max_depth: int = 6,
        train_depth: int = 2,
        test_size: int = 1000,
        val_size: int = 256,
        split_seed: int = 1234,
    ) -> None:
        if int(train_depth) < 1 or int(max_depth) <= int(train_depth):
            raise ValueError(
                f"{type(self).__name__}: need 1 <= train_depth < max_depth (the harder split is deeper than "
                f"training), got train_depth={train_depth}, max_depth={max_depth}."
            )
        self.max_depth, self.train_depth = int(max_depth), int(train_depth)
        super().__init__(
            difficulty=self.train_depth,
            harder_difficulty=self.train_depth + 1,
            test_size=test_size,
            val_size=val_size,
            split_seed=split_seed,
        )

    def split_levels(self) -> dict[str, float | None]:
        """train/val draw depths as training does; test at train_depth; one harder split per deeper depth."""
        levels: dict[str, float | None] = {"train": None, "val": None, "test": float(self.train_depth)}
        levels["harder"] = float(self.train_depth + 1)
        for d in range(self.train_depth + 2, self.max_depth + 1):
            levels[f"harder_{d}"] = float(d)
        return levels

    def training_difficulty(self, n: int, generator: torch.Generator) -> Tensor:
        """A depth per instance, uniform on 1..train_depth."""
        return torch.randint(1, self.train_depth + 1, (int(n),), generator=generator).float()

    def depths(self, difficulty: float | Tensor, n: int) -> Tensor:
        """The per-instance depths of a `generate` call, checked: whole numbers in 1..max_depth."""
        level = per_instance_level(difficulty, n)
        depth = level.round().long()
        if bool((level != depth.float()).any()) or bool(((depth < 1) | (depth > self.max_depth)).any()):
            raise ValueError(
                f"{self.name}: difficulty is a nesting depth, a whole number in 1..{self.max_depth} "
                f"(max_depth); got {sorted(set(level.tolist()))}."
            )
        return depth

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        """MSE, and MSE relative to predicting zero: answers change scale with depth (sums grow,
        inverses shrink), so only the relative error compares depths."""
        y = y.detach()
        mse = self.loss(problem, y)
        scale = per_instance_mean(problem.target**2, problem.segment, problem.num_instances)
        return {"mse": mse, "relative_mse": mse / scale.clamp_min(1e-12)}


# -- matrices -----------------------------------------------------------------------------------


class NestedMatrixTask(NestedTask):
    """Flat matrices of `size` x `size`; the answer is one matrix."""

    def __init__(self, size: int = 20, **kwargs: Any) -> None:
        if int(size) < 1:
            raise ValueError(f"{type(self).__name__}: size must be >= 1, got {size}.")
        self.size = int(size)
        super().__init__(**kwargs)

    @property
    def cells(self) -> int:
        return self.size * self.size

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (problem.num_instances, self.cells)

    def matrix(self, problem: Problem, j: int) -> Tensor:
        return problem.x[:, j * self.cells : (j + 1) * self.cells]


class NestedAddition(NestedMatrixTask):
    """M_0 + M_1 + ... + M_d, summed by d binary additions: s_1 = M_0 + M_1, s_j = s_{j-1} + M_j.

    Every M_j ~ U(-1, 1), the addition energy's training inputs (tasks/matrix.py, s = 1); the
    running sum it reads grows as sqrt(j) (entry std 0.58 for one matrix, 1.53 for the sum of
    seven), so deep nodes see inputs like the addition's harder split (s = 2.5, std 1.44): depth
    makes the inner answers drift out of the range the energy was trained on, as it would in use.
    x holds max_depth + 1 matrices, zero beyond the instance's depth (adding zero changes nothing).
    """

    name = "nested_addition"

    @property
    def slot_count(self) -> int:
        return self.max_depth + 1

    def dims(self) -> dict[str, int]:
        return {"x_dim": self.slot_count * self.cells, "y_dim": self.cells}

    def slots(self) -> dict[str, dict[str, int]]:
        return {"add": {"x_dim": 2 * self.cells, "y_dim": self.cells}}

    def plan(self, depth: int) -> Plan:
        self.depths(depth, 1)
        nodes, previous = [], "m0"
        for j in range(1, depth + 1):
            nodes.append(Node(f"s{j}", "add", (previous, f"m{j}")))
            previous = f"s{j}"
        return Plan(tuple(nodes))

    def parts(self, problem: Problem) -> dict[str, Tensor]:
        return {f"m{j}": self.matrix(problem, j) for j in range(self.slot_count)}

    def depth_of(self, problem: Problem) -> Tensor:
        used = problem.x.reshape(problem.num_instances, self.slot_count, -1).ne(0).any(dim=2)
        return used.long().sum(dim=1) - 1

    def exact(self, slot: str) -> Callable[[Any], Tensor]:
        if slot != "add":
            raise ValueError(f"{self.name}: unknown slot '{slot}'. Valid slots: add.")
        return lambda x: x[:, : self.cells] + x[:, self.cells :]

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        depth = self.depths(difficulty, n)
        m = torch.rand(n, self.slot_count, self.cells, generator=generator) * 2 - 1
        m = m * (torch.arange(self.slot_count) <= depth.unsqueeze(1)).unsqueeze(2)
        target = m.double().sum(dim=1).float()
        return Problem(x=m.reshape(n, -1), target=target, difficulty=depth.float())

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """The sum of every matrix slot (numpy), entry by entry."""
        total = torch.from_numpy(problem.x.double().numpy().reshape(problem.num_instances, self.slot_count, -1).sum(1))
        return ((y.double() - total).abs() <= tol * (1 + total.abs())).all(dim=1)


class NestedInverse(NestedMatrixTask):
    """Addition and inverse alternating: node k adds the next matrix (k odd) or inverts (k even).

    Depth 1: A + B; 2: (A + B)^-1; 3: (A + B)^-1 + C_1; 4: ((A + B)^-1 + C_1)^-1; and so on.

    Input distributions are chosen so that every inverse node reads what the inverse energy was
    trained on (tasks/matrix.py: 2 R R^T + 0.5 I, R ~ U(-1, 1)), if the nodes before it are exact:
    - A = 2 R_a R_a^T + 0.25 I and B = 2 R_b R_b^T + 0.25 I, where R_a, R_b are the first and the
      last size/2 columns of one R ~ U(-1, 1), so A + B = 2 R R^T + 0.5 I exactly: the inverse
      energy's training distribution. (The suggested alternative A = R R^T + 0.25 I, B = S S^T +
      0.25 I is better conditioned, smallest eigenvalue about 2 instead of 0.5, but its inverses
      are four times smaller than the inverse energy's training answers, and the trained energy
      (runs/repro/inverse-energy) was measured worse than predicting zero on it: MSE 0.0052 against
      0.0016, while on its own distribution it halves the zero-prediction error, 0.011 against 0.021.)
    - C_j = 2 S_j S_j^T + 0.5 I, so a later inverse reads the training distribution plus the small
      SPD inverse before it (eigenvalues between 1/50 and 2): every matrix that is inverted is
      symmetric positive definite with smallest eigenvalue above 0.5, and the truth is stable.
    The addition nodes cannot be kept in their training range as well: A and B have diagonal
    entries near 7 (the addition energy was trained on U(-1, 1)), the price of an exact inverse
    input, and the addition's error there is what the inverse after it amplifies.

    x = [A, B, C_1, ..., C_m, one-hot of the depth]: zero padding is not neutral for an inverse,
    so the depth is part of the input.
    """

    name = "nested_inverse"

    @property
    def matrix_count(self) -> int:
        """A, B and one C per later addition: additions at nodes 1, 3, 5, ... <= max_depth."""
        return 1 + math.ceil(self.max_depth / 2)

    def dims(self) -> dict[str, int]:
        return {"x_dim": self.matrix_count * self.cells + self.max_depth, "y_dim": self.cells}

    def slots(self) -> dict[str, dict[str, int]]:
        return {
            "add": {"x_dim": 2 * self.cells, "y_dim": self.cells},
            "inv": {"x_dim": self.cells, "y_dim": self.cells},
        }

    def plan(self, depth: int) -> Plan:
        self.depths(depth, 1)
        nodes, previous = [], "m0"
        for k in range(1, depth + 1):
            if k % 2:
                nodes.append(Node(f"n{k}", "add", (previous, f"m{(k + 1) // 2}")))
            else:
                nodes.append(Node(f"n{k}", "inv", (previous,)))
            previous = f"n{k}"
        return Plan(tuple(nodes))

    def parts(self, problem: Problem) -> dict[str, Tensor]:
        return {f"m{j}": self.matrix(problem, j) for j in range(self.matrix_count)}

    def depth_of(self, problem: Problem) -> Tensor:
        return problem.x[:, self.matrix_count * self.cells :].argmax(dim=1) + 1

    def exact(self, slot: str) -> Callable[[Any], Tensor]:
        s = self.size
        if slot == "add":
            return lambda x: x[:, : self.cells] + x[:, self.cells :]
        if slot == "inv":
            return lambda x: torch.linalg.inv(x.reshape(-1, s, s)).reshape(x.shape[0], -1)
        raise ValueError(f"{self.name}: unknown slot '{slot}'. Valid slots: add, inv.")

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        depth = self.depths(difficulty, n)
        s, h = self.size, self.size // 2
        eye = torch.eye(s)
        r = torch.rand(n, s, s, generator=generator) * 2 - 1
        a = 2 * r[:, :, :h] @ r[:, :, :h].transpose(1, 2) + 0.25 * eye
        b = 2 * r[:, :, h:] @ r[:, :, h:].transpose(1, 2) + 0.25 * eye
        later = torch.rand(n, self.matrix_count - 2, s, s, generator=generator) * 2 - 1
        c = 2 * later @ later.transpose(2, 3) + 0.5 * eye
        mats = torch.cat([a.unsqueeze(1), b.unsqueeze(1), c], dim=1)  # float32, what the models read
        used = torch.arange(self.matrix_count) <= (depth.unsqueeze(1) + 1) // 2
        mats = mats * used.view(n, -1, 1, 1)
        target = self._chain(mats.double(), depth).float()
        onehot = torch.nn.functional.one_hot(depth - 1, self.max_depth).float()
        return Problem(x=torch.cat([mats.reshape(n, -1), onehot], dim=1), target=target, difficulty=depth.float())

    def _chain(self, mats: Tensor, depth: Tensor) -> Tensor:
        """Every instance's chain to its own depth, in torch (float64), one node at a time."""
        value, out = mats[:, 0], torch.empty(mats.shape[0], self.cells, dtype=mats.dtype)
        for k in range(1, int(depth.max()) + 1):
            value = value + mats[:, (k + 1) // 2] if k % 2 else torch.linalg.inv(value)
            out[depth == k] = value[depth == k].reshape(-1, self.cells)
        return out

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """The chain recomputed with numpy, instance by instance, from x alone."""
        n, s = problem.num_instances, self.size
        x = problem.x.double().numpy()
        depth = x[:, self.matrix_count * self.cells :].argmax(axis=1) + 1
        ref = np.empty((n, self.cells))
        for i in range(n):
            mats = x[i, : self.matrix_count * self.cells].reshape(self.matrix_count, s, s)
            value = mats[0]
            for k in range(1, depth[i] + 1):
                value = value + mats[(k + 1) // 2] if k % 2 else np.linalg.inv(value)
            ref[i] = value.reshape(-1)
        ref_t = torch.from_numpy(ref)
        return ((y.double() - ref_t).abs() <= tol * (1 + ref_t.abs())).all(dim=1)


# -- graphs -------------------------------------------------------------------------------------


def edge_weights(values: list[Tensor], context: Any) -> Any:
    """A node reads one weight per ordered pair: the problem's pair graph with those weights."""
    (w,) = values
    return with_input_values(context, w)


def union(values: list[Tensor], context: Any) -> Any:
    """The previous stage's distances joined with this stage's roads: the lighter of the two per pair."""
    distances, roads = values
    return with_input_values(context, torch.minimum(distances, roads))


class NestedShortestPath(NestedTask):
    """A road network built in stages: all-pairs distances after stage d.

    Every stage j adds a complete graph of roads on the same `nodes` nodes with symmetric weights
    W_j ~ U(0, 1), the shortest-path energy's training graphs (tasks/graph.py, complete family).
    Node j of the plan is a shortest-path sub-problem on the union of the previous stage's network
    and the new roads: D_1 = SP(W_1), D_j = SP(min(D_{j-1}, W_j)) (D_{j-1} already holds every route
    of the earlier stages, so D_d is the distance on the union of all d stages). Its inputs stay in
    [0, 1] but are a metric rather than independent uniforms, and distances shrink with depth.

    A problem is the complete pair graph (IREM's layout, one answer row per ordered pair) whose
    edge features are the weights of every stage, max_depth of them; stages beyond the instance's
    depth are padded with weight 1, which no distance exceeds, so the padding changes nothing.
    """

    name = "nested_shortest_path"

    def __init__(self, nodes: int = 10, **kwargs: Any) -> None:
        if int(nodes) < 2:
            raise ValueError(f"{type(self).__name__}: nodes must be >= 2 (a pair is needed), got {nodes}.")
        self.nodes = int(nodes)
        super().__init__(**kwargs)

    def dims(self) -> dict[str, int]:
        return {"edge_dim": self.max_depth, "y_dim": 1}

    def slots(self) -> dict[str, dict[str, int]]:
        return {"sp": {"edge_dim": 1, "y_dim": 1}}

    def plan(self, depth: int) -> Plan:
        self.depths(depth, 1)
        nodes = [Node("d1", "sp", ("w1",), edge_weights)]
        for j in range(2, depth + 1):
            nodes.append(Node(f"d{j}", "sp", (f"d{j - 1}", f"w{j}"), union))
        return Plan(tuple(nodes))

    def parts(self, problem: Problem) -> dict[str, Tensor]:
        return {f"w{j}": problem.x.edge_attr[:, j - 1 : j] for j in range(1, self.max_depth + 1)}

    def depth_of(self, problem: Problem) -> Tensor:
        used = (problem.x.edge_attr < 1).float()
        rows_used = torch.zeros(problem.num_instances, self.max_depth).index_add_(0, problem.segment, used)
        return (rows_used > 0).sum(dim=1)

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (int(problem.x.edge_index.shape[1]), 1)

    def exact(self, slot: str) -> Callable[[Any], Tensor]:
        if slot != "sp":
            raise ValueError(f"{self.name}: unknown slot '{slot}'. Valid slots: sp.")

        def distances(x: Any) -> Tensor:
            counts = graph_counts(x)
            dense = shortest_paths_dense(counts, x.edge_index, x.edge_attr[:, 0])
            return pair_values(dense, counts, x.edge_index).float().unsqueeze(1)

        return distances

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        depth = self.depths(difficulty, n)
        counts = torch.full((n,), self.nodes, dtype=torch.long)
        edge_index, reverse = complete_pairs(counts)
        rows = edge_index.shape[1]
        stages = torch.stack(
            [
                symmetric_values(torch.rand(rows, generator=generator), edge_index, reverse)
                for _ in range(self.max_depth)
            ],
            dim=1,
        )
        graph = torch.repeat_interleave(torch.arange(n), counts * (counts - 1))
        used = torch.arange(1, self.max_depth + 1) <= depth[graph].unsqueeze(1)
        stages = torch.where(used, stages, torch.ones_like(stages))
        weight = stages.amin(dim=1)
        target = pair_values(shortest_paths_dense(counts, edge_index, weight), counts, edge_index).float()
        x = make_batch(counts, edge_index, stages)
        return Problem(
            x=x, target=target.unsqueeze(1), segment=edge_segment(x), difficulty=depth.float(), num_instances=int(n)
        )

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """networkx's Dijkstra on the union of every stage (padding is weight 1: no effect)."""
        x = problem.x
        ref = shortest_paths_networkx(graph_counts(x), x.edge_index, x.edge_attr.amin(dim=1), x.edge_index)
        return rows_close(y, ref, problem.segment, problem.num_instances, tol)
