"""irem/study.py, irem/plots.py and the irem-study command: every cell written, per-instance steps
of the adaptive solver, records that agree with each other, plots, clear errors, graph tasks.

The in-process study descends an exact energy for matrix inverse, ||A Y - I||^2, whose descent
slows with the conditioning of A, so the instances of one batch stop at different steps and the
adaptive records have something to show. The command itself runs as a user runs it.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess

import pytest
import torch
from commands import finish, start
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

from irem.cli import CONFIG_DIR
from irem.energy import EnergyFunction
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.plots import study_plots
from irem.problem_sets import LevelError, make_sets
from irem.records import log_tensorboard, write_study
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.gradient_descent import GradientDescent
from irem.solvers.halting import EnergyPlateau
from irem.study import StudyError, measure
from irem.study_command import ignored_overrides, solver_configs
from irem.tables import format_study
from irem.tasks.graph import ShortestPath
from irem.tasks.matrix import Inverse

SIZE, LEVELS, BUDGETS, INSTANCES, MAX_STEPS = 3, (1.0, 0.2), (1, 3, 6), 12, 40
SETS = ("1", "0.2", "mixed")


class ExactInverse(EnergyFunction):
    """E(A, Y) = ||A Y - I||^2 / size: minimised by the true inverse, slow where A is ill-conditioned."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        n = y.shape[0]
        a, m = x.reshape(n, self.size, self.size), y.reshape(n, self.size, self.size)
        return ((a @ m - torch.eye(self.size)) ** 2).flatten(1).sum(1) / self.size


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    task = Inverse(size=SIZE, test_size=8, val_size=8)
    gd = GradientDescent(step_size=0.02, max_steps=4)
    model = EnergyModel(ExactInverse(SIZE), gd, IREMObjective(), replay_capacity=0)
    adaptive = AdaptiveDescent(None, [EnergyPlateau(tol=1e-2, patience=2)], max_steps=MAX_STEPS).with_base(gd)
    result = measure(
        task,
        model,
        {"gd": gd, "adaptive": adaptive},
        LEVELS,
        BUDGETS,
        instances=INSTANCES,
        batch_size=5,  # three batches per set: 5, 5, 2
        progress=False,
        title="test-study",
    )
    out = tmp_path_factory.mktemp("study")
    paths = write_study(result, out)
    log_tensorboard(result, out)
    plots = study_plots(result, out)
    return {"study": result, "out": out, "paths": paths, "plots": plots}


def test_every_cell_is_written(study) -> None:
    cells = study["study"].cells
    keys = [(c["solver"], c["set"], c["budget"]) for c in cells]
    assert len(keys) == len(set(keys))
    expected = {("gd", s, b) for s in SETS for b in BUDGETS} | {("adaptive", s, MAX_STEPS) for s in SETS}
    assert set(keys) == expected
    for c in cells:
        assert c["n"] == INSTANCES and c["metric"] == "mse"
        assert c["seconds"] > 0 and math.isfinite(c["error"]) and c["error"] > 0
        assert c["level"] == (None if c["set"] == "mixed" else float(c["set"]))
        if c["solver"] == "gd":  # a fixed solver takes every step of its budget
            assert c["steps_mean"] == c["steps_median"] == c["budget"]


def test_more_steps_of_an_exact_energy_lower_the_error(study) -> None:
    """Descent on ||AY - I||^2 with a stable step must improve with the budget at every level."""
    for s in SETS:
        errors = [c["error"] for c in study["study"].cells if c["solver"] == "gd" and c["set"] == s]
        assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]


def test_snapshot_errors_equal_separate_timed_solves(study) -> None:
    """The timed solve at each budget reproduces the snapshot of the one long solve (plain descent)."""
    for c in study["study"].cells:
        assert c["timed_error"] == pytest.approx(c["error"], rel=1e-5)


def test_adaptive_steps_are_recorded_per_instance(study) -> None:
    rows = study["study"].instances
    assert {r["solver"] for r in rows} == {"adaptive"}
    for s in SETS:
        mine = [r for r in rows if r["set"] == s]
        assert sorted(r["instance"] for r in mine) == list(range(INSTANCES))
        cell = next(c for c in study["study"].cells if c["solver"] == "adaptive" and c["set"] == s)
        assert cell["steps_mean"] == pytest.approx(sum(r["steps"] for r in mine) / INSTANCES)
        assert cell["error"] == pytest.approx(sum(r["error"] for r in mine) / INSTANCES)
    steps = [r["steps"] for r in rows]
    assert all(1 <= k <= MAX_STEPS for k in steps)
    assert len(set(steps)) > 1, "the exact energy's instances should stop at different steps"
    for r in rows:
        if r["steps"] < MAX_STEPS:  # stopped early: by the plateau rule
            assert r["status"] == "converged" and r["stopped_by"] == "plateau"
        else:
            assert r["status"] == "max_steps" and r["stopped_by"] == ""


def test_instances_carry_level_and_task_difficulty(study) -> None:
    rows = study["study"].instances
    for r in rows:
        assert r["level"] in LEVELS
        assert r["difficulty"] >= 1.0  # a condition number
    mixed = [r for r in rows if r["set"] == "mixed"]
    assert {r["level"] for r in mixed} == set(LEVELS)
    # a smaller shift c gives worse conditioning: the medians per level are ordered
    summary = {(lv["set"], lv["level"]): lv for lv in study["study"].levels}
    assert summary[("0.2", 0.2)]["difficulty_median"] > summary[("1", 1.0)]["difficulty_median"]
    assert summary[("mixed", 0.2)]["n"] + summary[("mixed", 1.0)]["n"] == INSTANCES


def test_csv_and_json_agree(study) -> None:
    out = study["out"]
    record = json.loads((out / "study.json").read_text())
    with (out / "study.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(record["cells"]) == len(study["study"].cells)
    for row, cell in zip(rows, record["cells"], strict=True):
        assert set(row) == set(cell)
        for key, value in cell.items():
            if value is None:
                assert row[key] == ""
            elif isinstance(value, bool):
                assert row[key] == str(value)
            elif isinstance(value, (int, float)):
                assert float(row[key]) == value, key
            else:
                assert row[key] == value
    with (out / "instances.csv").open() as f:
        instances = list(csv.DictReader(f))
    assert len(instances) == len(study["study"].instances)
    assert [int(r["steps"]) for r in instances] == [r["steps"] for r in study["study"].instances]
    assert record["budgets"] == list(BUDGETS) and record["level_values"] == list(LEVELS)
    assert record["solvers"]["adaptive"]["adaptive"] and not record["solvers"]["gd"]["adaptive"]
    # over all instances and the mixed set, and against what the task records per instance (inverse: its shift c)
    assert set(record["correlations"]["adaptive"]) == {"all", "mixed", "info_shift"}
    assert all("info_shift" in r for r in instances)


def test_tensorboard_has_study_scalars_and_histograms(study) -> None:
    events = EventAccumulator(str(study["out"] / "tb"), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    for s in SETS:
        scalars = events.Scalars(f"study/gd/mse/{s}")
        assert [e.step for e in scalars] == list(BUDGETS)
        assert f"study/adaptive/steps/{s}" in tags["histograms"]
        histogram = events.Histograms(f"study/adaptive/steps/{s}")[0].histogram_value
        assert histogram.num == INSTANCES and 1 <= histogram.min <= histogram.max <= MAX_STEPS


def test_plots_are_written(study) -> None:
    import matplotlib.image

    names = {p.name for p in study["plots"]}
    assert names == {"error_vs_steps.png", "steps_vs_difficulty.png", "error_vs_seconds.png"}
    for path in study["plots"]:
        image = matplotlib.image.imread(path)
        assert image.shape[0] >= 400 and image.shape[1] >= 600
        assert image[..., :3].std() > 0.05, f"{path.name} is blank"


def test_the_table_shows_every_level_and_the_adaptive_steps(study) -> None:
    text = format_study(study["study"])
    assert "gd mse" in text and "gd seconds" in text and "steps 6" in text
    assert "adaptive (max 40 steps)" in text and "Spearman(steps, condition number)" in text
    # issue 32: what the level and difficulty columns hold, in the task's words
    assert "(level: diagonal shift c; difficulty: the median condition number of its instances)" in text
    for s in SETS:
        assert f"\n{' ' * len('test-study  ')}{s}" in text


class InverseAccuracy(Inverse):
    """Inverse judged by a higher-is-better headline: the fraction of instances within MSE 0.05."""

    name = "inverse_accuracy"
    error_metric = "accuracy"
    higher_is_better = frozenset({"accuracy"})

    def metrics(self, problem, y):
        mse = self.loss(problem, y.detach())
        return {"mse": mse, "accuracy": (mse < 0.05).float()}


def test_a_higher_is_better_headline_is_studied_and_labelled(tmp_path) -> None:
    """The study reports the task's declared headline, not its first metric, and says its direction."""
    task = InverseAccuracy(size=SIZE, test_size=8, val_size=8)
    gd = GradientDescent(step_size=0.02, max_steps=4)
    model = EnergyModel(ExactInverse(SIZE), gd, IREMObjective(), replay_capacity=0)
    result = measure(task, model, {"gd": gd}, LEVELS, (1, 40, 400), instances=INSTANCES, progress=False, title="acc")
    assert result.metric == "accuracy" and result.higher_is_better == ["accuracy"]
    for s in SETS:
        cells = [c for c in result.cells if c["set"] == s]
        assert all(c["metric"] == "accuracy" and 0.0 <= c["error"] <= 1.0 and "mse" in c for c in cells)
        accuracy, mse = [c["error"] for c in cells], [c["mse"] for c in cells]
        assert accuracy == sorted(accuracy) and mse == sorted(mse, reverse=True)  # more steps: better both ways
    assert max(c["error"] for c in result.cells) > 0.5  # the exact energy solves most instances
    assert "gd accuracy (higher is better)" in format_study(result)
    record = json.loads(write_study(result, tmp_path)[0].read_text())
    assert record["metric"] == "accuracy" and record["higher_is_better"] == ["accuracy"]
    from irem.plots import _metric_axis

    assert _metric_axis(result) == "accuracy (mean over instances, higher is better)"


def test_a_baseline_is_studied_through_its_own_predict() -> None:
    """A feed-forward network has no budgets: one cell per set, its errors per level, no instance rows."""
    from irem.baselines.feedforward import FeedForward
    from irem.baselines.recurrent import Recurrent

    task = Inverse(size=SIZE, test_size=8, val_size=8)
    torch.manual_seed(0)
    ff = FeedForward(**task.dims(), width=8, depth=1)
    result = measure(task, ff, {"FeedForward": ff}, LEVELS, BUDGETS, instances=INSTANCES, progress=False)
    assert [(c["set"], c["budget"]) for c in result.cells] == [(s, 1) for s in SETS]
    assert all(c["steps_mean"] == 1.0 and not c["adaptive"] and c["n"] == INSTANCES for c in result.cells)
    assert result.instances == [] and result.solvers["FeedForward"]["predictor"] == "FeedForward"
    sets = make_sets(task, LEVELS, INSTANCES, seed=0)
    with torch.no_grad():
        expected = [float(task.loss(s.problem, ff(s.problem.x).reshape(-1, SIZE * SIZE)).mean()) for s in sets]
    assert [c["error"] for c in result.cells] == pytest.approx(expected, rel=1e-6)
    text = format_study(result)
    assert "FeedForward mse" in text and "steps 1" in text and "steps 3" not in text
    recurrent = Recurrent(**task.dims(), hidden=8, steps=2)
    cells = measure(task, recurrent, {"Recurrent": recurrent}, LEVELS, BUDGETS, instances=4, progress=False).cells
    assert [c["budget"] for c in cells if c["set"] == "1"] == list(BUDGETS)  # its iterations are budgets
    assert [c["steps_mean"] for c in cells if c["set"] == "1"] == [float(b) for b in BUDGETS]


def test_a_task_without_levels_is_refused_with_its_splits() -> None:
    from irem.problem_sets import levels_to_use
    from irem.tasks.text import TextTask

    with pytest.raises(LevelError, match="Task 'text' has no difficulty levels.*train, val, test"):
        levels_to_use(TextTask(context=4, test_size=2, val_size=2), None)


def test_unknown_solver_lists_the_valid_choices() -> None:
    with pytest.raises(StudyError) as err:
        solver_configs(["gd", "nope"], CONFIG_DIR)
    message = str(err.value)
    assert "'nope'" in message
    for name in ("gd", "adaptive", "gd_accept", "langevin"):
        assert name in message


def test_solver_configs_compose_their_defaults() -> None:
    nodes = solver_configs(["gd_accept", "adaptive"], CONFIG_DIR)
    assert nodes["gd_accept"].transforms.accept_if_lower.shrink == 0.5 and nodes["gd_accept"].step_size == 100.0
    assert nodes["adaptive"].descent is None


def test_a_level_the_task_rejects_is_reported() -> None:
    with pytest.raises(LevelError, match=r"level -1 is rejected by task 'inverse'.*test=0\.5"):
        make_sets(Inverse(size=2, test_size=4, val_size=4), [0.5, -1.0], instances=2, seed=0)
    with pytest.raises(LevelError, match=r"level 2\.5 is rejected by task 'graph_shortest_path'.*harder=15"):
        make_sets(ShortestPath(test_size=4, val_size=4), [2.5], instances=2, seed=0)


def test_sets_are_seeded_per_level() -> None:
    """A level's instances do not depend on which other levels are studied."""
    task = Inverse(size=2, test_size=4, val_size=4)
    alone = make_sets(task, [0.5], instances=3, seed=0)[0]
    among = make_sets(task, [1.0, 0.5], instances=3, seed=0)[1]
    assert torch.equal(alone.problem.x, among.problem.x)


def test_training_overrides_with_a_run_dir_are_named() -> None:
    assert ignored_overrides(["run_dir=x", "trainer.iterations=5", "task=addition", "solver=gd", "levels=[1]"]) == [
        "trainer.iterations=5",
        "task=addition",
    ]


def test_joblib_launcher_is_available() -> None:
    """The README's multirun recipe: hydra/launcher=joblib composes (the plugin is installed)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("study", overrides=["hydra/launcher=joblib", "name=t"], return_hydra_config=True)
    assert "JoblibLauncher" in cfg.hydra.launcher._target_


# -- the command ----------------------------------------------------------------------------------

TINY_GRAPH = [
    "task=graph_shortest_path",
    "energy=gnn",
    "energy.width=8",
    "energy.depth=1",
    "trainer.iterations=3",
    "trainer.batch_size=8",
    "trainer.progress=false",
    "levels=[3,5]",
    "instances=4",
    "budgets=[1,2]",
    "solvers=[gd,adaptive]",
    "threads=1",
    "progress=false",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """A tiny graph study (training included), and errors, side by side."""
    root = tmp_path_factory.mktemp("cmd")
    graph = root / "graph"
    procs = {
        "graph": start("irem-study", [*TINY_GRAPH, f"hydra.run.dir={graph}"], root),
        "bad_solver": start("irem-study", ["solvers=[gd,nope]", f"hydra.run.dir={root / 'bad'}"], root),
        "bad_level": start("irem-study", ["levels=[0.5,0]", f"hydra.run.dir={root / 'bad'}"], root),
    }
    out = {"graph_dir": graph, **{k: finish(p) for k, p in procs.items()}}
    if out["graph"].returncode == 0:
        again = start(
            "irem-study", [f"run_dir={graph}", "solvers=[gd]", "budgets=[1,3]", "instances=3", "progress=false"], root
        )
        ignored = start("irem-study", [f"run_dir={graph}", "trainer.iterations=9"], root)
        settings = [f"run_dir={graph}", "solvers=[adaptive]", "instances=3", "progress=false", "plots=false"]
        # own output dirs: run_dir/study/<second> would be shared with `again`, started the same second
        tuned_dir = root / "tuned"
        tuned = start(
            "irem-study",
            [
                *settings,
                "+solver_settings.momentum=0.5",
                "+solver_settings.accept_if_lower=true",
                f"hydra.run.dir={tuned_dir}",
            ],
            root,
        )
        misspelt = start(
            "irem-study", [*settings, "+solver_settings.momentun=0.5", f"hydra.run.dir={root / 'bad'}"], root
        )
        out["tuned_dir"] = tuned_dir
        out["again"], out["ignored"] = finish(again), finish(ignored)
        out["tuned"], out["misspelt"] = finish(tuned), finish(misspelt)
    return out


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )


def test_graph_study_runs_end_to_end(runs) -> None:
    ok(runs["graph"])
    out = runs["graph_dir"]
    assert "gd mse" in runs["graph"].stdout and "Spearman(steps, nodes)" in runs["graph"].stdout
    for name in ("study.json", "study.csv", "instances.csv", "error_vs_steps.png", "steps_vs_difficulty.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "last.pt").is_file()
    record = json.loads((out / "study.json").read_text())
    assert record["task"] == "graph_shortest_path" and record["level_label"] == "nodes"
    sets = {c["set"] for c in record["cells"]}
    assert sets == {"3", "5", "mixed"}
    assert {c["budget"] for c in record["cells"] if c["solver"] == "gd"} == {1, 2}
    assert "within_5pct" in record["cells"][0]
    with (out / "instances.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 4
    for r in rows:  # a graph's difficulty is its node count, which is its level
        assert float(r["difficulty"]) == float(r["level"]) in (3.0, 5.0)
        assert 1 <= int(r["steps"]) <= 80


def test_study_of_a_trained_run(runs) -> None:
    ok(runs["graph"])
    again = runs["again"]
    ok(again)
    results = [
        p for p in (runs["graph_dir"] / "study").glob("*/study.json") if "gd" in json.loads(p.read_text())["solvers"]
    ]
    assert len(results) == 1
    record = json.loads(results[0].read_text())
    assert {c["solver"] for c in record["cells"]} == {"gd"}
    assert {c["budget"] for c in record["cells"]} == {1, 3} and {c["n"] for c in record["cells"]} == {3}
    assert not (results[0].parent / "steps_vs_difficulty.png").exists()  # no adaptive solver, no such plot
    trained = json.loads((runs["graph_dir"] / "study.json").read_text())["title"]
    assert record["title"] == trained == "study-graph_shortest_path-gnn"  # titled by the run it studies


def test_solver_settings_reach_the_descent_the_adaptive_solver_wraps(runs) -> None:
    ok(runs["graph"])
    ok(runs["tuned"])
    record = json.loads((runs["tuned_dir"] / "study.json").read_text())
    assert list(record["solvers"]) == ["adaptive"]
    descent = record["solvers"]["adaptive"]["descent"]
    assert descent["type"] == "Descent"
    assert "Momentum(coef=0.5" in descent["describe"] and "AcceptIfLower(shrink=0.5)" in descent["describe"]
    misspelt = runs["misspelt"]
    assert misspelt.returncode != 0 and "Traceback" not in misspelt.stderr
    assert "solver_settings.momentun" in misspelt.stderr and "momentum" in misspelt.stderr


def test_training_keys_with_a_run_dir_are_refused(runs) -> None:
    ok(runs["graph"])
    ignored = runs["ignored"]
    assert ignored.returncode != 0
    assert "trainer.iterations=9" in ignored.stderr and "run_dir" in ignored.stderr


def test_bad_solver_name_fails_with_the_choices(runs) -> None:
    bad = runs["bad_solver"]
    assert bad.returncode != 0
    assert "Unknown solver 'nope'" in bad.stderr
    assert "Valid choices: " in bad.stderr and "adaptive" in bad.stderr and "gd_accept" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (runs["graph_dir"].parent / "bad" / "checkpoints").exists(), "the names are checked before training"


def test_bad_level_fails_before_training(runs) -> None:
    bad = runs["bad_level"]
    assert bad.returncode != 0
    assert "level 0 is rejected by task 'inverse'" in bad.stderr and "c must be > 0" in bad.stderr
    assert "trained" not in bad.stdout


def test_irem_study_of_a_feed_forward_run(tmp_path, compose_config) -> None:
    """A run trained with baseline=feedforward is studied: its error per level, records and plots."""
    from irem.cli import _fit

    run = tmp_path / "ff"
    train = ("baseline=feedforward", "baseline.width=8", "baseline.depth=1", "task.size=3", "task.test_size=4")
    train += ("task.val_size=4", "trainer.iterations=2", "trainer.batch_size=8", "trainer.progress=false")
    _fit(compose_config("train", (*train, "eval.run=false", "name=ff")), str(run))
    out = tmp_path / "study"
    args = [f"run_dir={run}", "instances=4", "levels=[1,0.2]", "progress=false", f"hydra.run.dir={out}"]
    done = finish(start("irem-study", args, tmp_path))
    ok(done)
    assert "FeedForward mse" in done.stdout and "steps 1" in done.stdout and "steps 2" not in done.stdout
    for s in ("1", "0.2", "mixed"):
        assert any(line.split()[:1] == [s] for line in done.stdout.splitlines()), s
    record = json.loads((out / "study.json").read_text())
    assert [(c["set"], c["budget"], c["solver"]) for c in record["cells"]] == [
        (s, 1, "FeedForward") for s in ("1", "0.2", "mixed")
    ]
    assert (out / "error_vs_steps.png").is_file() and (out / "error_vs_seconds.png").is_file()
    assert not (out / "steps_vs_difficulty.png").exists()  # nothing decided its own steps


def test_a_study_whose_own_training_explodes_ends_with_the_trainers_message(tmp_path) -> None:
    args = ["task.size=3", "energy.width=16", "trainer.iterations=3", "trainer.max_loss=1e-9", "plots=false"]
    done = finish(start("irem-study", [*args, f"hydra.run.dir={tmp_path}/study"], tmp_path))
    assert done.returncode != 0
    assert "irem-study: Training stopped at iteration" in done.stderr
    assert "exceeds trainer.max_loss=1e-09" in done.stderr
    assert "Traceback" not in done.stderr
