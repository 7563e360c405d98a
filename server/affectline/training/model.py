"""The Affectline expression network: a small VGG-style CNN for 48x48 grayscale faces.

Four stages of two 3x3 conv-BN-ReLU layers, each followed by 2x2 max-pooling (48->24->12->6->3),
then global average pooling, dropout and one linear layer. Plain convolutions and BN fold into
fast ONNX graphs on CPU; no ops beyond opset 17's basics.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 7


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class ExpressionVGG(nn.Module):
    """`width` scales all stages: widths (w, 2w, 4w, 8w). width=32 has ~1.2M parameters."""

    def __init__(self, width: int = 32, num_classes: int = NUM_CLASSES, dropout: float = 0.3) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages, c_in = [], 1
        for w in widths:
            stages.append(_stage(c_in, w))
            c_in = w
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalised [N,1,H,W] in [-1,1] -> logits [N,classes]."""
        return self.head(self.features(x))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
