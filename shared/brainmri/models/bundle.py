"""Model bundles: ``model.safetensors`` + ``metadata.json`` in one folder.

Nothing in a bundle is ever unpickled. The metadata carries everything needed to use the
weights correctly - architecture, class order, the preprocessing definition, calibration
temperature, the validated operating threshold, TTA views consistent with training - plus
provenance (data fingerprint, metrics, recipe, code version). The weights' sha256 is recorded
at save time and checked at load time, so a tampered or truncated file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import brainmri
from brainmri.data.labels import NO_TUMOR
from brainmri.errors import ModelBundleError
from brainmri.models.factory import create_model
from brainmri.preprocess import PreprocessConfig

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
DEFAULT_THRESHOLD = 0.22


def default_bundle_dir() -> Path:
    """The model shipped with the project (trained here; see its MODEL_CARD.md)."""
    return Path(brainmri.__file__).resolve().parent / "assets" / "default_model"


class BundleMetadata(BaseModel):
    """Everything about a set of weights that inference, evaluation and the registry need."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: Literal[1] = 1
    name: str = "brainmri"
    version: str = ""
    arch: str
    class_names: list[str]
    preprocess: PreprocessConfig
    temperature: float = Field(1.0, gt=0)
    default_threshold: float = Field(DEFAULT_THRESHOLD, ge=0, le=1)
    threshold_source: str = "default (not validated)"
    tta_views: list[str] = Field(default_factory=lambda: ["identity", "hflip"])
    data_fingerprint: str | None = None
    train_counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    code_version: str = Field(default_factory=lambda: brainmri.__version__)
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = ""
    weights_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    disclaimer: str = brainmri.DISCLAIMER

    @field_validator("class_names")
    @classmethod
    def _has_no_tumor(cls, names: list[str]) -> list[str]:
        if NO_TUMOR not in names:
            raise ValueError(f"class_names must include {NO_TUMOR!r}; tumor_prob depends on it")
        if len(set(names)) != len(names):
            raise ValueError("class_names must be unique")
        return names

    @property
    def no_tumor_index(self) -> int:
        return self.class_names.index(NO_TUMOR)


class ModelBundle:
    """Weights plus metadata, in memory."""

    def __init__(
        self,
        metadata: BundleMetadata,
        state_dict: dict[str, torch.Tensor],
        directory: Path | None = None,
    ) -> None:
        self.metadata = metadata
        self.state_dict = state_dict
        self.directory = directory

    @property
    def version(self) -> str:
        return self.metadata.version

    def build_model(self) -> nn.Module:
        """A float32 CPU network in eval mode with these weights loaded strictly."""
        model = create_model(
            self.metadata.arch,
            num_classes=len(self.metadata.class_names),
            in_chans=self.metadata.preprocess.in_chans,
        )
        weights = {key: value.to(torch.float32) for key, value in self.state_dict.items()}
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ModelBundleError(f"weights do not fit {self.metadata.arch}: {exc}") from exc
        return model.eval()

    @classmethod
    def from_model(cls, model: nn.Module, metadata: BundleMetadata) -> ModelBundle:
        state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
        return cls(metadata, state)

    def save(self, directory: Path, *, dtype: Literal["float32", "float16"] = "float32") -> Path:
        """Write the bundle to a *new* folder, atomically; an existing folder is refused.

        Writing into a fresh temporary folder and renaming means a reader never sees a half
        bundle, and the model in use is never overwritten.
        """
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            raise ModelBundleError(
                f"{directory} already holds files; bundles are never overwritten"
            )
        directory.parent.mkdir(parents=True, exist_ok=True)
        torch_dtype = torch.float16 if dtype == "float16" else torch.float32
        tensors = {
            key: (value.to(torch_dtype) if value.is_floating_point() else value).contiguous()
            for key, value in self.state_dict.items()
        }
        staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=directory.parent))
        try:
            weights_path = staging / WEIGHTS_FILE
            save_file(tensors, str(weights_path), metadata={"format": "pt"})
            sha = sha256_file(weights_path)
            metadata = self.metadata.model_copy(
                update={"weights_sha256": sha, "weights_dtype": dtype, "weights_file": WEIGHTS_FILE}
            )
            if not metadata.version:
                stamp = metadata.created_at.strftime("%Y%m%d-%H%M%S")
                metadata = metadata.model_copy(
                    update={"version": f"{metadata.arch}-{stamp}-{sha[:8]}"}
                )
            (staging / METADATA_FILE).write_text(metadata.model_dump_json(indent=2) + "\n")
            if directory.exists():
                directory.rmdir()
            os.replace(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.metadata = metadata
        self.directory = directory
        return directory


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(directory: Path) -> BundleMetadata:
    path = Path(directory) / METADATA_FILE
    try:
        return BundleMetadata.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelBundleError(f"no {METADATA_FILE} in {directory}") from exc
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ModelBundleError(f"invalid {METADATA_FILE} in {directory}: {exc}") from exc


def load_bundle(directory: Path, *, verify: bool = True) -> ModelBundle:
    """Load a bundle folder; with ``verify`` the weights must match their recorded sha256."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    weights_path = directory / metadata.weights_file
    if Path(metadata.weights_file).name != metadata.weights_file:
        raise ModelBundleError("weights_file must be a plain file name inside the bundle")
    if not weights_path.is_file():
        raise ModelBundleError(f"missing weights file {weights_path}")
    if verify:
        if not metadata.weights_sha256:
            raise ModelBundleError(f"{directory} records no weights_sha256; refusing to load")
        actual = sha256_file(weights_path)
        if actual != metadata.weights_sha256:
            raise ModelBundleError(
                f"weights of {metadata.version or directory} fail their integrity check "
                f"(sha256 {actual[:12]}... != recorded {metadata.weights_sha256[:12]}...)",
                code="bundle_integrity",
            )
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelBundleError(f"cannot read {weights_path}: {exc}") from exc
    return ModelBundle(metadata, state, directory)
