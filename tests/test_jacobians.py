"""jacobian, value_and_jacobian, hessian, hvp, chain_rule vs independent references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fd_hessian, fd_jacobian
from hypothesis import given, settings
from smooth import problems, tolerances

import mlgrad

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True)


@SETTINGS
@given(problems)
def test_jacobian_all_modes_match_finite_differences(p):
    with jax.enable_x64(p.dtype == np.float64):
        x = jnp.asarray(p.x, p.dtype)
        expected = fd_jacobian(p.vector_np, p.x)

        @jax.jit  # one compilation per example keeps the property tests fast
        def all_modes(x):
            modes = [
                mlgrad.jacobian(p.vector_jax, mode=m)(x) for m in ("auto", "forward", "reverse")
            ]
            return modes, mlgrad.value_and_jacobian(p.vector_jax)(x)

        modes, (value, jac) = all_modes(x)
        for got in modes:
            np.testing.assert_allclose(got, expected, **tolerances(p.dtype))
        np.testing.assert_allclose(value, p.vector_np(p.x), **tolerances(p.dtype))
        np.testing.assert_allclose(jac, expected, **tolerances(p.dtype))


@SETTINGS
@given(problems)
def test_hessian_matches_finite_differences_and_is_symmetric(p):
    with jax.enable_x64(p.dtype == np.float64):
        x, v = jnp.asarray(p.x, p.dtype), jnp.asarray(p.v, p.dtype)
        hess, hv = jax.jit(
            lambda x, v: (mlgrad.hessian(p.scalar_jax)(x), mlgrad.hvp(p.scalar_jax, x, v))
        )(x, v)
        # Second differences of a float64 function: error ~1e-7.
        tol = {"rtol": 1e-5, "atol": 1e-5} if p.dtype == np.float64 else tolerances(p.dtype)
        np.testing.assert_allclose(hess, fd_hessian(p.scalar_np, p.x), **tol)
        np.testing.assert_allclose(
            hess, hess.T, rtol=1e-5, atol=1e-6 if p.dtype == np.float32 else 1e-12
        )
        np.testing.assert_allclose(hv, hess @ v, **tolerances(p.dtype))


@SETTINGS
@given(problems)
def test_chain_rule_product_is_the_jacobian_of_the_composition(p):
    with jax.enable_x64(p.dtype == np.float64):
        x = jnp.asarray(p.x, p.dtype)
        outer = lambda y: jnp.sum(jnp.sin(y) * y)  # noqa: E731
        composed = lambda z: outer(p.vector_jax(z))  # noqa: E731
        steps, direct = jax.jit(
            lambda x: (
                mlgrad.chain_rule(outer, p.vector_jax)(x),
                mlgrad.jacobian(composed, flatten=True)(x),
            )
        )(x)
        assert steps.jacobians[0].shape == (1, p.vector_np(p.x).size)
        assert steps.jacobians[1].shape == (p.vector_np(p.x).size, x.size)
        np.testing.assert_allclose(steps.product, direct, **tolerances(p.dtype))
        np.testing.assert_allclose(
            steps.product[0],
            fd_jacobian(lambda z: np.sum(np.sin(p.vector_np(z)) * p.vector_np(z)), p.x),
            **tolerances(p.dtype),
        )
        np.testing.assert_allclose(steps.value, composed(x), **tolerances(p.dtype))


def test_forward_and_reverse_agree_on_wide_and_tall_functions():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(3, 20)))
    wide = lambda x: jnp.tanh(a @ x)  # noqa: E731  (20 -> 3)
    tall = lambda x: jnp.tanh(a.T @ x)  # noqa: E731  (3 -> 20)
    for f, n in ((wide, 20), (tall, 3)):
        x = jnp.asarray(rng.normal(size=n))
        fwd = mlgrad.jacobian(f, mode="forward")(x)
        rev = mlgrad.jacobian(f, mode="reverse")(x)
        np.testing.assert_allclose(fwd, rev, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mlgrad.jacobian(f)(x), fwd, rtol=1e-5, atol=1e-6)


def test_auto_mode_picks_forward_when_inputs_are_fewer(monkeypatch):
    calls = []
    for name in ("jacfwd", "jacrev"):
        original = getattr(jax, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(jax, name, spy)
    mlgrad.jacobian(lambda x: jnp.concatenate([x, x]))(jnp.ones(3))  # 3 -> 6
    mlgrad.jacobian(lambda x: x[:2])(jnp.ones(3))  # 3 -> 2
    mlgrad.jacobian(lambda x: x)(jnp.ones(3))  # 3 -> 3: a tie goes forward
    assert calls == ["jacfwd", "jacrev", "jacfwd"]


def test_matrix_by_matrix_gradient_shapes_and_flattening():
    # dK/dB for K = B^T B: (n x n) x (m x n) as a 4-D tensor, (n*n) x (m*n) flattened.
    rng = np.random.default_rng(1)
    b = rng.normal(size=(3, 2))
    tensor = mlgrad.jacobian(lambda b: b.T @ b)(jnp.asarray(b))
    assert tensor.shape == (2, 2, 3, 2)
    expected = fd_jacobian(lambda b: b.T @ b, b)
    np.testing.assert_allclose(tensor, expected, rtol=1e-4, atol=1e-5)
    flat = mlgrad.jacobian(lambda b: b.T @ b, flatten=True)(jnp.asarray(b))
    assert flat.shape == (4, 6)
    np.testing.assert_allclose(flat, expected.reshape(4, 6), rtol=1e-4, atol=1e-5)
    # The 2x2 function of a 2x3 matrix: a 4 x 6 matrix.
    c = jnp.asarray(rng.normal(size=(2, 2)))
    assert mlgrad.jacobian(lambda m: c @ m @ m.T, flatten=True)(jnp.ones((2, 3))).shape == (4, 6)


def test_jacobian_of_pytrees_and_several_arguments():
    def f(params, x):
        return {"out": params["w"] @ x + params["b"], "norm": jnp.sum(x**2)}

    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(2)}
    x = jnp.array([1.0, 2.0, 3.0])
    jac = mlgrad.jacobian(f)(params, x)
    assert jac["out"]["w"].shape == (2, 2, 3)
    np.testing.assert_allclose(jac["out"]["b"], np.eye(2))
    jx = mlgrad.jacobian(f, argnums=1)(params, x)
    np.testing.assert_allclose(jx["out"], params["w"])
    np.testing.assert_allclose(jx["norm"], 2 * x)
    flat = mlgrad.jacobian(f, argnums=(0, 1), flatten=True)(params, x)
    assert flat.shape == (3, 6 + 2 + 3)
    (value, aux), jac2 = mlgrad.value_and_jacobian(
        lambda x: (jnp.sin(x), jnp.sum(x)), has_aux=True
    )(x)
    assert aux == 6.0
    np.testing.assert_allclose(value, np.sin(np.asarray(x)), rtol=1e-6)
    np.testing.assert_allclose(jac2, np.diag(np.cos(np.asarray(x))), rtol=1e-6)


def test_hessian_of_several_arguments_and_flattened():
    f = lambda x, y: jnp.sum(x**2 * y[0]) + y[1] ** 3  # noqa: E731
    x, y = jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0])
    h = mlgrad.hessian(f, flatten=True, argnums=(0, 1))(x, y)
    expected = fd_hessian(
        lambda z: np.sum(z[:2] ** 2 * z[2]) + z[3] ** 3, np.array([1.0, 2.0, 3.0, 4.0])
    )
    np.testing.assert_allclose(h, expected, rtol=1e-3, atol=1e-3)


def test_operators_work_under_jit_and_vmap():
    f = lambda x: jnp.sum(jnp.sin(x) ** 2)  # noqa: E731
    xs = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2)
    v = jnp.array([1.0, -1.0])
    for transform in (jax.jit, lambda g: g):
        hess = jax.vmap(transform(mlgrad.hessian(f)))(xs)
        expected = np.stack([np.diag(2 * np.cos(2 * np.asarray(x))) for x in xs])
        np.testing.assert_allclose(hess, expected, rtol=1e-5, atol=1e-6)
        hv = jax.vmap(transform(lambda x: mlgrad.hvp(f, x, v)))(xs)
        np.testing.assert_allclose(hv, expected @ np.asarray(v), rtol=1e-5, atol=1e-6)
        jac = jax.vmap(transform(mlgrad.jacobian(jnp.sin)))(xs)
        np.testing.assert_allclose(jac, [np.diag(np.cos(np.asarray(x))) for x in xs], rtol=1e-6)
        prod = jax.vmap(transform(lambda x: mlgrad.chain_rule(f, jnp.tanh)(x).product))(xs)
        assert prod.shape == (4, 1, 2)


def test_misuse_gets_clear_errors():
    # A vector-valued f has a Hessian per output (tests/test_wrappers.py); integers have none.
    with pytest.raises(TypeError, match=r"hessian.*dtype int32.*floating"):
        mlgrad.hessian(lambda x: jnp.floor(x).astype(jnp.int32))(jnp.ones(3))
    with pytest.raises(ValueError, match="mode"):
        mlgrad.jacobian(jnp.sin, mode="sideways")
    with pytest.raises(ValueError, match="out of range"):
        mlgrad.jacobian(jnp.sin, argnums=1)(jnp.ones(3))
    with pytest.raises(TypeError, match="int32"):
        mlgrad.jacobian(jnp.sin)(jnp.arange(3))
    with pytest.raises(ValueError, match=r"same shape as x"):
        mlgrad.hvp(jnp.sum, jnp.ones(3), jnp.ones(2))
    with pytest.raises(TypeError, match=r"hvp.*scalar-output"):
        mlgrad.hvp(jnp.sin, jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match="at least one"):
        mlgrad.chain_rule()
    with pytest.raises(TypeError, match="not a function"):
        mlgrad.chain_rule(jnp.sin, 3.0)
