"""Training under torchrun with DistributedDataParallel: 2 CPU processes, the gloo backend.

The ranks draw different batches, so their weights stay equal only if DDP averages the gradients;
the checkpoint holds both ranks' generators, so a resumed 2-process run continues; irem-train runs
under torchrun unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import torch.distributed as dist
    from irem.energies.transformer import TransformerEnergy
    from irem.energy_model import EnergyModel
    from irem.objectives.irem import IREMObjective
    from irem.trainer import Trainer
    from irem.solvers.gradient_descent import GradientDescent
    from irem.tasks.text import TextTask

    out, iterations = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(0)  # the same initial weights on both ranks (DDP also broadcasts rank 0's)
    task = TextTask(context=8, test_size=4, val_size=4)
    energy = TransformerEnergy(**task.dims(), width=16, depth=1, heads=2, max_steps=2)
    model = EnergyModel(energy, GradientDescent(step_size=1.0, max_steps=2, learnable_step=True), IREMObjective(),
                        replay_capacity=0)
    initial = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    trainer = Trainer(task, model, out, iterations=iterations, batch_size=4, lr=1e-2, optimizer="adamw",
                      progress=False, checkpoint_every=1000)
    first = task.sample(4, torch.Generator().manual_seed(trainer.seed + 1_000_003 * trainer.rank))
    trainer.fit()
    state = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    torch.save({"state": state, "initial": initial, "first_tokens": first.x.tokens,
                "world": trainer.world_size}, f"{out}/rank{trainer.rank}.pt")
    dist.destroy_process_group()
    """
)


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_two_processes_average_gradients_and_resume(tmp_path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    done = torchrun([str(script), str(out), "3"], cwd=Path.cwd())
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert not torch.equal(r0["first_tokens"], r1["first_tokens"])  # the ranks saw different data
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), f"{key} differs between ranks: gradients were not averaged"
    moved = [k for k, v in r0["state"].items() if not torch.equal(v, r0["initial"][k])]
    assert "solver.log_step_size" in moved and len(moved) > 5

    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["iteration"] == 3 and len(ckpt["rank_generators"]) == 2
    assert not torch.equal(ckpt["rank_generators"][0], ckpt["rank_generators"][1])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == 2

    again = torchrun([str(script), str(out), "5"], cwd=Path.cwd())  # resumes at 3, trains 2 more
    assert again.returncode == 0, again.stderr[-3000:]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["iteration"] == 5


@pytest.mark.slow  # the command end to end under torchrun; test_two_processes_... covers DDP in the suite
def test_irem_train_runs_under_torchrun(tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "--no-python",
        str(BIN / "irem-train"),
        "task=text",
        "energy=transformer",
        "task.context=8",
        "task.val_size=4",
        "task.test_size=4",
        "energy.width=16",
        "energy.depth=1",
        "energy.heads=2",
        "solver.max_steps=2",
        "solver.step_size=1.0",
        "model.replay_capacity=0",
        "trainer.iterations=2",
        "trainer.batch_size=4",
        "trainer.progress=false",
        "eval.splits=[val]",
        "eval.budgets=[1,2]",
        "eval.batch_size=32",
        f"hydra.run.dir={run_dir}",
    ]
    done = torchrun(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run_dir / "train_summary.json").read_text())["processes"] == 2
    assert done.stdout.count("bits_per_byte") >= 1  # rank 0 evaluated
    assert len(json.loads((run_dir / "eval.json").read_text())) > 0
