"""Every worked example of the five lecture notes, against the mathematically correct answer.

Each reference value is a closed form written here by hand in NumPy (float64) from the notes'
derivation, or a hand-checked number; where a printed answer in the notes is wrong (an
erratum), the test asserts the correct value and documents the printed one. Nothing is copied
from mlgrad's output. Most tests run in float32 and float64 (``jax.enable_x64``) at several
points; derivatives are evaluated under ``jax.jit`` (one compilation per test and dtype).

The notes: 000 Vu (Stuttgart), 001 Nazarpour, 002 BITS Pilani Lecture 6, 003 Wu (IBF),
004 Lin (NTOU); ``examples/lecture_examples.py`` prints the same examples.
"""

from __future__ import annotations

import importlib.util
import io
import math
from contextlib import redirect_stdout
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlgrad

RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """The dtype of the inputs; float64 runs inside ``jax.enable_x64(True)``."""
    if request.param == "float64":
        with jax.enable_x64(True):
            yield np.dtype(np.float64)
    else:
        yield np.dtype(np.float32)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def arr(x, dtype) -> jax.Array:
    return jnp.asarray(np.asarray(x, dtype=dtype))


def assert_close(got, want, dtype, *, rtol: float | None = None, atol: float | None = None):
    """mlgrad's answer `got` has `dtype`, the expected shape, and equals the closed form."""
    got, want = np.asarray(got), np.asarray(want, dtype=np.float64)
    assert got.dtype == dtype, f"got dtype {got.dtype}, expected {dtype}"
    assert got.shape == want.shape, f"got shape {got.shape}, expected {want.shape}"
    rtol = RTOL[dtype] if rtol is None else rtol
    if atol is None:
        atol = rtol * max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol)


POINTS = np.array([-2.0, -0.5, 0.7, 1.5, 3.0])


# ------------------------------------------------------------------------------------------
# Difference quotient and derivative (seeds 000, 002, 003, 004)
# ------------------------------------------------------------------------------------------


def test_derivative_of_x_squared_is_2x(dtype):
    # 000: lim ((x + h)^2 - x^2) / h = lim (2x + h) = 2x; 003: at x = 2 it is 4.
    d = jax.jit(mlgrad.derivative(lambda x: x**2))
    assert_close(d(arr(POINTS, dtype)), 2 * POINTS, dtype)
    assert_close(d(arr(2.0, dtype)), 4.0, dtype)


def test_difference_quotient_of_x_squared_is_2x_plus_h(x64):
    # 000: the secant slope of x^2 is exactly 2x + h; the central one is exactly 2x.
    x0, steps = 2.0, np.array([1.0, 0.1, 0.01, 0.001])
    forward = jax.jit(lambda h: mlgrad.difference_quotient(lambda x: x**2, x0, h))(steps)
    assert_close(forward, 2 * x0 + steps, np.dtype(np.float64), rtol=1e-11)
    central = jax.jit(
        lambda: mlgrad.difference_quotient(lambda x: x**2, x0, 0.1, scheme="central")
    )()
    assert_close(central, 2 * x0, np.dtype(np.float64), rtol=1e-13)
    numerical = jax.jit(mlgrad.numerical.derivative(lambda x: x**2))(x0)
    assert_close(numerical, 2 * x0, np.dtype(np.float64), rtol=1e-10)


def test_power_rule(dtype):
    # 002, 004: d/dx x^n = n x^(n-1), from the binomial expansion.
    got = jax.jit(lambda x: [mlgrad.derivative(lambda t, n=n: t**n)(x) for n in range(1, 6)])(
        arr(POINTS, dtype)
    )
    for n in range(1, 6):
        assert_close(got[n - 1], n * POINTS ** (n - 1), dtype)


def test_sum_product_and_quotient_rules(dtype):
    xs = arr(POINTS, dtype)
    # 000: d/dx 2x = d/dx (x + x) = 1 + 1 = 2
    assert_close(jax.jit(mlgrad.derivative(lambda x: x + x))(xs), np.full(5, 2.0), dtype)
    # 000: d/dx (x . x) = x + x = 2x
    assert_close(jax.jit(mlgrad.derivative(lambda x: x * x))(xs), 2 * POINTS, dtype)
    # 000: d/dx x^2 / (2x) = (2x . 2x - x^2 . 2) / (2x)^2 = 1/2  (x != 0)
    assert_close(jax.jit(mlgrad.derivative(lambda x: x**2 / (2 * x)))(xs), np.full(5, 0.5), dtype)


def test_chain_rule_one_variable(dtype):
    xs = arr(POINTS, dtype)
    # 000: d/dx (2 + x^2)^2 = 2(2 + x^2) . 2x = 8x + 4x^3
    got = jax.jit(mlgrad.derivative(lambda x: (2 + x**2) ** 2))(xs)
    assert_close(got, 8 * POINTS + 4 * POINTS**3, dtype)
    # 002, 003, 004: d/dx (2x + 1)^4 = 4(2x + 1)^3 . 2 = 8(2x + 1)^3
    got = jax.jit(mlgrad.derivative(lambda x: (2 * x + 1) ** 4))(xs)
    assert_close(got, 8 * (2 * POINTS + 1) ** 3, dtype)
    # the stages: g(f) = f^4, f(x) = 2x + 1: g'(f) = 4f^3, f'(x) = 2
    steps = jax.jit(jax.vmap(mlgrad.chain_rule(lambda f: f**4, lambda t: 2 * t + 1)))(xs)
    assert_close(steps.jacobians[0], 4 * (2 * POINTS + 1)[:, None, None] ** 3, dtype)
    assert_close(steps.jacobians[1], np.full((5, 1, 1), 2.0), dtype)
    assert_close(steps.product, 8 * (2 * POINTS + 1)[:, None, None] ** 3, dtype)


# (function, closed-form derivative in NumPy, points) from the tables of seeds 000 and 003.
COMMON_DERIVATIVES = {
    "constant": (lambda x: 5.0 + 0 * x, lambda x: 0 * x, [0.3, 0.7]),
    "multiple": (lambda x: 3 * jnp.sin(x), lambda x: 3 * np.cos(x), [0.3, 0.7]),
    "x^3": (lambda x: x**3, lambda x: 3 * x**2, [0.3, 0.7, -1.2]),
    "x^-3": (lambda x: x ** (-3), lambda x: -3 / x**4, [0.3, 0.7, -1.2]),
    "exp": (jnp.exp, np.exp, [0.3, 0.7, -1.2]),
    "3^x": (lambda x: 3.0**x, lambda x: 3.0**x * np.log(3.0), [0.3, 0.7, -1.2]),
    "ln": (jnp.log, lambda x: 1 / x, [0.3, 0.7, 2.5]),
    "ln|x|": (lambda x: jnp.log(jnp.abs(x)), lambda x: 1 / x, [-0.3, -0.7, 2.5]),
    "sin": (jnp.sin, np.cos, [0.3, 0.7, -1.2]),
    "cos": (jnp.cos, lambda x: -np.sin(x), [0.3, 0.7, -1.2]),
    "tan": (jnp.tan, lambda x: 1 / np.cos(x) ** 2, [0.3, 0.7, -1.2]),
    "cot": (lambda x: 1 / jnp.tan(x), lambda x: -1 / np.sin(x) ** 2, [0.3, 0.7, -1.2]),
    "sec": (lambda x: 1 / jnp.cos(x), lambda x: np.tan(x) / np.cos(x), [0.3, 0.7, -1.2]),
    "csc": (lambda x: 1 / jnp.sin(x), lambda x: -1 / (np.sin(x) * np.tan(x)), [0.3, 0.7]),
    "arcsin": (jnp.arcsin, lambda x: 1 / np.sqrt(1 - x**2), [0.3, 0.7, -0.5]),
    "arctan": (jnp.arctan, lambda x: 1 / (1 + x**2), [0.3, 0.7, -1.2]),
}


def test_tables_of_common_derivatives(dtype):
    got = jax.jit(
        lambda: {
            name: mlgrad.derivative(f)(arr(points, dtype))
            for name, (f, _, points) in COMMON_DERIVATIVES.items()
        }
    )()
    for name, (_, df, points) in COMMON_DERIVATIVES.items():
        try:
            assert_close(got[name], df(np.asarray(points)), dtype)
        except AssertionError as err:
            raise AssertionError(f"d/dx {name}: {err}") from None


# ------------------------------------------------------------------------------------------
# Partial derivatives and gradients (seeds 000, 001, 002, 003, 004)
# ------------------------------------------------------------------------------------------

PAIRS = np.array([[1.0, 2.0], [1.5, -2.0], [-0.7, 0.3], [2.0, -0.5]])
TRIPLES = np.array([[1.0, 2.0, 0.5], [-1.0, 0.5, 2.0], [0.3, -1.2, -0.4]])


def test_partials_of_2x_plus_3g(dtype):
    # 000: f(x, g) = 2x + 3g: df/dx = 2, df/dg = 3, whatever the point.
    def f(x, g):
        return 2 * x + 3 * g

    x, g = arr(PAIRS[:, 0], dtype), arr(PAIRS[:, 1], dtype)
    assert_close(jax.jit(jax.vmap(mlgrad.partial_derivative(f, 0)))(x, g), np.full(4, 2.0), dtype)
    assert_close(jax.jit(jax.vmap(mlgrad.partial_derivative(f, 1)))(x, g), np.full(4, 3.0), dtype)


def test_partials_of_x2_minus_y2_are_directional_derivatives_along_the_axes(dtype):
    # 001: df/dx = 2x, df/dy = -2y; a partial derivative is D_v f along a coordinate axis.
    def f(p):
        return p[0] ** 2 - p[1] ** 2

    ex, ey = arr([1.0, 0.0], dtype), arr([0.0, 1.0], dtype)
    got = jax.jit(
        jax.vmap(
            lambda p: (
                mlgrad.partial_derivative(f, index=0)(p),
                mlgrad.partial_derivative(f, index=1)(p),
                mlgrad.directional_derivative(f, p, ex),
                mlgrad.directional_derivative(f, p, ey),
            )
        )
    )(arr(PAIRS, dtype))
    x, y = PAIRS[:, 0], PAIRS[:, 1]
    for value, want in zip(got, (2 * x, -2 * y, 2 * x, -2 * y), strict=True):
        assert_close(value, want, dtype)


def test_partials_of_x_plus_2y_minus_3z_squared_erratum(dtype):
    # 001: d/dx = 2s, d/dy = 2s . 2, d/dz = 2s . (-3) with s = x + 2y - 3z.
    # ERRATUM: the notes print d/dz = 2s . (-3z); the gradient slide has the correct -3.
    def f(v):
        return (v[0] + 2 * v[1] - 3 * v[2]) ** 2

    partials = [jax.jit(mlgrad.partial_derivative(f, index=i)) for i in range(3)]
    grad = jax.jit(mlgrad.gradient(f, layout="column"))
    for q in TRIPLES:
        s = q[0] + 2 * q[1] - 3 * q[2]
        correct = np.array([2 * s, 2 * s * 2, 2 * s * -3])
        for i in range(3):
            assert_close(partials[i](arr(q, dtype)), correct[i], dtype)
        assert_close(grad(arr(q, dtype)), correct[:, None], dtype)
        printed_dz = 2 * s * (-3 * q[2])
        assert not np.isclose(printed_dz, correct[2])  # the erratum is real at these points


def test_partials_of_x_plus_2y_cubed_squared(dtype):
    # 002 (eqs. 9, 10), 003, 004: df/dx = 2(x + 2y^3), df/dy = 2(x + 2y^3) . 6y^2 = 12y^2(x + 2y^3)
    def f(v):
        return (v[0] + 2 * v[1] ** 3) ** 2

    pts = arr(PAIRS, dtype)
    x, y = PAIRS[:, 0], PAIRS[:, 1]
    dx = jax.jit(jax.vmap(mlgrad.partial_derivative(f, index=0)))(pts)
    dy = jax.jit(jax.vmap(mlgrad.partial_derivative(f, index=1)))(pts)
    assert_close(dx, 2 * (x + 2 * y**3), dtype)
    assert_close(dy, 12 * y**2 * (x + 2 * y**3), dtype)


def test_gradient_of_x1sq_x2_plus_x1_x2cubed_row_and_column(dtype):
    # 000, 002 (eq. 13), 004: df/dx = [2 x1 x2 + x2^3, x1^2 + 3 x1 x2^2] in R^(1 x 2).
    def f(v):
        return v[0] ** 2 * v[1] + v[0] * v[1] ** 3

    x1, x2 = PAIRS[:, 0], PAIRS[:, 1]
    want = np.stack([2 * x1 * x2 + x2**3, x1**2 + 3 * x1 * x2**2], axis=1)  # (points, 2)
    row, column, same = jax.jit(
        jax.vmap(
            lambda p: (
                mlgrad.gradient(f, layout="row")(p),
                mlgrad.gradient(f, layout="column")(p),
                mlgrad.gradient(f)(p),
            )
        )
    )(arr(PAIRS, dtype))
    assert_close(row, want[:, None, :], dtype)
    assert_close(column, want[:, :, None], dtype)
    assert_close(same, want, dtype)
    # at (1, 2): [2 . 2 + 8, 1 + 12] = [12, 13]
    assert PAIRS[0].tolist() == [1.0, 2.0]
    assert_close(row[0], [[12.0, 13.0]], dtype)


def test_gradient_of_seed_003_variant_as_a_column(dtype):
    # 003 asks for x1^2 x2 + x1 x2^2 (x2^2, not x2^3) as a column: [2x1x2 + x2^2, x1^2 + 2x1x2]^T
    def f(v):
        return v[0] ** 2 * v[1] + v[0] * v[1] ** 2

    got = jax.jit(jax.vmap(mlgrad.gradient(f, layout="column")))(arr(PAIRS, dtype))
    x1, x2 = PAIRS[:, 0], PAIRS[:, 1]
    want = np.stack([2 * x1 * x2 + x2**2, x1**2 + 2 * x1 * x2], axis=1)[:, :, None]
    assert_close(got, want, dtype)


def test_loss_gradient_of_the_motivating_line_fit(dtype):
    # 000: L(a, b) = 1/N sum_i (a x_i + b - y_i)^2; dL/da = 2/N sum r_i x_i, dL/db = 2/N sum r_i
    xs, ys = np.array([10.0, 15.0, 20.0, 25.0]), np.array([2.0, 3.0, 4.5, 5.0])
    xj, yj = arr(xs, dtype), arr(ys, dtype)

    def loss(p):
        return jnp.mean((p[0] * xj + p[1] - yj) ** 2)

    for a, b in [(0.2, 0.1), (-0.1, 1.0), (0.25, -0.5)]:
        r = a * xs + b - ys
        want = [2 * np.mean(r * xs), 2 * np.mean(r)]
        assert_close(jax.jit(mlgrad.gradient(loss))(arr([a, b], dtype)), want, dtype, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Directional derivative (seed 001)
# ------------------------------------------------------------------------------------------


def test_directional_derivative_of_x2y2_at_2_0_is_0_not_4(dtype):
    # 001 ERRATUM: the notes print 4, from g(t) = f(2 + t, 0) = (2 + t)^2, dropping y^2 = 0.
    # Correct: g(t) = (2 + t)^2 . 0^2 = 0 for every t, so (D_v f)(2, 0) = g'(0) = 0.
    def f(p):
        return p[0] ** 2 * p[1] ** 2

    x0, v = arr([2.0, 0.0], dtype), arr([1.0, 0.0], dtype)
    assert_close(mlgrad.directional_derivative(f, x0, v), 0.0, dtype)
    assert_close(mlgrad.derivative(lambda t: f(x0 + t * v))(arr(0.0, dtype)), 0.0, dtype)
    # The notes' g(t) = (2 + t)^2 belongs to x^2 + y^2 at (2, 0), or x^2 y^2 at (2, 1): both 4.
    circle = mlgrad.directional_derivative(lambda p: p[0] ** 2 + p[1] ** 2, x0, v)
    assert_close(circle, 4.0, dtype)
    assert_close(mlgrad.directional_derivative(f, arr([2.0, 1.0], dtype), v), 4.0, dtype)


def test_directional_derivative_is_gradient_dot_v(dtype):
    # 001 theorem: (D_v f)(x) = (grad f)(x)^T v; for x^2 y^2 the gradient is (2xy^2, 2x^2 y).
    def f(p):
        return p[0] ** 2 * p[1] ** 2

    rng = np.random.default_rng(1)
    dv = jax.jit(lambda x, v: mlgrad.directional_derivative(f, x, v))
    for p in PAIRS:
        v = rng.normal(size=2)
        grad = np.array([2 * p[0] * p[1] ** 2, 2 * p[0] ** 2 * p[1]])
        assert_close(dv(arr(p, dtype), arr(v, dtype)), grad @ v, dtype)


# ------------------------------------------------------------------------------------------
# Jacobians and gradients of matrices (seeds 000, 002, 003, 004)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_jacobian_of_x1sq_plus_5_and_2x1_plus_x2(mode, dtype):
    # 000: J = [[2 x1, 0], [2, 1]] (the notes write 2x for 2x1, a minor erratum).
    def f(x):
        return jnp.array([x[0] ** 2 + 5, 2 * x[0] + x[1]])

    got = jax.jit(jax.vmap(mlgrad.jacobian(f, mode=mode)))(arr(PAIRS, dtype))
    want = np.array([[[2 * x1, 0.0], [2.0, 1.0]] for x1, _ in PAIRS])
    assert_close(got, want, dtype)


def test_shapes_of_derivatives_heads_up():
    # 004: R^D -> R: 1 x D row; R -> R^E: E x 1 column; R^D -> R^E: E x D matrix.
    x = jax.ShapeDtypeStruct((3,), jnp.float32)
    t = jax.ShapeDtypeStruct((), jnp.float32)
    row = jax.eval_shape(mlgrad.gradient(lambda v: v @ v, layout="row"), x)
    curve = mlgrad.jacobian(lambda s: jnp.array([s * jnp.cos(s), s * jnp.sin(s)]), flatten=True)
    matrix = mlgrad.jacobian(lambda v: jnp.array([v[0] * v[1], v[1] + v[2]]))
    assert row.shape == (1, 3)
    assert jax.eval_shape(curve, t).shape == (2, 1)
    assert jax.eval_shape(matrix, x).shape == (2, 3)


@pytest.mark.parametrize("shape", [(3, 4), (4, 1)])
def test_jacobian_of_Ax_is_A(shape, dtype):
    # 002, eqs. (21)-(22): f_i = sum_j A_ij x_j, so df_i/dx_j = A_ij and df/dx = A.
    rng = np.random.default_rng(2)
    a, x = rng.normal(size=shape), rng.normal(size=shape[1])
    aj = arr(a, dtype)
    assert_close(jax.jit(mlgrad.jacobian(lambda v: aj @ v))(arr(x, dtype)), a, dtype)


@pytest.mark.parametrize("shape", [(2, 3), (1, 4)])
def test_gradient_of_Ax_with_respect_to_A(shape, dtype):
    # 002: df_i/dA_iq = x_q, df_i/dA_kq = 0 for k != i: an m x (m x n) tensor.
    m, n = shape
    rng = np.random.default_rng(3)
    a, x = rng.normal(size=shape), rng.normal(size=n)
    want = np.zeros((m, m, n))
    for i in range(m):
        want[i, i, :] = x
    xj = arr(x, dtype)
    got = jax.jit(mlgrad.jacobian(lambda mat: mat @ xj))(arr(a, dtype))
    assert_close(got, want, dtype)
    flat = jax.jit(mlgrad.jacobian(lambda mat: mat @ xj, flatten=True))(arr(a, dtype))
    assert_close(flat, want.reshape(m, m * n), dtype)


def notes_case_formula_dK_dB(b: np.ndarray) -> np.ndarray:
    """002: dK_pq/dB_ij for K = B^T B, from the notes' four cases, with NumPy loops."""
    m, n = b.shape
    t = np.zeros((n, n, m, n))
    for p in range(n):
        for q in range(n):
            for i in range(m):
                for j in range(n):
                    if j == p and p != q:
                        t[p, q, i, j] = b[i, q]
                    elif j == q and p != q:
                        t[p, q, i, j] = b[i, p]
                    elif j == p and p == q:
                        t[p, q, i, j] = 2 * b[i, q]
                    # otherwise 0
    return t


@pytest.mark.parametrize("shape", [(3, 2), (2, 4)])
def test_gradient_of_BtB_with_respect_to_B(shape, dtype):
    # 002: K = B^T B in R^(n x n), B in R^(m x n): dK/dB in R^((n x n) x (m x n)).
    m, n = shape
    b = np.random.default_rng(4).normal(size=shape)
    cases = notes_case_formula_dK_dB(b)
    # An independent derivation: K_pq = sum_l B_lp B_lq => dK_pq/dB_ij = d_jp B_iq + d_jq B_ip.
    e = np.eye(n)
    assert np.allclose(cases, np.einsum("jp,iq->pqij", e, b) + np.einsum("jq,ip->pqij", e, b))
    bj = arr(b, dtype)
    got = jax.jit(mlgrad.jacobian(lambda mat: mat.T @ mat))(bj)
    assert_close(got, cases, dtype)
    flat = jax.jit(mlgrad.jacobian(lambda mat: mat.T @ mat, flatten=True))(bj)
    assert_close(flat, cases.reshape(n * n, m * n), dtype)


def seed_003_matrix(x):
    x1, x2, x3 = x[0], x[1], x[2]
    return jnp.array(
        [[x1 + x2, x1 * x2, x1 * x2 * x3], [x1, x1 + x3, x2**2], [x2, x1 * x3**2, x3**2]]
    )


def test_derivative_of_the_3x3_matrix_of_seed_003(dtype):
    # 003, section 5: dA/dx, entry [i, j, k] = dA_ij/dx_k, by hand.
    got = jax.jit(jax.vmap(mlgrad.jacobian(seed_003_matrix)))(arr(TRIPLES, dtype))
    for x, value in zip(TRIPLES, got, strict=True):
        x1, x2, x3 = x
        d1 = [[1, x2, x2 * x3], [1, 1, 0], [0, x3**2, 0]]
        d2 = [[1, x1, x1 * x3], [0, 0, 2 * x2], [1, 0, 0]]
        d3 = [[0, 0, x1 * x2], [0, 1, 0], [0, 2 * x1 * x3, 2 * x3]]
        want = np.stack([np.array(d, dtype=np.float64) for d in (d1, d2, d3)], axis=-1)
        assert_close(value, want, dtype)


def test_useful_identities_of_seed_002(x64):
    dtype = np.dtype(np.float64)  # 4-D tensors of 3 x 3 inverses: float64 keeps the check tight
    rng = np.random.default_rng(5)
    n = 3
    xm = rng.normal(size=(n, n)) + 3 * np.eye(n)
    c, bm, am = (rng.normal(size=(n, n)) for _ in range(3))
    w = rng.normal(size=(n, n))
    w = w + w.T
    av, bv, xv, sv = (rng.normal(size=n) for _ in range(4))
    X, C, B, A, W, a, b, x, s = (arr(v, dtype) for v in (xm, c, bm, am, w, av, bv, xv, sv))

    def f(mat):  # f(X) = X C X + X
        return mat @ C @ mat + mat

    got = jax.jit(
        lambda: {
            "T": mlgrad.jacobian(lambda m: f(m).T)(X),
            "tr": mlgrad.gradient(lambda m: jnp.trace(f(m)))(X),
            "det": mlgrad.gradient(lambda m: jnp.linalg.det(f(m)))(X),
            "inv": mlgrad.jacobian(lambda m: jnp.linalg.inv(f(m)))(X),
            "aXinvb": mlgrad.gradient(lambda m: a @ jnp.linalg.inv(m) @ b)(X),
            "xa": mlgrad.gradient(lambda v: v @ a, layout="row")(x),
            "ax": mlgrad.gradient(lambda v: a @ v, layout="row")(x),
            "aXb": mlgrad.gradient(lambda m: a @ m @ b)(X),
            "xB": mlgrad.jacobian(lambda v: v @ B)(x),
            "xBx": mlgrad.gradient(lambda v: v @ B @ v, layout="row")(x),
            "quad": mlgrad.gradient(lambda u: (x - A @ u) @ W @ (x - A @ u), layout="row")(s),
        }
    )()
    # df/dX_kl = E_kl C X + X C E_kl + E_kl, the tensor [i, j, k, l]
    e = np.eye(n)
    fx = xm @ c @ xm + xm
    df = (
        np.einsum("ik,lj->ijkl", e, c @ xm)
        + np.einsum("ik,jl->ijkl", xm @ c, e)
        + np.einsum("ik,jl->ijkl", e, e)
    )
    inv, xinv = np.linalg.inv(fx), np.linalg.inv(xm)
    tol = {"rtol": 1e-9}
    assert_close(got["T"], df.transpose(1, 0, 2, 3), dtype, **tol)
    assert_close(got["tr"], np.einsum("iikl->kl", df), dtype, **tol)
    det = np.linalg.det(fx) * np.einsum("ij,jikl->kl", inv, df)
    assert_close(got["det"], det, dtype, **tol)
    assert_close(got["inv"], -np.einsum("ia,abkl,bj->ijkl", inv, df, inv), dtype, **tol)
    assert_close(got["aXinvb"], -xinv.T @ np.outer(av, bv) @ xinv.T, dtype, **tol)
    assert_close(got["xa"], av[None, :], dtype, **tol)
    assert_close(got["ax"], av[None, :], dtype, **tol)
    assert_close(got["aXb"], np.outer(av, bv), dtype, **tol)
    # ERRATUM: the notes' d(x^T B)/dx = x^T (B + B^T) is the gradient of x^T B x; the
    # Jacobian of the row x^T B is B^T.
    assert_close(got["xB"], bm.T, dtype, **tol)
    assert_close(got["xBx"], (xv @ (bm + bm.T))[None, :], dtype, **tol)
    assert_close(got["quad"], (-2 * (xv - am @ sv) @ w @ am)[None, :], dtype, **tol)


# ------------------------------------------------------------------------------------------
# Second derivative and Hessian (seed 001)
# ------------------------------------------------------------------------------------------


def test_second_derivative_of_x_squared_is_2(dtype):
    got = jax.jit(mlgrad.derivative(lambda x: x**2, order=2))(arr(POINTS, dtype))
    assert_close(got, np.full(5, 2.0), dtype)


def test_hessian_of_x2_minus_y2(dtype):
    got = jax.jit(jax.vmap(mlgrad.hessian(lambda p: p[0] ** 2 - p[1] ** 2)))(arr(PAIRS, dtype))
    assert_close(got, np.broadcast_to([[2.0, 0.0], [0.0, -2.0]], (4, 2, 2)), dtype)


def test_hessian_is_symmetric_for_a_smooth_function(dtype):
    # H of x1^2 x2 + x1 x2^3 = [[2x2, 2x1 + 3x2^2], [2x1 + 3x2^2, 6x1x2]]
    got = jax.jit(jax.vmap(mlgrad.hessian(lambda v: v[0] ** 2 * v[1] + v[0] * v[1] ** 3)))(
        arr(PAIRS, dtype)
    )
    x1, x2 = PAIRS[:, 0], PAIRS[:, 1]
    mixed = 2 * x1 + 3 * x2**2
    want = np.stack([np.stack([2 * x2, mixed], -1), np.stack([mixed, 6 * x1 * x2], -1)], 1)
    assert_close(got, want, dtype)


# ------------------------------------------------------------------------------------------
# Chain rule (seeds 002, 003, 004)
# ------------------------------------------------------------------------------------------

TIMES = [-1.3, 0.7, 2.0, 3.5]


def test_df_dt_for_x1_sin_t_and_x2_cos_t(dtype):
    # 002: f = x1^2 + 2 x2, x = (sin t, cos t):
    # df/dt = 2 sin t cos t - 2 sin t = 2 sin t (cos t - 1)
    def f(x):
        return x[0] ** 2 + 2 * x[1]

    def x_of_t(t):
        return jnp.array([jnp.sin(t), jnp.cos(t)])

    steps = jax.jit(jax.vmap(mlgrad.chain_rule(f, x_of_t)))(arr(TIMES, dtype))
    t = np.asarray(TIMES)
    assert_close(steps.jacobians[0], np.stack([2 * np.sin(t), np.full(4, 2.0)], 1)[:, None], dtype)
    assert_close(steps.jacobians[1], np.stack([np.cos(t), -np.sin(t)], 1)[:, :, None], dtype)
    assert_close(steps.product, (2 * np.sin(t) * (np.cos(t) - 1))[:, None, None], dtype)
    assert_close(steps.value, np.sin(t) ** 2 + 2 * np.cos(t), dtype)


def test_dh_dt_for_exp_x1_x2sq_with_x_t_cos_t_t_sin_t(dtype):
    # 002, 003: dh/dt = exp(x1 x2^2) (x2^2 (cos t - t sin t) + 2 x1 x2 (sin t + t cos t))
    def f(x):
        return jnp.exp(x[0] * x[1] ** 2)

    def g(t):
        return jnp.array([t * jnp.cos(t), t * jnp.sin(t)])

    t = np.array([-1.1, 0.4, 0.7, 1.2])
    x1, x2 = t * np.cos(t), t * np.sin(t)
    e = np.exp(x1 * x2**2)
    want = e * (x2**2 * (np.cos(t) - t * np.sin(t)) + 2 * x1 * x2 * (np.sin(t) + t * np.cos(t)))
    steps = jax.jit(jax.vmap(mlgrad.chain_rule(f, g)))(arr(t, dtype))
    assert_close(steps.jacobians[0], np.stack([e * x2**2, 2 * e * x1 * x2], 1)[:, None], dtype)
    assert_close(steps.product, want[:, None, None], dtype)
    assert_close(
        jax.jit(jax.vmap(mlgrad.derivative(lambda s: f(g(s)))))(arr(t, dtype)), want, dtype
    )


def test_df_d_s_t_two_parameters(dtype):
    # 002, 003, 004 state df/d(s, t) = df/dx dx/d(s, t); with x = (s sin t, s cos t) and
    # f = x1^2 + 2 x2 = s^2 sin^2 t + 2 s cos t: [2s sin^2 t + 2 cos t, 2s^2 sin t cos t - 2s sin t]
    def f(x):
        return x[0] ** 2 + 2 * x[1]

    def x_of(st):
        return jnp.array([st[0] * jnp.sin(st[1]), st[0] * jnp.cos(st[1])])

    st = np.array([[1.5, 0.7], [-0.5, 2.0], [2.0, -1.0]])
    s, t = st[:, 0], st[:, 1]
    want = np.stack(
        [
            2 * s * np.sin(t) ** 2 + 2 * np.cos(t),
            2 * s**2 * np.sin(t) * np.cos(t) - 2 * s * np.sin(t),
        ],
        1,
    )
    steps = jax.jit(jax.vmap(mlgrad.chain_rule(f, x_of)))(arr(st, dtype))
    assert steps.jacobians[0].shape == (3, 1, 2) and steps.jacobians[1].shape == (3, 2, 2)
    assert_close(steps.product, want[:, None, :], dtype)


# ------------------------------------------------------------------------------------------
# Gradient identities (seed 001)
# ------------------------------------------------------------------------------------------


def sigmoid_unit(w, b, x):
    return 1 / (1 + jnp.exp(-(w @ x + b)))


@jax.jit
def identity_gradients(a, b, am, w, x, bias, y):
    return (
        mlgrad.gradient(lambda v: b @ v)(a),
        mlgrad.gradient(lambda v: b @ am @ v)(a),
        mlgrad.gradient(lambda v: jnp.sum(v**2))(a),
        mlgrad.gradient(lambda v: (v @ x + bias - y) ** 2)(w),
        mlgrad.gradient(sigmoid_unit)(w, bias, x),
        mlgrad.partial_derivative(sigmoid_unit, 1)(w, bias, x),
    )


def test_gradient_identities_of_seed_001(dtype):
    rng = np.random.default_rng(6)
    for _ in range(3):
        a, b, w, x = (rng.normal(size=4) for _ in range(4))
        am = rng.normal(size=(4, 4))
        bias, y = rng.normal(), rng.normal()
        got = identity_gradients(*(arr(v, dtype) for v in (a, b, am, w, x, bias, y)))
        sig = 1 / (1 + np.exp(-(w @ x + bias)))
        assert_close(got[0], b, dtype)  # grad b^T a = b
        assert_close(got[1], am.T @ b, dtype)  # grad b^T A a = A^T b
        assert_close(got[2], 2 * a, dtype)  # grad ||a||^2 = 2a
        assert_close(got[3], 2 * (w @ x + bias - y) * x, dtype)  # 2(w^T x + b - y) x
        assert_close(got[4], sig * (1 - sig) * x, dtype)  # f(1 - f) x
        assert_close(got[5], sig * (1 - sig), dtype)  # df/db = f(1 - f)


# ------------------------------------------------------------------------------------------
# Backpropagation with intermediate variables (seed 003)
# ------------------------------------------------------------------------------------------


def backprop_example(x):
    return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))


@pytest.mark.parametrize("x", [0.5, -1.2, 2.0])
def test_backprop_table_of_sqrt_plus_cos(x, dtype):
    table = mlgrad.backprop_table(backprop_example, arr(x, dtype))
    assert [row.name for row in table.rows] == list("abcdef")
    assert table.formulas == (
        "a = x^2",
        "b = exp(a)",
        "c = a + b",
        "d = sqrt(c)",
        "e = cos(c)",
        "f = d + e",
    )
    # forward pass and the notes' local partials (left column), in NumPy
    a = x**2
    b = np.exp(a)
    c = a + b
    d, e = np.sqrt(c), np.cos(c)
    values = {"a": a, "b": b, "c": c, "d": d, "e": e, "f": d + e}
    for name, value in values.items():
        assert_close(table[name].value, value, dtype)
    local = {
        ("a", "x"): 2 * x,
        ("b", "a"): np.exp(a),
        ("c", "a"): 1.0,
        ("c", "b"): 1.0,
        ("d", "c"): 1 / (2 * np.sqrt(c)),
        ("e", "c"): -np.sin(c),
        ("f", "d"): 1.0,
        ("f", "e"): 1.0,  # ERRATUM: the notes print "df/dd = 1 = df/dc"; it is df/de
    }
    for (var, wrt), value in local.items():
        assert_close(table[var].partials[wrt], value, dtype)
    assert set(table["f"].partials) == {"d", "e"}
    # the notes' backward equations (right column), in NumPy
    df_dd = df_de = 1.0
    df_dc = df_dd / (2 * np.sqrt(c)) + df_de * -np.sin(c)
    df_db = df_dc * 1.0
    df_da = df_db * np.exp(a) + df_dc * 1.0
    df_dx = df_da * 2 * x
    adjoints = {"f": 1.0, "e": df_de, "d": df_dd, "c": df_dc, "b": df_db, "a": df_da, "x": df_dx}
    for name, value in adjoints.items():
        assert_close(table[name].adjoint, value, dtype)
    # the input adjoint against the closed-form derivative
    closed = 2 * x * (1 + np.exp(x**2)) * (1 / (2 * np.sqrt(c)) - np.sin(c))
    assert_close(table.grads[0], closed, dtype)
    assert abs(df_dc - 1.0) > 0.1  # the printed "df/dc = 1" is not even the adjoint


# ------------------------------------------------------------------------------------------
# Linearization and Taylor series (seeds 003, 004)
# ------------------------------------------------------------------------------------------


def test_linearization_of_sqrt_at_4(x64):
    # 003: y = sqrt(a) + (x - a) / (2 sqrt(a)) = 2 + (x - 4)/4; at 4.001: 2.00025.
    f64 = np.dtype(np.float64)
    lin = mlgrad.linearization(jnp.sqrt, 4.0)
    y = lin(4.001)
    assert_close(y, 2.00025, f64, rtol=1e-12)
    true = math.sqrt(4.001)  # = 2.0002499843789...
    assert abs(true - 2.00024998) < 5e-9  # the notes' "close to 2.00024998"
    assert abs(float(y) - true) / true < 1e-8  # "less than one millionth of a percent"
    xs = np.array([3.5, 3.99, 4.0, 4.2, 5.0])
    assert_close(jax.jit(jax.vmap(lin))(xs), 2 + (xs - 4) / 4, f64, rtol=1e-13)


def test_linearization_of_a_vector_function(dtype):
    # 003: f(x) ~ f(x0) + (grad f)(x0)(x - x0), here f = [x1^2 + 5, 2 x1 + x2] at x0 = (3, 1).
    def f(v):
        return jnp.array([v[0] ** 2 + 5, 2 * v[0] + v[1]])

    x0 = np.array([3.0, 1.0])
    jac = np.array([[2 * x0[0], 0.0], [2.0, 1.0]])
    fx0 = np.array([x0[0] ** 2 + 5, 2 * x0[0] + x0[1]])
    pts = x0 + np.array([[0.01, -0.02], [0.5, 0.5], [-1.0, 2.0]])
    got = jax.jit(jax.vmap(lambda p: mlgrad.linearization(f, arr(x0, dtype))(p)))(arr(pts, dtype))
    assert_close(got, fx0 + (pts - x0) @ jac.T, dtype)


def test_taylor_polynomial_of_x4_at_1_is_x4(dtype):
    # 004: f' = 4x^3, f'' = 12x^2, f''' = 24x, f'''' = 24, f^(5) = f^(6) = 0;
    # T_6(x) = 1 + 4(x-1) + 6(x-1)^2 + 4(x-1)^3 + (x-1)^4 + 0 = x^4.
    def f(x):
        return x**4

    xs = np.array([-1.0, 0.5, 1.0, 2.0, 3.0])
    closed = [4 * xs**3, 12 * xs**2, 24 * xs, np.full(5, 24.0), np.zeros(5), np.zeros(5)]
    got = jax.jit(lambda p: [mlgrad.derivative(f, order=k)(p) for k in range(1, 7)])(arr(xs, dtype))
    for k in range(6):
        assert_close(got[k], closed[k], dtype, rtol=1e-4 if dtype == np.float32 else None)
    coefficients, t6 = jax.jit(
        lambda p: (mlgrad.taylor(f, 1.0, 6).coefficients, mlgrad.taylor(f, 1.0, 6)(p))
    )(arr(xs, dtype))
    assert_close(jnp.stack(coefficients), [1.0, 4.0, 6.0, 4.0, 1.0, 0.0, 0.0], dtype)
    # float32: T_6(-1) = 1 - 8 + 24 - 32 + 16 cancels, so its error is ~ 80 eps
    assert_close(t6, xs**4, dtype, rtol=1e-4 if dtype == np.float32 else None)


def test_taylor_series_of_sin_plus_cos_at_0(dtype):
    # 004: f^(k)(0) = 1, 1, -1, -1, 1, ...: coefficients (-1)^floor(k/2) / k!; T_inf = f.
    def f(x):
        return jnp.sin(x) + jnp.cos(x)

    orders, xs = (0, 4, 12), np.array([-1.0, 0.3, 1.0])
    got = jax.jit(
        lambda p: [
            (mlgrad.taylor(f, 0.0, n).coefficients, mlgrad.taylor(f, 0.0, n)(p)) for n in orders
        ]
    )(arr(xs, dtype))
    for n, (coefficients, values) in zip(orders, got, strict=True):
        want = np.array([(-1) ** (k // 2) / math.factorial(k) for k in range(n + 1)])
        atol = 1e-7 if dtype == np.float32 else None
        assert_close(jnp.stack(coefficients), want, dtype, atol=atol)
        assert_close(values, sum(want[k] * xs**k for k in range(n + 1)), dtype)
    if dtype == np.float64:  # the remainder of T_12 is at most |x|^13 / 13! ~ 1.6e-10
        np.testing.assert_allclose(np.asarray(got[-1][1]), np.sin(xs) + np.cos(xs), atol=2e-10)


def test_derivatives_of_sin_plus_cos_at_0(dtype):
    got = jax.jit(
        lambda x: [
            mlgrad.derivative(lambda t: jnp.sin(t) + jnp.cos(t), order=k)(x) for k in (1, 2, 3, 4)
        ]
    )(arr(0.0, dtype))
    for k, want in zip((1, 2, 3, 4), (1.0, -1.0, -1.0, 1.0), strict=True):
        assert_close(got[k - 1], want, dtype)


def test_taylor_expansion_of_x2_2xy_y2_at_1_2(dtype):
    # 003: f(1, 2) = 9; grad = [2x + 2y, 2x + 2y] = [6, 6]; Hessian / 2 = [[1, 1], [1, 1]];
    # higher terms vanish, so T_2 = 9 + 6(x-1) + 6(y-2) + (x-1)^2 + 2(x-1)(y-2) + (y-2)^2 = f.
    def f(v):
        return v[0] ** 2 + 2 * v[0] * v[1] + v[1] ** 2

    x0 = arr([1.0, 2.0], dtype)
    pts = np.random.default_rng(7).normal(scale=2.0, size=(6, 2))
    coefficients, t2 = jax.jit(
        lambda p: (mlgrad.taylor(f, x0, 3).coefficients, mlgrad.taylor(f, x0, 2)(p))
    )(arr(pts, dtype))
    assert_close(coefficients[0], 9.0, dtype)
    assert_close(coefficients[1], [6.0, 6.0], dtype)
    assert_close(coefficients[2], [[1.0, 1.0], [1.0, 1.0]], dtype)
    assert_close(coefficients[3], np.zeros((2, 2, 2)), dtype)
    assert_close(
        t2, (pts[:, 0] + pts[:, 1]) ** 2, dtype, rtol=1e-4 if dtype == np.float32 else None
    )


# ------------------------------------------------------------------------------------------
# The example script
# ------------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "lecture_examples.py"

SECTION_TITLES = [
    "Difference quotient and derivative",
    "Differentiation rules",
    "Partial derivatives",
    "Gradient",
    "Directional derivative",
    "Jacobian",
    "Gradients of matrices",
    "Second derivative and Hessian",
    "Chain rule",
    "Gradient identities",
    "Backpropagation with intermediate variables",
    "Linearization",
    "Taylor polynomials and series",
]

# (seed, a fragment of the printed text) for each documented erratum in the notes.
ERRATA = [
    ("000", "[[2x, 0], [2, 1]]"),
    ("000", "Σ_1^N [f(x) - y]^2"),
    ("001", "∂f/∂x = ∂f/∂y = ∂f/∂z"),
    ("001", "2(x + 2y - 3z)·(-3z)"),
    ("001", "printed 4, correct value (D_t g)(0)"),
    ("002", "Δ_x f"),
    ("002", "∂f_i/∂A_(k,:)"),
    ("002", "r_p^T r_q"),
    ("002", "printed x^T (B + B^T)"),
    ("002", "f: R -> R of two variables"),
    ("003", "Consider the function g:"),
    ("003", "printed ∂f/∂c = 1"),
    ("003", "f(x) = f(a) + f'(a)(x - a)"),
    ("003", "(x - x0)^k"),
    ("004", "∂f(x, y)/∂x"),
    ("004", "∂g/∂x (g(f(x)))"),
]


def load_examples():
    spec = importlib.util.spec_from_file_location("lecture_examples", EXAMPLES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a fresh interpreter; run with -m slow
def test_example_script_prints_every_section_and_only_documented_errata():
    examples = load_examples()
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        status = examples.main([])
    text = stdout.getvalue()
    assert status == 0
    for title in SECTION_TITLES:
        assert f"\n{title}" in text, f"section {title!r} missing"
    assert "✗" not in text and "MISMATCH" not in text
    assert "0 mismatches" in text
    erratum_lines = [line for line in text.splitlines() if "ERRATUM in the notes" in line]
    assert len(erratum_lines) == len(ERRATA), "\n".join(erratum_lines)
    for seed, fragment in ERRATA:
        assert any(f"seed {seed}" in line and fragment in line for line in erratum_lines), (
            seed,
            fragment,
        )
    assert text.count("✓") >= 140


def test_example_script_runs_one_section():
    examples = load_examples()
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        status = examples.main(["--section", "directional"])
    text = stdout.getvalue()
    assert status == 0
    assert "Directional derivative" in text and "Chain rule" not in text
    assert "✗" not in text
