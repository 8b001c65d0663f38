"""``brainmri db upgrade``: apply Alembic migrations (the compose/k8s migrate step)."""

from __future__ import annotations

import argparse

from brainmri.cli.common import EPILOG
from brainmri.config import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="database migrations", epilog=EPILOG)
    commands = parser.add_subparsers(dest="db_command", required=True)
    up = commands.add_parser(
        "upgrade", help="wait for the database, then migrate to head", epilog=EPILOG
    )
    up.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the database")
    up.set_defaults(handler=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    from brainmri.db.migrate import upgrade, wait_for_database

    url = get_settings().resolved_database_url
    wait_for_database(url, timeout=args.wait)
    upgrade(url)
    print("database schema is at the latest revision")
    return 0
