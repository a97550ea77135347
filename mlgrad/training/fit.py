"""Gradient descent compiled by XLA: ``fit`` runs the training loop as ``lax.scan`` chunks.

One optimizer step is

.. math:: g_t = \\nabla_\\theta L(\\theta_t; B_t), \\qquad
          (u_t, s_{t+1}) = \\mathrm{update}(g_t, s_t, \\theta_t), \\qquad
          \\theta_{t+1} = \\theta_t + u_t

with the gradient from :func:`mlgrad.gradient` and the update from an optax
``GradientTransformation``. Steps run inside a compiled ``jax.lax.scan`` (Python is not on the
per-step path); between chunks the host evaluates the validation loss, updates the progress
bar and calls the user's callback.

Design notes:

* **Compile once.** The chunk program is a module-level ``jax.jit`` whose static arguments are
  the loss function, the optimizer object, the batching plan and the chunk length; data and
  state are ordinary arguments. A second ``fit`` with the same loss function, optimizer object
  and shapes reuses the compiled program.
* **Stateless batches.** The batch of step ``s`` (0-based) is a pure function of ``s`` and the
  run's key: epoch ``e = s // batches_per_epoch`` is shuffled by
  ``jax.random.permutation(jax.random.fold_in(key, e), n)`` and step ``s`` takes slice
  ``s % batches_per_epoch`` of it. Resuming needs no data cursor, and the result does not
  depend on where chunks start. The orders of the epochs a chunk touches are drawn by a
  separate small jitted program (compiled once per data size and shared by every model: the
  PRNG and sort take about half a second to compile) and passed to the chunk.
* **No recompilation for a ragged last batch.** When ``n % batch_size != 0`` every batch has
  ``batch_size`` slots; the last batch of an epoch is padded with real examples and masked.
  The loss is then evaluated per example (``jax.vmap`` over batches of size 1) and averaged over
  the real examples only.
* **Divergence without a re-run.** The scan carry holds a ``finite`` flag; after the first step
  whose loss (or updated state) is not finite the carry is frozen, so the chunk's final carry
  is the last good state.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlgrad._validation import as_float
from mlgrad.derivatives import gradient

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]
Callback = Callable[["TrainState", np.ndarray, "float | None"], None]

#: Chunk length used when neither ``chunk_size`` nor ``eval_every`` is given.
DEFAULT_CHUNK_SIZE = 1000


class TrainState(NamedTuple):
    """The full, checkpointable state of a training run.

    Attributes:
      params: the model parameters (any pytree of float arrays).
      opt_state: the optax optimizer state.
      step: int32 scalar, the number of optimizer steps taken.
      key: the run's base PRNG key (``jax.random.PRNGKey(seed)``); it never changes during the
        run, the batch order of epoch ``e`` is drawn from ``jax.random.fold_in(key, e)``.
    """

    params: PyTree
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the final parameters (``state.params``).
      opt_state: the final optimizer state (``state.opt_state``).
      history: the training loss of every step run by this call, shape ``(steps_run,)``;
        ``history[i]`` is the loss of the batch of step ``start + i + 1`` at the parameters
        before that step's update.
      val_history: ``(k, 2)`` array of ``(step, validation loss)`` rows, the loss evaluated at
        the parameters after ``step`` steps; shape ``(0, 2)`` without ``val_data``.
      state: the final :class:`TrainState` (pass it back as ``state=`` to continue).
      param_trace: with ``trace_params=True`` the parameters after every step run by this call,
        as a pytree of NumPy arrays with a leading step axis; otherwise ``None``.
    """

    params: PyTree
    opt_state: optax.OptState
    history: np.ndarray
    val_history: np.ndarray
    state: TrainState
    param_trace: PyTree | None


DIVERGED_MESSAGE = (
    "Training diverged at step {step}: {what}. The last good state (after {good} steps) is "
    "attached as .last_good_state. Try a smaller learning rate (for example 10 times "
    "smaller), or check the data and the loss function for infinities and NaNs."
)


class TrainingDivergedError(RuntimeError):
    """Raised by :func:`fit` at the first step whose loss or update is not finite.

    Attributes:
      step: the 1-based number of the step that failed (its loss, or the parameters or
        optimizer state it produced, were NaN or infinite).
      last_good_state: the :class:`TrainState` before that step (``step - 1`` steps taken),
        finite whenever the initial state was.
      history: the losses of this ``fit`` call up to and including the failing step.
    """

    def __init__(self, step: int, last_good_state: TrainState, history: np.ndarray) -> None:
        self.step = step
        self.last_good_state = last_good_state
        self.history = history
        loss = float(history[-1]) if len(history) else float("nan")
        if math.isfinite(loss):
            what = f"the update made the parameters or optimizer state non-finite (loss {loss})"
        else:
            what = f"the loss is {loss}"
        super().__init__(DIVERGED_MESSAGE.format(step=step, what=what, good=step - 1))


class _Batching(NamedTuple):
    """The static mini-batch plan (hashable: part of the compile-cache key)."""

    n: int  # number of examples
    batch_size: int
    masked: bool  # n % batch_size != 0: per-example losses and a masked mean

    @property
    def per_epoch(self) -> int:
        return -(-self.n // self.batch_size)


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _all_finite(tree: PyTree) -> jax.Array:
    checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if _is_float(x)]
    return functools.reduce(jnp.logical_and, checks, jnp.asarray(True))


def _check_scalar_loss(loss: Any) -> jax.Array:
    if jnp.shape(loss) != () or not _is_float(loss):
        raise TypeError(
            "fit: loss_fn(params, batch) must return a float scalar (the mean loss over the "
            f"batch), but it returned shape {jnp.shape(loss)} and dtype "
            f"{jnp.result_type(loss)}. Reduce it with jnp.mean."
        )
    return loss


def _objective(
    params: PyTree, batch: PyTree, mask: jax.Array | None, loss_fn: LossFn
) -> tuple[jax.Array, jax.Array]:
    """The batch loss (returned twice: the second copy is the aux value of the gradient)."""
    if mask is None:
        loss = _check_scalar_loss(loss_fn(params, batch))
    else:
        singles = jax.tree.map(lambda x: x[:, None], batch)  # B batches of size 1
        per_example = jax.vmap(lambda b: _check_scalar_loss(loss_fn(params, b)))(singles)
        total = jnp.sum(jnp.where(mask, per_example, jnp.zeros_like(per_example)))
        loss = total / jnp.sum(mask).astype(per_example.dtype)
    return loss, loss


@functools.partial(jax.jit, static_argnames=("plan", "count"))
def _epoch_orders(key: jax.Array, first_epoch: jax.Array, *, plan: _Batching, count: int):
    """The shuffled example orders of ``count`` epochs from ``first_epoch``, padded to whole
    batches with the epoch's first examples: shape ``(count, per_epoch * batch_size)``.

    Epoch ``e``'s order is ``jax.random.permutation(jax.random.fold_in(key, e), n)``. Kept out
    of the training program (the PRNG costs about half a second to compile) so that it is
    compiled once per data size and shared by every loss function and optimizer.
    """

    def order(epoch: jax.Array) -> jax.Array:
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), plan.n).astype(jnp.int32)
        pad = plan.per_epoch * plan.batch_size - plan.n
        return jnp.concatenate([perm, perm[:pad]]) if pad else perm

    return jax.lax.map(order, first_epoch + jnp.arange(count, dtype=jnp.int32))


def _epochs_touched(length: int, plan: _Batching) -> int:
    """How many epoch orders a chunk of up to ``length`` steps needs, wherever it starts.

    At most ``ceil((length - 1) / per_epoch) + 1`` epochs; rounded up to a power of two so
    that chunks of different lengths share a few compiled :func:`_epoch_orders` programs.
    """
    needed = -(-(max(length, 1) - 1) // plan.per_epoch) + 1
    return 1 << (needed - 1).bit_length()


def _batch(
    data: PyTree, orders: jax.Array, step: jax.Array, first_epoch: jax.Array, plan: _Batching
) -> tuple[PyTree, jax.Array | None]:
    """The examples of ``step`` (and the mask of real examples when batches are ragged)."""
    epoch, slot = jnp.divmod(step, plan.per_epoch)
    start = slot * plan.batch_size
    idx = jax.lax.dynamic_slice(orders[epoch - first_epoch], (start,), (plan.batch_size,))
    batch = jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)
    mask = (start + jnp.arange(plan.batch_size)) < plan.n if plan.masked else None
    return batch, mask


def _train_step(
    params: PyTree,
    opt_state: optax.OptState,
    batch: PyTree,
    mask: jax.Array | None,
    *,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
) -> tuple[PyTree, optax.OptState, jax.Array, jax.Array]:
    """One optimizer step: new params and optimizer state, the batch loss, all finite?"""
    grads, loss = gradient(_objective, has_aux=True)(params, batch, mask, loss_fn)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & _all_finite((new_params, new_opt_state))
    return new_params, new_opt_state, loss, finite


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "plan", "length", "trace"))
def _run_chunk(
    state: TrainState,
    data: PyTree,
    orders: jax.Array | None,
    *,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    plan: _Batching | None,
    length: int,
    trace: bool,
) -> tuple[TrainState, jax.Array, jax.Array, PyTree | None]:
    """``length`` steps as one ``lax.scan``; frozen from the first non-finite step on.

    ``orders`` are the epoch orders of :func:`_epoch_orders` from the chunk's first epoch
    (None for full batches). Returns (final state, whether every step was finite, the
    losses, the params after every step or None). When a step was not finite, the final
    state is the state before it: its ``step`` is the number of good steps.
    """
    first_epoch = None if plan is None else state.step // plan.per_epoch

    def body(carry, _):
        params, opt_state, step, ok = carry
        if plan is None:
            batch, mask = data, None
        else:
            batch, mask = _batch(data, orders, step, first_epoch, plan)
        new_params, new_opt_state, loss, finite = _train_step(
            params, opt_state, batch, mask, loss_fn=loss_fn, optimizer=optimizer
        )
        ok = ok & finite
        params, opt_state, step = jax.tree.map(
            lambda new, old: jnp.where(ok, new, old),
            (new_params, new_opt_state, step + 1),
            (params, opt_state, step),
        )
        return (params, opt_state, step, ok), (loss, params if trace else None)

    init = (state.params, state.opt_state, state.step, jnp.asarray(True))
    (params, opt_state, step, ok), (losses, params_trace) = jax.lax.scan(
        body, init, None, length=length
    )
    return TrainState(params, opt_state, step, state.key), ok, losses, params_trace


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _eval_loss(params: PyTree, data: PyTree, *, loss_fn: LossFn) -> jax.Array:
    return _check_scalar_loss(loss_fn(params, data))


def _num_examples(data: PyTree, what: str) -> tuple[PyTree, int]:
    """Converts the leaves to JAX arrays and checks they share a leading example axis."""
    leaves, treedef = jax.tree.flatten(data)
    if not leaves:
        raise ValueError(f"fit: {what} has no arrays; pass e.g. (x, y) with x.shape[0] examples.")
    arrays = [jnp.asarray(x) for x in leaves]
    sizes = {a.shape[0] if a.ndim else None for a in arrays}
    if len(sizes) != 1 or None in sizes:
        shapes = [a.shape for a in arrays]
        raise ValueError(
            f"fit: every array in {what} needs the same leading (example) axis, got shapes "
            f"{shapes}."
        )
    (n,) = sizes
    if n == 0:
        raise ValueError(f"fit: {what} has no examples (leading axis of length 0).")
    return jax.tree.unflatten(treedef, arrays), n


def _positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"fit: {name} must be an int, got {value!r}.") from None
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValueError(f"fit: {name} must be {bound}, got {v}.")
    return v


def _next_boundary(step: int, steps: int, every: tuple[int, ...]) -> int:
    """The first chunk boundary after ``step``: a multiple of any of ``every``, or ``steps``."""
    return min([steps, *((step // k + 1) * k for k in every)])


@functools.lru_cache(maxsize=1)
def _default_key() -> jax.Array:
    return jax.random.PRNGKey(0)


@functools.partial(jax.jit, static_argnames=("optimizer",))
def _init_state(
    params: PyTree, key: jax.Array, *, optimizer: optax.GradientTransformation
) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), key)


def _initial_state(params: PyTree, optimizer: optax.GradientTransformation, key: Any) -> TrainState:
    if params is None:
        raise ValueError("fit: params is None; pass initial parameters, or state= to resume.")
    params = as_float(params, "fit: params")
    key = _default_key() if key is None else jnp.asarray(key)
    return _init_state(params, key, optimizer=optimizer)


def fit(
    loss_fn: LossFn,
    params: PyTree,
    data: PyTree,
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    batch_size: int | None = None,
    key: jax.Array | None = None,
    val_data: PyTree | None = None,
    eval_every: int | None = None,
    state: TrainState | None = None,
    chunk_size: int | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    trace_params: bool = False,
) -> FitResult:
    r"""Minimises ``loss_fn`` by gradient descent, compiled by XLA in ``lax.scan`` chunks.

    .. math:: \theta_{t+1} = \theta_t + \mathrm{update}\big(\nabla_\theta L(\theta_t; B_t)\big)

    Full-batch gradient descent when ``batch_size`` is None or at least the number of
    examples ``n``; otherwise shuffled mini-batch SGD: epoch ``e`` visits the examples in the
    order ``jax.random.permutation(jax.random.fold_in(key, e), n)``, ``batch_size`` at a time,
    and a last partial batch is padded and masked (never a recompilation).

    Contract on ``loss_fn``: ``loss_fn(params, batch)`` returns a float scalar that is a **mean
    over the examples of the batch** plus terms that do not depend on the batch (penalties).
    When ``n % batch_size != 0`` the engine calls it on batches of one example (``jax.vmap``)
    and averages over the real examples, which gives exactly the loss and gradient of the mean
    over the real examples only under this contract.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``. Keep the same function object between
        calls to reuse the compiled program.
      params: the initial parameters (a pytree of float arrays). Ignored when ``state`` is given.
      data: a pytree of arrays whose leading axis indexes the examples, e.g. ``(x, y)``.
      optimizer: any optax ``GradientTransformation`` (e.g. ``optax.sgd(0.1)``). The same
        object (not an equal one) is needed to reuse the compiled program.
      steps: the **target total** number of optimizer steps: a fresh run takes ``steps``
        steps; a resumed run continues from ``state.step`` up to ``steps``.
      batch_size: examples per step; None (or ``>= n``) for full-batch gradient descent.
      key: the run's PRNG key (``jax.random.PRNGKey(seed)``) that shuffles the mini-batches;
        default ``PRNGKey(0)``. Ignored when ``state`` is given (``state.key`` is used).
      val_data: a validation pytree like ``data``; its (full-batch) loss is evaluated every
        ``eval_every`` steps and at the end.
      eval_every: steps between validation losses (chunk boundaries fall on its multiples);
        None evaluates only at the end.
      state: a :class:`TrainState` to resume from (e.g. ``result.state`` or a restored
        checkpoint). Training continues bit-identically to an uninterrupted run.
      chunk_size: steps per compiled chunk (default ``eval_every``, else 1000). Chunks end at
        multiples of ``chunk_size``, at multiples of ``eval_every`` and at ``steps``, counted
        from step 0, so a resumed run meets the same boundaries.
      callback: ``callback(state, losses, val_loss)``, called on the host after every chunk
        with the state after the chunk, the chunk's losses (NumPy) and the validation loss at
        ``state.step`` (None when it was not evaluated at this boundary). Not called for a
        chunk in which training diverged.
      progress: show a progress bar (rich) on stderr.
      trace_params: record the parameters after every step (``FitResult.param_trace``), e.g.
        to draw the gradient-descent path over a loss surface.

    Returns:
      A :class:`FitResult` with the final params, opt_state and state, the per-step loss
      ``history`` of this call, ``val_history`` rows ``(step, val_loss)`` and ``param_trace``.

    Raises:
      TrainingDivergedError: at the first step whose loss (or updated state) is NaN or
        infinite; it carries ``.step`` and ``.last_good_state``.

    Example:
      >>> x = jnp.linspace(0.0, 1.0, 20); y = 3.0 * x + 1.0
      >>> loss = lambda p, b: jnp.mean((p["a"] * b[0] + p["b"] - b[1]) ** 2)
      >>> r = fit(loss, {"a": 0.0, "b": 0.0}, (x, y), optimizer=optax.sgd(0.5), steps=2000)
      >>> print(round(float(r.params["a"]), 3), round(float(r.params["b"]), 3), r.history.shape)
      3.0 1.0 (2000,)
    """
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"fit: optimizer must be an optax GradientTransformation such as optax.sgd(0.1), "
            f"got {type(optimizer).__name__}."
        )
    steps = _positive_int(steps, "steps", allow_zero=True)
    data, n = _num_examples(data, "data")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    plan = None
    if batch_size is not None and batch_size < n:
        plan = _Batching(n, batch_size, n % batch_size != 0)
    if val_data is not None:
        val_data, _ = _num_examples(val_data, "val_data")
    if eval_every is not None:
        eval_every = _positive_int(eval_every, "eval_every")
    if chunk_size is not None:
        chunk_size = _positive_int(chunk_size, "chunk_size")
    else:
        chunk_size = eval_every or DEFAULT_CHUNK_SIZE

    if state is None:
        state = _initial_state(params, optimizer, key)
    elif not isinstance(state, TrainState):
        raise TypeError(f"fit: state must be a TrainState, got {type(state).__name__}.")
    start = int(state.step)
    if steps < start:
        raise ValueError(
            f"fit: steps={steps} is the target total step count, but the state has already "
            f"taken {start} steps; pass steps >= {start}."
        )
    state = state._replace(step=jnp.asarray(state.step, jnp.int32))
    boundaries = (chunk_size,) if eval_every is None else (chunk_size, eval_every)
    chunk = functools.partial(
        _run_chunk, loss_fn=loss_fn, optimizer=optimizer, plan=plan, trace=trace_params
    )

    def is_eval_step(step: int) -> bool:
        return val_data is not None and (
            step == steps or bool(eval_every and step % eval_every == 0)
        )

    if plan is not None:
        count = _epochs_touched(min(steps - start, *boundaries), plan)
    losses: list[np.ndarray] = []
    vals: list[tuple[int, float]] = []
    trace: list[PyTree] = []
    with _Progress(progress, start, steps) as bar:
        step = start
        while step < steps:
            end = _next_boundary(step, steps, boundaries)
            orders = None
            if plan is not None:  # sized for the longest chunk: one program per fit call
                first_epoch = state.step // plan.per_epoch
                orders = _epoch_orders(state.key, first_epoch, plan=plan, count=count)
            new, ok, chunk_losses, params_trace = chunk(state, data, orders, length=end - step)
            ok, chunk_losses = jax.device_get((ok, chunk_losses))
            if not ok:  # the scan froze `new` at the last good state, before the failing step
                bad = int(new.step) - step  # index of the failing step in this chunk
                losses.append(chunk_losses[: bad + 1])
                raise TrainingDivergedError(step + bad + 1, new, np.concatenate(losses))
            state, step = new, end
            losses.append(chunk_losses)
            if trace_params:
                trace.append(jax.tree.map(np.asarray, params_trace))
            val_loss = None
            if is_eval_step(step):
                val_loss = float(_eval_loss(state.params, val_data, loss_fn=loss_fn))
                vals.append((step, val_loss))
            bar.update(step, float(chunk_losses[-1]), val_loss)
            if callback is not None:
                callback(state, chunk_losses, val_loss)

    history = np.concatenate(losses) if losses else np.zeros((0,), np.float32)
    val_history = np.asarray(vals, dtype=np.float64).reshape(-1, 2)
    param_trace = None
    if trace_params:
        param_trace = (
            jax.tree.map(lambda *xs: np.concatenate(xs), *trace)
            if trace
            else jax.tree.map(
                lambda x: np.zeros((0, *np.shape(x)), np.result_type(x)), state.params
            )
        )
    return FitResult(state.params, state.opt_state, history, val_history, state, param_trace)


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool, start: int, total: int) -> None:
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task("train", total=total, completed=start, metrics="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, loss: float, val_loss: float | None) -> None:
        if self._bar is None:
            return
        metrics = f"loss {loss:.4g}" + ("" if val_loss is None else f"  val {val_loss:.4g}")
        self._bar.update(self._task, completed=step, metrics=metrics)
