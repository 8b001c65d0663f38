"""``brainmri trainer`` (a worker on the train queue) and ``brainmri beat`` (the scheduler)."""

from __future__ import annotations

import argparse

from brainmri.cli.common import EPILOG
from brainmri.jobs.worker_main import run_beat, run_worker


def register_trainer(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trainer",
        help="run the trainer: a worker for training jobs on the 'train' queue",
        epilog=EPILOG,
    )
    parser.add_argument("--name", default=None, help="worker node name")
    parser.set_defaults(handler=lambda args: run_worker(queues="train", name=args.name))


def register_beat(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "beat",
        help="run the retrain scheduler (BRAINMRI_RETRAIN_SCHEDULE); exactly one",
        epilog=EPILOG,
    )
    parser.set_defaults(handler=lambda args: run_beat())
