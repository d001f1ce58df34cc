"""irem/generation.py and irem-generate: byte-by-byte generation from a prompt with the EBT and Transformer++.

Untrained tiny models are enough for the library: length, determinism and "temperature 0 is the
argmax of the model's own logits" hold for any weights. The argmax ground truth is computed here
without the solver (a hand-written descent for the EBT, a forward pass for Transformer++). One
end-to-end test runs the console script on a tiny trained run.
"""

from __future__ import annotations

import json

import pytest
import torch
from commands import finish, start

from irem.baselines.transformer import TransformerPP
from irem.build import load_run
from irem.cli import _fit
from irem.energies.transformer import TransformerEnergy
from irem.energy_model import EnergyModel
from irem.generation import generate, generate_ids, printable
from irem.objectives.irem import IREMObjective
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.linear_system import LinearSystem
from irem.tasks.text import TextTask

CONTEXT = 6
PROMPT = "def f(x):"  # longer than the context, so the window is cut from the start
STEP_SIZE = 50.0
BUDGET = 3


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> TextTask:
    corpus = tmp_path_factory.mktemp("text") / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    return TextTask(context=CONTEXT, path=str(corpus), test_size=2, val_size=2)


def ebt() -> EnergyModel:
    torch.manual_seed(0)
    energy = TransformerEnergy(vocab_size=256, context=CONTEXT, width=16, depth=1, heads=2, max_steps=2)
    return EnergyModel(
        energy, GradientDescent(step_size=STEP_SIZE, max_steps=BUDGET), IREMObjective(), replay_capacity=0
    )


def transformer_pp() -> TransformerPP:
    torch.manual_seed(0)
    return TransformerPP(vocab_size=256, context=CONTEXT, width=16, depth=1, heads=2)


MODELS = {"ebt": ebt, "transformer_pp": transformer_pp}


@pytest.mark.parametrize("name", MODELS)
def test_length_and_seed_determinism(task, name) -> None:
    model = MODELS[name]()

    def run(seed: int) -> torch.Tensor:
        return generate_ids(task, model, list(b"ab"), 10, generator=torch.Generator().manual_seed(seed))

    first = run(1)
    assert first.shape == (10,) and first.dtype == torch.long
    assert int(first.min()) >= 0 and int(first.max()) < 256
    assert torch.equal(first, run(1))
    assert not torch.equal(first, run(2))  # near-uniform bytes: ten equal draws by chance are ~impossible
    text = generate(task, model, "ab", 10, generator=torch.Generator().manual_seed(1))
    assert text == bytes(first.tolist()).decode("utf-8", errors="replace")


def last_logits_by_hand(model, window: list[int], answer: str, generator: torch.Generator) -> torch.Tensor:
    """The next-byte logits without the solver or Predictor.predict."""
    tokens = torch.tensor(window)[None]
    if isinstance(model, TransformerPP):
        with torch.no_grad():
            return model(tokens)[0, -1]
    t, energy = len(window), model.energy
    y = (torch.rand((t, 256), generator=generator) * 2 - 1).requires_grad_(True)  # TextTask's start
    iterates, energies = [], []
    for step in range(BUDGET + 1):
        e = energy.energy_per_position(tokens, y.view(1, t, 256), step=step)[0, -1]
        iterates.append(y[-1].detach())
        energies.append(float(e.detach()))
        if step < BUDGET:
            (g,) = torch.autograd.grad(e, y)
            y = (y - STEP_SIZE * g).detach().requires_grad_(True)
    if answer == "best":
        return iterates[min(range(len(energies)), key=energies.__getitem__)]
    return iterates[-1]


@pytest.mark.parametrize(("name", "answer"), [("ebt", "budget"), ("ebt", "best"), ("transformer_pp", "budget")])
def test_temperature_zero_is_the_argmax_of_the_models_logits(task, name, answer) -> None:
    model = MODELS[name]()
    got = generate_ids(
        task, model, list(PROMPT.encode()), 8, BUDGET, 0.0, torch.Generator().manual_seed(3), answer=answer
    )
    ids, reference = list(PROMPT.encode()), torch.Generator().manual_seed(3)
    for _ in range(8):
        ids.append(int(last_logits_by_hand(model, ids[-CONTEXT:], answer, reference).argmax()))
    assert got.tolist() == ids[len(PROMPT) :]


def test_a_short_prompt_works_and_the_budget_matters(task) -> None:
    """A one-byte prompt gives a window shorter than the context; more descent steps change the text."""
    model = ebt()
    one = generate_ids(task, model, [ord("t")], 4, 1, 0.0, torch.Generator().manual_seed(0))
    three = generate_ids(task, model, [ord("t")], 4, 3, 0.0, torch.Generator().manual_seed(0))
    assert one.shape == three.shape == (4,)
    assert not torch.equal(one, three)


def test_errors_say_what_is_wrong(task) -> None:
    model, pp = ebt(), transformer_pp()
    with pytest.raises(ValueError, match="needs a text task; this run's task is 'linear_system'"):
        generate(LinearSystem(n=2, test_size=2, val_size=2), model, "a", 1)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        generate(task, model, "a", 1, temperature=-0.5)
    with pytest.raises(ValueError, match="length must be a whole number of bytes >= 0"):
        generate(task, model, "a", -1)
    with pytest.raises(ValueError, match="budget must be a whole number of descent steps >= 1"):
        generate(task, model, "a", 1, budget=0)
    with pytest.raises(ValueError, match="Valid choices: budget .*best"):
        generate(task, model, "a", 1, answer="lowest")
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(task, model, "", 1)
    with pytest.raises(ValueError, match="only an energy model has; this run holds a TransformerPP"):
        generate(task, pp, "a", 1, answer="best")
    assert generate(task, pp, "a", 0) == ""


def test_the_console_script_generates_from_a_trained_run(compose_config, tmp_path) -> None:
    """Trained in-process by irem-train's own `_fit` (one process start less), generated by the script."""
    run_dir, cwd = tmp_path / "run", tmp_path / "cwd"
    cwd.mkdir()
    train = (
        "task=text",
        "energy=transformer",
        f"task.context={CONTEXT}",
        "task.test_size=2",
        "task.val_size=2",
        "energy.width=16",
        "energy.depth=1",
        "energy.heads=2",
        "solver.max_steps=2",
        "model.replay_capacity=0",
        "trainer.iterations=2",
        "trainer.batch_size=2",
        "trainer.progress=false",
        "eval.run=false",
        "name=generate-test",
    )
    _fit(compose_config("train", train), str(run_dir))
    out_dir = tmp_path / "generated"
    args = [f"run_dir={run_dir}", 'prompt="The "', "length=12", "seed=5", "threads=1", f"hydra.run.dir={out_dir}"]
    generated = finish(start("irem-generate", args, cwd))
    assert generated.returncode == 0, generated.stderr[-3000:]
    record = json.loads((out_dir / "generation.json").read_text())
    assert record["prompt"] == "The " and record["budget"] == 2 and record["model"] == "EnergyModel"
    # printed with its control bytes escaped (a sampled ESC or backspace must not reach the terminal)
    assert generated.stdout.startswith(printable("The " + record["continuation"]))
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in generated.stdout)
    # the command's text is the library's, from the same checkpoint and seed
    _, _, text_task, model = load_run(run_dir)
    expected = generate(text_task, model.eval(), "The ", 12, 2, 1.0, torch.Generator().manual_seed(5))
    assert record["continuation"] == expected
    assert not list(cwd.iterdir()), "irem-generate wrote outside its hydra.run.dir"
