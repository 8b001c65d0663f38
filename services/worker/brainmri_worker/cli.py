"""``brainmri worker``: a job worker for the predict/evaluate queues (CPU, CUDA or MPS)."""

from __future__ import annotations

import argparse

from brainmri.cli.common import EPILOG
from brainmri.jobs.worker_main import run_worker


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a job worker (CPU, CUDA or Apple MPS; see BRAINMRI_DEVICE)",
        epilog=EPILOG,
        description="Consumes BRAINMRI_WORKER_QUEUES (default predict,evaluate). Add 'train' "
        "to run training jobs in the same process.",
    )
    parser.add_argument("--queues", default=None, help="comma-separated queues to consume")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="parallel jobs (processes); one model copy each"
    )
    parser.add_argument(
        "--pool",
        choices=("prefork", "solo", "threads"),
        default="prefork",
        help="prefork enforces time limits and survives crashed jobs",
    )
    parser.add_argument("--name", default=None, help="worker node name")
    parser.add_argument(
        "--beat",
        action="store_true",
        help="also run the retrain scheduler in this process (one per deployment)",
    )
    parser.set_defaults(
        handler=lambda args: run_worker(
            queues=args.queues,
            concurrency=args.concurrency,
            pool=args.pool,
            name=args.name,
            beat=args.beat,
        )
    )
