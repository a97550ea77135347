"""Benchmark: mlgrad's calculus wrappers against raw JAX, finite differences against numdifftools.

Run from the repository root (about a minute on 2 CPU cores; needs numdifftools)::

    python benchmarks/calculus.py            # --repeats N for more repeats, --quick for fewer

It prints, measured side by side in one run:

1. ``mlgrad.jacobian`` (``mode="auto"``) against ``jax.jacfwd`` and ``jax.jacrev`` on a wide
   (2000 -> 10) and a tall (10 -> 2000) two-layer tanh network with fixed random weights; the
   ratio of auto to the faster raw transform (target <= 1.1x) and whether auto compiles to the
   very same XLA program as the faster one.
2. The overhead of jitted ``mlgrad.gradient``, ``hessian`` and ``hvp`` against ``jax.grad``,
   ``jax.hessian`` and a hand-written ``jax.jvp`` of ``jax.grad`` (target <= 1.05x), and
   ``mlgrad.derivative(f, order=k)`` (Taylor mode, ``jet``, for k >= 3) against nested ``jvp``.
3. The accuracy and the number of function evaluations of ``mlgrad.numerical.derivative``
   (central differences; Richardson extrapolation) against ``numdifftools.Derivative`` on a table
   of smooth functions in float64, with closed-form derivatives as the reference.

Timings are the median of interleaved repeats of calibrated workloads of >= 1 ms of jitted calls
(compilation excluded); ratios are paired per repeat (see ``benchmarks/_timing.py``).
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # _timing, and mlgrad from a plain checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    MIN_WORKLOAD_S,
    Ratio,
    Timing,
    environment,
    format_seconds,
    format_table,
    paired_ratio,
    time_interleaved,
)

import mlgrad  # noqa: E402

JACOBIAN_TARGET = 1.10
OVERHEAD_TARGET = 1.05
HIDDEN = 256

HOW_TO_READ = """\
How to read this: times are per jitted call (median over interleaved repeats; compile time
excluded). A ratio is mlgrad's time over raw JAX's, paired within each repeat: the median
[its 95% confidence interval]; 1.00x means no overhead, and an interval that straddles 1.00
is machine noise. "same XLA" says whether both compile to the identical optimised program
(names aside), in which case any ratio away from 1.00 can only be noise. In the accuracy
table, "evals" is the number of function evaluations per derivative (counted by wrapping f;
"w/ est" when an error estimate is requested too), "est >= err" the share of cases whose
error estimate bounds the true error; errors are relative to closed-form derivatives."""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def mlp(sizes: list[int], key: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """x -> tanh(W_k ... tanh(W_1 x)) with fixed random weights (scaled by 1/sqrt(fan-in))."""
    keys = jax.random.split(key, len(sizes) - 1)
    weights = [
        jax.random.normal(k, (n_out, n_in)) / np.sqrt(n_in)
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]

    def f(x: jax.Array) -> jax.Array:
        for w in weights:
            x = jnp.tanh(w @ x)
        return x

    return f


def compiled_program(fn: Callable, *args: Any) -> str:
    """The optimised XLA program of jax.jit(fn) at args, without names and source locations."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(("%", "ENTRY")))
    text = "\n".join(lines[start:])
    text = re.sub(r",? ?metadata=\{[^}]*\}", "", text)
    text = re.sub(r",? ?stack_frame_id=\d+", "", text)
    # the entry's parameters are named after the Python arguments (x vs args_0_): number them
    head, entry = text.split("\nENTRY ", 1)
    for name, index in re.findall(r"%(\S+) = \S+ parameter\((\d+)\)", entry):
        entry = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", f"arg{index}", entry)
    return head + "\nENTRY " + entry


def same_program(fn_a: Callable, fn_b: Callable, *args: Any) -> str:
    return "yes" if compiled_program(fn_a, *args) == compiled_program(fn_b, *args) else "NO"


def verdict(ratio: Ratio, target: float, same: str) -> str:
    """ok / MISSED against the target; a miss by an identical program is called noise."""
    if ratio.median <= target:
        return f"<= {target:.2f}x ok"
    if same == "yes":
        return f"<= {target:.2f}x noise"
    return f"<= {target:.2f}x MISSED"


def timed_row(name: str, t_ml: Timing, t_raw: Timing, target: float, same: str) -> list[str]:
    ratio = paired_ratio(t_ml, t_raw)
    return [
        name,
        format_seconds(t_ml.median),
        format_seconds(t_raw.median),
        str(ratio),
        verdict(ratio, target, same),
        same,
    ]


def shortest_workload(timings: list[dict[str, Timing]]) -> float:
    return min(t.shortest_workload for group in timings for t in group.values())


# --------------------------------------------------------------------------------------------
# 1. Jacobian: auto mode against jacfwd / jacrev
# --------------------------------------------------------------------------------------------


def bench_jacobian(
    functions: dict[str, tuple[Callable, jax.Array]], repeats: int, scale: float
) -> list:
    rows, groups = [], []
    for label, (f, x) in functions.items():
        contenders = {
            "auto": jax.jit(mlgrad.jacobian(f)),
            "jacfwd": jax.jit(jax.jacfwd(f)),
            "jacrev": jax.jit(jax.jacrev(f)),
        }
        # Checked at full float32 precision: a GPU's default TF32 matmuls put forward and
        # reverse mode 3e-4 apart on these functions (seen on an H200).
        with jax.default_matmul_precision("highest"):
            expected = np.asarray(jax.jit(jax.jacrev(f))(x))
            actual = np.asarray(jax.jit(mlgrad.jacobian(f))(x))
        np.testing.assert_allclose(actual, expected, atol=1e-5)
        calls = {k: functools.partial(g, x) for k, g in contenders.items()}
        times = time_interleaved(calls, repeats=repeats, budget=3.0 * scale)
        groups.append(times)
        faster = min(("jacfwd", "jacrev"), key=lambda k: times[k].median)
        ratio = paired_ratio(times["auto"], times[faster])
        same = same_program(mlgrad.jacobian(f), getattr(jax, faster)(f), x)
        rows.append(
            [
                label,
                format_seconds(times["auto"].median),
                format_seconds(times["jacfwd"].median),
                format_seconds(times["jacrev"].median),
                f"{faster}: {ratio}",
                verdict(ratio, JACOBIAN_TARGET, same),
                f"{same} ({times['auto'].per_call.size} rep.)",
            ]
        )
    headers = [
        "function",
        "mlgrad auto",
        "jax.jacfwd",
        "jax.jacrev",
        "auto / faster",
        "target",
        "same XLA",
    ]
    title = "1. Jacobian: mlgrad.jacobian(mode='auto') vs jax.jacfwd / jax.jacrev (jitted)"
    print(format_table(headers, rows, title))
    return groups


# --------------------------------------------------------------------------------------------
# 2. Wrapper overhead: gradient, hessian, hvp, derivative(order=k)
# --------------------------------------------------------------------------------------------


def bench_overhead(
    functions: dict[str, tuple[Callable, jax.Array]], repeats: int, scale: float
) -> list:
    rows, groups = [], []
    key = jax.random.PRNGKey(7)

    def pair(name: str, ml: Callable, raw: Callable, *args: Any) -> None:
        ml_j, raw_j = jax.jit(ml), jax.jit(raw)
        np.testing.assert_allclose(
            np.asarray(ml_j(*args)), np.asarray(raw_j(*args)), rtol=1e-4, atol=1e-5
        )
        times = time_interleaved(
            {"mlgrad": functools.partial(ml_j, *args), "jax": functools.partial(raw_j, *args)},
            repeats=repeats,
            budget=1.5 * scale,
        )
        groups.append(times)
        same = same_program(ml, raw, *args)
        row = timed_row(name, times["mlgrad"], times["jax"], OVERHEAD_TARGET, same)
        rows.append([*row[:-1], f"{same} ({times['mlgrad'].per_call.size} rep.)"])

    for label, (f, x) in functions.items():
        n = x.size

        def loss(x: jax.Array, f: Callable = f) -> jax.Array:
            return 0.5 * jnp.sum(f(x) ** 2)

        v = jax.random.normal(key, x.shape)
        pair(f"gradient   {label} ({n} -> 1)", mlgrad.gradient(loss), jax.grad(loss), x)
        pair(f"hessian    {label} ({n}x{n})", mlgrad.hessian(loss), jax.hessian(loss), x)
        pair("  ... vs jacfwd(grad)", mlgrad.hessian(loss), jax.jacfwd(jax.grad(loss)), x)

        def raw_hvp(x: jax.Array, v: jax.Array, loss: Callable = loss) -> jax.Array:
            return jax.jvp(jax.grad(loss), (x,), (v,))[1]

        def ml_hvp(x: jax.Array, v: jax.Array, loss: Callable = loss) -> jax.Array:
            return mlgrad.hvp(loss, x, v)

        pair(f"hvp        {label} (vs jvp of grad)", ml_hvp, raw_hvp, x, v)

    headers = ["operation", "mlgrad", "raw JAX", "mlgrad / JAX", "target", "same XLA"]
    title = "2a. Wrapper overhead under jit: mlgrad vs jax.grad / jax.hessian / jvp-of-grad"
    print(format_table(headers, rows, title))
    return groups


def bench_derivative_orders(repeats: int, orders: range, scale: float) -> list:
    """mlgrad.derivative(f, order=k) (jet for k >= 3) against k nested jax.jvp, vmapped."""

    def f(x: jax.Array) -> jax.Array:
        return jnp.tanh(x) * jnp.exp(-0.5 * x**2) + jnp.sin(3.0 * x)

    def nested_jvp(k: int) -> Callable[[jax.Array], jax.Array]:
        d = f
        for _ in range(k):
            d = (lambda g: lambda x: jax.jvp(g, (x,), (jnp.ones_like(x),))[1])(d)
        return jax.vmap(d)

    x = jnp.linspace(-2.0, 2.0, 4096)
    rows, groups = [], []
    for k in orders:
        ml, raw = jax.jit(mlgrad.derivative(f, order=k)), jax.jit(nested_jvp(k))
        first = {}
        for name, fn in (("mlgrad", ml), ("jax", raw)):  # trace + compile + one call
            start = time.perf_counter()
            jax.block_until_ready(fn(x))
            first[name] = time.perf_counter() - start
        np.testing.assert_allclose(np.asarray(ml(x)), np.asarray(raw(x)), rtol=2e-3, atol=2e-3)
        times = time_interleaved(
            {"mlgrad": functools.partial(ml, x), "jax": functools.partial(raw, x)},
            repeats=repeats,
            budget=1.0 * scale,
        )
        groups.append(times)
        ratio = paired_ratio(times["mlgrad"], times["jax"])
        how = "nested jvp" if k <= 2 else "jet"
        rows.append(
            [
                f"order {k} ({how})",
                format_seconds(times["mlgrad"].median),
                format_seconds(times["jax"].median),
                str(ratio),
                format_seconds(first["mlgrad"]),
                format_seconds(first["jax"]),
                same_program(mlgrad.derivative(f, order=k), nested_jvp(k), x),
            ]
        )
    headers = [
        "derivative",
        "mlgrad",
        "nested jvp",
        "mlgrad / nested",
        "1st call mlgrad",
        "1st call nested",
        "same XLA",
    ]
    title = (
        "2b. mlgrad.derivative(f, order=k) vs k nested jax.jvp, jitted and vmapped "
        f"(informational)\n    f = tanh(x) exp(-x^2/2) + sin 3x at {x.size} points; "
        "'1st call' = trace + compile + run"
    )
    print(format_table(headers, rows, title))
    return groups


# --------------------------------------------------------------------------------------------
# 3. Finite differences: accuracy and evaluations, mlgrad.numerical vs numdifftools
# --------------------------------------------------------------------------------------------


class Smooth(NamedTuple):
    name: str
    jax_f: Callable[[jax.Array], jax.Array]
    np_f: Callable[[np.ndarray], np.ndarray]
    exact: Callable[[np.ndarray], np.ndarray]  # closed-form derivative, float64


SMOOTH = [
    Smooth("exp", jnp.exp, np.exp, np.exp),
    Smooth("sin", jnp.sin, np.sin, np.cos),
    Smooth("log1p", jnp.log1p, np.log1p, lambda x: 1.0 / (1.0 + x)),
    Smooth(
        "1/(1+x^2)",
        lambda x: 1.0 / (1.0 + x**2),
        lambda x: 1.0 / (1.0 + x**2),
        lambda x: -2.0 * x / (1.0 + x**2) ** 2,
    ),
    Smooth("x^5", lambda x: x**5, lambda x: x**5, lambda x: 5.0 * x**4),
    Smooth("tanh", jnp.tanh, np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    Smooth("sqrt", jnp.sqrt, np.sqrt, lambda x: 0.5 / np.sqrt(x)),
]
POINTS = np.array([0.3, 0.9, 1.7, 3.2])


class Method(NamedTuple):
    name: str
    values: Callable[[Smooth, np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    evals: Callable[[Smooth, np.ndarray, bool], float]  # mean counted evaluations per point
    target: tuple[float, int] | None  # (median relative error, evaluations) at most


def _counted_jax(np_f: Callable, counter: list[int]) -> Callable[[jax.Array], jax.Array]:
    """np_f as a JAX function (a host callback) that counts the points it is evaluated at."""

    def host(a: np.ndarray) -> np.ndarray:
        counter[0] += np.size(a)
        with np.errstate(invalid="ignore"):  # steps may leave the domain (sqrt of x - h < 0)
            return np.asarray(np_f(a), dtype=a.dtype)

    def f(x: jax.Array) -> jax.Array:
        shape = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
        return jax.pure_callback(host, shape, x, vmap_method="broadcast_all")

    return f


def _mlgrad_method(
    name: str, richardson: bool, target: tuple[float, int], dtype: Any = np.float64
) -> Method:
    from mlgrad import numerical

    def values(fn: Smooth, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        deriv = numerical.derivative(fn.jax_f, richardson=richardson, return_error=True)
        value, error = jax.jit(deriv)(jnp.asarray(x, dtype))
        return np.asarray(value, np.float64), np.asarray(error, np.float64)

    def evals(fn: Smooth, x: np.ndarray, with_error: bool) -> float:
        counter = [0]
        f = _counted_jax(fn.np_f, counter)
        deriv = numerical.derivative(f, richardson=richardson, return_error=with_error)
        jax.block_until_ready(deriv(np.asarray(x, dtype)))  # all points in one call
        return counter[0] / x.size

    return Method(name, values, evals, target)


def _numdifftools_method() -> Method:
    import numdifftools as nd

    def values(fn: Smooth, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results = [nd.Derivative(fn.np_f, full_output=True)(xi) for xi in x]
        return (
            np.array([float(r.estimate) for r in results]),
            np.array([float(r.error_estimate) for r in results]),
        )

    def evals(fn: Smooth, x: np.ndarray, with_error: bool) -> float:
        counter = [0]

        def f(a: np.ndarray) -> np.ndarray:
            counter[0] += np.size(a)
            return fn.np_f(a)

        for xi in x:
            nd.Derivative(f, full_output=with_error)(xi)
        return counter[0] / x.size

    return Method(f"numdifftools {nd.__version__} default", values, evals, None)


def _accuracy_verdict(target: tuple[float, int] | None, median: float, evals: float) -> str:
    if target is None:
        return "(reference)"
    ok = median <= target[0] and evals <= target[1]
    return f"<= {target[0]:.0e}, <= {target[1]} {'ok' if ok else 'MISSED'}"


def bench_finite_differences() -> None:
    from mlgrad import numerical

    methods64 = [
        _mlgrad_method("mlgrad central, no Richardson", False, (1e-10, 30)),
        _mlgrad_method("mlgrad central + Richardson", True, (1e-12, 30)),
    ]
    try:
        methods64.append(_numdifftools_method())
    except ImportError:
        print("(numdifftools is not installed: pip install -e '.[bench]' adds it as a reference)")
    method32 = _mlgrad_method("mlgrad central, float32", False, (1e-4, 30), np.float32)
    rows, per_function = [], {fn.name: [] for fn in SMOOTH}
    for method in [*methods64, method32]:
        x64 = method is not method32
        rel_errors, covered, counts, counts_est = [], [], set(), set()
        with jax.enable_x64(x64):
            for fn in SMOOTH:
                x = POINTS.astype(np.float64 if x64 else np.float32)
                value, estimate = method.values(fn, x)
                exact = fn.exact(x.astype(np.float64))
                err = np.abs(value - exact)
                rel_errors.append(err / np.abs(exact))
                covered.append(estimate >= err)
                per_function[fn.name].append(f"{np.max(rel_errors[-1]):.1e}")
                counts.add(method.evals(fn, x, False))
                counts_est.add(method.evals(fn, x, True))
        rel = np.concatenate(rel_errors)
        n_evals = "/".join(f"{c:g}" for c in sorted(counts))
        n_evals_est = "/".join(f"{c:g}" for c in sorted(counts_est))
        rows.append(
            [
                method.name,
                n_evals,
                n_evals_est,
                f"{np.median(rel):.1e}",
                f"{np.max(rel):.1e}",
                f"{100 * np.mean(np.concatenate(covered)):.0f}%",
                _accuracy_verdict(method.target, float(np.median(rel)), max(counts)),
            ]
        )
    headers = [
        "method",
        "evals",
        "evals w/ est",
        "median rel err",
        "max rel err",
        "est >= err",
        "target (median, evals)",
    ]
    title = (
        "3. First derivatives by finite differences vs closed forms "
        f"({len(SMOOTH)} functions x {len(POINTS)} points x = {', '.join(map(str, POINTS))})"
    )
    print(format_table(headers, rows, title))
    print(
        f"documented: mlgrad.numerical.num_evaluations() = {numerical.num_evaluations()} "
        f"(Richardson), {numerical.num_evaluations(richardson=False)} (central); 'evals' above\n"
        "counts the points f is actually evaluated at (a counting wrapper around f)."
    )
    print()
    names = [m.name.replace("mlgrad ", "") for m in [*methods64, method32]]
    print(
        format_table(
            ["max rel err by function", *names],
            [[name, *errs] for name, errs in per_function.items()],
        )
    )


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=24, help="interleaved repeats per timing, at least"
    )
    parser.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="scale the per-comparison time budgets (more repeats for cheap contenders)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats, orders 1-4 only")
    args = parser.parse_args(argv)
    repeats = 8 if args.quick else args.repeats
    start = time.perf_counter()

    print("mlgrad calculus benchmark")
    print("\n".join(environment()))
    print(f"mlgrad {mlgrad.__version__}; at least {repeats} interleaved repeats per timing")
    print(HOW_TO_READ)
    print()

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    functions = {
        "wide": (mlp([2000, HIDDEN, 10], keys[0]), jax.random.normal(keys[2], (2000,))),
        "tall": (mlp([10, HIDDEN, 2000], keys[1]), jax.random.normal(keys[3], (10,))),
    }
    print(
        "wide: R^2000 -> R^10 and tall: R^10 -> R^2000, each tanh(W2 tanh(W1 x)) with hidden "
        f"width {HIDDEN}, float32;\nthe scalar functions in 2a are 0.5 ||f(x)||^2."
    )
    print()
    scale = 0.25 if args.quick else args.budget_scale
    groups = bench_jacobian(functions, repeats, scale)
    print()
    groups += bench_overhead(functions, repeats, scale)
    print()
    groups += bench_derivative_orders(repeats, range(1, 5 if args.quick else 7), scale)
    print()
    bench_finite_differences()
    print()
    shortest = shortest_workload(groups)
    print(
        f"shortest timed workload: {format_seconds(shortest)} "
        f"({'>=' if shortest >= MIN_WORKLOAD_S else 'BELOW'} the 1 ms floor); "
        f"total run time {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
