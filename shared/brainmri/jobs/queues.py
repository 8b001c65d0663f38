"""Queue depth of each job queue, for metrics and readiness (Redis or the embedded spool)."""

from __future__ import annotations

from brainmri.config import Settings
from brainmri.jobs.names import ALL_QUEUES

_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)  # kombu's default steps above 0


def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting per queue; raises if the broker cannot be reached."""
    if settings.embedded:
        folder = settings.broker_spool_dir / "queue"
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        return {queue: sum(1 for n in names if n.endswith(f".{queue}.msg")) for queue in ALL_QUEUES}
    url = settings.resolved_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return {}
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return {
            queue: int(client.llen(queue))
            + sum(int(client.llen(f"{queue}{_PRIORITY_SEP}{step}")) for step in _PRIORITY_STEPS)
            for queue in ALL_QUEUES
        }
    finally:
        client.close()
