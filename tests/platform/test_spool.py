"""Embedded mode's filesystem broker (``brainmri.jobs.spool``) through real kombu connections.

kombu's own filesystem transport let a consumer claim a message file before its producer had
written it; the worker read zero bytes, stopped on an "unrecoverable error" and exited 0, and
embedded mode went on accepting jobs that nothing would run. These tests drive the transport
as Celery does (producers and consumers on their own connections to one spool folder).
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport.virtual import Empty

from brainmri.config import Settings
from brainmri.jobs.celery_app import create_celery
from brainmri.jobs.spool import TRANSPORT, spool_options
from brainmri.jobs.worker_main import run_celery

QUEUE = Queue("predict", Exchange("predict", type="direct"), routing_key="predict")


def spool_connection(spool: Path) -> Connection:
    """A connection to ``spool`` as embedded mode's Celery app makes it, with the predict
    queue's binding written as a declare writes it. (kombu remembers declarations per
    process, so after any other test declared the same names a declare here would skip the
    write, and a publish would find no queue for its routing key.)"""
    options = spool_options(spool, polling_interval=0.01)
    connection = Connection("filesystem://", transport=TRANSPORT, transport_options=options)
    connection.default_channel._queue_bind("predict", "predict", None, "predict")
    return connection


def receive(spool: Path, count: int, timeout: float = 10.0) -> list[dict]:
    """Up to ``count`` messages from one consumer connection (fewer if none come in time)."""
    got: list[dict] = []
    with spool_connection(spool) as connection:
        queue = connection.SimpleQueue(QUEUE)
        try:
            while len(got) < count:
                message = queue.get(timeout=timeout)
                got.append(message.payload)
                message.ack()
        except queue.Empty:
            pass
        finally:
            queue.close()
    return got


def test_an_empty_message_file_is_dropped_and_the_next_one_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "broker"
    with spool_connection(spool) as connection:
        connection.SimpleQueue(QUEUE).put({"job": "after"})
    # What a producer caught between creating and writing its file looked like to a consumer.
    (spool / "queue" / "0_empty.predict.msg").write_bytes(b"")
    assert receive(spool, 1) == [{"job": "after"}]
    assert "dropped an unreadable message of queue predict (0 bytes)" in caplog.text
    assert not list((spool / "queue").iterdir())
    assert not list((spool / "processed").iterdir())  # claimed files do not pile up


def test_two_consumers_under_a_burst_get_every_message_exactly_once(tmp_path: Path) -> None:
    """Three producers publish through the exchange table while two consumers claim messages
    from the folder, all at once: every message arrives once, none is read half-written."""
    spool = tmp_path / "broker"
    spool_connection(spool).release()
    total = 600
    received: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    producing = threading.Event()

    def consume(slot: int) -> None:
        with spool_connection(spool) as connection:
            channel = connection.default_channel
            while producing.is_set() or sum(map(len, received)) < total:
                try:
                    received[slot].append(channel._get("predict")["n"])
                except Empty:
                    if not producing.is_set() and not list((spool / "queue").iterdir()):
                        return
                except Exception as exc:  # reported by the assertion below
                    errors.append(exc)
                    return

    def produce(offset: int) -> None:
        try:
            publish(offset)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    def publish(offset: int) -> None:
        with spool_connection(spool) as connection:
            channel = connection.default_channel
            for number in range(offset, total, 3):
                # What a publish does (look the queue up in the exchange table, write the
                # message) and what a re-declaring connection does (rewrite the table).
                assert [row.queue for row in channel.get_table("predict")] == ["predict"]
                channel._put("predict", {"n": number})
                channel._queue_bind("predict", "predict", None, "predict")

    producing.set()
    producers = [threading.Thread(target=produce, args=(offset,)) for offset in range(3)]
    consumers = [threading.Thread(target=consume, args=(slot,)) for slot in range(2)]
    for thread in consumers + producers:
        thread.start()
    for thread in producers:
        thread.join(timeout=60)
    producing.clear()
    for thread in consumers:
        thread.join(timeout=60)
    assert errors == []
    counts = Counter(number for slot in received for number in slot)
    assert len(counts) == total
    assert set(counts.values()) == {1}
    assert not list((spool / "queue").iterdir())  # no partial file left behind


def test_a_failed_celery_command_returns_its_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`app.start` drops click's status, so a worker stopped by an unrecoverable error exited
    0; ``run_celery`` hands the status back (here: no worker answers a status query)."""
    app = create_celery(Settings(data_dir=tmp_path / "data"))
    assert run_celery(app, ["status", "--timeout", "0.5"]) == 69  # EX_UNAVAILABLE
    assert "No nodes replied" in capsys.readouterr().err
    assert run_celery(app, ["worker", "--pool", "no-such-pool"]) == 2
