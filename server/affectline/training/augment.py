"""Batched, seedable data augmentation on CPU tensors.

Everything works on a whole batch at once (one affine_grid/grid_sample call, masks built from
broadcast comparisons) because per-image Python loops would cost more than the network on 2 cores.
All randomness comes from the caller's torch.Generator, so a run is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip_p: float = 0.5
    max_rotate_deg: float = 12.0
    max_shift: float = 0.08  # fraction of the frame
    scale_range: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.15  # additive, in [0,1] pixel units
    contrast: float = 0.3  # multiplicative factor in [1-c, 1+c]
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.15)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def augment(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """x: float [N,1,H,W] pixels in [0,1] -> augmented copy in [0,1]."""
    n, _, h, w = x.shape
    # geometric: flip, rotation, scale and shift in one sampling pass (border padding: FER faces
    # fill the frame, black borders would be an artefact the test set never shows)
    flip = torch.where(torch.rand(n, generator=g) < cfg.flip_p, -1.0, 1.0)
    ang = _uniform(n, -cfg.max_rotate_deg, cfg.max_rotate_deg, g) * (math.pi / 180)
    inv_scale = 1.0 / _uniform(n, *cfg.scale_range, g)
    tx, ty = (_uniform(n, -cfg.max_shift, cfg.max_shift, g) * 2 for _ in range(2))  # grid units span 2
    cos, sin = torch.cos(ang) * inv_scale, torch.sin(ang) * inv_scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # photometric: contrast around each image's mean, then brightness
    c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g).view(n, 1, 1, 1)
    b = _uniform(n, -cfg.brightness, cfg.brightness, g).view(n, 1, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * c + mean + b).clamp(0, 1)
    # random erasing: one rectangle per selected image, filled with uniform noise
    area = _uniform(n, *cfg.erase_area, g) * h * w
    aspect = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), g))
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    y0 = torch.rand(n, generator=g) * (h - eh)
    x0 = torch.rand(n, generator=g) * (w - ew)
    on = (torch.rand(n, generator=g) < cfg.erase_p).view(n, 1, 1)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    mask = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1))
            & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + ew).view(n, 1, 1)) & on)
    noise = torch.rand(x.shape, generator=g)
    return torch.where(mask.unsqueeze(1), noise, x)
