"""One embedded stack (``brainmri serve``: API, worker, SQLite, local store) for the web page
and remote-CLI tests, with a folder of labelled phantoms the server may evaluate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from brainmri.phantom import write_phantom_dataset
from tests.conftest import PROJECT_ROOT
from tests.infra import EmbeddedServer

SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
EVAL_IMAGES = 12


@dataclass(frozen=True)
class Stack:
    server: EmbeddedServer
    allowed: Path  # BRAINMRI_ALLOWED_ROOTS of the server

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def key(self) -> str:
        return self.server.key

    @property
    def eval_folder(self) -> Path:
        """Three phantoms per class in class-named folders."""
        return self.allowed / "eval"


@pytest.fixture(scope="session")
def stack(platform_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("web-stack")
    allowed = base / "allowed"
    write_phantom_dataset(allowed / "eval", per_class=EVAL_IMAGES // 4, size=64, seed=2)
    server = EmbeddedServer(base / "data", platform_bundle, allowed)
    yield Stack(server, allowed)
    server.stop()
