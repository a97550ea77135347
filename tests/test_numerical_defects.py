"""The five classes of defects that other projects' test cases found in mlgrad.numerical
(autograd's, numdifftools' and JAX's suites), each as a table or property test, in float64.
The references are closed forms; an error estimate must bound the true error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlgrad import check_grad, numerical

x64 = pytest.fixture(autouse=True)(lambda: (yield from _x64()))


def _x64():
    with jax.enable_x64(True):
        yield


def _honest(f, x, truth, method="central", tol=1e-6):
    value, error = numerical.derivative(f, method=method, return_error=True)(x)
    value, error = float(value), float(error)
    true_error = abs(value - truth)
    floor = 1e-12 * max(1.0, abs(truth))  # the rounding floor
    assert true_error <= max(error, floor) or np.isnan(error), (value, error, truth)
    assert true_error < tol * max(1.0, abs(truth)), (value, truth)


# 1. A Richardson step whose correction is accidentally zero (odd or even functions at points
#    that are exact multiples of the steps) must not be taken as exact.
SLOW = pytest.mark.slow  # the full tables; a few cases of each run by default


@pytest.mark.parametrize(
    "method", ["backward", *(pytest.param(m, marks=SLOW) for m in ("central", "forward"))]
)
@pytest.mark.parametrize(
    "x", [0.5, 0.0, pytest.param(1.0, marks=SLOW), pytest.param(2.0, marks=SLOW)]
)
@pytest.mark.parametrize(
    ("f", "df"),
    [
        (jnp.sin, np.cos),
        pytest.param(jnp.cos, lambda x: -np.sin(x), marks=SLOW),
        pytest.param(lambda x: x**3, lambda x: 3 * x**2, marks=SLOW),
    ],
    ids=["sin", "cos", "cube"],
)
def test_estimates_are_never_accidentally_zero(f, df, x, method):
    _honest(f, x, df(x), method)


def test_check_grad_of_mod_away_from_its_jumps_passes():
    for x in (0.3, 2.3, 7.7):
        check_grad(lambda t: jnp.mod(t, 1.0), x)


# 2. Large |x|: the steps follow x's scale and the function's.
@pytest.mark.parametrize(
    "x",
    [1e6, *(pytest.param(x, marks=SLOW) for x in (1e-9, 1e3, 1e4, 1e5, -1e6, 1e-6))],
)
@pytest.mark.parametrize(
    ("f", "df"),
    [(jnp.sin, np.cos), pytest.param(jnp.exp, np.exp, marks=SLOW)],
    ids=["sin", "exp"],
)
def test_large_and_tiny_arguments(f, df, x):
    if f is jnp.exp and abs(x) > 100:
        x = np.sign(x) * np.log(abs(x))  # keep exp finite
    # at |x| = 1e6 sin's values carry rounding errors of 1e-10, 1e4 times those at 1
    _honest(f, x, df(x), tol=1e-4 if abs(x) >= 1e5 else 1e-6)


@pytest.mark.parametrize("x", [1e6, *(pytest.param(x, marks=SLOW) for x in (1e-6, 1e-2, 1.0, 1e4))])
def test_check_grad_passes_on_correct_gradients_at_any_magnitude(x):
    check_grad(lambda t: jnp.sin(t) * t, x)
    check_grad(lambda t: jnp.sum(jnp.log1p(t**2)), jnp.array([x, -x, 0.5 * x]))


def test_check_grad_still_fails_on_a_wrong_entry_and_names_it():
    @jax.custom_jvp
    def f(t):
        return jnp.sum(jnp.sin(t))

    @f.defjvp
    def f_jvp(primals, tangents):
        (t,), (dt,) = primals, tangents
        wrong = jnp.cos(t).at[1].multiply(1.001)  # off by 1e-3 relative in one entry
        return f(t), jnp.dot(wrong, dt)

    with pytest.raises(AssertionError, match=r"\[1\]"):
        check_grad(f, jnp.array([0.3, 1.2, 2.0]), order=1)


# 3. Complex-valued functions, with Richardson on.
@pytest.mark.parametrize("x", [0.3, pytest.param(0.0, marks=SLOW), pytest.param(2.0, marks=SLOW)])
def test_complex_outputs(x):
    value, error = numerical.derivative(lambda t: jnp.exp(1j * t), return_error=True)(x)
    truth = 1j * np.exp(1j * x)
    assert abs(complex(value) - truth) < 1e-8 and abs(complex(value) - truth) <= max(
        float(error), 1e-12
    )
    jac = numerical.jacobian(lambda t: jnp.stack([jnp.exp(1j * t), t * (1 + 2j)]))(x)
    np.testing.assert_allclose(np.asarray(jac), [truth, 1 + 2j], atol=1e-8)


# 4. Zero-size arguments, as the autodiff wrappers handle them.
def test_zero_size_arguments():
    def f(v):
        return jnp.sum(v**2)

    empty = jnp.zeros((0,))
    assert numerical.gradient(f)(empty).shape == (0,)
    assert numerical.jacobian(lambda v: v * 2.0)(empty).shape == (0, 0)
    assert numerical.hessian(f)(empty).shape == (0, 0)
    check_grad(f, empty)
    check_grad(lambda v, w: jnp.sum(v) * w, empty, 2.0)


# 5. Negative argnums promote Python ints like positive ones, everywhere.
@pytest.mark.parametrize("argnums", [-1, pytest.param(1, marks=SLOW)])
def test_negative_argnums(argnums):
    def f(x, y):
        return x * y**2

    assert float(numerical.gradient(f, argnums=argnums)(2.0, 3)) == pytest.approx(12.0)
    assert float(numerical.jacobian(f, argnums=argnums)(2.0, 3)) == pytest.approx(12.0)
    assert float(numerical.hessian(f, argnums=argnums)(2.0, 3)) == pytest.approx(4.0, rel=1e-5)
    assert float(numerical.derivative(lambda y: f(2.0, y))(3)) == pytest.approx(12.0)
    check_grad(f, 2.0, 3.0)
