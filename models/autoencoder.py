"""An autoencoder: an encoder MLP down to a bottleneck and a decoder MLP back to the input.

Layers are dense, h_{k+1} = act(W_k h_k + c_k). The encoder maps x through ``encoder_sizes`` to
``latent`` units (activation ``latent_activation``); the decoder maps the code through
``decoder_sizes`` (by default the encoder's sizes reversed) back to the input size (activation
``output_activation``). The loss is the mean squared reconstruction error over examples and
inputs, L = (1/(n p)) sum_i ||f(x_i) - x_i||^2. With identity activations it is a linear
autoencoder, whose optimum reconstruction error equals that of PCA with ``latent``
components.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from mlgrad.models import _figures
from mlgrad.models._common import eval_split

from mlgrad._figure_worker import render
from mlgrad.registry import Model, ModelConfigError

__all__ = ["ACTIVATIONS", "INITIALIZERS", "Config", "build"]

ACTIVATIONS = ("tanh", "relu", "gelu", "elu", "softplus", "sigmoid", "identity")
OUTPUT_ACTIVATIONS = ("sigmoid", "identity")
INITIALIZERS = (
    "glorot_normal",
    "glorot_uniform",
    "lecun_normal",
    "lecun_uniform",
    "he_normal",
    "he_uniform",
)


@dataclasses.dataclass
class Config:
    """Autoencoder settings.

    Attributes:
        encoder_sizes: hidden-layer widths of the encoder, input side first.
        latent: the width of the bottleneck (the code).
        decoder_sizes: hidden-layer widths of the decoder, code side first; ``None`` mirrors
            the encoder.
        activation: the hidden layers' activation, one of ``ACTIVATIONS``.
        latent_activation: the bottleneck's activation, one of ``ACTIVATIONS``.
        output_activation: ``"sigmoid"`` (inputs in [0, 1]) or ``"identity"``.
        init: the weight initialiser from ``jax.nn.initializers`` (biases start at zero).
    """

    encoder_sizes: list[int] = dataclasses.field(default_factory=lambda: [128])
    latent: int = 8
    decoder_sizes: list[int] | None = None
    activation: str = "gelu"
    latent_activation: str = "identity"
    output_activation: str = "sigmoid"
    init: str = "glorot_normal"


def _choice(value: Any, options: tuple[str, ...], what: str) -> str:
    if value not in options:
        match = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise ModelConfigError(
            f"autoencoder: unknown {what} {value!r}; valid names: {', '.join(options)}{hint}",
            f"model.{what}",
        )
    return value


def _activation(name: str) -> Any:
    return getattr(jax.nn, name)


def _sizes(values: Any, what: str) -> list[int]:
    out = list(values)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ModelConfigError(
                f"autoencoder: {what} must be positive integers; got {out}", f"model.{what}"
            )
    return [int(v) for v in out]


def build(cfg: Config, data: Any) -> Model:
    """Builds the autoencoder for ``data``, whose target must be its input (``y = x``).

    Args:
        cfg: the model's :class:`Config`.
        data: a :class:`mlgrad.data.Dataset` such as ``load("digits")``.

    Returns:
        A :class:`mlgrad.Model`; ``params = {"encoder": {"layer_0": {"w", "b"}, ...},
        "decoder": {...}}``; ``apply(params, x)`` is the reconstruction.

    Example:
        >>> import jax
        >>> from mlgrad.data import load
        >>> import mlgrad.models.autoencoder as ae
        >>> data = load("digits")
        >>> model = ae.build(ae.Config(encoder_sizes=[32], latent=8), data)
        >>> model.apply(model.init(jax.random.PRNGKey(0)), data.x_train[:5]).shape
        (5, 64)
    """
    act = _activation(_choice(cfg.activation, ACTIVATIONS, "activation"))
    latent_act = _activation(_choice(cfg.latent_activation, ACTIVATIONS, "latent_activation"))
    out_act = _activation(_choice(cfg.output_activation, OUTPUT_ACTIVATIONS, "output_activation"))
    initializer = getattr(jax.nn.initializers, _choice(cfg.init, INITIALIZERS, "init"))()
    enc = _sizes(cfg.encoder_sizes, "encoder_sizes")
    dec = enc[::-1] if cfg.decoder_sizes is None else _sizes(cfg.decoder_sizes, "decoder_sizes")
    (latent,) = _sizes([cfg.latent], "latent")
    if np.shape(data.y_train) != np.shape(data.x_train):
        raise ModelConfigError(
            f"autoencoder: the target must be the input itself (y = x); got x of "
            f"shape {np.shape(data.x_train)} and target {data.target_name!r} of "
            f"shape {np.shape(data.y_train)}",
            "data.target",
        )
    p = data.n_features
    dtype = np.asarray(data.x_train).dtype
    enc_widths = [p, *enc, latent]
    dec_widths = [latent, *dec, p]

    def init_stack(key: jax.Array, widths: list[int]) -> dict[str, dict[str, jax.Array]]:
        keys = jax.random.split(key, len(widths) - 1)
        return {
            f"layer_{i}": {"w": initializer(k, (m, n), dtype), "b": jnp.zeros(n, dtype)}
            for i, (k, m, n) in enumerate(zip(keys, widths[:-1], widths[1:], strict=True))
        }

    def init(key: jax.Array) -> dict[str, Any]:
        k_enc, k_dec = jax.random.split(key)
        return {"encoder": init_stack(k_enc, enc_widths), "decoder": init_stack(k_dec, dec_widths)}

    def run_stack(layers: dict, h: jax.Array, hidden: Any, last: Any) -> jax.Array:
        n = len(layers)
        for i in range(n):
            layer = layers[f"layer_{i}"]
            h = h @ layer["w"] + layer["b"]
            h = (last if i == n - 1 else hidden)(h)
        return h

    def encode(params: dict[str, Any], x: jax.Array) -> jax.Array:
        return run_stack(params["encoder"], x, act, latent_act)

    def decode(params: dict[str, Any], z: jax.Array) -> jax.Array:
        return run_stack(params["decoder"], z, act, out_act)

    def apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
        return decode(params, encode(params, x))

    def loss(params: dict[str, Any], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        return jnp.mean((apply(params, x) - y) ** 2)

    def metrics(params: dict[str, Any], batch: tuple[jax.Array, jax.Array]) -> dict:
        return {"loss": loss(params, batch)}

    def report(params: dict[str, Any]) -> dict[str, Any]:
        n_params = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(params))
        return {
            "architecture": "-".join(map(str, [*enc_widths, *dec_widths[1:]])),
            "parameters": n_params,
        }

    def plots(params: dict[str, Any], data: Any, fit_result: Any, out_dir: Path) -> list:
        del fit_result
        x, _, split = eval_split(data)
        recon = np.asarray(apply(params, jnp.asarray(x)))
        whole = float(np.mean((recon - x) ** 2))  # the split's loss (val_loss on validation)
        return [
            render(
                out_dir / "reconstructions.png",
                _figures.reconstructions,
                x[:16],
                recon[:16],
                split,
                whole,
                out_dir,
            )
        ]

    return Model(init=init, apply=apply, loss=loss, metrics=metrics, report=report, plots=plots)
