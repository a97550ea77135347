"""``fit`` trains the modules of Equinox, Flax NNX and Flax Linen (issue I, item 5).

Each framework's small MLP is trained by ``fit`` and by the same training written by hand
with optax in that framework's own idiom (Equinox: ``eqx.partition``/``eqx.combine``; NNX:
``nnx.Optimizer`` updating the module in place; Linen: ``model.apply`` with mutable batch
statistics), step for step on the same batches (``permutation(fold_in(key, epoch), n)``)
and keys (``fold_in(split(key)[1], t)``), in float64: parameters, model states, losses and
aux outputs equal to rounding. Runs resumed from a checkpoint are bit-identical to
uninterrupted ones.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

with warnings.catch_warnings():
    # Flax 0.12.0 (the newest that installs beside JAX 0.8.0, mlgrad's floor) probes a name
    # that JAX 0.8.0 deprecates; later Flax releases do not
    deprecated = r"jax\.(array_ref|ArrayRef) is deprecated"
    warnings.filterwarnings("ignore", deprecated, DeprecationWarning)
    import flax.linen as nn
    from flax import nnx

from mlgrad.training import fit
from mlgrad.training.fit import _run_chunk
from mlgrad.training.modules import from_linen, from_nnx

N, D, H, C, BATCH, STEPS = 24, 4, 8, 3, 6, 12
RNG = np.random.default_rng(11)
X = RNG.normal(size=(N, D))
LABELS = (X @ RNG.normal(size=(D, C))).argmax(axis=1)
KEY = jax.random.PRNGKey(3)


def data():
    return jnp.asarray(X), jnp.asarray(LABELS)


def cross_entropy(logits, labels):
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}


def batch_of(t):
    """The batch of step t as fit draws it."""
    epoch, slot = divmod(t, N // BATCH)
    order = jax.random.permutation(jax.random.fold_in(KEY, epoch), N)
    idx = order[slot * BATCH : (slot + 1) * BATCH]
    x, y = data()
    return x[idx], y[idx]


def key_of(t):
    """The loss's key of step t as fit derives it (with_key=True)."""
    return jax.random.fold_in(jax.random.split(KEY)[1], t)


def arrays(tree):
    """The array leaves (typed PRNG keys as their key data), for exact comparisons."""
    leaves = jax.tree.leaves(tree)
    return [
        np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
        for x in leaves
        if isinstance(x, jax.Array)
    ]


def assert_close(got, want, rtol=1e-12):
    got, want = arrays(got), arrays(want)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-13)


def assert_identical(got, want):
    got, want = arrays(got), arrays(want)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def resumed(loss, params, directory, model_state=None, **kw):
    """Half the steps, a checkpoint of the state saved and restored, then the rest from it:
    the final state and the aux history."""
    from mlgrad.training import checkpoint

    half = fit(loss, params, data(), model_state=model_state, **{**kw, "steps": STEPS // 2})
    checkpoint.save(directory, half.state)
    restored = checkpoint.restore(directory, half.state)
    assert type(restored.params) is type(half.state.params)
    assert_identical(restored, half.state)
    rest = fit(loss, None, data(), state=restored, **kw)
    return rest.state, np.concatenate([half.aux_history["accuracy"], rest.aux_history["accuracy"]])


# ------------------------------------------------------------------------------------------
# Equinox: the module itself is the params
# ------------------------------------------------------------------------------------------


class EqxClassifier(eqx.Module):
    """Trained: the MLP's float arrays. Held fixed: its activation functions, a Python float
    (the logit scale), the dropout layer's rate and flag, an integer array and a PRNG key."""

    mlp: eqx.nn.MLP
    dropout: eqx.nn.Dropout
    scale: float
    classes: jax.Array
    key: jax.Array

    def __init__(self, key):
        self.mlp = eqx.nn.MLP(D, C, H, 2, activation=jnp.tanh, key=key)
        self.dropout = eqx.nn.Dropout(0.25)
        self.scale = 2.0
        self.classes = jnp.arange(C)
        self.key = jax.random.key(5)  # a typed key array

    def __call__(self, x, key):
        h = self.dropout(x, key=key)
        return self.scale * jax.vmap(self.mlp)(h)[:, self.classes]


def eqx_loss(model, batch, key):
    x, y = batch
    return cross_entropy(model(x, key), y)


def eqx_by_hand(model, optimizer):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, batch, key):
        def objective(p):
            return eqx_loss(eqx.combine(p, static), batch, key)

        (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, aux["accuracy"]

    losses, accuracy = [], []
    for t in range(STEPS):
        params, opt_state, value, acc = step(params, opt_state, batch_of(t), key_of(t))
        losses.append(value)
        accuracy.append(acc)
    return eqx.combine(params, static), np.array(losses), np.array(accuracy)


def test_an_equinox_module_trains_its_float_arrays_and_holds_the_rest_fixed(tmp_path):
    with jax.enable_x64(True):
        model = EqxClassifier(jax.random.PRNGKey(0))
        assert model.mlp.layers[0].weight.dtype == jnp.float64
        optimizer = optax.adam(0.02)
        kw = dict(
            optimizer=optimizer,
            steps=STEPS,
            batch_size=BATCH,
            key=KEY,
            with_key=True,
            has_aux=True,
        )
        r = fit(eqx_loss, model, data(), **kw)
        want, losses, accuracy = eqx_by_hand(model, optimizer)
        assert isinstance(r.params, EqxClassifier)
        assert_close(r.params, want)
        np.testing.assert_allclose(r.history, losses, rtol=1e-12)
        np.testing.assert_allclose(r.aux_history["accuracy"], accuracy, rtol=1e-12)
        assert not np.allclose(r.params.mlp.layers[0].weight, model.mlp.layers[0].weight)
        # the fixed leaves are the model's own objects, untouched
        assert r.params.scale is model.scale and r.params.classes is model.classes
        assert r.params.key is model.key
        assert r.params.dropout.p == 0.25 and r.params.dropout.inference is False
        assert r.params.mlp.activation is model.mlp.activation
        # the optimizer saw eqx.filter's form: None in place of the fixed leaves
        assert r.opt_state[0].mu.scale is None and r.opt_state[0].mu.classes is None
        # resumed from a checkpoint (the fixed leaves come from the template): bit-identical
        state, acc = resumed(eqx_loss, model, tmp_path, **kw)
        assert isinstance(state.params, EqxClassifier) and state.params.scale is model.scale
        assert_identical(state, r.state)
        np.testing.assert_array_equal(acc, r.aux_history["accuracy"])
        # the same module and loss again: the compiled program is reused
        before = _run_chunk._cache_size()
        again = fit(eqx_loss, model, data(), **kw)
        assert _run_chunk._cache_size() == before
        assert_identical(again.state, r.state)


def test_params_that_cannot_be_trained_are_named_with_their_path_and_type():
    def loss(p, b):
        return jnp.mean(b[0] @ p["w"])

    kw = dict(optimizer=optax.sgd(0.1), steps=2)
    x = jnp.ones((4, 3))
    with pytest.raises(TypeError, match=r"params\['w'\] is an array of dtype int32 and shape \(3,"):
        fit(loss, {"w": jnp.zeros(3, jnp.int32)}, (x,), **kw)
    with pytest.raises(TypeError, match=r"params\['f'\] is a value of type .*\(relu\).* module"):
        fit(loss, {"w": jnp.zeros(3), "f": jax.nn.relu}, (x,), **kw)
    with pytest.raises(TypeError, match=r"params\['layers'\]\[1\] is a value of type str"):
        fit(loss, {"w": jnp.zeros(3), "layers": [1.0, "relu"]}, (x,), **kw)
    with pytest.raises(TypeError, match=r"params\['k'\] is an array of dtype key<fry> and"):
        fit(loss, {"w": jnp.zeros(3), "k": jax.random.key(0)}, (x,), **kw)
    with pytest.raises(TypeError, match=r"params has nothing to train.*params\.fn: a value"):
        fit(loss, eqx.nn.Lambda(jax.nn.relu), (x,), **kw)
    with pytest.raises(TypeError, match=r"state\.params\['w'\] is an array of dtype int32"):
        state = fit(loss, {"w": jnp.zeros(3)}, (x,), **kw).state
        fit(loss, None, (x,), state=state._replace(params={"w": jnp.zeros(3, jnp.int32)}), **kw)
    with pytest.raises(TypeError, match=r"Flax NNX module \(Linear\).*from_nnx"):
        fit(loss, {"layer": nnx.Linear(3, 1, rngs=nnx.Rngs(0))}, (x,), **kw)
    # Python numbers in dicts, lists and tuples are still trained (as float arrays)
    r = fit(lambda p, b: jnp.mean((p["a"][0] * b[0] - 2.0) ** 2), {"a": [1, 0.5]}, (x,), **kw)
    assert r.params["a"][0].dtype == jnp.float32 and float(r.params["a"][0]) != 1.0


# ------------------------------------------------------------------------------------------
# Flax NNX: nnx.Param is the params, every other variable the model state
# ------------------------------------------------------------------------------------------


class NNXClassifier(nnx.Module):
    def __init__(self, rngs):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        self.hidden = nnx.Linear(D, H, use_bias=False, rngs=rngs, **f64)  # BatchNorm's bias
        self.norm = nnx.BatchNorm(H, momentum=0.8, rngs=rngs, **f64)
        # its statistics are float32 whatever the dtypes (Flax 0.12): float64 here
        self.norm.mean = nnx.BatchStat(jnp.zeros(H, jnp.float64))
        self.norm.var = nnx.BatchStat(jnp.ones(H, jnp.float64))
        self.dropout = nnx.Dropout(0.25, rngs=rngs)
        self.out = nnx.Linear(H, C, rngs=rngs, **f64)

    def __call__(self, x):
        return self.out(self.dropout(jnp.tanh(self.norm(self.hidden(x)))))


def nnx_model():
    return NNXClassifier(nnx.Rngs(params=0, dropout=1))


def nnx_loss(model, batch):
    x, y = batch
    return cross_entropy(model(x), y)


def nnx_by_hand(optimizer):
    """NNX's own stateful idiom: the module updated in place by nnx.Optimizer."""
    model = nnx_model()
    opt = nnx.Optimizer(model, optimizer, wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        grad_fn = nnx.value_and_grad(nnx_loss, has_aux=True)
        (value, aux), grads = grad_fn(model, batch)
        opt.update(model, grads)
        return value, aux["accuracy"]

    losses, accuracy = [], []
    for t in range(STEPS):
        value, acc = step(model, opt, batch_of(t))
        losses.append(value)
        accuracy.append(acc)
    return model, np.array(losses), np.array(accuracy)


def test_an_nnx_module_trains_its_params_and_carries_batch_statistics_and_rng_counts(tmp_path):
    with jax.enable_x64(True):
        parts = from_nnx(nnx_model(), nnx_loss)
        assert set(parts.model_state) == {"norm", "dropout"}
        optimizer = optax.adam(0.02)
        kw = dict(optimizer=optimizer, steps=STEPS, batch_size=BATCH, key=KEY, has_aux=True)
        r = fit(parts.loss_fn, parts.params, data(), model_state=parts.model_state, **kw)
        want, losses, accuracy = nnx_by_hand(optimizer)
        assert_close(r.params, nnx.state(want, nnx.Param))
        assert_close(r.model_state, nnx.state(want, nnx.Not(nnx.Param)))
        np.testing.assert_allclose(r.history, losses, rtol=1e-12)
        np.testing.assert_allclose(r.aux_history["accuracy"], accuracy, rtol=1e-12)
        # dropout drew a new mask every step (the stream's counter), statistics moved
        assert int(r.model_state["dropout"]["rngs"]["count"][...]) == STEPS
        assert not np.allclose(r.model_state["norm"]["mean"][...], 0.0)
        trained = parts.model(r)
        assert isinstance(trained, NNXClassifier)
        assert_close(nnx.state(trained), nnx.state(want))
        # resumed from a checkpoint: bit-identical, model state (RNG key, counter) included
        state, acc = resumed(parts.loss_fn, parts.params, tmp_path, parts.model_state, **kw)
        assert_identical(state, r.state)
        np.testing.assert_array_equal(acc, r.aux_history["accuracy"])


def test_an_nnx_module_without_state_is_a_stateless_loss():
    with jax.enable_x64(True):
        model = nnx.Linear(D, C, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
        parts = from_nnx(model, lambda m, b: cross_entropy(m(b[0]), b[1])[0])
        assert parts.model_state is None
        # a ragged last batch is allowed (no key, no model state)
        kw = dict(optimizer=optax.sgd(0.5), steps=8, batch_size=5)
        r = fit(parts.loss_fn, parts.params, data(), **kw)
        w = model.kernel[...]
        assert not np.allclose(parts.model(r).kernel[...], w)
        np.testing.assert_array_equal(model.kernel[...], w)  # the given module is unchanged


# ------------------------------------------------------------------------------------------
# Flax Linen: variables["params"] is the params, the other collections the model state
# ------------------------------------------------------------------------------------------


class LinenClassifier(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        h = nn.Dense(H, use_bias=False, **f64)(x)  # a bias before BatchNorm: no gradient
        h = nn.BatchNorm(use_running_average=not train, momentum=0.8, **f64)(h)
        h = nn.Dropout(0.25, deterministic=not train)(jnp.tanh(h))
        return nn.Dense(C, **f64)(h)


def linen_loss(apply, batch, key):
    x, y = batch
    return cross_entropy(apply(x, rngs={"dropout": key}), y)


def linen_by_hand(model, variables, optimizer):
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, stats, opt_state, batch, key):
        def objective(p):
            logits, updates = model.apply(
                {"params": p, "batch_stats": stats},
                batch[0],
                mutable=["batch_stats"],
                rngs={"dropout": key},
            )
            value, aux = cross_entropy(logits, batch[1])
            return value, (aux, updates["batch_stats"])

        (value, (aux, stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, stats, opt_state, value, aux["accuracy"]

    losses, accuracy = [], []
    for t in range(STEPS):
        params, stats, opt_state, value, acc = step(
            params, stats, opt_state, batch_of(t), key_of(t)
        )
        losses.append(value)
        accuracy.append(acc)
    return {"params": params, "batch_stats": stats}, np.array(losses), np.array(accuracy)


@pytest.mark.slow  # CI budget: NNX and Equinox run by default
def test_linen_variables_train_params_and_carry_batch_stats(tmp_path):
    with jax.enable_x64(True):
        model = LinenClassifier()
        variables = model.init(jax.random.PRNGKey(0), jnp.asarray(X[:2]))
        # the batch statistics are float32 whatever the dtypes (Flax 0.12): float64 here
        variables = jax.tree.map(lambda v: v.astype(jnp.float64), variables)
        parts = from_linen(model.apply, variables, linen_loss)
        assert set(parts.model_state) == {"batch_stats"}
        optimizer = optax.adam(0.02)
        kw = dict(
            optimizer=optimizer,
            steps=STEPS,
            batch_size=BATCH,
            key=KEY,
            with_key=True,
            has_aux=True,
        )
        r = fit(parts.loss_fn, parts.params, data(), model_state=parts.model_state, **kw)
        want, losses, accuracy = linen_by_hand(model, variables, optimizer)
        trained = parts.model(r)
        assert set(trained) == {"params", "batch_stats"}
        assert_close(trained, want)
        np.testing.assert_allclose(r.history, losses, rtol=1e-12)
        np.testing.assert_allclose(r.aux_history["accuracy"], accuracy, rtol=1e-12)
        state, acc = resumed(parts.loss_fn, parts.params, tmp_path, parts.model_state, **kw)
        assert_identical(state, r.state)
        np.testing.assert_array_equal(acc, r.aux_history["accuracy"])


def test_adapters_refuse_what_they_cannot_train():
    with pytest.raises(TypeError, match="from_nnx: model must be a flax.nnx.Module"):
        from_nnx({"w": jnp.zeros(3)}, nnx_loss)
    with pytest.raises(TypeError, match=r"from_linen: variables .* 'params' collection.*"):
        from_linen(LinenClassifier().apply, {"batch_stats": {}}, linen_loss)
