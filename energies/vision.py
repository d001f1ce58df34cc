"""A bidirectional Energy-Based Transformer (EBT) for images, on the DiT backbone of networks/vision.py.

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
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.networks.vision import Backbone, check_images


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
