"""energies/transformer.py and baselines/transformer.py: no future leaks into a position's energy,
the parallel mask equals running each prefix alone, gradients in the logits check numerically,
parameter counts match, and a tiny Transformer++ training lowers its loss."""

from __future__ import annotations

import pytest
import torch

from irem.baselines.transformer import TransformerPP
from irem.energies.transformer import TransformerEnergy, ebt_mask
from irem.tasks.text import TextTask, TokenWindows

V, T = 11, 6


def tiny(dtype: torch.dtype = torch.float32) -> TransformerEnergy:
    torch.manual_seed(0)
    return TransformerEnergy(vocab_size=V, context=T, width=16, depth=2, heads=2, max_steps=3).to(dtype)


def inputs(b: int = 2, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, V, (b, T), generator=g), torch.randn(b, T, V, generator=g, dtype=dtype)


def test_mask_layout() -> None:
    m = ebt_mask(3)
    # candidate 1 (row 4) sees context 0, 1 and itself only
    assert m[4].tolist() == [True, True, False, False, True, False]
    # context never sees a candidate
    assert not m[:3, 3:].any()


def test_future_tokens_do_not_change_earlier_energies() -> None:
    model = tiny()
    tokens, logits = inputs()
    with torch.no_grad():
        base = model.energy_per_position(tokens, logits)
        for j in range(T):
            t2, l2 = tokens.clone(), logits.clone()
            t2[:, j] = (t2[:, j] + 1) % V
            l2[:, j] = torch.randn(2, V)
            e = model.energy_per_position(t2, l2)
            assert torch.allclose(e[:, :j], base[:, :j], atol=1e-6)
            assert not torch.allclose(e[:, j], base[:, j])  # the perturbation does reach position j


def test_parallel_equals_each_prefix_alone() -> None:
    model = tiny(torch.float64)
    tokens, logits = inputs(dtype=torch.float64)
    with torch.no_grad():
        parallel = model.energy_per_position(tokens, logits, step=1)
        for i in range(T):
            alone = model.energy_per_position(tokens[:, : i + 1], logits[:, : i + 1], step=1)[:, -1]
            assert torch.allclose(parallel[:, i], alone, atol=1e-10)


def test_energy_gradient_in_the_logits_checks_numerically() -> None:
    model = tiny(torch.float64)
    tokens, logits = inputs(b=1, dtype=torch.float64)
    y = logits.reshape(T, V).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y: model.energy(TokenWindows(tokens), y, step=2), (y,))


def test_steps_have_their_own_landscape_and_later_steps_reuse_the_last() -> None:
    model = tiny()
    tokens, logits = inputs()
    y = logits.reshape(-1, V)
    with torch.no_grad():
        e = [model.energy(tokens, y, step=s) for s in range(5)]
    assert e[0].shape == (2 * T,)
    assert not torch.allclose(e[0], e[1])
    assert torch.equal(e[2], e[4])
    with pytest.raises(ValueError, match="one row per position"):
        model.energy(tokens, logits)


def test_parameter_counts_match_up_to_step_embedding_and_energy_head() -> None:
    ebt = TransformerEnergy(vocab_size=256, context=64)
    pp = TransformerPP(vocab_size=256, context=64)
    n_ebt, n_pp = (sum(p.numel() for p in m.parameters()) for m in (ebt, pp))
    # the EBT's vocab-to-width map and Transformer++'s output head are both 256 x 128
    assert ebt.candidate_map.weight.numel() == pp.output.weight.numel()
    assert (n_ebt, n_pp) == (858_368, 857_216)
    assert n_ebt - n_pp == 8 * 128 + 128  # step embeddings + energy head


def test_bad_sizes_are_reported() -> None:
    with pytest.raises(ValueError, match="even head size"):
        TransformerEnergy(vocab_size=V, context=T, width=12, heads=4)
    with pytest.raises(ValueError, match="max_steps"):
        TransformerEnergy(vocab_size=V, context=T, max_steps=0)


def test_tiny_transformer_pp_training_lowers_the_loss(tmp_path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    task = TextTask(context=16, path=str(path), test_size=4, val_size=4)
    torch.manual_seed(0)
    model = TransformerPP(vocab_size=256, context=16, width=32, depth=2, heads=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    val = task.split("val")
    before = float(task.loss(val, model.predict(task, val, [1], g).answers["1"]).mean())
    for _ in range(40):
        loss, _ = model.training_loss(task, task.sample(8, g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(task.loss(val, model.predict(task, val, [1], g).answers["1"]).mean())
    assert after < before - 2.0


def test_gradient_descent_runs_on_the_flat_per_position_view() -> None:
    from irem.solvers.gradient_descent import GradientDescent

    task = TextTask(context=8, test_size=2, val_size=2)
    torch.manual_seed(0)
    energy = TransformerEnergy(vocab_size=256, context=8, width=16, depth=1, heads=2, max_steps=2)
    p = task.sample(3, torch.Generator().manual_seed(0))
    y0 = task.init_answer(p, torch.Generator().manual_seed(1))
    result = GradientDescent(step_size=1.0, max_steps=3).solve(energy, p.x, y0, budget=3)
    assert result.y.shape == (24, 256) and result.steps.shape == (24,)
    assert torch.isfinite(result.y).all() and not torch.equal(result.y, y0)


def test_second_order_gradient_for_descent_training() -> None:
    """IREM/EBT training differentiates through a descent step: d/dtheta of dE/dy must exist."""
    model = tiny()
    tokens, logits = inputs()
    y = logits.reshape(-1, V).requires_grad_(True)
    (g,) = torch.autograd.grad(model.energy(tokens, y).sum(), y, create_graph=True)
    loss = (y - 0.1 * g).pow(2).sum()
    loss.backward()
    assert model.candidate_map.weight.grad is not None and model.candidate_map.weight.grad.abs().sum() > 0
    assert model.step_embedding.weight.grad[0].abs().sum() > 0
