"""Where a compiled training step's time goes: XLA's own per-kernel trace, summed by kind.

:func:`kernel_times` runs a callable under ``jax.profiler`` (a Perfetto trace; no extra
package: JAX writes it) and reads back the CPU runtime's events: every XLA thunk (a fused
elementwise loop, a library matmul, a copy, a gather, a conditional...) is one event with a
companion ``end: NAME`` event, which tells kernels from the Python and PjRt events around
them. A kernel that contains others (a ``conditional`` whose branches are kernels) is a
container: only the kernels inside it are counted. Tracing costs each kernel a fraction of
a microsecond, so the per-kernel times are a little higher than untraced ones; the
difference between the traced wall time and the kernels' sum is the runtime's own work
between kernels (loop control, buffer hand-offs, thread-pool wake-ups) plus that tracing.

:func:`kind` sorts a kernel by its name, which XLA derives from the fusion's root and
operations: ``ynn_fusion`` and ``xnn_fusion`` are matmuls (and some reductions) run by the
YNNPACK/XNNPACK libraries, ``dot`` the matmuls XLA leaves to Eigen (on CPU: products that
contract the leading axis of both operands, the weight gradients of a dense layer), and so on.

:func:`matmul_peak` measures the best f32 matmul rate of this machine in the same run.
"""

from __future__ import annotations

import glob
import gzip
import itertools
import json
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

KINDS = (
    ("matmul (YNNPACK/XNNPACK)", re.compile(r"^[xy]nn_fusion")),
    ("matmul (Eigen)", re.compile(r"^dot")),
    ("gather / slice / concatenate", re.compile(r"gather|slice_fusion|^slice|concatenate")),
    ("buffer writes (dynamic-update-slice)", re.compile(r"dynamic_update_slice|dynamic-update")),
    ("copy / transpose", re.compile(r"^copy|transpose")),
    ("reductions", re.compile(r"reduce")),
    ("sorts (the epochs' shuffles)", re.compile(r"^sort")),
    ("elementwise fusions", re.compile(r"fusion")),
)


def kind(name: str) -> str:
    """The kind of kernel ``name`` (an XLA thunk's name in the trace)."""
    for label, pattern in KINDS:
        if pattern.search(name):
            return label
    return "other (loop control, scalars)"


def _events(directory: str) -> list[dict[str, Any]]:
    (path,) = glob.glob(f"{directory}/**/perfetto_trace.json.gz", recursive=True)
    with gzip.open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X"]


def kernel_times(fn: Callable[[], Any], runs: int = 3) -> tuple[Counter, Counter, float]:
    """``fn`` called ``runs`` times under the profiler (after one untraced call).

    Returns:
      (kernel name -> total microseconds, kernel name -> calls, traced wall seconds of the
      ``runs`` calls), kernels inside a container kernel counted, containers not.
    """
    jax.block_until_ready(fn())
    directory = tempfile.mkdtemp(prefix="mlgrad-profile-")
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # the Python tracer would slow the host part
    try:
        jax.profiler.start_trace(directory, create_perfetto_trace=True, profiler_options=options)
        t0 = time.perf_counter()
        for _ in range(runs):
            jax.block_until_ready(fn())
        wall = time.perf_counter() - t0
        jax.profiler.stop_trace()
        events = _events(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ended = {e["name"][len("end: ") :] for e in events if e["name"].startswith("end: ")}
    kernels = sorted(
        (e for e in events if e["name"] in ended), key=lambda e: (e["tid"], e["ts"], -e["dur"])
    )
    containers = set()
    for outer, inner in itertools.pairwise(kernels):  # sorted: a container precedes its first
        if (
            inner["tid"] == outer["tid"]
            and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"]
        ):
            containers.add(id(outer))
    total: Counter = Counter()
    calls: Counter = Counter()
    for e in kernels:
        if id(e) not in containers:
            total[e["name"]] += e["dur"]
            calls[e["name"]] += 1
    return total, calls, wall


def by_kind(total: Counter) -> Counter:
    """Kernel microseconds summed by :func:`kind`."""
    out: Counter = Counter()
    for name, us in total.items():
        out[kind(name)] += us
    return out


def step_flops(step: Callable[..., Any], *args: Any) -> float:
    """XLA's count of the floating-point operations of one call of ``step(*args)``."""
    cost = jax.jit(step).lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):  # older jaxlibs: one dict per program
        cost = cost[0]
    return float(cost["flops"])


def matmul_peak(sizes: tuple[int, ...] = (256, 512, 1024), seconds: float = 0.3) -> float:
    """The best f32 matmul rate (FLOP/s) of ``jnp.dot`` over square ``sizes`` on the default
    device, each timed for about ``seconds`` after a warm-up call."""
    best = 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(n), (n, n), jnp.float32)
        dot = jax.jit(jnp.dot)
        jax.block_until_ready(dot(a, a))
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            out = dot(a, a)
            calls += 1
        jax.block_until_ready(out)
        best = max(best, 2 * n**3 * calls / (time.perf_counter() - t0))
    return best
