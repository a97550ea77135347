"""Tests for mlgrad.training.sweep: every run of a sweep equals the same run alone via fit.

References: each run is repeated alone with ``mlgrad.fit`` (same init key, a plain optax
optimizer with that fixed learning rate, same batch order); converged runs are checked against
NumPy's least-squares solution; divergence against fit's own TrainingDivergedError.
"""

from __future__ import annotations

import csv
import importlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlgrad.training import TrainingDivergedError, fit
from mlgrad.training.sweep import SweepResult, sweep

# the module (mlgrad.training.sweep, as an attribute, is the function of the same name)
sweep_module = importlib.import_module("mlgrad.training.sweep")

N, D = 30, 3
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, D)).astype(np.float32)
TRUE_W = np.array([1.5, -2.0, 0.5], np.float32)
Y = (X @ TRUE_W + 0.3 + 0.1 * RNG.normal(size=N)).astype(np.float32)
DATA = (jnp.asarray(X), jnp.asarray(Y))
SEEDS = [0, 3]
STEPS = 150


def loss(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def init(key):
    return {"w": jax.random.normal(key, (D,)), "b": jnp.zeros(())}


def solo(seed, lr, *, optimizer_fn=optax.sgd, kwargs=None, batch_size=None, data=DATA):
    """The same run alone via fit, with mlgrad train's key convention."""
    init_key, key = jax.random.split(jax.random.PRNGKey(seed))
    optimizer = optimizer_fn(learning_rate=lr, **(kwargs or {}))
    return fit(
        loss, init(init_key), data, optimizer=optimizer, steps=STEPS, batch_size=batch_size, key=key
    )


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def assert_run_matches(result: SweepResult, i: int, alone) -> None:
    assert rel_err(result.histories[i], alone.history) <= 1e-6
    for got, want in zip(
        jax.tree.leaves(result.params), jax.tree.leaves(alone.params), strict=True
    ):
        assert rel_err(np.asarray(got)[i], want) <= 1e-6


CASES = [
    pytest.param(
        optax.sgd, {"momentum": 0.5}, None, id="sgd-momentum-full-batch", marks=pytest.mark.slow
    ),  # CI budget: test_float32_ice_cream_runs_equal_fit_alone[None] sweeps full batches
    pytest.param(optax.sgd, {}, 7, id="sgd-ragged-mini-batch"),  # 30 = 4 * 7 + 2
    pytest.param(optax.adam, {"b1": 0.8}, 10, id="adam-mini-batch"),
]


@pytest.mark.parametrize(("optimizer_fn", "kwargs", "batch_size"), CASES)
def test_each_run_equals_fit_alone(optimizer_fn, kwargs, batch_size):
    # float64: in float32 a vmapped dot product may sum in another order than the solo run's
    # (about 1e-7 per step), which SGD's noise amplifies to about 1e-5 in 150 steps.
    with jax.enable_x64(True):
        each_run_equals_fit_alone(optimizer_fn, kwargs, batch_size)


def each_run_equals_fit_alone(optimizer_fn, kwargs, batch_size):
    data = (jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64))
    lrs = [0.01, 0.03, 0.1]
    result = sweep(
        loss,
        init,
        data,
        optimizer_fn=optimizer_fn,
        optimizer_kwargs=kwargs,
        learning_rates=lrs,
        seeds=SEEDS,
        steps=STEPS,
        batch_size=batch_size,
    )
    runs = len(SEEDS) * len(lrs)
    assert result.histories.shape == (runs, STEPS)
    assert result.params["w"].shape == (runs, D)
    assert result.seeds.tolist() == [0, 0, 0, 3, 3, 3]  # seed-major grid
    np.testing.assert_allclose(result.learning_rates, lrs * 2)
    np.testing.assert_allclose(result.opt_state.hyperparams["learning_rate"], lrs * 2, rtol=1e-7)
    assert not result.diverged.any()
    for i, (seed, lr) in enumerate(zip(result.seeds, result.learning_rates, strict=True)):
        assert_run_matches(
            result,
            i,
            solo(
                int(seed),
                float(lr),
                optimizer_fn=optimizer_fn,
                kwargs=kwargs,
                batch_size=batch_size,
                data=data,
            ),
        )
    # Final losses: the full-data loss at each run's final params.
    for i in range(runs):
        params = jax.tree.map(lambda p, i=i: p[i], result.params)
        assert rel_err(result.final_losses[i], loss(params, data)) <= 1e-6


@pytest.mark.slow  # long for CI; run with -m slow
def test_only_the_learning_rate_is_injected():
    """The other optimizer arguments stay constants, as in ``optimizer_fn(...)``: an integer
    one (lbfgs's memory size, a Python int it loops over) works, and the state holds only the
    learning rate as a hyperparameter."""
    with jax.enable_x64(True):
        data = (jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64))
        kwargs = {"memory_size": 3}
        result = sweep(
            loss,
            init,
            data,
            optimizer_fn=optax.lbfgs,
            optimizer_kwargs=kwargs,
            learning_rates=[0.5, 1.0],
            seeds=[0],
            steps=20,
        )
        assert set(result.opt_state.hyperparams) == {"learning_rate"}
        for i, lr in enumerate([0.5, 1.0]):
            init_key, key = jax.random.split(jax.random.PRNGKey(0))
            alone = fit(
                loss,
                init(init_key),
                data,
                optimizer=optax.lbfgs(learning_rate=lr, **kwargs),
                steps=20,
                key=key,
            )
            np.testing.assert_allclose(result.histories[i], alone.history, rtol=1e-10)
            np.testing.assert_allclose(np.asarray(result.params["w"])[i], alone.params["w"])


@pytest.mark.slow  # long for CI; run with -m slow
def test_repeated_seeds_are_legal_and_give_identical_runs():
    """The epoch orders are drawn per listed seed and shared by that seed's learning rates; a
    seed listed twice repeats its runs (bit for bit), each equal to fit alone."""
    with jax.enable_x64(True):
        data = (jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64))
        lrs = [0.02, 0.1]
        seeds = [5, 3, 5]
        result = sweep(
            loss,
            init,
            data,
            optimizer_fn=optax.sgd,
            learning_rates=lrs,
            seeds=seeds,
            steps=STEPS,
            batch_size=7,
        )
        assert result.seeds.tolist() == [5, 5, 3, 3, 5, 5]
        np.testing.assert_array_equal(result.learning_rates, lrs * 3)
        np.testing.assert_array_equal(result.histories[:2], result.histories[4:])
        for leaf in jax.tree.leaves(result.params):
            np.testing.assert_array_equal(np.asarray(leaf)[:2], np.asarray(leaf)[4:])
        assert not np.array_equal(result.histories[0], result.histories[2])  # other orders
        for i, (seed, lr) in enumerate(zip(result.seeds, result.learning_rates, strict=True)):
            alone = solo(int(seed), float(lr), batch_size=7, data=data)
            assert_run_matches(result, i, alone)


def test_converged_runs_reach_the_least_squares_solution():
    result = sweep(
        loss,
        init,
        DATA,
        optimizer_fn=optax.sgd,
        learning_rates=[0.1, 0.3],
        seeds=[0, 1, 2],
        steps=400,
    )
    design = np.hstack([X.astype(np.float64), np.ones((N, 1))])
    coef = np.linalg.lstsq(design, Y.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(result.params["w"], np.broadcast_to(coef[:D], (6, D)), atol=1e-4)
    np.testing.assert_allclose(result.params["b"], np.full(6, coef[D]), atol=1e-4)


def test_one_compiled_program_per_shape():
    traces = []

    def counting_init(key):
        traces.append(1)  # runs once per trace of the program (vmapped, not per run)
        return init(key)

    before = sweep_module.compilations
    kw = dict(optimizer_fn=optax.sgd, steps=20, batch_size=7)
    sweep(loss, counting_init, DATA, learning_rates=[0.1, 0.2, 0.3], seeds=[0, 1], **kw)
    assert (len(traces), sweep_module.compilations - before) == (1, 1)
    # Other values, the same numbers of seeds and learning rates: the same program.
    sweep(loss, counting_init, DATA, learning_rates=[0.5, 0.05, 1.0], seeds=[4, 6], **kw)
    assert (len(traces), sweep_module.compilations - before) == (1, 1)
    # The program's shapes are (seeds, learning rates), not their product: the transposed
    # grid of 3 seeds x 2 learning rates is another program.
    sweep(loss, counting_init, DATA, learning_rates=[0.5, 0.05], seeds=[4, 5, 6], **kw)
    assert (len(traces), sweep_module.compilations - before) == (2, 2)


@pytest.mark.slow  # long for CI; run with -m slow
def test_diverging_learning_rate_is_reported_and_does_not_poison_the_others():
    with jax.enable_x64(True):
        diverging_learning_rate_is_reported()


def diverging_learning_rate_is_reported():
    data = (jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64))
    lrs = [0.05, 100.0, 0.1]
    result = sweep(
        loss,
        init,
        data,
        optimizer_fn=optax.sgd,
        learning_rates=lrs,
        seeds=SEEDS,
        steps=STEPS,
        batch_size=7,
    )
    np.testing.assert_array_equal(result.diverged, [False, True, False] * 2)
    assert np.isnan(result.final_losses[result.diverged]).all()
    assert np.isfinite(result.final_losses[~result.diverged]).all()
    for i, (seed, lr) in enumerate(zip(result.seeds, result.learning_rates, strict=True)):
        if lr == 100.0:
            with pytest.raises(TrainingDivergedError):
                solo(int(seed), float(lr), batch_size=7, data=data)
        else:
            assert_run_matches(result, i, solo(int(seed), float(lr), batch_size=7, data=data))
    rows = result.table()
    assert [r["diverged"] for r in rows] == result.diverged.tolist()
    assert rows[1]["seed"] == 0 and rows[1]["learning_rate"] == 100.0
    parsed = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [p["run"] for p in parsed] == [str(i) for i in range(6)]
    assert parsed[1]["final_loss"] == "nan" and parsed[1]["diverged"] == "True"


@pytest.mark.parametrize(
    "batch_size", [None, pytest.param(7, marks=pytest.mark.slow)]
)  # 30 periods = 4 * 7 + 2; the ragged one under slow (CI budget; 1e-6 needs JAX >= 0.10.2)
def test_float32_ice_cream_runs_equal_fit_alone(batch_size):
    """The acceptance model (configs/linear_regression.yaml) in float32: 1e-6 relative.

    The solo run uses the same injected optimizer: with a plain ``optax.sgd(lr)`` XLA folds
    the constant learning rate into the step's arithmetic and rounds differently (about 1e-5
    relative after 200 mini-batch steps at lr = 1 in float32; identical within 1e-6 in
    float64, as the tests above check).
    """
    import mlgrad.models.linear_regression as linear_regression

    from mlgrad.data import load

    dataset = load("ice_cream", features=["temp"], target="cons", val_split=0.0)
    model = linear_regression.build(linear_regression.Config(), dataset)
    data = (jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train))
    assert data[0].dtype == jnp.float32
    result = sweep(
        model.loss,
        model.init,
        data,
        optimizer_fn=optax.sgd,
        learning_rates=[0.03, 0.3, 1.0],
        seeds=SEEDS,
        steps=200,
        batch_size=batch_size,
    )
    assert not result.diverged.any()
    for i, (seed, lr) in enumerate(zip(result.seeds, result.learning_rates, strict=True)):
        init_key, key = jax.random.split(jax.random.PRNGKey(int(seed)))
        alone = fit(
            model.loss,
            model.init(init_key),
            data,
            optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=float(lr)),
            steps=200,
            batch_size=batch_size,
            key=key,
        )
        assert_run_matches(result, i, alone)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seeds": []}, ValueError, "seeds"),
        ({"seeds": [0.5]}, TypeError, "seeds"),
        ({"seeds": [-1]}, ValueError, "seeds"),
        ({"learning_rates": [0.1, -1.0]}, ValueError, "learning_rates"),
        ({"learning_rates": ["fast"]}, TypeError, "learning_rates"),
        ({"optimizer_fn": optax.sgd(0.1)}, TypeError, "optimizer_fn"),
        ({"optimizer_kwargs": {"learning_rate": 0.1}}, ValueError, "learning_rates="),
        ({"optimizer_kwargs": {"momentum": [0.9]}}, TypeError, "hashable"),
        ({"steps": 0}, ValueError, "steps"),
    ],
)
def test_user_errors_name_the_argument(kwargs, error, match):
    args = dict(optimizer_fn=optax.sgd, learning_rates=[0.1], seeds=[0], steps=5)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sweep(loss, init, DATA, **args)


def _arrays(result):
    return [result.histories, result.final_losses, *jax.tree.leaves(result.params)]


@pytest.mark.parametrize(
    "batch_size",
    [pytest.param(None, marks=pytest.mark.slow), 7],
    ids=["full-batch", "ragged-mini-batch"],
)
def test_chunks_and_continuing_from_a_state_are_bit_identical_to_one_program(batch_size):
    # The reference is the whole sweep as one compiled chunk (the default without callback).
    kw = dict(
        optimizer_fn=optax.adam,
        learning_rates=[0.05, 0.2],
        seeds=[0, 3],
        steps=60,
        batch_size=batch_size,
    )
    whole = sweep(loss, init, DATA, **kw)
    states = []
    chunked = sweep(loss, init, DATA, chunk_size=20, callback=states.append, **kw)
    assert [int(s.step) for s in states] == [20, 40, 60]
    for got, want in zip(_arrays(chunked), _arrays(whole), strict=True):
        np.testing.assert_array_equal(got, want)
    # Continued from the state after 20 steps (as a resumed sweep is).
    resumed = sweep(loss, init, DATA, state=states[0], chunk_size=20, **kw)
    for got, want in zip(_arrays(resumed), _arrays(whole), strict=True):
        np.testing.assert_array_equal(got, want)


def test_chunk_lengths_follow_the_measured_speed():
    # Powers of two of about CHUNK_SECONDS at the speed of a FIRST_CHUNK-step chunk, aligned
    # so that a sweep (or a resumed one) needs at most three chunk programs.
    first, seconds = sweep_module.FIRST_CHUNK, sweep_module.CHUNK_SECONDS
    assert sweep_module._timed_length(seconds / 4) == 4 * first
    assert sweep_module._timed_length(1e-9) == sweep_module.MAX_CHUNK
    assert sweep_module._timed_length(100.0) == first  # never below FIRST_CHUNK
    lengths, remaining, timed = [], 1000, None
    while remaining:
        lengths.append(sweep_module._next_length(remaining, timed))
        remaining -= lengths[-1]
        timed = timed or (256 if lengths[-1] == first else None)
    assert lengths == [1000 % first, first, 256, 256, 256, first, first]
    assert set(lengths) == {1000 % first, first, 256}


def test_a_callback_that_raises_stops_the_sweep_and_its_state_continues_it():
    kw = dict(optimizer_fn=optax.sgd, learning_rates=[0.1], seeds=[1], steps=32, batch_size=7)
    whole = sweep(loss, init, DATA, **kw)
    seen = []

    def stop_after_first(state):
        seen.append(state)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(loss, init, DATA, chunk_size=16, callback=stop_after_first, **kw)
    assert int(seen[0].step) == 16 and seen[0].histories.shape == (1, 16)
    resumed = sweep(loss, init, DATA, state=seen[0], **kw)  # the other 16 steps, one chunk
    for got, want in zip(_arrays(resumed), _arrays(whole), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="sweep of 1 runs, this one has 2"):
        sweep(loss, init, DATA, state=seen[0], **{**kw, "seeds": [1, 2]})


@pytest.mark.slow  # CI budget: test_fit_research checks each option against plain JAX
def test_a_sweep_of_a_stateful_stochastic_model_equals_its_solo_runs():
    # Two seeds of a loss with a key, aux and model state (dropout + running statistics):
    # each run of the vmapped sweep is fit's run with that seed, to the last bits of float64
    # (vmapped batch reductions may round differently: 1e-16 relative, as the module says).
    import test_fit_research as research

    def init_fn(key):
        return {"w": 0.1 * jax.random.normal(key, (research.D,)), "b": jnp.zeros(())}

    with jax.enable_x64(True):
        data = (jnp.asarray(research.X), jnp.asarray(research.Y))
        state0 = {"mean": jnp.zeros(research.D), "count": jnp.zeros((), jnp.int32)}
        options = dict(with_key=True, has_aux=True, model_state=state0, batch_size=6)
        result = sweep(
            research.stateful_loss,
            init_fn,
            data,
            optimizer_fn=optax.sgd,
            learning_rates=[0.05],
            seeds=[0, 1],
            steps=20,
            **options,
        )
        for i, seed in enumerate([0, 1]):
            init_key, key = jax.random.split(jax.random.PRNGKey(seed))
            alone = fit(
                research.stateful_loss,
                init_fn(init_key),
                data,
                key=key,
                optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=0.05),
                steps=20,
                **options,
            )
            np.testing.assert_allclose(result.histories[i], alone.history, rtol=1e-12)
            np.testing.assert_allclose(
                result.aux_histories["mae"][i], alone.aux_history["mae"], rtol=1e-12
            )
            for got, want in zip(
                jax.tree.leaves((result.params, result.model_state)),
                jax.tree.leaves((alone.params, alone.model_state)),
                strict=True,
            ):
                np.testing.assert_allclose(np.asarray(got)[i], np.asarray(want), rtol=1e-12)
