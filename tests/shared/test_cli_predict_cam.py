"""``brainmri predict --cam``: files, folders, name clashes and write failures.

Before, ``--cam cams/`` with one input wrote a PNG *file* named ``cams``; an existing folder
was reported as the input's ``unreadable_file`` (``Is a directory``); ``a/scan.png`` and
``b/scan.png`` wrote the same ``cams/scan_cam.png``; and ``--threshold`` took any number.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from brainmri.cli.main import main
from brainmri.cli.predict import CAM_WRITE_FAILED, cam_file_names
from brainmri.phantom import phantom_png


def scan(path: Path, class_name: str = "glioma", seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(phantom_png(class_name, seed=seed, size=64))
    return path


def predict(
    capsys: pytest.CaptureFixture[str], bundle: Path, *args: str
) -> tuple[int, dict | list]:
    code = main(["predict", *args, "--model", str(bundle)])
    return code, json.loads(capsys.readouterr().out)


def is_png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG"


def test_trailing_slash_makes_a_folder_for_one_input(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = scan(tmp_path / "scan.png")
    cams = tmp_path / "cams"
    code, output = predict(capsys, random_bundle_dir, str(image), "--cam", f"{cams}/")
    assert code == 0
    assert cams.is_dir()
    assert output["cam_path"] == str(cams / "scan_cam.png")
    assert is_png(cams / "scan_cam.png")


def test_an_existing_folder_receives_the_cam(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = scan(tmp_path / "scan.png")
    cams = tmp_path / "cams"
    cams.mkdir()
    code, output = predict(capsys, random_bundle_dir, str(image), "--cam", str(cams))
    assert code == 0
    assert "error" not in output
    assert output["cam_path"] == str(cams / "scan_cam.png")
    assert is_png(cams / "scan_cam.png")


def test_a_file_path_is_still_a_file_and_its_folder_is_made(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = scan(tmp_path / "scan.png")
    target = tmp_path / "new" / "overlay.png"
    code, output = predict(capsys, random_bundle_dir, str(image), "--cam", str(target))
    assert code == 0
    assert output["cam_path"] == str(target)
    assert is_png(target)


def test_same_stem_from_different_folders_gets_distinct_cams(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = scan(tmp_path / "a" / "scan.png", "glioma", seed=1)
    second = scan(tmp_path / "b" / "scan.png", "pituitary", seed=2)
    other = scan(tmp_path / "a" / "other.png", "no_tumor", seed=3)
    cams = tmp_path / "cams"
    code, outputs = predict(
        capsys, random_bundle_dir, str(first), str(second), str(other), "--cam", str(cams)
    )
    assert code == 0
    paths = [Path(entry["cam_path"]) for entry in outputs]
    assert [p.name for p in paths] == ["scan_1_cam.png", "scan_2_cam.png", "other_cam.png"]
    assert sorted(p.name for p in cams.iterdir()) == sorted(p.name for p in paths)
    assert paths[0].read_bytes() != paths[1].read_bytes()  # neither overwrote the other


def test_cam_names_never_clash() -> None:
    names = cam_file_names(
        [Path("a/scan.png"), Path("b/scan.png"), Path("scan_1.png"), Path("c/Scan.PNG")]
    )
    assert len({name.casefold() for name in names}) == 4
    assert names[:2] == ["scan_1_cam.png", "scan_2_cam.png"]
    assert cam_file_names([Path("x/one.png"), Path("y/two.dcm")]) == [
        "one_cam.png",
        "two_cam.png",
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_cam_write_failure_is_not_blamed_on_the_input(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = scan(tmp_path / "scan.png")
    code = main(["predict", str(image), "--model", str(random_bundle_dir), "--cam", "/dev/full"])
    captured = capsys.readouterr()
    output = json.loads(captured.out)
    assert code == 1
    assert "error" not in output  # the input was fine and its prediction stands
    assert 0.0 <= output["tumor_prob"] <= 1.0
    assert output["cam_error"]["code"] == CAM_WRITE_FAILED
    assert "/dev/full" in output["cam_error"]["message"]
    assert f"error [{CAM_WRITE_FAILED}]" in captured.err


def test_a_file_where_the_cam_folder_should_be_is_a_clear_error(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(scan(tmp_path / f"s{i}.png", seed=i)) for i in (1, 2)]
    blocker = tmp_path / "cams"
    blocker.write_text("a file")
    code = main(["predict", *images, "--model", str(random_bundle_dir), "--cam", str(blocker)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert f"--cam {blocker}: cannot create the folder" in captured.err
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("value", ["1.5", "-0.1", "50", "nan", "half"])
def test_threshold_must_be_between_0_and_1(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path / "scan.png"), "--threshold", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threshold:" in err
    assert "0 to 1" in err


@pytest.mark.parametrize("value", ["0", "1", "0.35"])
def test_thresholds_in_range_are_used(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    image = scan(tmp_path / "scan.png")
    code, output = predict(capsys, random_bundle_dir, str(image), "--threshold", value)
    assert code == 0
    assert output["threshold"] == float(value)
