"""``brainmri eval``: a run that scored nothing fails, and a reused ``--out`` never mixes runs.

Before, class folders holding only unreadable files printed "on 0 labelled images (2
unreadable)" and exited 0, and a second run into the same folder left the first run's
``errors.csv`` and plots beside a report that said ``n_failed: 0``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brainmri.cli.main import main
from brainmri.evaluation.report import ERRORS_FILE, PLOT_FILES, REPORT_FILE
from brainmri.phantom import phantom_png


def class_folders(root: Path, files: dict[str, bytes]) -> Path:
    """``root/<class>/<name>`` for each ``"<class>/<name>": bytes``."""
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_nothing_scored_exits_1_with_a_clear_message(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = class_folders(
        tmp_path / "junk", {"glioma/a.png": b"not an image", "no_tumor/b.jpg": b"notes"}
    )
    out = tmp_path / "out"
    code = main(["eval", "--data", str(data), "--model", str(random_bundle_dir), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "no image could be scored (2 of 2 unreadable" in err
    assert str(out / ERRORS_FILE) in err
    report = json.loads((out / REPORT_FILE).read_text())
    assert (report["n_scored"], report["n_failed"]) == (0, 2)
    assert len((out / ERRORS_FILE).read_text().splitlines()) == 3  # header + 2 inputs


def test_a_reused_out_folder_holds_only_the_latest_run(
    tmp_path: Path, random_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {
        f"{name}/{name}_{seed}.png": phantom_png(name, seed=seed, size=64)
        for name in ("glioma", "no_tumor")
        for seed in (1, 2)
    }
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # the user's own file: never touched
    model = ["--model", str(random_bundle_dir), "--out", str(out)]

    def listing() -> list[str]:
        report = json.loads((out / REPORT_FILE).read_text())
        assert sorted(p.name for p in out.iterdir()) == sorted([*report["artifacts"], "notes.txt"])
        return report

    with_failure = class_folders(tmp_path / "first", {**good, "glioma/broken.png": b"junk"})
    assert main(["eval", "--data", str(with_failure), *model]) == 0
    assert listing()["n_failed"] == 1
    assert (out / ERRORS_FILE).exists()
    assert all((out / name).exists() for name in PLOT_FILES)

    all_good = class_folders(tmp_path / "second", good)
    assert main(["eval", "--data", str(all_good), *model]) == 0
    assert listing()["n_failed"] == 0
    assert not (out / ERRORS_FILE).exists()  # the first run's failures are gone

    junk = class_folders(tmp_path / "third", {"glioma/a.png": b"junk"})
    assert main(["eval", "--data", str(junk), *model]) == 1
    assert listing()["n_scored"] == 0
    assert not any((out / name).exists() for name in PLOT_FILES)  # no plots of older runs
    assert (out / "notes.txt").read_text() == "mine"
    capsys.readouterr()


def test_eval_threshold_outside_0_1_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--threshold", "2"])
    assert exit_info.value.code == 2
    assert "argument --threshold: must be from 0 to 1, got 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
