"""Safe model loading: nothing unpickled, registry digests verified, tampered bundles refused."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri.db.models import ModelVersion
from brainmri.db.session import session_scope
from brainmri.errors import ModelBundleError
from brainmri.registry.cache import ProductionModel, fetch_bundle
from brainmri.registry.versions import promote, register_bundle
from brainmri.storage import open_store
from tests.conftest import PROJECT_ROOT, make_bundle

SOURCE_DIRS = [PROJECT_ROOT / "shared", PROJECT_ROOT / "services"]


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_nothing_in_the_project_unpickles() -> None:
    offences = []
    for root in SOURCE_DIRS:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [alias.name for alias in node.names]
                    module = getattr(node, "module", None) or ""
                    if any(
                        n in ("pickle", "dill", "cloudpickle", "joblib") for n in [*names, module]
                    ):
                        offences.append(f"{path}: imports {names or module}")
            for call in _calls(tree):
                name = _name(call.func)
                if name.endswith(("torch.load", "torch.jit.load", "numpy.load", "np.load")):
                    safe = any(
                        k.arg == "weights_only"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is True
                        for k in call.keywords
                    )
                    if not safe:
                        offences.append(f"{path}:{call.lineno}: {name} without weights_only=True")
    assert offences == []


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Settings, Path, Path]:
    first, second = tmp_path / "v1", tmp_path / "v2"
    make_bundle(first, img_size=48, seed=1)
    make_bundle(second, img_size=48, seed=2)
    settings = Settings(data_dir=tmp_path / "data", model_dir=first)
    upgrade(settings.resolved_database_url)
    return settings, first, second


def test_tampered_bundle_is_refused_and_the_previous_model_stays(
    registry: tuple[Settings, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    settings, _, second = registry
    holder = ProductionModel(settings.model_copy(update={"model_check_seconds": 0.001}))
    original = holder.engine().version
    store = open_store(settings)
    with session_scope(settings.resolved_database_url) as session:
        row = register_bundle(session, store, second, name=settings.model_name)
        prefix, new_version = row.artifact_prefix, row.version
    weights = store.get(prefix + "model.safetensors")
    store.put(prefix + "model.safetensors", weights[:-64] + bytes(64))  # tampered in the store
    with session_scope(settings.resolved_database_url) as session:
        promote(session, version=new_version, by="test")
    caplog.set_level(logging.ERROR)
    assert holder.engine().version == original
    assert "failed its integrity check" in caplog.text and original in caplog.text


def test_artifacts_outside_the_registry_prefix_are_refused(
    registry: tuple[Settings, Path, Path], tmp_path: Path
) -> None:
    settings, _, second = registry
    store = open_store(settings)
    with session_scope(settings.resolved_database_url) as session:
        row = register_bundle(session, store, second, name=settings.model_name)
        row.artifact_prefix = "uploads/someone-elses-job/"
        session.flush()
        session.expunge(row)
    with pytest.raises(ModelBundleError, match="outside the registry prefix"):
        fetch_bundle(row, store, tmp_path / "cache")


def test_digest_mismatch_between_registry_and_files_is_refused(
    registry: tuple[Settings, Path, Path], tmp_path: Path
) -> None:
    settings, _, second = registry
    store = open_store(settings)
    with session_scope(settings.resolved_database_url) as session:
        row = register_bundle(session, store, second, name=settings.model_name)
        row.artifact_sha256 = {**row.artifact_sha256, "metadata.json": "0" * 64}
        session.flush()
        session.expunge(row)
        assert isinstance(row, ModelVersion)
    with pytest.raises(ModelBundleError) as info:
        fetch_bundle(row, store, tmp_path / "cache")
    assert info.value.code == "bundle_integrity"
