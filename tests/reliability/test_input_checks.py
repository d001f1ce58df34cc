"""Bad input is refused with what is wrong: an image folder holding a truncated PNG or a text file
saved as .png names the file (tasks/images.py), and the graph tasks' `check` refuses corrupted
problems (wrong shapes, NaN features, edge ids out of range) while judging a NaN answer wrong
(tasks/graph.py); EdgeCopy's ground truth validates its graph as the other graph tasks' do."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from irem.problem import Problem
from irem.tasks.graph import Connectivity, EdgeCopy, ShortestPath
from irem.tasks.images import ImageDenoising


def image_folder(tmp_path):
    """Three good photographs, to which each test adds one bad file."""
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    for i in range(3):
        imsave(tmp_path / f"img{i}.png", (rng.random((40, 40, 3)) * 255).astype(np.uint8), check_contrast=False)
    return tmp_path


def test_a_truncated_png_is_named_with_what_is_wrong(tmp_path) -> None:
    folder = image_folder(tmp_path)
    whole = (folder / "img0.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut\.png has a PNG header but cannot be decoded .*truncated or damaged"):
        ImageDenoising(path=str(folder), faces=False, test_size=2, val_size=2)


def test_a_text_file_saved_as_png_is_named_not_sent_to_a_plugin(tmp_path) -> None:
    folder = image_folder(tmp_path)
    (folder / "x.png").write_bytes(b"hello, this is text\n")
    with pytest.raises(ValueError, match=r"x\.png is not a PNG image \(it starts with b'hello, t'") as err:
        ImageDenoising(path=str(folder), faces=False, test_size=2, val_size=2)
    assert "pip install" not in str(err.value)
    (folder / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"x\.png is not a PNG image \(it is empty"):
        ImageDenoising(path=str(folder), faces=False, test_size=2, val_size=2)


GRAPH_TASKS = {"edge_copy": EdgeCopy, "shortest_path": ShortestPath, "connectivity": Connectivity}


def corrupted(problem: Problem, what: str) -> Problem:
    out = copy.copy(problem)
    out.x = copy.copy(problem.x)
    if what == "nan feature":
        out.x.edge_attr = problem.x.edge_attr.clone()
        out.x.edge_attr[5, 0] = math.nan
    elif what == "edge id out of range":
        out.x.edge_index = problem.x.edge_index.clone()
        out.x.edge_index[1, 0] = 999
    elif what == "edge across graphs":
        out.x.edge_index = problem.x.edge_index.clone()
        out.x.edge_index[1, 0] = int(problem.x.edge_index.max())  # a node of the last graph
    elif what == "edge_attr rows":
        out.x.edge_attr = problem.x.edge_attr[:-1]
    return out


CORRUPTIONS = {
    "nan feature": r"edge_attr holds NaN or inf in 1 of \d+ edge rows \(first: row 5\)",
    "edge id out of range": r"edge index out of range: node ids must lie in \[0, \d+\].*got ids in \[0, 999\]",
    "edge across graphs": r"an edge joins two different graphs",
    "edge_attr rows": r"edge_attr has shape \(\d+, 1\); this task reads \[num_edges, edge_dim\]",
}


@pytest.mark.parametrize("name", sorted(GRAPH_TASKS))
def test_graph_check_refuses_corrupted_input_and_judges_a_nan_answer_wrong(name: str) -> None:
    task = GRAPH_TASKS[name](test_size=4, val_size=4)
    problem = task.generate(3, 4.0, torch.Generator().manual_seed(0))
    y = problem.target
    assert task.check(problem, y).all()
    owner = type(task).__name__
    for what, message in CORRUPTIONS.items():
        with pytest.raises(ValueError, match=rf"{owner}\.check: {message}"):
            task.check(corrupted(problem, what), y)
    rows = problem.x.edge_index.shape[1]
    for wrong in (y[:-2], y.repeat(1, 2)):
        with pytest.raises(
            ValueError, match=rf"the answer has shape .*needs one value per edge row, shape \({rows}, 1\)"
        ):
            task.check(problem, wrong)
    nan = y.clone()
    nan[0] = math.nan  # a diverged answer: wrong, not an error
    assert task.check(problem, nan).tolist() == [False, True, True]


def test_edge_copy_ground_truth_validates_its_graph() -> None:
    counts, weight = torch.tensor([2]), torch.tensor([0.5, 0.25])
    with pytest.raises(ValueError, match=r"edge copy: edge index out of range"):
        EdgeCopy().truth(counts, torch.tensor([[0, 1], [1, 5]]), weight, torch.tensor([[0, 1], [1, 5]]))
    with pytest.raises(ValueError, match=r"edge copy: edge weights contain NaN"):
        EdgeCopy().truth(counts, torch.tensor([[0, 1], [1, 0]]), torch.tensor([0.5, math.nan]), None)
