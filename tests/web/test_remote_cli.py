"""``brainmri submit|jobs|models`` as real subprocesses against a running embedded stack."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from brainmri.cli.main import main
from brainmri.cli.remote import _job_summary
from brainmri.phantom import phantom_png, write_phantom_dataset
from brainmri.phantom_dicom import phantom_series, zip_series
from tests.web.conftest import EVAL_IMAGES, Stack, cli

pytestmark = pytest.mark.slow
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli_json(stack: Stack, *args: str) -> object:
    result = cli(stack, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_submit_predict_waits_and_returns_results(stack: Stack, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    image.write_bytes(phantom_png("meningioma", seed=4, size=96))
    series = tmp_path / "series.zip"
    series.write_bytes(zip_series(phantom_series("pituitary", n_slices=3, size=64)))
    cams = tmp_path / "cams"
    result = cli(
        stack, "submit", "predict", str(image), str(series), "--wait", "--json", "--tta",
        "--cam-dir", str(cams),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [job["file"] for job in jobs] == [str(image), str(series)]
    for job in jobs:
        assert job["status"] == "succeeded", job
        answer = job["result"]
        assert set(answer["class_probs"]) == {"no_tumor", "glioma", "meningioma", "pituitary"}
        assert sum(answer["class_probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert answer["tumor_prob"] == pytest.approx(1.0 - answer["class_probs"]["no_tumor"])
        assert answer["has_tumor"] == (answer["tumor_prob"] >= answer["threshold"])
        assert answer["tta"] is True
        assert answer["model_version"] == job["model_version"]
        assert "not a medical device" in job["disclaimer"]
        assert (cams / f"{job['job_id']}.png").read_bytes()[:8] == PNG_MAGIC
    assert jobs[1]["result"]["input"]["kind"] == "dicom_zip"
    assert "100%" in result.stderr  # the progress bar went to stderr, stdout is pure JSON


def test_submit_without_wait_then_jobs_wait_show_and_list(stack: Stack, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    image.write_bytes(phantom_png("glioma", seed=21, size=80))
    created = cli_json(stack, "submit", "predict", str(image), "--no-cam")
    assert isinstance(created, list) and created[0]["status"] == "queued"
    job_id = created[0]["job_id"]
    job = cli_json(stack, "jobs", "wait", job_id, "--quiet")
    assert job["status"] == "succeeded" and job["result"]["cam_url"] is None
    shown = cli(stack, "jobs", "show", job_id)
    assert shown.returncode == 0 and job_id in shown.stdout
    assert "suspected" in shown.stdout.lower()
    listed = cli_json(stack, "jobs", "list", "--kind", "predict", "--limit", "50")
    assert job_id in [item["job_id"] for item in listed["items"]]
    assert {item["kind"] for item in listed["items"]} == {"predict"}
    table = cli(stack, "jobs", "list", "--status", "succeeded")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "KIND", "STATUS"]
    assert job_id in table.stdout


def test_submit_evaluate_on_an_allowed_folder(stack: Stack, tmp_path: Path) -> None:
    job = cli_json(stack, "submit", "evaluate", str(stack.eval_folder), "--wait")
    assert job["status"] == "succeeded", job
    assert job["result"]["n_scored"] == EVAL_IMAGES
    assert len(job["result"]["cm_multiclass"]) == 4
    assert "roc_binary.png" in job["result"]["artifacts"]
    report = tmp_path / "report.json"
    saved = cli(stack, "jobs", "artifact", job["job_id"], "eval_report.json", "-o", str(report))
    assert saved.returncode == 0, saved.stderr
    assert json.loads(report.read_text())["n"] == EVAL_IMAGES
    human = cli(stack, "submit", "evaluate", str(stack.eval_folder), "--wait", "--limit", "4")
    assert human.returncode == 0, human.stderr
    assert "macro-F1" in human.stdout and "images scored         4" in human.stdout


def test_cancel_a_long_running_evaluation(stack: Stack) -> None:
    big = stack.allowed / "big"
    write_phantom_dataset(big, per_class=250, size=128, seed=9)  # with TTA: tens of seconds
    created = cli_json(stack, "submit", "evaluate", str(big), "--tta")
    job_id = created["job_id"]
    # Watch for "running" over HTTP: each CLI start costs seconds, the job must not end first.
    headers = {"X-API-Key": stack.key}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.base}/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] != "queued":
            break
        time.sleep(0.1)
    assert job["status"] == "running", job
    cancelled = cli(stack, "jobs", "cancel", job_id, "--wait", "--json", "--quiet")
    assert cancelled.returncode == 0, cancelled.stderr
    job = json.loads(cancelled.stdout)
    assert job["status"] == "cancelled" and job["error"]["code"] == "cancelled"
    assert job["result"] is None
    again = cli(stack, "jobs", "cancel", job_id)
    assert again.returncode == 2 and "already cancelled" in again.stderr


def test_models_list_and_admin_commands(stack: Stack) -> None:
    models = cli_json(stack, "models", "list")
    production = models["production"]
    assert production and [m["stage"] for m in models["items"]] == ["production"]
    # The shipped-style bundle has no test figures: the headline says it is validation.
    assert models["items"][0]["headline"]["source"] == "validation and calibration halves"
    table = cli(stack, "models", "list")
    assert table.returncode == 0
    assert production in table.stdout and f"production: {production}" in table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith(production))
    assert row.split()[9] == "val"  # the ON column
    rollback = cli(stack, "models", "rollback", "brainmri")
    assert rollback.returncode == 2
    assert "no earlier production version" in rollback.stderr
    # The train request is well-formed (the schema forbids unknown fields); the server refuses
    # only the dataset, which is outside its allowed roots.
    train = cli(stack, "submit", "train", "--dataset", "/etc", "--epochs", "1", "--img-size", "64")
    assert train.returncode == 2
    assert "path_not_allowed" in train.stderr and "allowed root" in train.stderr
    # --time-budget-minutes reaches the server, which refuses more than its time limit allows.
    budget = cli(stack, "submit", "train", "--dataset", "/etc", "--time-budget-minutes", "1e9")
    assert budget.returncode == 2
    assert "time_budget_too_long" in budget.stderr and "BRAINMRI_TRAIN_TIME_LIMIT" in budget.stderr
    # The augmentation flags reach the server too, which refuses a pair that cannot run.
    both = cli(
        stack, "submit", "train", "--dataset", "/etc", "--crop", "head", "--head-crop-prob", "0.3"
    )
    assert both.returncode == 2
    assert "invalid_train_options" in both.stderr and "head_crop_prob" in both.stderr


def test_a_failed_job_makes_wait_exit_nonzero(stack: Stack) -> None:
    empty = stack.allowed / "empty"
    empty.mkdir(exist_ok=True)
    result = cli(stack, "submit", "evaluate", str(empty), "--wait")
    assert result.returncode == 1
    assert "failed" in result.stdout and "no images found" in result.stdout
    as_json = cli(stack, "submit", "evaluate", str(empty), "--wait", "--json", "--quiet")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "invalid_dataset"


def test_refusals_are_clear_and_nonzero(stack: Stack, tmp_path: Path) -> None:
    wrong = cli(stack, "jobs", "list", key="definitely-not-the-key")
    assert wrong.returncode == 2
    assert "error [unauthenticated]: invalid API key (HTTP 401)" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    missing = cli(stack, "jobs", "list", key="")
    assert missing.returncode == 2 and "BRAINMRI_API_KEY" in missing.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan")
    bad = cli(stack, "submit", "predict", str(notes))
    assert bad.returncode == 2
    assert "unsupported file type" in bad.stderr
    unreachable = cli(stack, "jobs", "list", "--url", "http://127.0.0.1:9", "--timeout", "5")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["submit", "--help"],
        ["submit", "predict", "--help"],
        ["submit", "evaluate", "--help"],
        ["submit", "train", "--help"],
        ["jobs", "--help"],
        ["jobs", "list", "--help"],
        ["jobs", "show", "--help"],
        ["jobs", "cancel", "--help"],
        ["models", "--help"],
        ["models", "list", "--help"],
        ["models", "promote", "--help"],
        ["models", "rollback", "--help"],
    ],
)
def test_help_names_the_disclaimer_and_the_variables(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(command)
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "not a medical device" in text
    assert "BRAINMRI_URL" in text and "BRAINMRI_API_KEY" in text


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (
            "running",
            {"stage": "training", "epoch": 3, "epochs": 7, "val_macro_f1": 0.91234},
            "(training, epoch 3/7, val macro-F1 0.912)",
        ),
        ("running", {"stage": "downloading", "done": 5, "total": 120}, "(downloading, 5/120)"),
        ("running", {"done": 12, "total": 400}, "(12/400 images)"),
        ("running", {"stage": "evaluating on the held-out split"}, "(evaluating on the held-out"),
        ("queued", None, "queued  0%\n"),
    ],
)
def test_jobs_show_says_where_a_running_job_is(status: str, detail: dict, expected: str) -> None:
    job = {
        "job_id": "j1",
        "kind": "train",
        "status": status,
        "progress": 0.0,
        "progress_detail": detail,
        "created_at": None,
        "finished_at": None,
    }
    assert expected in _job_summary(job)


def test_a_threshold_outside_0_1_is_refused_before_anything_is_sent(
    stack: Stack, tmp_path: Path
) -> None:
    """As the local `predict --threshold` does: a usage error naming the flag (exit 2), not a
    job submitted and refused by the server with an error about `body.threshold`."""
    image = tmp_path / "scan.png"
    image.write_bytes(phantom_png("glioma", seed=4, size=64))
    for command in (["predict", str(image)], ["evaluate", str(tmp_path)]):
        result = cli(stack, "submit", *command, "--threshold", "1.5")
        assert result.returncode == 2
        assert "--threshold" in result.stderr
        assert "body.threshold" not in result.stderr
