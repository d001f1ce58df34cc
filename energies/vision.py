"""A bidirectional Energy-Based Transformer (EBT) for images, and the DiT backbone it shares.

The backbone is DiT's (Peebles & Xie 2023) in small: a patch embedding (a `patch` x `patch`
convolution with stride `patch`), fixed 2-D sin-cos position embeddings, `depth` bidirectional
transformer blocks whose LayerNorms are modulated by a conditioning vector c through adaLN-Zero
(shift, scale and a residual gate per branch, all from a zero-initialised linear map of c, so every
block starts as the identity), and a final adaLN layer with a zero-initialised linear head per
patch. The diffusion and direct baselines (baselines/dit.py) use the same `Backbone` with a head
that writes pixels; the energy uses it with a scalar head.

The energy: E(x, y) = mean over patches of a scalar per patch, one energy per image. y, the
candidate clean image [N, C, H, W] with pixels in [0, 1], is the variable of descent. How the noisy
observation x enters is a choice split between the task and this energy:

- as the starting point: the task's `start: noisy` (tasks/images.py) starts descent at x clipped to
  [0, 1];
- as a condition: with `condition: true` the energy reads x beside y (the two images stacked along
  the channels before the patch embedding), so E can measure how far y has moved from x;
- both (the default: start at x and read it).

With `condition: false` the energy is E(y) alone, a learned image prior that the solver descends
from the noisy start for a trained number of steps. c is a learned vector (the energy is not told
the noise level; the diffusion baseline is, as DDIM needs it).

Attention is written out rather than fused: descent training differentiates through dE/dy, and the
fused CPU kernel has no second derivative (as in energies/transformer.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irem.energy import EnergyFunction


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


class VisionEnergy(EnergyFunction):
    """E(x, y): a bidirectional EBT over the patches of y (and of x with `condition`); see the module."""

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 32,
        patch: int = 4,
        width: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        condition: bool = True,
    ) -> None:
        super().__init__()
        self.channels_dim, self.image_size_dim, self.condition = channels, image_size, bool(condition)
        in_channels = 2 * channels if self.condition else channels
        self.backbone = Backbone(in_channels, 1, image_size, patch, width, depth, heads, mlp_ratio, "VisionEnergy")
        self.context = nn.Parameter(torch.zeros(width))  # c: one learned vector (no noise level is given)
        nn.init.normal_(self.context, std=0.02)

    def patch_energies(self, x: Any, y: Tensor) -> Tensor:
        """[N, patches] energies of candidate images y given the noisy observations x."""
        y = check_images("VisionEnergy", y, self.channels_dim, self.image_size_dim, "candidate")
        inputs = y * 2 - 1  # pixels in [0, 1] -> [-1, 1]
        if self.condition:
            x = check_images("VisionEnergy", x, self.channels_dim, self.image_size_dim, "observed")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"VisionEnergy: {x.shape[0]} observations but {y.shape[0]} candidates.")
            inputs = torch.cat([inputs, x.to(y.dtype) * 2 - 1], dim=1)
        c = self.context.expand(y.shape[0], -1)
        return self.backbone(inputs, c).squeeze(-1)

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        """One energy per image: the mean of its patch energies."""
        return self.patch_energies(x, y).mean(dim=1)
