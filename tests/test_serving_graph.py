"""The served graph equals the registered model fed the manifest's preprocessing by hand."""

import numpy as np
import onnxruntime as ort
import pytest

from affectline.inference.engine import EmotionModel
from affectline.inference.serving_graph import INPUT, OUTPUT, serving_graph
from affectline.models.registry import DEFAULT_MODEL, ModelRegistry


def crops(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_the_served_graph_matches_the_model_with_numpy_preprocessing(variant):
    registered = ModelRegistry().get(DEFAULT_MODEL)
    m = registered.manifest
    path = registered.onnx_path if variant == "fp32" else registered.onnx_path.parent / m.variants[variant]["file"]
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = crops(9, m.input.width)
    p = m.preprocessing
    by_hand = raw.run([m.output.name], {m.input.name: (x[:, None].astype(np.float32) * p.pixel_scale - p.mean) / p.std})[0]
    if variant != "fp32":
        by_hand = by_hand / by_hand.sum(axis=1, keepdims=True)

    model = EmotionModel.load(registered, variant=variant, providers=["CPUExecutionProvider"], intra_op_threads=1)
    served = model.predict(x)
    assert served.dtype == np.float32 and served.shape == (9, 7)
    np.testing.assert_allclose(served, by_hand, atol=2e-6)
    if variant != "fp32":  # renormalized in the graph
        np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-6)


def test_the_served_graph_takes_uint8_crops_in_one_call():
    registered = ModelRegistry().get(DEFAULT_MODEL)
    m = registered.manifest
    graph = serving_graph(registered.onnx_path.read_bytes(), input_name=m.input.name, output_name=m.output.name,
                          height=m.input.height, width=m.input.width, scale=1 / 127.5, offset=-1.0, renormalize=False)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type) == (INPUT, "tensor(uint8)")
    assert [o.name for o in session.get_outputs()] == [OUTPUT]


def test_names_the_graph_lacks_are_a_clear_error():
    registered = ModelRegistry().get(DEFAULT_MODEL)
    with pytest.raises(ValueError, match="do not match the graph"):
        serving_graph(registered.onnx_path.read_bytes(), input_name="pixels", output_name="probs",
                      height=48, width=48, scale=1.0, offset=0.0, renormalize=False)
