"""Live workers per queue (``brainmri.db.workers``), on SQLite and PostgreSQL.

Worker processes report themselves on a real stack in ``test_services_api`` and
``test_embedded``; here the rules: who counts, for which queues, and for how long."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri.db.models import Worker
from brainmri.db.session import session_scope
from brainmri.db.workers import FORGET_AFTER, forget_worker, live_workers_by_queue, report_alive
from brainmri.jobs.names import ALL_QUEUES
from brainmri.jobs.presence import PresenceReporter

MINUTE = timedelta(minutes=1)


def _live(url: str, within: timedelta = MINUTE) -> dict[str, int]:
    with session_scope(url) as session:
        return live_workers_by_queue(session, ALL_QUEUES, within)


def _report(url: str, name: str, queues: list[str]) -> None:
    with session_scope(url) as session:
        report_alive(session, name, queues)


def _age(url: str, name: str, by: timedelta) -> None:
    with session_scope(url) as session:
        seen = session.scalar(select(Worker.seen_at).where(Worker.name == name))
        session.execute(update(Worker).where(Worker.name == name).values(seen_at=seen - by))


def test_no_worker_means_zero_for_every_queue(isolated_database: str) -> None:
    assert _live(isolated_database) == dict.fromkeys(ALL_QUEUES, 0)


def test_each_live_worker_counts_once_for_each_queue_it_consumes(isolated_database: str) -> None:
    _report(isolated_database, "host-a:11", ["predict", "evaluate"])
    _report(isolated_database, "host-b:12", ["predict", "predict"])
    _report(isolated_database, "trainer:13", ["train"])
    assert _live(isolated_database) == {"predict": 2, "evaluate": 1, "train": 1}


def test_a_second_report_refreshes_the_same_row(isolated_database: str) -> None:
    _report(isolated_database, "host-a:11", ["predict"])
    with session_scope(isolated_database) as session:
        first = session.get(Worker, "host-a:11")
        assert first is not None
        started, seen = first.started_at, first.seen_at
    _report(isolated_database, "host-a:11", ["evaluate", "predict"])
    with session_scope(isolated_database) as session:
        rows = session.scalars(select(Worker)).all()
        assert [(row.name, row.queues) for row in rows] == [("host-a:11", "evaluate,predict")]
        assert rows[0].started_at == started and rows[0].seen_at >= seen


def test_a_silent_worker_stops_counting_and_a_long_gone_one_is_deleted(
    isolated_database: str,
) -> None:
    _report(isolated_database, "silent:1", ["predict"])
    _age(isolated_database, "silent:1", by=2 * MINUTE)
    assert _live(isolated_database)["predict"] == 0
    assert _live(isolated_database, within=3 * MINUTE)["predict"] == 1

    _age(isolated_database, "silent:1", by=FORGET_AFTER)
    _report(isolated_database, "other:2", ["train"])  # any report prunes
    with session_scope(isolated_database) as session:
        assert session.scalars(select(Worker.name)).all() == ["other:2"]


def test_a_worker_that_says_goodbye_stops_counting_at_once(isolated_database: str) -> None:
    _report(isolated_database, "leaving:1", ["predict", "evaluate"])
    with session_scope(isolated_database) as session:
        forget_worker(session, "leaving:1")
    assert _live(isolated_database) == dict.fromkeys(ALL_QUEUES, 0)


def test_a_worker_reports_itself_until_it_leaves(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, worker_queues="predict,evaluate", reaper_interval_seconds=0.2
    )
    url = settings.resolved_database_url
    upgrade(url)
    reporter = PresenceReporter(settings)
    reporter.start()
    try:
        deadline = time.monotonic() + 30
        while _live(url)["predict"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live(url) == {"predict": 1, "evaluate": 1, "train": 0}
        time.sleep(0.5)  # a few more reports: still one row
        assert _live(url) == {"predict": 1, "evaluate": 1, "train": 0}
    finally:
        reporter.leave()
    assert not reporter.is_alive()
    assert _live(url) == dict.fromkeys(ALL_QUEUES, 0)
    reporter.leave()  # a second goodbye (shutting down, then shut down) is harmless
