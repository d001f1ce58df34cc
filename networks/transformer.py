"""Llama's transformer blocks (RMSNorm, rotary position embeddings, SwiGLU, no biases), shared by the
text Energy-Based Transformer (energies/transformer.py) and the Transformer++ baseline
(baselines/transformer.py), so the two differ only in what they read and write.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


def window_tokens(x: Any) -> Tensor:
    """The [B, T] input ids of tasks/text.py's `TokenWindows`, or a bare id tensor."""
    tokens = getattr(x, "tokens", x)
    if not isinstance(tokens, Tensor) or tokens.dim() != 2:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"expected token ids of shape [windows, context], got {got}.")
    return tokens
