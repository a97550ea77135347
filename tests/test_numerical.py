"""Tests of mlgrad.numerical: finite differences against closed forms and against JAX autodiff.

References are independent of the code under test: closed-form derivatives evaluated in NumPy
float64, and jax.grad / jax.jacfwd / jax.hessian.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlgrad import numerical
from mlgrad.numerical import GradientCheckError, check_grad

# --------------------------------------------------------------------------------------------
# The table of smooth functions: f, closed-form derivatives 1..4 (NumPy), points
# --------------------------------------------------------------------------------------------


def _tanh_derivative(n: int):
    def d(x):
        t = np.tanh(x)
        return [
            1 - t**2,
            -2 * t * (1 - t**2),
            (1 - t**2) * (6 * t**2 - 2),
            (1 - t**2) * (16 * t - 24 * t**3),
        ][n - 1]

    return d


TABLE = [
    ("exp", jnp.exp, [np.exp] * 4, [-1.0, 0.5, 2.0, 5.0]),
    (
        "sin",
        jnp.sin,
        [np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x), np.sin],
        [-2.0, 0.3, 1.0, 4.0],
    ),
    (
        "log1p",
        jnp.log1p,
        [
            lambda x: 1 / (1 + x),
            lambda x: -1 / (1 + x) ** 2,
            lambda x: 2 / (1 + x) ** 3,
            lambda x: -6 / (1 + x) ** 4,
        ],
        [-0.5, 0.2, 1.0, 3.0],
    ),
    (
        "1/(1+x^2)",
        lambda x: 1 / (1 + x**2),
        [
            lambda x: -2 * x / (1 + x**2) ** 2,
            lambda x: (6 * x**2 - 2) / (1 + x**2) ** 3,
            lambda x: 24 * x * (1 - x**2) / (1 + x**2) ** 4,
            lambda x: 24 * (5 * x**4 - 10 * x**2 + 1) / (1 + x**2) ** 5,
        ],
        [-1.5, 0.3, 0.7, 2.0],
    ),
    (
        "x^5",
        lambda x: x**5,
        [lambda x: 5 * x**4, lambda x: 20 * x**3, lambda x: 60 * x**2, lambda x: 120 * x],
        [-1.3, 0.4, 1.1, 2.5],
    ),
    ("tanh", jnp.tanh, [_tanh_derivative(n) for n in range(1, 5)], [-1.0, 0.2, 0.8, 1.7]),
    (
        "sqrt",
        jnp.sqrt,
        [
            lambda x: 0.5 * x**-0.5,
            lambda x: -0.25 * x**-1.5,
            lambda x: 0.375 * x**-2.5,
            lambda x: -15 / 16 * x**-3.5,
        ],
        [0.3, 1.0, 2.0, 7.0],
    ),
]
BRANCHES = [f for _, f, _, _ in TABLE]
INDEX = np.repeat(np.arange(len(TABLE)), 4)
POINTS = np.array([x for *_, xs in TABLE for x in xs])


def reference(order: int) -> np.ndarray:
    return np.array([TABLE[k][2][order - 1](x) for k, x in zip(INDEX, POINTS, strict=True)])


def table_derivatives(dtype, configs):
    """numerical.derivative of every table function at its points, for several configurations.

    One compiled program for all configurations (under jit and vmap): the function is picked
    per point with lax.switch. `configs` is a sequence of (order, kwargs); returns a list of
    NumPy results (value, error) in float64.
    """

    def one(k, x):
        f = lambda t: jax.lax.switch(k, BRANCHES, t)  # noqa: E731
        return [numerical.derivative(f, order, return_error=True, **kw)(x) for order, kw in configs]

    out = jax.jit(jax.vmap(one))(jnp.asarray(INDEX), jnp.asarray(POINTS, dtype))
    return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), out)


def relative_errors(values: np.ndarray, order: int) -> np.ndarray:
    ref = reference(order)
    return np.abs(values - ref) / np.abs(ref)


# --------------------------------------------------------------------------------------------
# Accuracy of derivative: the acceptance numbers
# --------------------------------------------------------------------------------------------


# (order, richardson, median bound in float64): order 1 is the acceptance criterion
# (central differences <= 1e-10, Richardson <= 1e-12, at most 30 evaluations); measured
# medians are about 4e-11, 2e-15, 4e-13 (order 2), 1e-11 (order 3) and 1e-9 (order 4).
# (Every configuration adds a copy of all seven functions to the compiled program, so the
# table is kept short: a test file on a 2-core machine should run in about 20 s.)
FLOAT64_BOUNDS = [
    (1, False, 1e-10),
    (1, True, 1e-12),
    (2, True, 1e-11),
    (3, True, 1e-9),
    (4, True, 1e-8),
]


ONE_SIDED = [(1, {"method": "forward", "richardson": rich}) for rich in (False, True)]


@pytest.fixture(scope="module")
def float64_table():
    """All float64 table results, central then one-sided, from one compiled program."""
    configs = [(order, {"richardson": rich}) for order, rich, _ in FLOAT64_BOUNDS]
    with jax.enable_x64(True):
        return table_derivatives(jnp.float64, configs + ONE_SIDED)


@pytest.mark.parametrize("case", range(len(FLOAT64_BOUNDS)))
def test_derivative_float64_median_error(float64_table, case):
    order, richardson, bound = FLOAT64_BOUNDS[case]
    value, error = float64_table[case]
    rel = relative_errors(value, order)
    assert np.median(rel) <= bound, (np.median(rel), rel.max())
    assert numerical.num_evaluations(order, richardson=richardson) <= numerical.MAX_EVALUATIONS
    # the error estimate bounds the actual error nearly everywhere
    actual = np.abs(value - reference(order))
    assert np.mean(error >= actual) >= 0.9


def test_derivative_float32_default_step():
    (plain, _), (extrapolated, _) = table_derivatives(
        jnp.float32, [(1, {"richardson": False}), (1, {})]
    )
    assert np.median(relative_errors(plain, 1)) <= 1e-4  # measured about 1.3e-5
    assert np.median(relative_errors(extrapolated, 1)) <= 1e-5  # measured about 4e-7


def test_one_sided_methods_float64(float64_table):
    results = float64_table[len(FLOAT64_BOUNDS) :]
    for (_, kw), (value, _) in zip(ONE_SIDED, results, strict=True):
        # one-sided: error ~ sqrt(eps) without extrapolation; Richardson removes every power
        bound = 1e-11 if kw["richardson"] else 1e-7
        assert np.median(relative_errors(value, 1)) <= bound, kw


def counted(fn):
    """fn wrapped in a host callback that counts the points it is evaluated at."""
    calls = {"points": 0}

    def host(x):
        calls["points"] += np.size(x)
        return np.asarray(fn(x), dtype=x.dtype)

    def f(x):
        out = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
        return jax.pure_callback(host, out, x, vmap_method="expand_dims")

    return f, calls


@pytest.mark.parametrize(
    ("order", "richardson", "expected"),
    [(1, True, 30), (2, True, 29), (4, True, 29), (1, False, 2)],
)
def test_evaluation_count(order, richardson, expected):
    f, calls = counted(np.exp)
    with jax.enable_x64(True):
        # two points: the count is per point
        value = numerical.derivative(f, order, richardson=richardson)(jnp.array([0.5, 0.5]))
    assert calls["points"] == 2 * expected
    assert expected == numerical.num_evaluations(order, richardson=richardson)
    assert expected <= numerical.MAX_EVALUATIONS
    np.testing.assert_allclose(value, np.exp(0.5), rtol=1e-9 if richardson else 1e-4)


def test_num_evaluations():
    assert [numerical.num_evaluations(n) for n in range(1, 7)] == [30, 29, 30, 29, 30, 29]
    assert numerical.num_evaluations(1, method="forward") == 16
    assert [numerical.num_evaluations(n, richardson=False) for n in range(1, 5)] == [2, 3, 4, 5]
    assert numerical.num_evaluations(1, richardson=False, return_error=True) == 4
    with pytest.raises(ValueError, match="order"):
        numerical.num_evaluations(0)


def test_derivative_higher_order_and_any_shape():
    # order 6 of exp: the power-of-two stencil of order > 4
    with jax.enable_x64(True):
        x = jnp.array([[0.0, 0.5], [1.0, -0.5]])
        d6 = numerical.derivative(jnp.exp, 6)(x)
        assert d6.shape == (2, 2)
        np.testing.assert_allclose(d6, np.exp(np.asarray(x)), rtol=1e-5)
        # backward differences mirror forward ones (Richardson over all powers of h)
        back = numerical.derivative(jnp.exp, method="backward")(x)
        np.testing.assert_allclose(back, np.exp(np.asarray(x)), rtol=1e-10)
        # f need not be elementwise: it is mapped over the points
        d = numerical.derivative(lambda t: jnp.dot(jnp.array([t, t**2]), jnp.ones(2)))(x)
        np.testing.assert_allclose(d, 1 + 2 * np.asarray(x), rtol=1e-12, atol=1e-15)


def test_derivative_near_a_singularity():
    # steps that leave the domain (sqrt of a negative number) never win the tableau
    with jax.enable_x64(True):
        x = np.array([1e-3, 0.01, 0.05])
        value, error = numerical.derivative(jnp.sqrt, return_error=True)(x)
        value, error = np.asarray(value), np.asarray(error)
    ref = 0.5 / np.sqrt(x)
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(value, ref, rtol=1e-6)
    assert np.all(error < 1e-6 * ref)


# --------------------------------------------------------------------------------------------
# difference_quotient
# --------------------------------------------------------------------------------------------


def test_difference_quotient_is_the_secant_slope():
    square = lambda x: x**2  # noqa: E731
    dq = numerical.difference_quotient
    assert float(dq(square, 3.0, 0.5)) == 6.5  # ((3.5)^2 - 3^2) / 0.5 = 2x + h
    assert float(dq(square, 3.0, 0.5, scheme="backward")) == 5.5  # 2x - h
    assert float(dq(square, 3.0, 0.5, scheme="central")) == 6.0  # exact for quadratics
    with pytest.raises(ValueError, match="central"):
        dq(square, 3.0, scheme="sideways")


def test_difference_quotient_default_step_is_dtype_aware():
    x = np.array([-1.0, 0.5, 2.0, 30.0])
    scale = np.maximum(1.0, np.abs(x))  # the step grows with |x|
    with jax.enable_x64(True):
        forward = numerical.difference_quotient(jnp.exp, jnp.asarray(x))
        central = numerical.difference_quotient(jnp.exp, jnp.asarray(x), scheme="central")
        assert forward.dtype == jnp.float64
    # forward: relative error ~ h/2 + eps/h with h ~ sqrt(eps) |x|; central: ~ eps^(2/3)
    eps = np.finfo(np.float64).eps
    assert np.all(np.abs(np.asarray(forward) / np.exp(x) - 1) <= 2 * np.sqrt(eps) * scale)
    assert np.all(np.abs(np.asarray(central) / np.exp(x) - 1) <= 4 * eps ** (2 / 3) * scale**2)
    forward32 = numerical.difference_quotient(jnp.exp, jnp.asarray(x[:3], jnp.float32))
    assert forward32.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(forward32) / np.exp(x[:3]) - 1)) <= 2e-3


def test_difference_quotient_jit_vmap():
    x = jnp.linspace(0.1, 2.0, 5)
    direct = numerical.difference_quotient(jnp.sin, x, scheme="central")
    jitted = jax.jit(lambda x: numerical.difference_quotient(jnp.sin, x, scheme="central"))(x)
    mapped = jax.vmap(lambda x: numerical.difference_quotient(jnp.sin, x, scheme="central"))(x)
    np.testing.assert_allclose(jitted, direct, rtol=1e-6)
    np.testing.assert_allclose(mapped, direct, rtol=1e-6)
    np.testing.assert_allclose(direct, np.cos(np.asarray(x)), rtol=1e-4)


# --------------------------------------------------------------------------------------------
# gradient, jacobian, hessian against JAX autodiff
# --------------------------------------------------------------------------------------------


def random_scalar_function(seed: int, n: int):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, n)) / np.sqrt(n)
    b, a = rng.standard_normal(3), rng.standard_normal(3)

    def f(x):
        z = jnp.asarray(w, x.dtype) @ x + jnp.asarray(b, x.dtype)
        return jnp.sum(jnp.asarray(a, x.dtype) * jnp.tanh(z)) + 0.5 * jnp.sum(jnp.sin(x) * x**2)

    return f


def random_vector_function(seed: int, n: int):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, n)) / np.sqrt(n)

    def f(x):
        z = jnp.asarray(w, x.dtype) @ x
        return jnp.concatenate([jnp.exp(z[:2]) * x[0], jnp.cos(z[2:])])

    return f


def test_operators_agree_with_autodiff_float64():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(10).uniform(-1.5, 1.5, 4))
        f, g = random_scalar_function(0, 4), random_vector_function(0, 4)
        tight = {"rtol": 1e-10, "atol": 1e-11}
        grad = jax.jit(jax.grad(f))(x)
        np.testing.assert_allclose(numerical.gradient(f)(x), grad, **tight)
        np.testing.assert_allclose(numerical.jacobian(g)(x), jax.jit(jax.jacfwd(g))(x), **tight)
        hess, error = numerical.hessian(f, return_error=True)(x)
        np.testing.assert_allclose(hess, jax.jit(jax.hessian(f))(x), rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(hess, hess.T)  # symmetric by construction
        assert np.all(np.asarray(error) < 1e-7)
        # without extrapolation: central differences, error ~ eps^(2/3)
        np.testing.assert_allclose(
            numerical.gradient(f, richardson=False)(x), grad, rtol=1e-8, atol=1e-9
        )


def test_operators_agree_with_autodiff_float32():
    x = jnp.asarray(np.random.default_rng(3).uniform(-1.5, 1.5, 4), jnp.float32)
    f = random_scalar_function(5, 4)
    grad = numerical.gradient(f)(x)
    assert grad.dtype == jnp.float32
    np.testing.assert_allclose(grad, jax.jit(jax.grad(f))(x), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        numerical.hessian(f)(x), jax.jit(jax.hessian(f))(x), rtol=1e-2, atol=1e-2
    )


def assert_trees_close(actual, expected, **kwargs):
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    leaves = zip(
        jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected), strict=True
    )
    for a, e in leaves:
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, **kwargs)


def test_pytrees_argnums_and_shapes_like_jax():
    with jax.enable_x64(True):
        params = {"w": jnp.array([[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]]), "b": jnp.array([0.1, -0.3])}
        x = jnp.array([1.0, -0.5, 2.0])

        def loss(params, x, scale):
            return scale * jnp.sum(jnp.tanh(params["w"] @ x + params["b"]) ** 2)

        tol = {"rtol": 1e-9, "atol": 1e-11}
        # tuple (and negative) argnums over a pytree and a scalar; errors come back alike
        grad, error = numerical.gradient(loss, argnums=(0, -1), return_error=True)(params, x, 2.0)
        assert_trees_close(grad, jax.jit(jax.grad(loss, argnums=(0, -1)))(params, x, 2.0), **tol)
        assert jax.tree_util.tree_structure(error) == jax.tree_util.tree_structure(grad)
        # Jacobian of a matrix function of a matrix: output dims then input dims
        m = jnp.array([[1.0, 2.0, 0.5], [-1.0, 0.3, 0.7]])
        gram = lambda b: b @ b.T  # noqa: E731
        jac = numerical.jacobian(gram)(m)
        assert jac.shape == (2, 2, 2, 3)
        np.testing.assert_allclose(jac, jax.jit(jax.jacfwd(gram))(m), **tol)
        # pytree output, tuple argnums
        two = lambda a, b: {"s": jnp.sin(a) * b, "t": jnp.sum(a**2)}  # noqa: E731
        a, b = jnp.array([0.2, 0.4]), jnp.array(1.5)
        assert_trees_close(
            numerical.jacobian(two, argnums=(0, 1))(a, b),
            jax.jit(jax.jacfwd(two, argnums=(0, 1)))(a, b),
            **tol,
        )
        # Hessian: x.shape + x.shape for an array, nested like jax.hessian for a pytree
        cubic = lambda p: jnp.sum(p["w"] ** 3) + p["w"][0, 0] * p["w"][1, 2] * jnp.sum(p["b"] ** 2)  # noqa: E731
        hess = numerical.hessian(cubic)(params)
        assert hess["w"]["w"].shape == (2, 3, 2, 3)
        assert_trees_close(hess, jax.jit(jax.hessian(cubic))(params), rtol=1e-8, atol=1e-9)


def test_python_ints_are_promoted():
    with jax.enable_x64(True):
        assert abs(float(numerical.derivative(lambda x: x**3)(2)) - 12.0) < 1e-9
        assert abs(float(numerical.gradient(lambda x, y: x * y)(2, 3.0)) - 3.0) < 1e-9
        assert abs(float(numerical.difference_quotient(lambda x: x**2, 3, 1)) - 7.0) < 1e-12


def test_every_call_sees_the_current_state():
    # f is traced afresh at every call, as under jax.grad: nothing stale is reused
    coefficient = [1.0]
    slope = numerical.derivative(lambda t: coefficient[0] * t**2)
    assert float(slope(1.0)) == pytest.approx(2.0, rel=1e-5)
    coefficient[0] = 3.0
    assert float(slope(1.0)) == pytest.approx(6.0, rel=1e-5)

    class Scale:
        value = 1.0

    scale = Scale()
    grad = numerical.gradient(lambda x, s, n: s.value * jnp.sum(x**n))
    x = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(grad(x, scale, 2), 2 * np.asarray(x), rtol=1e-4)
    scale.value = 3.0
    np.testing.assert_allclose(grad(x, scale, 2), 6 * np.asarray(x), rtol=1e-4)


def test_jit_and_vmap():
    f = random_scalar_function(7, 3)
    xs = jnp.asarray(np.random.default_rng(7).uniform(-1, 1, (4, 3)), jnp.float32)
    grad = numerical.gradient(f)
    reference = jax.jit(jax.vmap(jax.grad(f)))(xs)
    np.testing.assert_allclose(jax.jit(grad)(xs[1]), reference[1], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(jax.vmap(grad)(xs), reference, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(numerical.hessian(f)))(xs),
        jax.jit(jax.vmap(jax.hessian(f)))(xs),
        atol=1e-2,
    )
    value, error = jax.jit(numerical.derivative(jnp.sin, 2, return_error=True))(xs)
    np.testing.assert_allclose(value, -np.sin(np.asarray(xs)), atol=1e-4)
    assert error.shape == xs.shape


# --------------------------------------------------------------------------------------------
# Misuse
# --------------------------------------------------------------------------------------------


def test_errors():
    ints = jnp.arange(3)
    with pytest.raises(TypeError, match="int"):
        numerical.derivative(jnp.sin)(ints)
    with pytest.raises(TypeError, match="int"):
        numerical.gradient(jnp.sum)(ints)
    with pytest.raises(TypeError, match="jacobian"):
        numerical.gradient(lambda x: x**2)(jnp.ones(3))
    with pytest.raises(TypeError, match="jacobian"):
        numerical.hessian(lambda x: x**2)(jnp.ones(3))
    with pytest.raises(TypeError, match="gradient"):
        numerical.derivative(lambda x: jnp.stack([x, x]))(1.0)
    with pytest.raises(ValueError, match="out of range"):
        numerical.gradient(jnp.sum, argnums=1)(jnp.ones(3))
    with pytest.raises(ValueError, match="out of range"):
        numerical.jacobian(jnp.sin, argnums=(0, 3))(jnp.ones(3))
    with pytest.raises(ValueError, match="order"):
        numerical.derivative(jnp.sin, order=0)
    with pytest.raises(ValueError, match="method"):
        numerical.derivative(jnp.sin, method="sideways")
    with pytest.raises(TypeError, match="complex"):
        numerical.gradient(jnp.sum)(jnp.ones(2, jnp.complex64))
    with pytest.raises(TypeError, match="int"):
        check_grad(lambda x: jnp.sum(x**2), ints, argnums=0)
    with pytest.raises(ValueError, match="out of range"):
        check_grad(lambda x: jnp.sum(x**2), jnp.ones(2), argnums=1)
    with pytest.raises(ValueError, match="order"):
        check_grad(lambda x: jnp.sum(x**2), jnp.ones(2), order=4)
    with pytest.raises(ValueError, match="nothing to differentiate"):
        check_grad(lambda n: n**2, 3)


# --------------------------------------------------------------------------------------------
# check_grad
# --------------------------------------------------------------------------------------------


@jax.custom_jvp
def bad_sin(x):
    return jnp.sin(x)


bad_sin.defjvp(
    lambda primals, tangents: (jnp.sin(primals[0]), 2 * jnp.cos(primals[0]) * tangents[0])
)


@jax.custom_jvp
def bad_cos(x):  # right value, wrong derivative (+sin instead of -sin)
    return jnp.cos(x)


bad_cos.defjvp(lambda primals, tangents: (jnp.cos(primals[0]), jnp.sin(primals[0]) * tangents[0]))


@jax.custom_jvp
def sin_bad_second(x):  # first derivative right, second derivative wrong
    return jnp.sin(x)


sin_bad_second.defjvp(
    lambda primals, tangents: (sin_bad_second(primals[0]), bad_cos(primals[0]) * tangents[0])
)


def reported_values(message: str, section: str) -> tuple[float, float]:
    """The autodiff and finite-difference numbers printed under a section of the message."""
    tail = message[message.index(section) :]
    ad = float(re.search(r"autodiff[^:]*:\s+(\S+)", tail).group(1))
    fd = float(re.search(r"finite differences:\s+(\S+)", tail).group(1))
    return ad, fd


@pytest.mark.slow  # CI budget: test_numerical_checkgrad's tables cover it
def test_check_grad_passes_on_correct_functions():
    # pytree parameters, float data, an integer argument left alone; a pytree output; float32;
    # order 2 checks the first derivatives, then H v of a random projection <u, f>
    def model(params, x, power):
        h = jnp.tanh(params["w"] @ x + params["b"])
        return {"y": h**power, "norm": jnp.sum(params["w"] ** 2)}

    params = {"w": jnp.array([[0.3, -0.2], [0.1, 0.4]]), "b": jnp.array([0.1, -0.3])}
    check_grad(model, params, jnp.array([1.0, -0.5]), 2, order=2)
    with jax.enable_x64(True):  # 50 inputs: random directions only
        x50 = jnp.linspace(-1.0, 1.0, 50)
        check_grad(lambda x: jnp.sum(jnp.tanh(x) * x**2) + jnp.cos(jnp.sum(x)) ** 2, x50)


def test_check_grad_names_the_worst_entry():
    x = jnp.array([0.3, -0.7, 0.5])
    f = lambda x: jnp.sum(jnp.sin(x[:2])) + bad_sin(x[2])  # noqa: E731
    with pytest.raises(GradientCheckError) as info:
        check_grad(f, x)
    message = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "first derivatives" in message
    assert "worst of 3 random directions" in message and "v = [" in message
    assert "worst entry: d output / d argument 0[2]" in message
    ad, fd = reported_values(message, "worst entry")
    assert ad == pytest.approx(2 * np.cos(0.5), rel=1e-5)
    assert fd == pytest.approx(np.cos(0.5), rel=1e-4)


def test_check_grad_many_inputs_and_float64():
    with jax.enable_x64(True):
        x50 = jnp.linspace(-1.0, 1.0, 50)
        with pytest.raises(GradientCheckError) as info:
            check_grad(lambda x: jnp.sum(bad_sin(x)), x50)
        message = str(info.value)
        assert "random unit vector in R^50" in message and "worst entry" not in message
        ad, fd = reported_values(message, "worst of")
        assert ad == pytest.approx(2 * fd, rel=1e-6)  # 2 cos . v against cos . v


def test_check_grad_second_order():
    f = lambda x: jnp.sum(sin_bad_second(x) * x)  # noqa: E731
    x = jnp.array([0.4, 1.1])
    # the first-order check runs first and passes: the error names the second derivatives
    with pytest.raises(GradientCheckError, match="second derivatives") as info:
        check_grad(f, x, order=2)
    message = str(info.value)
    assert "H v (forward-over-reverse)" in message
    # d^2/dx^2 [x sin x] = 2 cos x - x sin x; the wrong rule gives 2 cos x + x sin x
    ad, fd = reported_values(message, "worst entry")
    i = int(re.search(r"argument 0\[(\d)\] d argument 0\[(\d)\]", message).group(1))
    xi = float(x[i])
    assert fd == pytest.approx(2 * np.cos(xi) - xi * np.sin(xi), rel=1e-3, abs=1e-4)
    assert ad == pytest.approx(2 * np.cos(xi) + xi * np.sin(xi), rel=1e-5)


def test_check_grad_catches_a_wrong_custom_vjp():
    @jax.custom_vjp
    def sin_vjp(x):
        return jnp.sin(x)

    sin_vjp.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (3 * g * jnp.cos(x),))
    with pytest.raises(GradientCheckError, match="VJP"):
        check_grad(lambda x: jnp.sum(sin_vjp(x)), jnp.array([0.3, 1.2]))


def test_check_grad_catches_reverse_mode_inconsistent_with_forward_mode():
    # a linear primitive whose transpose (used by reverse mode) is wrong: JVP right, VJP wrong
    from jax.extend.core import Primitive
    from jax.interpreters import ad, batching, mlir

    scale_p = Primitive("mlgrad_test_wrong_transpose")
    scale_p.def_impl(lambda t, c: c * t)
    scale_p.def_abstract_eval(lambda t, c: t)
    mlir.register_lowering(scale_p, mlir.lower_fun(lambda t, c: c * t, multiple_results=False))
    batching.defbroadcasting(scale_p)
    ad.primitive_transposes[scale_p] = lambda ct, t, c: (3 * c * ct, None)

    @jax.custom_jvp
    def sin_(x):
        return jnp.sin(x)

    sin_.defjvp(lambda p, t: (jnp.sin(p[0]), scale_p.bind(t[0], jnp.cos(p[0]))))
    with pytest.raises(GradientCheckError, match="reverse mode") as info:
        check_grad(lambda x: jnp.sum(sin_(x)), jnp.array([0.5, 1.0]))
    assert "<J^T u, v> (VJP)" in str(info.value)
