"""tasks/maze.py, tasks/maze_gen.py and tasks/maze_files.py: perfect mazes and their unique path checked
with networkx, deep-thinking's image layout rebuilt from its own slicing, the path check's rejections,
and the file layouts' round trips and errors."""

from __future__ import annotations

from dataclasses import replace

import networkx as nx
import numpy as np
import pytest
import torch

from irem.data_files import DataFileError
from irem.tasks import maze_files as files
from irem.tasks import maze_gen as mg
from irem.tasks.maze import Maze


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unit_graph(codes: torch.Tensor) -> nx.Graph:
    """The open units of one maze joined to their open neighbours."""
    g = nx.Graph()
    free = (codes != mg.WALL).numpy()
    h, w = free.shape
    for r in range(h):
        for c in range(w):
            if free[r, c]:
                g.add_node((r, c))
                for dr, dc in ((0, 1), (1, 0)):
                    if r + dr < h and c + dc < w and free[r + dr, c + dc]:
                        g.add_edge((r, c), (r + dr, c + dc))
    return g


def where(codes: torch.Tensor, code: int) -> tuple[int, int]:
    r, c = (codes == code).nonzero()[0].tolist()
    return r, c


# -- generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", mg.GENERATORS)
@pytest.mark.parametrize("size", [9, 15])
def test_mazes_are_perfect_and_the_path_is_the_shortest(kind: str, size: int) -> None:
    mazes = mg.generate_size(6, size, gen(1), kind)
    assert mazes.codes.shape == (6, size + 2, size + 2)
    for i in range(len(mazes)):
        g = unit_graph(mazes.codes[i])
        cells = ((size + 1) // 2) ** 2
        assert g.number_of_nodes() == 2 * cells - 1  # every cell and the cells - 1 passages of a tree
        assert nx.is_tree(g), "a perfect maze has exactly one path between any two units"
        s, t = where(mazes.codes[i], mg.START), where(mazes.codes[i], mg.GOAL)
        truth = set(nx.shortest_path(g, s, t))
        assert set(map(tuple, mazes.path[i].nonzero().tolist())) == truth
        assert int(mazes.path_length[i]) == len(truth) - 1


def test_kruskal_tree_is_the_minimum_spanning_tree_of_its_weights() -> None:
    c = 5
    weights = torch.rand(3, mg.grid_edges(c).shape[1], generator=gen(2))
    parent = mg.mst_tree(c, torch.tensor([0, 7, 24]), weights)
    u, v = mg.grid_edges(c)
    for i in range(3):
        g = nx.Graph()
        for e in range(u.shape[0]):
            g.add_edge(int(u[e]), int(v[e]), weight=float(weights[i, e]))
        mst = {frozenset(e) for e in nx.minimum_spanning_tree(g).edges()}
        ours = {frozenset((k, int(parent[i, k]))) for k in range(c * c) if int(parent[i, k]) >= 0}
        assert ours == mst


@pytest.mark.parametrize("kind", mg.GENERATORS)
def test_generation_is_deterministic_per_seed(kind: str) -> None:
    a, b = mg.generate_size(8, 11, gen(5), kind), mg.generate_size(8, 11, gen(5), kind)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.path, b.path)
    c = mg.generate_size(8, 11, gen(6), kind)
    assert not torch.equal(a.codes, c.codes)


def test_generators_differ_in_their_statistics() -> None:
    """DFS makes long corridors, Kruskal many short dead ends: its mean path is far shorter."""
    dfs = mg.generate_size(200, 15, gen(0), "dfs").path_length.float().mean()
    kruskal = mg.generate_size(200, 15, gen(0), "kruskal").path_length.float().mean()
    assert dfs > 1.5 * kruskal


def test_min_path_length_keeps_long_paths_only() -> None:
    task = Maze(min_path_length=30, test_size=4, val_size=4)
    p = task.generate(20, 9, gen(0))
    assert (p.info["path_length"] >= 30).all()
    assert task.check(p, task.target_answer(p)).all()
    with pytest.raises(ValueError, match="min_path_length"):
        Maze(min_path_length=-1)


def test_mixed_sizes_are_padded_with_wall() -> None:
    task = Maze(test_size=4, val_size=4)
    p = task.generate(4, torch.tensor([9.0, 15.0, 9.0, 15.0]), gen(0))
    assert p.x.shape == (4, 3, 17, 17)
    assert (p.x[0, :, 11:, :] == 0).all() and (p.x[0, :, :, 11:] == 0).all()
    assert torch.equal(p.difficulty, torch.tensor([9.0, 15.0, 9.0, 15.0]))
    assert task.check(p, task.target_answer(p)).all()


@pytest.mark.parametrize("bad", [8, 1, 9.5])
def test_bad_sizes_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="odd"):
        Maze(size=bad)
    with pytest.raises(ValueError, match="odd"):
        Maze(test_size=4, val_size=4).generate(2, float(bad), gen(0))


def test_unknown_generator_and_layout_list_the_choices() -> None:
    with pytest.raises(ValueError, match="dfs, kruskal"):
        Maze(generator="prim")
    with pytest.raises(ValueError, match="grid, image"):
        Maze(layout="pixels")


def test_splits_per_size() -> None:
    task = Maze(eval_sizes=[13, 59], test_size=3, val_size=2)
    assert list(task.split_levels()) == ["train", "val", "test", "size_13", "size_59", "harder"]
    assert task.split("size_59").x.shape == (3, 3, 61, 61)
    assert (task.split("test").difficulty == 9).all()


# -- deep-thinking's image layout -----------------------------------------------------------------


def deep_thinking_image(units: np.ndarray, m: int) -> np.ndarray:
    """make_mazes.py's enlargement of a [B, 2m+1, 2m+1, C] unit grid, written as it writes it."""
    img = 2 * (2 * m + 1) + 2
    border = (img - 4 * m) // 2
    big = np.zeros((units.shape[0], img, img, units.shape[-1]))
    big[:, border - 1 : -border : 2, border - 1 : -border : 2, :] = units
    big[:, border : -border + 1 : 2, border : -border + 1 : 2, :] = units
    big[:, border : -border + 1 : 2, border - 1 : -border : 2, :] = units
    big[:, border - 1 : -border : 2, border : -border + 1 : 2, :] = units
    return big


@pytest.mark.parametrize(("size", "side"), [(9, 24), (13, 32), (59, 124)])
def test_image_layout_is_deep_thinkings(size: int, side: int) -> None:
    mazes = mg.generate_size(3, size, gen(0))
    x, target = mg.render(mazes, "image")
    assert x.shape == (3, 3, side, side) and target.shape == (3, side, side)
    units = mg.COLOURS[mazes.codes.long()].numpy()
    m = (size + 1) // 2
    want_x = deep_thinking_image(units, m).transpose(0, 3, 1, 2)
    want_t = deep_thinking_image(mazes.path.numpy()[..., None].astype(float), m)[..., 0]
    np.testing.assert_array_equal(x.numpy(), want_x)
    np.testing.assert_array_equal(target.numpy(), want_t)
    # colours: start green, goal red, exactly one 2 x 2 block of each
    green = (x[:, 0] == 0) & (x[:, 1] == 1) & (x[:, 2] == 0)
    red = (x[:, 0] == 1) & (x[:, 1] == 0) & (x[:, 2] == 0)
    assert (green.flatten(1).sum(1) == 4).all() and (red.flatten(1).sum(1) == 4).all()


def test_check_in_the_image_layout_wants_whole_blocks() -> None:
    task = Maze(layout="image", test_size=4, val_size=4)
    p = task.generate(3, 9, gen(0))
    y = task.target_answer(p)
    assert task.check(p, y).all()
    r, c = (p.target[0] == 1).nonzero()[0].tolist()
    half = p.target.clone()
    half[0, r, c] = 0  # one pixel of a 2 x 2 block: not a drawable path
    ok = task.check(p, task.target_answer(replace(p, target=half)))
    assert ok.tolist() == [False, True, True]


# -- the check ----------------------------------------------------------------------------------

ROOM = [  # a maze with a loop (a 3 x 3 room) and a wall between S and G that a shortcut would cross
    "#######",
    "#S#...#",
    "#.#.#.#",
    "#.....#",
    "###.###",
    "#G....#",
    "#######",
]


def hand_maze(rows: list[str], path: list[str]) -> tuple[Maze, object]:
    code = {"#": mg.WALL, ".": mg.OPEN, "S": mg.START, "G": mg.GOAL}
    codes = torch.tensor([[code[ch] for ch in row] for row in rows], dtype=torch.uint8)[None]
    on = torch.tensor([[ch == "o" for ch in row] for row in path])[None]
    mazes = mg.Mazes(codes, on, torch.tensor([len(rows) - 2]), on.flatten(1).sum(1) - 1)
    task = Maze(test_size=4, val_size=4)
    return task, task.problem(mazes)


def answer(task: Maze, problem, rows: list[str]) -> torch.Tensor:
    on = torch.tensor([[ch == "o" for ch in row] for row in rows]).long()[None]
    return task.target_answer(replace(problem, target=on))


SHORTEST = ["#######", "#o#...#", "#o#.#.#", "#ooo..#", "###o###", "#ooo..#", "#######"]


def test_check_accepts_the_shortest_path() -> None:
    task, p = hand_maze(ROOM, SHORTEST)
    assert task.check(p, answer(task, p, SHORTEST)).tolist() == [True]


@pytest.mark.parametrize(
    "rows",
    [
        # broken: one unit of the path missing
        ["#######", "#o#...#", "#o#.#.#", "#o.o..#", "###o###", "#ooo..#", "#######"],
        # a detour round the room: a chain from start to goal, but longer than the path
        ["#######", "#o#ooo#", "#o#o#o#", "#ooo.o#", "###o###", "#ooo..#", "#######"],
        # a spur off the path: a unit with three neighbours on it
        ["#######", "#o#...#", "#o#.#.#", "#oooo.#", "###o###", "#ooo..#", "#######"],
        # through a wall: start straight down to the goal
        ["#######", "#o#...#", "#o#.#.#", "#o....#", "#o#.###", "#o....#", "#######"],
        # nothing at all
        ["#######", "#.#...#", "#.#.#.#", "#.....#", "###.###", "#.....#", "#######"],
    ],
    ids=["broken", "detour", "spur", "through-wall", "empty"],
)
def test_check_rejects(rows: list[str]) -> None:
    task, p = hand_maze(ROOM, SHORTEST)
    assert task.check(p, answer(task, p, rows)).tolist() == [False]


def test_check_rejects_a_broken_generated_path() -> None:
    task = Maze(test_size=4, val_size=4)
    p = task.generate(5, 11, gen(3))
    broken = p.target.clone()
    for i in range(5):
        on = broken[i].nonzero()
        r, c = on[len(on) // 2].tolist()
        if (p.x[i, :, r, c] == 1).all():  # an open unit in the middle of the path, not start or goal
            broken[i, r, c] = 0
    assert not task.check(p, task.target_answer(replace(p, target=broken))).any()


def test_metrics_exact_accuracy() -> None:
    task = Maze(test_size=4, val_size=4)
    p = task.generate(4, 9, gen(0))
    y = task.target_answer(p)
    y[0] = -y[0]  # every pixel of maze 0 flipped (walls stay off once the constraint applies)
    y = p.constraint.apply(y)
    m = task.metrics(p, y)
    assert m["accuracy"].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert float(m["pixel_accuracy"][0]) == 0.0 and float(m["pixel_accuracy"][1]) == 1.0


# -- files --------------------------------------------------------------------------------------


def same_mazes(a: mg.Mazes, b: mg.Mazes) -> None:
    assert torch.equal(a.codes, b.codes) and torch.equal(a.path, b.path)
    assert torch.equal(a.size, b.size) and torch.equal(a.path_length, b.path_length)


def test_npy_round_trip_and_task_split(tmp_path) -> None:
    mazes = mg.generate_size(5, 13, gen(0))
    files.save_npy(tmp_path / "maze_data_test_13", mazes)
    inputs = np.load(tmp_path / "maze_data_test_13" / "inputs.npy")
    assert inputs.shape == (5, 3, 32, 32)
    same_mazes(files.load(tmp_path / "maze_data_test_13"), mazes)
    task = Maze(files={"dt_13": str(tmp_path / "maze_data_test_13")}, test_size=3, val_size=2)
    split = task.split("dt_13")
    assert split.num_instances == 3 and (split.difficulty == 13).all()
    assert task.check(split, task.target_answer(split)).all()


def test_csv_round_trip(tmp_path) -> None:
    mazes = mg.generate_size(4, 11, gen(1), "kruskal")
    files.save_csv(tmp_path / "test.csv", mazes)
    header, first = (tmp_path / "test.csv").read_text().splitlines()[:2]
    assert header == "source,question,answer,rating"
    assert len(first.split(",")[1]) == 13 * 13 and set(first.split(",")[2]) <= set("# SGo")
    same_mazes(files.load(tmp_path / "test.csv"), mazes)


def write_csv(tmp_path, question: str, answer_text: str | None = None) -> str:
    path = tmp_path / "bad.csv"
    good_q = "#####" + "#S  #" + "### #" + "#G  #" + "#####"
    good_a = "#####" + "#Soo#" + "###o#" + "#Goo#" + "#####"
    path.write_text(f"source,question,answer,rating\nx,{good_q},{good_a},6\nx,{question},{answer_text or good_a},6\n")
    return str(path)


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("#####" + "#S  #" + "### #" + "#G  #" + "####", "24 characters, expected 25"),
        ("#####" + "#S  #" + "##x #" + "#G  #" + "#####", "unknown character 'x' in the question at row 3, column 3"),
        ("#####" + "#   #" + "### #" + "#G  #" + "#####", "no start"),
        ("#####" + "#S G#" + "### #" + "#G  #" + "#####", "2 goal cells"),
    ],
    ids=["wrong-shape", "unknown-character", "no-start", "two-goals"],
)
def test_csv_errors_name_file_and_row(tmp_path, question: str, message: str) -> None:
    path = write_csv(tmp_path, question)
    with pytest.raises(DataFileError) as err:
        files.load(path)
    assert f"{path}:3" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("fault", ["wrong-shape", "unknown-colour", "no-start", "two-goals"])
def test_npy_errors_name_file_and_maze(tmp_path, fault: str) -> None:
    folder = tmp_path / "maze_data_test_9"
    files.save_npy(folder, mg.generate_size(3, 9, gen(0)))
    x = np.load(folder / "inputs.npy")
    if fault == "wrong-shape":
        np.save(folder / "inputs.npy", x[:, :, :23, :])
        message = "inputs.npy: shape (3, 3, 23, 24)"
    else:
        green = (x[2, 0] == 0) & (x[2, 1] == 1) & (x[2, 2] == 0)
        if fault == "unknown-colour":
            x[2, :, 5, 5] = [0.5, 0.5, 0.5]
            message = "(maze 2): pixel (5, 5) has colour [0.5, 0.5, 0.5]"
        elif fault == "no-start":
            x[2][:, green] = 1.0
            message = "(maze 2): no start cell"
        else:  # an open unit (its 2 x 2 block) painted red beside the goal
            r, c = (mg.codes_of(torch.from_numpy(x), "image")[2] == mg.OPEN).nonzero()[0].tolist()
            x[2, :, 1 + 2 * r : 3 + 2 * r, 1 + 2 * c : 3 + 2 * c] = np.array([1.0, 0.0, 0.0])[:, None, None]
            message = "(maze 2): 2 goal cells"
        np.save(folder / "inputs.npy", x)
    with pytest.raises(DataFileError) as err:
        files.load(folder)
    assert str(folder / "inputs.npy") in str(err.value) and message in str(err.value)
