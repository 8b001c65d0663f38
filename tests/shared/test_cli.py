"""The ``brainmri`` command line, run as a real subprocess where it matters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from brainmri.cli.main import main
from brainmri.phantom import phantom_png
from brainmri.phantom_dicom import phantom_series, zip_series

PREDICT_KEYS = {
    "class_probs",
    "predicted_class",
    "tumor_prob",
    "threshold",
    "has_tumor",
    "model_version",
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brainmri.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_predict_image_and_zipped_dicom_series(tmp_path: Path, random_bundle_dir: Path) -> None:
    image = tmp_path / "scan.jpg"
    image.write_bytes(phantom_png("glioma", seed=1, size=96))
    series = tmp_path / "series.zip"
    series.write_bytes(zip_series(phantom_series("pituitary", n_slices=5, size=64)))
    result = run_cli("predict", str(image), str(series), "--model", str(random_bundle_dir), "--tta")
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert [o["file"] for o in outputs] == [str(image), str(series)]
    for output in outputs:
        assert set(output) >= PREDICT_KEYS
        assert output["has_tumor"] == (output["tumor_prob"] >= output["threshold"])
        assert "not a medical device" in output["disclaimer"]
    assert outputs[1]["input"]["kind"] == "dicom_zip"
    assert "PatientName" not in result.stdout
    assert "Doe" not in result.stdout


def test_predict_writes_cam_and_honours_thresholds(
    tmp_path: Path,
    random_bundle_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = tmp_path / "scan.png"
    image.write_bytes(phantom_png("meningioma", seed=3, size=120))
    cam = tmp_path / "cam.png"
    monkeypatch.setenv("TUMOR_THRESH", "0.05")
    from brainmri.config import get_settings

    get_settings.cache_clear()
    try:
        assert (
            main(["predict", str(image), "--model", str(random_bundle_dir), "--cam", str(cam)]) == 0
        )
        env_output = json.loads(capsys.readouterr().out)
        assert (
            main(["predict", str(image), "--model", str(random_bundle_dir), "--threshold", "0.9"])
            == 0
        )
        request_output = json.loads(capsys.readouterr().out)
    finally:
        get_settings.cache_clear()
    assert env_output["threshold"] == 0.05
    assert request_output["threshold"] == 0.9  # the explicit threshold beats TUMOR_THRESH
    assert Image.open(cam).size == (120, 120)


def test_predict_bad_file_reports_error_code(tmp_path: Path, random_bundle_dir: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    result = run_cli("predict", str(bad), "--model", str(random_bundle_dir))
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "unsupported_format"


def test_export_onnx_reports_agreement(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "export",
                "onnx",
                "--model",
                str(random_bundle_dir),
                "--out",
                str(tmp_path / "m.onnx"),
                "--check",
                "8",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["agreement_vs_fp32"]["top1_agreement"] == 1.0
    assert report["agreement_vs_fp32"]["max_prob_diff"] < 1e-4
    assert (tmp_path / "m.onnx").stat().st_size > 1_000_000


def test_export_fp16_halves_the_weights_and_keeps_predictions(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from brainmri.models.bundle import load_bundle

    out = tmp_path / "half"
    args = ["export", "fp16", "--model", str(random_bundle_dir), "--out", str(out), "--check", "8"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    half = load_bundle(out)  # verifies the new weights' sha256
    source = load_bundle(random_bundle_dir)
    assert half.metadata.weights_dtype == "float16"
    assert report["version"] == half.version != source.version
    source_bytes = (random_bundle_dir / source.metadata.weights_file).stat().st_size
    half_bytes = (out / half.metadata.weights_file).stat().st_size
    assert half_bytes < 0.6 * source_bytes
    assert report["agreement_vs_fp32"]["top1_agreement"] == 1.0
    assert report["agreement_vs_fp32"]["max_prob_diff"] < 1e-2
    assert main(args) == 2  # an existing folder is never overwritten


@pytest.mark.parametrize(
    "command", [[], ["predict"], ["eval"], ["train"], ["dataset", "build"], ["export", "onnx"]]
)
def test_help_everywhere_says_not_a_medical_device(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "not a medical device" in " ".join(result.stdout.split())


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    result = run_cli("predict", "x.png", "--model", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "error [invalid_model_bundle]" in result.stderr
