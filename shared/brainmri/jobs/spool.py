"""Embedded mode's broker: kombu's filesystem transport, made safe for two workers and an API.

kombu's own transport creates a message file and only then writes it, while a consumer polling
the folder claims any file whose name matches, empty or not. A worker that claimed a message
in that gap read zero bytes, failed to decode them and stopped for good (Celery exits 0 on such
an "unrecoverable error"), so embedded mode lost its predict worker under a burst of uploads.
It also moved claimed files to the system temp folder, which is a copy, not an atomic rename,
where that folder lies on another file system (containers), so two workers could both take one
message.

The exchange tables (which queue a routing key reaches) had the same gap: a binder created or
rewrote the table file in place while a producer read it, so a publish could read an empty
table and fail the same way. Tables are now replaced whole under a lock file of their own.

Here a message is written under a name no consumer matches and renamed into place when it is
complete, and a consumer claims it by renaming it into the spool's own ``processed`` folder,
which only one of them can win. A message that still cannot be read (a file damaged outside
the service) is dropped with an error in the log instead of stopping the worker: the job row
stays queued and the reaper sends it again.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

log = logging.getLogger(__name__)

# The transport as Celery's ``broker_transport`` setting names it.
TRANSPORT = "brainmri.jobs.spool:Transport"


def spool_options(spool: Path, polling_interval: float) -> dict[str, Any]:
    """The transport options for a spool folder (its sub-folders are created here)."""
    for folder in ("queue", "processed", "control"):
        (spool / folder).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(spool / "queue"),
        "data_folder_out": str(spool / "queue"),
        "processed_folder": str(spool / "processed"),
        "control_folder": str(spool / "control"),
        "store_processed": False,
        "polling_interval": polling_interval,
    }


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old content or the new, never part."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _binding(routing_key: str, pattern: str, queue: str) -> Any:
    """One row of an exchange table, as kombu writes it."""
    return filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")


class Channel(filesystem.Channel):
    """Atomic put, rename-to-claim get, exchange tables replaced whole."""

    # --- exchange tables -----------------------------------------------------------------
    def get_table(self, exchange: str) -> list[Any]:
        try:
            data = self._exchange_file(exchange).read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"cannot read the exchange table of {exchange}") from exc
        return [filesystem.exchange_queue_t(*row) for row in loads(data.decode())]

    def _update_table(self, exchange: str, change: Any) -> None:
        """Read-modify-replace the table under an exclusive lock on a separate lock file, so
        concurrent binders never lose each other's rows and readers never see a partial one."""
        table_file = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        with open(table_file.with_name(f".{table_file.name}.lock"), "a") as lock_file:
            filesystem.lock(lock_file, filesystem.LOCK_EX)
            try:
                rows = self.get_table(exchange)
                changed = change(rows)
                if changed is not None:
                    _replace_atomically(table_file, dumps(changed).encode())
            finally:
                filesystem.unlock(lock_file)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        row = _binding(routing_key, pattern, queue)
        self._update_table(exchange, lambda rows: None if row in rows else [row, *rows])

    def _delete(
        self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any
    ) -> None:
        super(filesystem.Channel, self)._delete(  # the virtual channel's part only
            queue, exchange, routing_key, pattern, *args, **kwargs
        )
        row = _binding(routing_key, pattern, queue)
        self._update_table(
            exchange, lambda rows: [kept for kept in rows if kept != row] if row in rows else None
        )

    # --- messages ----------------------------------------------------------------------

    # kombu's own filesystem.Channel._put (payload, **kwargs) already differs from its base
    # virtual.AbstractChannel._put (message): no signature matches both.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = Path(self.data_folder_out)
        name = f"{int(filesystem.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:  # the partial file's leading dot: never matched as a message
            _replace_atomically(folder / name, dumps(payload).encode())
        except OSError as exc:
            raise ChannelError(f"cannot add a message to {folder}") from exc

    @cached_property
    def claim_folder(self) -> Path:
        """Where a consumer renames a message to claim it: in the spool, so one file system."""
        folder = Path(self.processed_folder)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # timeout: unused, as in kombu's filesystem.Channel; declared as virtual.AbstractChannel
    # declares it (kombu itself calls _get(queue)).
    def _get(self, queue: str, timeout: float | None = None) -> Any:
        folder = Path(self.data_folder_in)
        suffix = f"{queue}.msg"
        for name in sorted(os.listdir(folder)):
            if name.startswith(".") or name.partition(".")[2] != suffix:
                continue
            claimed = self.claim_folder / name
            try:
                os.rename(folder / name, claimed)
            except OSError:
                continue  # another consumer won it
            try:
                payload = claimed.read_bytes()
            except OSError as exc:
                raise ChannelError(f"cannot read the claimed message {claimed}") from exc
            finally:
                claimed.unlink(missing_ok=True)
            try:
                return loads(payload.decode())
            except (UnicodeDecodeError, ValueError):
                log.error(
                    "dropped an unreadable message of queue %s (%d bytes); its job stays "
                    "queued until the reaper sends it again",
                    queue,
                    len(payload),
                )
        raise filesystem.Empty()


class Transport(filesystem.Transport):
    Channel = Channel
