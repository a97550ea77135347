"""The autodiff wrappers' JAX-style options, each against an independent reference.

Keyword arguments passed through to f, has_aux, argnums and extra arguments for hvp,
value_and_gradient, vector_jacobian_product, gnvp, holomorphic functions and Hessians of
vector-valued functions. References are closed forms or JAX's own transformations
(jax.grad / jax.hessian / jax.jvp / jax.vjp / jax.linearize), never the code under test.
Each test compiles its operators and references as one jitted program, to stay fast.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import mlgrad

EXACT = {"rtol": 1e-12, "atol": 1e-12}
CLOSE = {"rtol": 1e-10, "atol": 1e-12}  # the same number by another order of operations


def assert_trees_close(got, expected, **tol):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(expected)
    leaves = zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True)
    for g, e in leaves:
        np.testing.assert_allclose(g, e, **(tol or EXACT))


def assert_pairs_close(pairs, **tol):
    """Compares {name: (got, expected)}, naming the operator that differs."""
    for name, (got, expected) in pairs.items():
        try:
            assert_trees_close(got, expected, **tol)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


# A small two-layer network with dict parameters, its data, and its squared-error loss.
def mlp(params, x):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return hidden @ params["w2"] + params["b2"]


def squared_error(z, y):
    return 0.5 * jnp.mean((z - y) ** 2)


def mlp_loss(params, x, y):
    return squared_error(mlp(params, x), y)


def mlp_problem():
    """Parameters, a direction like them, inputs and targets (float64 under jax.enable_x64)."""
    rng = np.random.default_rng(0)
    shapes = {"w1": (3, 4), "b1": (4,), "w2": (4, 2), "b2": (2,)}
    params = {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
    v = {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
    return params, v, jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(rng.normal(size=(5, 2)))


def dense_hessian_times(f, p, v):
    """H v from the dense Hessian of f over the flattened p (jax.hessian), as a pytree."""
    flat_p, unravel = ravel_pytree(p)
    hess = jax.hessian(lambda q: f(unravel(q)))(flat_p)
    return unravel(hess @ ravel_pytree(v)[0])


def zeros(tree):
    return jax.tree_util.tree_map(jnp.zeros_like, tree)


# --- 1. keyword arguments go to f and are not differentiated ---------------------------------


def test_keyword_arguments_reach_f_in_every_operator():
    def f(x, *, scale, shift=0.0):
        return scale * jnp.sum(jnp.sin(x) * x) + shift

    def vec(x, *, scale):
        return scale * jnp.sin(x) * x[0]

    kw = {"scale": 3.0, "shift": 1.0}

    @jax.jit
    def pairs(x, v):
        fixed = functools.partial(f, **kw)
        fixed_vec = functools.partial(vec, scale=3.0)
        grad, jac, hess = jax.grad(fixed)(x), jax.jacfwd(fixed_vec)(x), jax.hessian(fixed)(x)
        taylor = mlgrad.taylor(f, x, 2, **kw)
        d2 = mlgrad.derivative(lambda t, *, a, b: a * t**3 + b, order=2)
        return {
            "gradient": (mlgrad.gradient(f)(x, **kw), grad),
            "value_and_gradient": (mlgrad.value_and_gradient(f)(x, **kw), (fixed(x), grad)),
            "partial_derivative": (mlgrad.partial_derivative(f, index=1)(x, **kw), grad[1]),
            "directional_derivative": (mlgrad.directional_derivative(f, x, v, **kw), grad @ v),
            "jacobian": (mlgrad.jacobian(vec)(x, scale=3.0), jac),
            "value_and_jacobian": (
                mlgrad.value_and_jacobian(vec)(x, scale=3.0),
                (fixed_vec(x), jac),
            ),
            "vector_jacobian_product": (
                mlgrad.vector_jacobian_product(vec, x, v, scale=3.0),
                v @ jac,
            ),
            "hessian": (mlgrad.hessian(f)(x, **kw), hess),
            "hvp": (mlgrad.hvp(f, x, v, **kw), hess @ v),
            "linearization": (mlgrad.linearization(f, x, **kw)(x + v), fixed(x) + grad @ v),
            "taylor": (taylor(x + v), fixed(x) + grad @ v + v @ hess @ v / 2),
            # d^2/dt^2 (a t^3 + b) = 6 a t, a closed form
            "derivative": (d2(x[:2], a=0.5, b=7.0), 3.0 * x[:2]),
        }

    with jax.enable_x64(True):
        assert_pairs_close(pairs(jnp.array([0.3, -1.2, 0.7]), jnp.array([1.0, 0.5, -2.0])))


def test_array_keyword_arguments_are_data_not_variables():
    # The results have x's structure only, as jax.grad's with the keyword argument closed over.
    f = lambda x, *, w: jnp.sum(w * x**2)  # noqa: E731
    x, w = jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0])
    grad, hess = jax.jit(lambda x, w: (mlgrad.gradient(f)(x, w=w), mlgrad.hessian(f)(x, w=w)))(x, w)
    np.testing.assert_allclose(grad, 2 * w * x)
    np.testing.assert_allclose(hess, np.diag(2 * w))


# --- 2. has_aux ------------------------------------------------------------------------------


def with_aux(x):
    """A scalar output and an auxiliary pytree that depends on x."""
    return jnp.sum(jnp.exp(x) * x**2), {"norm": jnp.linalg.norm(x), "tag": jnp.int32(7)}


def vector_with_aux(x):
    return jnp.sin(x) * x[0], x[1]


def test_has_aux_returns_the_result_then_aux():
    @jax.jit
    def pairs(x, v):
        value, aux = with_aux(x)
        lin, lin_aux = mlgrad.linearization(with_aux, x, has_aux=True)
        lin_value, lin_jvp, _ = jax.linearize(with_aux, x, has_aux=True)
        _, dv = jax.jvp(lambda x: with_aux(x)[0], (x,), (v,))
        _, pullback = jax.vjp(lambda x: vector_with_aux(x)[0], x)
        return {
            "hessian": (
                mlgrad.hessian(with_aux, has_aux=True)(x),
                jax.hessian(with_aux, has_aux=True)(x),
            ),
            "hvp": (
                mlgrad.hvp(with_aux, x, v, has_aux=True),
                (jax.jvp(jax.grad(lambda x: with_aux(x)[0]), (x,), (v,))[1], aux),
            ),
            "directional_derivative": (
                mlgrad.directional_derivative(with_aux, x, v, has_aux=True),
                (dv, aux),
            ),
            "linearization": (
                (lin(x + v), lin.value, lin_aux, lin.aux),
                (lin_value + lin_jvp(v), lin_value, aux, aux),
            ),
            "value_and_gradient": (
                mlgrad.value_and_gradient(with_aux, has_aux=True)(x),
                jax.value_and_grad(with_aux, has_aux=True)(x),
            ),
            "vector_jacobian_product": (
                mlgrad.vector_jacobian_product(vector_with_aux, x, v, has_aux=True),
                (pullback(v)[0], x[1]),
            ),
            "value": (value, jnp.sum(jnp.exp(x) * x**2)),
        }

    with jax.enable_x64(True):
        assert_pairs_close(pairs(jnp.array([0.2, -0.4, 1.1]), jnp.array([1.0, 2.0, -1.0])))


def test_has_aux_needs_a_pair():
    not_a_pair = lambda x: jnp.sum(x)  # noqa: E731
    x = jnp.ones(2)
    for call in (
        lambda: mlgrad.hessian(not_a_pair, has_aux=True)(x),
        lambda: mlgrad.hvp(not_a_pair, x, x, has_aux=True),
        lambda: mlgrad.directional_derivative(not_a_pair, x, x, has_aux=True),
        lambda: mlgrad.linearization(not_a_pair, x, has_aux=True),
        lambda: mlgrad.vector_jacobian_product(not_a_pair, x, 1.0, has_aux=True),
    ):
        with pytest.raises(TypeError, match=r"has_aux=True.*pair"):
            call()


# --- 3. hvp and hessian of functions of several arguments ------------------------------------


def test_hvp_of_a_loss_with_data_arguments_dict_params_and_argnums():
    @jax.jit
    def pairs(params, v, x, y):
        vx = jnp.ones_like(x)
        # One dense Hessian over (params, x) by jax.hessian gives every reference: its
        # (params, params) block times v, its (x, x) block times vx, and the whole times both.
        joint = functools.partial(dense_hessian_times, lambda px: mlp_loss(*px, y), (params, x))
        over_params = joint((v, zeros(x)))[0]
        return {
            # The spelling: extra positional arguments after v go to f.
            "hvp(loss, params, v, x, y)": (mlgrad.hvp(mlp_loss, params, v, x, y), over_params),
            "one-argument spelling": (
                mlgrad.hvp(lambda p: mlp_loss(p, x, y), params, v),
                over_params,
            ),
            "argnums=1 (the data)": (
                mlgrad.hvp(mlp_loss, params, vx, x, y, argnums=1),
                joint((zeros(params), vx))[1],
            ),
            # Negative argnums count from the end, as in JAX: -2 is the data x.
            "argnums=-2 (the data)": (
                mlgrad.hvp(mlp_loss, params, vx, x, y, argnums=-2),
                joint((zeros(params), vx))[1],
            ),
            "argnums=(0, 1)": (
                mlgrad.hvp(mlp_loss, params, (v, vx), x, y, argnums=(0, 1)),
                joint((v, vx)),
            ),
            "directional_derivative": (
                mlgrad.directional_derivative(mlp_loss, params, v, x, y),
                jax.jvp(lambda p: mlp_loss(p, x, y), (params,), (v,))[1],
            ),
        }

    with jax.enable_x64(True):
        assert_pairs_close(pairs(*mlp_problem()), **CLOSE)


def test_hessian_blocks_over_several_arguments_match_jax():
    f = lambda a, b, c: jnp.sum(a**2 * b[0]) + jnp.sin(b[1]) * c  # noqa: E731
    with jax.enable_x64(True):
        a, b, c = jnp.array([1.0, 2.0]), jnp.array([3.0, 0.5]), jnp.asarray(4.0)
        got, expected = jax.jit(
            lambda *args: (
                mlgrad.hessian(f, argnums=(0, 1))(*args),
                jax.hessian(f, argnums=(0, 1))(*args),
            )
        )(a, b, c)
        assert_trees_close(got, expected)
        # Closed form of the (a, b) block: d^2 f / da_i db_j = 2 a_i [j == 0].
        np.testing.assert_allclose(got[0][1], np.array([[2.0, 0.0], [4.0, 0.0]]))


def test_tangent_shapes_are_checked_against_the_differentiated_argument():
    loss = lambda w, x: jnp.sum((x @ w) ** 2)  # noqa: E731
    w, x = jnp.ones(3), jnp.ones((4, 3))
    with pytest.raises(ValueError, match=r"hvp: the vector v must have the same shape as x"):
        mlgrad.hvp(loss, w, jnp.ones(4), x)
    with pytest.raises(ValueError, match=r"same shape as argument 1.*\(4, 3\).*\(3,\)"):
        mlgrad.hvp(loss, w, jnp.ones(3), x, argnums=1)
    with pytest.raises(ValueError, match=r"tuple of arguments \(0, 1\).*one entry per"):
        mlgrad.hvp(loss, w, jnp.ones(3), x, argnums=(0, 1))
    with pytest.raises(ValueError, match="out of range"):
        mlgrad.hvp(loss, w, w, x, argnums=2)
    with pytest.raises(ValueError, match=r"cotangent u must have the same shape as f's output"):
        mlgrad.vector_jacobian_product(lambda w: x @ w, w, jnp.ones(3))
    with pytest.raises(TypeError, match=r"hvp: argument 1 has dtype int32"):
        mlgrad.hvp(loss, w, jnp.ones((4, 3)), jnp.ones((4, 3), int), argnums=1)


# --- 4. value_and_gradient -------------------------------------------------------------------


def test_value_and_gradient_matches_jax_value_and_grad():
    @jax.jit
    def pairs(params, v, x, y):
        f = lambda z: z[0] ** 2 * z[1] + z[0] * z[1] ** 3  # noqa: E731
        return {
            "pytree": (
                mlgrad.value_and_gradient(mlp_loss)(params, x, y),
                jax.value_and_grad(mlp_loss)(params, x, y),
            ),
            "argnums=(0, 1)": (
                mlgrad.value_and_gradient(mlp_loss, argnums=(0, 1))(params, x, y),
                jax.value_and_grad(mlp_loss, argnums=(0, 1))(params, x, y),
            ),
            # The notes' row vector: f = x0^2 x1 + x0 x1^3 at (1, 2) is 10, gradient [12, 13].
            "layout='row'": (
                mlgrad.value_and_gradient(f, layout="row")(jnp.array([1.0, 2.0])),
                (jnp.asarray(10.0), jnp.array([[12.0, 13.0]])),
            ),
        }

    with jax.enable_x64(True):
        assert_pairs_close(pairs(*mlp_problem()))
    with pytest.raises(TypeError, match=r"value_and_gradient.*scalar-output.*jacobian"):
        mlgrad.value_and_gradient(jnp.sin)(jnp.ones(2))
    with pytest.raises(ValueError, match="value_and_gradient: layout"):
        mlgrad.value_and_gradient(jnp.sum, layout="rows")


# --- 5. vector-Jacobian products -------------------------------------------------------------


def test_vector_jacobian_product_matches_jax_vjp_and_u_times_jacobian():
    def f(a, b):  # R^3 x R^{2x3} -> R^2
        return jnp.tanh(b @ a) * jnp.sum(a**2)

    matrix = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])

    @jax.jit
    def pairs(a, b, u):
        _, pullback = jax.vjp(f, a, b)
        vjp = functools.partial(mlgrad.vector_jacobian_product, f)
        return {
            "vs jax.vjp": (vjp(a, u, b), pullback(u)[0]),
            "vs u @ jax.jacrev": (vjp(a, u, b), u @ jax.jacrev(f)(a, b)),
            "argnums=(0, 1)": (vjp(a, u, b, argnums=(0, 1)), pullback(u)),
            # Many cotangents at one point: vmap over u gives the rows of U J = J.
            "vmap over u": (
                jax.vmap(lambda u: vjp(a, u, b))(jnp.eye(2)),
                jax.jacrev(f)(a, b),
            ),
            # Closed form: u^T (A x) has gradient A^T u.
            "linear map": (
                mlgrad.vector_jacobian_product(lambda x: matrix @ x, a[:2], jnp.ones(3)),
                jnp.array([9.0, 12.0]),
            ),
        }

    with jax.enable_x64(True):
        a, b = jnp.array([0.5, -1.0, 2.0]), jnp.arange(6.0).reshape(2, 3) / 6
        assert_pairs_close(pairs(a, b, jnp.array([1.5, -0.5])))


# --- 6. Gauss-Newton-vector products ---------------------------------------------------------


def dense_ggn(params, x, y):
    """G = J^T H J with J = jax.jacobian of the model and H = jax.hessian of the loss in z."""
    flat, unravel = ravel_pytree(params)
    z = mlp(params, x)
    jac = jax.jacobian(lambda q: mlp(unravel(q), x))(flat).reshape(z.size, flat.size)
    hess = jax.hessian(lambda z: squared_error(z, y))(z).reshape(z.size, z.size)
    return jac.T @ hess @ jac


def test_gnvp_equals_dense_jt_h_j_on_a_small_mlp_under_jit_and_vmap():
    ggn_v = mlgrad.gnvp(mlp, squared_error)

    @jax.jit
    def pairs(params, v, x, y):
        flat_v, unravel = ravel_pytree(v)
        ggn = dense_ggn(params, x, y)
        xs, ys = jnp.stack([x, 2 * x]), jnp.stack([y, -y])
        return {
            "G v": (ggn_v(params, v, x, y), unravel(ggn @ flat_v)),
            "vmap over v (every column of G)": (
                jax.vmap(ggn_v, in_axes=(None, 0, None, None))(
                    params, jax.vmap(unravel)(jnp.eye(flat_v.size)), x, y
                ),
                jax.vmap(unravel)(ggn.T),
            ),
            "vmap over data sets": (
                jax.vmap(ggn_v, in_axes=(None, None, 0, 0))(params, v, xs, ys),
                jax.vmap(lambda x, y: unravel(dense_ggn(params, x, y) @ flat_v))(xs, ys),
            ),
        }, (ggn, jax.hessian(lambda q: mlp_loss(unravel(q), x, y))(ravel_pytree(params)[0]))

    with jax.enable_x64(True):
        got, (ggn, hess) = pairs(*mlp_problem())
        assert_pairs_close(got, **CLOSE)
        # The GGN drops the model's curvature: for an MLP it is not the Hessian.
        assert not np.allclose(ggn, hess, rtol=1e-3, atol=1e-3)


def test_gnvp_is_the_hessian_for_a_linear_model_with_squared_loss():
    linear = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    mse = lambda z, y: jnp.mean((z - y) ** 2)  # noqa: E731
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x, y = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.normal(size=6))
        params = {"w": jnp.asarray(rng.normal(size=3)), "b": jnp.asarray(0.3)}
        v = {"w": jnp.asarray(rng.normal(size=3)), "b": jnp.asarray(-1.2)}
        got = jax.jit(mlgrad.gnvp(linear, mse))(params, v, x, y)
        # Closed form: H = (2/n) [X 1]^T [X 1] over (w, b).
        design = np.hstack([np.asarray(x), np.ones((6, 1))])
        expected = 2 / 6 * design.T @ design @ np.append(np.asarray(v["w"]), v["b"])
        np.testing.assert_allclose(got["w"], expected[:3], rtol=1e-12)
        np.testing.assert_allclose(got["b"], expected[3], rtol=1e-12)


def test_gnvp_misuse():
    ggn_v = mlgrad.gnvp(lambda w, x: x @ w, lambda z, y: (z - y) ** 2)
    with pytest.raises(TypeError, match=r"gnvp: loss_fn\(z, y\) must return a scalar.*\(2,\)"):
        ggn_v(jnp.ones(3), jnp.ones(3), jnp.ones((2, 3)), jnp.ones(2))
    ok = mlgrad.gnvp(lambda w, x: x @ w, lambda z, y: jnp.sum((z - y) ** 2))
    with pytest.raises(ValueError, match=r"gnvp: the vector v must have the same shape as params"):
        ok(jnp.ones(3), jnp.ones(2), jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(TypeError, match="not a function"):
        mlgrad.gnvp(lambda w, x: x @ w, "mse")


# --- 7. holomorphic functions ----------------------------------------------------------------


def test_holomorphic_derivatives_match_the_complex_closed_forms():
    f = lambda z: z**3 + jnp.exp(2 * z)  # noqa: E731
    g = lambda w: jnp.array([w[0] * w[1], jnp.sin(w[0]) + w[1] ** 2])  # noqa: E731  C^2 -> C^2

    @jax.jit
    def pairs(z, zs, w):
        df = 3 * z**2 + 2 * jnp.exp(2 * z)
        d2f = 6 * z + 4 * jnp.exp(2 * z)
        jac = jnp.array([[w[1], w[0]], [jnp.cos(w[0]), 2 * w[1]]])
        return {
            "gradient": (mlgrad.gradient(f, holomorphic=True)(z), df),
            "value_and_gradient": (
                mlgrad.value_and_gradient(f, holomorphic=True)(z),
                (z**3 + jnp.exp(2 * z), df),
            ),
            "derivative": (
                mlgrad.derivative(f, holomorphic=True)(zs),
                3 * zs**2 + 2 * jnp.exp(2 * zs),
            ),
            "derivative order 5 (jet)": (
                mlgrad.derivative(f, order=5, holomorphic=True)(zs),
                32 * jnp.exp(2 * zs),
            ),
            "hessian": (mlgrad.hessian(f, holomorphic=True)(z), d2f),
            "hvp": (mlgrad.hvp(f, z, 2.0 + 1j, holomorphic=True), d2f * (2 + 1j)),
            "jacobian forward": (mlgrad.jacobian(g, mode="forward", holomorphic=True)(w), jac),
            "jacobian reverse": (mlgrad.jacobian(g, mode="reverse", holomorphic=True)(w), jac),
            "value_and_jacobian": (
                mlgrad.value_and_jacobian(g, holomorphic=True)(w),
                (jnp.array([w[0] * w[1], jnp.sin(w[0]) + w[1] ** 2]), jac),
            ),
        }

    with jax.enable_x64(True):
        z, zs = jnp.asarray(0.4 - 0.7j), jnp.array([0.4 - 0.7j, -1.0 + 0.2j])
        assert_pairs_close(pairs(z, zs, jnp.array([0.3 + 1j, -2.0 + 0.5j])))


def test_holomorphic_needs_complex_points():
    with pytest.raises(TypeError, match=r"derivative.*holomorphic=True.*complex point.*float32"):
        mlgrad.derivative(jnp.sin, holomorphic=True)(1.0)
    with pytest.raises(TypeError, match="holomorphic"):
        mlgrad.gradient(jnp.sin, holomorphic=True)(1.0)


# --- 8. Hessians of vector-valued functions --------------------------------------------------


def test_hessian_of_vector_and_matrix_valued_functions():
    def f(x):  # R^2 -> R^2
        return jnp.array([x[0] ** 2 * x[1], jnp.sin(x[0]) * x[1] ** 2])

    g = lambda m: m @ m.T  # noqa: E731  R^{2x3} -> R^{2x2}
    h = lambda p: p["s"] * p["u"] ** 2  # noqa: E731  a pytree input

    @jax.jit
    def pairs(x, m, p):
        a, b = x
        unravel = ravel_pytree(p)[1]
        closed = jnp.array(
            [
                [[2 * b, 2 * a], [2 * a, 0.0]],
                [[-jnp.sin(a) * b**2, 2 * jnp.cos(a) * b], [2 * jnp.cos(a) * b, 2 * jnp.sin(a)]],
            ]
        )
        return {
            "closed form": (mlgrad.hessian(f)(x), closed),
            "jax.hessian": (mlgrad.hessian(f)(x), jax.hessian(f)(x)),
            "matrix of a matrix": (mlgrad.hessian(g)(m), jax.hessian(g)(m)),
            "flattened stack": (
                mlgrad.hessian(g, flatten=True)(m),
                jax.hessian(g)(m).reshape(4, 6, 6),
            ),
            "pytree input": (mlgrad.hessian(h)(p), jax.hessian(h)(p)),
            "pytree input, flattened": (
                mlgrad.hessian(h, flatten=True)(p),
                jax.hessian(lambda q: h(unravel(q)))(ravel_pytree(p)[0]),
            ),
            "has_aux and flatten": (
                mlgrad.hessian(lambda x: (f(x), x[0]), flatten=True, has_aux=True)(x),
                (closed, x[0]),
            ),
        }

    with jax.enable_x64(True):
        p = {"u": jnp.array([1.0, 2.0]), "s": jnp.asarray(0.5)}
        got = pairs(jnp.array([0.7, -1.3]), jnp.arange(6.0).reshape(2, 3), p)
        assert_pairs_close(got)
        assert got["closed form"][0].shape == (2, 2, 2)
        assert got["matrix of a matrix"][0].shape == (2, 2, 2, 3, 2, 3)
        assert got["pytree input, flattened"][0].shape == (2, 3, 3)


# --- docstring examples ----------------------------------------------------------------------


@pytest.mark.slow  # about 6 s of many small eager programs; run with -m slow
def test_docstring_examples_run():
    import doctest

    import mlgrad.derivatives
    import mlgrad.expansions
    import mlgrad.jacobians

    for module in (mlgrad.derivatives, mlgrad.jacobians, mlgrad.expansions):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_new_names_are_exported_lazily_and_to_type_checkers():
    import ast
    import inspect

    new = {"value_and_gradient", "vector_jacobian_product", "gnvp"}
    assert new <= set(mlgrad.__all__) and all(callable(getattr(mlgrad, n)) for n in new)
    # The TYPE_CHECKING block names every lazily exported name (what editors see).
    tree = ast.parse(inspect.getsource(mlgrad))
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n))
    seen = {a.asname or a.name for n in block.body for a in n.names}
    assert set(mlgrad._EXPORTS) <= seen
