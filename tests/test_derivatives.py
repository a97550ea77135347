"""derivative, partial_derivative, gradient, directional_derivative vs independent references."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fd_jacobian
from hypothesis import given, settings
from smooth import problems, tolerances

import mlgrad

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True)


# --- property tests over random smooth functions (float32 and float64) --------------------


@SETTINGS
@given(problems)
def test_gradient_matches_finite_differences(p):
    with jax.enable_x64(p.dtype == np.float64):
        x = jnp.asarray(p.x, p.dtype)
        expected = fd_jacobian(p.scalar_np, p.x)
        same, row, column = jax.jit(  # one compilation per example keeps this fast
            lambda x: [
                mlgrad.gradient(p.scalar_jax, layout=k)(x) for k in ("same", "row", "column")
            ]
        )(x)
        np.testing.assert_allclose(same, expected, **tolerances(p.dtype))
        assert row.shape == (1, x.size) and column.shape == (x.size, 1)
        np.testing.assert_allclose(row[0], expected, **tolerances(p.dtype))
        np.testing.assert_allclose(column[:, 0], expected, **tolerances(p.dtype))


@SETTINGS
@given(problems)
def test_directional_derivative_is_gradient_dot_v(p):
    with jax.enable_x64(p.dtype == np.float64):
        x, v = jnp.asarray(p.x, p.dtype), jnp.asarray(p.v, p.dtype)
        dv, grad = jax.jit(
            lambda x, v: (
                mlgrad.directional_derivative(p.scalar_jax, x, v),
                mlgrad.gradient(p.scalar_jax)(x),
            )
        )(x, v)
        np.testing.assert_allclose(dv, fd_jacobian(p.scalar_np, p.x) @ p.v, **tolerances(p.dtype))
        np.testing.assert_allclose(dv, grad @ v, **tolerances(p.dtype))


@SETTINGS
@given(problems)
def test_partial_derivative_is_a_column_of_the_jacobian(p):
    with jax.enable_x64(p.dtype == np.float64):
        x = jnp.asarray(p.x, p.dtype)
        expected = fd_jacobian(p.vector_np, p.x)
        partials = jax.jit(
            lambda x: [mlgrad.partial_derivative(p.vector_jax, index=i)(x) for i in range(x.size)]
        )(x)
        for i, got in enumerate(partials):
            np.testing.assert_allclose(got, expected[:, i], **tolerances(p.dtype))


# --- derivative of any order -------------------------------------------------------------

# (f, its n-th derivative as a closed form in NumPy)
CLOSED_FORMS = {
    "sin": (jnp.sin, lambda x, n: np.sin(x + n * np.pi / 2)),
    "exp2x": (lambda x: jnp.exp(2 * x), lambda x, n: 2.0**n * np.exp(2 * x)),
    "log": (jnp.log, lambda x, n: (-1) ** (n - 1) * math.factorial(n - 1) / x**n),
    "x^7": (lambda x: x**7, lambda x, n: math.perm(7, n) * x ** (7 - n)),
    "1/(1-x)": (lambda x: 1 / (1 - x), lambda x, n: math.factorial(n) / (1 - x) ** (n + 1)),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
@pytest.mark.parametrize("order", [1, 2, 3, 5, 7])
def test_derivative_any_order_against_closed_forms(name, order):
    f, closed = CLOSED_FORMS[name]
    xs = np.array([0.3, 0.55, 0.8])
    with jax.enable_x64(True):
        got = mlgrad.derivative(f, order=order)(jnp.asarray(xs))
    np.testing.assert_allclose(got, closed(xs, order), rtol=1e-9)


@pytest.mark.parametrize(
    ("f", "derivs"),
    [
        # Primitives jet has no rule for: the nested-jvp fallback. Closed forms by hand.
        (
            jnp.tan,
            lambda x: [
                1 / np.cos(x) ** 2,
                2 * np.tan(x) / np.cos(x) ** 2,
                (4 * np.sin(x) ** 2 + 2) / np.cos(x) ** 4,
            ],
        ),
        (
            jnp.arctan,
            lambda x: [1 / (1 + x**2), -2 * x / (1 + x**2) ** 2, (6 * x**2 - 2) / (1 + x**2) ** 3],
        ),
        (jnp.cbrt, lambda x: [x ** (-2 / 3) / 3, -2 / 9 * x ** (-5 / 3), 10 / 27 * x ** (-8 / 3)]),
        (
            jax.nn.softplus,
            lambda x: [
                1 / (1 + np.exp(-x)),
                np.exp(-x) / (1 + np.exp(-x)) ** 2,
                np.exp(-x) * (np.exp(-x) - 1) / (1 + np.exp(-x)) ** 3,
            ],
        ),
        (
            lambda x: jnp.logaddexp(x, 0.0),
            lambda x: [
                1 / (1 + np.exp(-x)),
                np.exp(-x) / (1 + np.exp(-x)) ** 2,
                np.exp(-x) * (np.exp(-x) - 1) / (1 + np.exp(-x)) ** 3,
            ],
        ),
        (lambda x: jax.nn.relu(x) ** 4, lambda x: [4 * x**3, 12 * x**2, 24 * x]),
    ],
    ids=["tan", "arctan", "cbrt", "softplus", "logaddexp", "relu^4"],
)
def test_derivative_falls_back_where_jet_has_no_rule(f, derivs):
    xs = np.array([0.2, 0.7, 1.1])
    with jax.enable_x64(True):
        for order, expected in enumerate(derivs(xs), start=1):
            np.testing.assert_allclose(
                mlgrad.derivative(f, order=order)(jnp.asarray(xs)), expected, rtol=1e-9
            )


def test_derivative_is_vectorised_over_points_and_keeps_output_shape():
    xs = jnp.linspace(0.0, 1.0, 6).reshape(2, 3)
    got = mlgrad.derivative(lambda t: jnp.array([jnp.sin(t), t**2]))(xs)
    assert got.shape == (2, 3, 2)
    np.testing.assert_allclose(got[..., 0], np.cos(np.asarray(xs)), rtol=1e-6)
    np.testing.assert_allclose(got[..., 1], 2 * np.asarray(xs), rtol=1e-6)


# --- the notes' own small examples --------------------------------------------------------


def test_partial_derivative_of_scalar_arguments():
    f = lambda x, g: 2 * x + 3 * g  # noqa: E731
    assert mlgrad.partial_derivative(f, 0)(1.5, -2.0) == 2.0
    assert mlgrad.partial_derivative(f, 1)(1.5, -2.0) == 3.0


def test_partial_derivative_with_a_matrix_index():
    a = jnp.arange(6.0).reshape(2, 3)
    f = lambda m: jnp.sum(m**2)  # noqa: E731
    assert mlgrad.partial_derivative(f, index=(1, 2))(a) == 2 * 5.0


def test_gradient_on_pytrees_and_several_arguments():
    params = {"w": jnp.array([1.0, -2.0]), "b": 0.5}
    x = jnp.array([3.0, 4.0])

    def loss(p, x):
        return (p["w"] @ x + p["b"]) ** 2

    r = 1.0 * 3 - 2 * 4 + 0.5
    g = mlgrad.gradient(loss)(params, x)
    np.testing.assert_allclose(g["w"], 2 * r * np.array([3.0, 4.0]))
    np.testing.assert_allclose(g["b"], 2 * r)
    _gp, gx = mlgrad.gradient(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(gx, 2 * r * np.array([1.0, -2.0]))
    value_grad, aux = mlgrad.gradient(lambda p, x: (loss(p, x), "aux"), has_aux=True)(params, x)
    assert aux == "aux"
    np.testing.assert_allclose(value_grad["w"], g["w"])


def test_python_ints_are_promoted():
    assert mlgrad.gradient(lambda x: x**3)(2) == 12.0
    assert mlgrad.derivative(lambda x: x**3, order=2)(2) == 12.0
    assert mlgrad.partial_derivative(lambda x, y: x * y, 1)(3, 2) == 3.0


# --- composability ------------------------------------------------------------------------


def test_operators_work_under_jit_and_vmap():
    f = lambda x: jnp.sum(jnp.sin(x) * x)  # noqa: E731
    xs = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    v = jnp.array([1.0, 0.5, -1.0])
    expected_grad = np.sin(np.asarray(xs)) + np.asarray(xs) * np.cos(np.asarray(xs))
    for transform in (jax.jit, lambda g: g):
        np.testing.assert_allclose(
            jax.vmap(transform(mlgrad.gradient(f)))(xs), expected_grad, rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            jax.vmap(transform(lambda x: mlgrad.directional_derivative(f, x, v)))(xs),
            expected_grad @ np.asarray(v),
            rtol=1e-5,
            atol=1e-6,
        )
        np.testing.assert_allclose(
            jax.vmap(transform(mlgrad.partial_derivative(f, index=2)))(xs),
            expected_grad[:, 2],
            rtol=1e-5,
            atol=1e-6,
        )
    third = jax.jit(jax.vmap(mlgrad.derivative(jnp.tan, order=3)))(jnp.array([0.1, 0.4]))
    x = np.array([0.1, 0.4])
    np.testing.assert_allclose(third, (4 * np.sin(x) ** 2 + 2) / np.cos(x) ** 4, rtol=1e-5)
    assert mlgrad.gradient(f, layout="row")(xs[0]).shape == (1, 3)
    assert jax.jit(mlgrad.gradient(f, layout="column"))(xs[0]).shape == (3, 1)


def test_gradients_nest():
    # d/dx of the gradient is the Hessian: mlgrad operators compose with each other and JAX.
    f = lambda x: jnp.sum(x**3)  # noqa: E731
    x = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(jax.jacfwd(mlgrad.gradient(f))(x), np.diag(6 * np.asarray(x)))


# --- misuse -------------------------------------------------------------------------------


def test_gradient_of_a_vector_function_says_use_jacobian():
    with pytest.raises(TypeError, match=r"shape \(3,\).*jacobian"):
        mlgrad.gradient(jnp.sin)(jnp.ones(3))


def test_integer_arrays_are_rejected():
    with pytest.raises(TypeError, match=r"int32.*floating"):
        mlgrad.gradient(jnp.sum)(jnp.arange(3))
    with pytest.raises(TypeError, match="int"):
        mlgrad.derivative(jnp.sin)(np.arange(3))
    with pytest.raises(TypeError, match="int"):
        mlgrad.directional_derivative(jnp.sum, jnp.arange(3), jnp.ones(3))


def test_argnum_and_index_out_of_range():
    with pytest.raises(ValueError, match="argnums=2 is out of range"):
        mlgrad.gradient(jnp.sum, argnums=2)(jnp.ones(3))
    with pytest.raises(ValueError, match="index=5"):
        mlgrad.partial_derivative(jnp.sum, index=5)(jnp.ones(3))
    with pytest.raises(ValueError, match="index=0"):
        mlgrad.partial_derivative(jnp.sum)(jnp.ones(3))
    with pytest.raises(ValueError, match="out of range"):
        mlgrad.partial_derivative(lambda x, y: x * y, 2)(1.0, 2.0)


def test_direction_shape_must_match():
    with pytest.raises(ValueError, match=r"same shape as x.*\(3,\).*\(2,\)"):
        mlgrad.directional_derivative(jnp.sum, jnp.ones(3), jnp.ones(2))


def test_bad_layout_and_order():
    with pytest.raises(ValueError, match="layout"):
        mlgrad.gradient(jnp.sum, layout="rows")
    with pytest.raises(ValueError, match="pytree"):
        mlgrad.gradient(lambda p: p["a"] + p["b"], layout="row")({"a": 1.0, "b": 2.0})
    with pytest.raises(ValueError, match="order"):
        mlgrad.derivative(jnp.sin, order=0)
