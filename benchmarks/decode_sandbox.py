"""What the workers' decode sandbox costs: scoring files with decoding in-process vs in
confined children (``BRAINMRI_WORKER_DECODE_SANDBOX``).

Same engine, weights, files and decode parallelism (``--workers`` threads, and as many
children when sandboxed); timings start from files on disk and end at class probabilities, as
an evaluate job's do. The children are started before timing (a worker keeps them warm).
Also reports each child's resident memory, which a worker pays on top of its model.

    python benchmarks/decode_sandbox.py --n 400 --model shared/brainmri/assets/default_model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.inference import make_bundle, make_images
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.inference.engine import InferenceEngine
from brainmri.inference.results import Prediction


def child_rss_mb() -> list[float]:
    """Resident memory of this process's decode children, from Linux /proc."""
    sizes = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or b"serve_child" not in (entry / "cmdline").read_bytes():
                continue
            status = (entry / "status").read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        if int(fields["PPid"]) == os.getpid():
            sizes.append(int(fields["VmRSS"].split()[0]) / 1024)
    return sorted(sizes)


def run(engine: InferenceEngine, paths: list[Path]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    results = engine.predict_sources(paths)
    elapsed = time.perf_counter() - started
    probs = [
        [r.class_probs[c] for c in engine.class_names] for r in results if isinstance(r, Prediction)
    ]
    return elapsed, np.array(probs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2, help="decode threads / children")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None, help="an existing bundle")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(args.n, Path(tmp))
        bundle = make_bundle("resnet18", 176, Path(tmp), args.model)
        sandbox = DecodeSandbox(processes=args.workers, timeout=30.0, confine=True)
        sandbox.warm_up()
        reference = None
        for mode, box in (("in-process threads", None), ("confined children", sandbox)):
            engine = InferenceEngine(
                bundle,
                backend=args.backend,
                device="cpu",
                decode_workers=args.workers,
                sandbox=box,
            )
            run(engine, paths[:32])  # warm-up: kernels chosen, children started
            times = []
            for _ in range(args.repeats):
                seconds, probs = run(engine, paths)
                times.append(seconds)
            reference = probs if reference is None else reference
            rows.append(
                {
                    "decode": mode,
                    "images_per_s": len(paths) / statistics.median(times),
                    "max_prob_diff": float(np.abs(probs - reference).max()),
                    "child_rss_mb": child_rss_mb() if box else [],
                    "confined": bool(box and box.confinement and box.confinement.files),
                }
            )
        sandbox.close()
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\n{args.n} images, backend {args.backend}, {args.workers} decode workers, {machine}")
    print("| decode | images/s | max Δp | child RSS (MB) |")
    print("| --- | --- | --- | --- |")
    base = rows[0]["images_per_s"]
    for row in rows:
        rss = ", ".join(f"{mb:.0f}" for mb in row["child_rss_mb"]) or "-"
        print(
            f"| {row['decode']} | {row['images_per_s']:.1f} ({row['images_per_s'] / base:.2f}x) "
            f"| {row['max_prob_diff']:.1e} | {rss} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decode-sandbox.json").write_text(
        json.dumps(
            {"n": args.n, "backend": args.backend, "machine": machine, "rows": rows}, indent=2
        )
    )


if __name__ == "__main__":
    main()
