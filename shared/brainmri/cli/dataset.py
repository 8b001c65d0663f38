"""``brainmri dataset build``: class folders -> duplicate-aware train/val/test CSVs."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainmri.cli.common import EPILOG, add_flag


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="build train/val/test manifests", epilog=EPILOG)
    commands = parser.add_subparsers(dest="dataset_command", required=True)
    build = commands.add_parser(
        "build",
        epilog=EPILOG,
        help="scan class-named folders into duplicate-aware, stratified splits",
        description="Folder names are case/underscore tolerant with aliases (notumor, "
        "glioma_tumor, ...). Exact duplicates are dropped, near duplicates grouped, and a group "
        "never straddles splits.",
    )
    build.add_argument(
        "--root",
        type=Path,
        action="append",
        required=True,
        help="folder of class subfolders (repeatable)",
    )
    add_flag(build, "out", type=Path, required=True, help="output folder for the CSVs")
    add_flag(build, "val_frac", type=float, default=0.15)
    add_flag(build, "test_frac", type=float, default=0.15)
    add_flag(build, "seed", type=int, default=42)
    add_flag(
        build,
        "near_dup_threshold",
        type=float,
        default=0.99,
        help="32x32 grey thumbnail correlation that makes two images one group",
    )
    add_flag(build, "workers", type=int, default=2, help="decoding threads")
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    from brainmri.data.builder import build_dataset

    summary = build_dataset(
        args.root,
        args.out,
        val_frac=args.val_frac,
        test_frac=args.test_frac,
        seed=args.seed,
        near_dup_threshold=args.near_dup_threshold,
        workers=args.workers,
    )
    print(summary.table())
    if summary.unreadable:
        print(f"{len(summary.unreadable)} unreadable file(s), e.g. {summary.unreadable[0]}")
    print(f"wrote {args.out}/train.csv, val.csv, test.csv and summary.json")
    return 0
