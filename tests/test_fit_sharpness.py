"""fit(..., sharpness_every=N): the top Hessian eigenvalue inside the compiled loop, checked
against numpy.linalg.eigvalsh of the dense Hessian (jax.hessian) at the recorded parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from mlgrad import fit
from mlgrad.training.sharpness import top_eigenpair


@pytest.fixture(autouse=True, scope="module")
def _float64():
    with jax.enable_x64(True):
        yield


X = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (64, 3)), np.float64)
Y = np.sin(X @ np.array([1.0, -2.0, 0.5]))


def mlp_loss(p, batch):
    h = jnp.tanh(batch[0] @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] + p["b2"] - batch[1]) ** 2)


def mlp_params():
    rng = np.random.default_rng(1)
    return {
        "w1": 0.5 * rng.standard_normal((3, 8)),
        "b1": np.zeros(8),
        "w2": 0.5 * rng.standard_normal(8),
        "b2": np.zeros(()),
    }


def dense_top(loss, params, batch) -> float:
    flat, unravel = ravel_pytree(params)
    hessian = jax.hessian(lambda v: loss(unravel(v), batch))(flat)
    return float(np.linalg.eigvalsh(np.asarray(hessian))[-1])


def params_after(result, params0, t):
    return params0 if t == 0 else jax.tree.map(lambda a: a[t - 1], result.param_trace)


@pytest.fixture(scope="module")
def mlp_run():
    params = mlp_params()
    result = fit(
        mlp_loss,
        params,
        (X, Y),
        optimizer=optax.sgd(0.5),
        steps=40,
        sharpness_every=5,
        trace_params=True,
        chunk_size=12,  # measurements in four chunks: the warm start crosses chunk ends
    )
    return params, result


def test_sharpness_matches_the_dense_hessian(mlp_run):
    params, result = mlp_run
    assert result.sharpness.shape == (8, 2)
    np.testing.assert_array_equal(result.sharpness[:, 0], np.arange(0, 40, 5))
    for t, value in result.sharpness:
        exact = dense_top(mlp_loss, params_after(result, params, int(t)), (X, Y))
        # 10 Lanczos steps on 41 parameters: from the fixed start (t = 0) close, from the
        # previous eigenvector (warm) closer
        rtol = 1e-4 if t == 0 else 1e-6
        assert value == pytest.approx(exact, rel=rtol), t


def test_sharpness_between_measurements_is_nan_and_training_is_unchanged(mlp_run):
    params, result = mlp_run
    per_step = result.step_metrics["sharpness"]
    assert per_step.shape == (40,)
    measured = np.arange(40) % 5 == 0
    assert np.isfinite(per_step[measured]).all() and np.isnan(per_step[~measured]).all()
    plain = fit(mlp_loss, params, (X, Y), optimizer=optax.sgd(0.5), steps=40, chunk_size=12)
    np.testing.assert_array_equal(plain.history, result.history)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(result.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_quadratic_sharpness_is_its_top_eigenvalue():
    """Least squares: the Hessian of mean((x w - y)^2) is 2 X^T X / n, whatever w is."""
    x = np.random.default_rng(2).standard_normal((50, 4)) * np.array([1.0, 2.0, 3.0, 4.0])
    y = x @ jnp.ones(4)
    loss = lambda w, b: jnp.mean((b[0] @ w - b[1]) ** 2)  # noqa: E731
    result = fit(loss, np.zeros(4), (x, y), optimizer=optax.sgd(0.01), steps=6, sharpness_every=2)
    exact = np.linalg.eigvalsh(2 * x.T @ x / 50)[-1]
    np.testing.assert_allclose(result.sharpness[:, 1], exact, rtol=1e-12)


def test_mini_batch_sharpness_is_of_the_steps_batch():
    """With mini-batches the measurement is of the batch the step trains on (epoch 0's first
    batch for t = 0, in the order fit documents)."""
    key = jax.random.PRNGKey(3)
    params = mlp_params()
    result = fit(
        mlp_loss, params, (X, Y), optimizer=optax.sgd(0.1), steps=3, batch_size=16,
        key=key, sharpness_every=3,
    )  # fmt: skip
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), 64))[:16]
    exact = dense_top(mlp_loss, params, (X[order], Y[order]))
    assert result.sharpness[0, 1] == pytest.approx(exact, rel=1e-4)


def test_a_resumed_call_continues_the_record():
    params = mlp_params()
    first = fit(mlp_loss, params, (X, Y), optimizer=optax.sgd(0.5), steps=10, sharpness_every=4)
    rest = fit(mlp_loss, params, (X, Y), optimizer=optax.sgd(0.5), steps=20, sharpness_every=4,
               state=first.state)  # fmt: skip
    np.testing.assert_array_equal(first.sharpness[:, 0], [0, 4, 8])
    np.testing.assert_array_equal(rest.sharpness[:, 0], [12, 16])


def test_top_eigenpair_of_a_known_matrix():
    a = np.diag([1.0, 5.0, 2.0])
    value, vector = top_eigenpair(lambda v: 0.5 * v @ a @ v, jnp.zeros(3), jnp.ones(3))
    assert float(value) == pytest.approx(5.0, rel=1e-12)
    np.testing.assert_allclose(np.abs(vector), [0.0, 1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_sharpness_every_must_be_a_positive_int(bad):
    with pytest.raises((ValueError, TypeError), match="sharpness_every"):
        fit(mlp_loss, mlp_params(), (X, Y), optimizer=optax.sgd(0.1), steps=2, sharpness_every=bad)


@pytest.mark.parametrize("n", [2, 30])
def test_a_repeated_top_eigenvalue(n):
    """Hessian 2 I (the standardised one-feature regression's): the Krylov space breaks down
    after one product and Lanczos continues from fixed random directions (once drawn from the
    start vector's own stream, which made them parallel to it: NaN)."""
    loss = lambda p, b: jnp.mean(b) * jnp.sum(p**2)  # noqa: E731
    result = fit(loss, np.ones(n), np.ones(4), optimizer=optax.sgd(0.1), steps=3, sharpness_every=1)
    np.testing.assert_allclose(result.sharpness[:, 1], 2.0, rtol=1e-10)
