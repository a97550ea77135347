"""linearization and taylor against closed forms and finite differences."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fd_jacobian

import mlgrad


def test_linearization_is_value_plus_jacobian_times_step():
    a = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])

    def f_np(x):
        return np.tanh(a @ x)

    x0 = np.array([0.1, -0.2, 0.3])
    dx = np.array([0.01, 0.02, -0.01])
    with jax.enable_x64(True):
        lin = mlgrad.linearization(lambda x: jnp.tanh(jnp.asarray(a) @ x), jnp.asarray(x0))
        got = lin(jnp.asarray(x0 + dx))
    np.testing.assert_allclose(got, f_np(x0) + fd_jacobian(f_np, x0) @ dx, rtol=1e-9)
    np.testing.assert_allclose(lin.value, f_np(x0), rtol=1e-12)


def test_linearization_error_is_second_order():
    # |f(x0 + h) - L(x0 + h)| ~ f''(x0) h^2 / 2 for the notes' sqrt example.
    with jax.enable_x64(True):
        lin = mlgrad.linearization(jnp.sqrt, 4.0)
        for h in (1e-1, 1e-2, 1e-3):
            err = float(jnp.sqrt(4.0 + h) - lin(4.0 + h))
            np.testing.assert_allclose(err, -(4.0**-1.5) / 8 * h**2, rtol=0.05)


def test_linearization_under_jit_and_vmap_and_on_pytrees():
    f = lambda p: p["w"] * jnp.sin(p["b"])  # noqa: E731
    x0 = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(0.5)}
    lin = mlgrad.linearization(f, x0)
    x = {"w": jnp.array([1.1, 1.9]), "b": jnp.array(0.55)}
    expected = np.array([1.0, 2.0]) * np.sin(0.5) + (
        np.array([0.1, -0.1]) * np.sin(0.5) + np.array([1.0, 2.0]) * np.cos(0.5) * 0.05
    )
    np.testing.assert_allclose(lin(x), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lin)(x), expected, rtol=1e-6)
    xs = jnp.linspace(3.9, 4.1, 5)
    lin_sqrt = mlgrad.linearization(jnp.sqrt, 4.0)
    np.testing.assert_allclose(jax.vmap(lin_sqrt)(xs), 2 + (np.asarray(xs) - 4) / 4, rtol=1e-6)
    np.testing.assert_allclose(lin_sqrt(xs), 2 + (np.asarray(xs) - 4) / 4, rtol=1e-6)
    lin_vec = mlgrad.linearization(lambda x: jnp.sum(x**2), jnp.array([1.0, 2.0]))
    batch = jnp.array([[[1.0, 2.0], [2.0, 2.0]]])  # shape (1, 2, 2): a batch of 2 points
    np.testing.assert_allclose(lin_vec(batch), [[5.0, 7.0]], rtol=1e-6)
    inside = jax.jit(lambda x0, x: mlgrad.linearization(jnp.sqrt, x0)(x))(4.0, 4.4)
    np.testing.assert_allclose(inside, 2.1, rtol=1e-6)


@pytest.mark.parametrize("order", [0, 1, 3, 6, 9])
def test_univariate_coefficients_of_exp_and_log1p(order):
    with jax.enable_x64(True):
        exp_t = mlgrad.taylor(jnp.exp, 0.5, order)
        log_t = mlgrad.taylor(jnp.log1p, 0.0, order)
    assert len(exp_t.coefficients) == order + 1
    for k, c in enumerate(exp_t.coefficients):
        np.testing.assert_allclose(c, math.exp(0.5) / math.factorial(k), rtol=1e-12)
    for k, c in enumerate(log_t.coefficients):
        np.testing.assert_allclose(c, 0.0 if k == 0 else (-1) ** (k + 1) / k, atol=1e-12)


def test_univariate_polynomial_converges_to_the_function():
    xs = np.linspace(-0.5, 0.5, 7)
    with jax.enable_x64(True):
        errors = [
            np.max(np.abs(mlgrad.taylor(jnp.sin, 0.0, n)(jnp.asarray(xs)) - np.sin(xs)))
            for n in (1, 3, 5, 7)
        ]
    assert all(a > 10 * b for a, b in itertools.pairwise(errors))
    assert errors[-1] < 1e-7


def test_taylor_falls_back_for_functions_jet_cannot_trace():
    # tan's Maclaurin series: x + x^3/3 + 2x^5/15 + 17x^7/315.
    with jax.enable_x64(True):
        t = mlgrad.taylor(jnp.tan, 0.0, 7)
    expected = [0, 1, 0, 1 / 3, 0, 2 / 15, 0, 17 / 315]
    np.testing.assert_allclose(np.array(t.coefficients), expected, atol=1e-12)


def test_multivariate_coefficients_are_derivative_tensors():
    # f(x) = exp(a . x): D^k f = exp(a . x0) a (x) a (x) ... (x) a.
    a = np.array([0.5, -1.0, 2.0])
    x0 = np.array([0.1, 0.2, -0.1])
    with jax.enable_x64(True):
        t = mlgrad.taylor(lambda x: jnp.exp(jnp.asarray(a) @ x), jnp.asarray(x0), 3)
    base = math.exp(a @ x0)
    np.testing.assert_allclose(t.coefficients[0], base, rtol=1e-12)
    np.testing.assert_allclose(t.coefficients[1], base * a, rtol=1e-12)
    np.testing.assert_allclose(t.coefficients[2], base * np.outer(a, a) / 2, rtol=1e-12)
    np.testing.assert_allclose(
        t.coefficients[3], base * np.einsum("i,j,k->ijk", a, a, a) / 6, rtol=1e-12
    )


@pytest.mark.slow  # long for CI; run with -m slow
def test_multivariate_polynomial_evaluation_matches_the_tensors():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(2, 3))

    def f(x):
        return jnp.sum(jnp.sin(jnp.asarray(w) @ x)) + x[0] * x[1] ** 2

    x0 = jnp.asarray(rng.normal(size=3))
    with jax.enable_x64(True):
        x0 = jnp.asarray(x0, jnp.float64)
        t = mlgrad.taylor(f, x0, 4)
        points = jnp.asarray(x0 + rng.normal(size=(5, 3)) * 0.3)
        got = t(points)
        single = t(points[0])
    for point, value in zip(np.asarray(points), np.asarray(got), strict=True):
        d = point - np.asarray(x0)
        expected = sum(_contract(np.asarray(c), d) for c in t.coefficients)
        np.testing.assert_allclose(value, expected, rtol=1e-10)
    np.testing.assert_allclose(single, got[0], rtol=1e-12)


def _contract(tensor: np.ndarray, d: np.ndarray) -> float:
    """T[d, d, ..., d]: contract every axis of a k-th derivative tensor with d."""
    while tensor.ndim:
        tensor = tensor @ d
    return float(tensor)


def test_quadratic_is_its_own_second_order_expansion():
    # The notes' x^2 + 2xy + y^2 at (1, 2): value 9, gradient (6, 6), Hessian [[2, 2], [2, 2]].
    f = lambda p: p[0] ** 2 + 2 * p[0] * p[1] + p[1] ** 2  # noqa: E731
    with jax.enable_x64(True):
        t = mlgrad.taylor(f, jnp.array([1.0, 2.0]), 2)
        pts = jnp.array([[0.0, 0.0], [3.0, -1.0], [-2.5, 4.0]])
        np.testing.assert_allclose(
            t(pts), [(x + y) ** 2 for x, y in np.asarray(pts)], rtol=1e-12, atol=1e-12
        )
    np.testing.assert_allclose(t.coefficients[0], 9.0)
    np.testing.assert_allclose(t.coefficients[1], [6.0, 6.0])
    np.testing.assert_allclose(t.coefficients[2], [[1.0, 1.0], [1.0, 1.0]])


def test_taylor_under_jit_and_vmap():
    with jax.enable_x64(True):
        coeffs = jax.jit(lambda x0: mlgrad.taylor(jnp.exp, x0, 4).coefficients)(0.0)
        np.testing.assert_allclose(coeffs, [1 / math.factorial(k) for k in range(5)], rtol=1e-12)
        at = jax.vmap(lambda x0: mlgrad.taylor(jnp.sin, x0, 3)(x0 + 0.1))(jnp.array([0.0, 1.0]))
        np.testing.assert_allclose(at, np.sin([0.1, 1.1]), atol=1e-5)


def test_bad_orders_and_shapes():
    with pytest.raises(ValueError, match="order must be an integer >= 0"):
        mlgrad.taylor(jnp.sin, 0.0, -1)
    with pytest.raises(ValueError, match="order"):
        mlgrad.taylor(jnp.sin, 0.0, 2.5)
    with pytest.raises(TypeError, match="int32"):
        mlgrad.taylor(jnp.sin, jnp.arange(3), 2)
    t = mlgrad.taylor(lambda x: jnp.sum(x**2), jnp.ones(3), 2)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        t(jnp.ones(2))
