"""Shared fixtures: generated images, small model bundles, real-data and service discovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from brainmri.data.builder import build_dataset
from brainmri.data.labels import CLASS_NAMES
from brainmri.models.bundle import BundleMetadata, ModelBundle
from brainmri.models.factory import create_model
from brainmri.phantom import phantom_png, write_phantom_dataset
from brainmri.preprocess import PreprocessConfig

# Real-infrastructure fixtures (Postgres, Redis, S3, worker processes), available to every test.
pytest_plugins = ["tests.infra"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(
    os.environ.get(
        "BRAINMRI_REAL_DATA", PROJECT_ROOT.parent / "shared" / "data" / "brain-tumor-mri"
    )
)
REQUIRE_SERVICES = os.environ.get("BRAINMRI_REQUIRE_SERVICES") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing - or fail, when CI demands every service."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable (BRAINMRI_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not (REAL_DATA / "glioma").is_dir():
        pytest.skip(f"real MRI data not found at {REAL_DATA}")
    return REAL_DATA


def make_bundle(
    directory: Path,
    *,
    arch: str = "resnet18",
    img_size: int = 64,
    class_names: list[str] | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    name: str = "brainmri",
    resize: str = "letterbox",
) -> ModelBundle:
    """A randomly initialised (seeded) bundle: fast, deterministic, shape-correct."""
    torch.manual_seed(seed)
    names = class_names or list(CLASS_NAMES)
    model = create_model(arch, num_classes=len(names), in_chans=3)
    metadata = BundleMetadata(
        name=name,
        arch=arch,
        class_names=names,
        temperature=temperature,
        preprocess=PreprocessConfig(img_size=img_size, resize=resize),
    )
    bundle = ModelBundle.from_model(model, metadata)
    bundle.save(directory)
    return bundle


@pytest.fixture(scope="session")
def random_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bundles") / "random-rn18"
    make_bundle(directory)
    return directory


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 phantoms per class in class folders named like the real data (``notumor`` ...)."""
    root = tmp_path_factory.mktemp("phantoms") / "data"
    write_phantom_dataset(root, per_class=48, size=96, seed=7)
    return root


@pytest.fixture(scope="session")
def phantom_split(phantom_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builder's group-aware split of ``phantom_dataset`` (60/20/20); tests only read it."""
    out = tmp_path_factory.mktemp("phantom-split")
    build_dataset([phantom_dataset], out, val_frac=0.2, test_frac=0.2, seed=0, progress=False)
    return out


@pytest.fixture
def glioma_png() -> bytes:
    return phantom_png("glioma", seed=11, size=96)
