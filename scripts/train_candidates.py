#!/usr/bin/env python3
"""Train several candidate recipes side by side on one GPU host, then rank them on validation.

Research/triage only - not a medical device.

Why: a lent or rented GPU is short-lived and the link to it is narrow. One call should train
every candidate worth trying (a small CNN leaves most of a large GPU idle, so they share it),
score each on the same validation split, and send back only what is worth keeping: every
run's small files (configuration, history, calibration, reports, logs) and the float16
bundles of the best candidates, in the order of a rule fixed before the run.

Input is a data pack (``brainmri dataset pack``: ``PACK/train.csv`` at the trainer's cache size,
``PACK/val.csv`` at the model size) and a plan, a JSON file::

    {"time_budget_minutes": 6.5,
     "candidates": [{"name": "rn18-light", "workers": 4, "args": ["--recipe", "simple", ...]}]}

Each candidate is one ``brainmri train`` process with ``--time_budget_minutes`` (its cosine
schedule is fitted to the budget after the first epochs). When it finishes, its bundle is
exported to float16 and evaluated on ``PACK/val.csv``. Ranking: validation macro-F1 over the
whole split, then tumour-vs-no-tumour ROC AUC. The ranked bundles are packed into
``OUT/bundles.tar`` while they fit in ``--max-bundle-mib`` and split into parts of
``--part-mib``; reassemble with ``cat bundles.tar.part* | tar -x``.

Usage (from the repository root, with the project importable; `scripts/gpu/README.md` shows
the whole procedure for a lent machine)::

    python scripts/train_candidates.py --plan PLAN.json --pack PACK --runs RUNS --out OUT
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Small files of a run worth keeping (weights and checkpoints are not).
SMALL_FILES = (
    "train_config.json",
    "history.csv",
    "history.json",
    "calibration.json",
    "training_curves.png",
    "model/metadata.json",
    "export.json",
    "val-pack/eval_report.json",
    "val-pack/predictions.csv",
    "val-pack/cm_multiclass.png",
    "val-pack/reliability.png",
)


# Minutes a candidate needs beyond its epoch-loop budget: process and loader start-up, the first
# epoch's one-off costs, calibration and the bundle. 0.8 was too little on an H200 (2026-12-04):
# a run had finished training and written its bundle when the deadline stopped it, unscored.
MIN_DEADLINE_SLACK_MINUTES = 1.25


@dataclass
class Candidate:
    """One training process and what became of it."""

    name: str
    args: list[str]
    workers: int
    run_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    started: float = 0.0
    finished: float | None = None
    returncode: int | None = None
    post: dict[str, Any] = field(default_factory=dict)

    @property
    def minutes(self) -> float:
        """Wall time from start to exit (or until now, while it still runs)."""
        return ((self.finished or time.monotonic()) - self.started) / 60

    @property
    def log_path(self) -> Path:
        return self.run_dir.parent / f"{self.name}.log"


def brainmri(*argv: str) -> list[str]:
    return [sys.executable, "-m", "brainmri.cli.main", *argv]


def last_epoch_line(path: Path) -> str:
    """The newest 'epoch N/M ... val_macro_f1' line of a training log (tqdm bars skipped)."""
    try:
        text = path.read_bytes()[-65536:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [
        line.strip()
        for chunk in text.splitlines()
        for line in chunk.split("\r")
        if "val_macro_f1" in line
    ]
    return lines[-1] if lines else ""


def start(candidate: Candidate, pack: Path, budget: float, device: str) -> None:
    candidate.run_dir.parent.mkdir(parents=True, exist_ok=True)
    command = brainmri(
        "train",
        "--train_csv",
        str(pack / "train.csv"),
        "--val_csv",
        str(pack / "val.csv"),
        "--out_dir",
        str(candidate.run_dir),
        "--device",
        device,
        "--time_budget_minutes",
        str(budget),
        "--num_workers",
        str(candidate.workers),
        *candidate.args,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    candidate.log = candidate.log_path.open("wb")
    candidate.log.write((" ".join(command) + "\n").encode())
    candidate.log.flush()
    candidate.started = time.monotonic()
    candidate.process = subprocess.Popen(  # noqa: S603 - argv built here, no shell
        command, stdout=candidate.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def post_process(candidate: Candidate, pack: Path) -> None:
    """float16 export (with an agreement check) and evaluation on the validation pack."""
    run = candidate.run_dir
    steps = {
        "export": brainmri(
            "export", "fp16", "--model", str(run / "model"), "--out", str(run / "fp16"),
            "--check", "100", "--data", str(pack / "val.csv"),
        ),
        "eval": brainmri(
            "eval", "--data", str(pack / "val.csv"), "--model", str(run / "fp16"),
            "--out", str(run / "val-pack"), "--backend", "eager",
        ),
    }  # fmt: skip
    for step, command in steps.items():
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        candidate.post[step] = done.returncode
        if step == "export" and done.returncode == 0:
            (run / "export.json").write_text(done.stdout)
        if done.returncode != 0:
            print(f"[{candidate.name}] {step} failed:\n{done.stderr[-3000:]}", flush=True)
            return
    report = json.loads((run / "val-pack" / "eval_report.json").read_text())
    calibration = json.loads((run / "calibration.json").read_text())
    metadata = json.loads((run / "fp16" / "metadata.json").read_text())
    candidate.post.update(
        version=metadata["version"],
        val_macro_f1=report["macro_f1"],
        val_auc=report["roc_auc_binary"],
        val_sensitivity=report["sensitivity"],
        val_specificity=report["specificity"],
        calib_macro_f1=calibration["macro_f1"],
        best_epoch=metadata["metrics"]["best_epoch"],
        epochs_run=metadata["provenance"]["epochs_run"],
        bundle_bytes=sum(f.stat().st_size for f in (run / "fp16").iterdir()),
    )


def stop(candidate: Candidate) -> None:
    if candidate.process and candidate.process.poll() is None:
        os.killpg(candidate.process.pid, signal.SIGTERM)
        try:
            candidate.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(candidate.process.pid, signal.SIGKILL)


def ranked(candidates: list[Candidate]) -> list[Candidate]:
    scored = [c for c in candidates if "val_macro_f1" in c.post]
    return sorted(scored, key=lambda c: (-c.post["val_macro_f1"], -(c.post["val_auc"] or 0.0)))


def write_outputs(
    candidates: list[Candidate], runs: Path, out: Path, max_bundle_mib: float, part_mib: float
) -> list[Candidate]:
    out.mkdir(parents=True, exist_ok=True)
    order = ranked(candidates)
    summary = {
        "ranking_rule": "validation macro-F1 over the whole pack split, then ROC AUC",
        "candidates": [
            {
                "name": c.name,
                "args": c.args,
                "returncode": c.returncode,
                "minutes": round(c.minutes, 2),
                **c.post,
            }
            for c in candidates
        ],
        "ranking": [c.name for c in order],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with tarfile.open(out / "runs.tar.gz", "w:gz") as archive:
        for c in candidates:
            for relative in SMALL_FILES:
                path = c.run_dir / relative
                if path.is_file():
                    archive.add(path, arcname=f"{c.name}/{relative}")
            if c.log_path.is_file():
                lines = c.log_path.read_bytes().decode("utf-8", "replace").splitlines()
                kept = "\n".join(line.split("\r")[-1] for line in lines) + "\n"
                info = tarfile.TarInfo(f"{c.name}/train.log")
                info.size = len(kept.encode())
                archive.addfile(info, io.BytesIO(kept.encode()))
    chosen: list[Candidate] = []
    total = 0
    for c in order:
        if total + c.post["bundle_bytes"] <= max_bundle_mib * 2**20:
            chosen.append(c)
            total += c.post["bundle_bytes"]
    if chosen:
        tar_path = runs / "bundles.tar"
        with tarfile.open(tar_path, "w") as archive:
            for c in chosen:
                archive.add(c.run_dir / "fp16", arcname=c.name)
        data = tar_path.read_bytes()
        part = int(part_mib * 2**20)
        for index in range(0, len(data), part):
            (out / f"bundles.tar.part{index // part:02d}").write_bytes(data[index : index + part])
    return chosen


def _cell(value: object, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True, help="where the runs are written")
    parser.add_argument("--out", type=Path, required=True, help="what is sent back")
    parser.add_argument(
        "--deadline-minutes", type=float, default=None, help="stop training runs after this"
    )
    parser.add_argument("--max-bundle-mib", type=float, default=56.0)
    parser.add_argument("--part-mib", type=float, default=15.0)
    parser.add_argument("--poll-seconds", type=float, default=20.0)
    parser.add_argument("--device", default="cuda", help="training device (cpu for a dry run)")
    args = parser.parse_args(argv)

    plan = json.loads(args.plan.read_text())
    budget = float(plan["time_budget_minutes"])
    deadline = args.deadline_minutes or budget + 3.0
    if deadline < budget + MIN_DEADLINE_SLACK_MINUTES:
        parser.error(
            f"--deadline-minutes {deadline:g} leaves less than {MIN_DEADLINE_SLACK_MINUTES:g} min "
            f"beyond the plan's {budget:g}-minute training budget for start-up, calibration and "
            "writing the bundle; a run stopped there is lost"
        )
    began = time.monotonic()
    candidates = [
        Candidate(c["name"], list(c["args"]), int(c.get("workers", 4)), args.runs / c["name"])
        for c in plan["candidates"]
    ]
    for candidate in candidates:
        start(candidate, args.pack, budget, args.device)
    pending = list(candidates)
    # Export and evaluation of a finished run overlap with the runs still training.
    post_pool = ThreadPoolExecutor(max_workers=len(candidates))
    post_jobs: list[Future[None]] = []
    try:
        while pending:
            time.sleep(args.poll_seconds)
            elapsed = (time.monotonic() - began) / 60
            finished = []
            for candidate in list(pending):
                assert candidate.process is not None
                code = candidate.process.poll()
                if code is None and elapsed > deadline:
                    print(f"[{candidate.name}] past the {deadline} min deadline: stopped")
                    stop(candidate)
                    code = candidate.process.returncode
                if code is not None:
                    candidate.returncode, candidate.finished = code, time.monotonic()
                    pending.remove(candidate)
                    finished.append(candidate)
            for candidate in finished:  # post-processing runs while the others train on
                code = candidate.returncode
                if candidate.log:
                    candidate.log.close()
                print(f"[{candidate.name}] exited {code} after {elapsed:.1f} min", flush=True)
                if code == 0:
                    post_jobs.append(post_pool.submit(post_process, candidate, args.pack))
                else:
                    tail = candidate.log_path.read_bytes()[-2500:].decode("utf-8", "replace")
                    print(tail.split("\r")[-1], flush=True)
            status = " | ".join(f"{c.name}: {last_epoch_line(c.log_path)[:70]}" for c in pending)
            if status:
                print(f"{elapsed:5.1f} min  {status}", flush=True)
    finally:
        for candidate in pending:
            stop(candidate)
        for job in post_jobs:
            if job.exception() is not None:
                print(f"post-processing failed: {job.exception()!r}", flush=True)
        post_pool.shutdown()
        chosen = write_outputs(candidates, args.runs, args.out, args.max_bundle_mib, args.part_mib)
    print("\nname            rc  epochs best  val-F1  val-AUC  calib-F1  sens   spec   min")
    for c in candidates:
        p = c.post
        if "val_macro_f1" in p:
            cells = [
                _cell(p["epochs_run"], "6d"),
                _cell(p["best_epoch"], "4d"),
                _cell(p["val_macro_f1"], ".4f"),
                _cell(p["val_auc"], ".5f"),
                _cell(p["calib_macro_f1"], ".4f"),
                _cell(p["val_sensitivity"], ".3f"),
                _cell(p["val_specificity"], ".3f"),
            ]
            print(f"{c.name:15s} {c.returncode!s:>3} {'  '.join(cells)}  {c.minutes:4.1f}")
        else:
            print(f"{c.name:15s} {c.returncode!s:>3}  (no score: {p})  {c.minutes:4.1f}")
    print(f"bundles sent back: {[c.name for c in chosen]}")
    return 0 if chosen else 1


if __name__ == "__main__":
    sys.exit(main())
