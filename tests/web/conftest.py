"""One embedded stack (``brainmri serve``: API, worker, SQLite, local store) for the web page
and remote-CLI tests, with a folder of labelled phantoms the server may evaluate."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from brainmri.phantom import write_phantom_dataset
from tests.conftest import PROJECT_ROOT, need
from tests.infra import EmbeddedServer

SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
EVAL_IMAGES = 12
#: For `page.wait_for_function(..., arg=selector)`: every matching <img> decoded, at least one.
ALL_IMAGES_LOADED = """(selector) => {
    const images = [...document.querySelectorAll(selector)];
    return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


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


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # Without these Chromium keeps calling home, which a closed network turns into noise.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """Browser console errors and uncaught exceptions, checked when each test ends."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def on_console(self, message) -> None:  # type: ignore[no-untyped-def]
        # A refused request logs "Failed to load resource": expected where a test provokes one.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(message.text)

    def on_page_error(self, error) -> None:  # type: ignore[no-untyped-def]
        self.problems.append(f"uncaught: {error}")


@contextmanager
def signed_in_tab(browser, stack: Stack) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh tab (own sessionStorage) on ``stack``'s page with its admin key entered; on
    leaving, the page must have run clean (no console errors, CSP violations or uncaught
    exceptions)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    console = Console()
    tab.on("console", console.on_console)
    tab.on("pageerror", console.on_page_error)
    tab.goto(f"{stack.base}/")
    tab.get_by_label("API key").fill(stack.key)
    tab.get_by_role("button", name="Use key").click()
    tab.wait_for_selector("#key-status[data-role='admin']")
    yield tab
    context.close()
    assert not console.problems, console.problems


def screenshot(tab, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def cli(
    stack: Stack, *args: str, key: str | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, with the server and key from the environment."""
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(stack, key),
    )


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "brainmri.cli.main", *args]


def cli_env(stack: Stack, key: str | None = None) -> dict[str, str]:
    """A user's environment: no server settings, only the client's URL and key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINMRI_")}
    env.update({"BRAINMRI_URL": stack.base, "BRAINMRI_API_KEY": stack.key if key is None else key})
    return env
