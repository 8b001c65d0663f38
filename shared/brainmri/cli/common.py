"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from brainmri import DISCLAIMER


def add_flag(group: argparse._ActionsContainer, name: str, **kwargs: Any) -> None:
    """Register ``--some_flag`` and its dashed spelling ``--some-flag`` as one option."""
    spellings = [f"--{name}"]
    if "_" in name:
        spellings.append(f"--{name.replace('_', '-')}")
    group.add_argument(*spellings, dest=kwargs.pop("dest", name), **kwargs)


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "y", "on"}:
        return True
    if lowered in {"0", "false", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def unit_interval(value: str) -> float:
    """argparse type of a probability threshold: a number from 0 to 1. The same range the
    ``TUMOR_THRESH`` setting and the API enforce, so ``--threshold 50`` (a percentage) is a
    usage error instead of a silent "nothing has a tumour"."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return number


def count(value: str) -> int:
    """argparse type of a count that may be 0 (a negative one is a usage error, not "none")."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


#: Fewer bootstrap resamples than this cannot place the 2.5th and 97.5th percentiles.
MIN_RESAMPLES = 100


def resample_count(value: str) -> int:
    """argparse type of a bootstrap's resample count: at least :data:`MIN_RESAMPLES`."""
    number = count(value)
    if number < MIN_RESAMPLES:
        raise argparse.ArgumentTypeError(
            f"a 95% interval needs at least {MIN_RESAMPLES} resamples, got {number}"
        )
    return number


def optional_resample_count(value: str) -> int:
    """:func:`resample_count`, or 0 for no bootstrap at all."""
    return 0 if count(value) == 0 else resample_count(value)


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


EPILOG = DISCLAIMER
