"""Refitting a trained network's classifier on its frozen features.

The convolutions of a finished network stay as they are; only the last linear layer is fitted
again, as a convex problem: multinomial logistic regression on the global-average-pooled features
of the Training crops and their mirror images, with an L2 penalty on the weights ("classifier
re-training", Kang et al. 2020). The network's own head was trained jointly with the
convolutions on augmented, mixed-up batches; a refit on clean features may place the class
boundaries differently, at no cost in serving (same graph, same size).

Because the head is linear, a flip-averaged output (the mean of the logits of a crop and of its
mirror) equals the head applied to the mean of the two feature vectors: `flip_mean` gives those.

The refitted network is written as RUN_DIR/best.pt, so `affectline train --run-dir RUN_DIR
--export-only` exports it like any run; its "head_refit" entry goes into the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from affectline.training.data import Split
from affectline.training.model import ExpressionVGG
from affectline.training.train import predict_logits


@dataclass(frozen=True)
class LinearHead:
    weight: np.ndarray  # float64 [classes, features]
    bias: np.ndarray  # float64 [classes]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias


def _linear(net: nn.Module) -> nn.Linear:
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if len(linear) != 1:
        raise ValueError(f"the network has {len(linear)} linear layers, not one classifier")
    return linear[0]


def pooled_features(net: ExpressionVGG, pixels: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The inputs of the classifier for uint8 crops [N,H,W] -> float64 [N,C]: the network without
    its last layer (pooling, flatten, dropout: an identity in eval mode)."""
    trunk = nn.Sequential(net.features, *list(net.head)[:-1])
    return predict_logits(trunk, pixels, batch_size).astype(np.float64)


def flip_mean(features: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Features whose logits are the flip-averaged logits of a linear head."""
    return (features + mirrored) / 2


def ferplus_backs_label(split: Split) -> np.ndarray:
    """Boolean mask: the face has FER+ votes and its FER2013 label gets the largest share of them
    (ties included)."""
    has = split.votes.sum(1) > 0
    own = split.votes[np.arange(len(split)), split.labels]
    return has & (own >= split.votes.max(1))


def fit_linear_head(features: np.ndarray, targets: np.ndarray, l2: float, max_iter: int = 500,
                    init: LinearHead | None = None) -> LinearHead:
    """Minimises mean soft cross-entropy + l2 x sum(weight^2) (the bias is not penalised) by
    full-batch L-BFGS in float64. The problem is convex, so `init` only changes the speed."""
    x = torch.from_numpy(np.asarray(features, np.float64))
    t = torch.from_numpy(np.asarray(targets, np.float64))
    k, d = t.shape[1], x.shape[1]
    w = torch.zeros(k, d, dtype=torch.float64) if init is None else torch.from_numpy(init.weight.copy())
    b = torch.zeros(k, dtype=torch.float64) if init is None else torch.from_numpy(init.bias.copy())
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(t * F.log_softmax(x @ w.T + b, dim=1)).sum(1).mean() + l2 * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return LinearHead(w.detach().numpy().copy(), b.detach().numpy().copy())


def current_head(net: nn.Module) -> LinearHead:
    lin = _linear(net)
    return LinearHead(lin.weight.detach().double().cpu().numpy().copy(), lin.bias.detach().double().cpu().numpy().copy())


@torch.no_grad()
def install_head(net: nn.Module, head: LinearHead) -> None:
    """Writes the head into the network's classifier (float32)."""
    lin = _linear(net)
    if tuple(lin.weight.shape) != head.weight.shape:
        raise ValueError(f"head {head.weight.shape} does not fit the classifier {tuple(lin.weight.shape)}")
    lin.weight.copy_(torch.from_numpy(head.weight).to(lin.weight))
    lin.bias.copy_(torch.from_numpy(head.bias).to(lin.bias))
