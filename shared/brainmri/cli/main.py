"""Entry point of the ``brainmri`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from pydantic import ValidationError

from brainmri import DISCLAIMER, __version__
from brainmri.cli import (
    compare,
    dataset,
    db,
    evaluate,
    export,
    predict,
    remote,
    settings_doc,
    train,
)
from brainmri.config import describe_settings_error
from brainmri.errors import BrainMRIError, ConfigurationError
from brainmri.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainmri",
        description=f"Brain MRI tumor triage. {DISCLAIMER}",
        epilog=DISCLAIMER,
    )
    parser.add_argument("--version", action="version", version=f"brainmri {__version__}")
    parser.add_argument(
        "--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (predict, evaluate, compare, dataset, train, export, db, settings_doc, remote):
        module.register(subparsers)
    # Service commands (serve, worker, trainer, beat, remote client) come from the service
    # packages through an entry-point group, so this library never imports a service.
    for entry in sorted(entry_points(group="brainmri.cli"), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The words this command was given, for records such as a bundle's provenance: sys.argv
    # is someone else's when main() is called from Python (a test, a notebook, a service).
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    configure_logging(args.log_level, "text")
    try:
        return int(args.handler(args) or 0)
    except BrainMRIError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        # get_settings() already turns a bad environment into a ConfigurationError; this
        # catches a Settings built elsewhere, so a bad value is never a pydantic traceback.
        if exc.title != "Settings":
            raise
        print(f"error [{ConfigurationError.code}]: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
