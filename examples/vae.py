"""A variational autoencoder of the 8x8 digits, trained by ``mlgrad.fit`` with a key per step.

Run it (about 10 seconds on two CPU cores)::

    python examples/vae.py               # 3000 steps
    python examples/vae.py --steps 300   # a quick look

The encoder (64-128-2x8, ReLU) gives a Gaussian ``q(z | x) = N(mu, diag(exp(log_var)))`` over
an 8-dimensional code, the decoder (8-128-64) the logits of independent Bernoulli pixels. The
loss is the negative ELBO, averaged over the batch::

    reconstruction = -E_q[log p(x | z)]   (binary cross-entropy summed over the 64 pixels)
    kl             = KL(q(z | x) || N(0, I)) = -1/2 sum(1 + log_var - mu^2 - exp(log_var))

with the expectation estimated by one sample drawn by the reparameterisation trick,
``z = mu + exp(log_var / 2) * eps``, ``eps ~ N(0, I)``: the sample is a differentiable
function of the encoder's outputs, and ``eps`` comes from the step's key
(``fit(..., with_key=True)``). ``has_aux=True`` logs the two terms apart
(``result.aux_history["reconstruction"]`` and ``["kl"]``); their sum is the loss.
``drop_remainder=True``: 1437 training images do not split into batches of 128, and a
ragged batch would give all its examples one key.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mlgrad
from mlgrad.data import load

HIDDEN, LATENT = 128, 8


def dense(key: jax.Array, n_in: int, n_out: int) -> dict[str, jax.Array]:
    return {"w": jax.nn.initializers.glorot_normal()(key, (n_in, n_out)), "b": jnp.zeros(n_out)}


def init(key: jax.Array, pixels: int = 64) -> dict[str, Any]:
    k = jax.random.split(key, 5)
    return {
        "encoder": dense(k[0], pixels, HIDDEN),
        "mu": dense(k[1], HIDDEN, LATENT),
        "log_var": dense(k[2], HIDDEN, LATENT),
        "decoder": [dense(k[3], LATENT, HIDDEN), dense(k[4], HIDDEN, pixels)],
    }


def affine(layer: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    return x @ layer["w"] + layer["b"]


def encode(params: dict[str, Any], x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = jax.nn.relu(affine(params["encoder"], x))
    return affine(params["mu"], h), affine(params["log_var"], h)


def decode(params: dict[str, Any], z: jax.Array) -> jax.Array:
    """The Bernoulli logits of the pixels."""
    first, last = params["decoder"]
    return affine(last, jax.nn.relu(affine(first, z)))


def loss(params: dict[str, Any], x: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
    """The negative ELBO of the batch (a mean over its images) and its two terms."""
    mu, log_var = encode(params, x)
    eps = jax.random.normal(key, mu.shape)
    z = mu + jnp.exp(0.5 * log_var) * eps  # the reparameterisation trick
    logits = decode(params, z)
    reconstruction = jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1))
    kl = jnp.mean(-0.5 * jnp.sum(1.0 + log_var - mu**2 - jnp.exp(log_var), axis=-1))
    return reconstruction + kl, {"reconstruction": reconstruction, "kl": kl}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, batches and samples")
    args = parser.parse_args(argv)

    data = load(name="digits", val_split=0.2, split_seed=0)
    x_train, x_val = jnp.asarray(data.x_train), jnp.asarray(data.x_val)
    params = init(jax.random.PRNGKey(args.seed), x_train.shape[1])
    t0 = time.perf_counter()
    result = mlgrad.fit(
        loss,
        params,
        x_train,
        optimizer=optax.adam(1e-3),
        steps=args.steps,
        batch_size=128,
        drop_remainder=True,
        key=jax.random.PRNGKey(args.seed),
        with_key=True,
        has_aux=True,
    )
    seconds = time.perf_counter() - t0
    aux = result.aux_history
    k = min(args.steps, 100)
    val, val_aux = jax.jit(loss)(result.params, x_val, jax.random.PRNGKey(1))
    print(f"{args.steps} steps in {seconds:.1f} s (compilation included)")
    print("negative ELBO per image (nats) = reconstruction + KL, means over batches:")
    print(
        f"  first {k} steps: {np.mean(result.history[:k]):8.2f} = "
        f"{np.mean(aux['reconstruction'][:k]):8.2f} + {np.mean(aux['kl'][:k]):6.2f}"
    )
    print(
        f"  last {k} steps:  {np.mean(result.history[-k:]):8.2f} = "
        f"{np.mean(aux['reconstruction'][-k:]):8.2f} + {np.mean(aux['kl'][-k:]):6.2f}"
    )
    print(
        f"  validation:     {float(val):8.2f} = {float(val_aux['reconstruction']):8.2f} + "
        f"{float(val_aux['kl']):6.2f}  ({x_val.shape[0]} images, one sample each)"
    )
    return {"result": result, "val_loss": float(val), "x_val": x_val}


if __name__ == "__main__":
    main()
