"""Shared tests that every dense baseline in configs/baseline/ gets for free, plus PonderNet's loss.

(Graph baselines, sized by edge_dim, are tested in test_graph_baselines.py.) Each baseline is built from its config with hydra.utils.instantiate and sized by a small task
(4x4 matrix addition). It must answer every requested budget in the target's shape, be
deterministic, learn in a few dozen Adam steps, and reject bad arguments with a message naming
them. PonderNet's halting distribution and loss are checked against sums written out by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from irem.baselines.pondernet import PonderNet, geometric_log_prior, halting_log_distribution, ponder_loss
from irem.build import build_model
from irem.cli import CONFIG_DIR
from irem.config import valid_keys
from irem.evaluation import evaluate
from irem.predictor import Predictor
from irem.tasks.matrix import Addition
from irem.trainer import Trainer


def _reads_dense_input(name: str) -> bool:
    """Baselines sized by x_dim read flat tensors; graph baselines (edge_dim) have their own tests."""
    node = OmegaConf.load(Path(CONFIG_DIR) / "baseline" / f"{name}.yaml")
    return "x_dim" in (valid_keys(node) or [])


BASELINES = sorted(p.stem for p in (Path(CONFIG_DIR) / "baseline").glob("*.yaml") if _reads_dense_input(p.stem))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task() -> Addition:
    return Addition(size=4, test_size=64, val_size=16)


@pytest.fixture(params=BASELINES)
def baseline_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make(baseline_name: str, compose_config, task: Addition):
    """Build the baseline from its config, seeded, sized by the task, with optional overrides."""

    def build(seed: int = 0, **overrides) -> Predictor:
        cfg = compose_config("train", (f"baseline={baseline_name}",)).baseline
        torch.manual_seed(seed)
        return instantiate(cfg, **{**task.dims(), **overrides})

    return build


def test_baselines_found() -> None:
    assert {"feedforward", "recurrent", "residual", "pondernet"} <= set(BASELINES)


# -- built the way irem-train builds them ------------------------------------------------------


def test_builds_from_train_config(baseline_name: str, compose_config, task: Addition) -> None:
    cfg = compose_config("train", (f"baseline={baseline_name}",))
    assert "x_dim" not in cfg.baseline and "y_dim" not in cfg.baseline, "sizes come from the task"
    model = build_model(cfg, task)
    assert isinstance(model, Predictor)
    assert isinstance(model.default_budget, int) and model.default_budget >= 1


def test_trains_and_evaluates_with_the_trainer(make, task: Addition, tmp_path: Path) -> None:
    model = make()
    trainer = Trainer(task, model, tmp_path, iterations=2, batch_size=16, log_every=1, val_every=2, progress=False)
    summary = trainer.fit(resume=False)
    assert math.isfinite(summary["final_loss"])
    rows = evaluate(task, model, ["test"], [1, 3], batch_size=40)
    assert {r["budget"] for r in rows} == {"1", "3"}
    assert all(math.isfinite(r["value"]) for r in rows)


# -- answers -----------------------------------------------------------------------------------


def test_one_answer_per_budget(make, task: Addition) -> None:
    model = make()
    problem = task.split("test")
    # Unsorted, repeated, and past the training budget: evaluation asks for up to 8x more steps.
    budgets = [model.default_budget + 5, 1, 2, model.default_budget, 2]
    preds = model.predict(task, problem, budgets, gen(0))
    assert set(preds.answers) == {str(b) for b in budgets}
    for label, y in preds.answers.items():
        assert y.shape == problem.target.shape, label
        assert torch.isfinite(y).all(), label
        assert not y.requires_grad, label


def test_each_budget_as_if_asked_alone(make, task: Addition) -> None:
    """Snapshots of one long run equal separate runs to each budget."""
    model = make()
    problem = task.split("test")
    budgets = [1, 3, model.default_budget + 2]
    together = model.predict(task, problem, budgets, gen(0)).answers
    for b in budgets:
        alone = model.predict(task, problem, [b], gen(0)).answers[str(b)]
        torch.testing.assert_close(together[str(b)], alone, rtol=1e-5, atol=1e-6)


def test_rejects_bad_budgets(make, task: Addition) -> None:
    model = make()
    problem = task.split("test")
    with pytest.raises(ValueError, match="budgets"):
        model.predict(task, problem, [], gen(0))
    with pytest.raises(ValueError, match="budgets"):
        model.predict(task, problem, [-1, 2], gen(0))


def test_rejects_a_task_of_another_size(make) -> None:
    model = make()
    other = Addition(size=5, test_size=8)
    with pytest.raises(ValueError, match="addition"):
        model.predict(other, other.split("test"), [1], gen(0))
    with pytest.raises(ValueError, match="addition"):
        model.training_loss(other, other.sample(8, gen(0)), gen(0))


# -- determinism and learning ------------------------------------------------------------------


def test_deterministic(make, task: Addition) -> None:
    problem = task.split("test")
    a, b = make(seed=3), make(seed=3)
    pa = a.predict(task, problem, [1, 4], gen(7)).answers
    pb = b.predict(task, problem, [1, 4], gen(7)).answers
    for label in pa:
        assert torch.equal(pa[label], pb[label]), label
    batch = task.sample(16, gen(1))
    la, _ = a.training_loss(task, batch, gen(2))
    lb, _ = b.training_loss(task, batch, gen(2))
    assert torch.equal(la, lb)


def test_training_lowers_the_loss(make, task: Addition) -> None:
    model = make()
    problem = task.split("test")
    budget = model.default_budget

    def test_loss() -> float:
        y = model.predict(task, problem, [budget], gen(1)).answers[str(budget)]
        return float(task.loss(problem, y).mean())

    before = test_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = gen(0)
    for _ in range(60):
        loss, logs = model.training_loss(task, task.sample(64, g), g)
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert all(isinstance(v, float) for v in logs.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = test_loss()
    assert after < 0.7 * before, f"test loss {before:.4g} -> {after:.4g} after 60 steps"


# -- bad constructor arguments -----------------------------------------------------------------


def construct(cfg: DictConfig, **kwargs) -> Predictor:
    """Call the class itself: hydra.utils.instantiate would wrap the ValueError in its own."""
    args = {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")}
    return get_class(cfg._target_)(**{**args, **kwargs})


@pytest.mark.parametrize("key", ["x_dim", "y_dim"])
def test_rejects_non_positive_dims(baseline_name: str, key: str, compose_config, task: Addition) -> None:
    cfg = compose_config("train", (f"baseline={baseline_name}",)).baseline
    with pytest.raises(ValueError, match=key):
        construct(cfg, **{**task.dims(), key: 0})


BAD_ARGS = [
    ("feedforward", "width", 0),
    ("feedforward", "depth", 0),
    ("feedforward", "activation", "nope"),
    ("recurrent", "hidden", 0),
    ("recurrent", "steps", 0),
    ("residual", "width", -3),
    ("residual", "depth", 0),
    ("residual", "steps", 0),
    ("residual", "activation", "nope"),
    ("pondernet", "hidden", 0),
    ("pondernet", "max_steps", 0),
    ("pondernet", "lambda_p", 0.0),
    ("pondernet", "lambda_p", 1.0),
    ("pondernet", "beta", -0.1),
]


@pytest.mark.parametrize(("name", "key", "value"), BAD_ARGS)
def test_rejects_bad_arguments(name: str, key: str, value, compose_config, task: Addition) -> None:
    cfg = compose_config("train", (f"baseline={name}",)).baseline
    assert key in cfg, f"configs/baseline/{name}.yaml no longer has '{key}'"
    with pytest.raises(ValueError, match=key):
        construct(cfg, **{**task.dims(), key: value})


# -- model-specific behaviour ------------------------------------------------------------------


def test_feedforward_ignores_the_budget(compose_config, task: Addition) -> None:
    model = instantiate(compose_config("train", ("baseline=feedforward",)).baseline, **task.dims())
    answers = model.predict(task, task.split("test"), [1, 5, 50], gen(0)).answers
    assert torch.equal(answers["1"], answers["5"]) and torch.equal(answers["1"], answers["50"])


@pytest.mark.parametrize("name", ["recurrent", "residual"])
def test_supervise_every_step_averages_the_steps(name: str, compose_config, task: Addition) -> None:
    cfg = compose_config("train", (f"baseline={name}", "baseline.steps=3")).baseline
    torch.manual_seed(0)
    last = instantiate(cfg, **task.dims())
    every = instantiate(cfg, **task.dims(), supervise_every_step=True)
    every.load_state_dict(last.state_dict())
    with torch.no_grad():  # make the residual update non-zero so the steps differ
        for p in every.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen(4)))
        last.load_state_dict(every.state_dict())
    batch = task.sample(16, gen(1))
    per_step = [
        float(task.loss(batch, every.predict(task, batch, [t], gen(2)).answers[str(t)]).mean()) for t in (1, 2, 3)
    ]
    with torch.no_grad():
        loss_every, logs = every.training_loss(task, batch, gen(2))
        loss_last, _ = last.training_loss(task, batch, gen(2))
    assert float(loss_every) == pytest.approx(sum(per_step) / 3, rel=1e-5)
    assert float(loss_last) == pytest.approx(per_step[-1], rel=1e-5)
    assert logs["loss_final"] == pytest.approx(per_step[-1], rel=1e-5)


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def hand_halting(logits: list[float]) -> list[float]:
    """p_n = lambda_n prod_{j<n} (1 - lambda_j); the last step takes what is left."""
    lam = [sigmoid(v) for v in logits]
    p, left = [], 1.0
    for n, ln in enumerate(lam):
        if n == len(lam) - 1:
            p.append(left)
        else:
            p.append(left * ln)
            left *= 1 - ln
    return p


def hand_ponder_loss(losses: list[list[float]], logits: list[list[float]], lambda_p: float, beta: float) -> float:
    """losses[n][i], logits[n][i]: per step n and instance i, averaged over instances."""
    steps, n_inst = len(logits), len(logits[0])
    q = [lambda_p * (1 - lambda_p) ** n for n in range(steps)]
    q = [v / sum(q) for v in q]
    total = 0.0
    for i in range(n_inst):
        p = hand_halting([logits[n][i] for n in range(steps)])
        total += sum(p[n] * losses[n][i] for n in range(steps))
        total += beta * sum(p[n] * math.log(p[n] / q[n]) for n in range(steps))
    return total / n_inst


def test_halting_distribution_sums_to_one() -> None:
    logits = torch.randn(7, 50, generator=gen(0)) * 4
    logits[:, 0] = 30.0  # halts at once: later steps carry vanishing but finite mass
    logits[:, 1] = -30.0  # never halts: the last step absorbs almost everything
    log_p = halting_log_distribution(logits)
    assert torch.isfinite(log_p).all()
    p = log_p.exp()
    torch.testing.assert_close(p.sum(dim=0), torch.ones(50), rtol=0, atol=1e-6)
    torch.testing.assert_close(p[:, 2], torch.tensor(hand_halting(logits[:, 2].tolist())), rtol=1e-5, atol=1e-7)
    assert p[0, 0] > 0.999 and p[-1, 1] > 0.999


def test_geometric_prior_is_normalised() -> None:
    q = geometric_log_prior(0.2, 5).exp()
    expected = torch.tensor([0.2 * 0.8**n for n in range(5)])
    torch.testing.assert_close(q, expected / expected.sum())


def test_ponder_loss_matches_hand_computation() -> None:
    logits = [[0.0, 1.0], [-1.0, 2.0], [0.5, -0.5]]
    losses = [[1.0, 2.0], [0.5, 0.25], [0.1, 3.0]]
    loss, logs = ponder_loss(torch.tensor(losses), torch.tensor(logits), lambda_p=0.3, beta=0.5)
    assert float(loss) == pytest.approx(hand_ponder_loss(losses, logits, 0.3, 0.5), rel=1e-6)
    expected_steps = sum(sum((n + 1) * hand_halting([r[i] for r in logits])[n] for n in range(3)) for i in range(2)) / 2
    assert logs["expected_steps"] == pytest.approx(expected_steps, rel=1e-6)
    assert float(ponder_loss(torch.tensor(losses), torch.tensor(logits), 0.3, 0.0)[0]) == pytest.approx(
        hand_ponder_loss(losses, logits, 0.3, 0.0), rel=1e-6
    )


def test_pondernet_training_loss_matches_hand_computation(task: Addition) -> None:
    torch.manual_seed(0)
    model = PonderNet(**task.dims(), hidden=8, max_steps=3, lambda_p=0.25, beta=0.1)
    batch = task.sample(4, gen(0))
    loss, _ = model.training_loss(task, batch, gen(0))
    with torch.no_grad():
        ys, logits = zip(*model.iterate(batch.x, 3), strict=True)
        losses = [task.loss(batch, y).tolist() for y in ys]
        halt = [v.tolist() for v in logits]
    assert loss.item() == pytest.approx(hand_ponder_loss(losses, halt, 0.25, 0.1), rel=1e-5)


@pytest.mark.parametrize(
    ("halt_probability", "budgets", "steps"),
    [
        (0.3, [1, 2, 5], [1, 2, 2]),  # cumulative 0.3, 0.51: halts at step 2
        (0.1, [3, 6, 10], [3, 6, 7]),  # 1 - 0.9^7 = 0.52: halts at 7, past max_steps=3
    ],
)
def test_pondernet_halts_where_cumulative_probability_passes_half(
    halt_probability: float, budgets: list[int], steps: list[int], task: Addition
) -> None:
    torch.manual_seed(0)
    model = PonderNet(**task.dims(), hidden=8, max_steps=3)
    with torch.no_grad():
        model.halt.weight.zero_()
        model.halt.bias.fill_(math.log(halt_probability / (1 - halt_probability)))
    problem = task.split("test")
    preds = model.predict(task, problem, budgets, gen(0))
    with torch.no_grad():
        ys = [y for y, _ in model.iterate(problem.x, max(budgets))]
    for b, s in zip(budgets, steps, strict=True):
        assert torch.equal(preds.info["halt_step"][str(b)], torch.full((problem.num_instances,), s))
        assert preds.info["steps_mean"][str(b)] == s
        torch.testing.assert_close(preds.answers[str(b)], ys[s - 1])
