"""Live workers per queue (``brainmri.db.workers``), on SQLite and PostgreSQL.

Worker processes report themselves on a real stack in ``test_services_api`` and
``test_embedded``; here the rules: who counts, for which queues, and for how long."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri.db.models import Worker
from brainmri.db.session import session_scope
from brainmri.db.workers import (
    FORGET_AFTER,
    forget_worker,
    live_workers_by_queue,
    live_workers_lacking_guards,
    report_alive,
)
from brainmri.imaging.confine import GUARDS, landlock_abi
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


@contextmanager
def _reporting(settings: Settings) -> Iterator[PresenceReporter]:
    """A started reporter, once its first report is in (its queues include predict); it
    leaves on exit."""
    url = settings.resolved_database_url
    upgrade(url)
    reporter = PresenceReporter(settings)
    reporter.start()
    try:
        deadline = time.monotonic() + 30
        while _live(url)["predict"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield reporter
    finally:
        reporter.leave()


def test_a_worker_reports_itself_until_it_leaves(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, worker_queues="predict,evaluate", reaper_interval_seconds=0.2
    )
    url = settings.resolved_database_url
    with _reporting(settings) as reporter:
        assert _live(url) == {"predict": 1, "evaluate": 1, "train": 0}
        time.sleep(0.5)  # a few more reports: still one row
        assert _live(url) == {"predict": 1, "evaluate": 1, "train": 0}
    assert not reporter.is_alive()
    assert _live(url) == dict.fromkeys(ALL_QUEUES, 0)
    reporter.leave()  # a second goodbye (shutting down, then shut down) is harmless


def _guards_of(url: str, name: str) -> str | None:
    with session_scope(url) as session:
        return session.scalar(select(Worker.decode_guards).where(Worker.name == name))


def test_workers_lacking_each_decode_guard_are_counted(isolated_database: str) -> None:
    url = isolated_database
    with session_scope(url) as session:
        report_alive(session, "full:1", ["predict"], decode_guards=GUARDS)
        report_alive(session, "landlock-only:2", ["evaluate"], decode_guards=["files", "tcp"])
        report_alive(session, "sandbox-off:3", ["train"], decode_guards=[])
        report_alive(session, "old-version:4", ["predict"])  # never says: lacks everything
        report_alive(session, "gone:5", ["predict"], decode_guards=[])
    _age(url, "gone:5", by=2 * MINUTE)  # not live: not counted
    assert _guards_of(url, "full:1") == "files,tcp,signals,sockets"
    assert _guards_of(url, "sandbox-off:3") == ""
    assert _guards_of(url, "old-version:4") is None
    with session_scope(url) as session:
        lacking = live_workers_lacking_guards(session, GUARDS, MINUTE)
    assert lacking == {"files": 2, "tcp": 2, "signals": 3, "sockets": 3}

    with session_scope(url) as session:  # a later report replaces what the row said
        report_alive(session, "old-version:4", ["predict"], decode_guards=GUARDS)
        lacking = live_workers_lacking_guards(session, GUARDS, MINUTE)
    assert lacking == {"files": 1, "tcp": 1, "signals": 2, "sockets": 2}


def _children_of_this_process() -> set[int]:
    """Direct children of the test process, read from /proc."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry.name))
    return found


def _reported_guards(settings: Settings) -> str | None:
    with _reporting(settings) as reporter:
        return _guards_of(settings.resolved_database_url, reporter.worker_name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and Landlock")
def test_a_worker_reports_what_its_decode_children_hold(tmp_path: Path) -> None:
    before = _children_of_this_process()
    reported = _reported_guards(
        Settings(data_dir=tmp_path, worker_queues="predict", reaper_interval_seconds=0.2)
    )
    assert reported is not None
    held = reported.split(",") if reported else []
    # What this kernel grants: Landlock (files, tcp from ABI 4, signals from ABI 6) and
    # seccomp on x86-64 and arm64.
    abi = landlock_abi()
    assert ("files" in held) == (abi >= 1)
    assert ("tcp" in held) == (abi >= 4)
    assert ("signals" in held) == (abi >= 6)
    if platform.machine() in {"x86_64", "aarch64"}:
        assert "sockets" in held
    # The probe's child is stopped, not left to idle beside the worker.
    assert _children_of_this_process() <= before


def test_a_worker_without_a_decode_sandbox_reports_no_guard(tmp_path: Path) -> None:
    for off in ({"worker_decode_sandbox": False}, {"upload_sandbox_confine": False}):
        settings = Settings(
            data_dir=tmp_path / next(iter(off)),
            worker_queues="predict",
            reaper_interval_seconds=0.2,
            **off,
        )
        assert _reported_guards(settings) == ""
