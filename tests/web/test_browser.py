"""The web page end to end: headless Chromium (Debian's, driven by Playwright) against a real
embedded stack. Screenshots go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from brainmri.phantom import phantom_png
from tests.web.conftest import (
    ALL_IMAGES_LOADED,
    EVAL_IMAGES,
    Console,
    Stack,
    screenshot,
    signed_in_tab,
)

pytestmark = pytest.mark.slow

BANNER = "#disclaimer-banner"
JOB_SECONDS = 120_000  # Playwright timeouts are in milliseconds


@pytest.fixture
def page(browser, stack: Stack) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh tab (own sessionStorage) on the page, with the stack's admin key entered."""
    with signed_in_tab(browser, stack) as tab:
        yield tab


def choose_file(tab, name: str, mime: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    tab.get_by_label("Scan file").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )


def assert_banner(tab) -> None:  # type: ignore[no-untyped-def]
    banner = tab.locator(BANNER)
    assert banner.is_visible()
    assert "not a medical device" in banner.inner_text()


def test_upload_shows_probabilities_decision_and_cam(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    assert_banner(page)
    choose_file(page, "glioma.png", "image/png", phantom_png("glioma", seed=5, size=128))
    assert "glioma.png" in page.locator("#file-name").inner_text()
    page.locator("#view-analyze").get_by_label("Test-time augmentation", exact=False).check()
    page.get_by_role("button", name="Analyze").click()
    card = page.locator("#predict-result .result-card")
    card.wait_for(timeout=JOB_SECONDS)
    assert page.locator("#predict-status").get_attribute("data-status") == "succeeded"

    rows = card.locator(".prob-row")
    assert rows.count() == 4
    names = [rows.nth(i).get_attribute("data-class") for i in range(4)]
    assert sorted(names) == ["glioma", "meningioma", "no_tumor", "pituitary"]
    shown = [float(rows.nth(i).locator(".prob-value").inner_text()) for i in range(4)]
    assert sum(shown) == pytest.approx(1.0, abs=0.005)  # three decimals each

    tumor_prob = float(card.locator(".tumor-prob").inner_text())
    threshold = float(card.locator(".threshold-value").inner_text())
    no_tumor = float(card.locator(".prob-row[data-class='no_tumor'] .prob-value").inner_text())
    assert tumor_prob == pytest.approx(1.0 - no_tumor, abs=0.002)
    decision = card.locator(".decision").inner_text()
    expected = "Tumor suspected" if tumor_prob >= threshold else "No tumor suspected"
    assert decision.startswith(expected), decision
    assert card.locator(".threshold-marker").count() == 1
    assert re.match(r"\S+", card.locator(".model-version").inner_text())

    page.wait_for_function(ALL_IMAGES_LOADED, arg="#predict-result img", timeout=30_000)
    cam = card.locator("img.cam-image")
    assert cam.get_attribute("src").startswith("blob:")
    assert cam.evaluate("img => img.naturalWidth") > 0
    assert "Grad-CAM" in cam.get_attribute("alt")
    assert card.locator("img.input-image").evaluate("img => img.naturalWidth") > 0
    screenshot(page, "predict-result.png")

    # The key stays in this tab only.
    storage = page.evaluate(
        "() => [sessionStorage.getItem('brainmri.apiKey'), localStorage.length, document.cookie]"
    )
    assert storage == [stack.key, 0, ""]
    assert page.context.cookies() == []


def drop_file(tab, name: str, mime: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """Drop a file on the drop zone the way a browser does (a DragEvent with a DataTransfer)."""
    tab.locator("#drop-zone").evaluate(
        """(zone, [name, mime, bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
        }""",
        [name, mime, list(data)],
    )


def test_a_dropped_text_file_gives_a_readable_error(page) -> None:  # type: ignore[no-untyped-def]
    drop_file(page, "notes.txt", "text/plain", b"these are notes, not a scan\n")
    assert "notes.txt" in page.locator("#file-name").inner_text()
    page.get_by_role("button", name="Analyze").click()
    error = page.locator("#predict-error")
    error.wait_for(state="visible")
    assert error.get_attribute("role") == "alert"
    assert error.inner_text().startswith("unsupported file type")
    assert page.locator("#predict-result .result-card").count() == 0
    screenshot(page, "predict-error.png")


def test_views_jobs_list_and_models(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-API-Key": stack.key}
    created = httpx.post(
        f"{stack.base}/v1/jobs/predict",
        headers=headers,
        files={"file": ("p.png", phantom_png("pituitary", seed=8, size=64), "image/png")},
    ).json()
    job_id = created["job_id"]

    page.get_by_role("link", name="Jobs").click()
    assert page.url.endswith("#/jobs")
    link = page.locator(f"#jobs-table a[data-job-id='{job_id}']")
    link.wait_for()
    assert_banner(page)
    page.get_by_label("Kind").select_option("evaluate")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_function(
        "(id) => !document.querySelector(`#jobs-table a[data-job-id='${id}']`)", arg=job_id
    )
    page.get_by_label("Kind").select_option("predict")
    page.get_by_role("button", name="Apply").click()
    link.wait_for()
    assert "Jobs 1-" in page.locator("#jobs-range").inner_text()
    screenshot(page, "jobs.png")

    link.click()  # the job's own view: status and the same result card
    page.locator("#job-result .result-card").wait_for(timeout=JOB_SECONDS)
    assert_banner(page)
    assert job_id in page.locator("#job-meta").inner_text()

    page.get_by_role("link", name="Models").click()
    production = page.locator("#models-table tr[data-stage='production']")
    production.wait_for()
    assert_banner(page)
    listed = httpx.get(f"{stack.base}/v1/models", headers=headers).json()["production"]
    assert production.get_attribute("data-version") == listed
    assert listed in page.locator("#models-production").inner_text()
    assert "validation and calibration halves" in production.inner_text()  # "Measured on"
    rollback = page.get_by_role("button", name="Roll back production")
    assert rollback.is_visible()  # an admin key: the controls are there
    page.once("dialog", lambda dialog: dialog.accept())
    rollback.click()
    error = page.locator("#models-error")
    error.wait_for(state="visible")
    assert "no earlier production version" in error.inner_text()
    screenshot(page, "models.png")

    page.get_by_role("link", name="Evaluate").click()
    page.locator("#evaluate-title").wait_for()
    assert_banner(page)
    page.get_by_role("link", name="Analyze").click()
    assert_banner(page)


def test_status_line_says_where_a_job_is(page) -> None:  # type: ignore[no-untyped-def]
    """The page's own status renderer, run in the browser: a train job shows its epoch of the
    planned (budget-fitted) epochs and the validation macro-F1 it reached, as the CLI does."""
    texts = page.evaluate(
        """async () => {
          const { renderStatus } = await import("/static/js/results.js");
          const node = document.createElement("div");
          const details = [
            { stage: "training", epoch: 6, epochs: 11, val_macro_f1: 0.91234 },
            { stage: "training", epoch: 1, epochs: 11 },
            { done: 12, total: 400 },
          ];
          return details.map((detail) => {
            renderStatus(node, { job_id: "0123abcd-ef", kind: "train", status: "running",
                                 progress: 0.4, progress_detail: detail });
            return node.textContent;
          });
        }"""
    )
    assert "(epoch 6 of 11, validation macro-F1 0.912)" in texts[0]
    assert texts[1].endswith("(epoch 1 of 11)")
    assert "(12 of 400 images)" in texts[2]


def test_evaluation_report_shows_metrics_and_plots(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("link", name="Evaluate").click()
    page.get_by_label("Data source", exact=False).fill(str(stack.eval_folder))
    page.get_by_role("button", name="Start evaluation").click()
    report = page.locator("#job-result .report")
    report.wait_for(timeout=JOB_SECONDS)
    assert_banner(page)
    assert report.locator("dd[data-metric='n_scored']").inner_text() == str(EVAL_IMAGES)
    for metric in ("acc_multiclass", "macro_f1", "sensitivity", "specificity", "ece"):
        assert re.fullmatch(
            r"\d\.\d{3}", report.locator(f"dd[data-metric='{metric}']").inner_text()
        )
    assert report.locator("table.confusion tbody tr").count() == 4
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#job-result img.plot-image", timeout=30_000)
    plots = report.locator("img.plot-image")
    assert plots.count() >= 6
    alts = [plots.nth(i).get_attribute("alt") for i in range(plots.count())]
    assert all(alts) and any("ROC" in alt for alt in alts)
    assert report.get_by_role("button", name="Download predictions.csv").is_visible()
    screenshot(page, "evaluation-report.png")


def test_views_ask_for_a_key_first(browser, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(f"{stack.base}/#/jobs")
    assert_banner(tab)
    status = tab.locator("#key-status")
    status.wait_for()
    tab.wait_for_function("() => document.querySelector('#key-status').textContent.length > 0")
    assert "API key" in status.inner_text()
    tab.get_by_label("API key").fill("not-the-right-key-at-all")
    tab.get_by_role("button", name="Use key").click()
    tab.wait_for_function(
        "() => document.querySelector('#key-status').textContent.includes('invalid API key')"
    )
    context.close()


def test_api_docs_render_with_every_other_host_unreachable(browser, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    """As on a hospital network without internet: any request leaving this server fails."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    elsewhere: list[str] = []

    def only_this_server(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(stack.base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    tab = context.new_page()
    console = Console()
    tab.on("pageerror", console.on_page_error)
    tab.goto(f"{stack.base}/docs")
    tab.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert "/v1/jobs/predict" in tab.content()
    screenshot(tab, "api-docs.png")
    context.close()
    assert not elsewhere, elsewhere
    assert not console.problems, console.problems
