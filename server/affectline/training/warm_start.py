"""Warm start: initialise an ExpressionVGG from a registered model's fp32 ONNX file.

The exporter folds each BatchNorm into the convolution before it (weight W, bias b in the
file), so the BN layers cannot be read back. They are rebuilt so that the network computes
what the file computes: over a sample of training images, the conv's output u = W * x has
per-channel mean m and variance v; the BN gets running statistics (m, v), scale sqrt(v + eps)
and shift m + b. In eval mode that is u + b exactly (up to float rounding); in training mode
the BN normalises with each batch's own statistics instead, which for batches of the same
images are close to (m, v), so training continues from about where the file left off.

Works on the plain export and on the flip-averaged graph (scripts/build_flip_averaged_model.py)
alike: both hold the same Conv and Gemm weights; the temperature and flip nodes are not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

Layer = tuple[np.ndarray, np.ndarray]  # (weight, bias)


def onnx_layers(path: Path) -> tuple[list[Layer], Layer]:
    """The file's convolutions in graph order and its final linear layer (weight [out, in])."""
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs: list[Layer] = []
    gemms: list[Layer] = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        if len(node.input) < 3 or node.input[1] not in init or node.input[2] not in init:
            raise ValueError(f"{path}: {node.op_type} node {node.name!r} has no constant weight and bias")
        w, b = init[node.input[1]], init[node.input[2]]
        if node.op_type == "Conv":
            convs.append((w, b))
        else:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            gemms.append((w if trans_b else w.T, b))
    if len(gemms) != 1:
        raise ValueError(f"{path}: expected one Gemm (the classifier), found {len(gemms)}")
    return convs, gemms[0]


def _conv_bn_pairs(net: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    mods = list(net.modules())
    return [(m, mods[i + 1]) for i, m in enumerate(mods)
            if isinstance(m, nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d)]


@torch.no_grad()
def warm_start(net: nn.Module, path: Path, inputs: torch.Tensor, batch_size: int = 512) -> float:
    """Loads the file's weights into `net` (an ExpressionVGG of the same width) and rebuilds its
    BatchNorm layers from `inputs` (normalised training crops [N,1,H,W]). Returns the largest
    absolute difference between the rebuilt network's eval-mode logits and the file's on the
    first crops (the file's logits: the network with its BNs as identities plus bias).
    ValueError when the file's layers do not match the network's."""
    convs, (head_w, head_b) = onnx_layers(path)
    pairs = _conv_bn_pairs(net)
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if len(convs) != len(pairs) or len(linear) != 1:
        raise ValueError(f"{path}: {len(convs)} convolutions and a classifier, the network has {len(pairs)} "
                         f"conv-BN pairs and {len(linear)} linear layers")
    for (w, _), (conv, _) in zip(convs, pairs):
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{path}: conv weight {tuple(w.shape)} does not fit the network's "
                             f"{tuple(conv.weight.shape)} (another --width?)")
    if tuple(head_w.shape) != tuple(linear[0].weight.shape):
        raise ValueError(f"{path}: classifier {tuple(head_w.shape)} does not fit {tuple(linear[0].weight.shape)}")

    device = next(net.parameters()).device
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32)).to(device)  # noqa: E731
    linear[0].weight.copy_(t(head_w))
    linear[0].bias.copy_(t(head_b))
    for (w, b), (conv, bn) in zip(convs, pairs):  # first the file's function: BN = identity + bias
        conv.weight.copy_(t(w))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.copy_(t(b))

    net.eval()
    sums = {id(conv): [0.0, 0.0, 0] for conv, _ in pairs}

    def hook(conv: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        u = out.double().transpose(0, 1).reshape(out.shape[1], -1)
        s = sums[id(conv)]
        s[0] = s[0] + u.sum(dim=1)
        s[1] = s[1] + (u * u).sum(dim=1)
        s[2] += u.shape[1]

    check = inputs[:batch_size].to(device).contiguous(memory_format=torch.channels_last)
    want = net(check).float()
    handles = [conv.register_forward_hook(hook) for conv, _ in pairs]
    try:
        for i in range(0, len(inputs), batch_size):
            net(inputs[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last))
    finally:
        for h in handles:
            h.remove()
    for (_, b), (conv, bn) in zip(convs, pairs):
        total, squares, n = sums[id(conv)]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0.0)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_(torch.sqrt(var + bn.eps).float())
        bn.bias.copy_(mean.float() + t(b))
    got = net(check).float()
    return float((got - want).abs().max())
