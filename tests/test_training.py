"""Training pipeline: tiny real runs on FER2013 (checkpoint, resume, determinism, ONNX export)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fer_data import FER_NPZ

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'affectline[train]')")

from affectline.inference.engine import EmotionModel  # noqa: E402
from affectline.models.registry import ModelRegistry  # noqa: E402
from affectline.training import cli  # noqa: E402
from affectline.training.data import load_split  # noqa: E402
from affectline.training.calibrate import fit_temperature, nll_at, softmax  # noqa: E402
from affectline.training.metrics import expected_calibration_error  # noqa: E402
from affectline.training.export import ServingModel, export_run  # noqa: E402
from affectline.training.train import (  # noqa: E402
    LAST, TrainConfig, ema_decay_at, ema_update, load_model, mixup, resolve_device, build_model, choose_bf16,
    predict_logits, selection_score, step_rates, to_input, train)
from affectline.training import train as train_module  # noqa: E402

needs_data = pytest.mark.skipif(not FER_NPZ.is_file(), reason=f"FER2013 data not available at {FER_NPZ}")
# fp32: "auto" would time both precisions first, and a near-tie at width 4 could pick either
TINY = {"epochs": 2, "width": 4, "train_limit": 256, "eval_limit": 128, "batch_size": 64, "seed": 7,
        "precision": "fp32"}


def tiny_cfg(out: Path) -> TrainConfig:
    return TrainConfig(data=str(FER_NPZ), out_dir=str(out), **TINY)  # type: ignore[arg-type]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run-full")
    train(tiny_cfg(out))
    return out


@needs_data
def test_seeded_runs_are_identical(full_run: Path, tmp_path: Path) -> None:
    train(tiny_cfg(tmp_path))
    assert same_weights(weights(full_run / LAST), weights(tmp_path / LAST))
    other = TrainConfig(**{**tiny_cfg(tmp_path / "other").__dict__, "seed": 8})
    train(other)
    assert not same_weights(weights(full_run / LAST), weights(tmp_path / "other" / LAST))


@needs_data
def test_resume_continues_exactly(full_run: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    ckpt = train(cfg, stop_after=1)
    assert ckpt["epoch"] == 0 and (tmp_path / LAST).is_file() and (tmp_path / "best.pt").is_file()
    ckpt = train(cfg, resume=True)
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 2
    assert same_weights(weights(full_run / LAST), weights(tmp_path / LAST))
    log = (tmp_path / "train.log").read_text()
    assert "resumed from" in log and "epoch 2/2" in log


@needs_data
def test_export_is_served_by_the_engine_like_torch(full_run: Path, tmp_path: Path) -> None:
    args = build_args(["--run-dir", str(full_run), "--export-only", "--models-root", str(tmp_path),
                       "--model-name", "tiny", "--model-version", "3", "--no-variants"])
    assert cli.run(args) == 0
    registered = ModelRegistry(tmp_path).get("tiny")
    assert registered.key == "tiny/3"
    manifest = json.loads((registered.onnx_path.parent / "manifest.json").read_text())
    assert registered.manifest.class_names == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert 0 <= manifest["accuracy"]["fer2013_private_test"] <= 1
    assert manifest["training"]["seed"] == TINY["seed"]
    assert manifest["training"]["schedule_changes"] == []
    model = EmotionModel.load(registered, providers=["CPUExecutionProvider"])
    with np.load(FER_NPZ) as d:
        crops = d["pixels"][d["usage"] == 2][:100]
    got = model.predict(crops)
    net, _, _ = load_model(full_run / "best.pt")
    with torch.no_grad():
        want = ServingModel(net, manifest["calibration"]["temperature"]).eval()(to_input(crops)).numpy()
    assert got.shape == (100, 7)
    assert np.abs(got - want).max() < 1e-4
    # dynamic batch: one crop at a time gives the same answer
    assert np.abs(model.predict(crops[:1]) - got[:1]).max() < 1e-5


def build_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="affectline")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_help_and_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_args(["--help"])
    assert e.value.code == 0 and "--resume" in capsys.readouterr().out
    assert cli.run(build_args(["--data", str(tmp_path / "missing.npz"), "--run-dir", str(tmp_path)])) == 2
    assert "FER2013 data not found" in capsys.readouterr().err
    from affectline.training.__main__ import main
    assert main(["--data", str(tmp_path / "missing.npz")]) == 2


def test_temperature_scaling_exact_example() -> None:
    # every sample has logit margin 2 for class 0 but only 3 in 4 are class 0: the NLL-optimal
    # temperature makes p(class 0) = 3/4, i.e. sigmoid(2 / T) = 3/4 -> T = 2 / ln 3
    logits = np.array([[2.0, 0.0]] * 4)
    labels = np.array([0, 0, 0, 1])
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2 / math.log(3), rel=1e-4)
    assert nll_at(logits, labels, t) < nll_at(logits, labels, 1.0)
    # calibrated confidence equals accuracy here, so the ECE drops to zero
    assert expected_calibration_error(softmax(logits, 1.0), labels) == pytest.approx(0.881 - 0.75, abs=1e-3)
    assert expected_calibration_error(softmax(logits, t), labels) == pytest.approx(0.0, abs=1e-6)


@needs_data
def test_resume_can_change_the_schedule_length(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    train(cfg, stop_after=1)
    ckpt = train(cfg, resume=True, epochs=3)
    assert ckpt["epoch"] == 2 and ckpt["config"]["epochs"] == 3
    assert ckpt["schedule_changes"] == [{"from_epoch": 2, "old_epochs": 2, "new_epochs": 3}]
    assert "schedule length changed from 2 to 3" in (tmp_path / "train.log").read_text()
    manifest = export_run(tmp_path, FER_NPZ, tmp_path / "models", "tiny", "1")
    assert manifest["training"]["schedule_changes"] == ckpt["schedule_changes"]


def test_precision_choice_and_checkpoints_from_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def untimed() -> dict[str, float]:
        raise AssertionError("timed although the choice needs no timing")

    assert choose_bf16("bf16", rates=untimed) == (True, "as asked")
    assert choose_bf16("fp32", rates=untimed) == (False, "as asked")
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_bf16("fp16", rates=untimed)
    # auto without native bf16: fp32, no timing (emulated bf16 is an order of magnitude slower)
    monkeypatch.setattr(train_module, "native_bf16", lambda device=None: False)
    assert choose_bf16("auto", rates=untimed) == (False, "auto: no native bf16 on this CPU")
    # auto with native bf16: the faster here, fp32 unless bf16 wins by more than 10 %
    monkeypatch.setattr(train_module, "native_bf16", lambda device=None: True)
    assert choose_bf16("auto", rates=lambda: {"fp32": 145.0, "bf16": 105.0}) == (
        False, "auto: one training step timed here, img/s fp32 145, bf16 105")
    assert choose_bf16("auto", rates=lambda: {"fp32": 97.0, "bf16": 239.0})[0] is True
    assert choose_bf16("auto", rates=lambda: {"fp32": 100.0, "bf16": 110.0})[0] is False
    assert choose_bf16("auto", rates=lambda: {"fp32": 100.0, "bf16": 110.5})[0] is True
    # runs recorded before the field existed trained in fp32; new configs default to auto
    assert TrainConfig.from_dict({"data": "d", "out_dir": "o", "unknown": 1}).precision == "fp32"
    assert TrainConfig(data="d", out_dir="o").precision == "auto"
    assert build_args(["--precision", "fp32"]).precision == "fp32"


def test_step_rates_times_both_precisions() -> None:
    rates = step_rates(width=2, batch_size=8, rounds=1)
    assert list(rates) == ["fp32", "bf16"] and all(r > 0 and math.isfinite(r) for r in rates.values())


@needs_data
def test_auto_precision_is_timed_once_and_kept_on_resume(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(train_module, "native_bf16", lambda device=None: True)
    timings: list[tuple[int, int]] = []

    def fake_rates(width: int, batch_size: int, device: torch.device) -> dict[str, float]:
        timings.append((width, batch_size))
        return {"fp32": 100.0, "bf16": 250.0}

    monkeypatch.setattr(train_module, "step_rates", fake_rates)
    cfg = TrainConfig(**{**tiny_cfg(tmp_path).__dict__, "precision": "auto"})
    ckpt = train(cfg, stop_after=1)
    assert timings == [(TINY["width"], TINY["batch_size"])]  # the run's own network and batch
    assert ckpt["bf16"] is True and ckpt["history"][0]["precision"] == "bf16"
    assert "bf16 autocast (auto: one training step timed here, img/s fp32 100, bf16 250)" in \
        (tmp_path / "train.log").read_text()
    ckpt = train(cfg, resume=True)  # not timed again: the run keeps its precision
    assert timings == [(TINY["width"], TINY["batch_size"])]
    assert [e["precision"] for e in ckpt["history"]] == ["bf16", "bf16"]
    assert "bf16 autocast (as the run started)" in (tmp_path / "train.log").read_text()


def test_device_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    assert build_args([]).device == "cpu"
    if not torch.cuda.is_available():
        # asked for a GPU that is not there: a clear error before any data is loaded, no CPU fall-back
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")
        args = build_args(["--data", str(FER_NPZ if FER_NPZ.is_file() else __file__), "--run-dir", str(tmp_path),
                           "--device", "cuda"])
        assert cli.run(args) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
        assert not (tmp_path / "train.log").exists()


@needs_data
def test_run_records_its_device_and_matches_the_default(full_run: Path, tmp_path: Path) -> None:
    ckpt = train(tiny_cfg(tmp_path), device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert [entry["device"] for entry in ckpt["history"]] == [expected] * TINY["epochs"]
    assert (" on CPU" if expected == "cpu" else " on GPU ") in (tmp_path / "train.log").read_text()
    if expected == "cpu":  # "auto" on a machine without a GPU is the default CPU run, bit for bit
        assert same_weights(weights(tmp_path / LAST), weights(full_run / LAST))


@needs_data
def test_precision_runs_are_logged_and_recorded(tmp_path: Path) -> None:
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(**{**tiny_cfg(tmp_path / precision).__dict__, "precision": precision, "epochs": 1})
        ckpt = train(cfg)
        assert ckpt["config"]["precision"] == precision and math.isfinite(ckpt["history"][0]["train_loss"])
        assert ckpt["bf16"] is (precision == "bf16") and ckpt["history"][0]["precision"] == precision
        assert f"; {'bf16 autocast' if precision == 'bf16' else 'fp32'} (as asked) on CPU" in \
            (tmp_path / precision / "train.log").read_text()


def test_mixup_blends_images_and_targets_with_one_lambda() -> None:
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    y = torch.eye(4)
    mx, my = mixup(x, y, 0.4, np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same draws, made by hand
    lam, pair = rng.beta(0.4, 0.4), rng.permutation(4)
    assert torch.allclose(mx[:, 0], torch.tensor([lam * i + (1 - lam) * pair[i] for i in range(4)], dtype=torch.float32))
    assert torch.allclose(my.sum(1), torch.ones(4))  # still distributions
    for i in range(4):
        expected = torch.zeros(4)
        expected[i] += lam
        expected[pair[i]] += 1 - lam
        assert torch.allclose(my[i], expected)
    assert build_args(["--mixup", "0.2"]).mixup == 0.2 and build_args([]).mixup == 0.0


@needs_data
def test_mixup_run_is_seeded_and_differs(full_run: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**tiny_cfg(tmp_path / "a").__dict__, "mixup_alpha": 0.2, "epochs": 1})
    train(cfg)
    train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b")}))
    assert same_weights(weights(tmp_path / "a" / LAST), weights(tmp_path / "b" / LAST))
    plain = train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "c"), "mixup_alpha": 0.0}))
    assert not same_weights(weights(tmp_path / "a" / LAST), plain["model"])
    assert "mixup alpha 0.2" in (tmp_path / "a" / "train.log").read_text()


def test_ema_decay_warms_up_and_update_is_exact() -> None:
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(0.91)
    assert ema_decay_at(100_000, 0.999) == 0.999
    model, ema = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([3.0, 5.0]))
        ema.weight.copy_(torch.tensor([1.0, 1.0]))
    model.num_batches_tracked.fill_(4)
    ema_update(ema, model, 0.75)
    assert torch.allclose(ema.weight, torch.tensor([1.5, 2.0]))  # 0.75 * 1 + 0.25 * [3, 5]
    assert int(ema.num_batches_tracked) == 4  # integer buffers are copied, not averaged
    assert build_args(["--ema-decay", "0.999"]).ema_decay == 0.999 and build_args([]).ema_decay == 0.0


@needs_data
def test_ema_run_keeps_the_raw_trajectory_and_exports_the_average(full_run: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**tiny_cfg(tmp_path / "a").__dict__, "ema_decay": 0.9})
    ckpt = train(cfg)
    # the shadow average never feeds back: the raw weights are those of the plain run
    assert same_weights(ckpt["model"], weights(full_run / LAST))
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=False)
    chosen = max(ckpt["history"], key=lambda h: h["ema_public_acc"])
    assert best["epoch"] + 1 == chosen["epoch"] and best["public_acc"] == chosen["ema_public_acc"]
    if best["epoch"] + 1 == 2:
        assert same_weights(best["model"], ckpt["ema"])
    assert not same_weights(ckpt["ema"], ckpt["model"])
    assert "weight average (EMA) decay 0.9" in (tmp_path / "a" / "train.log").read_text()
    # resuming restores the average too
    half = TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b")})
    train(half, stop_after=1)
    resumed = train(half, resume=True)
    assert same_weights(resumed["ema"], ckpt["ema"]) and same_weights(resumed["model"], ckpt["model"])


def test_selection_score_exact_examples() -> None:
    entry = {"public_acc": 0.70, "public_happy_vs_sad": 0.94, "public_flip_acc": 0.71,
             "public_flip_happy_vs_sad": 0.96, "ema_public_acc": 0.69, "ema_public_happy_vs_sad": 0.955,
             "ema_public_flip_acc": 0.72, "ema_public_flip_happy_vs_sad": 0.95}
    cfg = TrainConfig(data="", out_dir="")
    assert selection_score(entry, cfg, ema=False) == 0.70  # the default: plain accuracy, no floor
    assert selection_score(entry, cfg, ema=True) == 0.69
    flip = TrainConfig(data="", out_dir="", select_flip=True, min_happy_vs_sad=0.955)
    assert selection_score(entry, flip, ema=False) == 0.71  # flip-averaged happy-vs-sad 0.96 >= 0.955
    assert selection_score(entry, flip, ema=True) is None  # flip-averaged 0.95 < 0.955
    plain_floor = TrainConfig(data="", out_dir="", min_happy_vs_sad=0.955)
    assert selection_score(entry, plain_floor, ema=True) == 0.69  # 0.955 reaches the floor exactly
    assert selection_score(entry, plain_floor, ema=False) is None


@needs_data
def test_flip_selection_with_a_floor_picks_the_best_qualifying_epoch(full_run: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**tiny_cfg(tmp_path / "a").__dict__, "ema_decay": 0.9, "select_flip": True})
    ckpt = train(cfg)
    hist = ckpt["history"]
    # the flip-averaged metrics are those of the average's logits on the image and its mirror
    net = build_model(cfg)
    net.load_state_dict(ckpt["ema"])
    pub = load_split(FER_NPZ, "public")
    px = pub.pixels[:TINY["eval_limit"]]
    logits = (predict_logits(net, px) + predict_logits(net, np.ascontiguousarray(px[:, :, ::-1]))) / 2
    assert hist[-1]["ema_public_flip_acc"] == pytest.approx(float((logits.argmax(1) == pub.labels[:len(px)]).mean()))
    # a floor between the two epochs' flip-averaged happy-vs-sad leaves only the higher one eligible
    hvs = [h["ema_public_flip_happy_vs_sad"] for h in hist]
    if hvs[0] != hvs[1]:
        floor = (hvs[0] + hvs[1]) / 2
        strict = TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b"), "min_happy_vs_sad": floor})
        train(strict)
        best = torch.load(tmp_path / "b" / "best.pt", weights_only=False)
        assert best["epoch"] == int(np.argmax(hvs))
        assert best["public_acc"] == hist[best["epoch"]]["ema_public_flip_acc"]
    # a floor no epoch reaches: no best.pt, and export says why
    none = TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "c"), "min_happy_vs_sad": 0.999999})
    train(none)
    assert not (tmp_path / "c" / "best.pt").exists()
    assert "none is selected" in (tmp_path / "c" / "train.log").read_text()


def test_min_happy_vs_sad_is_a_fraction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--data", str(FER_NPZ), "--run-dir", str(tmp_path), "--min-happy-vs-sad", "95.5"])
    if not FER_NPZ.is_file():
        pytest.skip(f"FER2013 data not available at {FER_NPZ}")
    assert cli.run(args) == 2
    assert "fraction" in capsys.readouterr().err


@needs_data
def test_train_epochs_ends_the_run_early_on_the_full_schedule(full_run: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**tiny_cfg(tmp_path / "a").__dict__, "train_epochs": 1})
    ckpt = train(cfg)
    assert ckpt["epoch"] == 0 and ckpt["config"]["train_epochs"] == 1 and cfg.final_epoch == 1
    # epoch 1 of a 2-epoch schedule: the weights of the full run's first epoch, not of a 1-epoch schedule
    paused = train(tiny_cfg(tmp_path / "b"), stop_after=1)
    assert same_weights(ckpt["model"], paused["model"])
    log = (tmp_path / "a" / "train.log").read_text()
    assert "ending after epoch 1" in log and "done: best PublicTest acc" in log
    assert TrainConfig(data="", out_dir="", epochs=80, train_epochs=60).final_epoch == 60
    assert TrainConfig(data="", out_dir="", epochs=80).final_epoch == 80


@needs_data
def test_one_command_recipe_trains_and_publishes_a_flip_averaged_model_with_variants(tmp_path: Path) -> None:
    """The v6 recipe's shape in miniature: --train-epochs, --select-flip, --flip-average, variants."""
    import onnx

    from affectline.training.flip_average import SOFTMAX_INPUT_NODES

    root = tmp_path / "models"
    args = build_args(["--run-dir", str(tmp_path / "run"), "--data", str(FER_NPZ), "--seed", "7", "--epochs", "2",
                       "--train-epochs", "1", "--width", "4", "--batch-size", "64", "--precision", "fp32",
                       "--train-limit", "256", "--eval-limit", "128", "--mixup", "0.2", "--ema-decay", "0.9",
                       "--select-flip", "--flip-average", "--models-root", str(root), "--model-name", "tiny",
                       "--model-version", "7"])
    assert cli.run(args) == 0
    registered = ModelRegistry(root).get("tiny")
    assert registered.key == "tiny/7"
    model_dir = registered.onnx_path.parent
    assert sorted(p.name for p in model_dir.iterdir()) == ["manifest.json", "model.fp16.onnx", "model.int8.onnx",
                                                          "model.onnx"]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["training"]["test_time_flip_averaging"] is True
    assert manifest["training"]["epochs_completed"] == 1 and manifest["training"]["config"]["train_epochs"] == 1
    assert manifest["calibration"]["flip_logit_scale"] > 0
    assert set(SOFTMAX_INPUT_NODES) <= {n.name for n in onnx.load(str(registered.onnx_path)).graph.node}
    for name in ("fp32", "fp16", "int8"):
        v = manifest["variants"][name]
        assert 0 <= v["fer2013_private_test"] <= 1 and v["cpu_img_per_s_batch32"] > 0
    x = np.random.default_rng(0).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    served = EmotionModel.load(registered, providers=["CPUExecutionProvider"], variant="fp32")
    np.testing.assert_allclose(served.predict(x), served.predict(np.ascontiguousarray(x[:, :, ::-1])), atol=1e-6)
