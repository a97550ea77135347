"""``fit`` for research models: a key per step, auxiliary outputs, model state, exact batches,
the loss contract, learning rate and gradient norm per step.

The reference for each is the same training written by hand with plain JAX and optax, step
for step (the batch order ``permutation(fold_in(key, epoch), n)``, the step key
``fold_in(split(key)[1], t)``), in float64: the parameters, model states and records must be
equal to rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlgrad.training import fit
from mlgrad.training.fit import LossContractWarning

N, D, STEPS = 24, 3, 30
RNG = np.random.default_rng(4)
X = RNG.normal(size=(N, D))
Y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * RNG.normal(size=N)
KEY = jax.random.PRNGKey(7)


def params0():
    return {"w": jnp.zeros(D), "b": jnp.zeros(())}  # float64 under jax.enable_x64


def noisy_loss(params, batch, key):
    """A stochastic loss: dropout on the inputs (the mask drawn from the step's key)."""
    x, y = batch
    keep = jax.random.bernoulli(key, 0.8, x.shape)
    pred = (jnp.where(keep, x / 0.8, 0.0)) @ params["w"] + params["b"]
    err = pred - y
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def stateful_loss(params, state, batch, key):
    """Batch normalisation of the input's mean: running statistics as the model state."""
    x, y = batch
    mean = jnp.mean(x, axis=0)
    new_state = {"mean": 0.9 * state["mean"] + 0.1 * mean, "count": state["count"] + 1}
    loss, aux = noisy_loss(params, ((x - mean), y), key)
    return (loss, aux), new_state


def by_hand(loss, *, batch_size, stateful, steps=STEPS, optimizer=None):
    """The same training written with plain JAX and optax, one step at a time."""
    optimizer = optimizer or optax.sgd(0.05, momentum=0.9)
    params, opt_state = params0(), None
    opt_state = optimizer.init(params)
    state = {"mean": jnp.zeros(D), "count": jnp.zeros((), jnp.int32)} if stateful else None
    stream = jax.random.split(KEY)[1]
    per_epoch = N // batch_size
    losses, maes, norms = [], [], []
    for t in range(steps):
        epoch, slot = divmod(t, per_epoch)
        order = jax.random.permutation(jax.random.fold_in(KEY, epoch), N)
        idx = order[slot * batch_size : (slot + 1) * batch_size]
        batch = (jnp.asarray(X)[idx], jnp.asarray(Y)[idx])
        key = jax.random.fold_in(stream, t)

        def objective(p, batch=batch, key=key, state=state):
            if stateful:
                (value, aux), new = loss(p, state, batch, key)
            else:
                (value, aux), new = loss(p, batch, key), None
            return value, (aux, new)

        (value, (aux, state_new)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        state = state_new
        losses.append(value)
        maes.append(aux["mae"])
        norms.append(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
    return params, state, np.array(losses), np.array(maes), np.array(norms)


def assert_tree_close(a, b, rtol=1e-12):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("stateful", [False, True], ids=["key+aux", "key+aux+state"])
def test_keys_aux_and_model_state_equal_the_same_training_by_hand(stateful):
    with jax.enable_x64(True):
        kw = dict(optimizer=optax.sgd(0.05, momentum=0.9), steps=STEPS, batch_size=6, key=KEY)
        state0 = {"mean": jnp.zeros(D), "count": jnp.zeros((), jnp.int32)}
        loss = stateful_loss if stateful else noisy_loss
        extra = {"model_state": state0} if stateful else {}
        data = (jnp.asarray(X), jnp.asarray(Y))
        r = fit(loss, params0(), data, with_key=True, has_aux=True, **extra, **kw)
        params, state, losses, maes, norms = by_hand(loss, batch_size=6, stateful=stateful)
        assert_tree_close(r.params, params)
        np.testing.assert_allclose(r.history, losses, rtol=1e-12)
        np.testing.assert_allclose(r.aux_history["mae"], maes, rtol=1e-12)
        np.testing.assert_allclose(r.step_metrics["grad_norm"], norms, rtol=1e-12)
        if stateful:
            assert_tree_close(r.model_state, state)
            assert int(r.model_state["count"]) == STEPS
        # Resumed half-way: bit-identical to the uninterrupted run (keys, aux, state).
        half = fit(
            loss,
            params0(),
            data,
            with_key=True,
            has_aux=True,
            **extra,
            **{**kw, "steps": STEPS // 2},
        )
        rest = fit(loss, None, data, with_key=True, has_aux=True, state=half.state, **kw)
        for got, want in zip(jax.tree.leaves(rest.state), jax.tree.leaves(r.state), strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        np.testing.assert_array_equal(
            np.concatenate([half.aux_history["mae"], rest.aux_history["mae"]]),
            r.aux_history["mae"],
        )


def test_ragged_batches_with_a_key_need_drop_remainder():
    data = (jnp.asarray(X), jnp.asarray(Y))
    kw = dict(optimizer=optax.sgd(0.05), steps=8, batch_size=5, key=KEY, has_aux=True)
    with pytest.raises(ValueError, match="drop_remainder=True"):
        fit(noisy_loss, params0(), data, with_key=True, **kw)
    state0 = {"mean": jnp.zeros(D), "count": jnp.zeros((), jnp.int32)}
    with pytest.raises(ValueError, match="model_state=.*drop_remainder=True"):
        fit(stateful_loss, params0(), data, with_key=True, model_state=state0, **kw)
    # drop_remainder: 24 // 5 = 4 full batches an epoch, each of 5 shuffled examples.
    seen = []

    def recording(params, batch, key):
        seen.append(batch[0].shape[0])
        return noisy_loss(params, batch, key)

    r = fit(recording, params0(), data, with_key=True, drop_remainder=True, **kw)
    assert seen and set(seen) == {5} and r.history.shape == (8,)


def test_drop_remainder_visits_each_epochs_first_batches_of_its_shuffle():
    with jax.enable_x64(True):
        data = (jnp.asarray(X), jnp.asarray(Y))

        def loss(p, b):
            return jnp.mean((b[0] @ p["w"] + p["b"] - b[1]) ** 2)

        r = fit(
            loss,
            params0(),
            data,
            optimizer=optax.sgd(0.05),
            steps=9,
            batch_size=5,
            key=KEY,
            drop_remainder=True,
        )
        # By hand: 4 batches an epoch from permutation(fold_in(key, e), 24)[:20].
        params, opt = params0(), optax.sgd(0.05)
        state = opt.init(params)
        for t in range(9):
            e, slot = divmod(t, 4)
            idx = jax.random.permutation(jax.random.fold_in(KEY, e), N)[slot * 5 : slot * 5 + 5]
            g = jax.grad(loss)(params, (data[0][idx], data[1][idx]))
            u, state = opt.update(g, state, params)
            params = optax.apply_updates(params, u)
        assert_tree_close(r.params, params)


def test_learning_rate_and_gradient_norm_are_recorded_every_step():
    with jax.enable_x64(True):
        data = (jnp.asarray(X), jnp.asarray(Y))

        def loss(p, b):
            return jnp.mean((b[0] @ p["w"] + p["b"] - b[1]) ** 2)

        schedule = optax.linear_schedule(0.1, 0.01, 10)
        injected = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
        r = fit(loss, params0(), data, optimizer=injected, steps=12)
        # (inject_hyperparams keeps the rate in float32)
        want = [float(schedule(t)) for t in range(12)]
        np.testing.assert_allclose(r.step_metrics["lr"], want, rtol=1e-6)
        r2 = fit(
            loss, params0(), data, optimizer=optax.sgd(schedule), steps=12, learning_rate=schedule
        )
        np.testing.assert_allclose(r2.step_metrics["lr"], r.step_metrics["lr"])
        r3 = fit(loss, params0(), data, optimizer=optax.sgd(0.1), steps=3)
        assert np.isnan(r3.step_metrics["lr"]).all() and r3.aux_history == {}
        # The gradient norm of step t, at the params before it (a closed form's gradient).
        params = jax.tree.map(np.asarray, params0())
        for t in range(3):
            err = X @ params["w"] + params["b"] - Y
            grad = {"w": 2 * X.T @ err / N, "b": 2 * err.mean()}
            norm = np.sqrt(np.sum(grad["w"] ** 2) + grad["b"] ** 2)
            assert np.isclose(r3.step_metrics["grad_norm"][t], norm, rtol=1e-12)
            params = {k: params[k] - 0.1 * grad[k] for k in params}


def test_a_loss_that_is_not_a_mean_is_reported_once():
    data = (jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32))
    p0 = {"w": jnp.zeros(D), "b": jnp.zeros(())}
    kw = dict(optimizer=optax.sgd(0.001), steps=2, batch_size=5)

    def summed(p, b):
        return jnp.sum((b[0] @ p["w"] + p["b"] - b[1]) ** 2)

    def mean_plus_penalty(p, b):
        return jnp.mean((b[0] @ p["w"] + p["b"] - b[1]) ** 2) + 0.1 * jnp.sum(p["w"] ** 2)

    with pytest.warns(LossContractWarning, match="not look like a mean"):
        fit(summed, p0, data, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(mean_plus_penalty, p0, data, **kw)  # a mean plus a batch-independent term
        fit(summed, p0, data, check_loss=False, **kw)  # turned off
        fit(summed, p0, data, **{**kw, "batch_size": 6})  # no ragged batch: exact anyway


def test_wrong_returns_are_explained():
    data = (jnp.asarray(X), jnp.asarray(Y))
    kw = dict(optimizer=optax.sgd(0.05), steps=2)
    with pytest.raises(TypeError, match=r"has_aux=True loss_fn must return a pair \(loss, aux\)"):
        fit(lambda p, b: jnp.mean(b[0] @ p["w"]), params0(), data, has_aux=True, **kw)
    with pytest.raises(TypeError, match="aux that loss_fn returns must be a dict"):
        fit(lambda p, b: (jnp.mean(b[0] @ p["w"]), 1.0), params0(), data, has_aux=True, **kw)
    with pytest.raises(TypeError, match=r"aux\['e'\] must be a scalar"):
        fit(
            lambda p, b: (jnp.mean(b[0] @ p["w"]), {"e": b[1]}), params0(), data, has_aux=True, **kw
        )
    with pytest.raises(TypeError, match="model_state= loss_fn must return a pair"):
        fit(lambda p, s, b: jnp.mean(b[0] @ p["w"]), params0(), data, model_state=0.0, **kw)


_FOUR_DEVICES = """
import jax, jax.numpy as jnp, numpy as np, optax
jax.config.update("jax_enable_x64", True)
import test_fit_research as t
data = (jnp.asarray(t.X), jnp.asarray(t.Y))
state0 = {"mean": jnp.zeros(t.D), "count": jnp.zeros((), jnp.int32)}
kw = dict(optimizer=optax.adam(0.05), steps=12, batch_size=8, key=t.KEY, with_key=True,
          has_aux=True, model_state=state0)
one = t.fit(t.stateful_loss, t.params0(), data, devices=1, **kw)
four = t.fit(t.stateful_loss, t.params0(), data, devices=4, **kw)
for a, b in zip(jax.tree.leaves(four.state), jax.tree.leaves(one.state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(four.aux_history["mae"], one.aux_history["mae"], rtol=1e-10)
print("same")
"""


@pytest.mark.slow
def test_a_stateful_stochastic_model_on_four_devices_equals_one_device():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])]),
    }
    out = subprocess.run(
        [sys.executable, "-c", _FOUR_DEVICES], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "same" in out.stdout, out.stderr[-2000:]


AUX_MODEL = """
import dataclasses
import jax, jax.numpy as jnp
from mlgrad.models import linear_regression


@dataclasses.dataclass
class Config:
    noise: float = 0.5


def build(cfg, data):
    base = linear_regression.build(linear_regression.Config(standardize=True), data)

    def loss(params, batch, key):  # noisy targets (a key per step); the batch's mean as aux
        x, y = batch
        value = base.loss(params, (x, y + cfg.noise * jax.random.normal(key, y.shape)))
        return value, {"mean_y": jnp.mean(y), "first_x": x[0, 0]}

    return base._replace(loss=loss, has_aux=True, with_key=True)
"""

AUX_CONFIG = """
name: noisy
seed: 0
model: {name: userpkg_aux.model, noise: 0.5}
data: {name: ice_cream, features: [temp], target: cons}
optimizer: {name: sgd, learning_rate: 0.1}
train: {steps: 12, batch_size: null, log_every: 1}
"""


def test_the_cli_trains_a_model_with_a_key_and_logs_its_aux(tmp_path, monkeypatch):
    import json

    from mlgrad.cli import main
    from mlgrad.data import load

    package = tmp_path / "userpkg_aux"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(AUX_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    Path("noisy.yaml").write_text(AUX_CONFIG)
    assert main(["train", "noisy.yaml", "--out", "run", "--no-plots", "-q"]) == 0
    records = [json.loads(x) for x in Path("run/metrics.jsonl").read_text().splitlines()]
    data = load("ice_cream")
    assert [r["step"] for r in records] == list(range(1, 13))
    for r in records:  # full batches: the aux is the data's own, every step
        assert r["aux/mean_y"] == pytest.approx(float(np.mean(data.y_train)), rel=1e-6)
        assert r["aux/first_x"] == pytest.approx(float(data.x_train[0, 0]), rel=1e-6)
    # A key per step: the noisy losses differ from the noiseless run's, and resume is exact.
    assert main(["train", "noisy.yaml", "--out", "run2", "--no-plots", "-q", "train.steps=6"]) == 0
    assert (
        main(
            [
                "train",
                "run2/config.yaml",
                "--out",
                "run2",
                "--no-plots",
                "-q",
                "--resume",
                "train.steps=12",
            ]
        )
        == 0
    )
    resumed = [json.loads(x) for x in Path("run2/metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in records]
    # A batch that does not divide the data is refused before anything is written.
    assert main(["train", "noisy.yaml", "--out", "run3", "train.batch_size=7"]) == 2
    assert not Path("run3").exists()
