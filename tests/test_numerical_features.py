"""The wrapper features of mlgrad.numerical that the peers have, each against an independent
reference (closed forms in NumPy, or JAX's own transformations):

* keyword arguments of f, passed through and not differentiated (as jax.grad does);
* a selectable accuracy order of the plain stencils, whose truncation error falls as h^p;
* the complex step, Im f(x + ih) / h: first derivatives to rounding in one evaluation;
* check_grad(order=3).

The longer sweeps are marked slow.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlgrad import numerical
from mlgrad.numerical import GradientCheckError, check_grad


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def counted(fn):
    """fn (NumPy) as a JAX function that counts the points it is evaluated at (real or
    complex: the output has the input's dtype)."""
    calls = {"points": 0}

    def host(x):
        calls["points"] += np.size(x)
        return np.asarray(fn(x), dtype=x.dtype)

    def f(x):
        out = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
        return jax.pure_callback(host, out, x, vmap_method="expand_dims")

    return f, calls


# --------------------------------------------------------------------------------------------
# Keyword arguments: passed to f as they are, never differentiated
# --------------------------------------------------------------------------------------------


def loss(w, x, *, y, scale, power=2):
    return scale * jnp.sum((jnp.tanh(x @ w) - y) ** power)


def test_keyword_arguments_pass_through_every_operator():
    rng = np.random.default_rng(0)
    w, x = jnp.asarray(rng.standard_normal(3)), jnp.asarray(rng.standard_normal((4, 3)))
    kw = {"y": jnp.asarray(rng.standard_normal(4)), "scale": 0.5, "power": 4}
    # the references: JAX's transformations, which pass keyword arguments through (the plain
    # eighth-order stencil keeps the compiled programs small; check_grad: see the third order)
    plain = {"accuracy": 8, "richardson": False}
    grad = numerical.gradient(loss, argnums=(0, 1), **plain)(w, x, **kw)
    expected = jax.grad(loss, argnums=(0, 1))(w, x, **kw)
    for a, e in zip(grad, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)
    residual = lambda w, x, *, y: jnp.tanh(x @ w) - y  # noqa: E731
    jac = numerical.jacobian(residual, **plain)(w, x, y=kw["y"])
    np.testing.assert_allclose(jac, jax.jacfwd(residual)(w, x, y=kw["y"]), rtol=1e-10, atol=1e-12)
    hess = numerical.hessian(loss, richardson=False)(w, x, **kw)
    np.testing.assert_allclose(hess, jax.hessian(loss)(w, x, **kw), rtol=1e-5, atol=1e-6)
    cubic = lambda t, *, c, p: c * t**p  # noqa: E731
    value = numerical.derivative(cubic, **plain)(jnp.array([0.5, 2.0]), c=3.0, p=3)
    np.testing.assert_allclose(value, 9.0 * np.array([0.5, 2.0]) ** 2, rtol=1e-12)
    assert float(numerical.difference_quotient(cubic, 3.0, 0.5, c=2.0, p=2)) == 13.0
    # also under jit, with an array keyword argument traced
    grad = jax.jit(lambda w, y: numerical.gradient(loss, **plain)(w, x, y=y, scale=0.5))
    expected = jax.grad(loss)(w, x, y=kw["y"], scale=0.5)
    np.testing.assert_allclose(grad(w, kw["y"]), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_check_grad_passes_keyword_arguments_to_f():
    @jax.custom_jvp
    def bad_sin(t):
        return jnp.sin(t)

    bad_sin.defjvp(lambda p, t: (jnp.sin(p[0]), 2 * jnp.cos(p[0]) * t[0]))

    def f(t, *, wrong, scale):
        return scale * jnp.sum(bad_sin(t) if wrong else jnp.sin(t))

    t = jnp.array([0.3, -1.2])
    check_grad(f, t, wrong=False, scale=2.0)
    with pytest.raises(GradientCheckError, match=r"d output / d argument 0\[\d\]"):
        check_grad(f, t, wrong=True, scale=2.0)


# --------------------------------------------------------------------------------------------
# Accuracy orders: the truncation error falls as h^p
# --------------------------------------------------------------------------------------------

# one-sided p = 8 is left out: in float64 only two steps (0.0625, 0.044) have a truncation
# error far above rounding (eps / h, times 78 = sum |w|) and far below the next term's
ORDERS = [("central", p) for p in (2, 4, 6, 8)] + [("forward", p) for p in (1, 2, 3, 4, 6)]
ORDERS += [("backward", p) for p in (1, 4)]


def steps_for(method, p):
    """Steps (ratio sqrt 2) where the leading truncation term C h^p dominates: the stencil's
    reach r h (r = p/2 central, p one-sided) at most 1 central, 1/2 one-sided (whose next term,
    h^(p+1), is not much smaller), and h^(p+1) >= 300 eps (rounding, eps / h, is small)."""
    reach = p / 2 if method == "central" else 2 * p
    hs = 2.0 ** -np.arange(1, 40, 0.5)
    return hs[(reach * hs <= 1) & (hs ** (p + 1) >= 300 * np.finfo(np.float64).eps)]


def test_accuracy_order_is_the_slope_of_the_error():
    # one compiled program: every order, exp and sin (lax.switch), every step at once
    x0 = 0.7
    truth = {0: np.exp(x0), 1: np.cos(x0)}

    def all_orders(k):
        f = lambda t: jax.lax.switch(k, [jnp.exp, jnp.sin], t)  # noqa: E731
        return [
            numerical.derivative(f, method=m, accuracy=p, richardson=False, step=steps_for(m, p))(
                jnp.full(steps_for(m, p).shape, x0)
            )
            for m, p in ORDERS
        ]

    results = jax.jit(jax.vmap(all_orders))(jnp.arange(2))
    for (method, p), values in zip(ORDERS, results, strict=True):
        hs = steps_for(method, p)
        assert hs.size >= 4
        for k in (0, 1):
            error = np.abs(np.asarray(values[k]) - truth[k])
            slope = np.polyfit(np.log(hs), np.log(error), 1)[0]
            assert abs(slope - p) < 0.25, (method, p, k, slope, error)


# Smooth functions with closed-form first derivatives (NumPy), at four points each.
SMOOTH = [
    (jnp.exp, np.exp),
    (jnp.sin, np.cos),
    (jnp.log1p, lambda x: 1 / (1 + x)),
    (lambda x: 1 / (1 + x**2), lambda x: -2 * x / (1 + x**2) ** 2),
    (lambda x: x**5, lambda x: 5 * x**4),
    (jnp.tanh, lambda x: 1 / np.cosh(x) ** 2),
    (jnp.sqrt, lambda x: 0.5 / np.sqrt(x)),
]
POINTS = np.array([0.3, 0.9, 1.7, 3.2])

# (method, accuracy, median relative error bound at the default step): measured medians are
# 3.7e-11, 4.9e-13, 2.2e-13, 2.2e-14 (central 2-8), 9e-9, 5e-11, 3.1e-12 (forward 1, 2, 4)
DEFAULT_STEP_BOUNDS = [
    ("central", 2, 1e-10),
    ("central", 4, 2e-12),
    ("central", 6, 1e-12),
    ("central", 8, 1e-13),
    ("forward", 1, 3e-8),
    ("forward", 2, 2e-10),
    ("backward", 4, 1e-11),
]


@pytest.mark.slow
def test_accuracy_orders_against_closed_forms():
    def table(k, x):
        f = lambda t: jax.lax.switch(k, [s[0] for s in SMOOTH], t)  # noqa: E731
        return [
            numerical.derivative(f, method=m, accuracy=p, richardson=False)(x)
            for m, p, _ in DEFAULT_STEP_BOUNDS
        ]

    kinds = np.repeat(np.arange(len(SMOOTH)), POINTS.size)
    xs = np.tile(POINTS, len(SMOOTH))
    truth = np.array([SMOOTH[k][1](x) for k, x in zip(kinds, xs, strict=True)])
    results = jax.jit(jax.vmap(table))(jnp.asarray(kinds), jnp.asarray(xs))
    medians = []
    for (method, p, bound), value in zip(DEFAULT_STEP_BOUNDS, results, strict=True):
        median = np.median(np.abs(np.asarray(value) - truth) / np.abs(truth))
        medians.append(median)
        assert median <= bound, (method, p, median)
    # higher central orders are more accurate at their default steps
    assert medians[0] > 10 * medians[1] > 10 * medians[3]
    # gradient and jacobian take the same option
    w = jnp.array([0.3, -0.8, 1.1])
    f = lambda v: jnp.sum(jnp.sin(v) * v[0])  # noqa: E731
    grad = numerical.gradient(f, accuracy=6, richardson=False)(w)
    np.testing.assert_allclose(grad, jax.grad(f)(w), rtol=1e-11, atol=1e-12)
    jac = numerical.jacobian(jnp.sin, accuracy=4, method="forward", richardson=False)(w)
    np.testing.assert_allclose(jac, jax.jacfwd(jnp.sin)(w), rtol=1e-9, atol=1e-10)


def test_accuracy_stencils_are_the_textbook_ones():
    # second-order central, fourth-order central and second-order forward first derivatives
    # (Fornberg's tables), applied by hand at a step h
    f, x, h = np.exp, 0.4, 2.0**-6
    hand = {
        ("central", 2): (f(x + h) - f(x - h)) / (2 * h),
        ("central", 4): (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h),
        ("forward", 2): (-3 * f(x) + 4 * f(x + h) - f(x + 2 * h)) / (2 * h),
        ("backward", 2): (3 * f(x) - 4 * f(x - h) + f(x - 2 * h)) / (2 * h),
    }
    # and their evaluation counts: p central points (first derivative), n + p one-sided
    counts = {("central", 2): 2, ("central", 4): 4, ("forward", 2): 3, ("backward", 2): 3}
    for (method, p), expected in hand.items():
        g, calls = counted(np.exp)
        value = numerical.derivative(g, method=method, accuracy=p, richardson=False, step=h)(x)
        assert float(value) == pytest.approx(expected, rel=1e-13), (method, p)
        assert calls["points"] == counts[method, p]
        assert (
            numerical.num_evaluations(method=method, accuracy=p, richardson=False)
            == calls["points"]
        )
    assert numerical.num_evaluations(accuracy=8, richardson=False) == 8
    # second derivative, fourth order:
    # (-f(x + 2h) + 16 f(x + h) - 30 f(x) + 16 f(x - h) - f(x - 2h)) / 12 h^2
    d2 = numerical.derivative(jnp.exp, 2, accuracy=4, richardson=False, step=h)(x)
    hand2 = (-f(x + 2 * h) + 16 * f(x + h) - 30 * f(x) + 16 * f(x - h) - f(x - 2 * h)) / (12 * h**2)
    assert float(d2) == pytest.approx(hand2, rel=1e-12)
    # with an error estimate (the step 2h too): the estimate bounds the error here
    value, error = numerical.derivative(jnp.sin, accuracy=4, richardson=False, return_error=True)(
        jnp.asarray(POINTS)
    )
    assert np.all(np.abs(np.asarray(value) - np.cos(POINTS)) <= np.asarray(error))


def test_accuracy_misuse_is_named():
    with pytest.raises(ValueError, match="richardson=False"):
        numerical.derivative(jnp.sin, accuracy=4)
    with pytest.raises(ValueError, match=r"2, 4, 6, 8 for method='central', got 3"):
        numerical.derivative(jnp.sin, accuracy=3, richardson=False)
    with pytest.raises(ValueError, match=r"1, 2, 3, 4, 5, 6, 7, 8 for method='forward', got 9"):
        numerical.gradient(jnp.sum, method="forward", accuracy=9, richardson=False)
    with pytest.raises(ValueError, match="accuracy"):
        numerical.jacobian(jnp.sin, accuracy=True, richardson=False)


# --------------------------------------------------------------------------------------------
# The complex step
# --------------------------------------------------------------------------------------------

# real-analytic functions with closed-form derivatives, at small, moderate and large |x|
COMPLEX_STEP = [
    ("exp", jnp.exp, np.exp, [-30.0, -2.5, -1e-9, 1e-4, 0.3, 1.7, 20.0, 600.0]),
    ("sin", jnp.sin, np.cos, [-1e6, -2.5, 1e-12, 1e-3, 0.3, 1.7, 1e4, 1e12]),
    ("x^5", lambda x: x**5, lambda x: 5 * x**4, [-1e5, -2.5, -1e-20, 1e-6, 0.3, 1.7, 1e3, 1e40]),
    (
        "1/(1+x^2)",
        lambda x: 1 / (1 + x**2),
        lambda x: -2 * x / (1 + x**2) ** 2,
        [-1e8, -2.5, -1e-10, 1e-5, 0.3, 1.7, 1e3, 1e30],
    ),
    ("tanh", jnp.tanh, lambda x: 1 / np.cosh(x) ** 2, [-20.0, -2.5, -1e-10, 1e-4, 0.3, 1.7, 8, 19]),
]


def test_complex_step_is_exact_to_rounding():
    kinds = np.repeat(np.arange(len(COMPLEX_STEP)), 8)
    xs = np.array([x for *_, points in COMPLEX_STEP for x in points])
    truth = np.array([COMPLEX_STEP[k][2](x) for k, x in zip(kinds, xs, strict=True)])

    def one(k, x):
        f = lambda t: jax.lax.switch(k, [c[1] for c in COMPLEX_STEP], t)  # noqa: E731
        return numerical.derivative(f, method="complex")(x)

    value = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(kinds), jnp.asarray(xs)))
    relative = np.abs(value - truth) / np.abs(truth)
    assert np.all(relative <= 1e-15), [
        (COMPLEX_STEP[k][0], x, r)
        for k, x, r in zip(kinds, xs, relative, strict=True)
        if not r <= 1e-15
    ]


def test_complex_step_costs_one_evaluation_per_direction():
    f, calls = counted(np.sin)
    value = numerical.derivative(f, method="complex")(jnp.array([0.3, 1.0, 2.0]))
    assert calls["points"] == 3 and numerical.num_evaluations(method="complex") == 1
    np.testing.assert_allclose(value, np.cos([0.3, 1.0, 2.0]), rtol=1e-15)
    # gradient and jacobian: one evaluation per input entry, against JAX autodiff
    calls["points"] = 0
    x = jnp.array([0.3, -1.2, 2.5, 0.7])
    h = lambda v, a: a * jnp.sum(f(v) * v[0] ** 2) + jnp.exp(v[1]) / (1 + v[2] ** 2)  # noqa: E731
    grad = numerical.gradient(h, method="complex")(x, a=1.5)
    reference = lambda v: 1.5 * jnp.sum(jnp.sin(v) * v[0] ** 2) + jnp.exp(v[1]) / (1 + v[2] ** 2)  # noqa: E731
    assert calls["points"] == 4 * x.size  # four entries of f per evaluation, one per entry of x
    np.testing.assert_allclose(grad, jax.grad(reference)(x), rtol=2e-15, atol=1e-16)
    vector = lambda v: {"a": jnp.tanh(v) * v[0], "b": jnp.sum(v**3)}  # noqa: E731
    jac = numerical.jacobian(vector, method="complex")(x)
    expected = jax.jacfwd(vector)(x)
    for key in ("a", "b"):
        np.testing.assert_allclose(jac[key], expected[key], rtol=2e-15, atol=1e-16)


def test_complex_step_float32():
    x = jnp.asarray([1e-6, 0.3, 1.7, -2.5, 40.0], jnp.float32)
    value = np.asarray(numerical.derivative(lambda t: t**5 + jnp.sin(t), method="complex")(x))
    assert value.dtype == np.float32
    x64 = np.asarray(x, np.float64)
    truth = 5 * x64**4 + np.cos(x64)
    assert np.all(np.abs(value - truth) <= 2 * np.finfo(np.float32).eps * np.abs(truth))


def test_complex_step_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="first derivatives only"):
        numerical.derivative(jnp.sin, 2, method="complex")
    with pytest.raises(ValueError, match="no error estimate"):
        numerical.derivative(jnp.sin, method="complex", return_error=True)
    with pytest.raises(ValueError, match="accuracy does not apply"):
        numerical.gradient(jnp.sum, method="complex", accuracy=2)
    with pytest.raises(TypeError, match="real point"):
        numerical.derivative(jnp.sin, method="complex")(1.0 + 2.0j)
    with pytest.raises(TypeError, match="argument 0 has dtype complex"):
        numerical.gradient(lambda z: jnp.sum(jnp.abs(z)), method="complex")(jnp.ones(2) * 1j)
    with pytest.raises(TypeError, match="real-valued at real points"):
        numerical.derivative(lambda t: jnp.exp(1j * t), method="complex")(0.5)
    with pytest.raises(TypeError, match="discards the imaginary part"):
        numerical.derivative(jnp.abs, method="complex")(0.5)
    with pytest.raises(TypeError, match="raised on a complex argument"):
        numerical.gradient(lambda v: jnp.sum(jnp.clip(v, -1, 1)), method="complex")(jnp.ones(2))
    # comparisons are complex-safe (JAX orders complex numbers by their real parts first)
    relu = lambda v: jnp.sum(jnp.where(v > 0, v**2, 0.0) + jnp.maximum(v, 0.0))  # noqa: E731
    x = jnp.array([-0.5, 0.25, 2.0])
    np.testing.assert_allclose(numerical.gradient(relu, method="complex")(x), [0, 1.5, 5])
    with pytest.raises(ValueError, match="'complex'"):
        numerical.difference_quotient(jnp.sin, 1.0, scheme="complex")


# --------------------------------------------------------------------------------------------
# check_grad(order=3)
# --------------------------------------------------------------------------------------------


@jax.custom_jvp
def minus_sin_bad(x):  # the right value -sin, the wrong derivative (+cos instead of -cos)
    return -jnp.sin(x)


minus_sin_bad.defjvp(lambda p, t: (minus_sin_bad(p[0]), jnp.cos(p[0]) * t[0]))


@jax.custom_jvp
def cos_(x):
    return jnp.cos(x)


cos_.defjvp(lambda p, t: (cos_(p[0]), minus_sin_bad(p[0]) * t[0]))


@jax.custom_jvp
def sin_bad_third(x):  # first and second derivatives right, the third wrong (+cos for -cos)
    return jnp.sin(x)


sin_bad_third.defjvp(lambda p, t: (sin_bad_third(p[0]), cos_(p[0]) * t[0]))


def test_check_grad_third_order():
    # the first- and second-order checks pass (they run first); the third derivative is wrong
    # (and keyword arguments reach f: c = 2)
    x = jnp.array([0.4, -0.7])
    f = lambda v, *, c: c * (jnp.exp(v[0]) * v[1] + sin_bad_third(v[1]))  # noqa: E731
    with pytest.raises(GradientCheckError, match="third derivatives") as info:
        check_grad(f, x, order=3, c=2.0)
    message = str(info.value)
    assert "worst entry: d^3 f / d argument 0[1] d argument 0[1] d argument 0[1]" in message
    ad = float(re.search(r"worst entry.*\n\s+autodiff:\s+(\S+)", message).group(1))
    fd = float(re.search(r"worst entry.*\n.*\n\s+finite differences:\s+(\S+)", message).group(1))
    # d^3/dv1^3 [2 sin v1] = -2 cos v1 (finite differences); the wrong rule gives +2 cos v1
    assert fd == pytest.approx(-2 * np.cos(-0.7), rel=1e-7)
    assert ad == pytest.approx(2 * np.cos(-0.7), rel=1e-9)  # printed to 10 digits


@pytest.mark.slow
def test_check_grad_third_order_vector_outputs_and_many_inputs():
    x = jnp.array([0.4, 1.1, -0.7])
    check_grad(lambda v, c: c * jnp.sum(jnp.sin(v) * v[0] ** 2) + jnp.prod(v) ** 2, x, 3.0, order=3)
    check_grad(lambda v: {"a": jnp.exp(v) * v[1], "b": jnp.sum(v**4)}, x, order=3)
    x30 = jnp.linspace(-1.0, 1.0, 30)  # more than 20 inputs: H w along random directions
    check_grad(lambda v: jnp.sum(jnp.tanh(v) * v**2) + jnp.sum(v) ** 3, x30, order=3)
    with pytest.raises(GradientCheckError, match=r"third derivatives[\s\S]*d w d argument 0"):
        check_grad(lambda v: jnp.sum(sin_bad_third(v)), x30, order=3)
    with pytest.raises(GradientCheckError, match=re.escape("d^3 <u, f> / d argument 0[0] d")):
        check_grad(lambda v: jnp.stack([sin_bad_third(v[0]), v[1] ** 2]), x[:2], order=3)
    check_grad(lambda v: jnp.sum(jnp.sin(v) ** 3), jnp.asarray(x, jnp.float32), order=3)


@pytest.mark.slow  # about 10 s of small eager programs
def test_docstring_examples_run():
    import doctest

    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    with jax.enable_x64(False):  # as a user runs them
        for name in numerical.__all__:
            for test in finder.find(getattr(numerical, name), name, globs={}):
                runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 20 and result.failed == 0
