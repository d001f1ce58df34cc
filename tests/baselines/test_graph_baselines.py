"""Graph baselines (configs/baseline/ entries sized by edge_dim): shared behaviour on a graph task.

Each is built from its config the way irem-train builds it, on edge copy over complete graphs of
mixed sizes. It must answer every budget with one row per edge, be deterministic, give an instance
the same answer alone as in a mixed batch, learn, and reject a dense task with a clear message.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from irem.baselines.gnn import GNNFeedForward, GNNRecurrent
from irem.build import build_model
from irem.cli import CONFIG_DIR
from irem.config import valid_keys
from irem.evaluation import evaluate
from irem.predictor import Predictor
from irem.tasks.graph import EdgeCopy
from irem.tasks.matrix import Addition
from irem.trainer import Trainer


def _reads_graphs(name: str) -> bool:
    node = OmegaConf.load(Path(CONFIG_DIR) / "baseline" / f"{name}.yaml")
    return "edge_dim" in (valid_keys(node) or [])


GRAPH_BASELINES = sorted(p.stem for p in (Path(CONFIG_DIR) / "baseline").glob("*.yaml") if _reads_graphs(p.stem))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task() -> EdgeCopy:
    return EdgeCopy(max_nodes=6, test_nodes=6, harder_nodes=[8], test_size=12, val_size=8)


@pytest.fixture(params=GRAPH_BASELINES)
def make(request, compose_config, task: EdgeCopy):
    def build(seed: int = 0, **overrides) -> Predictor:
        cfg = compose_config(
            "train", (f"baseline={request.param}", *(f"baseline.{k}={v}" for k, v in overrides.items()))
        )
        torch.manual_seed(seed)
        return build_model(cfg, task)

    return build


def test_graph_baselines_found() -> None:
    assert {"gnn_feedforward", "gnn_recurrent"} <= set(GRAPH_BASELINES)


def test_same_width_as_the_energy(compose_config, task: EdgeCopy) -> None:
    energy = compose_config("train", ("energy=gnn",)).energy
    for name in GRAPH_BASELINES:
        assert compose_config("train", (f"baseline={name}",)).baseline.width == energy.width


def test_answers_every_budget_per_edge(make, task: EdgeCopy) -> None:
    model = make()
    p = task.split("test")
    budgets = [1, 3, model.default_budget + 2]
    preds = model.predict(task, p, budgets, gen(0))
    assert set(preds.answers) == {str(b) for b in budgets}
    for y in preds.answers.values():
        assert y.shape == p.target.shape and torch.isfinite(y).all() and not y.requires_grad


def test_deterministic_and_batch_independent(make, task: EdgeCopy) -> None:
    a, b = make(seed=3), make(seed=3)
    p = task.generate(4, torch.tensor([2.0, 5.0, 1.0, 4.0]), gen(1))
    ya = a.predict(task, p, [2], gen(0)).answers["2"]
    assert torch.equal(ya, b.predict(task, p, [2], gen(0)).answers["2"])
    for i in range(4):
        q = p.select(torch.tensor([i]))
        torch.testing.assert_close(a.predict(task, q, [2], gen(0)).answers["2"], ya[p.segment == i])


def test_trains_and_evaluates(make, task: EdgeCopy, tmp_path: Path) -> None:
    model = make()
    trainer = Trainer(task, model, tmp_path, iterations=2, batch_size=8, log_every=1, val_every=2, progress=False)
    assert math.isfinite(trainer.fit(resume=False)["final_loss"])
    rows = evaluate(task, model, ["test", "harder"], [1, 3], batch_size=5)
    assert {r["split"] for r in rows} == {"test", "harder"} and all(math.isfinite(r["value"]) for r in rows)


def test_training_lowers_the_loss(make, task: EdgeCopy) -> None:
    model = make(width=16)
    p = task.split("test")
    budget = model.default_budget

    def test_loss() -> float:
        return float(task.loss(p, model.predict(task, p, [budget], gen(1)).answers[str(budget)]).mean())

    before = test_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(0)
    for _ in range(40):
        loss, _ = model.training_loss(task, task.sample(16, g), g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert test_loss() < 0.7 * before


def test_rejects_a_dense_task(make) -> None:
    model = make()
    dense = Addition(size=3, test_size=4)
    with pytest.raises(NotImplementedError, match="addition"):
        model.predict(dense, dense.split("test"), [1], gen(0))


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (GNNFeedForward, "width", 0),
        (GNNFeedForward, "depth", 0),
        (GNNFeedForward, "aggr", "median"),
        (GNNRecurrent, "steps", 0),
        (GNNRecurrent, "edge_dim", 0),
        (GNNRecurrent, "activation", "nope"),
    ],
)
def test_rejects_bad_arguments(cls, key: str, value) -> None:
    with pytest.raises(ValueError, match=key):
        cls(**{"edge_dim": 1, key: value})
