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
        "glioma_tumor, ...). Exact duplicates are dropped, near duplicates (mirrored and "
        "flipped copies included) grouped, and a group never straddles splits.",
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
    add_flag(
        build,
        "split_version",
        type=int,
        choices=(1, 2),  # brainmri.data.builder.SPLIT_VERSIONS (not imported: torch is slow)
        default=2,
        help="2 (default): mirrored and flipped copies are grouped too, and each group's split "
        "comes from a stable hash, so adding images never moves the others; 1: the builder "
        "before 2026-12-06 (as-stored grouping, which let mirrored copies straddle splits), "
        "only to rebuild its splits",
    )
    add_flag(build, "workers", type=int, default=2, help="decoding threads")
    build.set_defaults(handler=run_build)
    register_pack(commands)


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
        split_version=args.split_version,
    )
    print(summary.table())
    if summary.unreadable:
        print(f"{len(summary.unreadable)} unreadable file(s), e.g. {summary.unreadable[0]}")
    print(f"wrote {args.out}/train.csv, val.csv, test.csv and summary.json")
    return 0


def register_pack(commands: argparse._SubParsersAction) -> None:
    pack = commands.add_parser(
        "pack",
        epilog=EPILOG,
        help="compact, relocatable JPEG copies of a manifest's images (for a remote GPU host)",
        description="Letterbox and resize every image of MANIFEST once, with the project's own "
        "geometry step, and save it as a grey JPEG under OUT, with OUT/<name>.csv (relative "
        "paths) and OUT/pack.json. Pack training manifests at the trainer's cache size, "
        "round(img_size * 1.15) (258 for 224), and validation/test manifests at img_size: "
        "the trainer then rebuilds its caches without resampling twice.",
    )
    pack.add_argument("manifest", type=Path, help="a builder CSV (train.csv, val.csv, ...)")
    add_flag(pack, "out", type=Path, required=True, help="pack folder (created if missing)")
    add_flag(pack, "size", type=int, required=True, help="square side of the packed images")
    add_flag(pack, "quality", type=int, default=90, help="JPEG quality 1-100")
    add_flag(pack, "resize", choices=("letterbox", "squash"), default="letterbox")
    add_flag(pack, "workers", type=int, default=2, help="decoding threads")
    pack.set_defaults(handler=run_pack)


def run_pack(args: argparse.Namespace) -> int:
    from brainmri.data.pack import pack_manifest

    summary = pack_manifest(
        args.manifest,
        args.out,
        size=args.size,
        quality=args.quality,
        resize=args.resize,
        workers=args.workers,
    )
    copies = summary.copies
    counts = ", ".join(f"{name} {count}" for name, count in copies.counts.items())
    print(
        f"packed {copies.n} images ({counts}) at {summary.size} px, JPEG q{summary.quality}: "
        f"{copies.bytes / 2**20:.1f} MiB in {args.out / copies.name}"
    )
    if copies.skipped:
        print(f"{len(copies.skipped)} unreadable file(s) left out, e.g. {copies.skipped[0]}")
    print(f"source fingerprint {copies.source_fingerprint}; manifest {args.out}/{copies.name}.csv")
    return 0
