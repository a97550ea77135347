"""The training examples (examples/*.py) on a shrunk setting (``--steps 200``).

Each is checked against what can be derived without it: the loss of the first step
recomputed in NumPy (float64) from the initial parameters, the first batch
(``permutation(fold_in(key, 0), n)[:batch]``) and the step's key
(``fold_in(split(key)[1], 0)``), as ``fit`` documents them; accuracies recomputed in NumPy
from the trained weights; what must hold of every step (whole batches, KL >= 0, loss =
reconstruction + KL); and that the model learnt (chance is 10% for ten digits).
"""

from __future__ import annotations

import importlib.util
import io
from contextlib import redirect_stdout
from pathlib import Path

import jax
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEPS = 200


def run(name: str) -> tuple[object, dict, str]:
    """The example module, what its main returned for --steps STEPS, what it printed."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with redirect_stdout(out):
        result = module.main(["--steps", str(STEPS)])
    return module, result, out.getvalue()


def first_batch(n: int, batch: int) -> np.ndarray:
    key = jax.random.PRNGKey(0)
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), n))[:batch]


def first_key() -> jax.Array:
    return jax.random.fold_in(jax.random.split(jax.random.PRNGKey(0))[1], 0)


def log_softmax_loss(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(y)), y]))


def f64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


@pytest.mark.slow  # CI budget: the VAE example runs by default
def test_dropout_classifier():
    module, out, text = run("dropout_classifier")
    r = out["result"]
    assert r.history.shape == (STEPS,) and r.aux_history["accuracy"].shape == (STEPS,)
    # every batch is whole (drop_remainder): accuracies are multiples of 1/64
    correct = r.aux_history["accuracy"] * 64
    np.testing.assert_allclose(correct, np.round(correct), atol=1e-4)
    # step 1 by hand: the first batch, the dropout mask of the step's key
    x_train, y_train, x_val, y_val = module.digits()
    p = f64(module.init(jax.random.PRNGKey(0)))
    idx = first_batch(len(x_train), 64)
    x, y = x_train[idx].astype(np.float64), y_train[idx]
    h = np.maximum(x @ p["hidden"]["w"] + p["hidden"]["b"], 0.0)
    keep = np.asarray(jax.random.bernoulli(first_key(), 0.8, h.shape))
    logits = np.where(keep, h / 0.8, 0.0) @ p["out"]["w"] + p["out"]["b"]
    np.testing.assert_allclose(r.history[0], log_softmax_loss(logits, y), rtol=1e-5)
    # the validation accuracy from the trained weights, without dropout
    q = f64(r.params)
    h = np.maximum(x_val @ q["hidden"]["w"] + q["hidden"]["b"], 0.0)
    accuracy = np.mean(np.argmax(h @ q["out"]["w"] + q["out"]["b"], axis=1) == y_val)
    assert out["val_accuracy"] == pytest.approx(accuracy, abs=1 / len(y_val))
    assert accuracy > 0.85
    assert f"validation accuracy {out['val_accuracy']:.3f}" in text


def test_variational_autoencoder():
    module, out, text = run("vae")
    r, aux = out["result"], out["result"].aux_history
    assert set(aux) == {"kl", "reconstruction"}
    np.testing.assert_allclose(r.history, aux["reconstruction"] + aux["kl"], rtol=1e-6)
    assert np.all(aux["kl"] >= 0)
    # step 1 by hand: the negative ELBO of the first batch with eps from the step's key
    from mlgrad.data import load

    x_train = load(name="digits", val_split=0.2, split_seed=0).x_train.astype(np.float64)
    p = f64(module.init(jax.random.PRNGKey(0), 64))
    x = x_train[first_batch(len(x_train), 128)]
    h = np.maximum(x @ p["encoder"]["w"] + p["encoder"]["b"], 0.0)
    mu, log_var = (h @ p[k]["w"] + p[k]["b"] for k in ("mu", "log_var"))
    eps = np.asarray(jax.random.normal(first_key(), mu.shape), np.float64)
    z = mu + np.exp(0.5 * log_var) * eps
    first, last = p["decoder"]
    logits = np.maximum(z @ first["w"] + first["b"], 0.0) @ last["w"] + last["b"]
    # -log p(x | z) of Bernoulli pixels: softplus(logit) - x * logit
    reconstruction = np.mean(np.sum(np.logaddexp(0.0, logits) - x * logits, axis=1))
    kl = np.mean(-0.5 * np.sum(1.0 + log_var - mu**2 - np.exp(log_var), axis=1))
    np.testing.assert_allclose(aux["reconstruction"][0], reconstruction, rtol=1e-5)
    np.testing.assert_allclose(aux["kl"][0], kl, rtol=1e-4, atol=1e-6)
    # it learnt: the reconstruction term falls by a fifth within 200 steps
    assert np.mean(aux["reconstruction"][-20:]) < 0.8 * np.mean(aux["reconstruction"][:20])
    assert "validation:" in text


@pytest.mark.slow  # CI budget: the VAE example runs by default
def test_equinox_classifier():
    import equinox as eqx

    module, out, text = run("equinox_classifier")
    r, model = out["result"], out["model"]
    trained = r.params
    assert isinstance(trained, module.Classifier)
    # the fixed leaves are the module's own; the float arrays moved
    assert trained.mlp.activation is jax.nn.relu and trained.dropout.p == 0.2
    assert trained.dropout.inference is False
    hidden, last = trained.mlp.layers
    assert not np.allclose(hidden.weight, model.mlp.layers[0].weight)
    # the validation accuracy from the trained weights in NumPy (eqx Linear: W x + b)
    _, _, x_val, y_val = module.digits()
    h = np.maximum(x_val @ np.asarray(hidden.weight).T + np.asarray(hidden.bias), 0.0)
    logits = h @ np.asarray(last.weight).T + np.asarray(last.bias)
    accuracy = np.mean(np.argmax(logits, axis=1) == y_val)
    assert out["val_accuracy"] == pytest.approx(accuracy, abs=1 / len(y_val))
    assert accuracy > 0.85
    assert eqx.nn.inference_mode(trained).dropout.inference is True
    assert "trained Classifier" in text
