"""An autoregressive Energy-Based Transformer (Gladstone et al. 2025) for text.

The blocks are Llama's (RMSNorm, rotary position embeddings, SwiGLU, no biases) from
networks/transformer.py, shared with the Transformer++ baseline (baselines/transformer.py) so the
two differ only in what they read and write. At every position t the EBT scores a candidate for the next token: a logit vector over the
vocabulary, turned into a distribution by softmax and into the model width by a linear map (the
EBT's "vocab-to-width" map, the counterpart of Transformer++'s output head). The transformer sees
the 2T sequence [context embeddings; candidate embeddings]. A generalized causal mask lets
context t attend to context 0..t, and candidate t to context 0..t and to itself only, so all T
positions are scored in parallel and no candidate sees a later token or another candidate.
Candidate t sits at rotary position t + 1, the slot of the token it predicts.

A learned per-step embedding is added to every candidate embedding, so descent step k has its own
landscape; steps past the last trained one reuse the last embedding (System 2 inference runs more
steps than training). A final norm and a linear head give one scalar energy per position.

The gradient a solver follows is taken with respect to the logits (the softmax is inside the
energy), so descent moves unconstrained logits and the candidate always stays a distribution.

Shapes: `energy_per_position(tokens [B, T], logits [B, T, V], step) -> [B, T]` is the model.
`energy(x, y, step)` is the `EnergyFunction` contract, where an instance is one predicted token
(DESIGN): y is the flat [B * T, V] answer of tasks/text.py and the result is [B * T], row
b * T + t being position t of window b; it is the same function through a reshape.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.networks.transformer import Block, RMSNorm, check_transformer_sizes, rotary_tables, window_tokens


def ebt_mask(length: int, device: torch.device | None = None) -> Tensor:
    """Boolean [2T, 2T] mask, True where attention is allowed, for the sequence [context; candidates].

    Context t sees context 0..t; candidate t sees context 0..t and candidate t itself.
    """
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=device)
    top = torch.cat([causal, torch.zeros_like(causal)], dim=1)
    bottom = torch.cat([causal, eye], dim=1)
    return torch.cat([top, bottom], dim=0)


class TransformerEnergy(EnergyFunction):
    """E(context, candidate logits) per position; see the module docstring."""

    def __init__(
        self,
        vocab_size: int,
        context: int,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        max_steps: int = 8,
    ) -> None:
        super().__init__()
        check_transformer_sizes("TransformerEnergy", vocab_size, context, width, depth, heads)
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"TransformerEnergy: max_steps must be an integer >= 1, got {max_steps!r}.")
        self.vocab_dim, self.context_dim, self.width_dim = vocab_size, context, width
        self.heads, self.max_steps = heads, max_steps
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.candidate_map = nn.Linear(vocab_size, width, bias=False)  # vocab-to-width
        self.step_embedding = nn.Embedding(max_steps, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = RMSNorm(width)
        self.head = nn.Linear(width, 1, bias=False)
        nn.init.normal_(self.step_embedding.weight, std=0.02)
        positions = torch.cat([torch.arange(context), torch.arange(1, context + 1)])
        cos, sin = rotary_tables(positions, width // heads)
        self.register_buffer("rotary_cos", cos, persistent=False)
        self.register_buffer("rotary_sin", sin, persistent=False)

    def energy_per_position(self, tokens: Tensor, logits: Tensor, step: int = 0) -> Tensor:
        """[B, T] energies of candidate logits [B, T, V] after context ids [B, T]."""
        b, t = tokens.shape
        if t > self.context_dim or logits.shape != (b, t, self.vocab_dim):
            raise ValueError(
                f"TransformerEnergy(vocab_size={self.vocab_dim}, context={self.context_dim}) got tokens of shape "
                f"{tuple(tokens.shape)} and logits of shape {tuple(logits.shape)}; expected [B, T <= context] and "
                f"[B, T, vocab_size]."
            )
        step_id = min(int(step), self.max_steps - 1)
        candidates = self.candidate_map(logits.softmax(dim=-1)) + self.step_embedding.weight[step_id]
        h = torch.cat([self.token_embedding(tokens).to(candidates.dtype), candidates], dim=1)
        index = torch.cat([torch.arange(t), torch.arange(self.context_dim, self.context_dim + t)])
        cos, sin = self.rotary_cos[index], self.rotary_sin[index]
        mask = ebt_mask(t, tokens.device)
        for block in self.blocks:
            h = block(h, cos, sin, mask)
        return self.head(self.norm(h[:, t:])).squeeze(-1)

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        """Flat view: y [B * T, V] -> [B * T], one instance per predicted token."""
        tokens = window_tokens(x)
        b, t = tokens.shape
        if y.shape != (b * t, self.vocab_dim):
            raise ValueError(
                f"TransformerEnergy(vocab_size={self.vocab_dim}) got {b} windows of {t} tokens and y of shape "
                f"{tuple(y.shape)}; expected flat logits ({b * t}, {self.vocab_dim}), one row per position."
            )
        return self.energy_per_position(tokens, y.reshape(b, t, self.vocab_dim), step).reshape(b * t)
