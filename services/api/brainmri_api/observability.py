"""Prometheus metrics and request logging.

``GET /metrics`` exposes request latency, jobs by kind and status, the age of the oldest
queued job per kind, live workers and queue depth per queue, inference time per image, and
which guards the API's decode children and the workers' job decode children hold.
All but the latency are read on scrape (from the database and the broker), so every API
replica reports the same numbers and workers need no metrics endpoint of their own.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import cast

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brainmri.config import Settings
from brainmri.db.jobs import job_counts, oldest_queued
from brainmri.db.models import Job, JobStatus
from brainmri.db.session import session_scope
from brainmri.db.types import database_now
from brainmri.db.workers import live_workers_by_queue, live_workers_lacking_guards
from brainmri.imaging.confine import GUARDS
from brainmri.imaging.sandbox import DecodeSandbox
from brainmri.jobs.names import ALL_QUEUES
from brainmri.jobs.queues import queue_depths
from brainmri.logs import request_log_context

log = logging.getLogger("brainmri_api.access")
INFERENCE_WINDOW_SECONDS = 300


class PlatformCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "brainmri_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        waiting = GaugeMetricFamily(
            "brainmri_oldest_queued_job_age_seconds",
            "Seconds the longest-waiting queued job of each kind has been in its queue; alert "
            "on it to catch a queue that no live worker consumes",
            labels=["kind"],
        )
        live = GaugeMetricFamily(
            "brainmri_live_workers",
            "Worker processes that reported in the last staleness window, per queue they "
            "consume; 0 means jobs of that queue wait for nothing",
            labels=["queue"],
        )
        inference = GaugeMetricFamily(
            "brainmri_inference_seconds_per_image",
            f"Inference time per image of jobs finished in the last {INFERENCE_WINDOW_SECONDS}s",
            labels=["quantile"],
        )
        try:
            with session_scope(self.settings.resolved_database_url) as session:
                for kind, status, count in job_counts(session):
                    jobs.add_metric([kind, status], count)
                now = database_now(session)  # the clock enqueued_at was written by
                for kind, since in oldest_queued(session):
                    waiting.add_metric([kind], max(0.0, (now - since).total_seconds()))
                recent = sorted(
                    cast(  # the query keeps only rows whose value is not NULL
                        Sequence[float],
                        session.scalars(
                            select(Job.inference_ms_per_image).where(
                                Job.status == JobStatus.SUCCEEDED,
                                Job.finished_at
                                >= now - timedelta(seconds=INFERENCE_WINDOW_SECONDS),
                                Job.inference_ms_per_image.is_not(None),
                            )
                        ).all(),
                    )
                )
            for quantile in (0.5, 0.95):
                if recent:
                    value = recent[min(len(recent) - 1, int(quantile * len(recent)))] / 1000.0
                    inference.add_metric([str(quantile)], value)
        except Exception:
            log.warning("metrics: database unavailable", exc_info=True)
        unconfined = GaugeMetricFamily(
            "brainmri_worker_decode_unconfined",
            "Live workers whose job decode children lack the guard (files, tcp, signals: "
            "Linux Landlock; sockets: seccomp), because of their kernel or because "
            "BRAINMRI_WORKER_DECODE_SANDBOX or BRAINMRI_UPLOAD_SANDBOX_CONFINE is off; a "
            "worker that has not reported counts as lacking every guard. Alert on > 0",
            labels=["guard"],
        )
        try:  # apart: a database not yet migrated to the table must not hide the rest
            with session_scope(self.settings.resolved_database_url) as session:
                within = self.settings.worker_alive_within
                for queue, count in live_workers_by_queue(session, ALL_QUEUES, within).items():
                    live.add_metric([queue], count)
                for guard, count in live_workers_lacking_guards(session, GUARDS, within).items():
                    unconfined.add_metric([guard], count)
        except Exception:
            log.warning("metrics: live workers unknown", exc_info=True)
        yield jobs
        yield waiting
        yield live
        yield unconfined
        yield inference
        depth = GaugeMetricFamily(
            "brainmri_queue_depth", "Messages waiting per queue", labels=["queue"]
        )
        try:
            for queue, count in queue_depths(self.settings).items():
                depth.add_metric([queue], count)
        except Exception:
            log.warning("metrics: broker unavailable", exc_info=True)
        yield depth


class SandboxCollector(Collector):
    """Which guards the API's decode children hold, read from the sandbox on each scrape."""

    def __init__(self, sandbox: DecodeSandbox) -> None:
        self.sandbox = sandbox

    def collect(self) -> Iterator[GaugeMetricFamily]:
        confined = GaugeMetricFamily(
            "brainmri_upload_sandbox_confined",
            "1 where the API's decode children hold the guard (files, tcp, signals: Linux "
            "Landlock; sockets: seccomp), 0 where they do not (a kernel without them, or "
            "BRAINMRI_UPLOAD_SANDBOX_CONFINE=false); alert on 0. No sample before a child "
            "has started",
            labels=["guard"],
        )
        state = self.sandbox.confinement
        if state is not None or not self.sandbox.confine:
            held = state.held() if state is not None else ()
            for guard in GUARDS:
                confined.add_metric([guard], float(guard in held))
        yield confined


class Metrics:
    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "brainmri_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.registry.register(PlatformCollector(settings))

    def watch_sandbox(self, sandbox: DecodeSandbox) -> None:
        """Report ``sandbox``'s confinement as ``brainmri_upload_sandbox_confined``."""
        self.registry.register(SandboxCollector(sandbox))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMiddleware:
    """Request id, access log line and latency histogram for every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with request_log_context(request_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.metrics.latency.labels(scope["method"], template, str(status)).observe(elapsed)
                log.info(
                    "%s %s -> %d in %.1f ms", scope["method"], template, status, elapsed * 1000.0
                )
