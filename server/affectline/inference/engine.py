"""Expression-model inference around onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from affectline.inference.serving_graph import INPUT, OUTPUT, serving_graph
from affectline.inference.variant_probe import PROBE_BATCH, blank_crops, fastest, time_variants
from affectline.models.registry import RegisteredModel

# Fastest first; CPU is always appended as the fallback for ops other providers lack.
_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_CPU = "CPUExecutionProvider"


def choose_providers(available: Sequence[str]) -> list[str]:
    """TensorRT > CUDA > CPU among `available`, always ending with CPUExecutionProvider."""
    return [p for p in _PREFERENCE if p in available] + [_CPU]


# A variant may replace fp32 only if it loses at most this much PublicTest accuracy.
MAX_VARIANT_ACCURACY_LOSS = 0.01


def usable_variants(variants: dict[str, dict]) -> dict[str, dict]:
    """The variants that lose at most MAX_VARIANT_ACCURACY_LOSS accuracy on PublicTest (the
    selection split: choosing on PrivateTest would tune on the test set)."""
    base = variants.get("fp32", {}).get("fer2013_public_test")
    return {
        name: v for name, v in variants.items()
        if base is None or v.get("fer2013_public_test", 0.0) >= base - MAX_VARIANT_ACCURACY_LOSS
    }


def choose_variant(variants: dict[str, dict], providers: Sequence[str],
                   measured: Mapping[str, float] | None = None) -> str:
    """TensorRT runs int8 (else fp16), CUDA runs fp16; on CPU the fastest usable variant wins:
    by `measured` (crops/s timed on this machine, see variant_probe) when given, else by the
    figures the manifest recorded on the machine that built the files."""
    usable = usable_variants(variants)
    if "TensorrtExecutionProvider" in providers:
        order: tuple[str, ...] = ("int8", "fp16")
    elif "CUDAExecutionProvider" in providers:
        order = ("fp16",)
    else:
        recorded = {n: v["cpu_img_per_s_batch32"] for n, v in usable.items() if "cpu_img_per_s_batch32" in v}
        recorded_pick = max(recorded, key=recorded.__getitem__) if recorded else None
        timed = {n: r for n, r in (measured or {}).items() if n in usable or n == "fp32"}
        if timed:
            order = (fastest(timed, preferred=recorded_pick),)
        else:
            order = (recorded_pick,) if recorded_pick else ()
    return next((name for name in order if name in usable or name == "fp32"), "fp32")


def _check_manifest(registered: RegisteredModel) -> None:
    m = registered.manifest
    if m.format != "onnx" or m.input.layout != "NCHW" or m.input.channels != 1:
        raise ValueError(f"{registered.key}: only 1-channel NCHW onnx models are supported")
    if m.output.kind != "probabilities":
        raise ValueError(f"{registered.key}: output kind {m.output.kind!r} is not supported")


class EmotionModel:
    """A loaded expression model. `predict` is safe to call from several threads at once
    (onnxruntime's InferenceSession.run is thread-safe and is the only work predict does)."""

    def __init__(self, registered: RegisteredModel, session: ort.InferenceSession, variant: str = "fp32") -> None:
        """`session` runs the serving graph (see serving_graph): uint8 crops in, probabilities out."""
        _check_manifest(registered)
        if [i.name for i in session.get_inputs()] != [INPUT] or OUTPUT not in [o.name for o in session.get_outputs()]:
            raise ValueError(f"{registered.key}: the session does not run the serving graph ({INPUT} -> {OUTPUT})")
        self._registered = registered
        self._session = session
        self.variant = variant
        self.onnx_path = registered.onnx_path  # the file of the variant actually loaded
        # crops/s of each variant timed on this machine when `load` chose among them, else empty
        self.variant_timings: dict[str, float] = {}

    @classmethod
    def load(cls, registered: RegisteredModel, *, providers: Sequence[str] | None = None,
             intra_op_threads: int = 0, spin: bool = True, variant: str = "auto",
             time_variants_here: bool = True) -> EmotionModel:
        """`intra_op_threads` 0 lets onnxruntime pick (one per physical core). `spin=False` stops
        idle worker threads from busy-waiting, which leaves the cores to the RPC path on small hosts.

        `variant="auto"` with only the CPU provider times every usable variant on this machine
        (variant_probe: ~0.3 s on a fast 2-core host, ~2.5 s on a slow one) and keeps the fastest;
        `time_variants_here=False` trusts the manifest's figures instead (from the build host)."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        chosen = list(providers) if providers is not None else choose_providers(ort.get_available_providers())
        variants = registered.manifest.variants
        if variant != "auto":
            return cls._load_variant(registered, variant, opts, chosen)
        candidates = ["fp32", *(name for name in usable_variants(variants) if name != "fp32")]
        if chosen != [_CPU] or not time_variants_here or len(candidates) < 2:
            return cls._load_variant(registered, choose_variant(variants, chosen), opts, chosen)
        loaded = {name: cls._load_variant(registered, name, opts, chosen) for name in candidates}
        crops = blank_crops(loaded["fp32"].crop_size, PROBE_BATCH)
        timings = time_variants({name: m.predict for name, m in loaded.items()}, crops)
        model = loaded[choose_variant(variants, chosen, measured=timings)]
        model.variant_timings = timings
        return model

    @classmethod
    def _load_variant(cls, registered: RegisteredModel, variant: str, opts: ort.SessionOptions,
                      providers: list[str]) -> EmotionModel:
        variants = registered.manifest.variants
        if variant == "fp32" and "fp32" not in variants:
            path = registered.onnx_path
        elif variant in variants:
            path = registered.onnx_path.parent / variants[variant]["file"]
        else:
            raise ValueError(f"{registered.key} has no variant {variant!r} (has: fp32, {', '.join(variants) or '-'})")
        m, p = registered.manifest, registered.manifest.preprocessing
        try:
            graph = serving_graph(
                path.read_bytes(), input_name=m.input.name, output_name=m.output.name,
                height=m.input.height, width=m.input.width,
                # (pixel * pixel_scale - mean) / std as one multiply-add
                scale=p.pixel_scale / p.std, offset=-p.mean / p.std,
                renormalize=variant != "fp32",
            )
        except ValueError as exc:
            raise ValueError(f"{registered.key}: {exc}") from exc
        except Exception as exc:  # onnx's DecodeError and the like: a damaged file
            raise ValueError(f"{registered.key}: model file {path} is not a readable ONNX model "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else '-'})") from exc
        try:
            session = ort.InferenceSession(graph, sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail, ...: not ValueErrors
            raise ValueError(f"{registered.key}: onnxruntime cannot load model file {path} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else '-'})") from exc
        model = cls(registered, session, variant)
        model.onnx_path = path
        return model

    @property
    def key(self) -> str:
        """"name/version" of the registered model (the variant is reported separately)."""
        return self._registered.key

    @property
    def registered(self) -> RegisteredModel:
        return self._registered

    @property
    def crop_size(self) -> tuple[int, int]:
        """(width, height) of the uint8 crops `predict` takes."""
        i = self._registered.manifest.input
        return i.width, i.height

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._registered.manifest.class_names

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses (a requested one can be unavailable)."""
        return list(self._session.get_providers())

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [N,H,W] grayscale crops of exactly `crop_size` -> float32 [N,classes] probabilities."""
        w, h = self.crop_size
        if not isinstance(crops, np.ndarray) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be a uint8 numpy array, got {getattr(crops, 'dtype', type(crops))}")
        if crops.ndim != 3 or crops.shape[1:] != (h, w):
            raise ValueError(f"crops must have shape [N,{h},{w}], got {list(crops.shape)}")
        if crops.shape[0] == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        # Preprocessing and renormalization run inside the graph: one call, one GIL release.
        (probs,) = self._session.run([OUTPUT], {INPUT: np.ascontiguousarray(crops[:, None])})
        return probs

    def predict_in_batches(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """`predict` over a large array, `batch_size` crops per call (offline evaluation, not serving)."""
        return np.concatenate([self.predict(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)])
