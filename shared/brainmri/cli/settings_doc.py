"""``brainmri settings``: the settings table (README) and an ``.env`` template from one source."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from brainmri.cli.common import EPILOG
from brainmri.config import Settings, env_names


def _default(field: FieldInfo) -> str:
    value: Any = field.default
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def markdown_table() -> str:
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        variables = " / ".join(f"`{env}`" for env in env_names(name, field))
        default = _default(field)
        default_cell = f"`{default}`" if default else "*(unset)*"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {variables} | {default_cell} | {description} |")
    return "\n".join(lines)


def env_template() -> str:
    lines = [
        "# brainmri settings - every variable the services read (see README, Settings).",
        "# Research/triage only - not a medical device.",
        "# A commented or empty (NAME=) setting keeps its default.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        for env in env_names(name, field)[:1]:
            lines.append(f"# {(field.description or '').strip()}")
            lines.append(f"# {env}={_default(field)}")
            lines.append("")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "settings", help="print the settings table or an .env template", epilog=EPILOG
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--markdown", action="store_true", help="README table (default)")
    group.add_argument("--env-template", action="store_true", help="commented .env template")
    group.add_argument(
        "--write-readme",
        type=Path,
        metavar="README.md",
        help="replace the table between the settings-table markers in place",
    )
    parser.set_defaults(handler=run)


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def readme_with_table(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


def run(args: argparse.Namespace) -> int:
    if args.write_readme:
        args.write_readme.write_text(readme_with_table(args.write_readme.read_text()))
        return 0
    print(env_template() if args.env_template else markdown_table())
    return 0
