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
from affectline.training.distill import blend_teacher, geometric_mean  # noqa: E402
from affectline.training.data import load_split  # noqa: E402
from affectline.training.calibrate import fit_temperature, nll_at, softmax  # noqa: E402
from affectline.training.evaluate import expected_calibration_error  # noqa: E402
from affectline.training.export import ServingModel, export_run  # noqa: E402
from affectline.training.train import (  # noqa: E402
    HAPPY, LAST, SAD, TrainConfig, ema_decay_at, ema_update, load_model, mixup, pair_loss, resolve_device,
    build_model, choose_bf16, flip_averaged_logits, predict_logits, selection_score, step_rates, to_input,
    train)
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
                       "--model-name", "tiny", "--model-version", "3"])
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


def test_pair_loss_exact_example() -> None:
    # logits: happy 2 vs sad 0 -> p(happy | {happy, sad}) = sigmoid(2)
    logits = torch.zeros(3, 7)
    logits[:, HAPPY] = 2.0
    targets = torch.zeros(3, 7)
    targets[0, HAPPY] = 1.0  # a happy face: -log sigmoid(2), full weight
    targets[1, SAD] = 0.5  # half sad, half neutral: mass 0.5, -log sigmoid(-2)
    targets[1, 6] = 0.5
    targets[2, 6] = 1.0  # neutral: no happy/sad mass, no loss
    s = 1 / (1 + math.exp(-2.0))
    expected = (-math.log(s) + 0.5 * -math.log(1 - s)) / 3
    assert pair_loss(logits, targets, HAPPY, SAD).item() == pytest.approx(expected, rel=1e-6)
    assert build_args(["--pair-weight", "1"]).pair_weight == 1.0 and build_args([]).pair_weight == 0.0


@needs_data
def test_pair_weight_run_is_seeded_differs_and_logs_happy_vs_sad(full_run: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**tiny_cfg(tmp_path / "a").__dict__, "pair_weight": 1.0, "epochs": 1})
    a = train(cfg)
    b = train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b")}))
    assert same_weights(a["model"], b["model"])
    plain = train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "c"), "pair_weight": 0.0}))
    assert not same_weights(a["model"], plain["model"])
    assert "pair loss x 1.0" in (tmp_path / "a" / "train.log").read_text()
    assert 0.0 <= a["history"][-1]["public_happy_vs_sad"] <= 1.0


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


def test_teacher_targets_exact_examples() -> None:
    # sqrt(0.5 * 0.8) : sqrt(0.5 * 0.2) = 2 : 1
    g = geometric_mean([np.array([[0.5, 0.5]]), np.array([[0.8, 0.2]])])
    assert np.allclose(g, [[2 / 3, 1 / 3]])
    blended = blend_teacher(np.array([[1.0, 0.0]], dtype=np.float32), np.array([[0.25, 0.75]], dtype=np.float32), 0.5)
    assert np.allclose(blended, [[0.625, 0.375]])
    with pytest.raises(ValueError, match="teacher weight"):
        blend_teacher(blended, blended, 1.5)


def test_teacher_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "fer.npz"
    data.write_bytes(b"")  # exists: the teacher checks come first
    assert cli.run(build_args(["--data", str(data), "--teacher-weight", "0.5"])) == 2
    assert "--teacher-weight (> 0) goes with one of --teacher or --teacher-file" in capsys.readouterr().err
    assert cli.run(build_args(["--data", str(data), "--teacher", "nope/9", "--teacher-weight", "0.5"])) == 2
    assert "--teacher: model 'nope/9' not found" in capsys.readouterr().err


@needs_data
def test_distilled_run_is_seeded_differs_and_logs_its_teachers(full_run: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**tiny_cfg(tmp_path / "a").__dict__, "teachers": "affectline-vgg/4", "teacher_weight": 0.5,
                         "epochs": 1})
    a = train(cfg)
    b = train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b")}))
    assert same_weights(a["model"], b["model"])
    plain = train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "c"), "teachers": "", "teacher_weight": 0.0}))
    assert not same_weights(a["model"], plain["model"])
    log = (tmp_path / "a" / "train.log").read_text()
    assert "distillation: teachers affectline-vgg/4 (model.onnx sha256" in log and "weight 0.5" in log
    with pytest.raises(ValueError, match="needs both teachers"):
        train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "d"), "teacher_weight": 0.0}))


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


def _trained_looking(width: int, seed: int) -> torch.nn.Module:
    """An ExpressionVGG whose BatchNorms are not identities, as after training."""
    torch.manual_seed(seed)
    net = build_model(TrainConfig(data="", out_dir="", width=width))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("flip_averaged", [False, True])
def test_warm_start_rebuilds_the_exported_network(tmp_path: Path, flip_averaged: bool) -> None:
    from affectline.models.flip_average import flip_averaged_graph
    from affectline.training.export import export_onnx
    from affectline.training.warm_start import onnx_layers, warm_start

    source = _trained_looking(width=4, seed=3)
    path = tmp_path / "model.onnx"
    export_onnx(source, 0.8, path)  # BatchNorm folded into the convolutions
    if flip_averaged:
        path.write_bytes(flip_averaged_graph(path.read_bytes(), logit_scale=1.2))
    convs, (head_w, _) = onnx_layers(path)
    assert len(convs) == 8 and head_w.shape == (7, 32)

    x = torch.randn(300, 1, 48, 48)
    student = _trained_looking(width=4, seed=9)  # other weights: all of them must be replaced
    diff = warm_start(student, path, x, batch_size=128)
    with torch.no_grad():
        want, got = source(x[:50]), student.eval()(x[:50])
    assert diff < 1e-4 and (got - want).abs().max() < 1e-4
    # the rebuilt BatchNorms hold the conv outputs' statistics, so training mode is close too
    bn = next(m for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.running_var.min() > 0 and not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    with pytest.raises(ValueError, match="another --width"):
        warm_start(build_model(TrainConfig(data="", out_dir="", width=8)), path, x)


@needs_data
def test_init_from_run_starts_at_the_registered_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(build_args(["--data", str(FER_NPZ), "--run-dir", str(tmp_path / "x"),
                               "--init-from", "nope/1"])) == 2
    assert "--init-from: model 'nope/1' not found" in capsys.readouterr().err
    assert cli.run(build_args(["--data", str(FER_NPZ), "--run-dir", str(tmp_path / "x"),
                               "--init-from", "affectline-vgg/6", "--width", "32"])) == 2
    assert "--init-from affectline-vgg/6 has first-stage width 48, not --width 32" in capsys.readouterr().err
    cfg = TrainConfig(**{**tiny_cfg(tmp_path / "a").__dict__, "width": 48, "epochs": 1, "lr": 0.0,
                         "init_from": "affectline-vgg/6"})
    ckpt = train(cfg)
    log = (tmp_path / "a" / "train.log").read_text()
    assert "warm start from affectline-vgg/6 (model.onnx sha256" in log
    # lr 0: the weights stay the registered model's, so PublicTest accuracy is far above a fresh network's
    assert ckpt["history"][0]["public_acc"] > 0.6
    assert json.loads((tmp_path / "a" / "config.json").read_text())["init_from"] == "affectline-vgg/6"


def test_mean_state_exact_example() -> None:
    from affectline.training.soup import SoupError, mean_state

    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    m = mean_state([a, b])
    assert torch.equal(m["w"], torch.tensor([2.0, 4.0])) and m["w"].dtype == torch.float32
    assert int(m["n"]) == 3  # a count is not averaged
    with pytest.raises(SoupError, match="other parameters"):
        mean_state([a, {"w": a["w"]}])
    with pytest.raises(SoupError, match="shape"):
        mean_state([a, {"w": torch.zeros(3), "n": a["n"]}])


def test_recompute_batchnorm_uses_the_inputs_statistics() -> None:
    from affectline.training.soup import recompute_batchnorm

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, bias=False), torch.nn.BatchNorm2d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
    x = torch.arange(8, dtype=torch.float32).view(2, 1, 2, 2)  # values 0..7: mean 3.5, unbiased var 6
    assert recompute_batchnorm(net, x, batch_size=8) == 1
    bn = net[1]
    assert torch.allclose(bn.running_mean, torch.tensor([3.5, -7.0]))
    assert torch.allclose(bn.running_var, torch.tensor([6.0, 24.0]))
    assert bn.momentum == 0.1 and not net.training


@needs_data
def test_weight_soup_of_two_runs_exports_with_its_ingredients(full_run: Path, tmp_path: Path) -> None:
    from affectline.training.soup import SoupError, build_soup

    # same seed, so the same random start; mixup makes the second run's trajectory differ
    other = TrainConfig(**{**tiny_cfg(tmp_path / "b").__dict__, "mixup_alpha": 0.2})
    train(other)
    pixels = load_split(FER_NPZ, "train").pixels[:256]
    ckpt = build_soup([full_run, tmp_path / "b"], tmp_path / "soup", pixels, batch_size=64)
    a_w, b_w = weights(full_run / LAST), weights(tmp_path / "b" / LAST)
    conv = next(k for k in a_w if k.endswith("weight") and a_w[k].dim() == 4)
    assert torch.allclose(ckpt["model"][conv], (a_w[conv] + b_w[conv]) / 2)
    bn_mean = next(k for k in a_w if k.endswith("running_mean"))
    assert not torch.allclose(ckpt["model"][bn_mean], (a_w[bn_mean] + b_w[bn_mean]) / 2)  # recomputed
    assert [i["seed"] for i in ckpt["soup"]["ingredients"]] == [7, 7]
    averaged = build_soup([full_run, tmp_path / "b"], tmp_path / "soup-avg", pixels, recompute_bn=False)
    assert torch.allclose(averaged["model"][bn_mean], (a_w[bn_mean] + b_w[bn_mean]) / 2)
    assert "not recomputed" in averaged["soup"]["batchnorm"]
    manifest = export_run(tmp_path / "soup", FER_NPZ, tmp_path / "models", "soup", "1")
    assert len(manifest["training"]["soup"]["ingredients"]) == 2
    # refused: an unfinished run, and runs from different random starts
    half = tiny_cfg(tmp_path / "half")
    train(half, stop_after=1)
    with pytest.raises(SoupError, match="stopped after epoch 1 of 2"):
        build_soup([full_run, tmp_path / "half"], tmp_path / "x", pixels)
    seed8 = TrainConfig(**{**tiny_cfg(tmp_path / "s8").__dict__, "seed": 8})
    train(seed8)
    with pytest.raises(SoupError, match="different weights"):
        build_soup([full_run, tmp_path / "s8"], tmp_path / "x", pixels)


def test_soup_script_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts/build_weight_soup.py"
    run = lambda *a: subprocess.run([sys.executable, str(script), *a], capture_output=True, text=True)  # noqa: E731
    out = run(str(tmp_path / "nope"), "--out", str(tmp_path / "soup"), "--data", str(tmp_path / "missing.npz"))
    assert out.returncode == 2 and "FER2013 data not found" in out.stderr
    if FER_NPZ.is_file():
        out = run(str(tmp_path / "nope"), "--out", str(tmp_path / "soup"), "--data", str(FER_NPZ))
        assert out.returncode == 2 and "no last.pt" in out.stderr


def test_linear_head_fit_recovers_soft_targets_and_l2_shrinks() -> None:
    from affectline.training.head_refit import LinearHead, fit_linear_head, flip_mean

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    true = LinearHead(rng.normal(size=(3, 5)), rng.normal(size=3))
    logits = true.logits(x)
    targets = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    fitted = fit_linear_head(x, targets, l2=0.0, max_iter=1000)
    got = fitted.logits(x)
    probs = np.exp(got - np.logaddexp.reduce(got, axis=1, keepdims=True))
    assert np.abs(probs - targets).max() < 1e-4  # targets that a linear head can produce exactly
    shrunk = fit_linear_head(x, targets, l2=1.0)
    assert (shrunk.weight ** 2).sum() < 0.1 * (fitted.weight ** 2).sum()
    # a linear head of the mean features = the mean of its logits (flip averaging)
    a, b = x[:10], x[10:20]
    assert np.allclose(fitted.logits(flip_mean(a, b)), (fitted.logits(a) + fitted.logits(b)) / 2)


def test_ferplus_backs_label_exact_example() -> None:
    from affectline.training.data import Split
    from affectline.training.head_refit import ferplus_backs_label

    votes = np.zeros((4, 7), np.float32)
    votes[0, 3] = 1.0  # backs label 3
    votes[1, [3, 4]] = 0.5  # a tie that includes the label
    votes[2, [3, 4]] = [0.3, 0.7]  # the majority is another class
    split = Split(pixels=np.zeros((4, 48, 48), np.uint8), labels=np.array([3, 3, 3, 3]), votes=votes)
    assert ferplus_backs_label(split).tolist() == [True, True, False, False]  # row 3: no votes


def test_pooled_features_and_head_reproduce_the_network() -> None:
    from affectline.training.head_refit import current_head, install_head, LinearHead, pooled_features

    net = _trained_looking(4, seed=3).eval()
    pixels = np.random.default_rng(1).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    feats = pooled_features(net, pixels)
    head = current_head(net)
    assert np.allclose(head.logits(feats), predict_logits(net, pixels), atol=1e-5)
    other = LinearHead(head.weight * 2, head.bias - 1)
    install_head(net, other)
    assert np.allclose(predict_logits(net, pixels), other.logits(feats), atol=1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        install_head(net, LinearHead(np.zeros((7, 3)), np.zeros(7)))


def test_refit_head_script_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts/refit_head.py"
    run = lambda *a: subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "o"), *a],  # noqa: E731
                                    capture_output=True, text=True)
    out = run("--init-from", "affectline-vgg/6", "--width", "48", "--variants", "h9")
    assert out.returncode == 2 and "unknown ['h9']" in out.stderr
    out = run("--init-from", "affectline-vgg/6", "--width", "48", "--l2", "x")
    assert out.returncode == 2 and "--l2" in out.stderr
    out = run("--init-from", "affectline-vgg/6", "--width", "48", "--data", str(tmp_path / "missing.npz"))
    assert out.returncode == 2 and "FER2013 data not found" in out.stderr
    if FER_NPZ.is_file():
        out = run("--init-from", "nope/1", "--width", "48")
        assert out.returncode == 2 and "not found" in out.stderr
        out = run("--init-from", "affectline-vgg/6", "--width", "32")
        assert out.returncode == 2 and "another --width" in out.stderr


@needs_data
def test_refitted_head_exports_with_its_description(full_run: Path, tmp_path: Path) -> None:
    from affectline.training.data import soft_targets
    from affectline.training.head_refit import fit_linear_head, install_head, pooled_features

    net, cfg, ckpt = load_model(full_run / "best.pt")
    train_split = load_split(FER_NPZ, "train")
    rows = np.arange(256)
    head = fit_linear_head(pooled_features(net, train_split.pixels[rows]),
                           soft_targets(train_split, 0.0, 0.1)[rows], l2=1e-3)
    install_head(net, head)
    out = tmp_path / "refit"
    out.mkdir()
    torch.save({**ckpt, "model": net.state_dict(), "head_refit": {"head": "h1", "l2": 1e-3}}, out / "best.pt")
    manifest = export_run(out, FER_NPZ, tmp_path / "models", "refit", "1")
    assert manifest["training"]["head_refit"] == {"head": "h1", "l2": 1e-3}
    crops = load_split(FER_NPZ, "private").pixels[:50]
    served = EmotionModel.load(ModelRegistry(tmp_path / "models").get("refit"), providers=["CPUExecutionProvider"])
    logits = head.logits(pooled_features(net, crops))
    assert (served.predict(crops).argmax(1) == logits.argmax(1)).all()


def test_fold_split_is_stratified_seeded_and_reassembles_exactly() -> None:
    from affectline.training.data import Split
    from affectline.training.folds import check_fold, fold_of, out_of_fold, without_fold

    labels = np.array([0] * 5 + [1] * 3 + [2] * 1)
    folds = fold_of(labels, 2, seed=0)
    # round-robin per class: class 0 -> 3 + 2, class 1 -> 2 + 1, class 2 -> 1 + 0
    assert [int((folds[labels == c] == 0).sum()) for c in (0, 1, 2)] == [3, 2, 1]
    assert np.array_equal(folds, fold_of(labels, 2, seed=0))
    assert any(not np.array_equal(fold_of(labels, 2, seed=s), folds) for s in range(1, 6))
    split = Split(np.arange(9, dtype=np.uint8).reshape(9, 1, 1), labels, np.zeros((9, 7), np.float32))
    kept = without_fold(split, 2, 1, seed=0)
    assert len(kept) == 6 and set(kept.pixels.ravel()) == set(np.flatnonzero(folds == 0))
    # each fold's rows go back to the places of its images
    held = {f: np.flatnonzero(folds == f).astype(np.float32)[:, None] for f in (0, 1)}
    assert np.array_equal(out_of_fold(held, folds)[:, 0], np.arange(9))
    with pytest.raises(ValueError, match="every fold 0..1 once"):
        out_of_fold({0: held[0]}, folds)
    with pytest.raises(ValueError, match="output rows"):
        out_of_fold({0: held[0], 1: held[0]}, folds)
    for k, f in ((1, 0), (3, 3), (3, -1)):
        with pytest.raises(ValueError, match="needs k >= 2"):
            check_fold(k, f)


def test_teacher_file_is_bound_to_its_images(tmp_path: Path) -> None:
    from affectline.training.distill import load_teacher_file, save_teacher_file, teacher_refs

    pixels = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48)
    probs = np.full((2, 7), 1 / 7, np.float32)
    save_teacher_file(tmp_path / "t.npz", probs, pixels, ["a run"])
    got, described = load_teacher_file(tmp_path / "t.npz", pixels)
    assert np.array_equal(got, probs) and described == ["a run"]
    other = pixels.copy()
    other[1, 0, 0] ^= 1
    with pytest.raises(ValueError, match="made for other training images"):
        load_teacher_file(tmp_path / "t.npz", other)
    assert teacher_refs("", 0.5, "t.npz") == []
    with pytest.raises(ValueError, match="not both"):
        teacher_refs("affectline-vgg/4", 0.5, "t.npz")
    with pytest.raises(ValueError, match="needs both"):
        teacher_refs("", 0.0, "t.npz")


def test_fold_and_teacher_file_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "fer.npz"
    data.write_bytes(b"")
    base = ["--data", str(data), "--run-dir", str(tmp_path / "r")]
    cases = [(["--folds", "1"], "needs k >= 2"), (["--folds", "3", "--fold", "3"], "needs k >= 2"),
             (["--fold", "1"], "--fold and --fold-seed need --folds K"),
             (["--teacher-file", str(tmp_path / "none.npz"), "--teacher-weight", "0.5"], "not found"),
             (["--teacher-file", str(data)], "goes with one of --teacher or --teacher-file")]
    for argv, message in cases:
        assert cli.run(build_args(base + argv)) == 2
        assert message in capsys.readouterr().err


def test_training_data_names_teachers_and_folds() -> None:
    from affectline.training.export import training_data

    cfg = {"ferplus_weight": 0.0, "label_smoothing": 0.1, "mixup_alpha": 0.2, "teachers": "",
           "teacher_file": "oof.npz", "teacher_weight": 0.5, "folds": 0}
    assert training_data(cfg).startswith("FER2013 Training split, targets: FER2013 labels, label smoothing 0.1, "
                                         "mixup alpha 0.2, distilled from oof.npz (weight 0.5) ")
    cfg = {**cfg, "teacher_file": "", "teacher_weight": 0.0, "folds": 5, "fold": 2, "fold_seed": 0}
    assert training_data(cfg).startswith("FER2013 Training split without fold 2 of 5 (split seed 0), targets")
    # manifests written before these options existed
    assert training_data({"ferplus_weight": 0.0, "label_smoothing": 0.1}).startswith("FER2013 Training split, ")


@needs_data
def test_fold_runs_make_an_out_of_fold_teacher_that_a_run_distils_from(tmp_path: Path) -> None:
    import subprocess
    import sys

    from affectline.training.distill import load_teacher_file
    from affectline.training.folds import fold_of
    from affectline.training.out_of_fold import FoldTeacherError, build_teacher_file, check_runs

    one_epoch = {**tiny_cfg(tmp_path).__dict__, "epochs": 1}
    for f in (0, 1):
        train(TrainConfig(**{**one_epoch, "out_dir": str(tmp_path / f"fold{f}"), "folds": 2, "fold": f}))
    train_split = load_split(FER_NPZ, "train").first(256)
    folds = fold_of(train_split.labels, 2, 0)
    log = (tmp_path / "fold1" / "train.log").read_text()
    assert f"fold 1 of 2 held out (split seed 0): training on {int((folds != 1).sum())} of 256 images" in log

    report = build_teacher_file([tmp_path / "fold0", tmp_path / "fold1"], tmp_path / "oof.npz")
    assert [(r["fold"], r["images"]) for r in report["runs"]] == [(f, int((folds == f).sum())) for f in (0, 1)]
    probs, described = load_teacher_file(tmp_path / "oof.npz", train_split.pixels)
    assert len(described) == 2 and "fold 0 of 2, split seed 0, epoch 1 of 1" in described[0]
    # an image's row is the flip-averaged softmax of the run that held it out
    row = int(np.flatnonzero(folds == 1)[0])
    net, _, _ = load_model(tmp_path / "fold1" / "best.pt")
    x = train_split.pixels[row:row + 1]
    z = flip_averaged_logits(net, x, predict_logits(net, x))[0].astype(np.float64)
    assert np.allclose(probs[row], np.exp(z - z.max()) / np.exp(z - z.max()).sum(), atol=1e-5)
    assert report["acc"] == pytest.approx(float((probs.argmax(1) == train_split.labels).mean()))

    # a distilled run from the file: seeded, different from a plain run, logged
    cfg = TrainConfig(**{**one_epoch, "out_dir": str(tmp_path / "a"), "teacher_file": str(tmp_path / "oof.npz"),
                         "teacher_weight": 0.5})
    a, b = train(cfg), train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b")}))
    plain = train(TrainConfig(**{**one_epoch, "out_dir": str(tmp_path / "c")}))
    assert same_weights(a["model"], b["model"]) and not same_weights(a["model"], plain["model"])
    assert f"distillation: teachers file {tmp_path / 'oof.npz'} (" in (tmp_path / "a" / "train.log").read_text()
    with pytest.raises(ValueError, match="made for other training images"):
        train(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "d"), "train_limit": 128}))

    # refused: a fold missing, a fold twice, a plain run
    with pytest.raises(FoldTeacherError, match=r"no run for fold\(s\) \[1\]"):
        build_teacher_file([tmp_path / "fold0"], tmp_path / "x.npz")
    # ...but a check measures an incomplete set, each run as the teacher build measured it
    assert check_runs([tmp_path / "fold1"]) == report["runs"][1:]
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(FoldTeacherError, match="fold 0 of 2 .* twice"):
        build_teacher_file([tmp_path / "fold0", tmp_path / "fold0"], tmp_path / "x.npz")
    with pytest.raises(FoldTeacherError, match="not a fold run"):
        build_teacher_file([tmp_path / "c"], tmp_path / "x.npz")
    # a run stopped early is accepted, and says so: its selected epoch of its schedule
    train(TrainConfig(**{**one_epoch, "epochs": 2, "out_dir": str(tmp_path / "half"), "folds": 2}), stop_after=1)
    report = build_teacher_file([tmp_path / "half", tmp_path / "fold1"], tmp_path / "x.npz")
    assert (report["runs"][0]["epoch"], report["runs"][0]["epochs"]) == (1, 2)

    script = Path(__file__).resolve().parents[1] / "scripts/build_out_of_fold_teacher.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "fold0"), str(tmp_path / "fold1"),
                          "--out", str(tmp_path / "oof2.npz")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "each from a run that never trained on it: accuracy" in out.stdout
    assert np.array_equal(load_teacher_file(tmp_path / "oof2.npz", train_split.pixels)[0], probs)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "fold1"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fold 1 of 2 (split seed 0; epoch 1 of 1)" in out.stdout and "nothing written" in out.stdout
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "fold1")], capture_output=True, text=True)
    assert out.returncode == 2 and "--out is required" in out.stderr
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no best.pt" in out.stderr
