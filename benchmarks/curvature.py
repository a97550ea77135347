"""Benchmark: curvature without the matrix (mlgrad.curvature) against the dense matrices.

Run from the repository root (a few minutes on 2 CPU cores; ``--quick`` for about one)::

    python benchmarks/curvature.py             # --quick: fewer and smaller models
    python benchmarks/curvature.py --x64       # in float64 (what `mlgrad curvature` uses)

It prints, measured side by side in one run:

1. The top Hessian eigenvalue of a classifier's training loss (a tanh MLP, 32 inputs, two
   hidden layers of width h, 10 classes, cross-entropy over 256 examples) at growing parameter
   counts: ``mlgrad.hessian_eigenvalues`` (restarted Lanczos on Hessian-vector products)
   against the dense path, ``jax.hessian`` of the flattened loss and ``numpy.linalg.eigvalsh``:
   time of each, their ratio, the products Lanczos used and the agreement of the eigenvalues.
   The dense path stops where its n x n Hessian and O(n^3) eigendecomposition no longer fit
   the time (or memory) budget; Lanczos continues alone up to several hundred thousand
   parameters (its memory: the n x 32 Krylov basis and the gradient's activations).
2. The Laplacian of f: R^n -> R (a tanh MLP with scalar output): ``mlgrad.laplacian`` (forward
   over forward along each basis direction, vectorised) against ``trace(jax.hessian(f))``,
   jitted, at growing n, with their agreement; and the stochastic Laplacian (Hutchinson, 64
   probes) at the largest n.
3. Sparse Jacobians: ``mlgrad.sparse_jacobian`` (one JVP per colour) against dense
   ``jax.jacfwd`` on a banded and a random-sparse function of n = 1,000 ... 100,000 (the dense
   path to n = 20,000 and 10,000: 3.2 and 2.8 GB): colours vs n JVPs, time, compiled memory,
   agreement (``benchmarks/sparse.py`` runs this section alone, with its options).

Timings of millisecond calls are the median of interleaved repeats of calibrated workloads of
at least 1 ms (see ``benchmarks/_timing.py``); calls of seconds are timed once each per repeat,
interleaved the same way, over fewer repeats. Compilation is excluded and reported apart.
"""

from __future__ import annotations

import argparse
import functools
import math
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
import sparse as sparse_bench  # noqa: E402  (benchmarks/sparse.py: _HERE is first on sys.path)
from _timing import (  # noqa: E402
    environment,
    format_seconds,
    format_table,
    paired_ratio,
    time_interleaved,
)
from jax.flatten_util import ravel_pytree  # noqa: E402

import mlgrad  # noqa: E402

INPUTS, CLASSES, EXAMPLES = 32, 10, 256
#: Hidden widths of section 1: the dense path runs on the first DENSE_UP_TO of them.
WIDTHS = [8, 16, 32, 64, 128, 256, 640]
QUICK_WIDTHS = [8, 16, 32, 256]
#: The dense Hessian is computed and diagonalised for models of at most this many parameters
#: (at 2,442 the dense path already takes about 10 s on 2 cores; at 6,922 it would take minutes).
DENSE_MAX_PARAMS = 3_000
LAPLACIAN_SIZES = [16, 128, 1024, 4096]
QUICK_LAPLACIAN_SIZES = [16, 128, 1024]

HOW_TO_READ = """\
How to read this: times are per call of a jitted function (median over interleaved repeats;
"1st call" is the first call's trace + compile + run, apart). A ratio is the dense path's time
over mlgrad's, paired within each repeat: the median [its 95% confidence interval]; above 1x
mlgrad is faster. "agree" is |lambda_mlgrad - lambda_dense| / |lambda_dense| (or the relative
difference of the Laplacians); "products" counts Hessian-vector products."""


# --------------------------------------------------------------------------------------------
# 1. Top Hessian eigenvalue: Lanczos vs dense eigh
# --------------------------------------------------------------------------------------------


def classifier(width: int, key: jax.Array) -> tuple[Callable, dict, tuple]:
    """A tanh MLP classifier's mean cross-entropy, its parameters and a fixed batch."""
    sizes = [INPUTS, width, width, CLASSES]
    keys = jax.random.split(key, len(sizes) + 1)
    params = {
        f"layer{i}": {
            "w": jax.random.normal(k, (a, b)) / math.sqrt(a),
            "b": 0.1 * jax.random.normal(jax.random.fold_in(k, 1), (b,)),
        }
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=False))
    }
    x = jax.random.normal(keys[-2], (EXAMPLES, INPUTS))
    y = jax.random.randint(keys[-1], (EXAMPLES,), 0, CLASSES)

    def loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        h = x
        for i in range(len(sizes) - 1):
            layer = params[f"layer{i}"]
            h = h @ layer["w"] + layer["b"]
            if i < len(sizes) - 2:
                h = jnp.tanh(h)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], axis=1))

    return loss, params, (x, y)


def format_long(seconds: float) -> str:
    """A duration that may run to hours or days."""
    if seconds < 600:
        return format_seconds(seconds)
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def first_call(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def bench_eigenvalues(widths: list[int], repeats: int) -> None:
    rows = []
    dense_stopped, last_dense = None, None
    for width in widths:
        loss, params, (x, y) = classifier(width, jax.random.PRNGKey(width))
        flat, unravel = ravel_pytree(params)
        n = flat.size

        lanczos = jax.jit(lambda p, x, y, loss=loss: mlgrad.hessian_eigenvalues(loss, p, x, y))
        eig, compile_l = first_call(functools.partial(lanczos, params, x, y))
        contenders = {"lanczos": lambda eig=lanczos, p=params, x=x, y=y: eig(p, x, y).values}

        dense_value, compile_d = None, None
        if n <= DENSE_MAX_PARAMS:
            hess = jax.jit(
                jax.hessian(lambda z, x, y, loss=loss, unravel=unravel: loss(unravel(z), x, y))
            )

            def dense(hess: Callable = hess, flat: jax.Array = flat, x=x, y=y) -> np.ndarray:
                return np.linalg.eigvalsh(np.asarray(hess(flat, x, y), np.float64))[-1:]

            dense_value, compile_d = first_call(dense)
            contenders["dense"] = dense
        elif dense_stopped is None:
            dense_stopped = n

        # seconds-long calls: a few interleaved repeats; millisecond ones: the usual 8+
        _, once = first_call(contenders["lanczos"])
        slow = once > 0.5 or (compile_d is not None and compile_d > 2.0)
        times = time_interleaved(contenders, repeats=3 if slow else repeats, warmup=0)
        t_l = times["lanczos"].median
        lam = float(eig.values[-1])
        if dense_value is None:
            rows.append(
                [
                    f"h={width}",
                    f"{n:,}",
                    format_seconds(t_l),
                    "-",
                    "-",
                    str(int(eig.num_matvecs)),
                    f"{lam:.6g}",
                    "-",
                    f"{format_seconds(compile_l)} / -",
                ]
            )
            continue
        dense_lam = float(dense_value[0])
        last_dense = (n, times["dense"].median)
        ratio = paired_ratio(times["dense"], times["lanczos"])
        rows.append(
            [
                f"h={width}",
                f"{n:,}",
                format_seconds(t_l),
                format_seconds(times["dense"].median),
                str(ratio),
                str(int(eig.num_matvecs)),
                f"{lam:.6g}",
                f"{abs(lam - dense_lam) / abs(dense_lam):.1e}",
                f"{format_seconds(compile_l)} / {format_seconds(compile_d or 0.0)}",
            ]
        )
    headers = [
        "model",
        "params n",
        "lanczos",
        "dense eigh",
        "dense / lanczos",
        "products",
        "lambda_max",
        "agree",
        "1st call L / D",
    ]
    title = (
        "1. Top Hessian eigenvalue of a classifier's loss: mlgrad.hessian_eigenvalues (k=1) vs\n"
        "   jax.hessian + numpy.linalg.eigvalsh (dense), both jitted"
    )
    print(format_table(headers, rows, title))
    dtype_bytes = jnp.zeros(()).dtype.itemsize  # 8 with --x64, else 4
    if dense_stopped is not None and last_dense is not None:
        n_last, t_last = last_dense
        estimate = t_last * (dense_stopped / n_last) ** 3
        print(
            f"The dense path stops above {DENSE_MAX_PARAMS:,} parameters, by time: it took "
            f"{format_seconds(t_last)} at n = {n_last:,} and grows as n^3 (eigvalsh; the Hessian "
            f"itself as n^2 x the data), so about {format_long(estimate)} at n = "
            f"{dense_stopped:,}.\nBy memory it would stop near n = 100,000 (the Hessian alone: "
            f"{1e10 * dtype_bytes / 1e9:.0f} GB; at n = {n:,}: {n**2 * dtype_bytes / 1e9:,.0f} "
            f"GB). Lanczos holds an n x 32 basis ({32 * n * dtype_bytes / 1e6:.0f} MB at "
            f"n = {n:,}) and the gradient's activations."
        )


# --------------------------------------------------------------------------------------------
# 2. Laplacian: forward over forward vs trace(hessian)
# --------------------------------------------------------------------------------------------


def scalar_mlp(n: int, key: jax.Array) -> Callable[[jax.Array], jax.Array]:
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = jax.random.normal(k1, (n, 64)) / math.sqrt(n)
    w2 = jax.random.normal(k2, (64, 64)) / 8
    w3 = jax.random.normal(k3, (64,)) / 8

    def f(x: jax.Array) -> jax.Array:
        return jnp.tanh(jnp.tanh(x @ w1) @ w2) @ w3

    return f


def bench_laplacian(sizes: list[int], repeats: int) -> None:
    rows = []
    for n in sizes:
        f = scalar_mlp(n, jax.random.PRNGKey(n))
        x = jax.random.normal(jax.random.PRNGKey(n + 1), (n,))
        forward = jax.jit(mlgrad.laplacian(f))
        dense = jax.jit(lambda x, f=f: jnp.trace(jax.hessian(f)(x)))
        a, compile_f = first_call(functools.partial(forward, x))
        b, compile_d = first_call(functools.partial(dense, x))
        times = time_interleaved(
            {"forward": functools.partial(forward, x), "dense": functools.partial(dense, x)},
            repeats=repeats,
            budget=2.0,
        )
        rows.append(
            [
                f"n={n}",
                format_seconds(times["forward"].median),
                format_seconds(times["dense"].median),
                str(paired_ratio(times["dense"], times["forward"])),
                f"{abs(float(a) - float(b)) / abs(float(b)):.1e}",
                f"{format_seconds(compile_f)} / {format_seconds(compile_d)}",
            ]
        )
    headers = ["f: R^n -> R", "laplacian", "trace(hessian)", "hessian / laplacian", "agree"]
    headers.append("1st call L / H")
    title = (
        "2. Laplacian of a tanh MLP R^n -> R: mlgrad.laplacian (forward over forward, one pass\n"
        "   per basis direction, vectorised) vs jnp.trace(jax.hessian(f)), both jitted"
    )
    print(format_table(headers, rows, title))

    n = sizes[-1]
    f = scalar_mlp(n, jax.random.PRNGKey(n))
    x = jax.random.normal(jax.random.PRNGKey(n + 1), (n,))
    exact = float(jax.jit(mlgrad.laplacian(f))(x))
    stochastic = jax.jit(mlgrad.laplacian(f, num_probes=64, return_error=True))
    (value, stderr), _ = first_call(functools.partial(stochastic, x))
    times = time_interleaved({"hutchinson": functools.partial(stochastic, x)}, repeats=repeats)
    per_call = format_seconds(times["hutchinson"].median)
    print(
        f"   stochastic (Hutchinson, 64 probes) at n={n}: {per_call}, "
        f"{float(value):.4g} +- {float(stderr):.2g} (exact {exact:.4g}, "
        f"{abs(float(value) - exact) / float(stderr):.1f} standard errors away)"
    )


# --------------------------------------------------------------------------------------------
# 3. Sparse Jacobians: one JVP per colour vs jacfwd (benchmarks/sparse.py, also run alone)
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=8, help="interleaved repeats, at least")
    parser.add_argument("--quick", action="store_true", help="fewer and smaller models")
    parser.add_argument("--x64", action="store_true", help="float64 (default float32)")
    args = parser.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    print("mlgrad curvature benchmark")
    print("\n".join(environment()))
    print(f"mlgrad {mlgrad.__version__}; {'float64' if args.x64 else 'float32'}")
    print(HOW_TO_READ)
    print()
    bench_eigenvalues(QUICK_WIDTHS if args.quick else WIDTHS, args.repeats)
    print()
    bench_laplacian(QUICK_LAPLACIAN_SIZES if args.quick else LAPLACIAN_SIZES, args.repeats)
    print()
    print(sparse_bench.HOW_TO_READ)
    print()
    if args.quick:
        sparse_bench.bench_sparse_jacobian(
            sparse_bench.QUICK_SIZES, args.repeats, sparse_bench.QUICK_DENSE_MAX
        )
    else:
        sparse_bench.bench_sparse_jacobian(sparse_bench.SIZES, args.repeats)
    print()
    print(f"total run time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
