"""``metrics.jsonl``: one JSON object per logged step, appended (throttled; durable at every
checkpoint), so that a run's logging costs the same per step however long it runs; the same
records go to TensorBoard event files beside it (:mod:`mlgrad.runs.event_log`), written and
synced at the same moments.

The keys, the same in both (TensorBoard's tags are the keys):

* ``step``: the step the record belongs to;
* ``train_loss``: the loss of that step's batch before its update;
* ``lr``, ``grad_norm``: the learning rate of the step and the global norm of its gradient;
* ``steps_per_s``: steps per second of wall time of the chunk holding the step (the compiled
  loop, its one transfer and the validation loss; the first chunk's includes compiling);
* ``aux/<name>``: the loss's aux metrics on that step's batch (a model with ``has_aux``);
* ``val_loss`` and ``val_<metric>`` (e.g. ``val_accuracy``): on the validation split, at
  evaluation steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlgrad.runs import rundir
from mlgrad.runs.event_log import EventLog

#: metrics.jsonl is rewritten at most this often (seconds), and at every checkpoint.
FLUSH_S = 2.0

#: The keys measured in wall-clock time: the only ones that differ between two runs of the
#: same steps (a resumed run and an uninterrupted one agree on every other to the bit).
TIMING_KEYS = frozenset({"steps_per_s"})


def without_timing(records: list[dict]) -> list[dict]:
    """``records`` less their :data:`TIMING_KEYS`: what two runs of the same steps share."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


class MetricsLog:
    """The records of a run by step; :meth:`flush` appends the new ones to the file.

    Args:
        path: the file.
        records: the records to start from (a resumed run's, up to its checkpoint); the
            first flush writes the file anew with them (dropping lines past the checkpoint
            and a torn last line), later flushes only append.
        write: False on the processes other than 0 of a multi-process run (they only record).
        events: where the records also go as TensorBoard events (None: nowhere); each flush
            writes the new records there first, so the event files never lag the file.
        events_from: how many of ``records`` the event files already hold.
    """

    def __init__(
        self,
        path: Path,
        records: list[dict] | None = None,
        *,
        write: bool = True,
        events: EventLog | None = None,
        events_from: int = 0,
    ) -> None:
        self.path = path
        self.records: list[dict] = list(records or [])
        self._by_step = {r["step"]: r for r in self.records}
        self._position = {r["step"]: i for i, r in enumerate(self.records)}
        self._flushed = 0.0
        self._write = write
        self._written: int | None = None  # records on disk; None: the file is to be rewritten
        self._changed = False  # a record on disk was changed since: rewrite instead of append
        self.events = events
        self._events_written = events_from  # records in the event files (they only append)

    @staticmethod
    def read(path: Path) -> list[dict]:
        """The records of a metrics file; a torn last line (a killed write) is skipped."""
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
        return records

    def record(self, step: int, **values: Any) -> dict:
        """Sets ``values`` (NaN and infinities as null) in the record of ``step``."""
        rec = self._by_step.get(step)
        if rec is None:
            rec = self._by_step[step] = {"step": step}
            self._position[step] = len(self.records)
            self.records.append(rec)
        elif self._written is not None and self._position[step] < self._written:
            self._changed = True
        rec.update({k: rundir.finite_or_none(v) for k, v in values.items()})
        return rec

    def flush(self, *, force: bool = False) -> None:
        """Appends the records not yet on disk (and syncs them), unless the file was written
        less than :data:`FLUSH_S` ago; the first flush (or one after a record on disk
        changed) rewrites the file atomically. The new records reach the event files first
        (a record changed after it reached them stays as it was there)."""
        now = time.monotonic()
        if not self._write or (not force and now - self._flushed < FLUSH_S):
            return
        if self.events is not None and self._events_written < len(self.records):
            self.events.write(self.records[self._events_written :])
            self.events.flush()
            self._events_written = len(self.records)
        if self._written is None or self._changed:
            rundir.write_atomic(self.path, _lines(self.records))
        elif self._written < len(self.records):
            rundir.append_durably(self.path, _lines(self.records[self._written :]))
        self._written, self._changed, self._flushed = len(self.records), False, now

    def close(self) -> None:
        """Closes the event file (the records not flushed are not made durable)."""
        if self.events is not None:
            self.events.close()

    def curve(self, name: str) -> tuple[list[int], list[float]]:
        """The steps and values of the metric ``name`` where it was recorded (not null)."""
        pairs = [(r["step"], r[name]) for r in self.records if r.get(name) is not None]
        return [s for s, _ in pairs], [v for _, v in pairs]


def _lines(records: list[dict]) -> str:
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
