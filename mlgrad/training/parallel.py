"""Data parallelism with JAX's own sharding: a one-axis ``Mesh`` of devices named ``"data"``.

Each training batch is split along its example axis across the devices of the mesh
(``NamedSharding(mesh, P("data"))``), the parameters and optimizer state are replicated
(``NamedSharding(mesh, P())``), and XLA's SPMD partitioner turns the batch mean inside the
loss into per-device partial sums and one all-reduce, so the gradient every device applies is
the gradient of the whole batch. Nothing here communicates by hand.

The mesh may span several processes (after ``jax.distributed.initialize``): ``jax.devices()``
then lists every process's devices, every process runs the same program on the same host
data, and each one places only the shards of its own devices.

Example:
  >>> mesh = data_mesh("auto")        # None on a machine with one device
  >>> mesh is None or mesh.axis_names == ("data",)
  True
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "Devices",
    "batch_sharding",
    "data_mesh",
    "host_values",
    "place",
    "replicated",
    "select_devices",
]

#: The name of the mesh axis the examples of a batch are split along.
DATA_AXIS = "data"

#: What selects the devices: ``"auto"`` (every device JAX sees), a count (the first N), or
#: a sequence of ``jax.Device`` objects.
Devices = str | int | Sequence[Any]


def data_mesh(devices: Devices = "auto") -> Mesh | None:
    """The one-axis mesh ``("data",)`` over :func:`select_devices`; None for one device.

    Example:
      >>> data_mesh(1) is None
      True
    """
    chosen = select_devices(devices)
    return Mesh(np.array(chosen), (DATA_AXIS,)) if len(chosen) > 1 else None


def select_devices(devices: Devices = "auto") -> list[Any]:
    """The devices that ``devices`` selects, checked.

    Args:
      devices: ``"auto"`` for all of ``jax.devices()`` (every process's devices after
        ``jax.distributed.initialize``), an int ``N`` for the first ``N`` of them, or a
        sequence of devices.

    Returns:
      A list of ``jax.Device``; with one, training runs unsharded, exactly as without this
      module.

    Raises:
      ValueError: an unknown string, a count outside ``1..len(jax.devices())``, an empty or
        repeated device list, or a selection that leaves out every device of a process.
    """
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "auto":
            raise ValueError(
                f"devices must be 'auto', a number of devices or a list of devices, got "
                f"{devices!r}."
            )
        chosen = list(available)
    elif isinstance(devices, bool):
        raise TypeError(f"devices must be 'auto' or an int, got {devices!r}.")
    elif isinstance(devices, int | np.integer):
        count = operator.index(devices)
        if not 1 <= count <= len(available):
            raise ValueError(
                f"devices={count}, but JAX sees {len(available)} device(s) "
                f"({', '.join(sorted({d.platform for d in available}))}); use a number from 1 "
                f"to {len(available)}, or 'auto' for all of them."
            )
        chosen = list(available[:count])
    else:
        chosen = list(devices)
        if not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError(
                f"devices must be 'auto', a number of devices or a list of jax.Device (from "
                f"jax.devices()), got {devices!r}."
            )
        if not chosen or len({d.id for d in chosen}) != len(chosen):
            raise ValueError(f"devices must be a non-empty list of distinct devices, got {chosen}.")
    processes = {d.process_index for d in chosen}
    if processes != set(range(jax.process_count())):
        raise ValueError(
            f"the selected devices belong to processes {sorted(processes)}, but "
            f"{jax.process_count()} processes take part: with several processes, use "
            "devices='auto' (every process's devices)."
        )
    return chosen


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh`` (parameters, optimizer state, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split along the leading (example) axis across the ``"data"`` axis of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def place(tree: Any, sharding: NamedSharding) -> Any:
    """``jax.device_put(tree, sharding)``, also when ``sharding`` spans other processes.

    With several processes each one holds the same host values (same config, same data) and
    places only its own devices' shards: arrays go through NumPy, which is how
    ``jax.device_put`` takes host values for a mesh that spans processes. ``None`` leaves
    (empty optimizer states) stay ``None``.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _place_across_processes(x, sharding), tree)


def _place_across_processes(x: Any, sharding: NamedSharding) -> Any:
    """One leaf through NumPy; a typed PRNG key (``jax.random.key``) as its key data, wrapped
    again after placing (NumPy has no key dtype)."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = jax.device_put(_host_value(jax.random.key_data(x)), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.device_put(_host_value(x), sharding)


def host_values(tree: Any) -> Any:
    """The values of ``tree`` as NumPy arrays on this host; an array replicated across
    processes is read from one of this process's copies (``np.asarray`` alone refuses arrays
    that span other processes)."""
    return jax.tree.map(_host_value, tree)


def _host_value(x: Any) -> Any:
    """A leaf's value on this host: NumPy for arrays on this process's devices; a replicated
    array spanning processes is read from one of its local copies."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError(
                f"cannot re-place an array sharded across processes ({x.sharding}); pass "
                "host values (NumPy) or replicated arrays."
            )
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def device_memory(device: Any) -> int | None:
    """The bytes a device can allocate: its allocator's limit, or the host's free memory."""
    stats = None
    with contextlib.suppress(Exception):
        stats = device.memory_stats()
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if device.platform == "cpu":
        with contextlib.suppress(OSError, ValueError, AttributeError):
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None
