"""Run Alembic migrations programmatically (used by ``brainmri db upgrade`` and embedded mode)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from brainmri.db.session import get_engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def wait_for_database(url: str, timeout: float = 60.0) -> None:
    """The prestart habit: wait until the database accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with get_engine(url).connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for the database: %s", exc.orig)
            time.sleep(1.0)


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
