"""A run, validated before anything is written: config, data, model, optimizer, devices.

Also what every run computes from that: the train state at step 0, the chunk length of the
compiled loop, and the final metrics (one compiled program, shared by ``mlgrad train``'s
summary, ``mlgrad eval`` and every row of a sweep).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrad.runs import rundir
from mlgrad.runs.errors import RunError

#: Progress updates per run: chunks are about steps / this long (see :func:`chunk_size`).
CHUNKS_PER_RUN = 50


@dataclasses.dataclass
class Setup:
    """Everything a run needs, validated: nothing has been written yet.

    Attributes:
        cfg: the resolved config (an OmegaConf ``DictConfig``).
        module: the model's module (``Config``, ``build``).
        data: the :class:`mlgrad.data.Dataset` of ``cfg.data``.
        model: the :class:`mlgrad.Model` built for that data.
        optimizer: the optax optimizer of ``cfg.optimizer``.
        mesh: the data-parallel mesh of ``train.devices`` (None: one device).
        source: the config file the run came from (None for a config built in Python).
    """

    cfg: Any
    module: Any
    data: Any
    model: Any
    optimizer: Any
    mesh: Any = None
    source: str | None = None


def prepare(config: str | Path | Any, overrides: Sequence[str] = ()) -> Setup:
    """Validates a run: loads the config (a YAML path, or a ``DictConfig`` from
    :func:`mlgrad.config.load_config`) with ``overrides``, loads and checks the data, builds
    the model and the optimizer, and picks the devices. Writes nothing.

    Raises:
        ConfigError, DataError: a user's mistake, naming the config key.

    Example:
        >>> setup = prepare("configs/linear_regression.yaml", ["train.steps=10"])
        >>> setup.cfg.train.steps, setup.data.x_train.shape
        (10, (30, 1))
    """
    from mlgrad.config import build_model, build_optimizer, load_config, validate_config

    if isinstance(config, str | Path):
        cfg, module = load_config(config, overrides)
        source = str(config)
    else:
        cfg, module = validate_config(config, overrides)
        source = None
    data = load_data(cfg)
    model = build_model(cfg, module, data)
    check_whole_batches(cfg, model, len(data.x_train))
    optimizer = build_optimizer(cfg.optimizer, steps=cfg.train.steps, dtype=cfg.train.dtype)
    check_optimizer(cfg, model, optimizer)
    return Setup(cfg, module, data, model, optimizer, mesh_of(cfg), source)


def check_whole_batches(cfg: Any, model: Any, n: int) -> None:
    """A model that draws a key every step trains on whole batches only (a ragged batch
    would be averaged per example, all with one key): ``train.batch_size`` must divide the
    ``n`` training examples."""
    from mlgrad.config import ConfigError

    size = cfg.train.batch_size
    if getattr(model, "with_key", False) and size is not None and size < n and n % size:
        raise ConfigError(
            f"`train.batch_size`: {size} does not divide the {n} training examples, and model "
            f"{cfg.model.name} draws a random key every step, so every batch must be whole. "
            f"Choose a divisor of {n} (or null for full batches).",
            "train.batch_size",
        )


def check_optimizer(cfg: Any, model: Any, optimizer: Any) -> None:
    """The optimizer takes one abstract step on the model's parameters (nothing computed):
    an optimizer that cannot train them (``sm3`` on a scalar bias) is a ConfigError now, not
    a crash at the first step."""
    import jax

    from mlgrad.config.optimizers import check_optimizer_on

    with precision(cfg):
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
        check_optimizer_on(optimizer, params, cfg.optimizer)
    check_fits_in_memory(params)


def check_fits_in_memory(params: Any) -> None:
    """Refuses parameters larger than the device's free memory, before anything is allocated
    (allocating them would fail only after a long wait, or not at all on some runtimes).

    Raises:
        RunError: naming the size needed and the size available.
    """
    import jax

    from mlgrad.training.parallel import device_memory

    need = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    device = jax.devices()[0]
    have = device_memory(device)
    if have is not None and need > have:
        raise RunError(
            f"out of memory: the model's parameters alone need {need / 1e9:.3g} GB and {device} "
            f"has {have / 1e9:.3g} GB available. Make the model smaller."
        )


def precision(cfg: Any) -> Any:
    """The run's arithmetic as a context: ``jax.enable_x64`` on for ``train.dtype: float64``,
    off for ``float32`` (whatever the process's global setting), restored afterwards."""
    import jax

    return jax.enable_x64(cfg.train.dtype == "float64")


def load_data(cfg: Any) -> Any:
    """The data set of ``cfg.data`` in ``train.dtype``; a :class:`DataError` names its key."""
    import numpy as np

    from mlgrad.data import DataError, load

    d = cfg.data
    try:
        return load(
            d.name,
            path=d.path,
            features=None if d.features is None else list(d.features),
            target=d.target,
            val_split=d.val_split,
            split_seed=d.split_seed,
            dtype=np.dtype(cfg.train.dtype),
        )
    except DataError as e:
        key = f"data.{e.key}" if e.key else "data"
        raise DataError(f"`{key}`: {e}", key) from None


def mesh_of(cfg: Any) -> Any:
    """The data-parallel mesh of ``train.devices`` (None for one device)."""
    from mlgrad.config import ConfigError
    from mlgrad.training.parallel import data_mesh

    try:
        return data_mesh(cfg.train.devices)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"`train.devices`: {e}", "train.devices") from None


def initial_state(setup: Setup) -> Any:
    """The train state at step 0: parameters from ``split(PRNGKey(seed))[0]``, the key of the
    mini-batch order ``[1]``."""
    import jax
    import jax.numpy as jnp

    from mlgrad.training import TrainState

    init_key, train_key = jax.random.split(jax.random.PRNGKey(setup.cfg.seed))
    params = setup.model.init(init_key)
    return TrainState(params, setup.optimizer.init(params), jnp.asarray(0, jnp.int32), train_key)


def param_count(params: Any) -> int:
    """The number of scalars in the pytree ``params``."""
    import jax
    import numpy as np

    return sum(int(np.size(x)) for x in jax.tree.leaves(params))


def chunk_size(train: Any, has_val: bool) -> int:
    """Steps per compiled chunk: a divisor of checkpoint_every (and eval_every), so every
    checkpoint and evaluation falls on a chunk boundary and all chunks have one length (one
    compilation), about steps / CHUNKS_PER_RUN long for a live progress bar."""
    base = math.gcd(train.checkpoint_every, train.eval_every) if has_val else train.checkpoint_every
    target = max(1, min(base, math.ceil(train.steps / CHUNKS_PER_RUN)))
    best = 1
    for d in range(1, math.isqrt(base) + 1):
        if base % d == 0:
            for c in (d, base // d):
                if best < c <= target:
                    best = c
    return best


def as_batch(split: tuple[Any, Any]) -> tuple[Any, Any]:
    """A data split ``(x, y)`` as JAX arrays."""
    import jax.numpy as jnp

    return jnp.asarray(split[0]), jnp.asarray(split[1])


def metrics_program(model: Any, data: Any, *, runs: bool = False) -> Any:
    """A compiled ``params -> {name: value}`` of a run's final metrics, in the summary's order:
    for each split, ``<split>_loss`` (the training objective, ``model.loss`` on the whole split,
    penalties included), then the model's other metrics (``<split>_accuracy``).

    With ``runs``, ``params`` has a leading run axis (a sweep's) and each value is ``(runs,)``.
    """
    import jax

    splits = [("train", as_batch(data.train))]
    if data.val is not None:
        splits.append(("val", as_batch(data.val)))
    names: list[str] = []  # set when traced (a dict output would come back with sorted keys)

    def evaluate(params: Any) -> list[Any]:
        out = {}
        for name, batch in splits:
            out[f"{name}_loss"] = model.objective(params, batch)
            extra = model.metrics(params, batch)
            out.update({f"{name}_{k}": v for k, v in extra.items() if k != "loss"})
        names[:] = list(out)
        return list(out.values())

    program = jax.jit(jax.vmap(evaluate) if runs else evaluate)

    def run(params: Any) -> dict[str, Any]:
        values = program(params)
        return dict(zip(names, values, strict=True))

    return run


def final_metrics(model: Any, params: Any, data: Any) -> dict[str, float | None]:
    """The final metrics at ``params`` (:func:`metrics_program`); NaN and inf as None."""
    values = metrics_program(model, data)(params)
    return {k: rundir.finite_or_none(v) for k, v in values.items()}


def data_fingerprint(data: Any) -> str:
    """A SHA-256 of the data a run trains and validates on (arrays, shapes, dtypes)."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_val, data.y_val):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()
