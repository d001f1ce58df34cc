"""The layers of irem/ (docs/design.md): contracts free of Hydra, and imports that never go in a circle.

The contracts (irem.task, irem.energy, irem.solver, irem.objective, irem.predictor, irem.problem)
and the engine (trainer, evaluation, study, generation) are plain Python and torch: a plug-in or a
script that imports them pulls in no configuration layer. Imports
are read from the source (every `import`, at the top or inside a function, except those only type
checkers see), so a circle is found whether or not it would fail at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "irem": "irem",
    "tasks": "irem.tasks",
    "energies": "irem.energies",
    "solvers": "irem.solvers",
    "objectives": "irem.objectives",
    "baselines": "irem.baselines",
    "networks": "irem.networks",
    "ired": "irem.ired",
}
PLUG_INS = set(FOLDERS) - {"irem"}
CONTRACTS = ("irem.task", "irem.energy", "irem.solver", "irem.objective", "irem.predictor", "irem.problem")
# irem/'s layers, lowest first (docs/design.md): a module imports only its own layer and those below
LAYERS = {
    "primitives": "errors budgets seeds settings schedules resolve openmp data_files",
    "contracts": "problem task energy solver objective predictor",
    "engine": "energy_model replay evaluation problem_sets study generation trainer callbacks checkpoint run_lock "
    "device ema solver_settings records tables plots",
    "application": "cli precheck config build run_identity run_guard composition study_command generate_command",
}
# the engine that library code drives without a command line: training, evaluation, studies, generation
ENGINE = ("irem.trainer", "irem.energy_model", "irem.evaluation", "irem.checkpoint", "irem.study", "irem.generation")


def hydra_loaded_by(modules: tuple[str, ...]) -> list[str]:
    """The configuration modules loaded by importing `modules` in a fresh interpreter."""
    code = f"import sys, {', '.join(modules)}; print(sorted(m for m in ('hydra', 'omegaconf') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip())  # a printed list of strings


def test_the_contracts_and_the_engine_import_no_hydra() -> None:
    """One interpreter for all of them (a subprocess each costs seconds); on a failure each module
    is imported alone, so the message names the one that pulls Hydra in."""
    if hydra_loaded_by(CONTRACTS + ENGINE):
        culprits = {m: hydra_loaded_by((m,)) for m in CONTRACTS + ENGINE}
        raise AssertionError(f"these import a configuration layer: { {m: v for m, v in culprits.items() if v} }")


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The repository's modules `path` imports, leaving out `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & known


def folder_of(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else "irem"
    return part if part in PLUG_INS else "irem"


def a_circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return path[path.index(v) :] + [v]
            if v not in state and (found := visit(v)):
                return found
        path.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_no_import_circle_inside_irem_or_between_folders() -> None:
    mods = modules()
    graph = {m: runtime_imports(p, set(mods)) - {m} for m, p in mods.items()}
    core = {m: {t for t in ts if folder_of(t) == "irem"} for m, ts in graph.items() if folder_of(m) == "irem"}
    assert a_circle(core) is None, " -> ".join(a_circle(core))
    folders: dict[str, set[str]] = {}
    for m, ts in graph.items():
        folders.setdefault(folder_of(m), set()).update(folder_of(t) for t in ts if folder_of(t) != folder_of(m))
    assert a_circle(folders) is None, " -> ".join(a_circle(folders))
    assert not folders.get("irem"), f"irem/ imports plug-in folders: {sorted(folders['irem'])}"


def layer_of(module: str) -> int:
    name = module.split(".")[1]
    for i, names in enumerate(LAYERS.values()):
        if name in names.split():
            return i
    raise AssertionError(f"{module} has no layer: add it to LAYERS here and to the picture in docs/design.md")


def test_each_irem_module_imports_only_its_layer_and_those_below() -> None:
    mods = modules()
    core = [m for m in mods if m.startswith("irem.") and m.count(".") == 1 and m.split(".")[1] not in PLUG_INS]
    layer_names = list(LAYERS)
    upward = [
        f"{m} ({layer_names[layer_of(m)]}) imports {t} ({layer_names[layer_of(t)]})"
        for m in core
        for t in sorted(runtime_imports(mods[m], set(mods)))
        if t in core and t != m and layer_of(t) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)
