"""Benchmark: sparse Jacobians (mlgrad.sparse_jacobian) against the dense ``jax.jacfwd``.

Run from the repository root (about three minutes on 2 CPU cores; ``--quick``: under one)::

    python benchmarks/sparse.py            # --quick: smaller n; --x64: float64
    python benchmarks/sparse.py --dense-max 10000   # stop the dense path earlier

It prints, measured side by side in one run, for two functions R^n -> R^n:

* **banded**: the residual of a nonlinear 1-D boundary-value problem on a grid,
  ``u_i^3 - (u_{i-1} - 2 u_i + u_{i+1}) + 0.1 (u_{i-2} + u_{i+2}) sin(u_i)`` (zero boundary):
  each output reads 5 neighbouring inputs, a band of half-width 2;
* **random-sparse**: ``x_i * sum_k tanh(x[idx[i, k]])`` with 3 random inputs per row (an index
  array the function closes over): 4 nonzeros per row, scattered,

at n = 1,000 ... 100,000: the colours (= products) ``mlgrad.sparse_jacobian`` uses against the
n JVPs of ``jacfwd``, the time per jitted call of each and their ratio, the first call of the
sparse path apart (pattern detection from the jaxpr, colouring, compilation), the memory of
each compiled program (XLA's buffers: output + temporaries) and the largest difference between
the two Jacobians. The dense path stops at n = 20,000 for the banded function (3.2 GB: the
n x n float32 Jacobian and the vmapped basis) and 10,000 for the random-sparse one (2.8 GB:
its vmapped gather is larger and slower), or at ``--dense-max``; the sparse path goes on
alone to 100,000.

Timings of millisecond calls are the median of interleaved repeats of calibrated workloads of
at least 1 ms (see ``benchmarks/_timing.py``); calls longer than a second (the dense path at
large n) are timed once per repeat, interleaved the same way, over ``--long-repeats`` repeats.
Compilation is excluded from the per-call times.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # _timing, and mlgrad from a plain checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    Timing,
    environment,
    format_seconds,
    format_table,
    paired_ratio,
    time_interleaved,
)

import mlgrad  # noqa: E402

SIZES = [1_000, 3_000, 10_000, 20_000, 50_000, 100_000]
QUICK_SIZES = [1_000, 3_000, 10_000, 100_000]
# The largest n for jacfwd: its n x n float32 Jacobian and vmapped basis take 3.2 GB at
# n = 20,000 for the banded function; the random-sparse one's vmapped gather takes 2.8 GB
# (and 13 s per call) at 10,000, and 11 GB (110 s per call) at 20,000.
DENSE_MAX = {"banded": 20_000, "random": 10_000}
QUICK_DENSE_MAX = 3_000
LONG_CALL_S = 1.0  # a contender slower than this per call is timed by single calls

HOW_TO_READ = """\
How to read this: "colours" is the number of products (JVPs) the sparse Jacobian used, against
the n JVPs of jacfwd; times are per call of a jitted function (median over interleaved
repeats), "first call" the sparse path's pattern detection + colouring + compilation (paid
once per argument shape). "speed-up" is jacfwd's time over the sparse path's, paired within
each repeat: the median [its 95% confidence interval]. "memory" is what XLA allocates for the
compiled program's output and temporaries. "max |diff|" compares the two Jacobians entry by
entry (and the dense one is zero outside the detected pattern)."""


def banded(u: jax.Array) -> jax.Array:
    """Each output reads u_{i-2} .. u_{i+2} (a band of half-width 2; zero boundary)."""
    p = jnp.pad(u, 2)
    centre = p[2:-2]
    second_difference = p[1:-3] - 2 * centre + p[3:-1]
    return centre**3 - second_difference + 0.1 * (p[:-4] + p[4:]) * jnp.sin(centre)


def random_sparse(n: int, k: int = 3, seed: int = 0) -> Callable[[jax.Array], jax.Array]:
    """Each output reads its own input and k random others."""
    idx = jnp.asarray(np.random.default_rng(seed).integers(0, n, (n, k)))

    def f(x: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(x[idx]), axis=1) * x

    return f


def compiled_memory(fn: Callable, *args: Any) -> int | None:
    """Bytes XLA allocates for the jitted fn's output and temporaries, if it reports them."""
    try:
        stats = jax.jit(fn).lower(*args).compile().memory_analysis()
        return int(stats.output_size_in_bytes + stats.temp_size_in_bytes)
    except Exception:
        return None


def format_bytes(size: int | None) -> str:
    if size is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def time_long(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Timing]:
    """Single calls, interleaved (the order alternating), for calls of seconds."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            jax.block_until_ready(contenders[name]())
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(name, np.array(samples[name]), 1) for name in names}


def check(sparse: mlgrad.SparseJacobian, dense: jax.Array) -> float:
    """The largest difference on the pattern; raises if the dense Jacobian has an entry
    outside it (the pattern would have missed a nonzero)."""
    rows, cols = sparse.coloring.rows, sparse.coloring.cols
    d = np.array(dense)  # a writable copy
    err = float(np.max(np.abs(d[rows, cols] - np.asarray(sparse.matrix.data)), initial=0.0))
    d[rows, cols] = 0
    outside = float(np.max(np.abs(d)))
    if outside != 0:
        raise AssertionError(f"the dense Jacobian has an entry of {outside} outside the pattern")
    return err


def bench(
    name: str,
    make: Callable[[int], Callable],
    sizes: list[int],
    dense_max: int,
    repeats: int,
    budget: float,
    long_repeats: int,
) -> None:
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    headers = [
        "n",
        "colours",
        "jacfwd JVPs",
        "sparse",
        "jacfwd",
        "speed-up",
        "first call",
        "memory sparse",
        "memory jacfwd",
        "max |diff|",
    ]
    rows = []
    for n in sizes:
        f = make(n)
        x = jnp.asarray(np.random.default_rng(n).normal(size=n), dtype=dtype)
        sparse_fn = jax.jit(mlgrad.sparse_jacobian(f))
        start = time.perf_counter()
        result = jax.block_until_ready(sparse_fn(x))
        first = time.perf_counter() - start
        contenders: dict[str, Callable[[], Any]] = {"sparse": functools.partial(sparse_fn, x)}
        with_dense = n <= dense_max
        err = "-"
        if with_dense:
            dense_fn = jax.jit(jax.jacfwd(f))
            start = time.perf_counter()
            dense = jax.block_until_ready(dense_fn(x))
            dense_first = time.perf_counter() - start
            err = f"{check(result, dense):.1e}"
            del dense
            contenders["jacfwd"] = functools.partial(dense_fn, x)
        else:
            dense_first = 0.0
        if dense_first > LONG_CALL_S:
            timings = time_long(contenders, long_repeats)
        else:
            timings = time_interleaved(contenders, repeats=repeats, budget=budget)
        sparse_t = timings["sparse"]
        row = [
            f"{n:,}",
            str(result.colors),
            f"{n:,}",
            format_seconds(sparse_t.median),
            format_seconds(timings["jacfwd"].median) if with_dense else "(skipped)",
            str(paired_ratio(timings["jacfwd"], sparse_t)) if with_dense else "-",
            format_seconds(first),
            format_bytes(compiled_memory(mlgrad.sparse_jacobian(f), x)),
            format_bytes(compiled_memory(jax.jacfwd(f), x)) if with_dense else "-",
            err,
        ]
        rows.append(row)
        print(f"  {name} n={n:,} done", file=sys.stderr, flush=True)
    title = f"{name}: mlgrad.sparse_jacobian vs jax.jacfwd (dense up to n = {dense_max:,})"
    print(format_table(headers, rows, title))


def bench_sparse_jacobian(
    sizes: list[int],
    repeats: int,
    dense_max: int | dict[str, int] = DENSE_MAX,
    budget: float = 2.0,
    long_repeats: int = 2,
) -> None:
    """Both tables (the banded and the random-sparse function); also section 3 of
    ``benchmarks/curvature.py``. ``dense_max``: the largest n for jacfwd, one for both or per
    function (``"banded"``, ``"random"``)."""
    limits = dense_max if isinstance(dense_max, dict) else dict.fromkeys(DENSE_MAX, dense_max)
    timing = (repeats, budget, long_repeats)
    bench("banded (half-width 2)", lambda n: banded, sizes, limits["banded"], *timing)
    print()
    bench("random-sparse (3 inputs per row)", random_sparse, sizes, limits["random"], *timing)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=8, help="interleaved repeats, at least")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per size (short calls)")
    parser.add_argument("--long-repeats", type=int, default=2, help="repeats of calls of seconds")
    parser.add_argument("--dense-max", type=int, default=None, help="largest n for jacfwd")
    parser.add_argument("--quick", action="store_true", help="smaller n")
    parser.add_argument("--x64", action="store_true", help="float64 (default float32)")
    args = parser.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    limits: int | dict[str, int] = QUICK_DENSE_MAX if args.quick else DENSE_MAX
    if args.dense_max is not None:
        limits = args.dense_max
    start = time.perf_counter()
    print("mlgrad sparse Jacobian benchmark")
    print("\n".join(environment()))
    print(f"mlgrad {mlgrad.__version__}; {'float64' if args.x64 else 'float32'}")
    print(HOW_TO_READ)
    print()
    bench_sparse_jacobian(
        QUICK_SIZES if args.quick else SIZES, args.repeats, limits, args.budget, args.long_repeats
    )
    print()
    print(f"total run time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
