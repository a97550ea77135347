"""An Equinox model classifies the 8x8 digits: the module itself is ``mlgrad.fit``'s params.

Run it (about 10 seconds on two CPU cores)::

    python examples/equinox_classifier.py               # 3000 steps
    python examples/equinox_classifier.py --steps 300   # a quick look

``fit`` trains the module's float arrays and holds every other leaf fixed, as
``eqx.partition(model, eqx.is_inexact_array)`` splits it: here the activation functions
of ``eqx.nn.MLP``, the dropout layer's rate (a Python float) and its ``inference`` flag stay
as they are; the optimizer sees the float arrays only. The loss takes the module:
``loss(model, batch, key)``, the key drawing the dropout masks (``with_key=True``), and
returns ``(loss, {"accuracy": ...})`` (``has_aux=True``). ``result.params`` is the trained
module; ``eqx.nn.inference_mode`` turns its dropout off for the validation accuracy.

Equinox is not a dependency of mlgrad: ``pip install equinox`` (it is in the test extra).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import mlgrad


class Classifier(eqx.Module):
    """64-128-10 with ReLU and dropout (rate 0.2) on the hidden layer."""

    dropout: eqx.nn.Dropout
    mlp: eqx.nn.MLP

    def __init__(self, key: jax.Array) -> None:
        self.dropout = eqx.nn.Dropout(0.2)
        self.mlp = eqx.nn.MLP(64, 10, 128, depth=1, activation=jax.nn.relu, key=key)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """The class scores of a batch ``x``; dropout on the hidden layer with a key."""
        hidden, out = self.mlp.layers
        h = self.mlp.activation(jax.vmap(hidden)(x))
        h = self.dropout(h, key=key, inference=key is None)
        return jax.vmap(out)(h)


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): pixels in [0, 1], labels 0-9; 20% held out."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def loss(model: Classifier, batch: tuple, key: jax.Array) -> tuple[jax.Array, dict]:
    x, y = batch
    logits = model(x, key)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return value, {"accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == y)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    args = parser.parse_args(argv)

    x_train, y_train, x_val, y_val = digits()
    model = Classifier(jax.random.PRNGKey(args.seed))
    t0 = time.perf_counter()
    result = mlgrad.fit(
        loss,
        model,
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
    trained = eqx.nn.inference_mode(result.params)
    predicted = np.asarray(jnp.argmax(trained(jnp.asarray(x_val)), axis=-1))
    val_accuracy = float(np.mean(predicted == y_val))
    last = result.aux_history["accuracy"][-min(args.steps, 100) :]
    print(f"{args.steps} steps in {seconds:.1f} s (compilation included)")
    print(f"trained {type(result.params).__name__}: {_count(result.params)} float parameters")
    print(f"training accuracy {np.mean(last):.3f} (mean of the last {len(last)} batches)")
    print(f"validation accuracy {val_accuracy:.3f} ({len(y_val)} images, no dropout)")
    return {"result": result, "model": model, "val_accuracy": val_accuracy}


def _count(model: Any) -> int:
    return sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))


if __name__ == "__main__":
    main()
