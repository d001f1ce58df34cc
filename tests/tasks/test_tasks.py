"""Shared tests that every task in configs/task/ gets for free.

Each task is built from its config with hydra.utils.instantiate (small split sizes) and must be
deterministic, keep its splits fixed and apart from training data, have a ground truth its own
`check` accepts, take per-instance difficulty, and fit an energy config and the default solver.
The tests read what a task declares, never its name: its `answer_kind` (continuous answers are
scored by squared error, categorical ones by cross-entropy and judged after argmax; how each kind's
target is perturbed for `check` to reject is `perturbed_answer`'s docstring), its
`unit_size` (a text window holds `context` instances), its input layout (a tensor, a graph batch,
or another InstanceInput), and whether it has difficulty levels (`level_label`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from irem.cli import CONFIG_DIR
from irem.config import valid_keys
from irem.energy import check_energy_fits
from irem.evaluation import unit_size
from irem.problem import Problem
from irem.task import Task, free_positions
from irem.tasks.matrix import Inverse

SIZES = {"test_size": 16, "val_size": 8}
HELD_OUT = ("val", "test")  # every task has these; harder levels come from split_levels()


@pytest.fixture
def task(task_name: str, compose_config) -> Task:
    cfg = compose_config("train", (f"task={task_name}",)).task
    built = instantiate(cfg, **SIZES)
    assert isinstance(built, Task)
    return built


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def is_dense(problem: Problem) -> bool:
    return problem.segment is None and isinstance(problem.x, torch.Tensor)


def is_graph(problem: Problem) -> bool:
    return problem.segment is not None and hasattr(problem.x, "to_data_list")


def has_levels(task: Task) -> bool:
    """Whether `generate` reads its difficulty (a task without levels declares level_label None)."""
    return task.level_label is not None


def held_out(task: Task) -> list[str]:
    """The fixed splits never used for training: val, test and every harder level the task has."""
    return [s for s in task.split_levels() if s != "train"]


def tensors_of(problem: Problem) -> dict[str, torch.Tensor]:
    out = {"x": problem.x, "target": problem.target, "difficulty": problem.difficulty, "segment": problem.segment}
    if not isinstance(problem.x, torch.Tensor):
        if hasattr(problem.x, "to_dict"):
            out.update({f"x.{k}": v for k, v in problem.x.to_dict().items()})
        else:
            out.update({f"x.{k}": v for k, v in vars(problem.x).items()})
    out.update({f"info.{k}": v for k, v in problem.info.items()})
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def unit_keys(task: Task, problem: Problem) -> list[bytes]:
    """One byte string per unit (an instance, a graph, a text window) that identifies its input."""
    if is_dense(problem):
        return [row.numpy().tobytes() for row in flat_rows(problem.x)]
    if is_graph(problem):
        return [d.edge_index.numpy().tobytes() + b"|" + d.edge_attr.numpy().tobytes() for d in problem.x.to_data_list()]
    u = unit_size(task)
    units = problem.num_instances // u
    return [digest(problem.select(torch.arange(i * u, (i + 1) * u))).encode() for i in range(units)]


def assert_same_problem(a: Problem, b: Problem) -> None:
    ta, tb = tensors_of(a), tensors_of(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{k} differs"
    assert a.num_instances == b.num_instances


def digest(problem: Problem) -> str:
    h = hashlib.sha256()
    for k, v in sorted(tensors_of(problem).items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def flat_rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def perturbed_answer(task: Task, problem: Problem, g: torch.Generator) -> torch.Tensor:
    """The target answer with every instance changed where a check looks, by `answer_kind`:

    - "categorical": each free position's scores moved to another class, drawn at random, so its
      argmax (what the task decodes and checks) is wrong at every free position;
    - "continuous": shifted by 0.5 and rolled one place along the last dimension. The shift breaks a
      check of values (a residual, A @ Y = I); the roll moves the largest entry of every row with
      one, so a check that decodes rows by argmax (rows on the probability simplex, a permutation
      matrix) fails too, where +0.5 everywhere never moved an argmax. A projection onto the simplex
      undoes the shift but not the roll.
    """
    y = task.target_answer(problem, scale=4.0)
    if task.answer_kind != "categorical":
        return y.roll(1, dims=-1) + 0.5
    free = free_positions(problem, y)
    classes = y.shape[-1]
    shift = torch.randint(1, classes, problem.target.shape, generator=g)
    wrong = (problem.target.long() + shift) % classes
    moved = task.target_answer(replace(problem, target=wrong), scale=4.0)
    return torch.where(free.unsqueeze(-1), moved, y)


# -- shapes and determinism ------------------------------------------------------------------


def test_answer_kind_is_declared(task: Task) -> None:
    assert task.answer_kind in ("continuous", "categorical")
    p = task.generate(3, task.difficulty, gen(0))
    shape = tuple(task.answer_shape(p))
    if task.answer_kind == "categorical":  # class ids in target, a score per class in the answer
        assert shape[:-1] == tuple(p.target.shape) and shape[-1] >= 2
        assert not torch.is_floating_point(p.target)
    else:
        assert shape == tuple(p.target.shape)


def test_shapes_match_dims(task: Task) -> None:
    n = 5
    p = task.generate(n, task.difficulty, gen(0))
    dims = task.dims()
    assert p.num_instances == n * unit_size(task) == len(p)
    shape = tuple(task.answer_shape(p))
    if is_dense(p):
        assert {"x_dim", "y_dim"} <= dims.keys()
        assert flat_rows(p.x).shape == (n, dims["x_dim"])
        assert flat_rows(torch.zeros(shape)).shape == (n, dims["y_dim"])
        assert torch.isfinite(p.x).all()
    elif is_graph(p):  # one answer row per edge, `segment` its graph
        assert {"edge_dim", "y_dim"} <= dims.keys()
        rows = p.x.edge_index.shape[1]
        assert p.x.num_graphs == n
        assert p.x.edge_attr.shape == (rows, dims["edge_dim"])
        assert shape == (rows, dims["y_dim"])
        assert p.segment.shape == (rows,) and p.segment.dtype == torch.long
        assert torch.equal(p.segment, p.x.batch[p.x.edge_index[0]])
        assert torch.isfinite(p.x.edge_attr).all()
    else:  # another input type: it counts and selects its own instances
        assert p.x.num_instances == p.num_instances
        assert p.x.can_select(torch.arange(unit_size(task)))
    y0 = task.init_answer(p, gen(1))
    assert tuple(y0.shape) == shape
    assert float(y0.min()) >= -1 and float(y0.max()) <= 1
    assert torch.isfinite(task.target_answer(p)).all()


def test_same_seed_same_problem(task: Task) -> None:
    assert_same_problem(task.generate(6, task.difficulty, gen(3)), task.generate(6, task.difficulty, gen(3)))


def test_different_seed_different_problem(task: Task) -> None:
    a = task.generate(6, task.difficulty, gen(3))
    b = task.generate(6, task.difficulty, gen(4))
    assert unit_keys(task, a) != unit_keys(task, b)
    assert a.target.shape != b.target.shape or not torch.equal(a.target, b.target)


def test_sample_uses_training_difficulty(task: Task) -> None:
    """A training batch is `generate` at the training difficulty; a range is drawn from the same generator."""
    g = gen(7)
    level = task.training_difficulty(4, g)
    assert_same_training_batch(task, task.sample(4, gen(7)), task.generate(4, level, g))
    if not isinstance(level, torch.Tensor):
        assert level == task.difficulty
        assert_same_training_batch(task, task.sample(4, gen(7)), task.generate(4, task.difficulty, gen(7)))


def assert_same_training_batch(task: Task, batch: Problem, generated: Problem) -> None:
    """Inverse's training batches skip the condition number; everything else must match `generate`."""
    if isinstance(task, Inverse):
        assert batch.difficulty is None
        cond = torch.linalg.cond(generated.x.reshape(-1, task.size, task.size).double()).float()
        torch.testing.assert_close(generated.difficulty, cond, rtol=1e-5, atol=0)
        batch = replace(batch, difficulty=generated.difficulty)
    assert_same_problem(batch, generated)


# -- fixed splits ------------------------------------------------------------------------------


def test_splits_fixed_across_instances(task_name: str, task: Task, compose_config) -> None:
    other = instantiate(compose_config("train", (f"task={task_name}",)).task, **SIZES)
    assert set(HELD_OUT) <= set(task.split_levels())
    for name in task.split_levels():  # every split, harder levels included, is fixed
        assert_same_problem(task.split(name), other.split(name))
        expected = SIZES["val_size"] if name == "val" else SIZES["test_size"]
        assert task.split(name).num_instances == expected * unit_size(task)


def test_splits_differ_from_each_other(task: Task) -> None:
    names = held_out(task)
    keys = {s: unit_keys(task, task.split(s)) for s in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            k = min(len(keys[a]), len(keys[b]))
            assert keys[a][:k] != keys[b][:k], f"splits {a} and {b} start with the same instances"


def test_splits_never_drawn_in_training(task: Task) -> None:
    """Training batches come from the trainer's generator; no split instance may appear in them."""
    if is_dense(task.split("test")):
        # splits at other sizes (mazes of size 59) have rows of another width: compare like with like
        held: dict[int, list[torch.Tensor]] = {}
        for s in held_out(task):
            rows = flat_rows(task.split(s).x)
            held.setdefault(rows.shape[1], []).append(rows)
        for seed in (0, 1, 1234):
            train = flat_rows(task.sample(32, gen(seed)).x)
            for rows in held.get(train.shape[1], []):
                same = (train[:, None, :] == rows[None, :, :]).all(-1)
                assert not same.any(), f"a training instance (seed {seed}) equals a held-out split instance"
        return

    # Graph inputs can be discrete (connectivity: a 10-node graph with no edge is common), so equal
    # single instances happen by chance; a run of three equal units in a row would mean the
    # training batch was drawn from a split's own generator.
    def runs(keys: list[bytes]) -> set[tuple[bytes, ...]]:
        return {tuple(keys[i : i + 3]) for i in range(len(keys) - 2)}

    held = set().union(*(runs(unit_keys(task, task.split(s))) for s in held_out(task)))
    for seed in (0, 1, 1234):
        train = runs(unit_keys(task, task.sample(32, gen(seed))))
        assert not held & train, f"training batch (seed {seed}) repeats a run of held-out split instances"


@pytest.fixture(scope="module")
def digests_from_another_process() -> dict[str, dict[str, str]]:
    """Split digests for every task, computed in a fresh interpreter with another hash seed."""
    script = textwrap.dedent(
        f"""
        import hashlib, json, sys
        import torch
        from hydra import compose, initialize_config_dir
        from hydra.utils import instantiate
        import irem.cli
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_tasks import digest, held_out
        out = {{}}
        with initialize_config_dir(config_dir=irem.cli.CONFIG_DIR, version_base="1.3"):
            for name in {json.dumps(sorted(p.stem for p in Path(CONFIG_DIR, "task").glob("*.yaml")))}:
                task = instantiate(compose("train", overrides=["task=" + name]).task, **{SIZES!r})
                out[name] = {{s: digest(task.split(s)) for s in held_out(task)}}
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "987"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=Path(CONFIG_DIR).parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_splits_fixed_across_processes(task_name: str, task: Task, digests_from_another_process) -> None:
    for s in held_out(task):
        assert digest(task.split(s)) == digests_from_another_process[task_name][s], f"split {s} differs"


def test_bad_split_name_lists_valid_splits(task: Task) -> None:
    with pytest.raises(ValueError) as err:
        task.split("tset")
    msg = str(err.value)
    assert "tset" in msg
    for s in task.split_levels():
        assert s in msg


# -- ground truth ------------------------------------------------------------------------------


def test_check_accepts_target(task: Task) -> None:
    for split in held_out(task):
        p = task.split(split)
        ok = task.check(p, task.target_answer(p))
        assert ok.dtype == torch.bool and ok.shape == (p.num_instances,)
        assert ok.all(), f"check rejects the target on split {split}"


def test_check_rejects_perturbed_target(task: Task) -> None:
    p = task.split("test")
    assert not task.check(p, perturbed_answer(task, p, gen(0))).any()
    if task.answer_kind == "continuous":
        noise = torch.randn(p.target.shape, generator=gen(0))
        assert not task.check(p, p.target + noise).any()
    else:  # judged on the decoded answer: scores that keep every argmax pass, whatever their scale
        assert task.check(p, task.target_answer(p, scale=0.01)).all()
        assert torch.equal(task.decode(p, task.target_answer(p)), p.target.long())


class SortingRows(Task):
    """A permutation task as a user writes it (issue 32, item 3): n numbers in, the sorting
    permutation matrix out as a continuous answer whose rows lie on the simplex, checked by argmax."""

    name = "sorting_rows"

    def __init__(self, n: int = 5, **split_args) -> None:
        self.n = n
        super().__init__(1.0, 1.0, **split_args)

    def dims(self) -> dict[str, int]:
        return {"x_dim": self.n, "y_dim": self.n * self.n}

    def generate(self, n: int, difficulty, generator: torch.Generator) -> Problem:
        x = torch.rand(n, self.n, generator=generator)
        target = torch.nn.functional.one_hot(x.argsort(dim=1), self.n).float()  # row i: where rank i sits
        return Problem(x=x, target=target, difficulty=torch.full((n,), float(difficulty)))

    def check(self, problem: Problem, y: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
        return (y.argmax(dim=-1) == problem.x.argsort(dim=1)).all(dim=1)


def test_perturbed_targets_fail_an_argmax_check_of_rows_on_the_simplex() -> None:
    """Before, continuous targets were perturbed by +0.5 everywhere, which an argmax check accepts."""
    task = SortingRows(**SIZES)
    p = task.generate(32, 1.0, gen(0))
    assert task.check(p, p.target).all() and task.check(p, p.target + 0.5).all()
    assert not task.check(p, perturbed_answer(task, p, gen(0))).any()


def test_loss_is_lowest_at_target(task: Task) -> None:
    """Zero at the target (continuous); for categorical answers the loss falls towards zero as the
    target's logits grow and is higher wherever a free position's class is wrong."""
    p = task.generate(4, task.difficulty, gen(0))
    off = task.loss(p, perturbed_answer(task, p, gen(1)))
    if task.answer_kind == "continuous":
        assert torch.equal(task.loss(p, p.target), torch.zeros(p.num_instances))
    else:
        confident, sure = task.loss(p, task.target_answer(p, 4.0)), task.loss(p, task.target_answer(p, 12.0))
        assert (sure < confident).all() and float(sure.max()) < 1e-3
        assert (off > confident).all()
    assert (off > 0).all()
    metrics = task.metrics(p, perturbed_answer(task, p, gen(1)))
    assert metrics and all(v.shape == (p.num_instances,) for v in metrics.values())


# -- difficulty ---------------------------------------------------------------------------------


def test_difficulty_per_instance(task: Task) -> None:
    p = task.generate(7, task.difficulty, gen(0))
    assert isinstance(p.difficulty, torch.Tensor)
    assert p.difficulty.shape == (p.num_instances,)
    assert torch.isfinite(p.difficulty).all()
    for s in held_out(task):
        assert task.split(s).difficulty.shape == (task.split(s).num_instances,)


def test_per_instance_difficulty_tensor(task: Task) -> None:
    if not has_levels(task):
        pytest.skip(f"task {task.name} declares no difficulty levels (level_label None)")
    n = 6
    scalar = task.generate(n, task.difficulty, gen(5))
    tensor = task.generate(n, torch.full((n,), task.difficulty), gen(5))
    assert_same_problem(scalar, tensor)
    levels = torch.tensor([task.difficulty, task.harder_difficulty] * (n // 2))
    mixed = task.generate(n, levels, gen(5))
    assert mixed.difficulty.shape == (mixed.num_instances,)
    assert task.check(mixed, task.target_answer(mixed)).all()


@pytest.mark.parametrize("shape", [(7,), (6, 1), (3,)])
def test_wrong_shaped_difficulty_raises(task: Task, shape: tuple[int, ...]) -> None:
    if not has_levels(task):
        pytest.skip(f"task {task.name} declares no difficulty levels (level_label None)")
    with pytest.raises(ValueError, match="difficulty"):
        task.generate(6, torch.full(shape, task.difficulty), gen(0))


@pytest.mark.parametrize("n", [0, -1])
def test_non_positive_count_raises(task: Task, n: int) -> None:
    with pytest.raises(ValueError, match=str(n)):
        task.generate(n, task.difficulty, gen(0))


def build_directly(cfg, **overrides):
    """Call the task class itself: hydra.utils.instantiate would wrap the ValueError."""
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")}
    return get_class(cfg._target_)(**{**kwargs, **SIZES, **overrides})


@pytest.mark.parametrize("key", ["test_size", "val_size"])
def test_non_positive_split_size_raises(task_name: str, compose_config, key: str) -> None:
    cfg = compose_config("train", (f"task={task_name}",)).task
    assert isinstance(build_directly(cfg), Task)
    with pytest.raises(ValueError, match=key):
        build_directly(cfg, **{key: 0})


def test_non_positive_problem_size_raises(task_name: str, compose_config) -> None:
    cfg = compose_config("train", (f"task={task_name}",)).task
    keys = [k for k in ("size", "n", "min_nodes", "context") if k in cfg]
    if not keys:
        pytest.skip(f"task {task_name} has no size parameter")
    with pytest.raises(ValueError, match=f"{keys[0]} must be"):
        build_directly(cfg, **{keys[0]: 0})


# -- fits the default energy and solver ---------------------------------------------------------


def fitting_energy(task: Task, compose_config, config_names):
    """The first energy config that fits the task, sized by its dims: the general energies (mlp for
    dense data, gnn for graphs) first, then the others alphabetically (matrix_product, which also
    fits square-matrix tasks, would otherwise come before mlp)."""
    tried = []
    general = ["mlp", "gnn"]
    for name in general + [n for n in config_names("energy") if n not in general]:
        cfg = compose_config("train", (f"energy={name}",)).energy
        keys = valid_keys(cfg)
        dims = {k: v for k, v in task.dims().items() if keys is None or k in keys}
        torch.manual_seed(0)
        try:
            energy = instantiate(cfg, **dims)
            check_energy_fits(energy, task)
        except Exception as err:  # noqa: BLE001 - a mismatch of any kind means: try the next one
            tried.append(f"{name}: {err}")
            continue
        return name, energy
    pytest.fail(f"task {task.name} fits no energy config: {tried}")


def test_fits_an_energy(task: Task, compose_config, config_names) -> None:
    name, _ = fitting_energy(task, compose_config, config_names)
    p = task.generate(2, task.difficulty, gen(0))
    if is_dense(p):
        assert name == "mlp"
    elif is_graph(p):
        assert name == "gnn"


def test_solver_smoke_with_untrained_energy(task: Task, compose_config, config_names) -> None:
    _, energy = fitting_energy(task, compose_config, config_names)
    solver = instantiate(compose_config("train", ("solver=gd",)).solver)
    p = task.generate(4, task.difficulty, gen(0))
    y0 = task.init_answer(p, gen(1))
    result = solver.solve(energy, p.x, y0, budget=3, segment=p.segment, constraint=p.constraint)
    assert tuple(result.y.shape) == tuple(task.answer_shape(p))
    assert torch.isfinite(result.y).all()
    assert result.steps.shape == (p.num_instances,)
    assert (result.steps <= 3).all()


HIGHER_IS_BETTER_NAMES = ("accuracy", "psnr", "within_")  # anywhere in a name: row_accuracy, within_tol


def test_study_declarations_name_real_metrics(task_name: str, compose_config) -> None:
    """Every task's headline metric and higher-is-better metrics are ones its `metrics` computes, and
    no metric that reads as a score (accuracy, PSNR, within tolerance) is left as an error."""
    built = instantiate(compose_config("train", (f"task={task_name}",)).task, **SIZES)
    problem = built.split("test")
    metrics = built.metrics(problem, built.init_answer(problem, gen(0)))
    assert built.error_metric in metrics  # (a family may declare scores some of its tasks do not compute)
    scores = {m for m in metrics if any(word in m for word in HIGHER_IS_BETTER_NAMES)}
    assert scores <= built.higher_is_better, f"{task_name}: declare {sorted(scores - built.higher_is_better)}"
    assert built.error_metric not in built.higher_is_better or built.error_metric in scores
    assert built.difficulty_label and (built.level_label is None or built.level_label)
    if built.level_label is not None and built.study_levels is not None:  # the task accepts its own levels
        built.generate(2, built.study_levels[0], gen(0))
