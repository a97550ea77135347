"""Sweeps: many training runs (seeds x learning rates) as one vmapped, compiled program.

Run ``i`` of a sweep is exactly the run ``fit`` would do alone:

.. math:: (k_\\text{init}, k_\\text{train}) = \\mathrm{split}(\\mathrm{PRNGKey}(s_i)), \\quad
          \\theta_0 = \\mathrm{init}(k_\\text{init}), \\quad
          \\theta_{t+1} = \\theta_t + \\mathrm{update}_{\\eta_i}\\big(\\nabla_\\theta
          L(\\theta_t; B_t(k_\\text{train}))\\big)

(the key convention of ``mlgrad train``), with the optimizer built by
``optax.inject_hyperparams(optimizer_fn)`` so that the learning rate ``eta_i`` is an array in
run ``i``'s optimizer state. The runs share one program: the training loop is ``jax.vmap``-ed
over the run axis, and it is ``fit``'s own compiled chunk
(:func:`mlgrad.training.fit._run_chunk`), so a sweep trains with the same step, batching plan
and padded-and-masked ragged batches as ``fit``. What depends only on the seed (the initial
params and the epoch orders of the mini-batches) is computed once per seed.

How equal to ``fit``: with mini-batches every run gathers its own batches, and its losses and
params are bit-identical to the solo run's in float32 and float64. With full batches the runs
share the data, and XLA computes all runs' gradients, or the mean of the per-example losses,
as one product or reduction whose sums round differently from the solo program's in the last
bit, so a float32 trajectory can be an ulp or so away for some steps; in float64 the
difference is at the level of 1e-14. ``python benchmarks/sweep.py`` prints the measured
differences and times.

Runs are independent under ``vmap``: a run whose loss or state becomes NaN or infinite does
not touch the others; it is reported as diverged (final loss NaN) instead of raising.

Limits (for now): the whole sweep is one chunk, so with mini-batches the epoch orders are
drawn up front, once per seed (``seeds`` times one run's shuffling, a sort per epoch), and
kept in one stack (``seeds x epochs x n`` int32 entries) from which each run gathers its own
batches (``fit``'s ``_run_chunk`` with ``orders_offset``, the first row of the run's seed):
8 seeds x 8 learning rates of the autoencoder, 10,000 steps on the 1,437 digits in batches of
128, take 97 MB of temporary memory (XLA's count; 50 MB of it the orders; 456 MB when every
run held a copy of its seed's orders). Shapes must agree across runs: only seeds and learning
rates are swept; the compiled program depends on the numbers of seeds and of learning rates.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from mlgrad.training.fit import (
    LossFn,
    PyTree,
    _Batching,
    _distinct_arrays,
    _epoch_orders,
    _epochs_touched,
    _flatten_data,
    _Layout,
    _objective,
    _positive_int,
    _run_chunk,
)
from mlgrad.training.parallel import (
    Devices,
    batch_sharding,
    data_mesh,
    device_memory,
    place,
    replicated,
)

__all__ = ["SweepResult", "sweep"]

InitFn = Callable[[jax.Array], PyTree]


class SweepResult(NamedTuple):
    """What :func:`sweep` returns; run ``i`` trained with ``seeds[i]`` and ``learning_rates[i]``.

    Attributes:
      params: the final parameters of every run, a pytree whose leaves have a leading run axis.
      opt_state: the final optimizer states (leading run axis; the learning rate is
        ``opt_state.hyperparams["learning_rate"]``).
      histories: ``(runs, steps)`` training losses; ``histories[i, t]`` is run ``i``'s loss of
        the batch of step ``t + 1`` before its update (as ``FitResult.history``).
      seeds: ``(runs,)`` the seed of each run.
      learning_rates: ``(runs,)`` the learning rate of each run.
      final_losses: ``(runs,)`` each run's loss on the whole training data at its final
        parameters; NaN for a diverged run.
      diverged: ``(runs,)`` True where a loss or the final state was NaN or infinite.
    """

    params: PyTree
    opt_state: optax.OptState
    histories: np.ndarray
    seeds: np.ndarray
    learning_rates: np.ndarray
    final_losses: np.ndarray
    diverged: np.ndarray

    def table(self) -> list[dict[str, Any]]:
        """One row per run: ``run, seed, learning_rate, final_loss, min_loss, diverged``.

        ``min_loss`` is the smallest finite training loss in the run's history (NaN if none).
        """
        rows = []
        for i in range(len(self.seeds)):
            finite = self.histories[i][np.isfinite(self.histories[i])]
            rows.append(
                {
                    "run": i,
                    "seed": int(self.seeds[i]),
                    "learning_rate": float(self.learning_rates[i]),
                    "final_loss": float(self.final_losses[i]),
                    "min_loss": float(finite.min()) if finite.size else math.nan,
                    "diverged": bool(self.diverged[i]),
                }
            )
        return rows

    def to_csv(self) -> str:
        """The summary :meth:`table` as CSV text with a header line."""
        rows = self.table()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()


class _Optimizer(NamedTuple):
    """The optax function and its fixed keyword arguments (static, hashable)."""

    fn: Callable[..., optax.GradientTransformation]
    kwargs: tuple[tuple[str, Any], ...]

    def build(self, learning_rate: Any) -> optax.GradientTransformation:
        """``fn(learning_rate=..., **kwargs)`` with only the learning rate injected into the
        state (``optax.inject_hyperparams``): the other arguments stay the Python constants
        they are in ``fn(...)`` (integers such as ``memory_size`` must)."""
        static = tuple(name for name, _ in self.kwargs)
        return optax.inject_hyperparams(self.fn, static_args=static)(
            learning_rate=learning_rate, **dict(self.kwargs)
        )


@functools.partial(
    jax.jit,
    static_argnames=("init_fn", "loss_fn", "optimizer", "layout", "plan", "steps", "mesh"),
)
def _sweep_program(
    seeds: jax.Array,
    learning_rates: jax.Array,
    arrays: tuple[jax.Array, ...],
    *,
    init_fn: InitFn,
    loss_fn: LossFn,
    optimizer: _Optimizer,
    layout: _Layout,
    plan: _Batching | None,
    steps: int,
    mesh: Mesh | None = None,
) -> tuple[PyTree, optax.OptState, jax.Array]:
    """Every run of the seed-major grid ``seeds x learning_rates`` (``S`` seeds, ``L``
    learning rates, ``R = S * L`` runs): the final params and optimizer states (leading run
    axis ``R``), and a buffer ``(R, steps + 2)`` per run: ``fit``'s chunk buffer (the status
    of the final state, 0 or NaN, then the losses) and the full-data loss at the final params.

    What depends only on the seed is computed once per seed: the initial params (repeated
    for its ``L`` runs) and, with mini-batches, the epoch orders (drawing them is the costly
    part: ``S`` instead of ``R`` times one run's shuffling; one shared stack, each run reading
    its seed's rows). The training loop is a ``vmap`` over the ``R`` runs in which every run
    gathers its own batch, as ``fit`` does: with
    per-run batches XLA computes each run's loss and gradient with the solo run's arithmetic
    (bit-identical to ``fit`` in the tests and the benchmark's mini-batch sweeps). A ``vmap``
    over the seeds around one over the learning rates would gather each batch once per seed,
    but XLA then contracts the shared batch with every run's residuals in one matrix product,
    whose different summation order mini-batch SGD amplifies (float32 losses far apart from the
    solo runs in ``benchmarks/sweep.py``'s sweeps) at no gain in time.

    With a ``mesh`` the runs are split across its devices (the run axis constrained to
    ``P("data")``; data and orders replicated): runs are independent, so each device trains
    its share and nothing is communicated until the results are gathered, replicated on
    every device (so that every process of a multi-process program can read them).
    """

    def constrain(tree: PyTree, sharding: Callable[[Mesh], Any]) -> PyTree:
        if mesh is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, sharding(mesh))

    num_seeds, num_lrs = seeds.shape[0], learning_rates.shape[0]
    keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(seeds)
    init_keys, train_keys = keys[:, 0], keys[:, 1]
    per_run = functools.partial(jnp.repeat, repeats=num_lrs, axis=0)  # seed-major grid
    params = jax.tree.map(per_run, jax.vmap(init_fn)(init_keys))
    run_lrs = jnp.tile(learning_rates, num_seeds)
    opt_state = jax.vmap(lambda p, lr: optimizer.build(lr).init(p))(params, run_lrs)
    # The update reads the learning rate from the state; the value given here is not used.
    transformation = optimizer.build(1.0)
    orders = offsets = None
    if plan is not None:
        needed = (steps - 1) // plan.per_epoch + 1
        count = _epochs_touched(steps, plan)
        orders = jax.vmap(
            lambda k: _epoch_orders(k, np.int32(0), np.int32(needed), plan=plan, count=count)
        )(train_keys)  # (S, count, per_epoch * batch_size)
        # One stack of the seeds' orders, shared (not batched); run r reads its seed's rows.
        orders = orders.reshape(num_seeds * count, -1)
        offsets = per_run(jnp.arange(num_seeds, dtype=jnp.int32) * count)
    start = None if plan is None else jnp.zeros((), jnp.int32)

    def run(p: PyTree, s: optax.OptState, offset: jax.Array | None) -> tuple:
        p, s, buffer, _ = _run_chunk(
            p,
            s,
            start,
            arrays,
            orders,
            None,
            layout=layout,
            loss_fn=loss_fn,
            optimizer=transformation,
            plan=plan,
            length=steps,
            trace=False,
            orders_offset=offset,
        )
        return p, s, buffer

    params, opt_state, offsets = constrain((params, opt_state, offsets), batch_sharding)
    params, opt_state, buffers = constrain(
        jax.vmap(run)(params, opt_state, offsets), batch_sharding
    )
    data = layout.build(arrays)
    final = jax.vmap(lambda p: _objective(p, data, None, loss_fn)[0])(params)
    buffers = jnp.concatenate([buffers, final[:, None]], axis=1)
    return constrain((params, opt_state, buffers), replicated)


_EXECUTABLES: dict[Any, Any] = {}
#: How many sweep programs were compiled in this process (tests count them).
compilations = 0


def _executable(args: tuple, static: dict[str, Any]) -> Any:
    """The compiled sweep program for these argument shapes, checked to fit in memory first.

    Compiled ahead of time (``lower().compile()``, kept for the next call with the same
    shapes) so that XLA's own estimate of its memory (arguments, outputs, temporaries) can be
    compared with what the devices have before it runs: a sweep too large for the machine is a
    ``MemoryError`` saying how much it needs, where running it would fail inside the
    runtime (on a CPU the program then never completes).
    """
    avals = tuple(
        (np.shape(x), jnp.result_type(x), getattr(x, "sharding", None))
        for x in jax.tree.leaves(args)
    )
    key = (tuple(static.items()), jax.tree.structure(args), avals)
    global compilations
    if key not in _EXECUTABLES:
        compiled = _sweep_program.lower(*args, **static).compile()
        compilations += 1
        _check_fits_in_memory(compiled, static["mesh"])
        if len(_EXECUTABLES) >= 16:
            _EXECUTABLES.pop(next(iter(_EXECUTABLES)))
        _EXECUTABLES[key] = compiled
    return _EXECUTABLES[key]


def _check_fits_in_memory(compiled: Any, mesh: Mesh | None) -> None:
    """Raises MemoryError when XLA's estimate of the program's memory exceeds a device's."""
    try:
        stats = compiled.memory_analysis()
        need = sum(
            getattr(stats, f, 0) or 0
            for f in (
                "argument_size_in_bytes",
                "output_size_in_bytes",
                "temp_size_in_bytes",
                "generated_code_size_in_bytes",
            )
        )
    except Exception:  # no estimate on this backend: run it and see
        return
    device = jax.devices()[0] if mesh is None else mesh.devices.flat[0]
    have = device_memory(device)
    if have is not None and need > have:
        raise MemoryError(
            f"the sweep needs about {need / 1e9:.3g} GB per device and {device} has "
            f"{have / 1e9:.3g} GB available; sweep fewer runs at a time, or make the model or "
            "the batch smaller."
        )


def _grid(seeds: Sequence[int], learning_rates: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The seeds (uint32: ``PRNGKey`` of a traced uint32 seed is the key of the same Python
    int, up to 2**32 - 1) and the learning rates (float64) as arrays, checked. (A seed may
    appear more than once: its runs are repeated.)"""
    try:
        seed_list = [operator.index(s) for s in seeds if not isinstance(s, bool)]
        if len(seed_list) != len(seeds):
            raise TypeError
    except TypeError:
        raise TypeError(f"sweep: seeds must be a sequence of ints, got {seeds!r}.") from None
    if not seed_list or not all(0 <= s < 2**32 for s in seed_list):
        raise ValueError(
            f"sweep: seeds must be a non-empty list of ints in [0, 2**32), got {seeds!r}."
        )
    try:
        lr_list = [float(lr) for lr in learning_rates]
    except (TypeError, ValueError):
        raise TypeError(
            f"sweep: learning_rates must be a sequence of numbers, got {learning_rates!r}."
        ) from None
    if not lr_list or not all(math.isfinite(lr) and lr > 0 for lr in lr_list):
        raise ValueError(
            f"sweep: learning_rates must be a non-empty list of finite numbers > 0, got "
            f"{learning_rates!r}."
        )
    return np.array(seed_list, np.uint32), np.array(lr_list, np.float64)


def _grid_of(seeds: np.ndarray, learning_rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The seed and learning rate of each run of the seed-major grid
    ``itertools.product(seeds, learning_rates)``."""
    return np.repeat(seeds, len(learning_rates)), np.tile(learning_rates, len(seeds))


@functools.lru_cache(maxsize=64)
def _cached_grid(seeds: tuple, learning_rates: tuple, dtype: Any) -> tuple:
    """:func:`_grid_arrays`, kept: a repeated sweep (a benchmark, a notebook cell) skips the
    checks and two host-to-device transfers (about 0.1 ms)."""
    return _grid_arrays_uncached(seeds, learning_rates, dtype)


def _grid_arrays_uncached(seeds: Sequence[int], learning_rates: Sequence[float], dtype: Any):
    seed_arr, lr_arr = _grid(seeds, learning_rates)
    run_seeds, run_lrs = _grid_of(seed_arr, lr_arr)
    return run_seeds, run_lrs, jnp.asarray(seed_arr), jnp.asarray(lr_arr, dtype)


def _grid_arrays(seeds: Sequence[int], learning_rates: Sequence[float], dtype: Any) -> tuple:
    """The seed and learning rate of each run (host arrays of the grid's ``R`` runs) and the
    ``S`` seeds and ``L`` learning rates themselves (device arrays, the program's arguments)."""
    try:
        key = (tuple(seeds), tuple(learning_rates), np.dtype(dtype))
        hash(key)
    except TypeError:  # e.g. unhashable array elements
        return _grid_arrays_uncached(seeds, learning_rates, dtype)
    return _cached_grid(*key)


def sweep(
    loss_fn: LossFn,
    init_fn: InitFn,
    data: PyTree,
    *,
    optimizer_fn: Callable[..., optax.GradientTransformation],
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    batch_size: int | None = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    devices: Devices = "auto",
) -> SweepResult:
    r"""Trains every (seed, learning rate) pair as one vmapped, compiled program.

    Run ``i`` of the seed-major grid ``itertools.product(seeds, learning_rates)`` is the run

    .. code-block:: python

        init_key, key = jax.random.split(jax.random.PRNGKey(seed))
        fit(loss_fn, init_fn(init_key), data, key=key, steps=steps, batch_size=batch_size,
            optimizer=optimizer_fn(learning_rate=lr, **optimizer_kwargs))

    (the key convention of ``mlgrad train``), equal to it up to floating-point reassociation
    of vmapped reductions: bit for bit with mini-batches in the tests and the benchmark; with
    full batches the runs' gradients are one matrix product that may round differently in
    the last bit (see the module's notes). With the plain ``optimizer_fn(lr)`` instead of
    ``optax.inject_hyperparams(optimizer_fn)(learning_rate=lr, ...)`` the solo run's XLA may
    also fold the constant learning rate into the step and round differently: up to about
    1e-5 relative after 200 float32 mini-batch steps at lr = 1, far below 1e-6 in float64.
    The learning rate is a per-run array in the optimizer state
    (``optax.inject_hyperparams``). A run that becomes non-finite is reported in
    ``diverged`` with a NaN final loss; the other runs are unaffected.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, a mean over the batch's examples plus
        batch-independent terms (:func:`mlgrad.fit`'s contract).
      init_fn: ``init_fn(key) -> params``; vmapped over the runs' init keys.
      data: a pytree of arrays with a leading example axis, e.g. ``(x, y)``.
      optimizer_fn: an optax optimizer function taking ``learning_rate`` (e.g. ``optax.sgd``).
        Keep the same function (and ``loss_fn``, ``init_fn``) to reuse the compiled program.
      learning_rates: the learning rates to sweep (numbers > 0).
      seeds: the seeds to sweep (ints in ``[0, 2**32)``, as ``mlgrad train`` takes).
      steps: optimizer steps per run (>= 1).
      batch_size: examples per step; None (or ``>= n``) for full-batch gradient descent.
      optimizer_kwargs: other keyword arguments of ``optimizer_fn`` (hashable values, e.g.
        ``{"momentum": 0.9}``), the same for every run; constants of the program, as in
        ``optimizer_fn(...)`` (only the learning rate is injected into the state).
      devices: ``"auto"`` (every device JAX sees), a number ``N`` (the first ``N``) or a list
        of devices, as :func:`mlgrad.fit` takes. With several, the runs are split across
        them (each device trains its share, with the data and the grid copied to all; no
        communication between runs), and the results come back replicated on all of them.
        (When the number of runs does not divide evenly, XLA may compute them replicated:
        correct, but no faster than one device.)

    Returns:
      A :class:`SweepResult` with ``len(seeds) * len(learning_rates)`` runs.

    Example:
      >>> x = jnp.linspace(0.0, 1.0, 20); y = 3.0 * x + 1.0
      >>> loss = lambda p, b: jnp.mean((p["a"] * b[0] + p["b"] - b[1]) ** 2)
      >>> init = lambda key: {"a": jnp.zeros(()), "b": jnp.zeros(())}
      >>> r = sweep(loss, init, (x, y), optimizer_fn=optax.sgd, learning_rates=[0.5, 5.0],
      ...           seeds=[0], steps=500)
      >>> print(r.histories.shape, r.diverged.tolist(), round(float(r.params["a"][0]), 3))
      (2, 500) [False, True] 3.0
    """
    if not callable(optimizer_fn):
        raise TypeError(
            "sweep: optimizer_fn must be an optax optimizer function such as optax.sgd (not "
            f"an optimizer object such as optax.sgd(0.1)), got {type(optimizer_fn).__name__}."
        )
    if not callable(init_fn):
        raise TypeError(f"sweep: init_fn must be callable (key -> params), got {init_fn!r}.")
    steps = _positive_int(steps, "steps")
    kwargs = tuple(sorted((optimizer_kwargs or {}).items()))
    if "learning_rate" in dict(kwargs):
        raise ValueError("sweep: pass the learning rates as learning_rates=, not optimizer_kwargs.")
    try:
        optimizer = _Optimizer(optimizer_fn, kwargs)
        hash(optimizer)
    except TypeError:
        raise TypeError(
            f"sweep: optimizer_kwargs values must be hashable (numbers, strings, tuples), got "
            f"{dict(kwargs)!r}."
        ) from None
    leaves, treedef, n = _flatten_data(data, "data")
    plan = None
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
        if batch_size < n:
            plan = _Batching(n, batch_size, n % batch_size != 0)
    arrays, layout = _distinct_arrays(leaves, treedef)
    dtype = jnp.result_type(*(x for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)), float)
    run_seeds, run_lrs, device_seeds, device_lrs = _grid_arrays(seeds, learning_rates, dtype)
    mesh = data_mesh(devices)
    if mesh is not None:  # every device gets the data and the grid; each trains its runs
        device_seeds, device_lrs, arrays = place(
            (device_seeds, device_lrs, arrays), replicated(mesh)
        )
    static = {
        "init_fn": init_fn,
        "loss_fn": loss_fn,
        "optimizer": optimizer,
        "layout": layout,
        "plan": plan,
        "steps": steps,
        "mesh": mesh,
    }
    program = _executable((device_seeds, device_lrs, arrays), static)
    params, opt_state, buffers = program(device_seeds, device_lrs, arrays)
    buffers = np.asarray(buffers)  # the one transfer (and sync)
    diverged = ~np.isfinite(buffers).all(axis=1)
    final = np.where(diverged, np.nan, buffers[:, -1])
    return SweepResult(params, opt_state, buffers[:, 1:-1], run_seeds, run_lrs, final, diverged)
