"""Shared tests that every task in configs/task/ gets for free.

Each task is built from its config with hydra.utils.instantiate (small split sizes) and must be
deterministic, keep its test and harder splits fixed and apart from training data, have a ground
truth its own `check` accepts, take per-instance difficulty, and fit an energy config and the
default solver. Dense tasks (tensor x) and graph tasks (torch-geometric batch x, answers per edge
row with a `segment`) get the same tests; the shape checks differ by layout.
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
from irem.problem import Problem
from irem.task import SPLITS, Task
from irem.tasks.matrix import Inverse
from irem.tasks.text import TextTask

SIZES = {"test_size": 16, "val_size": 8}


@pytest.fixture
def task(task_name: str, compose_config) -> Task:
    cfg = compose_config("train", (f"task={task_name}",)).task
    built = instantiate(cfg, **SIZES)
    assert isinstance(built, Task)
    if isinstance(built, TextTask):
        # One instance per predicted token (n windows -> n * context instances), discrete targets that
        # are not in the answer's layout, and no harder split: tests/tasks/test_text.py covers it.
        pytest.skip("per-token text task: see tests/tasks/test_text.py")
    return built


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def is_dense(problem: Problem) -> bool:
    return problem.segment is None and isinstance(problem.x, torch.Tensor)


def tensors_of(problem: Problem) -> dict[str, torch.Tensor]:
    out = {"x": problem.x, "target": problem.target, "difficulty": problem.difficulty, "segment": problem.segment}
    if not isinstance(problem.x, torch.Tensor) and hasattr(problem.x, "to_dict"):
        out.update({f"x.{k}": v for k, v in problem.x.to_dict().items()})
    out.update({f"info.{k}": v for k, v in problem.info.items()})
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def instance_keys(problem: Problem) -> list[bytes]:
    """One byte string per instance that identifies its input (graphs: local edges and features)."""
    if is_dense(problem):
        return [row.numpy().tobytes() for row in flat_rows(problem.x)]
    keys = []
    for data in problem.x.to_data_list():
        keys.append(data.edge_index.numpy().tobytes() + b"|" + data.edge_attr.numpy().tobytes())
    return keys


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


# -- shapes and determinism ------------------------------------------------------------------


def test_shapes_match_dims(task: Task) -> None:
    n = 5
    p = task.generate(n, task.difficulty, gen(0))
    dims = task.dims()
    assert p.num_instances == n == len(p)
    if is_dense(p):
        assert {"x_dim", "y_dim"} <= dims.keys()
        assert flat_rows(p.x).shape == (n, dims["x_dim"])
        assert flat_rows(p.target).shape == (n, dims["y_dim"])
        assert torch.isfinite(p.x).all()
    else:  # a graph batch: one answer row per edge, `segment` its graph
        assert {"edge_dim", "y_dim"} <= dims.keys()
        rows = p.x.edge_index.shape[1]
        assert p.x.num_graphs == n
        assert p.x.edge_attr.shape == (rows, dims["edge_dim"])
        assert p.target.shape == (rows, dims["y_dim"])
        assert p.segment.shape == (rows,) and p.segment.dtype == torch.long
        assert torch.equal(p.segment, p.x.batch[p.x.edge_index[0]])
        assert torch.isfinite(p.x.edge_attr).all()
    assert tuple(task.answer_shape(p)) == tuple(p.target.shape)
    y0 = task.init_answer(p, gen(1))
    assert y0.shape == p.target.shape
    assert float(y0.min()) >= -1 and float(y0.max()) <= 1
    assert torch.isfinite(p.target).all()


def test_same_seed_same_problem(task: Task) -> None:
    assert_same_problem(task.generate(6, task.difficulty, gen(3)), task.generate(6, task.difficulty, gen(3)))


def test_different_seed_different_problem(task: Task) -> None:
    a = task.generate(6, task.difficulty, gen(3))
    b = task.generate(6, task.difficulty, gen(4))
    assert instance_keys(a) != instance_keys(b)
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
    for name in ("test", "harder", "val"):
        assert_same_problem(task.split(name), other.split(name))
    assert task.split("test").num_instances == SIZES["test_size"]
    assert task.split("harder").num_instances == SIZES["test_size"]
    assert task.split("val").num_instances == SIZES["val_size"]
    assert set(SPLITS) <= set(task.split_levels())
    for name in task.split_levels():  # extra harder levels are fixed too
        expected = SIZES["val_size"] if name == "val" else SIZES["test_size"]
        assert task.split(name).num_instances == expected


def test_splits_differ_from_each_other(task: Task) -> None:
    test, harder, val = task.split("test"), task.split("harder"), task.split("val")
    assert instance_keys(test) != instance_keys(harder)
    assert instance_keys(test)[: val.num_instances] != instance_keys(val)
    assert test.num_instances == harder.num_instances
    if is_dense(test):
        assert not torch.equal(test.x, harder.x)
        assert not torch.equal(test.x[: val.num_instances], val.x)


def test_splits_never_drawn_in_training(task: Task) -> None:
    """Training batches come from the trainer's generator; no split instance may appear in them."""
    if is_dense(task.split("test")):
        held_out = torch.cat([flat_rows(task.split(s).x) for s in ("test", "harder", "val")])
        for seed in (0, 1, 1234):
            train = flat_rows(task.sample(32, gen(seed)).x)
            same = (train[:, None, :] == held_out[None, :, :]).all(-1)
            assert not same.any(), f"a training instance (seed {seed}) equals a held-out split instance"
        return

    # Graph inputs can be discrete (connectivity: a 10-node graph with no edge is common), so equal
    # single instances happen by chance; a run of three equal instances in a row would mean the
    # training batch was drawn from a split's own generator.
    def runs(keys: list[bytes]) -> set[tuple[bytes, ...]]:
        return {tuple(keys[i : i + 3]) for i in range(len(keys) - 2)}

    held = set().union(*(runs(instance_keys(task.split(s))) for s in task.split_levels()))
    for seed in (0, 1, 1234):
        train = runs(instance_keys(task.sample(32, gen(seed))))
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
        from test_tasks import digest
        out = {{}}
        with initialize_config_dir(config_dir=irem.cli.CONFIG_DIR, version_base="1.3"):
            for name in {json.dumps(sorted(p.stem for p in Path(CONFIG_DIR, "task").glob("*.yaml")))}:
                task = instantiate(compose("train", overrides=["task=" + name]).task, **{SIZES!r})
                if "harder" in task.split_levels():  # the text task has none (tests/tasks/test_text.py)
                    out[name] = {{s: digest(task.split(s)) for s in ("test", "harder")}}
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "987"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(CONFIG_DIR).parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_splits_fixed_across_processes(task_name: str, task: Task, digests_from_another_process) -> None:
    for s in ("test", "harder"):
        assert digest(task.split(s)) == digests_from_another_process[task_name][s], f"split {s} differs"


def test_bad_split_name_lists_valid_splits(task: Task) -> None:
    with pytest.raises(ValueError) as err:
        task.split("tset")
    msg = str(err.value)
    assert "tset" in msg
    for s in task.split_levels():
        assert s in msg


# -- ground truth ------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["test", "harder"])
def test_check_accepts_target(task: Task, split: str) -> None:
    p = task.split(split)
    ok = task.check(p, p.target)
    assert ok.dtype == torch.bool and ok.shape == (p.num_instances,)
    assert ok.all()


def test_check_rejects_perturbed_target(task: Task) -> None:
    p = task.split("test")
    assert not task.check(p, p.target + 0.5).any()
    noise = torch.randn(p.target.shape, generator=gen(0))
    assert not task.check(p, p.target + noise).any()


def test_loss_is_zero_at_target(task: Task) -> None:
    p = task.generate(4, task.difficulty, gen(0))
    assert torch.equal(task.loss(p, p.target), torch.zeros(4))
    assert (task.loss(p, p.target + 0.5) > 0).all()
    metrics = task.metrics(p, p.target + 0.5)
    assert metrics and all(v.shape == (4,) for v in metrics.values())


# -- difficulty ---------------------------------------------------------------------------------


def test_difficulty_per_instance(task: Task) -> None:
    p = task.generate(7, task.difficulty, gen(0))
    assert isinstance(p.difficulty, torch.Tensor)
    assert p.difficulty.shape == (7,)
    assert torch.isfinite(p.difficulty).all()
    assert task.split("harder").difficulty.shape == (SIZES["test_size"],)


def test_per_instance_difficulty_tensor(task: Task) -> None:
    n = 6
    scalar = task.generate(n, task.difficulty, gen(5))
    tensor = task.generate(n, torch.full((n,), task.difficulty), gen(5))
    assert_same_problem(scalar, tensor)
    levels = torch.tensor([task.difficulty, task.harder_difficulty] * (n // 2))
    mixed = task.generate(n, levels, gen(5))
    assert mixed.difficulty.shape == (n,)
    assert task.check(mixed, mixed.target).all()


@pytest.mark.parametrize("shape", [(7,), (6, 1), (3,)])
def test_wrong_shaped_difficulty_raises(task: Task, shape: tuple[int, ...]) -> None:
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
    keys = [k for k in ("size", "n", "min_nodes") if k in cfg]
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
    assert name == ("mlp" if is_dense(p) else "gnn")


def test_solver_smoke_with_untrained_energy(task: Task, compose_config, config_names) -> None:
    _, energy = fitting_energy(task, compose_config, config_names)
    solver = instantiate(compose_config("train", ("solver=gd",)).solver)
    p = task.generate(4, task.difficulty, gen(0))
    y0 = task.init_answer(p, gen(1))
    result = solver.solve(energy, p.x, y0, budget=3, segment=p.segment)
    assert result.y.shape == p.target.shape
    assert torch.isfinite(result.y).all()
    assert result.steps.shape == (p.num_instances,)
    assert (result.steps <= 3).all()


HIGHER_IS_BETTER_NAMES = ("accuracy", "balanced_accuracy", "psnr", "within_")


def test_study_declarations_name_real_metrics(task_name: str, compose_config) -> None:
    """Every task's headline metric and higher-is-better metrics are ones its `metrics` computes, and
    no metric that reads as a score (accuracy, PSNR, within tolerance) is left as an error."""
    built = instantiate(compose_config("train", (f"task={task_name}",)).task, **SIZES)
    problem = built.split("test")
    metrics = built.metrics(problem, built.init_answer(problem, gen(0)))
    assert built.error_metric in metrics  # (a family may declare scores some of its tasks do not compute)
    scores = {m for m in metrics if m.startswith(HIGHER_IS_BETTER_NAMES)}
    assert scores <= built.higher_is_better, f"{task_name}: declare {sorted(scores - built.higher_is_better)}"
    assert built.error_metric not in built.higher_is_better or built.error_metric in scores
    assert built.difficulty_label and (built.level_label is None or built.level_label)
    if built.level_label is not None and built.study_levels is not None:  # the task accepts its own levels
        built.generate(2, built.study_levels[0], gen(0))
