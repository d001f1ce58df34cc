"""An autoregressive Energy-Based Transformer (Gladstone et al. 2025) for text, in one file.

The blocks are Llama's (RMSNorm, rotary position embeddings, SwiGLU, no biases), shared with the
Transformer++ baseline (baselines/transformer.py) so the two differ only in what they read and
write. At every position t the EBT scores a candidate for the next token: a logit vector over the
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
import torch.nn.functional as F
from torch import Tensor, nn

from irem.energy import EnergyFunction


def check_transformer_sizes(owner: str, vocab_size: int, context: int, width: int, depth: int, heads: int) -> None:
    for name, value in (("vocab_size", vocab_size), ("context", context), ("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}.")
    if not isinstance(heads, int) or heads < 1 or width % heads or (width // heads) % 2:
        raise ValueError(
            f"{owner}: heads must divide width into an even head size (rotary embeddings rotate pairs), "
            f"got width={width}, heads={heads}."
        )


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_tables(positions: Tensor, head_dim: int, base: float = 10_000.0) -> tuple[Tensor, Tensor]:
    """cos and sin [L, head_dim / 2] for the given integer positions."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = positions.double()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (even, odd) of x [B, H, L, D] by the position's angles."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        b, length, width = h.shape
        q, k, v = self.qkv(h).view(b, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if mask is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # Written out rather than fused: descent training backpropagates through the energy's
            # gradient (create_graph), and the fused CPU kernel has no second derivative.
            scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            a = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return self.out(a.transpose(1, 2).reshape(b, length, width))


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int | None = None) -> None:
        super().__init__()
        # Llama's 2/3 * 4 * width, rounded up to a multiple of 8.
        hidden = hidden or 8 * ((int(8 * width / 3) + 7) // 8)
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(h)) * self.up(h))


class Block(nn.Module):
    """Pre-norm Llama block."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(width)
        self.attn = Attention(width, heads)
        self.mlp_norm = RMSNorm(width)
        self.mlp = SwiGLU(width)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        h = h + self.attn(self.attn_norm(h), cos, sin, mask)
        return h + self.mlp(self.mlp_norm(h))


def ebt_mask(length: int, device: torch.device | None = None) -> Tensor:
    """Boolean [2T, 2T] mask, True where attention is allowed, for the sequence [context; candidates].

    Context t sees context 0..t; candidate t sees context 0..t and candidate t itself.
    """
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=device)
    top = torch.cat([causal, torch.zeros_like(causal)], dim=1)
    bottom = torch.cat([causal, eye], dim=1)
    return torch.cat([top, bottom], dim=0)


def window_tokens(x: Any) -> Tensor:
    """The [B, T] input ids of tasks/text.py's `TokenWindows`, or a bare id tensor."""
    tokens = getattr(x, "tokens", x)
    if not isinstance(tokens, Tensor) or tokens.dim() != 2:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"expected token ids of shape [windows, context], got {got}.")
    return tokens


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
