"""Independent pure-numpy forward pass of a Keras (2.x, channels_last) functional model.

Reads the architecture and the weights straight from the .hdf5 with h5py and evaluates it in
float64, NHWC, with Keras kernel layouts as stored, unfused BatchNormalization and TF 'same'
padding. It shares no code with scripts/convert_fer_model.py and uses neither onnx nor
onnxruntime, so agreement between the two is evidence that the conversion is right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _tf_same(size: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2  # TF: the extra pixel goes bottom/right


def _pad(x: np.ndarray, k: int, s: int, padding: str, value: float) -> np.ndarray:
    if padding == "valid":
        return x
    rows, cols = _tf_same(x.shape[1], k, s), _tf_same(x.shape[2], k, s)
    return np.pad(x, ((0, 0), rows, cols, (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """[N,H,W,C] -> [N,OH,OW,C,k,k] strided windows."""
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def _taps(x: np.ndarray, k: int, s: int, padding: str) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (i, j, shifted strided view) for every kernel tap: y = sum over taps of view * w[i, j]."""
    xp = _pad(x, k, s, padding, 0.0)
    oh, ow = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
    for i in range(k):
        for j in range(k):
            yield i, j, xp[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :]


def conv2d(x: np.ndarray, kernel: np.ndarray, s: int, padding: str) -> np.ndarray:
    """kernel: Keras HWIO."""
    return sum(v @ kernel[i, j] for i, j, v in _taps(x, kernel.shape[0], s, padding))


def depthwise2d(x: np.ndarray, kernel: np.ndarray, s: int, padding: str) -> np.ndarray:
    """kernel: Keras [kh,kw,C,1]."""
    return sum(v * kernel[i, j, :, 0] for i, j, v in _taps(x, kernel.shape[0], s, padding))


def maxpool2d(x: np.ndarray, k: int, s: int, padding: str) -> np.ndarray:
    return _windows(_pad(x, k, s, padding, -np.inf), k, s).max(axis=(-2, -1))


class KerasReference:
    def __init__(self, hdf5: Path) -> None:
        with h5py.File(hdf5, "r") as f:
            self.layers = json.loads(f.attrs["model_config"])["config"]["layers"]
            self.weights: dict[str, dict[str, np.ndarray]] = {}
            for layer in self.layers:
                name = layer["config"]["name"]
                if name not in f["model_weights"]:
                    continue
                grp = f["model_weights"][name]
                self.weights[name] = {
                    (n.decode() if isinstance(n, bytes) else n).split("/")[-1].split(":")[0]:
                        np.asarray(grp[n], dtype=np.float64)
                    for n in grp.attrs["weight_names"]
                }

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: preprocessed [N,H,W] or [N,H,W,1] float -> softmax outputs [N,classes] float64."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 3:
            x = x[..., None]
        out: dict[str, np.ndarray] = {}
        for layer in self.layers:
            kind, c = layer["class_name"], layer["config"]
            name = c["name"]
            w = self.weights.get(name, {})
            ins = [out[n[0]] for node in layer.get("inbound_nodes", []) for n in node]
            if kind == "InputLayer":
                y = x
            elif kind == "Conv2D":
                y = conv2d(ins[0], w["kernel"], c["strides"][0], c["padding"])
                if c["use_bias"]:
                    y = y + w["bias"]
            elif kind == "SeparableConv2D":
                y = depthwise2d(ins[0], w["depthwise_kernel"], c["strides"][0], c["padding"])
                y = conv2d(y, w["pointwise_kernel"], 1, "valid")
                if c["use_bias"]:
                    y = y + w["bias"]
            elif kind == "BatchNormalization":
                y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"])
                y = y * w["gamma"] + w["beta"]
            elif kind == "Activation" and c["activation"] == "relu":
                y = np.maximum(ins[0], 0.0)
            elif kind == "Activation" and c["activation"] == "softmax":
                e = np.exp(ins[0] - ins[0].max(axis=-1, keepdims=True))
                y = e / e.sum(axis=-1, keepdims=True)
            elif kind == "MaxPooling2D":
                y = maxpool2d(ins[0], c["pool_size"][0], c["strides"][0], c["padding"])
            elif kind == "Add":
                y = sum(ins[1:], ins[0])
            elif kind == "GlobalAveragePooling2D":
                y = ins[0].mean(axis=(1, 2))
            else:
                raise NotImplementedError(f"{kind} {c.get('activation', '')}")
            if kind in ("Conv2D", "SeparableConv2D") and c.get("activation", "linear") == "relu":
                y = np.maximum(y, 0.0)
            out[name] = y
        return out[self.layers[-1]["config"]["name"]]
