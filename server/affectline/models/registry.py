"""Model registry: versioned model directories `<root>/<name>/<version>/{manifest.json,model.onnx}`."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "affectline-vgg"
PACKAGED_ROOT = Path(__file__).resolve().parent  # models packaged with affectline
DEFAULT_ROOT = PACKAGED_ROOT  # Settings.models_root (AFFECTLINE_MODELS_DIR) chooses another folder
# Models that left the package, each with the commit and command that bring it back.
RETIRED = PACKAGED_ROOT / "retired.json"


class ModelNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class InputSpec:
    name: str
    width: int
    height: int
    channels: int
    layout: str
    dtype: str


@dataclass(frozen=True)
class Preprocessing:
    """x = (pixel * pixel_scale - mean) / std, after resizing to `resize` (width, height)."""

    resize: tuple[int, int]
    pixel_scale: float
    mean: float
    std: float


@dataclass(frozen=True)
class OutputSpec:
    name: str
    kind: str  # "probabilities" (softmax already applied) or "logits"


@dataclass(frozen=True)
class ModelManifest:
    name: str
    version: str
    format: str
    input: InputSpec
    preprocessing: Preprocessing
    output: OutputSpec
    class_names: tuple[str, ...]
    provenance: dict[str, str] = field(default_factory=dict, hash=False)
    licence: str = ""
    attribution: str = ""
    accuracy: dict[str, Any] = field(default_factory=dict, hash=False)
    # Optional precision variants: {"fp32"|"fp16"|"int8": {"file": ..., "fer2013_private_test": ...,
    # "cpu_img_per_s_batch32": ...}, ...} written by affectline.training.variants.
    variants: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelManifest:
        pre = d["preprocessing"]
        return cls(
            name=str(d["name"]),
            version=str(d["version"]),
            format=str(d["format"]),
            input=InputSpec(**d["input"]),
            preprocessing=Preprocessing(
                resize=(int(pre["resize"][0]), int(pre["resize"][1])),
                pixel_scale=float(pre["pixel_scale"]),
                mean=float(pre["mean"]),
                std=float(pre["std"]),
            ),
            output=OutputSpec(**d["output"]),
            class_names=tuple(d["class_names"]),
            provenance=dict(d.get("provenance", {})),
            licence=str(d.get("licence", "")),
            attribution=str(d.get("attribution", "")),
            accuracy=dict(d.get("accuracy", {})),
            variants={k: v for k, v in d.get("variants", {}).items() if isinstance(v, dict) and "file" in v},
        )

    @classmethod
    def from_json(cls, path: Path) -> ModelManifest:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"invalid model manifest {path}: {e!r}") from e


@dataclass(frozen=True)
class RegisteredModel:
    manifest: ModelManifest
    onnx_path: Path

    @property
    def key(self) -> str:
        return f"{self.manifest.name}/{self.manifest.version}"


def _version_sort_key(v: str) -> tuple[int, int, str]:
    # numeric versions sort numerically ("10" > "9") and after non-numeric ones
    return (1, int(v), "") if v.isdigit() else (0, 0, v)


class ModelRegistry:
    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def list(self) -> builtins.list[RegisteredModel]:  # noqa: A003
        found: builtins.list[RegisteredModel] = []
        for man_path in sorted(self.root.glob("*/*/manifest.json")):
            version_dir = man_path.parent
            manifest = ModelManifest.from_json(man_path)
            # the directory layout is the source of truth for lookups; refuse mismatches early
            if (manifest.name, manifest.version) != (version_dir.parent.name, version_dir.name):
                raise ValueError(f"{man_path}: manifest says {manifest.name}/{manifest.version}, "
                                 f"directory says {version_dir.parent.name}/{version_dir.name}")
            onnx_path = version_dir / "model.onnx"
            if onnx_path.is_file():
                found.append(RegisteredModel(manifest, onnx_path))
        found.sort(key=lambda m: (m.manifest.name, _version_sort_key(m.manifest.version)))
        return found

    def get(self, name: str, version: str | None = None) -> RegisteredModel:
        """`name` may also be "name/version". Without a version (or with an empty one, "name/")
        the latest is returned."""
        if version is None and "/" in name:
            name, version = name.split("/", 1)
        version = version or None
        models = self.list()
        matches = [m for m in models if m.manifest.name == name
                   and (version is None or m.manifest.version == version)]
        if not matches:
            wanted = name if version is None else f"{name}/{version}"
            available = ", ".join(m.key for m in models) or "none"
            raise ModelNotFoundError(f"model {wanted!r} not found in {self.root} (available: {available})")
        return matches[-1]


def retired_models(path: Path = RETIRED) -> builtins.list[dict[str, Any]]:
    """The retired models' entries: model, path, commit, why, accuracy, restore (a git command)."""
    return list(json.loads(Path(path).read_text())["retired"])
