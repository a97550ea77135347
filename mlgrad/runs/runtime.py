"""Where a run executes: JAX's compilation cache, the devices, and the processes of a
multi-process run (joined with ``jax.distributed``; process 0 is the only writer).

JAX is imported inside the functions, so that the CLI can parse its arguments without it.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import math
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlgrad.runs.console import Console
from mlgrad.runs.errors import RunError, UsageError

_CACHE_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def cache_dir() -> Path:
    """``$MLGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlgrad/jax``, else ``~/.cache/mlgrad/jax``."""
    if os.environ.get("MLGRAD_CACHE_DIR"):
        return Path(os.environ["MLGRAD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mlgrad" / "jax"


@contextlib.contextmanager
def compilation_cache(console: Console | None = None) -> Iterator[Path | None]:
    """JAX's persistent compilation cache in :func:`cache_dir`, on for the duration (every
    program is cached, however fast it compiled, so a second run starts faster).

    The previous settings are restored afterwards, so a run inside a user's program leaves
    JAX's global configuration as it found it. An unwritable cache directory turns it off.
    A run executes inside it, so it is also the run's :func:`lost_process_guard`.
    """
    with lost_process_guard(), _compilation_cache(console) as directory:
        yield directory


@contextlib.contextmanager
def _compilation_cache(console: Console | None) -> Iterator[Path | None]:
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if console is not None:
            console.info(f"note: compilation cache off ({directory}: {e.strerror or e})")
        yield None
        return
    old = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size limit
    cc.reset_cache()  # take effect even if this process compiled something before
    try:
        yield directory
    finally:
        for name, value in old.items():
            jax.config.update(name, value)
        cc.reset_cache()


# ---------------------------------------------------------------------------------------------
# several processes
#
# JAX alone ends a multi-process run badly when one process dies (jax 0.10.2, measured): the
# coordination service notices a dead process only when its heartbeats stop for
# ``heartbeat_timeout_seconds`` (100 s) and then aborts every other process natively
# (LOG(FATAL): SIGABRT and a C++ stack trace); when process 0 dies, the service, which lives
# in process 0, dies with it and the others abort within milliseconds; a coordinator that
# cannot be reached aborts the joining process the same way after ``initialization_timeout``.
# JAX's client hook for these failures (``missed_heartbeat_callback``) cannot take a Python
# function in this jaxlib (std::bad_cast, then abort). So, with JAX's own pieces:
#
# * process 0 runs JAX's coordination service in a small child process (``_SERVICE``) that
#   outlives process 0 long enough for the others to notice its end; process 0's own
#   ``jax.distributed.initialize`` binds its (unused) service to a throwaway loopback port;
# * every process runs a watchdog thread (:class:`_Watchdog`) that refreshes a heartbeat key
#   in the coordination service's key-value store and reads the others'. A process whose
#   key has not moved for ``heartbeat_timeout_s`` is lost: one ``error:`` line names it and
#   the process exits 1 (``os._exit``), long before JAX's own heartbeat timeout;
# * a collective that fails in the main thread because a process died waits for that verdict
#   (:func:`lost_process_guard`) instead of reporting the collective's error;
# * the join happens in a thread with a deadline, so a coordinator that cannot be reached is a
#   UsageError (exit 2) after ``timeout_s`` instead of a native abort minutes later.

#: Default seconds to wait for the coordinator and every process to join.
JOIN_TIMEOUT_S = 60.0
#: Default seconds without a heartbeat after which a process counts as lost.
HEARTBEAT_TIMEOUT_S = 10.0
_ALIVE = "mlgrad/alive/"  # key-value prefix of the heartbeats

# Process 0's coordination service, run as ``python -c _SERVICE BIND N HEARTBEAT GRACE``. It
# says "ready" (or "error: ...") on stdout, then serves until "stop" on stdin. If process 0
# ends without "stop" (killed), it serves GRACE seconds more, so that the other processes see
# process 0's heartbeats stop (and exit 1) before the service goes (which would abort them).
_SERVICE = """
import os, sys, time
try:
    from jaxlib import _jax
except ImportError:
    from jax._src.lib import _jax
bind, num, heartbeat, grace = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
try:
    service = _jax.get_distributed_runtime_service(bind, num, heartbeat_timeout=heartbeat)
except Exception as e:
    print("error:", (str(e).strip().splitlines() or [type(e).__name__])[0], flush=True)
    sys.exit(3)
print("ready", flush=True)
if sys.stdin.readline().strip() == "stop":
    service.shutdown()
else:
    time.sleep(grace)
os._exit(0)
"""


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"${name} must be an integer, got {text!r}.") from None


def _seconds(value: float | None, env: str, default: float, name: str) -> float:
    """``value`` if given, else ``$env``, else ``default``: a positive number of seconds."""
    if value is None:
        text = os.environ.get(env)
        if not text:
            return default
        try:
            value, name = float(text), f"${env}"
        except ValueError:
            raise UsageError(f"${env} must be a number of seconds, got {text!r}.") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise UsageError(f"{name} must be a positive number of seconds, got {value!r}.")
    return float(value)


def join_processes(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: float | None = None,
    heartbeat_timeout_s: float | None = None,
) -> bool:
    """Joins the other processes of a multi-process run (``jax.distributed.initialize``) when
    a coordinator is given (here or as ``$JAX_COORDINATOR_ADDRESS``; the counts default to
    ``$JAX_NUM_PROCESSES`` and ``$JAX_PROCESS_ID``). Must run before JAX touches a device.

    The processes then stop together: when one dies, every other exits 1 with one line
    ``error: process N of the run stopped ...`` about ``heartbeat_timeout_s`` later (see the
    comment above; with ``process_id`` left to JAX's cluster detection, a dying process 0
    still aborts the others, as JAX does). A process whose join failed must exit: JAX cannot
    cancel the connection attempt and aborts the process about a minute after ``timeout_s``.

    Args:
        timeout_s: the most seconds to wait for the coordinator and every process
            (``--join-timeout``; default ``$MLGRAD_JOIN_TIMEOUT_S``, else
            :data:`JOIN_TIMEOUT_S`).
        heartbeat_timeout_s: seconds without a heartbeat after which a process counts as lost
            (default ``$MLGRAD_HEARTBEAT_TIMEOUT_S``, else :data:`HEARTBEAT_TIMEOUT_S`).

    Returns:
        Whether several processes take part.

    Raises:
        UsageError: a malformed address, count or timeout; a coordinator that cannot be
            resolved, bound or reached, or processes that did not all join, within
            ``timeout_s``.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if coordinator is None:
        if num is not None or pid is not None:
            raise UsageError(
                "--num-processes and --process-id need --coordinator HOST:PORT (process 0's "
                "address), or $JAX_COORDINATOR_ADDRESS."
            )
        return False
    host, _, port_text = coordinator.rpartition(":")
    if not host or not port_text.isdigit():
        raise UsageError(
            f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {coordinator!r}."
        )
    port = int(port_text)
    if not 0 < port < 65536:
        raise UsageError(
            f"--coordinator {coordinator}: the port must be 1 to 65535 and the same on every "
            f"process (process 0's coordinator listens on it), got {port}."
        )
    if num is not None and num < 1:
        raise UsageError(f"--num-processes must be >= 1, got {num}.")
    if pid is not None and (pid < 0 or (num is not None and pid >= num)):
        raise UsageError(
            f"--process-id must be in 0..{'N-1' if num is None else num - 1}, got {pid}."
        )
    timeout = _seconds(timeout_s, "MLGRAD_JOIN_TIMEOUT_S", JOIN_TIMEOUT_S, "--join-timeout")
    heartbeat = _seconds(
        heartbeat_timeout_s,
        "MLGRAD_HEARTBEAT_TIMEOUT_S",
        HEARTBEAT_TIMEOUT_S,
        "heartbeat_timeout_s",
    )
    deadline = time.monotonic() + timeout
    _resolve(coordinator, host, port, timeout, deadline)
    import jax

    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    # JAX's own heartbeat timeout stays far above the watchdog's: the last resort.
    jax_heartbeat = max(100, math.ceil(3 * heartbeat))
    service = None
    if pid == 0 and num is not None and num > 1:
        grace = 2 * heartbeat + 5  # the others' watchdogs see process 0 gone within this
        service = _Service.start(coordinator, port, num, jax_heartbeat, grace, timeout, deadline)
    try:
        _initialize(
            coordinator,
            num,
            pid,
            deadline,
            timeout,
            initialization_timeout=math.ceil(timeout) + 60,  # never before our deadline
            heartbeat_timeout_seconds=jax_heartbeat,
            # process 0's service is the child above; its own binds where nobody looks
            **({"coordinator_bind_address": "127.0.0.1:0"} if service else {}),
        )
    except BaseException:
        if service is not None:
            service.stop(at_once=True)
        raise
    from jax._src import distributed

    state = distributed.global_state
    watch = None
    if state.num_processes > 1:
        watch = _Watchdog(state.client, state.process_id, state.num_processes, heartbeat)
        watch.start(coordinator)
    atexit.register(_leave, watch, service)  # runs before JAX's own exit handler
    return jax.process_count() > 1


def _resolve(coordinator: str, host: str, port: int, timeout: float, deadline: float) -> None:
    """Refuses a coordinator host that does not resolve (in a thread: a lookup can hang)."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    found: list[OSError | None] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
            found.append(None)
        except OSError as e:
            found.append(e)

    thread = threading.Thread(target=look_up, name="mlgrad-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if not found:
        raise UsageError(
            f"--coordinator {coordinator}: looking up the host {name!r} took more than "
            f"{timeout:g} s. Give process 0's address as HOST:PORT, reachable from every process."
        )
    if found[0] is not None:
        error = found[0]
        raise UsageError(
            f"--coordinator {coordinator}: cannot resolve the host {name!r} "
            f"({getattr(error, 'strerror', None) or error}). Give process 0's address as "
            "HOST:PORT, reachable from every process."
        )


def _initialize(
    coordinator: str, num: int | None, pid: int | None, deadline: float, timeout: float, **kw
) -> None:
    """``jax.distributed.initialize`` in a thread, waited for until ``deadline``."""
    import jax

    failed: list[BaseException] = []

    def join() -> None:
        try:
            jax.distributed.initialize(coordinator, num, pid, **kw)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=join, name="mlgrad-join", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    advice = (
        "Start every process with the same --coordinator and --num-processes and its own "
        "--process-id, before any other JAX work in the process."
    )
    if thread.is_alive():
        waited = (
            "process 0's coordinator did not answer"
            if pid != 0
            else f"not every one of the {num} processes connected"
        )
        raise UsageError(
            f"cannot join the processes of the run at {coordinator} within {timeout:g} s: "
            f"{waited} (--join-timeout or $MLGRAD_JOIN_TIMEOUT_S sets the wait). {advice}"
        )
    if failed:
        error = failed[0]
        if not isinstance(error, Exception):
            raise error
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(
            f"cannot join the processes of the run at {coordinator}: {text}. {advice}"
        ) from None


class _Service:
    """Process 0's coordination service in its child process (see ``_SERVICE``)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    @classmethod
    def start(
        cls,
        coordinator: str,
        port: int,
        num: int,
        heartbeat: int,
        grace: float,
        timeout: float,
        deadline: float,
    ) -> _Service:
        bind = os.environ.get("JAX_COORDINATOR_BIND_ADDRESS") or f"[::]:{port}"
        if not os.environ.get("JAX_COORDINATOR_BIND_ADDRESS"):
            _check_port(coordinator, port)
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVICE, bind, str(num), str(heartbeat), f"{grace:g}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            close_fds=True,
            start_new_session=True,  # no terminal signals: it must outlive process 0
        )
        line = ""
        assert proc.stdout is not None  # stdout=PIPE
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if selector.select(max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline().strip()
        if line == "ready":
            return cls(proc)
        proc.kill()
        proc.wait()
        reason = line.removeprefix("error:").strip() or f"it did not start within {timeout:g} s"
        raise UsageError(
            f"--coordinator {coordinator}: process 0 cannot start the coordinator on {bind}: "
            f"{reason}."
        )

    def stop(self, *, at_once: bool = False) -> None:
        """Ends the service: after JAX's shutdown barrier gracefully, else (``at_once``) now."""
        if not at_once:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None  # stdin=PIPE
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _check_port(coordinator: str, port: int) -> None:
    """Refuses a port that something already listens on: gRPC binds with SO_REUSEPORT, so a
    second coordinator on a port would start anyway and share its connections."""
    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 (or IPv4) here
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as e:
                if e.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise UsageError(
                        f"--coordinator {coordinator}: process 0 cannot listen on port {port} "
                        f"({e.strerror}). Choose another port for --coordinator, the same on "
                        "every process."
                    ) from None


class _Watchdog:
    """Each process's heartbeat in the coordination service's key-value store, and its watch
    over the others': when a process's heartbeat stops for ``timeout`` seconds, or the
    coordinator stops answering, this process prints one ``error:`` line and exits 1."""

    def __init__(self, client: Any, process_id: int, num_processes: int, timeout: float):
        self.client, self.me, self.timeout = client, process_id, timeout
        self.others = [p for p in range(num_processes) if p != process_id]
        self.interval = min(1.0, max(0.05, timeout / 5))
        self.coordinator = ""  # its address, for the message
        self.leaving = False  # set at exit: the client shuts down, its errors mean nothing
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlgrad-watchdog", daemon=True)

    @property
    def bound(self) -> float:
        """The most seconds between a process's end and the others' verdict."""
        return self.timeout + 2 * self.interval + 1.0

    def start(self, coordinator: str) -> None:
        global _WATCH
        _WATCH, self.coordinator = self, coordinator
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2 * self.interval + 1.0)

    def wait(self) -> None:
        """Waits up to :attr:`bound` seconds, time for the verdict that ends the process when
        a process was lost (returns early if the watchdog stops)."""
        self._stop.wait(self.bound)

    def _run(self) -> None:
        start = answered = time.monotonic()
        seen: dict[int, tuple[str | None, float]] = {p: (None, start) for p in self.others}
        beats = 0
        while not self._stop.is_set():
            beats += 1
            try:
                self.client.key_value_set(f"{_ALIVE}{self.me}", str(beats), allow_overwrite=True)
                values = dict(self.client.key_value_dir_get(_ALIVE))
            except Exception as e:  # the coordinator does not answer
                if self.leaving or self._stop.is_set() or not _joined():
                    return
                if time.monotonic() - answered > self.timeout:
                    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
                    _stop_run(
                        f"the coordinator at {self.coordinator} stopped answering ({reason}), "
                        f"so process {self.me} stops too; {_RESUME}"
                    )
            else:
                now = answered = time.monotonic()
                for p in self.others:
                    value = values.get(f"{_ALIVE}{p}")
                    if value != seen[p][0]:
                        seen[p] = (value, now)
                # a process is watched from its first heartbeat (JAX's own heartbeat covers
                # the moment before it)
                lost = [
                    p
                    for p in self.others
                    if seen[p][0] is not None and now - seen[p][1] > self.timeout
                ]
                if lost and not self._stop.is_set():
                    who = (
                        f"process {lost[0]}"
                        if len(lost) == 1
                        else f"processes {', '.join(map(str, lost))}"
                    )
                    _stop_run(
                        f"{who} of the run stopped (no heartbeat for {self.timeout:g} s), so "
                        f"process {self.me} stops too; {_RESUME}"
                    )
            self._stop.wait(self.interval)


_WATCH: _Watchdog | None = None
_RESUME = "continue the run with --resume once every process can run again."


def _joined() -> bool:
    import jax

    return jax.distributed.is_initialized()


def _stop_run(text: str) -> None:
    """Ends this process of a multi-process run at once: one ``error:`` line, exit code 1.
    ``os._exit``: a normal exit would wait at JAX's shutdown barrier for the lost process."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        print(f"error: {text}", file=sys.stderr, flush=True)
    os._exit(1)


def _leave(watch: _Watchdog | None, service: _Service | None) -> None:
    """At exit: JAX's shutdown barrier (every process reaches it) while the watchdog still
    watches, then the watchdog and process 0's coordination service stop."""
    global _WATCH
    import jax

    if watch is not None:
        watch.leaving = True
    with contextlib.suppress(Exception):
        jax.distributed.shutdown()
    if watch is not None:
        watch.stop()
        _WATCH = None
    if service is not None:
        service.stop()


@contextlib.contextmanager
def lost_process_guard() -> Iterator[None]:
    """Where a multi-process run's collectives happen: an unexpected error there (e.g. gloo's
    "Connection closed by peer") first waits for the watchdog's verdict, which ends the
    process with one line naming the lost process; any other error passes unchanged."""
    try:
        yield
    except Exception as e:
        watch = _WATCH
        if watch is not None and not type(e).__module__.startswith("mlgrad."):
            watch.wait()  # not one of mlgrad's own errors: perhaps a process died
        raise


def is_multiprocess() -> bool:
    """Whether this process is one of several (``jax.distributed`` was initialised; it
    cannot have been before JAX is imported, so that question imports nothing)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized() and jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process speaks and writes for the run (process 0, or the only one);
    before JAX is imported it is the only one."""
    jax = sys.modules.get("jax")
    return jax is None or not jax.distributed.is_initialized() or jax.process_index() == 0


def process_count() -> int:
    import jax

    return jax.process_count()


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (nothing with one process)."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        with lost_process_guard():
            multihost_utils.sync_global_devices(name)


def stop_together(failure: str | None, run_dir: Path, stop: int | None = None) -> int | None:
    """Raises RunError(failure) if process 0, the only writer, failed to write, on every
    process at once (a process left alone would wait for the others at the next collective
    forever). Returns process 0's stop request (the signal that asked it to stop, or None),
    the same on every process, so that all of them save and stop together. A barrier with
    several processes; with one, just the raise."""
    if is_multiprocess():
        import numpy as np
        from jax.experimental import multihost_utils

        mine = np.array([failure is not None, stop or 0], np.int32)
        with lost_process_guard():
            failed, stop = (int(x) for x in multihost_utils.broadcast_one_to_all(mine))
        if failed and failure is None:
            failure = f"process 0 could not write the run directory {run_dir} (see its error)"
    if failure:
        raise RunError(failure)
    return stop or None


def agree(text: str) -> str:
    """Process 0's ``text`` on every process (e.g. the default run directory's timestamp)."""
    if not is_multiprocess():
        return text
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.zeros(4096, np.uint8)
    raw = text.encode()[: len(data)]
    data[: len(raw)] = np.frombuffer(raw, np.uint8)
    with lost_process_guard():
        agreed = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return bytes(agreed).rstrip(b"\0").decode()


# ---------------------------------------------------------------------------------------------
# devices


def devices_of(tree: Any) -> list[Any]:
    """The devices holding the arrays of ``tree`` (where training ran)."""
    import jax

    found = {}
    for leaf in jax.tree.leaves(tree):
        for d in getattr(leaf, "devices", lambda: set())():
            found[d.id, d.platform] = d
    return [found[k] for k in sorted(found)] or jax.devices()[:1]


def device_records(devices: Sequence[Any]) -> list[dict[str, Any]]:
    """The devices as a summary records them: platform, kind and id of each."""
    return [{"platform": d.platform, "device_kind": d.device_kind, "id": d.id} for d in devices]


def describe_devices(devices: Sequence[Any]) -> str:
    """``cpu:0 (cpu)``; several devices grouped by kind: ``4 x NVIDIA H100: cuda:0, ...``."""
    if len(devices) == 1:
        return f"{devices[0]} ({devices[0].device_kind})"
    kinds: dict[str, list[str]] = {}
    for d in devices:
        kinds.setdefault(d.device_kind, []).append(str(d))
    return "; ".join(f"{len(names)} x {kind}: {', '.join(names)}" for kind, names in kinds.items())


def describe_mesh(mesh: Any) -> str:
    """The devices a run trains on, and how (data parallel over N devices, P processes)."""
    import jax

    devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
    text = describe_devices(devices)
    if mesh is not None:
        processes = len({d.process_index for d in devices})
        text += f" (data parallel over {len(devices)} devices"
        text += f", {processes} processes)" if processes > 1 else ")"
    return text
