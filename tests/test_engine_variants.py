"""Which precision variant the engine runs, per provider."""

import pytest

from affectline.inference.engine import EmotionModel, choose_variant
from affectline.models.registry import ModelRegistry

VARIANTS = {
    "fp32": {"file": "model.onnx", "fer2013_public_test": 0.70, "cpu_img_per_s_batch32": 3000},
    "fp16": {"file": "model.fp16.onnx", "fer2013_public_test": 0.70, "cpu_img_per_s_batch32": 2900},
    "int8": {"file": "model.int8.onnx", "fer2013_public_test": 0.695, "cpu_img_per_s_batch32": 3500},
}


@pytest.mark.parametrize("providers,expected", [
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], "int8"),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "fp16"),
    (["CPUExecutionProvider"], "int8"),  # fastest measured on CPU
])
def test_variant_per_provider(providers, expected):
    assert choose_variant(VARIANTS, providers) == expected


def test_a_variant_that_loses_accuracy_is_not_chosen():
    lossy = {**VARIANTS, "int8": {**VARIANTS["int8"], "fer2013_public_test": 0.60}}
    assert choose_variant(lossy, ["CPUExecutionProvider"]) == "fp32"
    assert choose_variant(lossy, ["TensorrtExecutionProvider", "CPUExecutionProvider"]) == "fp16"


def test_no_variants_means_fp32():
    assert choose_variant({}, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == "fp32"


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="no variant 'int4'"):
        EmotionModel.load(ModelRegistry().get("fer-mini-xception"), variant="int4")


def test_every_registered_variant_loads_and_predicts():
    import numpy as np

    for registered in ModelRegistry().list():
        for name in ["fp32", *registered.manifest.variants]:
            model = EmotionModel.load(registered, variant=name, providers=["CPUExecutionProvider"])
            probs = model.predict(np.zeros((2, *model.crop_size[::-1]), np.uint8))
            assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1, atol=1e-3), (registered.key, name)


def test_on_cpu_the_variant_timed_fastest_here_wins_over_the_manifest():
    # The manifest (build host) says int8; timed here fp32 is 1.5x int8.
    assert choose_variant(VARIANTS, ["CPUExecutionProvider"], measured={"fp32": 900, "fp16": 400, "int8": 600}) == "fp32"


def test_within_the_margin_the_manifest_pick_stays():
    # fp32 only 5 % ahead of the recorded pick: noise, not a reason to change the served scores.
    assert choose_variant(VARIANTS, ["CPUExecutionProvider"], measured={"fp32": 630, "fp16": 400, "int8": 600}) == "int8"


def test_timings_do_not_override_the_accuracy_rule_or_the_gpu_order():
    lossy = {**VARIANTS, "int8": {**VARIANTS["int8"], "fer2013_public_test": 0.60}}
    assert choose_variant(lossy, ["CPUExecutionProvider"], measured={"fp32": 500, "fp16": 400, "int8": 5000}) == "fp32"
    assert choose_variant(VARIANTS, ["CUDAExecutionProvider", "CPUExecutionProvider"],
                          measured={"fp32": 5000, "fp16": 1, "int8": 1}) == "fp16"


def test_auto_on_cpu_times_every_usable_variant_and_serves_the_fastest_timed():
    registered = ModelRegistry().get("affectline-vgg")
    model = EmotionModel.load(registered, providers=["CPUExecutionProvider"], intra_op_threads=1)
    assert set(model.variant_timings) == {"fp32", *registered.manifest.variants}
    assert all(rate > 0 for rate in model.variant_timings.values())
    assert model.variant == choose_variant(registered.manifest.variants, ["CPUExecutionProvider"],
                                           measured=model.variant_timings)
    assert model.onnx_path.name == (registered.manifest.variants[model.variant]["file"])


def test_auto_can_trust_the_manifest_instead():
    registered = ModelRegistry().get("affectline-vgg")
    model = EmotionModel.load(registered, providers=["CPUExecutionProvider"], intra_op_threads=1, time_variants_here=False)
    assert model.variant_timings == {}
    assert model.variant == choose_variant(registered.manifest.variants, ["CPUExecutionProvider"])
