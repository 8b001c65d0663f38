"""A worker process's own thread that keeps its row in ``workers`` fresh.

Why a thread of its own: the reaper's passes (and the sweeps they run now and then, which list
the whole object store) can take longer than the window in which a worker counts as alive;
reporting between them would make a busy worker look dead. Reports come every
``reaper_interval_seconds``; the API counts a worker alive for ``Settings.worker_alive_within``.
Each report also says which guards the worker's job decode children hold (probed once, see
:func:`brainmri.jobs.decoding.probe_decode_guards`), for ``brainmri_worker_decode_unconfined``.
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
from brainmri.jobs.decoding import probe_decode_guards

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
        #: Guards this host's job decode children hold; probed when the thread starts, so
        #: worker start-up does not wait for a decode child.
        self.decode_guards: tuple[str, ...] | None = None
        self._stop_event = threading.Event()
        self._left = threading.Lock()

    def run(self) -> None:
        self.decode_guards = self._probe_decode_guards()
        while not self._stop_event.is_set():  # a goodbye during the probe: no report after it
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
                report_alive(
                    session,
                    self.worker_name,
                    self.settings.worker_queue_list,
                    decode_guards=self.decode_guards,
                )
        except Exception:
            log.warning("could not report worker %s alive", self.worker_name, exc_info=True)

    def _probe_decode_guards(self) -> tuple[str, ...]:
        try:
            guards = probe_decode_guards(self.settings)
        except Exception:  # reported as none held, which is what an alert should see
            log.exception("could not probe the confinement of job decode children")
            return ()
        log.info("job decode children hold: %s", ", ".join(guards) or "no guard")
        return guards
