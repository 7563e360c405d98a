"""One-time conversion of the browser's BlazeFace (a TF.js graph model) to ONNX.

The viewer page detects faces with `@vladmandic/human` 3.3.6, whose `models/blazeface.json` +
`blazeface.bin` are MediaPipe's BlazeFace "back" model (256x256 input, 896 anchors, 6 keypoints;
Apache-2.0, converted to TF.js by vladmandic, MIT). This rebuilds that graph op for op in ONNX
(NHWC input, as TF.js gets it) so the server runs the very same weights with onnxruntime:

    python -m affectline.recording.convert_blazeface client_js/node_modules/@vladmandic/human/models/blazeface.json

writes server/affectline/recording/blazeface-back.onnx (shipped in the repository; nothing is
downloaded at run time). Output: one tensor [1, 896, 17] = per anchor (logit, 16 regressors),
anchors ordered as human's generateAnchors (16x16x2 then 8x8x6), i.e. what human's getBoxes
builds before decoding.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).with_name("blazeface-back.onnx")


def _s(attr: dict) -> str:
    return base64.b64decode(attr["s"]).decode()


def _ints(attr: dict) -> list[int]:
    return [int(i) for i in attr["list"]["i"]]


def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def convert(model_json: Path) -> onnx.ModelProto:
    m = json.loads(model_json.read_text())
    raw = b"".join((model_json.parent / p).read_bytes() for g in m["weightsManifest"] for p in g["paths"])
    consts: dict[str, np.ndarray] = {}
    off = 0
    for g in m["weightsManifest"]:
        for w in g["weights"]:
            dt = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            consts[w["name"]] = np.frombuffer(raw, dt, n, off).reshape(w["shape"]).copy()
            off += n * 4
    nodes, inits = [], []
    shapes: dict[str, tuple[int, int, int, int]] = {}  # NCHW shapes of activations
    names: dict[str, str] = {}  # tfjs name -> onnx name (NCHW activations)

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    nodes.append(helper.make_node("Transpose", ["input"], ["x_nchw"], perm=[0, 3, 1, 2]))
    outputs = []
    for n in m["modelTopology"]["node"]:
        op, name, ins = n["op"], n["name"], n.get("input", [])
        attr = n.get("attr", {})
        if op in ("Const",):
            continue
        if op == "Placeholder":
            names[name] = "x_nchw"
            shapes["x_nchw"] = (1, 3, 256, 256)
            continue
        out = f"t{len(nodes)}"
        if op in ("_FusedConv2D", "DepthwiseConv2dNative"):
            x = names[ins[0]]
            _, c, h, w = shapes[x]
            k = consts[ins[1]]  # HWIO or HW,in,mult
            stride = _ints(attr["strides"])[1]
            kh, kw = k.shape[:2]
            if _s(attr["padding"]) == "SAME":
                (pt, pb), (pl, pr) = _same_pads(h, kh, stride), _same_pads(w, kw, stride)
            else:
                pt = pb = pl = pr = 0
            if op == "DepthwiseConv2dNative":
                weight = k.transpose(2, 3, 0, 1).reshape(c * k.shape[3], 1, kh, kw)
                group, cout, conv_in = c, c * k.shape[3], [x, init(name + "/W", weight)]
            else:
                weight = k.transpose(3, 2, 0, 1)
                group, cout = 1, k.shape[3]
                conv_in = [x, init(name + "/W", weight), init(name + "/B", consts[ins[2]].astype(np.float32))]
                fused = [base64.b64decode(s).decode() for s in attr["fused_ops"]["list"]["s"]]
            conv_out = out + "c"
            nodes.append(helper.make_node("Conv", conv_in, [conv_out], group=group, kernel_shape=[kh, kw],
                                          strides=[stride, stride], pads=[pt, pl, pb, pr]))
            oh, ow = (h + pt + pb - kh) // stride + 1, (w + pl + pr - kw) // stride + 1
            if op == "_FusedConv2D" and "Relu" in fused:
                nodes.append(helper.make_node("Relu", [conv_out], [out]))
            else:
                out = conv_out
            shapes[out] = (1, cout, oh, ow)
        elif op == "AddV2":
            a, b = names[ins[0]], names[ins[1]]
            nodes.append(helper.make_node("Add", [a, b], [out]))
            shapes[out] = shapes[a]
        elif op == "Relu":
            a = names[ins[0]]
            nodes.append(helper.make_node("Relu", [a], [out]))
            shapes[out] = shapes[a]
        elif op == "MaxPool":
            a = names[ins[0]]
            _, c, h, w = shapes[a]
            k, stride = _ints(attr["ksize"])[1], _ints(attr["strides"])[1]
            (pt, pb), (pl, pr) = _same_pads(h, k, stride), _same_pads(w, k, stride)
            nodes.append(helper.make_node("MaxPool", [a], [out], kernel_shape=[k, k], strides=[stride, stride],
                                          pads=[pt, pl, pb, pr]))
            shapes[out] = (1, c, (h + pt + pb - k) // stride + 1, (w + pl + pr - k) // stride + 1)
        elif op == "Pad":
            a = names[ins[0]]
            p = consts[ins[1]].astype(np.int64)  # NHWC [[b0,a0],[b1,a1],[b2,a2],[b3,a3]]
            nchw = p[[0, 3, 1, 2]]
            nodes.append(helper.make_node("Pad", [a, init(name + "/pads", np.concatenate([nchw[:, 0], nchw[:, 1]]))], [out]))
            s = shapes[a]
            shapes[out] = tuple(s[i] + int(nchw[i].sum()) for i in range(4))  # type: ignore[assignment]
        elif op == "Reshape":
            a = names[ins[0]]
            nhwc = out + "h"
            nodes.append(helper.make_node("Transpose", [a], [nhwc], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [nhwc, init(name + "/shape", consts[ins[1]].astype(np.int64))], [out]))
        elif op == "Identity":
            outputs.append((name, names[ins[0]]))
            continue
        else:
            raise ValueError(f"unsupported op {op} ({name})")
        names[name] = out
    # human: sort the four outputs by size -> [cls384, cls512, reg384, reg512]; concat to [1, 896, 17]
    by = {o: src for o, src in outputs}
    cls512, cls384, reg512, reg384 = by["Identity"], by["Identity_1"], by["Identity_2"], by["Identity_3"]
    nodes.append(helper.make_node("Concat", [cls512, reg512], ["c512"], axis=2))
    nodes.append(helper.make_node("Concat", [cls384, reg384], ["c384"], axis=2))
    nodes.append(helper.make_node("Concat", ["c512", "c384"], ["raw"], axis=1))
    graph = helper.make_graph(
        nodes, "blazeface_back",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 256, 256, 3])],
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, [1, 896, 17])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="affectline")
    model.ir_version = 9
    model.doc_string = ("MediaPipe BlazeFace back-camera model (Apache-2.0) from npm @vladmandic/human 3.3.6 "
                        "models/blazeface.json (MIT), converted by affectline.recording.convert_blazeface")
    onnx.checker.check_model(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_json", type=Path)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    model = convert(args.model_json)
    onnx.save(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
