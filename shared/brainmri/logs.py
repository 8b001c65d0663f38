"""Structured logging with the job id (or request id) on every line.

``configure_logging`` installs a JSON (or text) formatter on the root logger; a context
variable carries the current job id so library code logs it without passing it around.
Nothing here logs request bodies or DICOM attributes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


@contextmanager
def job_log_context(job_id: str) -> Iterator[None]:
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


@contextmanager
def request_log_context(request_id: str) -> Iterator[None]:
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job_id.get()
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "request_id"):
            value = getattr(record, key, None)
            if value:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{key}={getattr(record, key)}"
            for key in ("job_id", "request_id")
            if getattr(record, key, None)
        )
        base = super().format(record)
        return f"{base} [{context}]" if context else base


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Idempotent root-logger setup for every service process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_brainmri", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._brainmri = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("urllib3", "botocore", "PIL", "matplotlib", "multipart", "python_multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
