"""Tests of the compiled training loop ``mlgrad.training.fit``.

References are independent of the engine: ``numpy.linalg.lstsq``, gradient descent
re-implemented in NumPy, the batch order rebuilt from ``jax.random.permutation`` and
``fold_in``, and ``jax.grad`` of the plain mean over a batch's real examples.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlgrad.training import FitResult, TrainingDivergedError, TrainState, fit

# Shared loss functions and optimizers: the same objects reuse compiled programs across tests.


def linear_mse(params, batch):
    """Mean squared error of f(x) = x . w + b."""
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def position_weighted(params, batch):
    """sum_k (k + 1) * params[batch[k]]: its gradient encodes which example sat in slot k."""
    (idx,) = batch
    return jnp.sum(jnp.arange(1, idx.shape[0] + 1) * params[idx])


def mean_pick(params, batch):
    """mean_k params[batch[k]]: a mean over examples, so valid for ragged batches."""
    (idx,) = batch
    return jnp.mean(params[idx])


fit_module = importlib.import_module("mlgrad.training.fit")  # the module, not the function

SGD1 = optax.sgd(1.0)
ADAM = optax.adam(0.05)
GD = optax.sgd(0.1)


def regression_data(n: int = 30, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ np.array([1.5, -2.0, 0.5])[:d] + 0.3 + 0.1 * rng.normal(size=n)
    return x, y


def zeros(d: int, dtype=jnp.float32):
    return {"w": jnp.zeros(d, dtype), "b": jnp.zeros((), dtype)}


def tree_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(la, lb, strict=True)
    )


def epoch_order(key, epoch: int, n: int) -> np.ndarray:
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))


# --- full-batch gradient descent -------------------------------------------------------------


def test_least_squares_reaches_lstsq():
    x, y = regression_data()
    with jax.enable_x64(True):
        r = fit(linear_mse, zeros(3, jnp.float64), (x, y), optimizer=GD, steps=400, chunk_size=50)
    design = np.column_stack([x, np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(r.params["w"], coef[:3], rtol=1e-9)
    np.testing.assert_allclose(r.params["b"], coef[3], rtol=1e-9)
    assert isinstance(r, FitResult)
    assert int(r.state.step) == 400 and r.history.shape == (400,)


def test_gd_history_matches_numpy_gd_and_decreases(capsys):
    """GD on the convex quadratic mean((x w + b - y)^2): history equals a NumPy re-run."""
    x, y = regression_data()
    lr, steps = 0.1, 50
    with jax.enable_x64(True):
        r = fit(linear_mse, zeros(3, jnp.float64), (x, y), optimizer=GD, steps=steps, progress=True)
    assert "50/50" in capsys.readouterr().err  # the progress bar, on stderr
    w, b, expected = np.zeros(3), 0.0, []
    for _ in range(steps):
        res = x @ w + b - y
        expected.append(np.mean(res**2))
        w, b = w - lr * 2 * x.T @ res / len(y), b - lr * 2 * np.mean(res)
    assert r.history.shape == (steps,)
    np.testing.assert_allclose(r.history, expected, rtol=1e-10)
    assert np.all(np.diff(r.history) < 0)
    np.testing.assert_allclose(r.params["w"], w, rtol=1e-10)
    np.testing.assert_allclose(r.params["b"], b, rtol=1e-10)
    assert r.val_history.shape == (0, 2)
    assert r.param_trace is None


def test_validation_callback_and_param_trace():
    x, y = regression_data()
    xv, yv = regression_data(n=8, seed=5)
    calls = []
    r = fit(
        linear_mse,
        zeros(3),
        (x, y),
        optimizer=GD,
        steps=12,
        val_data=(xv, yv),
        eval_every=5,
        trace_params=True,
        callback=lambda state, losses, val: calls.append((int(state.step), len(losses), val)),
    )
    assert [c[:2] for c in calls] == [(5, 5), (10, 5), (12, 2)]  # chunks end at 5, 10 and 12
    np.testing.assert_array_equal(r.val_history[:, 0], [5, 10, 12])
    np.testing.assert_array_equal(r.val_history[:, 1], [c[2] for c in calls])
    for step, val in r.val_history:  # the validation MSE of the traced params, in NumPy
        w, b = r.param_trace["w"][int(step) - 1], r.param_trace["b"][int(step) - 1]
        np.testing.assert_allclose(val, np.mean((xv @ w + b - yv) ** 2), rtol=1e-5)
    assert r.param_trace["w"].shape == (12, 3) and r.param_trace["b"].shape == (12,)
    np.testing.assert_array_equal(r.param_trace["w"][-1], r.params["w"])
    # Step 1 from w = b = 0: grad_w = -2 x^T y / n, grad_b = -2 mean(y).
    np.testing.assert_allclose(r.param_trace["w"][0], 0.1 * 2 * x.T @ y / len(y), rtol=1e-5)
    np.testing.assert_allclose(r.param_trace["b"][0], 0.1 * 2 * np.mean(y), rtol=1e-5)


# --- mini-batches ---------------------------------------------------------------------------


def test_minibatch_order_is_the_fold_in_permutation():
    """Slot k of step s holds order_e[j*B + k], e = s // 3, j = s % 3 (12 examples, B = 4)."""
    n, bsz, steps = 12, 4, 9
    key = jax.random.PRNGKey(7)
    r = fit(
        position_weighted,
        jnp.zeros(n),
        (jnp.arange(n),),
        optimizer=SGD1,
        steps=steps,
        batch_size=bsz,
        key=key,
        trace_params=True,
    )
    before = np.vstack([np.zeros(n), r.param_trace[:-1]])
    for s in range(steps):
        grad = before[s] - r.param_trace[s]  # sgd(1.0): params -= grad
        order = epoch_order(key, s // 3, n)[(s % 3) * bsz : (s % 3 + 1) * bsz]
        expected = np.zeros(n)
        expected[order] = np.arange(1, bsz + 1)
        np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize(
    ("n", "batch", "drop"),
    [(1437, 128, False), (1437, 128, True), (1700, 500, False), (5, 2, False), (1, 1, False)],
)
def test_host_sorted_orders_are_the_permutations(n, batch, drop):
    """On a CPU fit sorts the epochs' shuffles with NumPy: row j of its orders is still
    ``permutation(fold_in(key, first + j), n)`` (1700 examples take the permutation's second
    round), padded with the epoch's first examples or cut to whole batches (drop)."""
    fit_module = importlib.import_module("mlgrad.training.fit")
    plan = fit_module._Batching(n, batch, n % batch != 0 and not drop, drop=drop)
    width = plan.per_epoch * batch
    for key in (jax.random.PRNGKey(0), jax.random.key(3)):
        orders = fit_module._host_epoch_orders(key, 5, 3, plan=plan, count=4)
        assert orders.shape == (4, width) and orders.dtype == np.int32
        for j in range(3):
            perm = epoch_order(key, 5 + j, n)
            np.testing.assert_array_equal(
                orders[j], np.resize(perm, width) if width > n else perm[:width]
            )
        np.testing.assert_array_equal(orders[3], 0)  # not needed: left zero


def test_ragged_batches_cover_each_epoch_once():
    """10 examples, B = 4: batches of 4, 4, 2 real examples; each epoch visits all exactly once."""
    n, bsz, steps = 10, 4, 6
    key = jax.random.PRNGKey(3)
    r = fit(
        mean_pick,
        jnp.zeros(n),
        (jnp.arange(n),),
        optimizer=SGD1,
        steps=steps,
        batch_size=bsz,
        key=key,
        trace_params=True,
    )
    before = np.vstack([np.zeros(n), r.param_trace[:-1]])
    for s in range(steps):
        grad = before[s] - r.param_trace[s]
        real = epoch_order(key, s // 3, n)[(s % 3) * bsz : min(n, (s % 3 + 1) * bsz)]
        expected = np.zeros(n)
        expected[real] = 1.0 / len(real)
        np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_padded_batch_gradient_is_the_mean_over_real_examples():
    """Every step's update (and loss) equals jax.grad of the plain mean over its real examples."""
    x, y = regression_data(n=10, d=3, seed=2)
    n, bsz, steps = 10, 4, 6
    key = jax.random.PRNGKey(11)
    with jax.enable_x64(True):
        p0 = {"w": jnp.asarray([0.1, -0.2, 0.3]), "b": jnp.asarray(0.05)}
        r = fit(
            linear_mse,
            p0,
            (x, y),
            optimizer=SGD1,
            steps=steps,
            batch_size=bsz,
            key=key,
            trace_params=True,
        )
        params, reference_grad = p0, jax.jit(jax.grad(linear_mse))
        for s in range(steps):
            real = epoch_order(key, s // 3, n)[(s % 3) * bsz : min(n, (s % 3 + 1) * bsz)]
            batch = (jnp.asarray(x[real]), jnp.asarray(y[real]))
            grad = reference_grad(params, batch)
            after = {k: v[s] for k, v in r.param_trace.items()}
            for k in params:
                np.testing.assert_allclose(params[k] - after[k], grad[k], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(r.history[s], linear_mse(params, batch), rtol=1e-12)
            params = after


# --- compilation, divergence, resume --------------------------------------------------------


def test_second_fit_reuses_the_compiled_program():
    traces = []

    def counted_loss(params, batch):
        traces.append(1)
        return linear_mse(params, batch)

    x, y = regression_data(n=16, d=2)
    opt = optax.sgd(0.1)
    fit(counted_loss, zeros(2), (x[:, :2], y), optimizer=opt, steps=20, batch_size=5)
    first, cached = len(traces), fit_module._run_chunk._cache_size()
    assert first > 0
    p1 = {"w": jnp.ones(2), "b": jnp.ones(())}
    x2, y2 = regression_data(n=16, d=2, seed=9)
    fit(counted_loss, p1, (x2[:, :2], y2), optimizer=opt, steps=20, batch_size=5)
    assert len(traces) == first
    assert fit_module._run_chunk._cache_size() == cached


def quadratic(params, batch):
    del batch
    return jnp.sum(params**2)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_divergence_stops_at_the_first_non_finite_loss(chunk_size):
    """GD on w^2 with lr = 500 multiplies w by -999 per step; float32 w^2 overflows."""
    lr = 500.0
    w, k = 1.0, 0  # float64 reference: the loss of step k + 1 is w_k^2
    while w * w <= float(np.finfo(np.float32).max):
        w, k = w - lr * 2 * w, k + 1
    expected_step = k + 1
    calls = []
    with pytest.raises(TrainingDivergedError, match=rf"step {expected_step}\b.*learning rate") as e:
        fit(
            quadratic,
            jnp.ones(1),
            (jnp.zeros(4),),
            optimizer=optax.sgd(lr),
            steps=50,
            chunk_size=chunk_size,
            callback=lambda s, losses, v: calls.append(int(s.step)),
        )
    err = e.value
    assert isinstance(err, RuntimeError)
    assert err.step == expected_step
    good = err.last_good_state
    assert int(good.step) == expected_step - 1
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves((good.params, good.opt_state)))
    np.testing.assert_allclose(good.params, [(1 - 2 * lr) ** (expected_step - 1)], rtol=1e-5)
    assert len(err.history) == expected_step and not np.isfinite(err.history[-1])
    assert all(s < expected_step for s in calls)  # never called with a diverged chunk


def test_divergence_of_the_update_is_caught_too():
    """A finite loss whose update is infinite fails at that step, with the state before it."""
    with pytest.raises(TrainingDivergedError, match="step 1") as e:
        fit(
            lambda p, b: jnp.sum(p),
            jnp.zeros(2),
            (jnp.zeros(3),),
            optimizer=optax.sgd(np.inf),
            steps=5,
        )
    assert e.value.step == 1
    np.testing.assert_array_equal(e.value.last_good_state.params, [0.0, 0.0])


# GD on sum(p^2) (p <- 0.8 p) whose 6th update is scaled by inf: the parameters become infinite
# after step 6 while every loss up to step 6 is finite (the loss of step 7 is not).
BLOW_UP = optax.chain(
    optax.sgd(0.1), optax.scale_by_schedule(lambda count: jnp.where(count >= 5, jnp.inf, 1.0))
)


@pytest.mark.parametrize("chunk_size", [None, 3, 4])
def test_divergence_of_the_state_with_finite_losses(chunk_size):
    """The failing step is the one whose update was not finite, found by replaying the chunk:
    chunk_size 3 ends a chunk at that step (all its losses finite), 4 and None do not."""
    with pytest.raises(TrainingDivergedError, match=r"step 6\b.*non-finite") as e:
        fit(
            quadratic,
            jnp.ones(2),
            (jnp.zeros(4),),
            optimizer=BLOW_UP,
            steps=20,
            chunk_size=chunk_size,
        )
    err = e.value
    assert err.step == 6 and int(err.last_good_state.step) == 5
    np.testing.assert_allclose(err.last_good_state.params, [0.8**5, 0.8**5], rtol=1e-6)
    np.testing.assert_allclose(err.history, 2 * 0.8 ** (2 * np.arange(6)), rtol=1e-5)
    # The replayed last good state is the very state of an uninterrupted run after 5 steps.
    five = fit(quadratic, jnp.ones(2), (jnp.zeros(4),), optimizer=BLOW_UP, steps=5)
    assert tree_equal(err.last_good_state, five.state)


def test_divergence_of_the_optimizer_state_alone_is_caught():
    """Adam on 1e30 * sum(p): the second-moment estimate overflows to inf at step 1, the
    update is then 0, so the parameters and every loss stay finite; the state does not."""
    with pytest.raises(TrainingDivergedError, match=r"step 1\b.*optimizer state") as e:
        fit(lambda p, b: 1e30 * jnp.sum(p), jnp.ones(2), (jnp.zeros(3),), optimizer=ADAM, steps=8)
    good = e.value.last_good_state
    assert e.value.step == 1 and int(good.step) == 0
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves((good.params, good.opt_state)))


def test_chunks_of_one_length_share_one_program():
    """Two chunks of 5 steps, then a resumed call of two more, compile one program."""

    def fresh_loss(params, batch):  # a new function object: its own compiled program
        return linear_mse(params, batch)

    x, y = regression_data(n=12, d=2)
    before = fit_module._run_chunk._cache_size()
    r = fit(fresh_loss, zeros(2), (x[:, :2], y), optimizer=GD, steps=10, chunk_size=5)
    assert fit_module._run_chunk._cache_size() == before + 1
    fit(fresh_loss, None, (x[:, :2], y), optimizer=GD, steps=20, chunk_size=5, state=r.state)
    assert fit_module._run_chunk._cache_size() == before + 1


@pytest.mark.parametrize("batch_size", [None, 7], ids=["full-batch", "mini-batch"])
def test_resume_is_bit_identical(batch_size):
    x, y = regression_data(n=30, d=3)
    data, key, n_steps = (x.astype(np.float32), y.astype(np.float32)), jax.random.PRNGKey(4), 25
    common = dict(optimizer=ADAM, batch_size=batch_size)
    # Chunks of 10 from step 0, versus chunks of 5 up to 25 then 5, 10, 10: different starts.
    whole = fit(linear_mse, zeros(3), data, steps=2 * n_steps, key=key, chunk_size=10, **common)
    half = fit(linear_mse, zeros(3), data, steps=n_steps, key=key, chunk_size=5, **common)
    rest = fit(linear_mse, None, data, steps=2 * n_steps, state=half.state, chunk_size=10, **common)
    assert tree_equal(rest.state, whole.state)
    np.testing.assert_array_equal(np.concatenate([half.history, rest.history]), whole.history)
    assert int(rest.state.step) == 2 * n_steps and rest.history.shape == (n_steps,)


# --- input checks ---------------------------------------------------------------------------


def test_resume_past_target_and_zero_steps():
    x, y = regression_data(n=8, d=1)
    r = fit(linear_mse, zeros(1), (x, y), optimizer=SGD1, steps=0)
    assert r.history.shape == (0,) and int(r.state.step) == 0
    state = TrainState(zeros(1), SGD1.init(zeros(1)), jnp.asarray(5, jnp.int32), r.state.key)
    with pytest.raises(ValueError, match="target total"):
        fit(linear_mse, None, (x, y), optimizer=SGD1, steps=3, state=state)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(data=(np.zeros((3, 1)), np.zeros(4))), ValueError, "leading"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(steps=2.5), TypeError, "steps"),
        (dict(optimizer="adam"), TypeError, "optax"),
        (dict(loss_fn=lambda p, b: b[0] @ p["w"]), TypeError, "scalar"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    args = dict(
        loss_fn=linear_mse,
        params=zeros(1),
        data=(np.zeros((4, 1)), np.zeros(4)),
        optimizer=SGD1,
        steps=2,
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit(args.pop("loss_fn"), args.pop("params"), args.pop("data"), **args)


def test_line_search_optimizers_get_the_loss_and_reach_least_squares():
    # optax.lbfgs needs value, grad and value_fn in update(); fit passes them to every
    # optimizer that accepts extra arguments. Reference: numpy.linalg.lstsq.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=40)).astype(np.float32)

    def loss(p, batch):
        xb, yb = batch
        return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)

    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    result = fit(loss, params, (x, y), optimizer=optax.lbfgs(), steps=20)
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(40)], y, rcond=None)
    np.testing.assert_allclose(result.params["w"], coef[:3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.params["b"], coef[3], rtol=1e-4, atol=1e-5)
