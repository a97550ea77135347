"""Where a run executes: JAX's compilation cache, the devices, and the processes of a
multi-process run (joined with ``jax.distributed``; process 0 is the only writer).

JAX is imported inside the functions, so that the CLI can parse its arguments without it.
"""

from __future__ import annotations

import contextlib
import os
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
    """
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


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"${name} must be an integer, got {text!r}.") from None


def join_processes(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Joins the other processes of a multi-process run (``jax.distributed.initialize``) when
    a coordinator is given (here or as ``$JAX_COORDINATOR_ADDRESS``; the counts default to
    ``$JAX_NUM_PROCESSES`` and ``$JAX_PROCESS_ID``). Must run before JAX touches a device.

    Returns:
        Whether several processes take part.

    Raises:
        UsageError: a malformed address or count. RunError: the processes could not join.
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
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {coordinator!r}."
        )
    if num is not None and num < 1:
        raise UsageError(f"--num-processes must be >= 1, got {num}.")
    if pid is not None and (pid < 0 or (num is not None and pid >= num)):
        raise UsageError(
            f"--process-id must be in 0..{'N-1' if num is None else num - 1}, got {pid}."
        )
    import jax

    if not jax.distributed.is_initialized():
        try:
            jax.distributed.initialize(coordinator, num, pid)
        except (RuntimeError, ValueError) as e:
            raise RunError(
                f"cannot join the processes of the run at {coordinator}: {e}. Start every "
                "process with the same --coordinator and --num-processes and its own "
                "--process-id, before any other JAX work in the process."
            ) from None
    return jax.process_count() > 1


def is_multiprocess() -> bool:
    """Whether this process is one of several (``jax.distributed`` was initialised)."""
    import jax

    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process speaks and writes for the run (process 0, or the only one)."""
    import jax

    return not jax.distributed.is_initialized() or jax.process_index() == 0


def process_count() -> int:
    import jax

    return jax.process_count()


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (nothing with one process)."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def stop_together(failure: str | None, run_dir: Path) -> None:
    """Raises RunError(failure) if process 0, the only writer, failed to write, on every
    process at once (a process left alone would wait for the others at the next collective
    forever). A barrier with several processes; with one, just the raise."""
    if is_multiprocess():
        import numpy as np
        from jax.experimental import multihost_utils

        failed = multihost_utils.broadcast_one_to_all(np.int32(failure is not None))
        if int(failed) and failure is None:
            failure = f"process 0 could not write the run directory {run_dir} (see its error)"
    if failure:
        raise RunError(failure)


def agree(text: str) -> str:
    """Process 0's ``text`` on every process (e.g. the default run directory's timestamp)."""
    if not is_multiprocess():
        return text
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.zeros(4096, np.uint8)
    raw = text.encode()[: len(data)]
    data[: len(raw)] = np.frombuffer(raw, np.uint8)
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
