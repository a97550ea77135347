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

Chunks: without a ``callback`` the whole sweep is one compiled chunk; with one (as
``mlgrad sweep`` trains, to honour stop requests and save its progress) it runs in chunks of
about :data:`CHUNK_SECONDS` each, and ``state=`` continues it. Chunking, stopping and
continuing never change the result (bit-identical in the tests). With mini-batches each chunk
draws the epoch orders it needs once per seed (a sort per epoch) into one stack from which
each run gathers its own batches (``fit``'s ``_run_chunk`` with ``orders_offset``, the first
row of the run's seed). Shapes must agree across runs: only seeds and learning rates are
swept; the compiled program depends on the numbers of seeds and of learning rates (and on
the chunk's length).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from mlgrad.training.fit import (
    _AUX,
    _LOSS,
    LossFn,
    PyTree,
    _all_finite,
    _Batching,
    _check_exact_batches,
    _device_int,
    _distinct_arrays,
    _epoch_orders,
    _epochs_touched,
    _flatten_data,
    _Layout,
    _Loss,
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

__all__ = ["SweepResult", "SweepState", "initial_sweep_state", "sweep"]

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
      aux_histories: with ``has_aux``, ``{name: (runs, steps) array}`` of every step's aux.
      model_state: with ``model_state=``, every run's final model state (leading run axis).
    """

    params: PyTree
    opt_state: optax.OptState
    histories: np.ndarray
    seeds: np.ndarray
    learning_rates: np.ndarray
    final_losses: np.ndarray
    diverged: np.ndarray
    aux_histories: dict[str, np.ndarray] = {}  # noqa: RUF012 (a NamedTuple default)
    model_state: PyTree = None

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


class SweepState(NamedTuple):
    """A sweep part-way: every run after ``step`` steps, enough to continue it exactly.

    Attributes:
      params: every run's parameters (leading run axis, the seed-major grid's order).
      opt_state: every run's optimizer state (leading run axis).
      step: the steps taken (an int32 scalar).
      histories: ``(runs, step)`` the training losses so far (to the callback: a view of
        the sweep's buffer, read it before the sweep goes on, or copy it).
      model_state: every run's model state (leading run axis), or None.

    :func:`sweep` gives it to its ``callback`` after every chunk and takes it back as
    ``state=`` to continue; it is a pytree of arrays, so
    :class:`mlgrad.training.Checkpointer` saves and restores it.
    """

    params: PyTree
    opt_state: optax.OptState
    step: Any  # int32 scalar (array or NumPy)
    histories: Any  # (runs, step) array
    model_state: PyTree = None


def _constrain(tree: PyTree, mesh: Mesh | None, sharding: Callable[[Mesh], Any]) -> PyTree:
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, sharding(mesh))


def _train_keys(seeds: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each seed's ``split(PRNGKey(seed))``: the init keys and the mini-batch-order keys."""
    keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(seeds)
    return keys[:, 0], keys[:, 1]


@functools.partial(jax.jit, static_argnames=("init_fn", "optimizer", "mesh"))
def _sweep_init(
    seeds: jax.Array,
    learning_rates: jax.Array,
    model_state: PyTree,
    *,
    init_fn: InitFn,
    optimizer: _Optimizer,
    mesh: Mesh | None = None,
) -> tuple[PyTree, optax.OptState, PyTree]:
    """Every run's params, optimizer state and model state at step 0 (leading run axis
    ``R = S * L`` of the seed-major grid ``seeds x learning_rates``); the params are
    computed once per seed and repeated for its ``L`` runs, the model state repeated."""
    num_seeds, num_lrs = seeds.shape[0], learning_rates.shape[0]
    per_run = functools.partial(jnp.repeat, repeats=num_lrs, axis=0)  # seed-major grid
    params = jax.tree.map(per_run, jax.vmap(init_fn)(_train_keys(seeds)[0]))
    run_lrs = jnp.tile(learning_rates, num_seeds)
    opt_state = jax.vmap(lambda p, lr: optimizer.build(lr).init(p))(params, run_lrs)
    runs = num_seeds * num_lrs
    model_state = jax.tree.map(lambda x: jnp.broadcast_to(x, (runs, *jnp.shape(x))), model_state)
    return _constrain((params, opt_state, model_state), mesh, batch_sharding)


@functools.partial(
    jax.jit,
    static_argnames=("loss_fn", "optimizer", "layout", "plan", "length", "mesh"),
)
def _sweep_chunk(
    params: PyTree,
    opt_state: optax.OptState,
    model_state: PyTree,
    step: jax.Array,
    seeds: jax.Array,
    arrays: tuple[jax.Array, ...],
    *,
    loss_fn: _Loss,
    optimizer: _Optimizer,
    layout: _Layout,
    plan: _Batching | None,
    length: int,
    mesh: Mesh | None = None,
) -> tuple[PyTree, optax.OptState, PyTree, jax.Array]:
    """``length`` more steps of every run from ``step``: the params, optimizer states and
    model states, and ``fit``'s chunk buffer of every run (``(R, rows, length + 1)``: the
    status of the state and the losses, the step metrics, the aux values).

    The loop is ``fit``'s own compiled chunk (:func:`mlgrad.training.fit._run_chunk`),
    vmapped over the runs, each gathering its own batches: with per-run batches XLA computes
    each run's loss and gradient with the solo run's arithmetic (bit-identical to ``fit`` in
    the tests and the benchmark's mini-batch sweeps). A ``vmap`` over the seeds around one
    over the learning rates would gather each batch once per seed, but XLA then contracts
    the shared batch with every run's residuals in one matrix product, whose different
    summation order mini-batch SGD amplifies, at no gain in time.

    With mini-batches the chunk's epoch orders are drawn once per seed (``S`` instead of
    ``R`` times one run's shuffling) into one stack, shared, from which run ``r`` reads its
    seed's rows. With a ``mesh`` the runs are split across its devices (the run axis
    constrained to ``P("data")``; data and orders replicated): runs are independent, so each
    device trains its share and only the losses are gathered, replicated on every device.
    """
    num_seeds = seeds.shape[0]
    num_lrs = jax.tree.leaves(params)[0].shape[0] // num_seeds
    # The update reads the learning rate from the state; the value given here is not used.
    transformation = optimizer.build(1.0)
    orders = offsets = None
    if plan is not None:
        first_epoch = step // plan.per_epoch
        needed = (step + length - 1) // plan.per_epoch - first_epoch + 1
        count = _epochs_touched(length, plan)
        orders = jax.vmap(lambda k: _epoch_orders(k, first_epoch, needed, plan=plan, count=count))(
            _train_keys(seeds)[1]
        )  # (S, count, per_epoch * batch_size)
        orders = orders.reshape(num_seeds * count, -1)
        offsets = jnp.repeat(jnp.arange(num_seeds, dtype=jnp.int32) * count, num_lrs)

    run_keys = jnp.repeat(_train_keys(seeds)[1], num_lrs, axis=0) if loss_fn.with_key else None

    def run(p: PyTree, s: optax.OptState, m: PyTree, offset: Any, key: Any) -> tuple:
        p, s, m, buffer, *_ = _run_chunk(
            p,
            s,
            m,
            step,
            key,
            arrays,
            orders,
            None,
            layout=layout,
            loss_fn=loss_fn,
            optimizer=transformation,
            plan=plan,
            length=length,
            trace=False,
            orders_offset=offset,
        )
        return p, s, m, buffer

    params, opt_state, model_state, offsets = _constrain(
        (params, opt_state, model_state, offsets), mesh, batch_sharding
    )
    params, opt_state, model_state, buffers = _constrain(
        jax.vmap(run)(params, opt_state, model_state, offsets, run_keys), mesh, batch_sharding
    )
    return params, opt_state, model_state, _constrain(buffers, mesh, replicated)


@functools.partial(jax.jit, static_argnames=("loss_fn", "layout", "mesh"))
def _sweep_final(
    params: PyTree,
    opt_state: optax.OptState,
    model_state: PyTree,
    seeds: jax.Array,
    step: jax.Array,
    arrays: tuple[jax.Array, ...],
    *,
    loss_fn: _Loss,
    layout: _Layout,
    mesh: Mesh | None = None,
) -> tuple[PyTree, optax.OptState, PyTree, jax.Array]:
    """Every run's loss on the whole training data at its final params (NaN where the state
    is not finite; a loss with a key gets ``fold_in(split(key)[0], step)``, as ``fit``'s
    evaluations), with the params and states replicated on every device (so that every
    process of a multi-process program can read them)."""
    data = layout.build(arrays)
    runs = jax.tree.leaves(params)[0].shape[0]
    keys = jnp.repeat(_train_keys(seeds)[1], runs // seeds.shape[0], axis=0)

    def final(p: PyTree, s: optax.OptState, m: PyTree, key: jax.Array) -> jax.Array:
        eval_key = jax.random.fold_in(jax.random.split(key)[0], step) if loss_fn.with_key else None
        loss = _objective(p, data, None, loss_fn, m, eval_key)[0]
        return jnp.where(_all_finite((p, s, m)), loss, jnp.nan)

    losses = jax.vmap(final)(params, opt_state, model_state, keys)
    return _constrain((params, opt_state, model_state, losses), mesh, replicated)


_EXECUTABLES: dict[Any, Any] = {}
#: How many sweep training programs (chunks) were compiled in this process (tests count them).
compilations = 0


def _executable(args: tuple, static: dict[str, Any]) -> Any:
    """The compiled chunk program for these argument shapes, checked to fit in memory first.

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
        compiled = _sweep_chunk.lower(*args, **static).compile()
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


#: Steps of the chunk that is timed to size the others when a sweep is trained in chunks
#: (``callback``): long enough to time, short enough to stop within a moment even for large
#: sweeps. Chunks start at multiples of it from the end (the first takes the remainder), so
#: that a sweep compiles at most three chunk programs, also when it is resumed.
FIRST_CHUNK = 64
#: What the other chunks aim at, in seconds of training: the host checks in (stop requests,
#: checkpoints) this often, and the per-chunk cost (a transfer, a callback) stays negligible.
CHUNK_SECONDS = 0.5
#: The longest chunk (as ``fit``'s LONG_CHUNK_SIZE).
MAX_CHUNK = 1 << 16


def _timed_length(seconds: float) -> int:
    """The power of two of steps (a multiple of :data:`FIRST_CHUNK`) that takes about
    :data:`CHUNK_SECONDS`, at the speed of a :data:`FIRST_CHUNK` chunk that took ``seconds``."""
    steps = CHUNK_SECONDS / max(seconds, 1e-9) * FIRST_CHUNK
    return 1 << max(FIRST_CHUNK.bit_length() - 1, min(int(steps).bit_length() - 1, 16))


def _next_length(remaining: int, timed: int | None) -> int:
    """The next chunk: what is left over a multiple of :data:`FIRST_CHUNK`, then one chunk of
    that size (to be timed), then ``timed``-step chunks while they fit, then
    :data:`FIRST_CHUNK` again."""
    if remaining % FIRST_CHUNK:
        return remaining % FIRST_CHUNK
    if timed is None or remaining < timed:
        return FIRST_CHUNK
    return timed


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
    state: SweepState | None = None,
    chunk_size: int | None = None,
    callback: Callable[[SweepState], None] | None = None,
    with_key: bool = False,
    has_aux: bool = False,
    model_state: PyTree = None,
    template_only: bool = False,
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
      state: a :class:`SweepState` (from ``callback``, or restored from a checkpoint) to
        continue from; the result is bit-identical to the uninterrupted sweep's.
      chunk_size: steps per compiled chunk. Default: the whole sweep in one chunk without
        ``callback``; with it, chunks of about :data:`CHUNK_SECONDS` of training each (a
        power of two of steps, from the time a :data:`FIRST_CHUNK`-step chunk took). The
        chunking never changes the result, only how often the host checks in.
      with_key, has_aux, model_state: as :func:`mlgrad.fit` takes them (every run starts
        from ``model_state``; run ``i``'s step keys come from its own ``key``), so that run
        ``i`` is still the solo ``fit`` run above with these options.
      template_only: return the :class:`SweepState` at step 0 instead of training (see
        :func:`initial_sweep_state`).
      callback: called with the :class:`SweepState` after every chunk (on the host; the
        arrays stay on the devices). It may save the state, or raise to stop the sweep (a
        ``KeyboardInterrupt`` for a stop request, say): the sweep continues from that state.

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
    if chunk_size is not None:
        chunk_size = _positive_int(chunk_size, "chunk_size")
    optimizer = _checked_optimizer(optimizer_fn, optimizer_kwargs)
    leaves, treedef, n = _flatten_data(data, "data")
    plan = None
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
        if batch_size < n:
            plan = _Batching(n, batch_size, n % batch_size != 0)
    objective = _Loss(loss_fn, bool(with_key), bool(has_aux), model_state is not None)
    _check_exact_batches(objective, plan, None, None)
    arrays, layout = _distinct_arrays(leaves, treedef)
    dtype = jnp.result_type(*(x for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)), float)
    run_seeds, run_lrs, device_seeds, device_lrs = _grid_arrays(seeds, learning_rates, dtype)
    mesh = data_mesh(devices)
    device_int: Callable[[int], jax.Array] = _device_int
    if mesh is not None:  # every device gets the data and the grid; each trains its runs
        device_seeds, device_lrs, arrays = place(
            (device_seeds, device_lrs, arrays), replicated(mesh)
        )

        def replicated_int(value: int) -> jax.Array:
            return place(np.int32(value), replicated(mesh))

        device_int = replicated_int

    runs = len(run_seeds)
    if state is None:
        params, opt_state, model_states = _sweep_init(
            device_seeds, device_lrs, model_state, init_fn=init_fn, optimizer=optimizer, mesh=mesh
        )
        start, histories = 0, np.zeros((runs, steps), dtype)
    else:
        params, opt_state, start, histories = _continued(state, runs, steps, dtype, mesh)
        model_states = state.model_state
        if mesh is not None:
            model_states = place(model_states, batch_sharding(mesh))
    if template_only:  # (initial_sweep_state's; the annotation is the training call's)
        state0 = SweepState(params, opt_state, np.int32(start), histories[:, :start], model_states)
        return state0  # type: ignore[return-value]
    finite = np.isfinite(histories[:, :start]).all(axis=1)
    aux_names = _aux_names(objective, params, model_states, layout.build(arrays), plan)
    aux = {name: np.full((runs, steps), np.nan, dtype) for name in aux_names}
    static = {
        "loss_fn": objective,
        "optimizer": optimizer,
        "layout": layout,
        "plan": plan,
        "mesh": mesh,
    }
    step, timed = start, None
    while step < steps:
        if chunk_size is not None:
            length = min(chunk_size, steps - step)
        elif callback is None:
            length = steps - step
        else:
            length = _next_length(steps - step, timed)
        args = (params, opt_state, model_states, device_int(step), device_seeds, arrays)
        program = _executable(args, {**static, "length": length})
        t0 = time.perf_counter()
        params, opt_state, model_states, buffers = program(*args)
        buffers = np.asarray(buffers)  # the one transfer (and sync) of the chunk
        seconds = time.perf_counter() - t0
        finite &= np.isfinite(buffers[:, _LOSS]).all(axis=1)
        histories[:, step : step + length] = buffers[:, _LOSS, 1:]
        for i, name in enumerate(aux_names):
            aux[name][:, step : step + length] = buffers[:, _AUX + i, 1:]
        step += length
        if callback is not None:
            callback(
                SweepState(params, opt_state, np.int32(step), histories[:, :step], model_states)
            )
        if timed is None and length == FIRST_CHUNK:
            timed = _timed_length(seconds)
    params, opt_state, model_states, final = _sweep_final(
        params,
        opt_state,
        model_states,
        device_seeds,
        device_int(steps),
        arrays,
        loss_fn=objective,
        layout=layout,
        mesh=mesh,
    )
    final = np.asarray(final)
    diverged = ~(finite & np.isfinite(final))
    final = np.where(diverged, np.nan, final)
    return SweepResult(
        params, opt_state, histories, run_seeds, run_lrs, final, diverged, aux, model_states
    )


def _aux_names(
    loss: _Loss, params: PyTree, model_states: PyTree, data: PyTree, plan: _Batching | None
) -> list[str]:
    """The names of the loss's aux outputs, sorted (traced for run 0; nothing runs)."""
    if not loss.has_aux:
        return []
    rows = jax.tree.leaves(data)[0].shape[0] if plan is None else plan.width
    first = functools.partial(jax.tree.map, lambda x: x[0])
    key = jax.random.PRNGKey(0) if loss.with_key else None
    out = jax.eval_shape(
        lambda p, m, b: loss(first(p), first(m), b, key)[1],
        params,
        model_states,
        jax.tree.map(lambda x: x[:rows], data),
    )
    return sorted(out)


def initial_sweep_state(init_fn: InitFn, data: PyTree, **kwargs: Any) -> SweepState:
    """The :class:`SweepState` a sweep starts from (step 0): with :func:`sweep`'s arguments
    (but ``loss_fn``), e.g. the template to restore a saved sweep state into.

    Example:
      >>> like = initial_sweep_state(init, (x, y), optimizer_fn=optax.sgd,  # doctest: +SKIP
      ...                            learning_rates=[0.1], seeds=[0, 1], steps=100)
      >>> state = Checkpointer("sweep/checkpoints").restore(like)  # doctest: +SKIP
    """
    return sweep(None, init_fn, data, template_only=True, **kwargs)  # type: ignore[arg-type,return-value]


def _checked_optimizer(
    optimizer_fn: Callable[..., optax.GradientTransformation],
    optimizer_kwargs: Mapping[str, Any] | None,
) -> _Optimizer:
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
    return optimizer


def _continued(
    state: Any, runs: int, steps: int, dtype: Any, mesh: Mesh | None
) -> tuple[PyTree, optax.OptState, int, np.ndarray]:
    """The params, optimizer states, step and histories of ``state``, checked against this
    sweep (its number of runs, its steps) and placed on its devices."""
    if not isinstance(state, SweepState):
        raise TypeError(f"sweep: state must be a SweepState, got {type(state).__name__}.")
    start = int(state.step)
    histories = np.asarray(state.histories)
    if histories.ndim != 2 or histories.shape[0] != runs:
        raise ValueError(
            f"sweep: state is of a sweep of {histories.shape[0] if histories.ndim else '?'} "
            f"runs, this one has {runs} (seeds x learning rates); continue a sweep with the "
            "seeds and learning rates it started with."
        )
    if not 0 <= start <= steps:
        raise ValueError(
            f"sweep: steps={steps} is the target total step count, but the state has already "
            f"taken {start} steps; pass steps >= {start}."
        )
    out = np.zeros((runs, steps), dtype)
    kept = min(start, histories.shape[1])
    out[:, :kept] = histories[:, :kept]
    params, opt_state = state.params, state.opt_state
    if mesh is not None:
        params, opt_state = place((params, opt_state), batch_sharding(mesh))
    return params, opt_state, start, out
