"""Flip averaging folded into a graph equals averaging the model's logits by hand."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from affectline.inference.engine import EmotionModel
from affectline.models.flip_average import flip_averaged_graph
from affectline.models.registry import ModelRegistry
from fer_data import FER_NPZ, REPO_ROOT

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


def test_the_registered_flip_averaged_model_holds_the_source_weights_unchanged():
    """affectline-vgg/5 is affectline-vgg/4's weights with flip averaging (scripts/build_flip_averaged_model.py)."""
    registry = ModelRegistry()
    v4, v5 = registry.get("affectline-vgg/4"), registry.get("affectline-vgg/5")
    weights = lambda r: {t.name: numpy_helper.to_array(t) for t in onnx.load(str(r.onnx_path)).graph.initializer}  # noqa: E731
    w4, w5 = weights(v4), weights(v5)
    assert w4 and all(np.array_equal(w4[k], w5[k]) for k in w4)
    manifest = json.loads((v5.onnx_path.parent / "manifest.json").read_text())
    assert manifest["training"]["test_time_flip_averaging"] is True
    assert manifest["provenance"]["flip_averaged_from"]["model"] == "affectline-vgg/4"


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_the_served_flip_averaged_model_scores_a_face_and_its_mirror_alike(variant):
    model = EmotionModel.load(ModelRegistry().get("affectline-vgg/5"), variant=variant,
                              providers=["CPUExecutionProvider"], intra_op_threads=1)
    x = np.random.default_rng(1).integers(0, 256, (16, 48, 48), dtype=np.uint8)
    p, mirrored = model.predict(x), model.predict(np.ascontiguousarray(x[:, :, ::-1]))
    # int8: activations are quantized per tensor, so the two halves of the batch can round apart slightly
    np.testing.assert_allclose(p, mirrored, atol=1e-6 if variant == "fp32" else 2e-2)
    if variant == "int8":  # the output Softmax is left in float: probabilities are not in steps of 1/255
        assert len(np.unique(p)) > 100 and not np.allclose(p * 255, np.round(p * 255), atol=1e-3)


SCRIPT = REPO_ROOT / "scripts/build_flip_averaged_model.py"


def build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_the_build_script_reproduces_the_registered_v5(tmp_path):
    """Rebuilding v5 from the registered v4 gives the same graph, weights and temperature."""
    if not FER_NPZ.is_file():
        pytest.skip(f"FER2013 data not found at {FER_NPZ}")
    root = tmp_path / "models"
    shutil.copytree(ModelRegistry().get("affectline-vgg/4").onnx_path.parent, root / "affectline-vgg/4")
    out = build("affectline-vgg/4", "--version", "7", "--models-root", str(root))
    assert out.returncode == 0, out.stderr
    assert "registered affectline-vgg/7" in out.stdout
    rebuilt = json.loads((root / "affectline-vgg/7/manifest.json").read_text())
    shipped = json.loads((ModelRegistry().get("affectline-vgg/5").onnx_path.parent / "manifest.json").read_text())
    assert rebuilt["calibration"]["flip_logit_scale"] == pytest.approx(shipped["calibration"]["flip_logit_scale"], abs=1e-4)
    assert rebuilt["accuracy"]["fer2013_public_test"] == pytest.approx(shipped["accuracy"]["fer2013_public_test"], abs=6e-4)
    assert "variants" not in rebuilt  # built afterwards by scripts/build_model_variants.py
    assert ModelRegistry(root).get("affectline-vgg").key == "affectline-vgg/7"

    again = build("affectline-vgg/4", "--version", "7", "--models-root", str(root))
    assert again.returncode == 2 and "exists (pass --force" in again.stderr


def test_the_build_script_says_what_is_missing(tmp_path):
    out = build("affectline-vgg/4", "--version", "9", "--data", str(tmp_path / "none.npz"))
    assert out.returncode == 2 and "FER2013 data not found" in out.stderr
    out = build("no-such-model/1", "--version", "9")
    assert out.returncode == 2 and "not found" in out.stderr
