"""scripts/train_candidates.py on the CPU: candidates trained side by side, ranked, sent back."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from brainmri.data.pack import pack_manifest
from brainmri.models.bundle import load_bundle
from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "train_candidates.py"
TINY = ["--arch", "resnet10t", "--img_size", "48", "--batch_size", "16"]
TINY += ["--early_stop_patience", "0", "--precision", "fp32", "--epochs", "2"]


@pytest.mark.slow
def test_candidates_are_trained_ranked_and_the_best_bundles_sent_back(
    phantom_split: Path, tmp_path: Path
) -> None:
    split = phantom_split
    pack = tmp_path / "pack"
    pack_manifest(split / "train.csv", pack, size=55, progress=False)
    pack_manifest(split / "val.csv", pack, size=48, progress=False)
    plan = {
        "time_budget_minutes": 5,
        "candidates": [
            {"name": "light", "workers": 0, "args": ["--recipe", "simple", *TINY]},
            {"name": "mixed", "workers": 0, "args": ["--recipe", "strong", *TINY]},
            {"name": "broken", "workers": 0, "args": [*TINY, "--arch", "no_such_net"]},
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "out"
    # Room for one bundle only (resnet10t in float16 is ~10 MiB): the runner-up stays behind.
    done = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--plan", str(tmp_path / "plan.json"),
            "--pack", str(pack), "--runs", str(tmp_path / "runs"), "--out", str(out),
            "--device", "cpu", "--poll-seconds", "1", "--max-bundle-mib", "15",
            "--part-mib", "4",
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    summary = json.loads((out / "summary.json").read_text())
    by_name = {c["name"]: c for c in summary["candidates"]}
    assert by_name["broken"]["returncode"] != 0
    assert "val_macro_f1" not in by_name["broken"]
    scored = [by_name[name] for name in summary["ranking"]]
    assert [c["name"] for c in scored] != [] and "broken" not in summary["ranking"]
    keys = [(-c["val_macro_f1"], -(c["val_auc"] or 0.0)) for c in scored]
    assert keys == sorted(keys)  # the ranking follows the stated rule
    assert all(c["export"] == 0 and c["eval"] == 0 for c in scored)

    parts = sorted(out.glob("bundles.tar.part*"))
    assert len(parts) >= 2 and all(p.stat().st_size <= 4 * 2**20 for p in parts)
    reassembled = tmp_path / "bundles.tar"
    reassembled.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(reassembled) as archive:
        archive.extractall(tmp_path / "back", filter="data")
    returned = sorted(p.name for p in (tmp_path / "back").iterdir())
    assert returned == [summary["ranking"][0]]  # only the best fitted in 15 MiB
    bundle = load_bundle(tmp_path / "back" / returned[0])  # sha256-verified float16 bundle
    assert bundle.version == by_name[returned[0]]["version"]

    with tarfile.open(out / "runs.tar.gz") as archive:
        names = set(archive.getnames())
    for name in ("light", "mixed"):
        for small in ("history.csv", "calibration.json", "val-pack/eval_report.json", "train.log"):
            assert f"{name}/{small}" in names
    assert "broken/train.log" in names  # the failure's log comes back too
    assert "bundles sent back" in done.stdout


def test_a_deadline_too_close_to_the_budget_is_refused(tmp_path: Path) -> None:
    """0.8 min of slack lost a finished run on a lent GPU; the driver now refuses it up front."""
    plan = {"time_budget_minutes": 2.5, "candidates": [{"name": "x", "args": TINY}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    argv = [str(SCRIPT), "--plan", str(tmp_path / "plan.json"), "--pack", "p", "--device", "cpu"]
    argv += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, *argv, "--deadline-minutes", "3.3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "leaves less than 1.25 min beyond the plan's 2.5-minute training budget" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_the_committed_gpu_plan_builds_valid_configs() -> None:
    """A lent GPU call is one shot: a stale flag in the plan would waste it."""
    from brainmri.cli.main import build_parser
    from brainmri.cli.train import config_from_args

    plan = json.loads((PROJECT_ROOT / "scripts/gpu/plan-default-model.json").read_text())
    assert plan["time_budget_minutes"] > 0
    names = [candidate["name"] for candidate in plan["candidates"]]
    assert len(names) == len(set(names))
    configs = []
    for candidate in plan["candidates"]:
        files = ["--train_csv", "t.csv", "--val_csv", "v.csv", "--out_dir", "o"]
        # an unknown flag exits here, an out-of-range value raises in make_config
        args = build_parser().parse_args(["train", *files, *candidate["args"]])
        configs.append(config_from_args(args))
    assert len(set(configs)) == len(configs), "two candidates would train the same thing"
