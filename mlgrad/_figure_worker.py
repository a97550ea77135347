"""A run's figures rendered in a worker process, off the critical path of ``mlgrad train``.

Importing matplotlib and laying out and rendering a run's figures takes about a second of
CPU (the ice cream's three figures), which in one process would all follow training.
``mlgrad train`` therefore starts a worker (:func:`started`) before it imports JAX: the worker
imports matplotlib and warms its font cache on the other core while the main process imports
JAX, compiles and trains. The figures are handed to it (:func:`render`) as soon as their data
exist, and the main process waits for them (:func:`wait`) before it writes ``report.html``
(which embeds them) and before it exits 0. Without a worker (the Python API, ``mlgrad sweep``,
several processes, a worker that could not start) :func:`render` draws at once, in this
process: the same figures either way.

Guarantees:

* a figure is written atomically (:func:`mlgrad._atomic.save_figure`): a killed worker leaves
  at most a temporary file that the run directory's next writer removes, never half a PNG;
* a figure that fails in the worker raises its exception from :func:`wait`, as it would have
  raised drawn in this process; a worker that dies raises :class:`FigureWorkerError` (an
  ``OSError``: the run directory could not be written) naming the figures it did not write;
* Ctrl-C reaches the worker too but it ignores it (the main process decides); when the main
  process stops early (an error, an interrupt) :func:`started` stops the worker (SIGTERM: a
  figure being written removes its temporary file) and waits for it: no stray process. If the
  main process is killed outright, the worker finishes the figure in hand, reads the end of
  its input and exits.

Only the functions of :data:`MODULES` (module-level, importable without JAX) are drawn in the
worker, with arguments of plain types (numbers, strings, paths, NumPy arrays, lists, tuples,
dicts, :class:`mlgrad.data.Dataset`) sent as JSON, never pickled; anything else is drawn in
this process.

This module imports neither JAX nor matplotlib.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["FigureWorkerError", "active", "render", "started", "wait"]

#: The modules whose functions the worker draws.
MODULES = ("mlgrad.plots", "mlgrad.models._figures")
#: A frame: the job's number and the length of its JSON, then the JSON.
_HEADER = struct.Struct("<QQ")
#: The command-line marker of a worker (``--parent PID`` follows it).
MARKER = "mlgrad-figure-worker"


class FigureWorkerError(OSError):
    """The figure worker stopped before it wrote these figures."""


# --------------------------------------------------------------------------------------------
# The main process's side


class _Worker:
    """The worker process and the figures handed to it, in order."""

    def __init__(self) -> None:
        # The same sys.path as this process: the worker imports this mlgrad (an editable
        # install, PYTHONPATH, a wheel alike), never a folder of that name in the cwd.
        boot = (
            f"import sys; sys.path[:] = {sys.path!r}; "
            "from mlgrad._figure_worker import serve; serve()"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot, MARKER, "--parent", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self.pending: dict[int, Path] = {}
        self.failures: dict[Path, BaseException] = {}
        self.jobs = 0
        self.dead = False

    def submit(self, path: Path, fn: Callable[..., Any], args: tuple, kwargs: dict) -> bool:
        """Hands ``fn(*args, **kwargs)`` (which writes ``path``) to the worker; False if it
        cannot go there (draw it here)."""
        qualname = getattr(fn, "__qualname__", "")
        module = getattr(fn, "__module__", None)
        if self.dead or module not in MODULES or not qualname.isidentifier():
            return False
        try:
            job = {"module": module, "name": qualname, "args": args, "kwargs": kwargs}
            data = json.dumps(_encode(job)).encode()
        except (TypeError, ValueError):  # an argument of another type: drawn here
            return False
        self.jobs += 1
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(_HEADER.pack(self.jobs, len(data)) + data)
            self.proc.stdin.flush()
        except OSError:  # the worker is gone: wait() says so
            self.dead = True
        self.pending[self.jobs] = path
        return True

    def wait(self) -> dict[Path, BaseException]:
        """Waits for every figure handed over; returns those that failed, with why."""
        assert self.proc.stdout is not None
        while self.pending and not self.dead:
            reply = _read(self.proc.stdout)
            if reply is None:
                self.dead = True
                break
            job, payload = reply
            path = self.pending.pop(job, None)
            error = _loads(payload)
            if path is not None and error is not None:
                self.failures[path] = error
        if self.pending:  # the worker died: these were never written
            code = self.proc.wait()
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            names = ", ".join(p.name for p in self.pending.values())
            error = FigureWorkerError(f"the figure worker stopped ({why}) before writing {names}")
            for path in self.pending.values():
                self.failures[path] = error
            self.pending.clear()
        failures, self.failures = self.failures, {}
        return failures

    def close(self) -> None:
        """The end of its input: the worker exits (it has nothing left to draw)."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.abort()
        self._close_pipes()

    def abort(self) -> None:
        """Stops the worker now (a figure being written removes its temporary file)."""
        with contextlib.suppress(OSError):
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()


_active: _Worker | None = None


def active() -> bool:
    """Whether figures handed to :func:`render` go to a worker now."""
    return _active is not None


@contextlib.contextmanager
def started(enabled: bool = True) -> Iterator[None]:
    """Runs a figure worker for the ``with`` block (``mlgrad train``): :func:`render` hands
    figures to it. Leaving the block normally waits for the worker to exit; leaving it by an
    exception (an error, Ctrl-C) stops the worker first. Nothing happens unless ``enabled``,
    or when a worker cannot be started (figures are then drawn in this process)."""
    global _active
    worker = None
    if enabled and _active is None:
        with contextlib.suppress(OSError):
            worker = _Worker()
    if worker is None:
        yield
        return
    _active = worker
    try:
        yield
    except BaseException:
        worker.abort()
        raise
    else:
        worker.close()
    finally:
        _active = None


def render(path: str | Path, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Path:
    """``fn(*args, **kwargs)``, which writes the figure ``path``: handed to the worker when
    one runs (:func:`wait` then says whether it was written), else called now.

    Returns:
        ``path`` (what ``fn`` returned, drawn here).
    """
    path = Path(path)
    if _active is not None and _active.submit(path, fn, args, kwargs):
        return path
    return Path(fn(*args, **kwargs))


def wait() -> dict[Path, BaseException]:
    """Waits until the worker has written (or failed) every figure handed to it.

    Returns:
        The figures that failed, with their exception (empty without a worker).
    """
    return {} if _active is None else _active.wait()


# --------------------------------------------------------------------------------------------
# The worker's side


def _read(stream: IO[bytes]) -> tuple[int, bytes] | None:
    """A frame from ``stream`` (the main process's side); None at the end of it."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    job, size = _HEADER.unpack(head)
    data = stream.read(size)
    return None if len(data) < size else (job, data)


def _read_fd(fd: int, size: int) -> bytes:
    """``size`` bytes from the file descriptor ``fd`` (fewer at its end): unbuffered, so
    ``select`` on it never misses data held in a buffer."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame_fd(fd: int) -> tuple[int, bytes] | None:
    head = _read_fd(fd, _HEADER.size)
    if len(head) < _HEADER.size:
        return None
    job, size = _HEADER.unpack(head)
    data = _read_fd(fd, size)
    return None if len(data) < size else (job, data)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _encode(value: Any) -> Any:
    """``value`` as JSON-able data (:func:`_decode` inverts it); TypeError for other types."""
    import numpy as np

    from mlgrad.data import Dataset

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("an object array")
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"array": base64.b64encode(buffer.getvalue()).decode()}
    if isinstance(value, Path):
        return {"path": str(value)}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, Dataset):
        fields = {f: getattr(value, f) for f in value.__dataclass_fields__}
        return {"dataset": _encode(fields)}
    raise TypeError(f"cannot send a {type(value).__name__} to the figure worker")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "array" in value:
        import numpy as np

        return np.load(io.BytesIO(base64.b64decode(value["array"])), allow_pickle=False)
    if "path" in value:
        return Path(value["path"])
    if "tuple" in value:
        return tuple(_decode(v) for v in value["tuple"])
    if "dataset" in value:
        from mlgrad.data import Dataset

        return Dataset(**_decode(value["dataset"]))
    return {_decode(k): _decode(v) for k, v in value["dict"]}


def _error_data(error: BaseException) -> bytes:
    """A reply's JSON for ``error``: its type's name, message and, for an OSError, its parts."""
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, OSError):
        data.update(errno=error.errno, strerror=error.strerror, filename=str(error.filename))
    return json.dumps({"error": data}).encode()


def _loads(payload: bytes) -> BaseException | None:
    """A reply's error (None: the figure was written): an OSError or a built-in exception
    of the same type and message, else a RuntimeError naming the type."""
    import builtins

    error = json.loads(payload).get("error")
    if error is None:
        return None
    kind = getattr(builtins, error["type"], None)
    if error["type"] == FigureWorkerError.__name__:
        kind = FigureWorkerError
    if isinstance(kind, type) and issubclass(kind, OSError):
        if error.get("errno") is None:
            return kind(error["message"])
        filename = error.get("filename")
        return kind(error["errno"], error["strerror"], None if filename == "None" else filename)
    if isinstance(kind, type) and issubclass(kind, Exception):
        with contextlib.suppress(Exception):
            return kind(error["message"])
    return RuntimeError(f"{error['type']}: {error['message']}")


_OK = json.dumps({"error": None}).encode()
_drawing = False  # a figure is being drawn (a SIGTERM then removes its temporary file)


def _draw(data: bytes) -> bytes:
    """Runs one job (its JSON); the reply's JSON: no error, or the exception's."""
    global _drawing
    try:
        job = _decode(json.loads(data))
        if job["module"] not in MODULES:
            raise ValueError(f"the figure worker draws only the functions of {MODULES}")
        fn = getattr(importlib.import_module(job["module"]), job["name"])
        _drawing = True
        fn(*job["args"], **job["kwargs"])
    except Exception as e:
        return _error_data(e)
    finally:
        _drawing = False
    return _OK


def _stop(signum: int, frame: Any) -> None:
    if _drawing:  # unwinds through the atomic write, which removes its temporary file
        raise SystemExit(128 + signum)
    os._exit(128 + signum)  # nothing in hand (starting, waiting): no traceback, no cleanup


def _warm_up() -> None:
    """Imports matplotlib and draws a small figure with text once (the font cache, the text
    layout), so the run's first figure does not pay for them after training."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import mlgrad.plots  # noqa: F401  (the loss curve's module)

    fig = Figure(figsize=(2, 1.5), dpi=50, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([1, 2], [1, 0.1], label="warm-up")
    ax.set_yscale("log")
    ax.set_title("warm-up 0.1")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")


class _Children:
    """Jobs drawn in forked children, several at once (up to two per CPU): the worker itself
    has no threads, and the children start warm (matplotlib imported, fonts loaded)."""

    def __init__(self, replies: int) -> None:
        self.replies = replies
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        # A run hands over a few figures at once; all of them drawing shares the CPUs out so
        # the longest (started last) does not wait for a free one.
        self.limit = 2 * max(1, cpus or os.cpu_count() or 1)
        self.running: dict[int, tuple[int, int]] = {}  # read end -> (job, pid)

    def start(self, job: int, data: bytes) -> None:
        while len(self.running) >= self.limit:
            self.collect(block=True)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: draw, reply to the worker, exit at once
            code = 0
            try:
                os.close(read)
                reply = _draw(data)
                _write_fd(write, _HEADER.pack(job, len(reply)) + reply)
            except BaseException as e:  # stopped (SIGTERM), or the worker is gone
                code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 1
            os._exit(code)
        os.close(write)
        self.running[read] = (job, pid)

    def collect(self, block: bool, also: int | None = None) -> bool:
        """Forwards the replies of finished children; True if ``also`` became readable."""
        import select

        fds = list(self.running) + ([also] if also is not None else [])
        if not fds:
            return False
        ready, _, _ = select.select(fds, [], [], None if block else 0)
        for fd in ready:
            if fd == also:
                continue
            job, pid = self.running.pop(fd)
            frame = _read_frame_fd(fd)
            os.close(fd)
            _, status = os.waitpid(pid, 0)
            if frame is None:  # the child died before it replied
                code = os.waitstatus_to_exitcode(status)
                why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                reply = _error_data(FigureWorkerError(f"the figure's process stopped ({why})"))
                frame = (job, reply)
            _write_fd(self.replies, _HEADER.pack(frame[0], len(frame[1])) + frame[1])
        return also in ready

    def stop(self) -> None:
        """Stops the children (a figure being written removes its temporary file)."""
        for fd, (_, pid) in list(self.running.items()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            os.close(fd)
        self.running.clear()


def serve() -> None:
    """The worker's loop: read figure jobs, draw them (in forked children where the platform
    has fork, several at once), reply to each; exit at the end of the input."""
    import gc

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process decides
    signal.signal(signal.SIGTERM, _stop)  # stopped: the figure in hand removes its temporary
    jobs, replies = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout = sys.stderr  # a print in a figure function must not corrupt the replies
    children = _Children(replies) if hasattr(os, "fork") else None
    code = 0
    try:
        _warm_up()
        gc.freeze()  # the imported modules: collections skip them (and forks share them)
        while True:
            busy = children is not None and children.running
            if busy and not children.collect(block=True, also=jobs):  # type: ignore[union-attr]
                continue  # a child finished; no new job yet
            frame = _read_frame_fd(jobs)
            if frame is None:
                break
            job, data = frame
            if children is not None:
                children.start(job, data)
            else:
                reply = _draw(data)
                _write_fd(replies, _HEADER.pack(job, len(reply)) + reply)
        while children is not None and children.running:
            children.collect(block=True)
    except BrokenPipeError:  # the main process is gone
        code = 1
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        if children is not None:
            children.stop()
    sys.stderr.flush()
    os._exit(code)  # nothing left to tear down: no interpreter shutdown
