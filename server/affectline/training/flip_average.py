"""Test-time flip averaging as a graph transform on a registered ONNX classifier.

Faces are roughly mirror-symmetric, so the network's logits for a crop and for its mirror
image are two estimates of the same thing; their mean has less variance. Folding the mirror
and the mean into the model file means every path that runs the model (serving, `affectline
classify`, `affectline evaluate`) gets the same predictions. The cost is one extra forward pass
per crop.

The transform needs a graph that ends in Softmax over the classes of a [N, C] tensor (our
exporter writes `softmax(logits / T)`): the Softmax input of the crop and of its mirror are
averaged, scaled by `logit_scale` (a re-fitted temperature: averaging sharpens nothing but
shrinks the logits' spread, so the fitted T changes), and passed to the Softmax.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

_P = "affectline_flip_"
# Node names a quantizer can be told to leave in float (training.variants).
SOFTMAX_INPUT_NODES = (_P + "halves", _P + "mean", _P + "scale")


def flip_averaged_graph(model_bytes: bytes, *, logit_scale: float = 1.0) -> bytes:
    """Returns the model computing softmax(logit_scale * (z(x) + z(mirror(x))) / 2), where z is
    the original Softmax input and mirror flips the last (width) axis of the NCHW input.

    Raises ValueError when the graph has more than one input or output, its input is not rank 4,
    or its output is not produced by a Softmax over axis 1 (or -1) of an [N, C] tensor.
    """
    model = onnx.load_from_string(model_bytes)
    g = model.graph
    weights = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in weights]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValueError(f"need one input and one output, got {[i.name for i in inputs]} -> "
                         f"{[o.name for o in g.output]}")
    x, y = inputs[0].name, g.output[0].name
    producers = [n for n in g.node if y in n.output]
    if len(producers) != 1 or producers[0].op_type != "Softmax":
        raise ValueError(f"the output {y!r} must come from a Softmax, got "
                         f"{[n.op_type for n in producers]}")
    softmax = producers[0]
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
    if axis not in (1, -1):
        raise ValueError(f"the output Softmax must run over axis 1 of [N, C], got axis {axis}")
    n_classes = _class_count(g.output[0])
    if len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ValueError(f"the input {x!r} must be NCHW (rank 4) to be mirrored along W")

    opset = _opset(model)
    both, z = _P + "both", softmax.input[0]
    for node in g.node:  # the network now runs on the crops and their mirrors, stacked on N
        for k, name in enumerate(node.input):
            if name == x:
                node.input[k] = both
    softmax.input[0] = _P + "scaled"
    head = [
        helper.make_node("Slice", [x, _P + "start", _P + "end", _P + "axis3", _P + "step"], [_P + "mirror"],
                         name=_P + "mirror"),
        helper.make_node("Concat", [x, _P + "mirror"], [both], axis=0, name=_P + "stack"),
    ]
    tail = [
        helper.make_node("Reshape", [z, _P + "halves_shape"], [_P + "halves_out"], name=_P + "halves"),
        _reduce_mean_over_first_axis(opset, _P + "halves_out", _P + "mean_out"),
        helper.make_node("Mul", [_P + "mean_out", _P + "logit_scale"], [_P + "scaled"], name=_P + "scale"),
    ]
    nodes = list(g.node)
    at = nodes.index(softmax)
    del g.node[:]
    g.node.extend(head + nodes[:at] + tail + nodes[at:])
    g.initializer.extend([
        helper.make_tensor(_P + "start", TensorProto.INT64, [1], [-1]),
        helper.make_tensor(_P + "end", TensorProto.INT64, [1], [-(2 ** 63)]),
        helper.make_tensor(_P + "axis3", TensorProto.INT64, [1], [3]),
        helper.make_tensor(_P + "step", TensorProto.INT64, [1], [-1]),
        helper.make_tensor(_P + "halves_shape", TensorProto.INT64, [3], [2, -1, n_classes]),
        helper.make_tensor(_P + "logit_scale", TensorProto.FLOAT, [], [logit_scale]),
    ])
    if opset >= 18:
        g.initializer.append(helper.make_tensor(_P + "axis0", TensorProto.INT64, [1], [0]))
    return model.SerializeToString()


def _class_count(output: onnx.ValueInfoProto) -> int:
    dims = output.type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].dim_value:
        raise ValueError(f"the output must be [N, C] with a fixed C, got {[d.dim_value or d.dim_param for d in dims]}")
    return dims[1].dim_value


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _reduce_mean_over_first_axis(opset: int, x: str, y: str) -> onnx.NodeProto:
    # ReduceMean takes `axes` as an attribute up to opset 17 and as an input from 18 on.
    if opset < 18:
        return helper.make_node("ReduceMean", [x], [y], axes=[0], keepdims=0, name=_P + "mean")
    return helper.make_node("ReduceMean", [x, _P + "axis0"], [y], keepdims=0, name=_P + "mean")
