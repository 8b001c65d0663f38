"""How the benchmarks print their Markdown tables and save their raw numbers."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def machine_label(threads: int) -> str:
    """The processor and how many threads the measurement used, for a table's caption."""
    return f"{platform.processor() or platform.machine()}, {threads} thread{'s' * (threads != 1)}"


def print_table(
    caption: str, columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]]
) -> None:
    """A Markdown table ready to paste into benchmarks/README.md. ``columns`` holds
    (header, row key, format spec); numeric columns (a format spec given) align right."""
    print(f"\n{caption}")
    print("| " + " | ".join(header for header, _, _ in columns) + " |")
    print("| " + " | ".join("---:" if spec else "---" for _, _, spec in columns) + " |")
    for row in rows:
        print("| " + " | ".join(format(row[key], spec) for _, key, spec in columns) + " |")


def write_results(out_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    """``out_dir/name.json``, the raw numbers behind a table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
