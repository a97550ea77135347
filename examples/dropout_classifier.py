"""A dropout MLP classifies the 8x8 digits, trained by ``mlgrad.fit`` with a key per step.

Run it (about 10 seconds on two CPU cores)::

    python examples/dropout_classifier.py               # 3000 steps
    python examples/dropout_classifier.py --steps 300   # a quick look

The model is 64-128-10 with ReLU and inverted dropout (rate 0.2) on the hidden layer. Dropout
needs a fresh random mask at every step: ``fit(..., with_key=True)`` calls
``loss(params, batch, key)`` with the step's key (derived from the run's key and the step
number, so a resumed run draws the same masks). The loss returns ``(loss, {"accuracy": ...})``
and ``has_aux=True`` records the accuracy of every training batch (``result.aux_history``).
1437 training images do not split into batches of 64, and a ragged batch would give all
its examples one key: ``drop_remainder=True`` leaves the 29 that each epoch's shuffle puts
last out of that epoch. The validation accuracy is measured without dropout.

The digits (1797 images, their labels) ship with scikit-learn, a dependency of mlgrad.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import mlgrad

HIDDEN, CLASSES, RATE = 128, 10, 0.2


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): pixels in [0, 1], labels 0-9; 20% held out."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def init(key: jax.Array) -> dict[str, Any]:
    k1, k2 = jax.random.split(key)
    glorot = jax.nn.initializers.glorot_normal()
    return {
        "hidden": {"w": glorot(k1, (64, HIDDEN)), "b": jnp.zeros(HIDDEN)},
        "out": {"w": glorot(k2, (HIDDEN, CLASSES)), "b": jnp.zeros(CLASSES)},
    }


def logits(params: dict[str, Any], x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """The class scores; with a key, inverted dropout on the hidden layer (training)."""
    h = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
    if key is not None:
        keep = jax.random.bernoulli(key, 1.0 - RATE, h.shape)
        h = jnp.where(keep, h / (1.0 - RATE), 0.0)
    return h @ params["out"]["w"] + params["out"]["b"]


def loss(params: dict[str, Any], batch: tuple, key: jax.Array) -> tuple[jax.Array, dict]:
    x, y = batch
    z = logits(params, x, key)
    value = optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
    return value, {"accuracy": jnp.mean(jnp.argmax(z, axis=-1) == y)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    args = parser.parse_args(argv)

    x_train, y_train, x_val, y_val = digits()
    params = init(jax.random.PRNGKey(args.seed))
    t0 = time.perf_counter()
    result = mlgrad.fit(
        loss,
        params,
        (x_train, y_train),
        optimizer=optax.adam(1e-3),
        steps=args.steps,
        batch_size=64,
        drop_remainder=True,
        key=jax.random.PRNGKey(args.seed),
        with_key=True,
        has_aux=True,
    )
    seconds = time.perf_counter() - t0
    train_accuracy = result.aux_history["accuracy"]
    last = train_accuracy[-min(len(train_accuracy), 100) :]
    predicted = np.asarray(jnp.argmax(logits(result.params, jnp.asarray(x_val)), axis=-1))
    val_accuracy = float(np.mean(predicted == y_val))
    print(f"{args.steps} steps in {seconds:.1f} s (compilation included)")
    print(f"training loss {result.history[-1]:.4f} (last batch, with dropout)")
    print(f"training accuracy {np.mean(last):.3f} (mean of the last {len(last)} batches)")
    print(f"validation accuracy {val_accuracy:.3f} ({len(y_val)} images, no dropout)")
    return {"result": result, "val_accuracy": val_accuracy, "x_val": x_val, "y_val": y_val}


if __name__ == "__main__":
    main()
