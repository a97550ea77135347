"""TensorBoard event files of a run's metrics: every record of ``metrics.jsonl`` as one event
whose scalars are the record's numbers under the same keys (``train_loss``, ``val_loss``,
``lr``, ``grad_norm``, ``steps_per_s``, ``aux/<name>``, ``val_<metric>``), so that
``tensorboard --logdir runs/`` shows exactly what ``metrics.jsonl`` holds.

The events are tensorboardX's protocol buffers, framed as TFRecords here (length, masked
CRC-32C of the length, the event, masked CRC-32C of the event) with google-crc32c's C CRC:
tensorboardX's own record writer computes the CRC in pure Python, 35 us an event, which made
logging a long run cost more than training it. Its ``SummaryWriter`` is not used either: it
queues each scalar through a ``multiprocessing.Queue`` to a thread, about 100 us a scalar, and
names its files by the second, so a run resumed within the second it stopped would truncate
its first file. tensorboardX is imported when the first event file is opened, never on the
path of ``mlgrad --help``.

A resumed run appends a new event file that starts with a ``SessionLog.START`` at the step
after its checkpoint (what ``SummaryWriter(purge_step=...)`` writes): TensorBoard then drops
the events of the earlier files at that step and later, the ones written after the checkpoint
by the run that was stopped, as :class:`~mlgrad.runs.metrics_log.MetricsLog` drops their
lines.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlgrad.runs import rundir

#: What TensorBoard recognises as an event file (a name containing ``tfevents``).
PREFIX = "events.out.tfevents."

_MISSING = (
    "writing TensorBoard event files needs tensorboardX, one of mlgrad's dependencies: "
    "pip install 'tensorboardX>=2.6.2.2' (or reinstall mlgrad)"
)


def event_files(directory: Path) -> list[Path]:
    """The event files in ``directory`` (not its subdirectories), in the order TensorBoard
    reads them (by name)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(PREFIX) and p.is_file())


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of a metrics record: every key but ``step`` whose value is a number
    (null, a NaN or infinity logged as null, is left out, as TensorBoard cannot order it)."""
    return {
        k: float(v)
        for k, v in record.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
    }


class EventLog:
    """Appends records to a new event file in ``directory``; :meth:`flush` makes them durable.

    The file is created at the first record (or flush), so a run that fails before logging
    leaves none.

    Args:
        directory: the run directory (the event files sit beside ``metrics.jsonl``).
        purge_step: for a resumed run, the first step it logs: TensorBoard hides the earlier
            files' events at this step and later.
        path: the file to write (default: a new name in ``directory``, see :func:`new_file`).
    """

    def __init__(
        self, directory: Path, *, purge_step: int | None = None, path: Path | None = None
    ) -> None:
        self.directory = directory
        self.purge_step = purge_step
        self.path = path
        self._writer: Any = None

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """One event per record with its :func:`scalars` (a record without any is skipped)."""
        from tensorboardX.proto.event_pb2 import Event  # type: ignore[import-untyped]
        from tensorboardX.proto.summary_pb2 import Summary  # type: ignore[import-untyped]

        file = self._open()
        now = time.time()
        framed = []
        for record in records:
            values = scalars(record)
            if values:
                summary = Summary(
                    value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
                )
                event = Event(wall_time=now, step=int(record["step"]), summary=summary)
                framed.append(tf_record(event.SerializeToString()))
        file.write(b"".join(framed))

    def flush(self) -> None:
        """Writes what was added through to the disk (flushed and synced)."""
        file = self._open()
        file.flush()
        os.fsync(file.fileno())

    def close(self) -> None:
        """Closes the file (what was written and not flushed reaches it, unsynced)."""
        if self._writer is not None:
            file, self._writer = self._writer, None
            file.close()

    def _open(self) -> Any:
        if self._writer is not None:
            return self._writer
        try:
            from tensorboardX.proto.event_pb2 import Event, SessionLog
        except ImportError:
            raise ImportError(_MISSING) from None
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.path is None:
            self.path = new_file(self.directory)
        now = time.time()
        first = Event(wall_time=now, file_version="brain.Event:2")
        head = b""
        if self.purge_step is not None:  # as SummaryWriter(purge_step=...) starts its file
            first.step = self.purge_step
            start = Event(wall_time=now, step=self.purge_step)
            start.session_log.status = SessionLog.START
            head = tf_record(start.SerializeToString())
        head = tf_record(first.SerializeToString()) + head  # framed before the file opens
        file = open(self.path, "ab")  # noqa: SIM115 (kept open until close)
        try:
            file.write(head)
        except BaseException:
            file.close()
            raise
        self._writer = file
        return file


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli) of ``data``."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tf_record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord, the unit of an event file.

    Example:
        >>> tf_record(b"").hex()  # the length 0 (8 bytes), its CRC, no data, the CRC of b""
        '000000000000000029039807d8ea82a2'
    """
    header = struct.pack("<Q", len(data))
    crcs = struct.pack("<I", _masked_crc(header)), struct.pack("<I", _masked_crc(data))
    return header + crcs[0] + data + crcs[1]


def new_file(directory: Path) -> Path:
    """A name for a new event file that sorts after the directory's earlier ones (TensorBoard
    reads them in name order): ``events.out.tfevents.<unix time>.<host>.<n>``; the number
    keeps apart files started within the same second."""
    stamp = f"{PREFIX}{int(time.time()):010d}.{_host()}"
    taken = {p.name for p in directory.iterdir()}
    n = len(event_files(directory))
    while f"{stamp}.{n:04d}" in taken:
        n += 1
    return directory / f"{stamp}.{n:04d}"


def _host() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())
    return host[:64] or "host"


def write_events(directory: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Writes ``records`` as the only event file of ``directory``, atomically (a sweep's run,
    written once it is done); earlier event files there are replaced."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = rundir.temporary(directory / "events")  # not an event file until renamed
    log = EventLog(directory, path=tmp)
    try:
        log.write(records)
        log.flush()
        log.close()
        for old in event_files(directory):
            old.unlink()
        path = new_file(directory)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            log.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path
