"""A worker process's own thread that keeps its row in ``workers`` fresh.

Why a thread of its own: the reaper's passes (and the sweeps they run now and then, which list
the whole object store) can take longer than the window in which a worker counts as alive;
reporting between them would make a busy worker look dead. Reports come every
``reaper_interval_seconds``; the API counts a worker alive for ``Settings.worker_alive_within``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from brainmri.config import Settings
from brainmri.db.session import session_scope
from brainmri.db.workers import forget_worker, report_alive

log = logging.getLogger(__name__)


class PresenceReporter(threading.Thread):
    """Reports this worker alive now and every ``reaper_interval_seconds`` until
    :meth:`leave`, which also removes its row so it stops counting at once."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="worker-presence", daemon=True)
        self.settings = settings
        # Host and pid say where to look; the suffix keeps two containers that share a host
        # name (host networking) and a pid (their own pid namespaces) apart.
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop_event = threading.Event()
        self._left = threading.Lock()

    def run(self) -> None:
        while True:
            self._report()
            if self._stop_event.wait(self.settings.reaper_interval_seconds):
                return

    def leave(self) -> None:
        """Stop reporting and remove the row (best effort: else it goes stale). Idempotent.

        Called when the worker starts shutting down, not when it has finished: from then on it
        takes no new jobs, though a warm shutdown may still wait hours for a training job."""
        with self._left:
            if self._stop_event.is_set():
                return
            self._stop_event.set()
            if self.is_alive() and threading.current_thread() is not self:
                self.join(timeout=2)  # a report in flight must not land after the goodbye
            try:
                with session_scope(self.settings.resolved_database_url) as session:
                    forget_worker(session, self.worker_name)
            except Exception:
                log.warning(
                    "could not remove worker %s from the live list", self.worker_name, exc_info=True
                )

    def _report(self) -> None:
        try:
            with session_scope(self.settings.resolved_database_url) as session:
                report_alive(session, self.worker_name, self.settings.worker_queue_list)
        except Exception:
            log.warning("could not report worker %s alive", self.worker_name, exc_info=True)
