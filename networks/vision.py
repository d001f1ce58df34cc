"""The DiT-style backbone (patches, adaLN-Zero blocks conditioned on a vector), shared by the vision
Energy-Based Transformer (energies/vision.py) and the diffusion baseline (baselines/dit.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_vision_sizes(
    owner: str, channels: int, image_size: int, patch: int, width: int, depth: int, heads: int
) -> None:
    """Whole numbers >= 1, a patch that tiles the image, heads that divide the width, an even width/4
    for the 2-D sin-cos table."""
    sizes = {
        "channels": channels,
        "image_size": image_size,
        "patch": patch,
        "width": width,
        "depth": depth,
        "heads": heads,
    }
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}.")
    if image_size % patch:
        raise ValueError(f"{owner}: patch ({patch}) must divide image_size ({image_size}).")
    if width % heads or width % 4:
        raise ValueError(f"{owner}: width must be a multiple of 4 and of heads, got width={width}, heads={heads}.")


def sincos_2d(width: int, grid: int) -> Tensor:
    """DiT/MAE's fixed 2-D sin-cos embedding [grid * grid, width]: half the width codes the row, half
    the column, each as sines and cosines of geometrically spaced frequencies."""
    quarter = width // 4
    omega = 1.0 / 10_000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )

    def code(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([code(rows), code(cols)], dim=1).float()


def modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return h * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Bidirectional multi-head self-attention over the patches."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        b, length, width = h.shape
        q, k, v = self.qkv(h).view(b, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        a = scores.softmax(dim=-1) @ v
        return self.out(a.transpose(1, 2).reshape(b, length, width))


class AdaLNBlock(nn.Module):
    """DiT block with adaLN-Zero: c sets shift/scale of both norms and gates both residual branches."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * width, width)
        )
        self.ada = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        h = h + gate1[:, None] * self.attn(modulate(self.norm1(h), shift1, scale1))
        return h + gate2[:, None] * self.mlp(modulate(self.norm2(h), shift2, scale2))


class Backbone(nn.Module):
    """Patchify -> + 2-D sin-cos positions -> adaLN-Zero blocks -> adaLN final layer -> `out_per_patch`
    values per patch (zero-initialised). Input images [N, in_channels, S, S], condition c [N, width];
    output [N, patches, out_per_patch], patches in row-major order."""

    def __init__(
        self,
        in_channels: int,
        out_per_patch: int,
        image_size: int = 32,
        patch: int = 4,
        width: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        owner: str = "Backbone",
    ) -> None:
        super().__init__()
        check_vision_sizes(owner, in_channels, image_size, patch, width, depth, heads)
        self.in_channels, self.image_size, self.patch, self.width = in_channels, image_size, patch, width
        self.grid = image_size // patch
        self.embed = nn.Conv2d(in_channels, width, kernel_size=patch, stride=patch)
        self.register_buffer("positions", sincos_2d(width, self.grid), persistent=False)
        self.blocks = nn.ModuleList(AdaLNBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(width, 2 * width)
        self.head = nn.Linear(width, out_per_patch)
        for layer in (self.final_ada, self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, images: Tensor, c: Tensor) -> Tensor:
        h = self.embed(images).flatten(2).transpose(1, 2) + self.positions  # [N, patches, width]
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=-1)
        return self.head(modulate(self.final_norm(h), shift, scale))

    def unpatchify(self, values: Tensor, channels: int) -> Tensor:
        """[N, patches, patch * patch * channels] -> images [N, channels, S, S]."""
        n, p, g = values.shape[0], self.patch, self.grid
        x = values.reshape(n, g, g, channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(n, channels, g * p, g * p)


def check_images(owner: str, images: Any, channels: int, image_size: int, what: str) -> Tensor:
    """A float image batch [N, channels, S, S]; anything else is a clear error (the shared energy tests
    try an energy on every task, and a graph batch or a flat matrix must be refused, not misread)."""
    if (
        not isinstance(images, Tensor)
        or images.dim() != 4
        or tuple(images.shape[1:]) != (channels, image_size, image_size)
    ):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"{owner}(channels={channels}, image_size={image_size}) expects {what} images of shape "
            f"[N, {channels}, {image_size}, {image_size}], got {got}."
        )
    return images
