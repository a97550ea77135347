"""Benchmark: mlgrad's calculus wrappers against raw JAX, finite differences against numdifftools.

Run from the repository root (about a minute on 2 CPU cores; numdifftools, if installed, is
the reference in section 3)::

    python benchmarks/calculus.py            # --repeats N for more repeats, --quick for fewer
    python benchmarks/calculus.py --accuracy # section 3 only

It prints, measured side by side in one run:

1. ``mlgrad.jacobian`` (``mode="auto"``) against ``jax.jacfwd`` and ``jax.jacrev`` on a wide
   (2000 -> 10) and a tall (10 -> 2000) two-layer tanh network with fixed random weights; the
   ratio of auto to the faster raw transform (target <= 1.1x) and whether auto compiles to the
   very same XLA program as the faster one.
2. The overhead of jitted ``mlgrad.gradient``, ``hessian`` and ``hvp`` against ``jax.grad``,
   ``jax.hessian`` and a hand-written ``jax.jvp`` of ``jax.grad`` (target <= 1.05x), and
   ``mlgrad.derivative(f, order=k)`` (Taylor mode, ``jet``, for k >= 3) against nested ``jvp``.
3. The accuracy and the number of function evaluations of ``mlgrad.numerical.derivative``
   (central differences; the accuracy orders 4, 6, 8 of one stencil; Richardson extrapolation;
   the complex step) against ``numdifftools.Derivative`` on a table of smooth functions in
   float64, with closed-form derivatives as the reference; then (3b) the
   adversarial table: odd and even functions at exact multiples of the steps, large and tiny |x|,
   oscillating, nearly flat and kinked functions, where each method's error estimate must bound
   its true error (and stay sharp). ``--accuracy`` runs section 3 alone (a few seconds).

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
    """np_f as a JAX function (a host callback) that counts the points it is evaluated at
    (real or complex points: the output has the input's dtype)."""

    def host(a: np.ndarray) -> np.ndarray:
        counter[0] += np.size(a)
        with np.errstate(invalid="ignore"):  # steps may leave the domain (sqrt of x - h < 0)
            return np.asarray(np_f(a), dtype=a.dtype)

    def f(x: jax.Array) -> jax.Array:
        shape = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
        return jax.pure_callback(host, shape, x, vmap_method="broadcast_all")

    return f


def _mlgrad_method(
    name: str,
    richardson: bool,
    target: tuple[float, int],
    dtype: Any = np.float64,
    **options: Any,
) -> Method:
    """numerical.derivative with these options (method, accuracy); the complex step has no
    error estimate (its column shows '-')."""
    from mlgrad import numerical

    estimates = options.get("method") != "complex"

    def values(fn: Smooth, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        deriv = numerical.derivative(
            fn.jax_f, richardson=richardson, return_error=estimates, **options
        )
        out = jax.jit(deriv)(jnp.asarray(x, dtype))
        if not estimates:
            return np.asarray(out, np.float64), None
        value, error = out
        return np.asarray(value, np.float64), np.asarray(error, np.float64)

    def evals(fn: Smooth, x: np.ndarray, with_error: bool) -> float:
        if with_error and not estimates:
            return float("nan")
        counter = [0]
        f = _counted_jax(fn.np_f, counter)
        deriv = numerical.derivative(f, richardson=richardson, return_error=with_error, **options)
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


def _short(name: str) -> str:
    """A method's name as a narrow column header."""
    for long, short in (
        ("mlgrad ", ""),
        (", accuracy=", " p="),
        (", no Richardson", ""),
        (" + Richardson", "+Rich."),
        (" default", ""),
        (", float32", " f32"),
    ):
        name = name.replace(long, short)
    return name


def bench_finite_differences() -> None:
    from mlgrad import numerical

    methods64 = [
        _mlgrad_method("mlgrad central, no Richardson", False, (1e-10, 30)),
        *[
            _mlgrad_method(f"mlgrad central, accuracy={p}", False, (bound, p), accuracy=p)
            for p, bound in ((4, 1e-12), (6, 1e-12), (8, 1e-13))
        ],
        _mlgrad_method(
            "mlgrad forward, accuracy=4", False, (1e-11, 5), method="forward", accuracy=4
        ),
        _mlgrad_method("mlgrad central + Richardson", True, (1e-12, 30)),
        _mlgrad_method("mlgrad complex step", False, (1e-15, 1), method="complex"),
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
                if estimate is not None:
                    covered.append(estimate >= err)
                per_function[fn.name].append(f"{np.max(rel_errors[-1]):.1e}")
                counts.add(method.evals(fn, x, False))
                counts_est.add(method.evals(fn, x, True))
        rel = np.concatenate(rel_errors)
        n_evals = "/".join(f"{c:g}" for c in sorted(counts))
        n_evals_est = "/".join(f"{c:g}" for c in sorted(counts_est) if c == c) or "-"
        rows.append(
            [
                method.name,
                n_evals,
                n_evals_est,
                f"{np.median(rel):.1e}",
                f"{np.max(rel):.1e}",
                f"{100 * np.mean(np.concatenate(covered)):.0f}%" if covered else "-",
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
        f"(Richardson), {numerical.num_evaluations(richardson=False)} (central), "
        f"{numerical.num_evaluations(accuracy=8, richardson=False)} (accuracy=8), "
        f"{numerical.num_evaluations(method='complex')} (complex step); 'evals' above\n"
        "counts the points f is actually evaluated at (a counting wrapper around f). "
        "The complex step has no error estimate ('-').\n"
        "Accuracy orders: one stencil whose truncation error is O(h^p), at the default step "
        "eps^(1/(1+p)) max(1, |x|)."
    )
    print()
    names = [_short(m.name) for m in [*methods64, method32]]
    print(
        format_table(
            ["max rel err by function", *names],
            [[name, *errs] for name, errs in per_function.items()],
        )
    )


# --------------------------------------------------------------------------------------------
# 3b. The adversarial accuracy table: where finite differences go wrong, and whether they say so
# --------------------------------------------------------------------------------------------


class Case(NamedTuple):
    """A first derivative f'(x) that is hard for finite differences, with its closed form.

    `scale` is the length of f's finest feature near x: the distance to a kink, a jump or the
    domain's edge, 1/w for sin(w x), |x| for a power of x. A case is within reach of a method
    when every feature is at least 10x the smallest step it tries.
    """

    group: str
    name: str
    jax_f: Callable[[jax.Array], jax.Array]
    np_f: Callable[[np.ndarray], np.ndarray]
    exact: Callable[[float], float]
    x: float
    scale: float


def _cases(group: str, name: str, jax_f, np_f, exact, xs, scale) -> list[Case]:
    return [
        Case(group, f"{name} at {x:.6g}", jax_f, np_f, exact, float(x), float(scale(x))) for x in xs
    ]


def _const(value: float) -> Callable[[float], float]:
    return lambda x: value


def _distance(to: float) -> Callable[[float], float]:
    return lambda x: abs(x - to)


def _to_integer(x: float) -> float:
    return min(x % 1.0, 1.0 - x % 1.0)


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


ODD_EVEN, LARGE, TINY, OSCILLATING, FLAT, KINK = (
    "odd/even, x a multiple of h",
    "large |x|",
    "tiny |x|",
    "oscillating",
    "nearly flat",
    "near a kink",
)
ADVERSARIAL = [
    # odd and even functions at points that are exact multiples of the steps (h0 = 1)
    *_cases(ODD_EVEN, "sin", jnp.sin, np.sin, np.cos, [0.5, 0.25, 2**-5, 1, 2, -0.5], _const(1)),
    *_cases(ODD_EVEN, "cos", jnp.cos, np.cos, lambda x: -np.sin(x), [0, 0.5, 0.25, 1], _const(1)),
    *_cases(
        ODD_EVEN, "x^3", lambda x: x**3, lambda x: x**3, lambda x: 3 * x**2, [0.5, 0.25, -1], abs
    ),
    *_cases(
        ODD_EVEN,
        "x|x|",
        lambda x: x * jnp.abs(x),
        lambda x: x * np.abs(x),
        lambda x: 2 * abs(x),
        [0.5, 0.25, 2],
        abs,
    ),
    *_cases(
        ODD_EVEN, "tanh", jnp.tanh, np.tanh, lambda x: 1 / np.cosh(x) ** 2, [0.5, 0.125], _const(1)
    ),
    *_cases(
        ODD_EVEN,
        "mod(x, 1)",
        lambda x: jnp.mod(x, 1.0),
        lambda x: np.mod(x, 1.0),
        _const(1.0),
        [0.5, 0.25, 0.75, 2.5, 0.125, 100.5],
        _to_integer,
    ),
    *_cases(ODD_EVEN, "|x|", jnp.abs, np.abs, np.sign, [0.5, -0.25, 2**-10, 64], abs),
    # large |x|: steps must follow f's own scale, not only x's
    *_cases(LARGE, "sin", jnp.sin, np.sin, np.cos, [1e3, 1e4, 1e5, 1e6], _const(1)),
    *_cases(LARGE, "cos", jnp.cos, np.cos, lambda x: -np.sin(x), [12345.5], _const(1)),
    *_cases(LARGE, "x^2", lambda x: x * x, lambda x: x * x, lambda x: 2 * x, [1e6], abs),
    *_cases(LARGE, "log", jnp.log, np.log, lambda x: 1 / x, [1e4, 1e6], abs),
    *_cases(LARGE, "sqrt", jnp.sqrt, np.sqrt, lambda x: 0.5 / np.sqrt(x), [1e8], abs),
    *_cases(
        LARGE,
        "exp(x/2^20)",
        lambda x: jnp.exp(x * 2.0**-20),
        lambda x: np.exp(x * 2.0**-20),
        lambda x: 2.0**-20 * np.exp(x * 2.0**-20),
        [2.0**20],
        abs,
    ),
    *_cases(
        LARGE,
        "x sin x",
        lambda x: x * jnp.sin(x),
        lambda x: x * np.sin(x),
        lambda x: np.sin(x) + x * np.cos(x),
        [1e4],
        _const(1),
    ),
    *_cases(
        LARGE,
        "x cos x",
        lambda x: x * jnp.cos(x),
        lambda x: x * np.cos(x),
        lambda x: np.cos(x) - x * np.sin(x),
        [1e6, 123456],
        _const(1),
    ),
    *_cases(
        LARGE,
        "sin(3x)",
        lambda x: jnp.sin(3 * x),
        lambda x: np.sin(3 * x),
        lambda x: 3 * np.cos(3 * x),
        [1e5],
        _const(1 / 3),
    ),
    *_cases(LARGE, "exp", jnp.exp, np.exp, np.exp, [30, 500], _const(1)),
    *_cases(LARGE, "1/x", lambda x: 1 / x, lambda x: 1 / x, lambda x: -1 / x**2, [1e5], abs),
    *_cases(LARGE, "atan", jnp.arctan, np.arctan, lambda x: 1 / (1 + x * x), [1e5], abs),
    # tiny |x|: features at x's own scale, some with a domain edge or a pole at 0
    *_cases(TINY, "sin", jnp.sin, np.sin, np.cos, [1e-6], _const(1)),
    *_cases(TINY, "x^3", lambda x: x**3, lambda x: x**3, lambda x: 3 * x**2, [1e-5], abs),
    *_cases(TINY, "sqrt", jnp.sqrt, np.sqrt, lambda x: 0.5 / np.sqrt(x), [1e-6, 1e-7], abs),
    *_cases(TINY, "log", jnp.log, np.log, lambda x: 1 / x, [1e-5], abs),
    *_cases(TINY, "1/x", lambda x: 1 / x, lambda x: 1 / x, lambda x: -1 / x**2, [1e-4], abs),
    *_cases(TINY, "cbrt", jnp.cbrt, np.cbrt, lambda x: np.cbrt(x) / (3 * x), [1e-6], abs),
    *_cases(
        TINY,
        "tanh(1e6 x)",
        lambda x: jnp.tanh(1e6 * x),
        lambda x: np.tanh(1e6 * x),
        lambda x: 1e6 / np.cosh(1e6 * x) ** 2,
        [1e-7],
        _const(1e-6),
    ),
    # oscillating
    *[
        case
        for w, x in ((50, 0.3), (1000, 1.0), (1e5, 0.71875))
        for case in _cases(
            OSCILLATING,
            f"sin({w:g} x)",
            lambda x, w=w: jnp.sin(w * x),
            lambda x, w=w: np.sin(w * x),
            lambda x, w=w: w * np.cos(w * x),
            [x],
            _const(1 / w),
        )
    ],
    *_cases(
        OSCILLATING,
        "cos(x^2)",
        lambda x: jnp.cos(x * x),
        lambda x: np.cos(x * x),
        lambda x: -2 * x * np.sin(x * x),
        [30],
        lambda x: 1 / (2 * x),
    ),
    *_cases(
        OSCILLATING,
        "x sin(1/x)",
        lambda x: x * jnp.sin(1 / x),
        lambda x: x * np.sin(1 / x),
        lambda x: np.sin(1 / x) - np.cos(1 / x) / x,
        [0.1],
        lambda x: x * x,
    ),
    # nearly flat: the derivative is tiny next to f itself
    *_cases(
        FLAT,
        "1 + 1e-10 x",
        lambda x: 1 + 1e-10 * x,
        lambda x: 1 + 1e-10 * x,
        _const(1e-10),
        [0.5],
        _const(np.inf),
    ),
    *_cases(
        FLAT,
        "exp(-x^2)",
        lambda x: jnp.exp(-x * x),
        lambda x: np.exp(-x * x),
        lambda x: -2 * x * np.exp(-x * x),
        [6],
        lambda x: 1 / (2 * x),
    ),
    *_cases(FLAT, "x^4", lambda x: x**4, lambda x: x**4, lambda x: 4 * x**3, [1e-3], abs),
    *_cases(
        FLAT,
        "1e8 + sin",
        lambda x: 1e8 + jnp.sin(x),
        lambda x: 1e8 + np.sin(x),
        np.cos,
        [0.5],
        _const(1),
    ),
    *_cases(
        FLAT,
        "(x-1)^3",
        lambda x: (x - 1) ** 3,
        lambda x: (x - 1) ** 3,
        lambda x: 3 * (x - 1) ** 2,
        [1 + 2.0**-20],
        _distance(1.0),
    ),
    *_cases(
        FLAT,
        "erf",
        jax.scipy.special.erf,
        _erf,
        lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x),
        [5],
        _const(0.1),
    ),
    # kinked functions near their kink
    *_cases(
        KINK,
        "|x - 0.3|",
        lambda x: jnp.abs(x - 0.3),
        lambda x: np.abs(x - 0.3),
        lambda x: np.sign(x - 0.3),
        [0.3 + 1e-2, 0.3 + 1e-4, 0.3 + 1e-6, 0.3 - 1e-5],
        _distance(0.3),
    ),
    *_cases(
        KINK,
        "relu",
        jax.nn.relu,
        lambda x: np.maximum(x, 0.0),
        lambda x: float(x > 0),
        [1e-3, 1e-6, -1e-5],
        abs,
    ),
    *_cases(
        KINK,
        "clip(x, -1, 1)",
        lambda x: jnp.clip(x, -1, 1),
        lambda x: np.clip(x, -1, 1),
        lambda x: float(abs(x) < 1),
        [1 - 2.0**-10, 1 + 1e-6],
        _distance(1.0),
    ),
    *_cases(
        KINK,
        "jump at 0.5",
        lambda x: jnp.where(x > 0.5, x * x, x),
        lambda x: np.where(x > 0.5, x * x, x),
        lambda x: 2 * x if x > 0.5 else 1.0,
        [0.5 + 1e-4, 0.5 - 1e-4],
        _distance(0.5),
    ),
    *_cases(
        KINK,
        "|sin x|",
        lambda x: jnp.abs(jnp.sin(x)),
        lambda x: np.abs(np.sin(x)),
        lambda x: np.sign(np.sin(x)) * np.cos(x),
        [np.pi - 1e-3, np.pi + 1e-5],
        _distance(np.pi),
    ),
    *_cases(
        KINK,
        "huber",
        lambda x: jnp.where(jnp.abs(x) < 1, 0.5 * x * x, jnp.abs(x) - 0.5),
        lambda x: np.where(np.abs(x) < 1, 0.5 * x * x, np.abs(x) - 0.5),
        lambda x: x if abs(x) < 1 else np.sign(x),
        [1 + 1e-5, 1 - 1e-3],
        _distance(1.0),
    ),
    *_cases(
        KINK,
        "softplus(1e4 x)/1e4",
        lambda x: jax.nn.softplus(1e4 * x) / 1e4,
        lambda x: np.logaddexp(0.0, 1e4 * x) / 1e4,
        lambda x: 1 / (1 + np.exp(-1e4 * x)),
        [1e-3],
        _const(1e-4),
    ),
]
# Features finer than the smallest step: beyond any finite-difference method (documented in
# mlgrad.numerical.derivative), shown for information only.
BEYOND_REACH = [
    *_cases(
        "beyond reach",
        "sin(1e9 x)",
        lambda x: jnp.sin(1e9 * x),
        lambda x: np.sin(1e9 * x),
        lambda x: 1e9 * np.cos(1e9 * x),
        [1.0],
        _const(1e-9),
    ),
    *_cases(
        "beyond reach",
        "|x - 0.3|",
        lambda x: jnp.abs(x - 0.3),
        lambda x: np.abs(x - 0.3),
        lambda x: np.sign(x - 0.3),
        [0.3 + 1e-9],
        _distance(0.3),
    ),
    *_cases("beyond reach", "sin", jnp.sin, np.sin, np.cos, [1e17], _const(1)),
]
SHARPNESS = 100.0  # a sharp estimate is at most this many times the error, plus the floor
FLOOR_STEPS = 100.0  # the rounding floor: rounding in a difference at the step scale / this


class Outcome(NamedTuple):
    """One case under one method: its value, error estimate, and how they compare."""

    case: Case
    value: float
    estimate: float
    exact: float
    error: float  # |value - exact|
    floor: float  # the rounding floor

    @property
    def bounded(self) -> bool:
        """The estimate bounds the true error, or says NaN (no answer)."""
        return bool(np.isnan(self.estimate) or self.estimate >= self.error)

    @property
    def sharp(self) -> bool:
        """At most SHARPNESS x the true error plus the rounding floor (a NaN is not sharp)."""
        return bool(self.estimate <= SHARPNESS * self.error + self.floor)

    @property
    def relative_error(self) -> float:
        """|error| / |f'(x)|, or the absolute error where f'(x) = 0."""
        return self.error / abs(self.exact) if self.exact != 0 else self.error


def rounding_floor(case: Case, fx: float, exact: float) -> float:
    """FLOOR_STEPS eps (|f(x)| + |x| |f'(x)|) / l: the rounding of f's value and of its
    argument, divided by a step FLOOR_STEPS times below the feature length l (capped at
    max(1, |x|)) -- the accuracy any finite difference that resolves f can certify."""
    eps = float(np.finfo(np.float64).eps)
    length = min(case.scale, max(1.0, abs(case.x)))
    return FLOOR_STEPS * eps * (abs(fx) + abs(case.x) * abs(exact)) / length


def _outcome(case: Case, value: float, estimate: float, fx: float) -> Outcome:
    exact = float(case.exact(np.float64(case.x)))
    error = abs(value - exact) if np.isfinite(value) else float("nan")
    return Outcome(case, value, estimate, exact, error, rounding_floor(case, fx, exact))


def _switch(cases: list[Case]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    branches = [c.jax_f for c in cases]
    return lambda k, t: jax.lax.switch(k, branches, t)


def mlgrad_outcomes(
    cases: list[Case], methods: tuple[str, ...] = ("central", "forward", "backward")
) -> dict[str, list[Outcome]]:
    """mlgrad.numerical.derivative on every case by every method (float64), as one compiled,
    vmapped program; {method: outcomes}."""
    from mlgrad import numerical

    f = _switch(cases)

    def one(k: jax.Array, x: jax.Array) -> tuple:
        return [
            numerical.derivative(lambda t: f(k, t), method=m, return_error=True)(x) for m in methods
        ], f(k, x)

    with jax.enable_x64(True):
        k = jnp.arange(len(cases))
        xs = jnp.asarray([c.x for c in cases], jnp.float64)
        results, fxs = jax.jit(jax.vmap(one))(k, xs)
    return {
        m: [
            _outcome(c, float(v), float(e), float(fx))
            for c, v, e, fx in zip(
                cases, np.asarray(v_), np.asarray(e_), np.asarray(fxs), strict=True
            )
        ]
        for m, (v_, e_) in zip(methods, results, strict=True)
    }


def numdifftools_outcomes(
    cases: list[Case], methods: tuple[str, ...] = ("central", "forward", "backward")
) -> dict[str, list[Outcome]]:
    """numdifftools.Derivative (its defaults) on every case, value and error_estimate."""
    import warnings

    import numdifftools as nd

    out: dict[str, list[Outcome]] = {m: [] for m in methods}
    for method in methods:
        for case in cases:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                result = nd.Derivative(case.np_f, method=method, full_output=True)(case.x)
                fx = float(case.np_f(np.float64(case.x)))
            value, estimate = float(result.estimate), float(result.error_estimate)
            out[method].append(_outcome(case, value, estimate, fx))
    return out


def mlgrad_smallest_steps(cases: list[Case], method: str = "central") -> np.ndarray:
    """The smallest step mlgrad tries at each case's x, measured by recording f's arguments."""
    from mlgrad import numerical

    points: list[np.ndarray] = []

    def record(t: np.ndarray) -> np.ndarray:
        points.append(np.array(t, dtype=np.float64))
        return np.zeros_like(t)

    def f(t: jax.Array) -> jax.Array:
        shape = jax.ShapeDtypeStruct(jnp.shape(t), jnp.result_type(t))
        return jax.pure_callback(record, shape, t, vmap_method="broadcast_all")

    xs = np.array([c.x for c in cases])
    with jax.enable_x64(True):  # all points in one call: f is evaluated at x + t, (P, cases)
        jax.block_until_ready(numerical.derivative(f, method=method)(xs))
    offsets = np.abs(np.concatenate([p.ravel() for p in points]).reshape(-1, xs.size) - xs)
    return np.where(offsets > 0, offsets, np.inf).min(axis=0)


def within_reach(cases: list[Case], method: str = "central") -> list[Case]:
    """The cases whose every feature is at least 10x mlgrad's smallest step."""
    steps = mlgrad_smallest_steps(cases, method)
    return [c for c, h in zip(cases, steps, strict=True) if c.scale >= 10 * h]


class Summary(NamedTuple):
    cases: int
    median_error: float  # relative (absolute where f'(x) = 0)
    worst_error: float
    bounded: float  # share of cases whose estimate bounds the error (or is NaN)
    sharp: float  # share of cases whose estimate is sharp
    nan: int


def summarize(outcomes: list[Outcome]) -> Summary:
    errors = np.array([o.relative_error for o in outcomes])
    return Summary(
        len(outcomes),
        float(np.nanmedian(errors)),
        float(np.nanmax(errors)),
        float(np.mean([o.bounded for o in outcomes])),
        float(np.mean([o.sharp for o in outcomes])),
        int(sum(np.isnan(o.value) or np.isnan(o.estimate) for o in outcomes)),
    )


def bench_adversarial() -> None:
    methods = ("central", "forward", "backward")
    reach = {m: within_reach(ADVERSARIAL, m) for m in methods}
    contenders: list[tuple[str, Callable[..., dict[str, list[Outcome]]]]] = [
        ("mlgrad", mlgrad_outcomes)
    ]
    try:
        import numdifftools as nd

        contenders.append((f"numdifftools {nd.__version__}", numdifftools_outcomes))
    except ImportError:
        print("(numdifftools is not installed: pip install -e '.[bench]' adds it as a reference)")
    rows, failures = [], []
    for name, run in contenders:
        for method in methods:
            outcomes = run(reach[method], (method,))[method]
            s = summarize(outcomes)
            rows.append(
                [
                    f"{name} {method}",
                    str(s.cases),
                    f"{s.median_error:.1e}",
                    f"{s.worst_error:.1e}",
                    f"{100 * s.bounded:.1f}%",
                    f"{100 * s.sharp:.1f}%",
                    str(s.nan),
                ]
            )
            failures += [(name, method, o) for o in outcomes if not o.bounded]
    headers = ["method (float64)", "cases", "median err", "worst err", "est >= err", "sharp", "NaN"]
    title = (
        f"3b. The adversarial table: {len(ADVERSARIAL)} hard first derivatives "
        f"({', '.join(sorted({c.group for c in ADVERSARIAL}))})\n"
        "    within reach (every feature >= 10x mlgrad's smallest step); targets for mlgrad: "
        "est >= err 100%, sharp >= 90%"
    )
    print(format_table(headers, rows, title))
    print(
        "err: relative to |f'(x)| (absolute where f'(x) = 0). est >= err: the error estimate "
        "bounds the true error\n(or is NaN). sharp: est <= "
        f"{SHARPNESS:g} x err + the rounding floor {FLOOR_STEPS:g} eps (|f(x)| + |x| |f'(x)|) / l,"
        " l the\nlength of f's finest feature near x (capped at max(1, |x|)): what a difference "
        f"at a step l/{FLOOR_STEPS:g} can\ncertify. numdifftools runs on mlgrad's reachable cases"
        " (its own steps differ)."
    )
    shown = failures[:12]
    for name, method, o in shown:
        print(
            f"  estimate below the error: {name} {method}, {o.case.name}: value {o.value:.10g}, "
            f"f'(x) = {o.exact:.10g}, error {o.error:.2g}, estimate {o.estimate:.2g}"
        )
    if len(failures) > len(shown):
        print(f"  ... and {len(failures) - len(shown)} more")
    beyond = mlgrad_outcomes(BEYOND_REACH, ("central",))["central"]
    print("beyond reach (features finer than the smallest step; documented, not counted):")
    for o in beyond:
        print(
            f"  {o.case.name}: mlgrad {o.value:.6g} (estimate {o.estimate:.2g}), "
            f"f'(x) = {o.exact:.6g}"
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
    parser.add_argument(
        "--accuracy", action="store_true", help="only the finite-difference accuracy (section 3)"
    )
    args = parser.parse_args(argv)
    repeats = 8 if args.quick else args.repeats
    start = time.perf_counter()

    print("mlgrad calculus benchmark")
    print("\n".join(environment()))
    print(f"mlgrad {mlgrad.__version__}; at least {repeats} interleaved repeats per timing")
    print(HOW_TO_READ)
    print()
    if args.accuracy:
        bench_finite_differences()
        print()
        bench_adversarial()
        print(f"total run time {time.perf_counter() - start:.0f} s")
        return

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
    bench_adversarial()
    print()
    shortest = shortest_workload(groups)
    print(
        f"shortest timed workload: {format_seconds(shortest)} "
        f"({'>=' if shortest >= MIN_WORKLOAD_S else 'BELOW'} the 1 ms floor); "
        f"total run time {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
