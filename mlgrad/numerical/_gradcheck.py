"""check_grad: autodiff against finite differences, along random directions and coordinates.

The finite-difference side is :mod:`mlgrad.numerical._apply`'s derivative along a line, with
its error estimate; the tolerance adds that estimate to atol + rtol |value|, so an honest
estimate is what keeps the check free of false alarms at any magnitude of x.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlgrad.numerical._apply import along_lines, eps_of, first_step, make_key, pow2, scheme_of
from mlgrad.numerical._arguments import flatten, realify, select_args


class GradientCheckError(AssertionError):
    """Autodiff and finite differences disagree (raised by :func:`check_grad`)."""


NO_FLOAT_ARGS = (
    "mlgrad.check_grad: none of the {nargs} positional arguments is a floating-point array (or "
    "a pytree of them), so there is nothing to differentiate. Pass floats (2.0, not 2) or name "
    "the arguments to check with argnums=..."
)
NOT_FLOAT_OUTPUT = (
    "mlgrad.check_grad: f returned dtype {dtype}; derivatives are only defined for "
    "floating-point (or complex) outputs."
)
_SMALL = 20  # inputs up to which every coordinate direction is checked, naming the worst entry


def _default_tolerance(eps: float, order: int = 1) -> float:
    """The default rtol for the check of derivatives of this order (measured, see check_grad).

    In float32 the second and third derivatives are finite differences of a float32 gradient
    or Hessian from autodiff, whose rounding (a few eps of the magnitudes of its terms, not of
    its value) the error estimate does not model: they get 2e-3 and 1e-2.
    """
    if eps <= 1e-15:  # float64
        return 1e-6
    if eps <= 1e-6:  # float32
        return {1: 2e-4, 2: 2e-3}.get(order, 1e-2)
    return 5e-2  # float16, bfloat16


def _float_leaf(leaf: Any) -> bool:
    if isinstance(leaf, float | complex):
        return True
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and bool(jnp.issubdtype(dtype, jnp.inexact))


def _float_argnums(args: Sequence[Any]) -> tuple[int, ...]:
    """Positions of the arguments whose leaves are all floating point (or complex)."""
    nums = tuple(
        i
        for i, arg in enumerate(args)
        if (leaves := jax.tree_util.tree_leaves(arg)) and all(map(_float_leaf, leaves))
    )
    if not nums:
        raise ValueError(NO_FLOAT_ARGS.format(nargs=len(args)))
    return nums


def _entry_namer(parts: Sequence[tuple[str, Any]]) -> Callable[[int], str]:
    """Names entry k of the pytrees raveled as realify does, e.g. "argument 1['w'][0, 2]"
    (a complex entry is two: "... (real part)" and "... (imaginary part)")."""
    table: list[tuple[str, tuple[int, ...], str]] = []
    for prefix, tree in parts:
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            leaf_name, shape = prefix + jax.tree_util.keystr(path), tuple(np.shape(leaf))
            if jnp.issubdtype(jnp.result_type(leaf), jnp.complexfloating):
                table += [(leaf_name, shape, " (real part)"), (leaf_name, shape, " (imag part)")]
            else:
                table.append((leaf_name, shape, ""))

    def name(k: int) -> str:
        for leaf_name, shape, part in table:
            size = math.prod(shape)
            if k < size:
                if not shape:
                    return leaf_name + part
                index = np.unravel_index(k, shape)
                return f"{leaf_name}[{', '.join(str(int(i)) for i in index)}]{part}"
            k -= size
        raise IndexError(k)

    return name


def _fmt(v: Any) -> str:
    return f"{float(v):.10g}"


def _on_the_grid(v: np.ndarray, x: jax.Array) -> jax.Array:
    """Directions near v whose sample points x + t v are exact in x's dtype.

    The steps t along a direction are powers of two times h0 = max(1, max |x|), the smallest
    t_min; with each v_i a multiple of ulp(x_i) / t_min, every t v_i is a multiple of ulp(x_i)
    and x_i + t v_i is exact. Otherwise the points are rounded off the line by up to
    eps |x_i| / 2 in every coordinate, an error of about eps sum_i |x_i| |df/dx_i| / t in the
    difference, which the error estimate's model (eps max|x| |D_v f|, for points on the line)
    misses where D_v f is small by cancellation; in float32 that is a false alarm waiting to
    happen (sin at |x| ~ 10: an error of 2e-4, three times the estimate). The change to v is
    below 2^-9 per entry in float32, 2^-24 in float64.
    """
    key = make_key(1, "central", True, True, x.dtype)
    offsets = np.abs(scheme_of(key).offsets)
    h0 = float(pow2(jnp.maximum(1.0, jnp.max(jnp.abs(x)))))
    t_min = float(offsets[offsets > 0].min()) * h0
    ulp = np.spacing(np.abs(np.asarray(x))).astype(np.float64)
    unit = ulp / t_min  # a power of two per entry
    return jnp.asarray(np.round(v / unit) * unit, x.dtype)


def _ratio(ad: Any, num: Any, err: Any, atol: float, rtol: float) -> np.ndarray:
    """|ad - num| / (atol + rtol max(|ad|, |num|) + FD error estimate); NaN counts as failure."""
    ad, num, err = (np.asarray(a, dtype=np.float64) for a in (ad, num, err))
    diff = np.abs(ad - num)
    tol = atol + rtol * np.maximum(np.abs(ad), np.abs(num)) + err
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / tol)
    return np.where(np.isnan(ratio), np.inf, ratio)


def _jvps(fn: Callable[[jax.Array], jax.Array], x: jax.Array, v: jax.Array) -> jax.Array | None:
    """J v for each row v of `v` in forward mode, or None where f has no JVP (custom_vjp)."""
    try:
        return jax.vmap(lambda d: jax.jvp(fn, (x,), (d,))[1])(v)
    except TypeError:
        return None


def _measure(
    fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    v: jax.Array,
    u: jax.Array | None,
    second: bool,
    info: dict[str, Any],
) -> dict[str, jax.Array]:
    """Everything check_grad compares, as arrays (traced once under jit).

    First order (`second=False`): fn is f on the flat inputs, the autodiff side is J v in
    forward mode (from reverse mode for custom_vjp functions, which have no JVP), and `u`
    gives the dot-product identity <u, J v> = <J^T u, v>. Second order: fn is the
    reverse-mode gradient of a scalar function, the autodiff side its JVP (forward-over-reverse,
    or its VJP where there is no JVP: H is symmetric). Third order (`second=False` again): fn is
    the raveled Hessian (or H w), the autodiff side its JVP. The numerical side is always the
    finite-difference derivative of fn along the directions (and the coordinates, for few
    inputs), extrapolated.
    """
    ad = _jvps(fn, x, v)
    info["forward"] = ad is not None
    if ad is None:
        _, vjp = jax.vjp(fn, x)
        ad = jax.vmap(lambda d: vjp(d)[0])(v) if second else v @ jax.jacrev(fn)(x).T
    key = make_key(1, "central", True, True, x.dtype)
    lines, h0 = v, jnp.full(v.shape[:1], pow2(jnp.maximum(1.0, jnp.max(jnp.abs(x)))))
    coordinates = x.size <= _SMALL  # every coordinate direction too: the worst single entry
    if coordinates:  # one finite-difference program for both kinds of lines
        lines = jnp.concatenate([v, jnp.eye(x.size, dtype=x.dtype)])
        h0 = jnp.concatenate([h0, first_step(x, key, None)])
    num, err = along_lines(fn, x, lines, h0, key)
    assert err is not None  # along_lines always estimates
    k = v.shape[0]
    out = {"ad": ad, "num": num[:k], "err": err[:k]}
    if coordinates:
        jac = jax.jacfwd(fn) if info["forward"] else jax.jacrev(fn)
        out.update(ad_m=jac(x), num_m=num[k:].T, err_m=err[k:].T)  # (m, n)
    if u is not None and info["forward"]:
        _, vjp = jax.vjp(fn, x)
        jtu = jax.vmap(lambda w: vjp(w)[0])(u)
        out.update(
            jvp_side=jnp.sum(u * ad, axis=1),
            vjp_side=jnp.sum(jtu * v, axis=1),
            identity_scale=jnp.sum(jnp.abs(u * ad), axis=1) + jnp.sum(jnp.abs(jtu * v), axis=1),
        )
    return out


class _Report(NamedTuple):
    ok: bool  # autodiff agrees with finite differences
    consistent: bool  # reverse mode agrees with forward mode
    lines: list[str]
    atol: float  # the absolute tolerance used


def _normwise_atol(r: dict[str, np.ndarray], rtol: float) -> float:
    """rtol times the largest |derivative| measured: the default absolute tolerance, so that
    the check is relative to f's own scale (a gradient of 1e-6 everywhere is checked to
    rtol * 1e-6, not swallowed by a fixed atol)."""
    sizes = [np.abs(r[k]) for k in ("ad", "num", "ad_m", "num_m") if k in r]
    finite = [a[np.isfinite(a)] for a in sizes]
    largest = max((float(a.max()) for a in finite if a.size), default=0.0)
    return rtol * largest


def _report(
    r: dict[str, np.ndarray],
    v: np.ndarray,
    atol: float | None,
    rtol: float,
    eps: float,
    what: str,
    component: Callable[[int], str],
    entry: Callable[[int, int], str],
) -> _Report:
    """Turns the measured arrays into pass/fail and the message lines."""
    atol = _normwise_atol(r, rtol) if atol is None else atol
    ad = r["ad"].reshape(v.shape[0], -1)
    num, err = r["num"].reshape(ad.shape), r["err"].reshape(ad.shape)
    ratio = _ratio(ad, num, err, atol, rtol)
    k, j = (int(a) for a in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    ok = bool(ratio[k, j] <= 1)
    n = v.shape[1]
    vector = (
        np.array2string(v[k], precision=4, separator=", ")
        if n <= _SMALL
        else f"a random unit vector in R^{n}"
    )
    tol = atol + rtol * max(abs(ad[k, j]), abs(num[k, j])) + err[k, j]
    diff = abs(ad[k, j] - num[k, j])
    lines = [
        f"worst of {ad.shape[0]} random directions: #{k}, v = {vector}"
        + (f"; component {component(j)}" if ad.shape[1] > 1 else ""),
        f"  autodiff {what}:".ljust(42) + _fmt(ad[k, j]),
        "  finite differences:".ljust(42) + f"{_fmt(num[k, j])}  (error estimate {err[k, j]:.2g})",
        f"  |difference| = {diff:.3g} "
        + (f"> tolerance {tol:.3g}" if not ok else f"(within tolerance {tol:.3g})"),
    ]
    if "ad_m" in r:
        num_m = r["num_m"].reshape(-1, n)
        ad_m, err_m = r["ad_m"].reshape(num_m.shape), r["err_m"].reshape(num_m.shape)
        ratio = _ratio(ad_m, num_m, err_m, atol, rtol)
        i, j = (int(a) for a in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
        ok = ok and bool(ratio[i, j] <= 1)
        lines += [
            f"worst entry: {entry(i, j)}",
            "  autodiff:".ljust(42) + _fmt(ad_m[i, j]),
            "  finite differences:".ljust(42)
            + f"{_fmt(num_m[i, j])}  (error estimate {err_m[i, j]:.2g})",
        ]
    consistent = True
    if "jvp_side" in r:
        lhs, rhs = r["jvp_side"], r["vjp_side"]
        ratio = _ratio(lhs, rhs, math.sqrt(eps) * r["identity_scale"], 0.0, 0.0)
        k = int(np.argmax(ratio))
        if ratio[k] > 1:
            consistent = False
            lines += [
                f"reverse mode (VJP) disagrees with forward mode (JVP) along direction #{k}:",
                "  <u, J v> (JVP):".ljust(42) + _fmt(lhs[k]),
                "  <J^T u, v> (VJP):".ljust(42) + _fmt(rhs[k]),
            ]
    return _Report(ok, consistent, lines, atol)


def check_grad(
    f: Callable[..., Any],
    *args: Any,
    order: int = 1,
    argnums: int | Sequence[int] | None = None,
    num_directions: int = 3,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> None:
    """Checks autodiff derivatives of f at args against finite differences.

    For random unit directions v (so the check stays cheap for any number of inputs, like
    ``jax.test_util.check_grads``), the forward-mode directional derivative J v (``jax.jvp``)
    must match the finite-difference derivative of t -> f(x + t v) at t = 0, computed with
    Richardson extrapolation (:func:`derivative`'s steps and error estimate):

    .. math:: |J v - D_{FD}| \\le atol + rtol \\max(|J v|, |D_{FD}|) + \\text{FD error estimate}.

    Reverse mode is checked against forward mode through the dot-product identity
    <u, J v> = <J^T u, v> for random u (``jax.vjp``). With at most 20 inputs every coordinate
    direction is checked as well, which names the worst single entry. With ``order=2`` the
    first-order check runs first, then the Hessian-vector products H v (forward-over-reverse:
    the JVP of the reverse-mode gradient; for a vector-valued f, of a random projection
    <u, f>) are checked against finite differences of the gradient along v. With ``order=3``
    the first- and second-order checks run first, then the third derivatives: the JVP of the
    Hessian (``jax.hessian``, forward-over-reverse) along v against finite differences of the
    Hessian along v; with at most 20 inputs along every coordinate too, which names the worst
    entry d^3 f / dx_a dx_b dx_c (with more inputs the Hessian is applied to a random unit
    vector w, which keeps the cost at n outputs per evaluation). Complex inputs
    and outputs are checked as their real and imaginary parts; with no inputs or no outputs
    (zero-size arrays) there is nothing to check and the check passes.

    Since the finite-difference error estimate is honest (it bounds the actual error wherever
    the steps resolve f) and the default tolerances scale with f, the check has no false
    alarms over a wide range. In float64, correct gradients pass for smooth functions at any
    magnitude of x from 1e-6 to 1e6 and for piecewise functions (abs, maximum, clip, where,
    mod, floor, sort, ...) at points clear of their kinks (by 1e-3, or 1e-3 |x| down to 1e-6
    for |x| < 1), while a gradient off by 1e-3 (relative) in one entry (of at least 1e-2 times the
    largest) fails and, with at most
    20 inputs, the message names the entry.

    In float32 (first derivatives; default rtol 2e-4), measured at three to eight random points
    per decade on sin x, x cos x, log1p(x^2), x tanh x, x^3 and on exp, tanh, exp(-x^2) and
    log(x^2) of x / s with s = |x|'s scale: correct gradients pass, and a gradient off by 1e-3
    (relative, in its largest entry) fails naming the entry, for |x| from 1e-6 to 100 where f's
    features are at unit scale (sin x, x cos x) and from 1e-2 to 1e6 where they scale with |x|
    (log1p(x^2) and x tanh x: 1e-6 to 1e6). Beyond 100 a float32 difference resolves a
    unit-scale period too coarsely to see 1e-3 (an error of 1e-2 is still seen up to 1e4, and
    correct gradients pass; from 1e5, where the smallest step, 6e-5 |x|, exceeds the period,
    they fail). Below 1e-2, features at |x|'s own scale are finer than the smallest step (6e-5):
    at 1e-3 the check can miss a 1e-3 error, and from 1e-4 it can raise false alarms. Nearly
    flat functions, |f'| below about 0.1 |f| / max(1, |x|) (cos x or sqrt(1 + x^2) at |x| <
    0.1), hide an error of 1e-3 from any float32 difference, and below 1e-3 |f| / max(1, |x|)
    one of 1e-2. The second and third derivatives in float32 are finite differences of a float32
    gradient or Hessian, whose rounding the estimate does not model: their default rtol is 2e-3
    and 1e-2 (on small tanh networks the largest disagreement beyond the estimate measured 8e-4
    and 4e-3); check them in float64 where it matters. Not checkable at all: points on a kink or
    a jump, or closer to it than the smallest step (about 4e-9 max(1, |x|) in float64, 6e-5
    max(1, |x|) in float32).

    Args:
      f: the function; any pytree of float (or complex) arrays in and out.
      *args: the point at which to check (positional arguments of f).
      order: 1 (first derivatives), 2 (also second derivatives) or 3 (also third derivatives).
      argnums: the arguments to check (int or tuple; negative ones count from the end).
        Default: every argument whose leaves are all floating point or complex; integer and
        other non-float arguments are passed through as they are unless named here (Python
        ints named here are promoted to floats).
      num_directions: how many random directions to check.
      atol: absolute tolerance; default rtol times the largest |derivative| measured (so the
        check is relative to f's own scale: a gradient of 1e-6 is checked to rtol * 1e-6).
      rtol: relative tolerance; default 1e-6 in float64, 2e-4 in float32 (2e-3 for second and
        1e-2 for third derivatives), 5e-2 in 16-bit floats (by the least precise dtype among
        inputs and outputs).
      seed: seed of the random directions (NumPy's default generator).
      **kwargs: keyword arguments of f, passed to it as they are and not checked (as
        ``jax.grad`` passes them through undifferentiated); names of check_grad's own options
        (order, argnums, ...) cannot be passed this way: bind them with ``functools.partial``.

    Returns:
      None, when autodiff and finite differences agree.

    Raises:
      GradientCheckError: (an AssertionError) when they disagree; the message names the worst
        direction (its index, the vector when there are at most 20 inputs, and which output
        component) with its autodiff and numerical values, and, for at most 20 inputs, the
        worst single entry with both values.
      TypeError: an integer array named in argnums, or a non-float output.
      ValueError: order not 1, 2 or 3, argnums out of range, or no float argument to check.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from mlgrad.numerical import check_grad
      >>> check_grad(lambda x: jnp.sum(jnp.sin(x) ** 2), jnp.array([0.3, 1.2]))  # passes
      >>> @jax.custom_jvp
      ... def bad_sin(x):
      ...     return jnp.sin(x)
      >>> _ = bad_sin.defjvp(lambda p, t: (jnp.sin(p[0]), 2 * jnp.cos(p[0]) * t[0]))
      >>> check_grad(bad_sin, jnp.array(0.5))  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      mlgrad.numerical.GradientCheckError: mlgrad.check_grad: autodiff and finite ...
    """
    if order not in (1, 2, 3) or isinstance(order, bool):
        raise ValueError(f"mlgrad.check_grad: order must be 1, 2 or 3, got {order!r}.")
    if not isinstance(num_directions, int) or num_directions < 1:
        raise ValueError(
            f"mlgrad.check_grad: num_directions must be an int >= 1, got {num_directions!r}."
        )
    nums = _float_argnums(args) if argnums is None else argnums
    sel = select_args(args, nums, "mlgrad.check_grad", kwargs)

    def outputs(like: Any) -> jax.Array:  # f's outputs, raveled (complex ones as two reals)
        return realify(sel.call(f, like))[0]

    x = jax.eval_shape(lambda like: realify(like)[0], sel.like)  # shapes only: no eager f
    y = jax.eval_shape(lambda like: sel.call(f, like), sel.like)
    y_leaves = jax.tree_util.tree_leaves(y)
    if not all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in y_leaves):
        dtype = next(leaf.dtype for leaf in y_leaves if not jnp.issubdtype(leaf.dtype, jnp.inexact))
        raise TypeError(NOT_FLOAT_OUTPUT.format(dtype=dtype))
    y_flat = jax.eval_shape(outputs, sel.like)
    n, m = x.size, y_flat.size
    if n == 0 or m == 0:  # no derivative to check
        return
    eps = max(eps_of(x.dtype), eps_of(y_flat.dtype))
    rtols = {k: _default_tolerance(eps, k) if rtol is None else float(rtol) for k in (1, 2, 3)}
    atol = None if atol is None else float(atol)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((num_directions, n))
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    directions = _on_the_grid(v, realify(sel.like)[0])
    v = np.asarray(directions, dtype=np.float64)
    parts = (sel.like,) if sel.single else sel.like
    name_in = _entry_namer([(f"argument {i}", a) for i, a in zip(sel.nums, parts, strict=True)])
    name_out = _entry_namer([("output", y)])

    def run(
        make: Callable[[Callable[[jax.Array], jax.Array]], Callable[[jax.Array], jax.Array]],
        u: jax.Array | None,
        second: bool,
    ) -> tuple[dict[str, np.ndarray], bool]:
        """Measures the function make(f on the flat inputs), compiled as one program."""
        info: dict[str, Any] = {}

        def measure(like: Any) -> dict[str, jax.Array]:
            flat = flatten(f, sel, like)
            fn = make(lambda w: realify(flat.g(w))[0])
            return _measure(fn, flat.x, directions, u, second, info)

        arrays = jax.jit(measure)(sel.like)
        return {k: np.asarray(a, dtype=np.float64) for k, a in arrays.items()}, info["forward"]

    u = jnp.asarray(rng.standard_normal((num_directions, m)), y_flat.dtype)
    arrays, forward = run(lambda gf: gf, u, False)
    report = _report(
        arrays,
        v,
        atol,
        rtols[1],
        eps,
        "J v (JVP)" if forward else "J v (VJP)",
        name_out,
        lambda i, j: f"d {name_out(i)} / d {name_in(j)}",
    )
    checked, level = "first", 1
    # the higher orders differentiate the reverse-mode gradient of f, or of a random scalar
    # projection <u, f> of a vector f
    u0 = jnp.asarray(rng.standard_normal(m), y_flat.dtype)
    w0 = rng.standard_normal(n)
    w0 = jnp.asarray(w0 / max(np.linalg.norm(w0), np.finfo(np.float64).tiny), x.dtype)
    fname = "f" if m == 1 else "<u, f>"

    def scalar(gf: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
        return lambda w: jnp.vdot(u0, gf(w)) if m > 1 else gf(w)[0]

    if report.ok and report.consistent and order >= 2:
        checked, level = "second", 2

        def gradient_of(gf: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
            return jax.grad(scalar(gf))

        arrays, forward = run(gradient_of, None, True)
        report = _report(
            arrays,
            v,
            atol,
            rtols[2],
            eps,
            "H v (forward-over-reverse)" if forward else "H v (reverse-over-reverse)",
            lambda j: f"d{fname}/d {name_in(j)}",
            lambda i, j: f"d^2 {fname} / d {name_in(i)} d {name_in(j)}",
        )
    if report.ok and report.consistent and order >= 3:
        checked, level = "third", 3
        # with few inputs the whole Hessian (each third derivative d^3 / dx_a dx_b dx_c is
        # then an entry of its Jacobian, named in the message); with many, H w0 for a random
        # unit w0 (the third derivative along v, w0 and each coordinate)
        full = n <= _SMALL

        def hessian_of(gf: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
            if full:
                return lambda w: jax.hessian(scalar(gf))(w).reshape(-1)
            return lambda w: jax.jvp(jax.grad(scalar(gf)), (w,), (w0,))[1]

        def second(j: int) -> str:
            if full:
                a, b = divmod(j, n)
                return f"d^2 {fname} / d {name_in(a)} d {name_in(b)}"
            return f"d^2 {fname} / d w d {name_in(j)} (w a random unit vector)"

        def third(i: int, j: int) -> str:  # only with few inputs (full)
            a, b = divmod(i, n)
            return f"d^3 {fname} / d {name_in(a)} d {name_in(b)} d {name_in(j)}"

        arrays, forward = run(hessian_of, None, False)
        report = _report(
            arrays,
            v,
            atol,
            rtols[3],
            eps,
            "JVP of the Hessian along v" if forward else "VJP of the Hessian along v",
            second,
            third,
        )
    if not (report.ok and report.consistent):
        problem = (
            "autodiff and finite differences disagree"
            if not report.ok
            else "reverse mode (VJP) and forward mode (JVP) disagree"
        )
        header = (
            f"mlgrad.check_grad: {problem} on the {checked} derivatives of "
            f"{getattr(f, '__name__', repr(f))} ({n} inputs, {m} outputs, "
            f"{jnp.dtype(y_flat.dtype).name}; atol={report.atol:.3g}, rtol={rtols[level]:g})."
        )
        raise GradientCheckError("\n".join([header, *report.lines]))
