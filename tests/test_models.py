"""The example models: lookup by name, the Model contract, and each model against NumPy.

Accuracy against the independent solvers (lstsq, scikit-learn, PCA) through the shipped configs
lives in tests/test_model_accuracy.py; here every formula is checked against a NumPy
re-implementation, and the figures are written and read back.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from mlgrad.models import autoencoder as ae
from mlgrad.models import linear_regression as lr
from mlgrad.models import logistic as lg

from mlgrad import registry
from mlgrad.data import Dataset, load
from mlgrad.registry import Model, ModelNotFoundError, find_model
from mlgrad.training import fit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ice_cream() -> Dataset:
    return load("ice_cream")


@pytest.fixture(scope="module")
def ice_cream3() -> Dataset:
    return load("ice_cream", features=["temp", "price", "income"], val_split=0.2)


@pytest.fixture(scope="module")
def cancer() -> Dataset:
    return load("breast_cancer", val_split=0.2, split_seed=0)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load("digits", val_split=0.2, split_seed=0)


def random_like(params, seed: int = 0, scale: float = 0.5):
    """Random parameters with the structure of ``params`` (a point away from the init)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    new = [
        scale * jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, new)


# ---------------------------------------------------------------------------------------------
# lookup


@pytest.mark.parametrize("name", registry.BUILTIN_MODELS)
def test_builtin_models_are_found_by_short_name(name):
    module = find_model(name)
    assert module.__name__ == f"mlgrad.models.{name}"
    assert dataclasses.is_dataclass(module.Config) and callable(module.build)
    module.Config()  # every field has a default


def test_misspelt_model_names_suggest_the_closest_builtin():
    with pytest.raises(ModelNotFoundError, match="(?i)did you mean 'linear_regression'") as info:
        find_model("linear_regresion")
    assert isinstance(info.value, ValueError)
    for name in registry.BUILTIN_MODELS:
        assert name in str(info.value)
    with pytest.raises(ModelNotFoundError, match="not a model name"):
        find_model("not a name")


MY_MODEL = """
import dataclasses
from mlgrad.models import linear_regression

@dataclasses.dataclass
class Config:
    standardize: bool = False

def build(cfg, data):
    return linear_regression.build(linear_regression.Config(cfg.standardize), data)

class Inner:
    Config = Config
    build = staticmethod(build)
"""


def test_a_users_module_is_found_by_dotted_path(tmp_path, monkeypatch, ice_cream):
    package = tmp_path / "userpkg_lookup"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mymodel.py").write_text(MY_MODEL)
    (package / "nobuild.py").write_text("Config = 1\n")
    (package / "broken.py").write_text("import not_an_installed_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [k for k in sys.modules if k.startswith("userpkg_lookup")]:
        monkeypatch.delitem(sys.modules, name)

    module = find_model("userpkg_lookup.mymodel")
    model = module.build(module.Config(), ice_cream)
    assert isinstance(model, Model)
    assert find_model("userpkg_lookup.mymodel:Inner") is module.Inner
    with pytest.raises(ModelNotFoundError, match="no module named 'userpkg_lookup.nothere'"):
        find_model("userpkg_lookup.nothere")
    with pytest.raises(ModelNotFoundError, match="no attribute 'Missing'"):
        find_model("userpkg_lookup.mymodel:Missing")
    with pytest.raises(ModelNotFoundError, match="has no build"):
        find_model("userpkg_lookup.nobuild")
    # A missing dependency inside an existing module is the user's bug: it is not masked.
    with pytest.raises(ModuleNotFoundError, match="not_an_installed_module_xyz"):
        find_model("userpkg_lookup.broken")


# ---------------------------------------------------------------------------------------------
# the Model contract, for every model


def _cases():
    return [
        ("linear_regression", lambda d: lr.build(lr.Config(), d["ice_cream3"]), "ice_cream3"),
        ("logistic", lambda d: lg.build(lg.Config(l2=0.1), d["cancer"]), "cancer"),
        (
            "autoencoder",
            lambda d: ae.build(ae.Config(encoder_sizes=[16], latent=4), d["digits"]),
            "digits",
        ),
    ]


@pytest.mark.parametrize(("name", "make", "key"), _cases(), ids=[c[0] for c in _cases()])
def test_model_contract(name, make, key, ice_cream3, cancer, digits):
    data = {"ice_cream3": ice_cream3, "cancer": cancer, "digits": digits}[key]
    model = make({"ice_cream3": ice_cream3, "cancer": cancer, "digits": digits})
    assert isinstance(model, Model)
    params = random_like(model.init(jax.random.PRNGKey(0)), scale=0.3)
    x, y = jnp.asarray(data.x_train[:37]), jnp.asarray(data.y_train[:37])
    assert model.apply(params, x).shape == y.shape
    # The loss is a mean over the examples plus batch-independent terms, so the mean of the
    # losses of one-example batches is the loss of the batch (the engine relies on this).
    one = jax.jit(jax.vmap(lambda xi, yi: model.loss(params, (xi[None], yi[None]))))
    per_example = one(x, y)
    np.testing.assert_allclose(per_example.mean(), model.loss(params, (x, y)), rtol=1e-5)
    metrics = model.metrics(params, (x, y))
    assert set(metrics) >= {"loss"}
    np.testing.assert_allclose(metrics["loss"], model.loss(params, (x, y)), rtol=1e-6)
    if name == "logistic":
        assert "accuracy" in metrics
    json.dumps(model.report(params))  # JSON-able
    jax.jit(model.loss)(params, (x, y))  # pure: traceable with no Python side effects


# ---------------------------------------------------------------------------------------------
# linear regression


def test_linear_regression_is_an_affine_map_reported_in_data_units(ice_cream3):
    model = lr.build(lr.Config(), ice_cream3)
    params = random_like(model.init(None), seed=3)
    report = model.report(params)
    a = np.array([report["coefficients"][n] for n in ("temp", "price", "income")])
    x = np.asarray(ice_cream3.x_val, np.float64)  # any inputs, also outside the training split
    np.testing.assert_allclose(
        model.apply(params, ice_cream3.x_val), x @ a + report["intercept"], rtol=1e-5
    )


def test_standardisation_uses_training_statistics_only(ice_cream3):
    model = lr.build(lr.Config(), ice_cream3)
    x = np.asarray(ice_cream3.x_train, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    params = {"w": jnp.asarray([1.0, 0.0, 0.0], jnp.float32), "b": jnp.asarray(0.0, jnp.float32)}
    probe = np.stack([mean, mean + std]).astype(np.float32)
    np.testing.assert_allclose(model.apply(params, probe), [0.0, 1.0], atol=1e-5)


def test_unstandardised_parameters_are_the_data_unit_coefficients(ice_cream):
    model = lr.build(lr.Config(standardize=False), ice_cream)
    params = {"w": jnp.asarray([0.003]), "b": jnp.asarray(0.2)}
    report = model.report(params)
    np.testing.assert_allclose(
        [report["coefficients"]["temp"], report["intercept"]], [0.003, 0.2], rtol=1e-6
    )


def test_linear_regression_loss_is_the_mean_squared_error(ice_cream):
    model = lr.build(lr.Config(), ice_cream)
    params = random_like(model.init(None), seed=1)
    report = model.report(params)
    x, y = np.asarray(ice_cream.x_train, np.float64)[:, 0], np.asarray(ice_cream.y_train)
    mse = np.mean((report["coefficients"]["temp"] * x + report["intercept"] - y) ** 2)
    np.testing.assert_allclose(model.loss(params, ice_cream.train), mse, rtol=1e-5)


def test_linear_regression_refuses_several_targets(digits):
    with pytest.raises(ValueError, match="one target"):
        lr.build(lr.Config(), digits)


def test_gradient_descent_path_in_data_units(ice_cream):
    model = lr.build(lr.Config(), ice_cream)
    result = fit(
        model.loss,
        model.init(None),
        ice_cream.train,
        optimizer=optax.sgd(0.1),
        steps=30,
        trace_params=True,
    )
    path = lr._trace_in_data_units(result.params, result, model.init, _to_data(model))
    assert path.shape == (31, 2)  # the initial zeros, then the params after every step
    np.testing.assert_allclose(path[0], [0.0, 0.0], atol=1e-12)
    report = model.report(result.params)
    np.testing.assert_allclose(
        path[-1], [report["coefficients"]["temp"], report["intercept"]], rtol=1e-6
    )
    # Every point is the data-unit line of the traced params: same predictions.
    x = np.asarray(ice_cream.x_train[:5])
    step = 7
    traced = jax.tree.map(lambda t: t[step - 1], result.param_trace)
    np.testing.assert_allclose(
        np.asarray(model.apply(traced, x)), path[step, 0] * x[:, 0] + path[step, 1], rtol=1e-5
    )


def _to_data(model):
    """report() as the (coefficients, intercept) converter the plot uses, for the test above."""

    def convert(w, b):
        w, b = np.asarray(w), np.asarray(b)
        out = [
            model.report({"w": wi, "b": bi})
            for wi, bi in zip(w.reshape(-1, w.shape[-1]), b.reshape(-1), strict=True)
        ]
        a = np.array([list(r["coefficients"].values()) for r in out]).reshape(w.shape)
        c = np.array([r["intercept"] for r in out]).reshape(b.shape)
        return a, c

    return convert


# ---------------------------------------------------------------------------------------------
# logistic unit


def test_logistic_loss_matches_numpy_and_is_stable(cancer):
    with jax.enable_x64(True):
        data = load("breast_cancer", val_split=0.2, split_seed=0, dtype=np.float64)
        lam = 0.05
        model = lg.build(lg.Config(l2=lam), data)
        params = random_like(model.init(None), seed=2, scale=1.0)
        x = np.asarray(data.x_train)
        y = np.asarray(data.y_train)
        z = (x - x.mean(axis=0)) / x.std(axis=0)
        t = z @ np.asarray(params["w"]) + float(params["b"])
        p = 1.0 / (1.0 + np.exp(-t))
        # -log p = log(1 + e^-t) and -log(1 - p) = log(1 + e^t), without cancellation in 1 - p.
        expected = np.mean(y * np.logaddexp(0, -t) + (1 - y) * np.logaddexp(0, t))
        expected += 0.5 * lam * np.sum(np.asarray(params["w"]) ** 2)  # intercept not penalised
        np.testing.assert_allclose(model.loss(params, data.train), expected, rtol=1e-10)
        np.testing.assert_allclose(model.apply(params, x), p, rtol=1e-10)
        accuracy = np.mean((p > 0.5) == (y == 1))
        np.testing.assert_allclose(model.metrics(params, data.train)["accuracy"], accuracy)
    # Logits of +-1000 in float32: exp overflows, the log-loss computed from logits does not.
    model = lg.build(lg.Config(l2=0.0), cancer)
    huge = {"w": jnp.zeros(30, jnp.float32), "b": jnp.asarray(1000.0, jnp.float32)}
    x, y = cancer.train
    loss = float(model.loss(huge, (x, y)))
    np.testing.assert_allclose(loss, 1000.0 * np.mean(y == 0), rtol=1e-6)


def test_logistic_report_converts_to_data_units(cancer):
    model = lg.build(lg.Config(), cancer)
    params = random_like(model.init(None), seed=4)
    report = model.report(params)
    a = np.array(list(report["coefficients"].values()))
    x = np.asarray(cancer.x_val, np.float64)
    logits = x @ a + report["intercept"]
    np.testing.assert_allclose(
        model.apply(params, cancer.x_val), 1 / (1 + np.exp(-logits)), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(list(report["standardized_coefficients"].values()), params["w"])


def test_logistic_refuses_bad_targets_and_penalties(ice_cream, cancer):
    with pytest.raises(ValueError, match="only 0 and 1"):
        lg.build(lg.Config(), ice_cream)
    with pytest.raises(ValueError, match="l2 must be"):
        lg.build(lg.Config(l2=-1.0), cancer)


# ---------------------------------------------------------------------------------------------
# autoencoder


def test_autoencoder_architecture_and_init(digits):
    model = ae.build(ae.Config(encoder_sizes=[32, 16], latent=4), digits)
    params = model.init(jax.random.PRNGKey(0))
    shapes = jax.tree.map(jnp.shape, params)
    assert [shapes["encoder"][f"layer_{i}"]["w"] for i in range(3)] == [(64, 32), (32, 16), (16, 4)]
    assert [shapes["decoder"][f"layer_{i}"]["w"] for i in range(3)] == [(4, 16), (16, 32), (32, 64)]
    custom = ae.build(ae.Config(encoder_sizes=[32], latent=4, decoder_sizes=[8, 8]), digits)
    dec = custom.init(jax.random.PRNGKey(0))["decoder"]
    assert [dec[f"layer_{i}"]["w"].shape for i in range(3)] == [(4, 8), (8, 8), (8, 64)]
    # Glorot normal: weight variance 2 / (fan_in + fan_out); biases start at zero.
    wide = ae.build(ae.Config(encoder_sizes=[512], latent=8), digits)
    w = np.asarray(wide.init(jax.random.PRNGKey(1))["encoder"]["layer_0"]["w"])
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (64 + 512)), rtol=0.03)
    assert not np.any(np.asarray(params["encoder"]["layer_0"]["b"]))


def test_linear_autoencoder_is_the_product_of_its_layers(digits):
    cfg = ae.Config(encoder_sizes=[], latent=8, activation="identity", output_activation="identity")
    model = ae.build(cfg, digits)
    params = model.init(jax.random.PRNGKey(0))
    enc, dec = params["encoder"]["layer_0"], params["decoder"]["layer_0"]
    x = np.asarray(digits.x_val, np.float64)
    expected = (x @ np.asarray(enc["w"]) + np.asarray(enc["b"])) @ np.asarray(dec["w"])
    expected += np.asarray(dec["b"])
    # full float32 matmuls: a GPU's default TF32 is 5e-4 away (seen on an H200)
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(
            model.apply(params, digits.x_val), expected, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            model.loss(params, digits.val), np.mean((expected - x) ** 2), rtol=1e-5
        )


def test_autoencoder_config_errors(digits, ice_cream):
    with pytest.raises(ValueError, match="did you mean 'tanh'") as info:
        ae.build(ae.Config(activation="tahn"), digits)
    for name in ae.ACTIVATIONS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="output_activation"):
        ae.build(ae.Config(output_activation="relu"), digits)
    with pytest.raises(ValueError, match="positive integers"):
        ae.build(ae.Config(encoder_sizes=[0]), digits)
    with pytest.raises(ValueError, match="y = x"):
        ae.build(ae.Config(), ice_cream)


# ---------------------------------------------------------------------------------------------
# figures


def _pngs(paths, out_dir, names):
    assert sorted(p.name for p in paths) == sorted(names)
    for p in paths:
        assert p.parent == out_dir and p.read_bytes()[:8] == PNG_SIGNATURE
        assert p.stat().st_size > 10_000  # something was drawn


def test_figures_are_written(tmp_path, ice_cream, ice_cream3, cancer, digits):
    model = lr.build(lr.Config(), ice_cream)
    result = fit(
        model.loss,
        model.init(None),
        ice_cream.train,
        optimizer=optax.sgd(0.1),
        steps=50,
        trace_params=True,
    )
    _pngs(
        model.plots(result.params, ice_cream, result, tmp_path / "a"),
        tmp_path / "a",
        ["fit.png", "loss_surface.png"],
    )
    _pngs(
        model.plots(result.params, ice_cream, None, tmp_path / "b"),
        tmp_path / "b",
        ["fit.png", "loss_surface.png"],
    )  # without a trace: the surface and the final point
    model = lr.build(lr.Config(), ice_cream3)
    params = random_like(model.init(None))
    _pngs(
        model.plots(params, ice_cream3, None, tmp_path / "c"),
        tmp_path / "c",
        ["predicted_vs_observed.png"],
    )
    model = lg.build(lg.Config(), cancer)
    _pngs(
        model.plots(random_like(model.init(None)), cancer, None, tmp_path / "d"),
        tmp_path / "d",
        ["probabilities.png"],
    )
    model = ae.build(ae.Config(encoder_sizes=[16]), digits)
    _pngs(
        model.plots(model.init(jax.random.PRNGKey(0)), digits, None, tmp_path / "e"),
        tmp_path / "e",
        ["reconstructions.png"],
    )
