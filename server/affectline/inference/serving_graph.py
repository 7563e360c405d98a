"""The graph the engine serves: the registered model with its pixel preprocessing (and, for
quantized variants, the renormalization of the probabilities) folded in.

Why: an inference worker used to hold the GIL for four numpy calls around each model run
(uint8 -> float, scale, shift, renormalize). Each call releases and re-takes the GIL, and on
a 2-core host every re-take can wait behind the event loop: with a full queue the machine
used only 1.77-1.82 of its 2 cores (docs/performance.md). With the arithmetic inside the graph, one
`InferenceSession.run` on the uint8 crops does the whole batch (outputs equal within 2e-6,
tests/test_serving_graph.py).
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

# Names of our nodes; the prefix keeps them apart from the model's own.
INPUT = "affectline_crops_u8"
OUTPUT = "affectline_probs"
_P = "affectline_prep_"


def serving_graph(
    model_bytes: bytes,
    *,
    input_name: str,
    output_name: str,
    height: int,
    width: int,
    scale: float,
    offset: float,
    renormalize: bool,
) -> bytes:
    """Returns a model taking uint8 [N,1,H,W] crops as INPUT and giving OUTPUT, equal to
    `model(crops * scale + offset)` (then divided by its row sums when `renormalize`).

    Raises ValueError when `input_name`/`output_name` are not the model's graph input/output.
    """
    model = onnx.load_from_string(model_bytes)
    g = model.graph
    graph_inputs = {i.name: i for i in g.input}
    graph_outputs = {o.name: o for o in g.output}
    if input_name not in graph_inputs or output_name not in graph_outputs:
        raise ValueError(f"manifest names {input_name!r}/{output_name!r} do not match the graph "
                         f"({list(graph_inputs)} -> {list(graph_outputs)})")
    input_type = graph_inputs[input_name].type.tensor_type.elem_type
    output_type = graph_outputs[output_name].type.tensor_type.elem_type
    out_dims = graph_outputs[output_name].type.tensor_type.shape.dim
    out_shape = [d.dim_value or d.dim_param for d in out_dims]

    nodes = [
        helper.make_node("Cast", [INPUT], [_P + "f32"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [_P + "f32", _P + "scale"], [_P + "scaled"]),
    ]
    if input_type == TensorProto.FLOAT:
        nodes.append(helper.make_node("Add", [_P + "scaled", _P + "offset"], [input_name]))
    else:  # e.g. a float16 graph input
        nodes.append(helper.make_node("Add", [_P + "scaled", _P + "offset"], [_P + "x"]))
        nodes.append(helper.make_node("Cast", [_P + "x"], [input_name], to=input_type))
    # Our nodes produce the model's input tensor under its own name, so the model's nodes
    # stay as they are; the graph's input becomes the uint8 crops.
    original = list(g.node)
    del g.node[:]
    g.node.extend(nodes + original)
    kept_inputs = [i for i in g.input if i.name != input_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", 1, height, width]), *kept_inputs])
    g.initializer.extend([helper.make_tensor(_P + "scale", TensorProto.FLOAT, [], [scale]),
                          helper.make_tensor(_P + "offset", TensorProto.FLOAT, [], [offset])])

    y = output_name
    if output_type != TensorProto.FLOAT:
        g.node.append(helper.make_node("Cast", [y], [_P + "probs_f32"], to=TensorProto.FLOAT))
        y = _P + "probs_f32"
    if renormalize:
        # A quantized softmax output need not sum to 1 exactly; confidence scores must.
        g.initializer.append(helper.make_tensor(_P + "axis", TensorProto.INT64, [1], [1]))
        g.initializer.append(helper.make_tensor(_P + "tiny", TensorProto.FLOAT, [], [1e-12]))
        g.node.append(helper.make_node("ReduceSum", [y, _P + "axis"], [_P + "sum"], keepdims=1))
        g.node.append(helper.make_node("Max", [_P + "sum", _P + "tiny"], [_P + "divisor"]))
        g.node.append(helper.make_node("Div", [y, _P + "divisor"], [OUTPUT]))
    else:
        g.node.append(helper.make_node("Identity", [y], [OUTPUT]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, out_shape or None))
    # onnxruntime validates the graph when it loads it. (No onnx.checker: our fp16 files list a
    # Cast after its consumer, as the float16 converter writes them; onnxruntime accepts that.)
    return model.SerializeToString()
