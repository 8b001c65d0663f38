"""The Train view end to end: headless Chromium against its own embedded stack (the shared web
stack's tests expect a registry holding only the production model), training a real resnet18
for two epochs on phantoms. Screenshots go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brainmri.phantom import write_phantom_dataset
from tests.infra import EmbeddedServer
from tests.web.conftest import ALL_IMAGES_LOADED, Stack, screenshot, signed_in_tab

pytestmark = pytest.mark.slow

JOB_MS = 300_000  # Playwright timeouts are in milliseconds


@pytest.fixture(scope="module")
def train_stack(platform_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("train-web-stack")
    allowed = base / "allowed"
    write_phantom_dataset(allowed / "train", per_class=24, size=64, seed=7)
    server = EmbeddedServer(base / "data", platform_bundle, allowed)
    yield Stack(server, allowed)
    server.stop()


def api(stack: Stack, path: str) -> dict:
    response = httpx.get(f"{stack.base}{path}", headers={"X-API-Key": stack.key}, timeout=30)
    response.raise_for_status()
    return response.json()


def test_train_link_shows_only_for_an_admin_key(browser, train_stack: Stack) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(f"{train_stack.base}/#/train")
    tab.wait_for_function("() => document.querySelector('#key-status').textContent.length > 0")
    assert not tab.get_by_role("link", name="Train").is_visible()
    assert not tab.locator("#train-form").is_visible()
    context.close()
    with signed_in_tab(browser, train_stack) as page:
        page.get_by_role("link", name="Train").click()
        assert page.locator("#train-form").is_visible()
        assert not page.locator("#train-admin-note").is_visible()


def test_train_view_refuses_bad_input_then_trains_and_reports(browser, train_stack: Stack) -> None:  # type: ignore[no-untyped-def]
    production = api(train_stack, "/v1/models")["production"]
    with signed_in_tab(browser, train_stack) as page:
        page.get_by_role("link", name="Train").click()
        form = page.locator("#train-form")

        # Outside the allowed roots: the server's reason is shown and no job is created.
        form.get_by_label("Dataset", exact=False).fill("/etc")
        page.get_by_role("button", name="Start training").click()
        error = page.locator("#train-error")
        error.wait_for()
        assert "allowed root" in error.inner_text()
        # Options that cannot go together: refused at the door, naming the option.
        form.get_by_label("Dataset", exact=False).fill(str(train_stack.allowed / "train"))
        form.get_by_label("Framing").select_option("head")
        form.get_by_label("Head-crop share", exact=False).fill("0.3")
        page.get_by_role("button", name="Start training").click()
        page.wait_for_function(
            "() => document.querySelector('#train-error').textContent.includes('head_crop_prob')"
        )
        assert api(train_stack, "/v1/jobs?kind=train")["total"] == 0

        form.get_by_label("Framing").select_option("")
        form.get_by_label("Head-crop share", exact=False).fill("")
        form.get_by_label("Epochs").fill("2")
        form.get_by_label("Image size", exact=False).fill("64")
        form.get_by_label("Batch size").fill("16")
        form.get_by_label("Validation share").fill("0.2")
        form.get_by_label("Test share").fill("0.2")
        form.get_by_label("Promote automatically", exact=False).uncheck()
        page.get_by_role("button", name="Start training").click()
        page.wait_for_url(re.compile(r"#/jobs/[^/]+$"))
        job_id = page.url.rsplit("/", 1)[-1]

        report = page.locator("#job-result .train-report")
        report.wait_for(timeout=JOB_MS)
        job = api(train_stack, f"/v1/jobs/{job_id}")
        assert job["status"] == "succeeded" and job["kind"] == "train"
        assert job["params"]["epochs"] == 2 and job["params"]["auto_promote"] is False
        result = job["result"]
        assert report.locator(".train-version").inner_text() == result["model_version"]
        verdict = report.locator(".train-verdict").inner_text()
        assert "not promoted" in verdict
        assert verdict.count(result["gate"]) == 1, verdict  # the reason, said once
        for metric in ("macro_f1", "sensitivity", "roc_auc_binary"):
            row = report.locator(f"tr[data-metric='{metric}']")
            shown = row.locator("td.candidate").inner_text()
            assert shown == f"{result['test_metrics'][metric]:.3f}"
            assert row.locator("td.production").inner_text() == (
                f"{result['production_metrics'][metric]:.3f}"
            )
        caption = report.locator("table caption").first.inner_text()
        assert f"{result['test_metrics']['n']} held-out test slices" in caption
        assert f"{result['epochs_run']} of 2" in report.inner_text()

        page.wait_for_function(ALL_IMAGES_LOADED, arg="#job-result img.plot-image", timeout=30_000)
        curves = report.locator("figure[data-artifact='training_curves.png'] img")
        assert curves.evaluate("img => img.naturalWidth") > 0
        assert "Training curves" in curves.get_attribute("alt")
        assert report.get_by_role("button", name="Download history.csv").is_visible()
        screenshot(page, "train-result.png")

        # Registered beside production, which did not move.
        models = api(train_stack, "/v1/models")
        assert models["production"] == production
        stages = {item["version"]: item["stage"] for item in models["items"]}
        assert stages[result["model_version"]] == "candidate"

        # The Train view lists the job it started.
        page.get_by_role("link", name="Train").click()
        recent = page.locator(f"#train-recent a[data-job-id='{job_id}']")
        recent.wait_for()
        screenshot(page, "train-view.png")
