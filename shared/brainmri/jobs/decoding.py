"""The decode sandbox of a job process: predict and evaluate workers, the train job.

Why workers need one although the API already sandboxes uploads: an evaluate or train job
reads files straight from an S3 prefix or an allowed folder, and a zipped DICOM series keeps
its compressed pixel data through de-identification, so attacker-made bytes reach Pillow's
and pydicom's C decoders in the worker too - a process that holds the database URL, the S3
keys and the broker. With ``BRAINMRI_WORKER_DECODE_SANDBOX`` (on by default) those decoders
run in confined child processes (:mod:`brainmri.imaging.sandbox`); the worker still fetches
the bytes (the children can reach no network or file) and gets back only pixels.

One sandbox per process and configuration, started lazily: Celery's prefork pool forks its
job processes before any job runs, and a process forked from one that already had a sandbox
(its pipes shared with the parent) builds its own instead of using the inherited one.
"""

from __future__ import annotations

import logging
import os
import threading

from brainmri.config import Settings
from brainmri.imaging.sandbox import DecodeSandbox, sandbox_options

log = logging.getLogger(__name__)

_sandboxes: dict[tuple[object, ...], DecodeSandbox] = {}
_lock = threading.Lock()


def job_decode_sandbox(settings: Settings) -> DecodeSandbox | None:
    """This process's sandbox for ``settings``, or None when the setting turns it off."""
    if not settings.worker_decode_sandbox:
        return None
    options = sandbox_options(settings, processes=settings.decode_workers)
    key = (os.getpid(), *sorted(options.items()))
    with _lock:
        sandbox = _sandboxes.get(key)
        if sandbox is None:
            sandbox = DecodeSandbox(**options)
            _sandboxes[key] = sandbox
        return sandbox


def probe_decode_guards(settings: Settings) -> tuple[str, ...]:
    """The guards (:data:`brainmri.imaging.confine.GUARDS`) that this host's job decode
    children hold under ``settings``: none when the sandbox or its confinement is off.

    Why a probe: the children belong to Celery's pool processes and start at their first
    decode, while the process that reports the worker alive (and so to ``/metrics``) is the
    pool's parent, which decodes nothing. It starts one child with the same options, reads
    what the kernel granted it, and stops it: the job children are started the same way on
    the same kernel, so they hold the same.
    """
    if not settings.worker_decode_sandbox or not settings.upload_sandbox_confine:
        return ()
    probe = DecodeSandbox(**sandbox_options(settings, processes=1))
    try:
        probe.warm_up()
    finally:
        probe.close()
    if probe.confinement is None:
        log.warning("the decode confinement probe did not start; guards reported as none held")
        return ()
    return probe.confinement.held()
