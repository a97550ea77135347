"""The five classes of defects that other projects' test cases found in mlgrad.numerical
(autograd's, numdifftools' and JAX's suites), each as a table test, in float64 unless stated.
The references are closed forms; an error estimate must bound the true error. Each table runs
as one compiled program (a lax.switch over the functions, vmapped over the cases).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlgrad import check_grad, numerical

METHODS = ("central", "forward", "backward")


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def derivatives(functions, points, methods=("central",)):
    """numerical.derivative of functions[i] at points[i] by each method, with error estimates,
    as one compiled program: [(value, error)] per method."""

    def one(k, x):
        f = lambda t: jax.lax.switch(k, list(functions), t)  # noqa: E731
        return [numerical.derivative(f, method=m, return_error=True)(x) for m in methods]

    kinds, xs = jnp.arange(len(points)), jnp.asarray(points, jnp.float64)
    return [(np.asarray(v), np.asarray(e)) for v, e in jax.jit(jax.vmap(one))(kinds, xs)]


def assert_honest(value, error, truth, tol):
    """The estimate bounds the true error (or the error is at the rounding floor), and the
    value is accurate to tol (relative to max(1, |truth|))."""
    truth = np.asarray(truth, dtype=np.result_type(value, np.float64))
    true_error = np.abs(value - truth)
    floor = 1e-12 * np.maximum(1.0, np.abs(truth))
    assert np.all(true_error <= np.maximum(error, floor)), (value, error, truth)
    assert np.all(true_error < tol * np.maximum(1.0, np.abs(truth))), (value, truth)


# 1. A Richardson step whose correction is accidentally zero (odd or even functions at points
#    that are exact multiples of the steps) must not be taken as exact.
# 2. Large (and tiny) |x|: the steps follow x's scale and the function's, and the estimate
#    notices when the steps are too long.
SMOOTH = [(jnp.sin, np.cos), (jnp.cos, lambda x: -np.sin(x)), (lambda x: x**3, lambda x: 3 * x**2)]
MULTIPLES = [0.5, 0.0, 1.0, 2.0, 0.25, -0.5, 2**-5]
MOD_POINTS = [0.5, 0.25, 0.75, 2.5, 100.5, 0.3]  # jnp.mod(x, 1): slope 1 between its jumps
LARGE = [1e6, 1e-9, 1e3, 1e4, 1e5, -1e6, 1e-6, 12345.5]


def _table():
    """(function, point, f'(point), tolerance) for classes 1 and 2."""
    rows = [(f, x, df(x), 1e-6) for f, df in SMOOTH for x in MULTIPLES]
    rows += [(lambda t: jnp.mod(t, 1.0), x, 1.0, 1e-9) for x in MOD_POINTS]
    # sin's unit-scale features at |x| = 1e6 are reached by steps down to 4e-9 |x| only
    # coarsely: accurate to 3e-5 there (central; 1e-2 one-sided), and the estimate says so
    rows += [(jnp.sin, x, np.cos(x), 1e-4 if abs(x) >= 1e5 else 1e-9) for x in LARGE]
    rows += [
        (jnp.exp, y, np.exp(y), 1e-9)
        for y in (np.sign(x) * np.log(abs(x)) if abs(x) > 100 else x for x in LARGE)
    ]
    return rows


def test_classes_1_and_2_table_every_method():
    rows = _table()
    results = derivatives([r[0] for r in rows], [r[1] for r in rows], METHODS)
    truth, tol = np.array([r[2] for r in rows]), np.array([r[3] for r in rows])
    for method, (value, error) in zip(METHODS, results, strict=True):
        true_error = np.abs(value - truth)
        floor = 1e-12 * np.maximum(1.0, np.abs(truth))  # the rounding floor
        loose = 1.0 if method == "central" else 500.0  # one-sided differences converge slower
        inaccurate = true_error >= loose * tol * np.maximum(1.0, np.abs(truth))
        bad = (true_error > np.maximum(error, floor)) | inaccurate
        assert not bad.any(), (method, [r[:2] for r, b in zip(rows, bad, strict=True) if b])
    # the examples: backward sin at 0.5 = h0/2 (D(h0) = D(h0/2) exactly), sin at 1e4
    (value, error) = results[METHODS.index("backward")]
    i = next(i for i, r in enumerate(rows) if r[0] is jnp.sin and r[1] == 0.5)
    assert abs(value[i] - np.cos(0.5)) < 1e-9 and error[i] >= abs(value[i] - np.cos(0.5))
    (value, _) = results[0]
    i = next(i for i, r in enumerate(rows) if r[0] is jnp.sin and r[1] == 1e4)
    assert abs(value[i] - np.cos(1e4)) < 1e-9


def test_check_grad_of_mod_away_from_its_jumps_passes():
    check_grad(lambda t: jnp.mod(t, 1.0), jnp.array([0.3, 2.3, 7.7]))


# 2. Large (and tiny) |x|: the steps follow x's scale and the function's, and the estimate
#    notices when the steps are too long.
# 3. Complex-valued functions, with Richardson on (and complex points of holomorphic ones).
def test_complex_outputs_and_inputs():
    points = [0.3, 0.0, 2.0, -1.5]
    ((value, error),) = derivatives([lambda t: jnp.exp(1j * t)] * 4, points)
    truth = 1j * np.exp(1j * np.array(points))
    assert np.all(np.abs(value - truth) <= np.maximum(error, 1e-12))
    assert np.all(np.abs(value - truth) < 1e-9)
    # a holomorphic f at a complex point: the derivative along the real axis is f'(z)
    z = jnp.array([1 + 2j, -0.5 + 0.1j])
    value, error = numerical.derivative(jnp.sin, return_error=True)(z)
    np.testing.assert_allclose(np.asarray(value), np.cos(np.asarray(z)), rtol=1e-10)
    assert np.all(np.asarray(error) >= np.abs(np.asarray(value) - np.cos(np.asarray(z))))
    # gradient of a real f of complex inputs: JAX's convention (df/da - i df/db)
    f = lambda w: jnp.sum(jnp.abs(w) ** 2 + jnp.real(w) * jnp.imag(w))  # noqa: E731
    np.testing.assert_allclose(numerical.gradient(f)(z), jax.grad(f)(z), rtol=1e-9)


@pytest.mark.slow
def test_complex_jacobian_and_check_grad():
    jac = numerical.jacobian(lambda t: jnp.stack([jnp.exp(1j * t), t * (1 + 2j)]))(0.3)
    np.testing.assert_allclose(np.asarray(jac), [1j * np.exp(0.3j), 1 + 2j], atol=1e-9)
    z = jnp.array([1 + 2j, -0.5 + 0.1j])
    check_grad(lambda w: jnp.sum(jnp.abs(w) ** 2 + jnp.real(w) * jnp.imag(w)), z)
    check_grad(lambda w: jnp.sin(w) * jnp.conj(w), z)  # complex in and out
    with pytest.raises(TypeError, match="complex"):
        numerical.jacobian(jnp.sin)(z)
    with pytest.raises(TypeError, match="complex"):
        numerical.hessian(lambda w: jnp.sum(jnp.abs(w) ** 2))(z)


# 4. Zero-size arguments, as the autodiff wrappers handle them.
def test_zero_size_arguments():
    def f(v):
        return jnp.sum(v**2)

    empty = jnp.zeros((0,))
    grad, error = numerical.gradient(f, return_error=True)(empty)
    assert grad.shape == error.shape == (0,)
    assert numerical.jacobian(lambda v: v * 2.0)(empty).shape == (0, 0)
    assert numerical.jacobian(lambda v: v[:0])(jnp.ones(3)).shape == (0, 3)
    assert numerical.hessian(f)(empty).shape == (0, 0)
    assert numerical.derivative(jnp.sin)(empty).shape == (0,)
    check_grad(f, empty)
    check_grad(lambda v, w: jnp.sum(v) * w, empty, 2.0)
    check_grad(lambda v: v[:0], jnp.ones(3), order=2)


# 5. Negative argnums promote Python ints like positive ones, everywhere.
def f_xy(x, y):
    return x * y**2


def test_negative_argnums():
    grad = numerical.gradient(f_xy, argnums=(0, -1))(2.0, 3)
    np.testing.assert_allclose(np.asarray(grad), (9.0, 12.0), rtol=1e-9)
    check_grad(f_xy, 2.0, 3, argnums=-1)


@pytest.mark.slow
def test_negative_argnums_everywhere():
    for argnums, expected in ((-1, 12.0), ((-1,), (12.0,)), (1, 12.0)):
        grad = numerical.gradient(f_xy, argnums=argnums)(2.0, 3)
        np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-9)
    assert float(numerical.jacobian(f_xy, argnums=-1)(2.0, 3)) == pytest.approx(12.0)
    assert float(numerical.hessian(f_xy, argnums=-1)(2.0, 3)) == pytest.approx(4.0, rel=1e-5)
    assert float(numerical.derivative(lambda y: f_xy(2.0, y))(3)) == pytest.approx(12.0)
    check_grad(f_xy, 2.0, 3, argnums=(-2, -1))
