"""Stop requests: Ctrl-C (SIGINT) and SIGTERM as a request that a chunked loop honours at its
next chunk boundary, after saving what it needs to continue.

A compiled chunk cannot be interrupted (Python's own KeyboardInterrupt waits for it anyway),
so the first signal only records the request; the loop checks it after every chunk, saves
its progress and raises :class:`mlgrad.runs.errors.Interrupted`. A second signal stops at
once (a KeyboardInterrupt), for a user who does not want to wait for the chunk.

Example:
    >>> with stop_requests() as stop:
    ...     for chunk in range(3):
    ...         if stop.signal is not None:
    ...             break  # save, then raise Interrupted
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator

#: The signals taken as stop requests.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclasses.dataclass
class StopRequest:
    """The signal that asked to stop (``signal.SIGINT`` or ``SIGTERM``), None until one did."""

    signal: int | None = None


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set the yielded request's ``signal`` (a second one
    raises KeyboardInterrupt at once); the previous handlers come back on exit. Outside the
    main thread (where Python delivers no signals) the request simply never fires."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: object) -> None:
        if request.signal is not None:
            raise KeyboardInterrupt
        request.signal = signum

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
