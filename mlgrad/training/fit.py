"""Gradient descent compiled by XLA: ``fit`` runs the training loop as compiled chunks.

One optimizer step is

.. math:: g_t = \\nabla_\\theta L(\\theta_t; B_t), \\qquad
          (u_t, s_{t+1}) = \\mathrm{update}(g_t, s_t, \\theta_t), \\qquad
          \\theta_{t+1} = \\theta_t + u_t

with the gradient from :func:`mlgrad.gradient` and the update from an optax
``GradientTransformation``. Steps run inside a compiled XLA loop (Python is not on the
per-step path); between chunks the host evaluates the validation loss, updates the progress
bar and calls the user's callback.

Design notes:

* **Compile once.** The chunk program is a module-level ``jax.jit`` whose static arguments are
  the loss function, the optimizer object, the batching plan, the data's layout and the chunk
  length; data and state are ordinary arguments. Chunks of one length share a program, and a
  second ``fit`` with the same loss function, optimizer object and shapes reuses it.
* **A plain hot loop.** A chunk is a loop with a static trip count whose body is the optimizer
  step and the write of its loss, nothing else: no per-step finiteness checks, no selects. The
  trip count being static matters: XLA's CPU loop then skips the loop test (a few percent of
  a tiny model's step) and its GPU loop the transfer of the test to the host at every step.
* **Few host visits.** When no callback, progress bar or periodic evaluation needs the host
  between chunks, a chunk is as long as the run (up to :data:`LONG_CHUNK_SIZE` steps), a
  fresh run's optimizer is initialised inside the chunk's program, and the host's work per
  chunk is one dispatch, one transfer (the losses and a finiteness status of the final state)
  and one ``isfinite`` pass over the losses.
* **Stateless batches.** The batch of step ``s`` (0-based) is a pure function of ``s`` and the
  run's key: epoch ``e = s // batches_per_epoch`` is shuffled by
  ``jax.random.permutation(jax.random.fold_in(key, e), n)`` and step ``s`` takes slice
  ``s % batches_per_epoch`` of it. Resuming needs no data cursor, and the result does not
  depend on where chunks start. The orders of the epochs a chunk touches are drawn by a
  separate small jitted program (compiled once per data size and shared by every model: the
  PRNG and sort take about half a second to compile) and passed to the chunk. On a CPU the
  program only draws the permutations' random sort keys and NumPy sorts them, the same
  orders several times faster than XLA's CPU sort. An array that
  appears twice in the data (an autoencoder's ``(x, x)``) is passed and gathered once.
* **No recompilation for a ragged last batch.** When ``n % batch_size != 0`` every batch has
  ``batch_size`` slots; the last batch of an epoch is padded with real examples and masked.
  That batch's loss is evaluated per example (``jax.vmap`` over batches of size 1) and
  averaged over the real examples only; on CPU a ``lax.cond`` gives the full batches to
  ``loss_fn`` itself.
* **Modules as parameters.** Inside a pytree node other than a dict, list or tuple (an
  Equinox module) only the float arrays train; the other leaves (functions, Python numbers,
  integer arrays) are a static argument of the programs (compared by identity, so the same
  model reuses its program) and are put back before each call of the loss. Plain params take
  none of this: their program is unchanged.
* **Data parallel through JAX's sharding.** With several devices (``devices="auto"``, the
  default, on a machine with more than one) the data, state and every batch carry
  ``NamedSharding`` s of a one-axis mesh ``("data",)`` (:mod:`mlgrad.training.parallel`): the
  batch is split along its examples, the state replicated, and XLA partitions the same
  program (no hand-written communication). A batch that does not divide evenly gets padded,
  masked slots, like a ragged last batch. With one device nothing changes.
* **Divergence found after the chunk, recovered by replay.** The host checks the chunk's
  losses and status; only when something is not finite does it replay the chunk from its
  first state (which it still holds) for exactly the steps before the failing one (a
  bisection when a state became non-finite while the losses stayed finite), with a program
  of the same loop body and a dynamic trip count, compiled only then. The step is
  deterministic, so the replayed last good state is the state the run had (the tests check
  it bit for bit). Assumption: a state that has become non-finite stays non-finite (true of
  gradient steps: ``inf - inf`` and anything with NaN stay non-finite), so the final state
  and the losses of a chunk reveal any non-finite step inside it.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mlgrad.derivatives import gradient
from mlgrad.training.parallel import (
    DATA_AXIS,
    Devices,
    batch_sharding,
    data_mesh,
    place,
    replicated,
    select_devices,
)
from mlgrad.training.progress import Progress
from mlgrad.training.sharpness import initial_vector, top_eigenpair

PyTree = Any
# loss_fn(params, batch) -> loss; with model_state= (params, model_state, batch), with_key=True
# a last key argument, has_aux=True (loss, aux): one type for all of them
LossFn = Callable[..., Any]
#: ``callback(state, losses, val_loss)``, or with a fourth parameter also the chunk's metrics.
Callback = Callable[..., None]

#: Chunk length used when neither ``chunk_size`` nor ``eval_every`` is given and the host
#: visits chunk boundaries (a callback or a progress bar).
DEFAULT_CHUNK_SIZE = 1000

#: Chunk length used when nothing needs the host between chunks: long chunks keep the per-chunk
#: host work (a dispatch and a transfer, tens of microseconds) off tiny problems' time.
LONG_CHUNK_SIZE = 1 << 16

#: With mini-batches, a chunk's epoch orders are drawn up front (``epochs x per_epoch x
#: batch_size`` int32 entries); the long default chunk is shortened to keep them to about this.
ORDERS_BUDGET = 1 << 22


class TrainState(NamedTuple):
    """The full, checkpointable state of a training run.

    Attributes:
      params: the model parameters (a pytree of float arrays, or a module whose other
        leaves ``fit`` holds fixed: see :func:`fit`).
      opt_state: the optax optimizer state.
      step: int32 scalar, the number of optimizer steps taken.
      key: the run's base PRNG key (``jax.random.PRNGKey(seed)``); it never changes during the
        run, the batch order of epoch ``e`` is drawn from ``jax.random.fold_in(key, e)`` and
        (``with_key``) the loss's key of step ``t`` is ``fold_in(split(key)[1], t)``.
      model_state: the model's non-trained state (batch statistics, counters) of a
        ``model_state=`` run; None otherwise.
    """

    params: PyTree
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    model_state: PyTree = None


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
      aux_history: with ``has_aux=True`` the loss's auxiliary outputs of every step run by
        this call, ``{name: (steps_run,) array}``; an empty dict otherwise.
      step_metrics: ``{"lr": ..., "grad_norm": ...}``, each ``(steps_run,)``: the learning
        rate of each step (from ``learning_rate=``, or an ``optax.inject_hyperparams``
        state; NaN when neither tells) and the global norm of its gradient.
      model_state: the final model state (``state.model_state``; None without one).
      sharpness: with ``sharpness_every=N``, ``(k, 2)`` rows ``(t, lambda_max)``: the largest
        Hessian eigenvalue of the batch loss at the parameters after ``t`` steps, for the
        ``t`` run by this call with ``t % N == 0``; None otherwise.
    """

    params: PyTree
    opt_state: optax.OptState
    history: np.ndarray
    val_history: np.ndarray
    state: TrainState
    param_trace: PyTree | None
    aux_history: dict[str, np.ndarray] = {}  # noqa: RUF012 (a NamedTuple default, never mutated)
    step_metrics: dict[str, np.ndarray] = {}  # noqa: RUF012
    model_state: PyTree = None
    sharpness: np.ndarray | None = None


class ChunkMetrics(NamedTuple):
    """The per-step records of a chunk that a 4-argument ``callback`` receives.

    Attributes:
      aux: ``{name: (chunk steps,) array}``, the loss's auxiliary outputs (``has_aux``).
      step_metrics: ``{"lr": ..., "grad_norm": ...}`` for the chunk's steps.
    """

    aux: dict[str, np.ndarray]
    step_metrics: dict[str, np.ndarray]


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
    masked: bool  # some slots are padding: per-example losses and a masked mean
    slots: int = 0  # examples computed per step when padded past batch_size (data parallel)
    drop: bool = False  # drop_remainder: an epoch is n // batch_size full batches

    @property
    def per_epoch(self) -> int:
        return self.n // self.batch_size if self.drop else -(-self.n // self.batch_size)

    @property
    def width(self) -> int:
        """Examples computed per step: ``batch_size``, or more when padded to split evenly
        across devices (the extra slots repeat the batch's examples and are masked)."""
        return max(self.slots, self.batch_size)


class _Layout(NamedTuple):
    """How the data pytree is rebuilt from its distinct arrays (static, hashable).

    The same array object may appear more than once (an autoencoder's ``(x, x)``); it is
    passed to the chunk program once and gathered once per step.
    """

    treedef: Any  # jax.tree_util.PyTreeDef
    index: tuple[int, ...]  # type: ignore[assignment]  # leaf i is distinct array index[i]

    def build(self, arrays: tuple[Any, ...]) -> PyTree:
        return jax.tree.unflatten(self.treedef, [arrays[i] for i in self.index])


def _distinct_arrays(leaves: list[jax.Array], treedef: Any) -> tuple[tuple, _Layout]:
    """The distinct arrays among ``leaves`` (by identity) and the layout that rebuilds the
    data pytree from them."""
    position: dict[int, int] = {}
    arrays: list[jax.Array] = []
    for x in leaves:
        if position.setdefault(id(x), len(arrays)) == len(arrays):
            arrays.append(x)
    return tuple(arrays), _Layout(treedef, tuple(position[id(x)] for x in leaves))


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


def _is_none(x: Any) -> bool:
    return x is None


def _identity(x: Any) -> Any:
    """What a fixed leaf is compared by: Python scalars and strings by value, anything else
    (functions, arrays, objects) by identity."""
    if type(x) in (bool, int, float, complex, str, type(None)):
        return (type(x), x)
    return ("id", id(x))


class _Static:
    """The leaves of a module's params that are not trained, and the structure that puts them
    back (a static argument of the compiled programs, so part of their key).

    ``treedef`` is the params' structure with ``None`` as a leaf; ``leaves`` holds the fixed
    leaves and ``None`` where a leaf is trained. Two are equal when they hold the same objects
    (Python scalars and strings: equal values), so the same model, trained again or resumed,
    reuses its compiled program; the arrays among them are constants of the program.
    """

    __slots__ = ("_hash", "leaves", "treedef")

    def __init__(self, treedef: Any, leaves: list[Any]) -> None:
        self.treedef, self.leaves = treedef, tuple(leaves)
        try:
            structure = hash(treedef)
        except TypeError:  # a node whose static data is unhashable: equality still decides
            structure = treedef.num_leaves
        self._hash = hash((structure, tuple(_identity(x) for x in self.leaves)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Static)
            and self._hash == other._hash
            and list(map(_identity, self.leaves)) == list(map(_identity, other.leaves))
            and self.treedef == other.treedef
        )

    def combine(self, trainable: PyTree) -> PyTree:
        """The whole params: ``trainable`` (``None`` in place of fixed leaves, as
        ``eqx.filter`` gives) with the fixed leaves put back (``eqx.combine``)."""
        leaves = jax.tree.leaves(trainable, is_leaf=_is_none)
        merged = [s if t is None else t for t, s in zip(leaves, self.leaves, strict=True)]
        return jax.tree.unflatten(self.treedef, merged)


def _nnx_module() -> Any:
    """Flax NNX's Module class when Flax NNX has been imported (never imports it)."""
    nnx = sys.modules.get("flax.nnx")
    return getattr(nnx, "Module", None) if nnx is not None else None


def _refuse_nnx(params: PyTree, what: str) -> None:
    module = _nnx_module()
    if module is None:
        return
    found = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, module))
    for x in found:
        if isinstance(x, module):
            raise TypeError(
                f"fit: {what} is (or holds) a Flax NNX module ({type(x).__name__}), whose "
                "variables are not all parameters (batch statistics and RNG counters are model "
                "state). Train it through mlgrad.training.modules.from_nnx: parts = "
                "from_nnx(model, loss_fn); fit(parts.loss_fn, parts.params, data, "
                "model_state=parts.model_state, ...); parts.model(result) is the trained model."
            )


def _describe_leaf(x: Any) -> str:
    """``an array of dtype int32 and shape (3,)``, ``a value of type function (relu)``."""
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return f"an array of dtype {x.dtype} and shape {tuple(x.shape)}"
    name = getattr(x, "__name__", None)
    return f"a value of type {type(x).__name__}" + (f" ({name})" if isinstance(name, str) else "")


def _split_params(params: PyTree, what: str = "params") -> tuple[PyTree, _Static | None]:
    """The trained part of ``params`` and its fixed part (None when every leaf trains).

    In dicts, lists and tuples (NamedTuples too) every leaf trains: a float array, or a
    Python number, which becomes a float array. Inside any other pytree node (an Equinox
    module, a dataclass registered as a pytree) the float arrays train and every other leaf
    (functions, Python numbers, integer arrays, static fields) is fixed, as
    ``eqx.partition(model, eqx.is_inexact_array)`` splits it: the trained part holds
    ``None`` in their place (``eqx.filter``'s form, which optax takes).
    """
    if params is None:
        raise ValueError(f"fit: {what} is None; pass initial parameters, or state= to resume.")
    _refuse_nnx(params, what)
    leaves = jax.tree.leaves(params)
    if leaves and all(
        isinstance(x, jax.Array) and isinstance(x.dtype, np.dtype) and x.dtype.kind in "fc"
        for x in leaves
    ):
        return params, None  # the common case: nothing to convert, nothing fixed
    plain = lambda x: x is None or not isinstance(x, dict | list | tuple)  # noqa: E731
    units, _ = jax.tree_util.tree_flatten_with_path(params, is_leaf=plain)
    trained: list[Any] = []
    fixed: list[Any] = []
    for path, unit in units:
        inner, inner_def = jax.tree_util.tree_flatten_with_path(unit, is_leaf=_is_none)
        module = inner_def.num_nodes > 1  # a pytree node that is not a dict, list or tuple
        for sub, x in inner:
            if _is_float_array(x):
                trained.append(jnp.asarray(x) if isinstance(x, np.ndarray | np.generic) else x)
                fixed.append(None)
            elif x is None or module:
                trained.append(None)
                fixed.append(x)
            elif isinstance(x, bool | int | float | complex):
                trained.append(jnp.asarray(float(x) if isinstance(x, bool | int) else x))
                fixed.append(None)
            else:
                raise TypeError(_untrainable(what + jax.tree_util.keystr(path + sub), x))
    if all(t is None for t in trained):
        listing = ", ".join(
            f"{what}{jax.tree_util.keystr(p)}: {_describe_leaf(x)}"
            for p, x in jax.tree_util.tree_flatten_with_path(params)[0][:4]
        )
        raise TypeError(
            f"fit: {what} has nothing to train: none of its leaves is a float array "
            f"({listing or 'no leaves'}). Pass the model's float parameters."
        )
    treedef = jax.tree.structure(params, is_leaf=_is_none)
    trainable = jax.tree.unflatten(treedef, trained)
    if all(x is None for x in fixed):
        return trainable, None
    return trainable, _Static(treedef, fixed)


def _is_float_array(x: Any) -> bool:
    """A float or complex array (JAX or NumPy); not a PRNG key array, nor an integer one."""
    return isinstance(x, jax.Array | np.ndarray | np.generic) and jnp.issubdtype(
        x.dtype, jnp.inexact
    )


def _untrainable(where: str, x: Any) -> str:
    if hasattr(x, "dtype"):
        return (
            f"fit: {where} is {_describe_leaf(x)}, which cannot be trained (gradients are "
            "defined for floats only). Pass floats, e.g. jnp.asarray(x, jnp.float32) or 2.0 "
            "instead of 2, or keep it out of params (close over it in loss_fn, or pass it as "
            "model_state=)."
        )
    return (
        f"fit: {where} is {_describe_leaf(x)}, which cannot be trained: in a dict, list or "
        "tuple every leaf of params must be a float array or a number. Keep it out of params "
        "(close over it in loss_fn), or hold the model in a module (an Equinox module, or any "
        "pytree class other than dict, list and tuple), whose other leaves fit holds fixed."
    )


class _Loss(NamedTuple):
    """How ``fit`` calls the user's ``loss_fn`` (static, hashable: part of the program's key).

    ``loss_fn(params, batch)``; ``(params, model_state, batch)`` when ``stateful``; with
    ``with_key`` the step's key last. It returns the loss, ``(loss, aux)`` with ``has_aux``,
    and ``(that, new_model_state)`` when ``stateful`` (Flax's and Haiku's convention).
    """

    fn: Callable[..., Any]
    with_key: bool = False
    has_aux: bool = False
    stateful: bool = False
    static: _Static | None = None  # a module's fixed leaves, put back before each call

    def __call__(
        self, params: PyTree, model_state: PyTree, batch: PyTree, key: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array], PyTree]:
        """``(loss, aux, new_model_state)``, aux ``{}`` and the state None when unused."""
        if self.static is not None:
            params = self.static.combine(params)
        args = (params, model_state, batch) if self.stateful else (params, batch)
        out = self.fn(*args, key) if self.with_key else self.fn(*args)
        new_state = None
        if self.stateful:
            out, new_state = _pair(out, "(output, new_model_state)", "model_state=")
        aux: dict[str, jax.Array] = {}
        if self.has_aux:
            out, aux = _pair(out, "(loss, aux)", "has_aux=True")
            aux = _checked_aux(aux)
        return _check_scalar_loss(out), aux, new_state


def _pair(out: Any, what: str, option: str) -> tuple[Any, Any]:
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise TypeError(
            f"fit: with {option} loss_fn must return a pair {what}, got {type(out).__name__}."
        )
    return out[0], out[1]


def _checked_aux(aux: Any) -> dict[str, jax.Array]:
    if not isinstance(aux, dict) or not all(isinstance(k, str) for k in aux):
        raise TypeError(
            "fit: with has_aux=True the aux that loss_fn returns must be a dict of scalars "
            f"keyed by name, e.g. {{'accuracy': acc}}, got {type(aux).__name__}."
        )
    for k, v in aux.items():
        if jnp.shape(v) != ():
            raise TypeError(
                f"fit: aux[{k!r}] must be a scalar (a value per step), got shape "
                f"{jnp.shape(v)}; reduce it over the batch (jnp.mean)."
            )
    return {k: jnp.asarray(v) for k, v in sorted(aux.items())}


def _as_loss(loss_fn: Callable[..., Any] | _Loss) -> _Loss:
    return loss_fn if isinstance(loss_fn, _Loss) else _Loss(loss_fn)


def _objective(
    params: PyTree,
    batch: PyTree,
    mask: jax.Array | None,
    loss_fn: LossFn | _Loss,
    model_state: PyTree = None,
    key: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, dict[str, jax.Array], PyTree]]:
    """The batch's loss and ``(loss, aux, new_model_state)`` (the gradient's aux):
    ``loss_fn`` itself, or with a ``mask`` (padded slots) the mean of the per-example
    losses (and aux) over the real examples, exact for a loss that is a mean over the batch
    (``fit``'s contract). Only a loss without key or model state is masked (``fit``
    enforces it): per-example calls would share one key, and batch statistics of one
    example mean nothing."""
    loss = _as_loss(loss_fn)
    if mask is None:
        value, aux, new_state = loss(params, model_state, batch, key)
        return value, (value, aux, new_state)
    singles = jax.tree.map(lambda x: x[:, None], batch)  # B batches of size 1
    values, auxes, _ = jax.vmap(lambda b: loss(params, None, b, None))(singles)
    count = jnp.sum(mask).astype(values.dtype)

    def masked_mean(v: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(mask, v, jnp.zeros_like(v))) / count.astype(v.dtype)

    value = masked_mean(values)
    return value, (value, {k: masked_mean(v) for k, v in auxes.items()}, None)


@functools.partial(jax.jit, static_argnames=("plan", "count"))
def _epoch_orders(
    key: jax.Array, first_epoch: jax.Array, needed: jax.Array, *, plan: _Batching, count: int
) -> jax.Array:
    """The shuffled example orders of the ``needed <= count`` epochs from ``first_epoch``,
    padded to whole batches with the epoch's first examples, in rows of an array of shape
    ``(count, per_epoch * batch_size)`` (rows ``needed:`` are unused zeros).

    Epoch ``e``'s order is ``jax.random.permutation(jax.random.fold_in(key, e), n)``. Kept out
    of the training program (the PRNG costs about half a second to compile) so that it is
    compiled once per data size and shared by every loss function and optimizer. Only the
    needed epochs are drawn (a permutation is a few sorts, as costly as a dozen small training
    steps).
    """
    pad = plan.per_epoch * plan.batch_size - plan.n  # < 0: the examples dropped

    def order(j: jax.Array, orders: jax.Array) -> jax.Array:
        epoch_key = jax.random.fold_in(key, first_epoch + j)
        perm = jax.random.permutation(epoch_key, plan.n).astype(jnp.int32)
        if pad > 0:
            perm = jnp.concatenate([perm, perm[:pad]])
        elif pad < 0:
            perm = perm[:pad]
        return jax.lax.dynamic_update_index_in_dim(orders, perm, j, 0)

    orders = jnp.zeros((count, plan.per_epoch * plan.batch_size), jnp.int32)
    return jax.lax.fori_loop(0, needed, order, orders)


def _shuffle_rounds(n: int) -> int:
    """The sorting rounds of ``jax.random.permutation(key, n)``: its static rule (a fresh
    32-bit key per example and round, until ties are unlikely; 1 round up to 1625 examples)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


@functools.partial(jax.jit, static_argnames=("n", "count"))
def _sort_keys(key: jax.Array, first_epoch: jax.Array, *, n: int, count: int) -> jax.Array:
    """The random 32-bit sort keys of epochs ``first_epoch ... first_epoch + count - 1``, in
    an array of shape ``(count, rounds, n)``: the keys that
    ``jax.random.permutation(jax.random.fold_in(key, e), n)`` draws in each of its rounds
    (a split of the epoch's key, then 32 random bits per example)."""

    def epoch(j: jax.Array) -> jax.Array:
        k = jax.random.fold_in(key, first_epoch + j)
        rounds = []
        for _ in range(_shuffle_rounds(n)):
            k, sub = jax.random.split(k)
            rounds.append(jax.random.bits(sub, (n,), jnp.uint32))
        return jnp.stack(rounds) if rounds else jnp.zeros((0, n), jnp.uint32)

    return jax.vmap(epoch)(jnp.arange(count))


def _host_epoch_orders(
    key: jax.Array, first_epoch: int, needed: int, *, plan: _Batching, count: int
) -> np.ndarray:
    """:func:`_epoch_orders`, the same integers, with the sorts done by NumPy on the host.

    The permutation's sort keys are drawn on the device (:func:`_sort_keys`); each round then
    sorts the examples by key, stably, as ``lax.sort_key_val`` does. A stable sort of 32-bit
    keys is a plain sort of the 64-bit numbers ``key << 32 | position``, which NumPy's
    vectorised sort does about 7 times faster than XLA's CPU sort (a comparator call per
    comparison): on the digits autoencoder's mini-batches (12 batches an epoch) the 42
    shuffles of a 500-step run drop from 9.2 ms (7% of the run) to 2 ms.
    """
    n = plan.n
    orders = np.zeros((count, plan.per_epoch * plan.batch_size), np.int32)
    if needed == 0:
        return orders
    keys = np.asarray(_sort_keys(key, np.int32(first_epoch), n=n, count=count))[:needed]
    position = np.arange(n, dtype=np.uint64)
    perm = np.broadcast_to(np.arange(n, dtype=np.int32), (needed, n))
    for r in range(keys.shape[1]):
        stable = np.sort((keys[:, r].astype(np.uint64) << np.uint64(32)) | position, axis=1)
        perm = np.take_along_axis(perm, (stable & np.uint64(0xFFFFFFFF)).astype(np.intp), axis=1)
    pad = plan.per_epoch * plan.batch_size - n  # < 0: the examples dropped
    if pad > 0:
        perm = np.concatenate([perm, perm[:, :pad]], axis=1)
    elif pad < 0:
        perm = perm[:, :pad]
    orders[:needed] = perm
    return orders


def _epochs_touched(length: int, plan: _Batching) -> int:
    """How many epoch orders a chunk of up to ``length`` steps needs, wherever it starts.

    At most ``ceil((length - 1) / per_epoch) + 1`` epochs; rounded up to a power of two so
    that chunks of different lengths share a few compiled :func:`_epoch_orders` programs.
    """
    needed = -(-(max(length, 1) - 1) // plan.per_epoch) + 1
    return 1 << (needed - 1).bit_length()


def _batch(
    arrays: tuple[jax.Array, ...],
    orders: jax.Array,
    step: jax.Array,
    first_epoch: jax.Array,
    plan: _Batching,
    offset: jax.Array | None = None,
) -> tuple[tuple[jax.Array, ...], jax.Array | None]:
    """The examples of ``step`` (and the mask of real examples when batches are ragged or
    padded to ``plan.width`` slots). The epoch's order is row ``epoch - first_epoch`` of
    ``orders``, after ``offset`` rows when given (a sweep's runs index one shared stack)."""
    epoch, slot = jnp.divmod(step, plan.per_epoch)
    start = slot * plan.batch_size
    row = epoch - first_epoch if offset is None else offset + epoch - first_epoch
    idx = jax.lax.dynamic_slice(orders, (row, start), (1, plan.batch_size))[0]
    position = np.arange(plan.width)
    if plan.width > plan.batch_size:  # padding slots repeat the batch's own examples
        idx = idx[position % plan.batch_size]
    batch = tuple(jnp.take(x, idx, axis=0) for x in arrays)
    mask = None
    if plan.masked:
        mask = (start + position) < plan.n
        if plan.width > plan.batch_size:
            mask = mask & (position < plan.batch_size)
    return batch, mask


def _train_step(
    params: PyTree,
    opt_state: optax.OptState,
    model_state: PyTree,
    batch: PyTree,
    mask: jax.Array | None,
    key: jax.Array | None,
    *,
    loss_fn: _Loss,
    optimizer: optax.GradientTransformation,
) -> tuple[PyTree, optax.OptState, PyTree, jax.Array, dict[str, jax.Array], jax.Array]:
    """One optimizer step: the new params, optimizer state and model state, the batch loss,
    its aux and the global norm of the gradient.

    With a mask (ragged mini-batches) only the last batch of an epoch has padding. On CPU a
    ``lax.cond`` gives the full batches to ``loss_fn`` itself and only the ragged one to the
    per-example masked mean (``jax.vmap`` over batches of one is some 10% slower than the
    model's own batched loss); a branch is a cheap jump there. Other platforms take the
    masked mean at every step: a data-dependent branch on a GPU can cost a device-to-host
    transfer per step.
    """
    grad_fn = gradient(_objective, has_aux=True)
    if mask is None:
        grads, (loss, aux, new_model_state) = grad_fn(
            params, batch, None, loss_fn, model_state, key
        )
    else:

        def masked(p: PyTree, b: PyTree, m: jax.Array) -> tuple[PyTree, Any]:
            return grad_fn(p, b, m, loss_fn)

        def full_or_masked(p: PyTree, b: PyTree, m: jax.Array) -> tuple[PyTree, Any]:
            full = lambda p, b, m: grad_fn(p, b, None, loss_fn)  # noqa: E731
            return jax.lax.cond(jnp.all(m), full, masked, p, b, m)

        grads, (loss, aux, new_model_state) = jax.lax.platform_dependent(
            params, batch, mask, cpu=full_or_masked, default=masked
        )
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        # Line-search optimizers (optax.lbfgs) need the loss value and a way to re-evaluate
        # it; the others ignore these arguments, so their compiled program is unchanged.
        def value_fn(p: PyTree) -> jax.Array:
            return _objective(p, batch, mask, loss_fn, model_state, key)[0]

        updates, new_opt_state = optimizer.update(
            grads, opt_state, params, value=loss, grad=grads, value_fn=value_fn
        )
    else:
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, new_opt_state, new_model_state, loss, aux, _global_norm(grads)


def _global_norm(tree: PyTree) -> jax.Array:
    """sqrt(sum of every leaf's squared entries) (optax's global norm, across its versions)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros(())
    flat = jnp.concatenate([jnp.ravel(x) for x in leaves])  # one product: fuses best
    return jnp.sqrt(jnp.vdot(flat, flat).real)


def _hyperparameter(opt_state: optax.OptState, name: str) -> jax.Array | None:
    """``name`` in the first ``optax.inject_hyperparams`` state inside ``opt_state``."""
    found = jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "hyperparams"))
    for node in found:
        value = getattr(node, "hyperparams", {}).get(name) if hasattr(node, "hyperparams") else None
        if value is not None:
            return jnp.asarray(value)
    return None


def _learning_rate(
    schedule: Any, opt_state: optax.OptState, step: jax.Array, dtype: Any
) -> jax.Array:
    """The learning rate of the step that starts after ``step`` steps: ``schedule(step)`` (or
    the number ``schedule``), else the ``learning_rate`` that ``optax.inject_hyperparams``
    put in ``opt_state`` (the state after that step's update), else NaN."""
    if callable(schedule):
        value = schedule(step)
    elif schedule is not None:
        value = schedule
    else:
        value = _hyperparameter(opt_state, "learning_rate")
    return jnp.asarray(jnp.nan if value is None else value).astype(dtype)


#: Rows of a chunk's buffer before the aux rows: the loss (column 0: the state's status), the
#: gradient norm, the learning rate.
_LOSS, _GRAD_NORM, _LR, _AUX = 0, 1, 2, 3


@functools.partial(
    jax.jit,
    static_argnames=(
        "layout",
        "loss_fn",
        "optimizer",
        "plan",
        "length",
        "trace",
        "mesh",
        "real",
        "schedule",
        "sharpness",
    ),
)
def _run_chunk(
    params: PyTree,
    opt_state: optax.OptState | None,
    model_state: PyTree,
    step: jax.Array,
    key: jax.Array | None,
    arrays: tuple[jax.Array, ...],
    orders: jax.Array | None,
    count: jax.Array | None,
    *,
    layout: _Layout,
    loss_fn: _Loss,
    optimizer: optax.GradientTransformation,
    plan: _Batching | None,
    length: int,
    trace: bool,
    mesh: Mesh | None = None,
    real: int | None = None,
    orders_offset: jax.Array | None = None,
    schedule: Any = None,
    sharpness: int | None = None,
    probe: jax.Array | None = None,
) -> tuple[PyTree, optax.OptState, PyTree, jax.Array, PyTree | None, jax.Array | None]:
    """``length`` optimizer steps (or ``count < length`` of them) from the state after
    ``step`` steps, as one compiled loop; ``opt_state=None`` initialises the optimizer first
    (a fresh run).

    The loop body is the step and the write of its records (and, with ``trace``, its params)
    into a buffer, nothing else. With ``count=None`` the loop runs ``length`` steps, a trip
    count XLA knows (its CPU loop then skips the loop test, its GPU loop the per-iteration
    transfer of the test to the host): the training path. A ``count`` array runs that many
    steps in a loop of the same body with a dynamic trip count: the replays that recover the
    last good state after a divergence, compiled only when one happens.

    ``arrays`` are the data's distinct arrays (``layout`` rebuilds the data pytree);
    ``orders`` the epoch orders of :func:`_epoch_orders` from the epoch of ``step`` (None
    for full batches), its epochs from row ``orders_offset`` on when given (a sweep's runs
    share one stack of their seeds' orders). ``key`` is the run's key when the loss takes
    one (step ``t``'s key is ``fold_in(split(key)[1], t)``), else None.

    ``sharpness=N``: before the steps ``t`` (steps taken) with ``t % N == 0``, the top
    Hessian eigenvalue of that step's batch loss at the params (:mod:`~mlgrad.training.sharpness`,
    ``probe`` the previous eigenvector, carried from measurement to measurement); its row
    is after the aux rows, NaN at the other steps.

    Data parallel (``mesh``, a one-axis mesh ``("data",)``): every batch is constrained to be
    split along its examples across the mesh's devices and the state to be replicated; XLA
    partitions the step (per-device partial sums, one all-reduce of the gradient). A full
    batch is the data itself, passed already split; when its rows were padded to divide
    across the devices, ``real`` is the number of real examples and the rest are masked.

    Returns:
      (the params, optimizer state and model state after the steps, a buffer of
      ``(3 + aux [+ 1], length + 1)`` entries, the params after every step or None, the
      last eigenvector of ``sharpness`` or None). Row 0 is
      the status of the final state (column 0: 0 when its params and states are all finite,
      NaN otherwise) and the losses (columns ``1 : steps + 1``); rows 1 and 2 the gradient
      norms and learning rates and the next rows the aux values (sorted by name), in the
      same columns; so that one transfer and one ``isfinite`` pass on the host check the
      chunk.
    """
    if opt_state is None:  # a fresh run: the optimizer's init in the same program
        # The barrier keeps XLA from folding the initial values (constants for most
        # optimizers) into the loop, so the loop computes exactly as from a given state.
        opt_state = jax.lax.optimization_barrier(optimizer.init(params))
    first_epoch = None if plan is None else step // plan.per_epoch
    stream = None if key is None else jax.random.split(key)[1]

    def constrain(tree: PyTree, spec: PartitionSpec) -> PyTree:
        if mesh is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, spec))

    def batch_of(i: jax.Array | int) -> tuple[PyTree, Any]:
        """The batch of the chunk's step ``i`` (0-based) and its mask (None when whole)."""
        mask: Any
        if plan is None:
            rows = arrays[0].shape[0]
            mask = None if real is None or real == rows else np.arange(rows) < real
            batch = arrays
        else:
            assert orders is not None and first_epoch is not None  # mini-batches have them
            batch, mask = _batch(arrays, orders, step + i, first_epoch, plan, orders_offset)
        batch, mask = constrain((batch, mask), PartitionSpec(DATA_AXIS))
        return layout.build(batch), mask

    def key_of(i: jax.Array | int) -> jax.Array | None:
        return None if stream is None else jax.random.fold_in(stream, step + i)

    loss_shape, (_, aux_shape, _) = jax.eval_shape(
        lambda p, m, b: _objective(p, b[0], b[1], loss_fn, m, key_of(0)),
        params,
        model_state,
        batch_of(0),
    )
    dtype = loss_shape.dtype

    def measure(
        t: jax.Array,
        params: PyTree,
        model_state: PyTree,
        batch: Any,
        mask: Any,
        key: Any,
        probe: Any,
    ) -> tuple[jax.Array, jax.Array]:
        """The sharpness before step ``t`` (steps taken) when ``t % sharpness == 0``."""
        assert sharpness is not None  # measured only then

        def loss(p: PyTree) -> jax.Array:
            return _objective(p, batch, mask, loss_fn, model_state, key)[0]

        def now(v: jax.Array) -> tuple[jax.Array, jax.Array]:
            value, v = top_eigenpair(loss, params, v)
            return value.astype(dtype), v

        def later(v: jax.Array) -> tuple[jax.Array, jax.Array]:
            return jnp.asarray(jnp.nan, dtype), v

        return jax.lax.cond(t % sharpness == 0, now, later, probe)

    def body(i, carry):
        params, opt_state, model_state, records, params_trace, probe = carry
        batch, mask = batch_of(i)
        if sharpness:
            lam, probe = measure(step + i, params, model_state, batch, mask, key_of(i), probe)
        params, opt_state, model_state, loss, aux, grad_norm = _train_step(
            params,
            opt_state,
            model_state,
            batch,
            mask,
            key_of(i),
            loss_fn=loss_fn,
            optimizer=optimizer,
        )
        # the rate this update used (an injected one is in the state after the update)
        lr = _learning_rate(schedule, opt_state, step + i, dtype)
        values = [loss, grad_norm.astype(dtype), lr, *(aux[k].astype(dtype) for k in aux)]
        if sharpness:
            values.append(lam)
        records = jax.lax.dynamic_update_index_in_dim(records, jnp.stack(values), i + 1, 1)
        if trace:
            params_trace = jax.tree.map(
                lambda buf, p: jax.lax.dynamic_update_index_in_dim(buf, p, i, 0),
                params_trace,
                params,
            )
        return params, opt_state, model_state, records, params_trace, probe

    records = jnp.zeros((_AUX + len(aux_shape) + bool(sharpness), length + 1), dtype)
    params_trace = None
    if trace:
        params_trace = jax.tree.map(
            lambda p: jnp.zeros((length, *jnp.shape(p)), jnp.result_type(p)), params
        )
    init = (params, opt_state, model_state, records, params_trace, probe)
    trips = length if count is None else count  # `length`, a Python int, is a static count
    params, opt_state, model_state, records, params_trace, probe = jax.lax.fori_loop(
        0, trips, body, init
    )
    finite = _all_finite((params, opt_state, model_state))
    status = jnp.where(finite, 0.0, jnp.nan).astype(dtype)
    records = records.at[_LOSS, 0].set(status)
    out = (params, opt_state, model_state, records, params_trace, probe)
    return constrain(out, PartitionSpec())


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _eval_loss(
    params: PyTree, model_state: PyTree, key: jax.Array | None, data: PyTree, *, loss_fn: _Loss
) -> jax.Array:
    """The loss on ``data`` (the model state is read, not updated)."""
    return loss_fn(params, model_state, data, key)[0]


def _flatten_data(data: PyTree, what: str) -> tuple[list[jax.Array], Any, int]:
    """The leaves as JAX arrays, the treedef and the number of examples (the leading axis,
    which every leaf must share)."""
    leaves, treedef = jax.tree.flatten(data)
    if not leaves:
        raise ValueError(f"fit: {what} has no arrays; pass e.g. (x, y) with x.shape[0] examples.")
    if not all(isinstance(x, jax.Array) for x in leaves):
        leaves = [x if isinstance(x, jax.Array) else jnp.asarray(x) for x in leaves]
    shapes = [x.shape for x in leaves]
    n = shapes[0][0] if shapes[0] else None
    if n is None or any(not shape or shape[0] != n for shape in shapes):
        raise ValueError(
            f"fit: every array in {what} needs the same leading (example) axis, got shapes "
            f"{shapes}."
        )
    if n == 0:
        raise ValueError(f"fit: {what} has no examples (leading axis of length 0).")
    return leaves, treedef, n


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
    params: PyTree, key: jax.Array, model_state: PyTree, *, optimizer: optax.GradientTransformation
) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), key, model_state)


@functools.lru_cache(maxsize=256)
def _device_int(value: int) -> jax.Array:
    """An int32 scalar on the device, kept: chunk lengths and step counts repeat, and a
    fresh host scalar would be transferred on every call."""
    return jnp.asarray(value, jnp.int32)


def _seed_state(params: PyTree, key: Any, model_state: PyTree = None) -> TrainState:
    """A fresh run's state without its optimizer state (``opt_state=None``); ``params`` the
    trained part (:func:`_split_params`)."""
    key = _default_key() if key is None else jnp.asarray(key)
    return TrainState(params, None, _device_int(0), key, model_state)


def _split_across(
    mesh: Mesh, arrays: tuple[jax.Array, ...], plan: _Batching | None, n: int
) -> tuple[tuple[jax.Array, ...], _Batching | None, int | None]:
    """The data placed for data-parallel training on ``mesh``, the batching plan and the
    number of real rows of a padded full batch.

    A full batch is the data itself: its rows are split across the devices, padded (with
    repeats of the first rows, masked out of the loss) to a multiple of the device count.
    Mini-batches are gathered from a copy of the data on every device, each device taking
    its part of the batch; a batch size that does not divide evenly gets masked slots.
    """
    count = mesh.size
    if plan is None:
        padded = -(-n // count) * count
        if padded != n:
            rows = np.arange(padded) % n
            arrays = tuple(jnp.take(jnp.asarray(x), rows, axis=0) for x in arrays)
        return place(arrays, batch_sharding(mesh)), None, n if padded != n else None
    width = -(-plan.batch_size // count) * count
    if width != plan.batch_size:
        plan = plan._replace(masked=True, slots=width)
    return place(arrays, replicated(mesh)), plan, None


def _find_divergence(
    run: Callable[..., tuple], state: TrainState, first: int, losses: np.ndarray
) -> tuple[int, TrainState]:
    """The failing step of a chunk that went non-finite, and the state before it, by replay.

    ``state`` is the chunk's first state (``first`` steps taken) and ``losses`` the chunk's
    losses; the chunk's final state or one of its losses was not finite. ``run(state, first,
    count, length)`` replays ``count`` steps with the replay program of chunks of ``length``
    steps (the chunk's loop body, deterministic, so a replayed state is the run's state; the
    tests check it bit for bit). If the state before the first non-finite loss is finite,
    that loss's step failed (one replay); otherwise a bisection over replays from the last
    known finite state finds the first step that made the state non-finite (the replays add
    up to at most one chunk of steps).

    Returns:
      (the 1-based index of the failing step within the chunk, the state before it)
    """
    nonfinite = np.flatnonzero(~np.isfinite(losses))
    if nonfinite.size:
        hi = int(nonfinite[0])  # steps before the first non-finite loss
        before, buffer, _ = run(state, first, hi, len(losses))
        if np.asarray(buffer)[_LOSS, 0] == 0:  # the state after `hi` steps is finite
            return hi + 1, before
    else:
        hi = len(losses)  # the losses are finite: the final state is not
    lo, good = 0, state  # after `lo` steps the state is finite (or lo = 0), after `hi` not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        after, buffer, _ = run(good, first + lo, mid - lo, len(losses))
        if np.asarray(buffer)[_LOSS, 0] == 0:
            lo, good = mid, after
        else:
            hi = mid
    if good.opt_state is None:  # a fresh run's seed: its initialised state, no steps taken
        good = run(good, first, 0, len(losses))[0]
    return hi, good


class _Quiet:
    """What ``fit`` reports without ``progress``: nothing (no bar object to build per call)."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, step: int, loss: float, val_loss: float | None) -> None:
        return None


_QUIET = _Quiet()


class LossContractWarning(UserWarning):
    """``fit``'s loss does not look like a mean over the batch (see ``check_loss``)."""


def _check_exact_batches(loss: _Loss, plan: _Batching | None, real: int | None, mesh: Any) -> None:
    """Refuses padded, per-example-averaged batches for a loss with a key or model state."""
    if not (loss.with_key or loss.stateful):
        return
    what = " and ".join(["with_key=True"] * loss.with_key + ["model_state="] * loss.stateful)
    if plan is not None and plan.masked and plan.slots == 0:
        raise ValueError(
            f"fit: with {what} every batch must be whole, but {plan.n} examples do not split "
            f"into batches of {plan.batch_size}: the last batch of each epoch would be "
            "averaged per example (one key for all of them, or batch statistics of one "
            "example). Pass drop_remainder=True, or a batch_size that divides the data."
        )
    if (plan is not None and plan.masked) or real is not None:
        raise ValueError(
            f"fit: with {what} every batch must split evenly across the {mesh.size} devices "
            "(padded slots would be averaged per example); make the batch size (or, with full "
            "batches, the number of examples) a multiple of the device count, or pass devices=1."
        )


def _check_mean(loss: _Loss, params: PyTree, data: PyTree, batch_size: int) -> None:
    """Warns when ``loss`` of a batch is not the size-weighted mean of the losses of its two
    halves, as a mean over the examples (plus batch-independent terms) is."""
    import warnings

    b = max(2, min(batch_size, jax.tree.leaves(data)[0].shape[0]))
    k = b // 2
    whole, first, second = (float(v) for v in _batch_and_halves(params, data, loss=loss, b=b))
    mean = (k * first + (b - k) * second) / b
    if not abs(whole - mean) <= 1e-3 * (abs(whole) + abs(mean)) + 1e-12:
        warnings.warn(
            f"fit: loss_fn does not look like a mean over the batch: the loss of {b} examples "
            f"is {whole:.6g}, but the size-weighted mean of its halves' losses is {mean:.6g} "
            "(a sum gives about twice that). With a ragged last batch (n % batch_size != 0) "
            "the engine averages that batch per example, which is exact only for a mean over "
            "the examples plus batch-independent terms: use jnp.mean, or pass "
            "drop_remainder=True. Silence this with check_loss=False.",
            LossContractWarning,
            stacklevel=3,
        )


@functools.partial(jax.jit, static_argnames=("loss", "b"))
def _batch_and_halves(params: PyTree, data: PyTree, *, loss: _Loss, b: int) -> tuple:
    """The loss of the first ``b`` examples and of their two halves (one program, kept)."""
    k = b // 2

    def of(lo: int, hi: int) -> jax.Array:
        return loss(params, None, jax.tree.map(lambda x: x[lo:hi], data), None)[0]

    return of(0, b), of(0, k), of(k, b)


def _aux_names(
    loss: _Loss,
    state: TrainState,
    layout: _Layout,
    arrays: tuple[jax.Array, ...],
    plan: _Batching | None,
    key: Any,
) -> list[str]:
    """The names of the loss's aux outputs (sorted; traced only, nothing runs)."""
    if not loss.has_aux:
        return []
    data = layout.build(arrays)
    rows = jax.tree.leaves(data)[0].shape[0] if plan is None else plan.width
    batch = jax.tree.map(lambda x: x[:rows], data)
    out = jax.eval_shape(
        lambda p, m, b, k: loss(p, m, b, k)[1], state.params, state.model_state, batch, key
    )
    return sorted(out)


def _chunk_metrics(table: np.ndarray, aux_names: list[str]) -> ChunkMetrics:
    """The aux and step metrics of a chunk's records (rows as in :func:`_run_chunk`; a row
    after the aux rows is the sharpness)."""
    aux = {name: table[_AUX + i] for i, name in enumerate(aux_names)}
    step_metrics = {"lr": table[_LR], "grad_norm": table[_GRAD_NORM]}
    if len(table) > _AUX + len(aux_names):
        step_metrics["sharpness"] = table[_AUX + len(aux_names)]
    return ChunkMetrics(aux, step_metrics)


def _takes_four(callback: Callable[..., Any]) -> bool:
    """Whether ``callback`` accepts a fourth positional argument."""
    import inspect

    try:
        inspect.signature(callback).bind(None, None, None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): the three-argument form
        return False
    return True


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
    devices: Devices = "auto",
    with_key: bool = False,
    has_aux: bool = False,
    model_state: PyTree = None,
    drop_remainder: bool = False,
    learning_rate: Any = None,
    check_loss: bool = True,
    sharpness_every: int | None = None,
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
      params: the initial parameters: a pytree of float arrays (Python numbers in dicts,
        lists and tuples become float arrays), or a module: inside any other pytree node (an
        Equinox module, a registered dataclass) the float arrays train and every other leaf
        (functions, Python numbers, integer arrays) is held fixed, as
        ``eqx.partition(model, eqx.is_inexact_array)`` splits it; ``loss_fn`` gets the whole
        module, the optimizer its float part (``None`` elsewhere, ``eqx.filter``'s form) and
        ``FitResult.params`` is the trained module. Flax models go through
        :func:`mlgrad.training.modules.from_nnx` and :func:`~mlgrad.training.modules.from_linen`
        (their ``nnx.Param`` / ``"params"`` variables train, the others are ``model_state``).
        Ignored when ``state`` is given.
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
      chunk_size: steps per compiled chunk. Default: ``eval_every``; else 1000 with a
        ``callback`` or ``progress`` (the host's visits); else :data:`LONG_CHUNK_SIZE` (65,536,
        shorter with mini-batches of large data), so that a run is usually one chunk.
        Chunks end at multiples of ``chunk_size``, at multiples of ``eval_every`` and at
        ``steps``, counted from step 0, so a resumed run meets the same boundaries. Chunks
        of one length share a compiled program (a shorter last chunk compiles its own).
      callback: ``callback(state, losses, val_loss)``, called on the host after every chunk
        with the state after the chunk, the chunk's losses (NumPy) and the validation loss at
        ``state.step`` (None when it was not evaluated at this boundary); a callback that
        takes a fourth argument also gets the chunk's :class:`ChunkMetrics` (aux and step
        metrics). Not called for a chunk in which training diverged.
      progress: report progress on stderr (:mod:`mlgrad.training.progress`): a rich bar with
        the loss, steps/s and time left on a terminal, otherwise a line every 5 seconds;
        a line before the first compilation and one with its duration after it.
      trace_params: record the parameters after every step (``FitResult.param_trace``), e.g.
        to draw the gradient-descent path over a loss surface.
      with_key: call ``loss_fn(..., key)`` with a fresh PRNG key every step (dropout, noise,
        a VAE's sample): step ``t``'s key (``t`` steps taken before it) is
        ``fold_in(split(key)[1], t)``, a stream apart from the mini-batch orders'
        ``fold_in(key, epoch)``, so runs stay bit-identical on resume and in a sweep.
      has_aux: ``loss_fn`` returns ``(loss, aux)``, ``aux`` a dict of scalars (accuracy, a KL
        term) recorded for every step (``FitResult.aux_history``).
      model_state: the model's initial non-trained state (batch statistics, counters): then
        ``loss_fn(params, model_state, batch[, key])`` returns ``(loss, new_model_state)``
        (``((loss, aux), new_model_state)`` with ``has_aux``; Flax's and Haiku's
        convention), carried through the compiled loop, checkpointed with the state and
        replicated across devices like the parameters (``FitResult.model_state``).
      drop_remainder: with mini-batches, each epoch is ``n // batch_size`` full batches and
        the ``n % batch_size`` examples its shuffle puts last sit it out (the tf.data and
        PyTorch convention). Needed with ``with_key`` or ``model_state`` when the batch does
        not divide ``n``: a ragged batch is averaged per example, which would give every
        example the same key, or batch statistics of one example.
      learning_rate: the learning rate (a number or an optax schedule of the step) to record
        in ``step_metrics["lr"]``; by default the one ``optax.inject_hyperparams`` keeps in
        the optimizer state, else NaN. Recorded only: the optimizer trains as it is.
      check_loss: with a ragged last batch (deterministic, stateless runs), check once at the
        start that ``loss_fn`` is a mean over the batch (the loss of a batch against those
        of its two halves) and warn (:class:`LossContractWarning`) if it is not.
      sharpness_every: every this many steps (at the steps ``t`` with ``t % N == 0``, ``t``
        the steps taken), record the sharpness, the largest Hessian eigenvalue of the batch
        loss at the current parameters, inside the compiled loop
        (:mod:`mlgrad.training.sharpness`: 10 Lanczos steps on Hessian-vector products,
        warm-started from the previous measurement's eigenvector, which is kept from chunk to
        chunk of a call but not in the state: a resumed run starts it afresh). Returned as
        ``FitResult.sharpness`` and as ``step_metrics["sharpness"]`` (NaN between
        measurements). Compare it with ``2 / learning_rate`` (gradient descent's stability
        limit, Cohen et al. 2021). Each measurement costs about 10 gradients; the training
        itself is unchanged.
      devices: where to train: ``"auto"`` (every device JAX sees), a number ``N`` (the first
        ``N`` of ``jax.devices()``) or a list of devices. With more than one, training is
        data parallel (:mod:`mlgrad.training.parallel`): each batch is split along its
        examples across a ``Mesh`` axis ``"data"``, the parameters and optimizer state are
        replicated, and a batch that does not divide evenly is padded and masked; the result
        equals one-device training up to floating-point reassociation of the batch sums. The
        returned arrays are replicated on those devices. With one device nothing is sharded.

    Returns:
      A :class:`FitResult` with the final params, opt_state and state, the per-step loss
      ``history`` of this call, ``val_history`` rows ``(step, val_loss)`` and ``param_trace``.

    Raises:
      TrainingDivergedError: at the first step whose loss (or updated state) is NaN or
        infinite; it carries ``.step`` and ``.last_good_state`` (the state the run had
        after ``step - 1`` steps, recovered by replaying the failing chunk's steps).

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
    if sharpness_every is not None:
        sharpness_every = _positive_int(sharpness_every, "sharpness_every")
    leaves, treedef, n = _flatten_data(data, "data")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    plan = None
    if batch_size is not None and batch_size < n:
        ragged = n % batch_size != 0
        plan = _Batching(n, batch_size, ragged and not drop_remainder, drop=drop_remainder)
    stateful = model_state is not None or (state is not None and state.model_state is not None)
    if val_data is not None:
        val_leaves, val_treedef, _ = _flatten_data(val_data, "val_data")
        val_data = jax.tree.unflatten(val_treedef, val_leaves)
    if eval_every is not None:
        eval_every = _positive_int(eval_every, "eval_every")
    if chunk_size is not None:
        chunk_size = _positive_int(chunk_size, "chunk_size")
    elif eval_every is not None:
        chunk_size = eval_every
    elif callback is None and not progress:  # nothing needs the host between chunks
        chunk_size = LONG_CHUNK_SIZE
        if plan is not None:  # keep the epoch orders of a chunk to about ORDERS_BUDGET
            epochs = max(2, ORDERS_BUDGET // (plan.per_epoch * plan.batch_size))
            chunk_size = min(chunk_size, plan.per_epoch * (epochs // 2))
    else:
        chunk_size = DEFAULT_CHUNK_SIZE

    fresh = state is None
    if fresh:
        trainable, static = _split_params(params)
        state, start = _seed_state(trainable, key, model_state), 0
    elif not isinstance(state, TrainState):
        raise TypeError(f"fit: state must be a TrainState, got {type(state).__name__}.")
    else:
        start = int(state.step)
        if steps < start:
            raise ValueError(
                f"fit: steps={steps} is the target total step count, but the state has already "
                f"taken {start} steps; pass steps >= {start}."
            )
        trainable, static = _split_params(state.params, "state.params")
        state = state._replace(params=trainable, step=jnp.asarray(state.step, jnp.int32))
        if model_state is not None:
            raise ValueError(
                "fit: pass the model state inside state= when resuming (state.model_state), "
                "not as model_state=."
            )
    # Inside, the state holds the trained part of a module's params; the user sees it whole.
    objective = _Loss(loss_fn, bool(with_key), bool(has_aux), stateful, static)
    public: Callable[[TrainState], TrainState] = (
        (lambda s: s) if static is None else (lambda s: s._replace(params=static.combine(s.params)))
    )
    boundaries = (chunk_size,) if eval_every is None else (chunk_size, eval_every)
    arrays, layout = _distinct_arrays(leaves, treedef)
    mesh = data_mesh(devices)
    real = None
    device_int: Callable[[int], jax.Array] = _device_int
    if mesh is not None:
        arrays, plan, real = _split_across(mesh, arrays, plan, n)
        state = place(state, replicated(mesh))
        if val_data is not None:
            val_data = place(val_data, replicated(mesh))

        def replicated_int(value: int) -> jax.Array:
            return place(np.int32(value), replicated(mesh))

        device_int = replicated_int

    elif jax.device_count() > 1:  # one device chosen among several: train there
        # (also gathers e.g. the state of a data-parallel run continued on one device)
        device = select_devices(devices)[0]
        state, arrays, val_data = jax.device_put((state, arrays, val_data), device)

    _check_exact_batches(objective, plan, real, mesh)
    plain = not (with_key or has_aux or stateful)  # no key, aux or model state
    if check_loss and fresh and plain and (plan is not None and plan.masked):
        _check_mean(objective, state.params, layout.build(arrays), plan.batch_size)
    if fresh and not (0 < steps == _next_boundary(0, steps, boundaries)):
        # Several chunks (or none): initialise the optimizer once, in its own program. A run
        # of one chunk initialises it inside the chunk's program (one dispatch less).
        state = _init_state(state.params, state.key, state.model_state, optimizer=optimizer)
    run_key = state.key if with_key else None
    eval_key = None if not with_key else jax.random.split(state.key)[0]
    probe = None if sharpness_every is None else initial_vector(state.params)
    if probe is not None and mesh is not None:
        probe = place(probe, replicated(mesh))

    # On a CPU the epochs' shuffles sort faster on the host, with the same result; elsewhere
    # (and across processes, where every chunk argument is a global array) on the device.
    host_sorts = plan is not None and jax.default_backend() == "cpu" and jax.process_count() == 1

    def run(
        state: TrainState, first: int, count: int, length: int | None = None
    ) -> tuple[TrainState, np.ndarray, Any]:
        """``count`` steps from ``state`` (which has taken ``first`` steps): the program of
        ``count`` steps, or with ``length`` the replay program of chunks of that length."""
        length = count if length is None else length
        orders = None
        if plan is not None:
            first_epoch = first // plan.per_epoch
            needed = (first + count - 1) // plan.per_epoch - first_epoch + 1 if count else 0
            rows = _epochs_touched(length, plan)
            if host_sorts:
                orders = _host_epoch_orders(state.key, first_epoch, needed, plan=plan, count=rows)
            else:
                orders = _epoch_orders(
                    state.key, np.int32(first_epoch), np.int32(needed), plan=plan, count=rows
                )
        params, opt_state, model_state, buffer, params_trace, last = _run_chunk(
            state.params,
            state.opt_state,
            state.model_state,
            state.step,
            run_key,
            arrays,
            orders,
            None if count == length else device_int(count),
            layout=layout,
            loss_fn=objective,
            optimizer=optimizer,
            plan=plan,
            length=length,
            trace=trace_params,
            mesh=mesh,
            real=real,
            schedule=learning_rate,
            sharpness=sharpness_every,
            probe=probe,
        )
        new = TrainState(params, opt_state, device_int(first + count), state.key, model_state)
        return new, buffer, (params_trace, last)

    aux_names = _aux_names(objective, state, layout, arrays, plan, run_key)

    def is_eval_step(step: int) -> bool:
        return val_data is not None and (
            step == steps or bool(eval_every and step % eval_every == 0)
        )

    records: list[np.ndarray] = []
    vals: list[tuple[int, float]] = []
    trace: list[PyTree] = []
    wants_metrics = callback is not None and _takes_four(callback)
    with Progress(progress, start, steps) if progress else _QUIET as bar:
        step = start
        while step < steps:
            end = _next_boundary(step, steps, boundaries)
            new, buffer, (params_trace, last) = run(state, step, end - step)
            buffer = np.asarray(buffer)  # the one transfer (and sync) per chunk
            chunk = buffer[:, 1 : end - step + 1]
            if not np.isfinite(buffer[_LOSS, : end - step + 1]).all():
                bad, good = _find_divergence(run, state, step, chunk[_LOSS])
                records.append(chunk[:, :bad])
                history = np.concatenate(records, axis=1)[_LOSS]
                raise TrainingDivergedError(step + bad, public(good), history)
            state, step, probe = new, end, last
            records.append(chunk)
            if trace_params:
                trace.append(jax.tree.map(np.asarray, params_trace))
            val_loss = None
            if is_eval_step(step):
                key_now = None if eval_key is None else jax.random.fold_in(eval_key, step)
                value = _eval_loss(
                    state.params, state.model_state, key_now, val_data, loss_fn=objective
                )
                val_loss = float(value)
                vals.append((step, val_loss))
            if progress:
                bar.update(step, float(chunk[_LOSS, -1]), val_loss)
            if callback is not None:
                if wants_metrics:
                    metrics = _chunk_metrics(chunk, aux_names)
                    callback(public(state), chunk[_LOSS], val_loss, metrics)
                else:
                    callback(public(state), chunk[_LOSS], val_loss)

    if len(records) == 1:
        table = records[0].copy()  # writable, and not holding the whole buffer
    elif records:
        table = np.concatenate(records, axis=1)
    else:
        rows = _AUX + len(aux_names) + (sharpness_every is not None)
        table = np.zeros((rows, 0), np.float32)
    history = table[_LOSS]
    metrics = _chunk_metrics(table, aux_names)
    sharpness = None
    if sharpness_every is not None:
        taken = np.arange(start, start + table.shape[1])  # steps taken before each column's
        at = taken % sharpness_every == 0
        sharpness = np.stack([taken[at], metrics.step_metrics["sharpness"][at]], axis=1)
    val_history = np.array(vals, np.float64) if vals else np.zeros((0, 2))
    param_trace = None
    if trace_params:
        param_trace = (
            jax.tree.map(lambda *xs: np.concatenate(xs), *trace)
            if trace
            else jax.tree.map(
                lambda x: np.zeros((0, *np.shape(x)), np.result_type(x)), state.params
            )
        )
        if static is not None:
            param_trace = static.combine(param_trace)
    state = public(state)
    return FitResult(
        state.params,
        state.opt_state,
        history,
        val_history,
        state,
        param_trace,
        metrics.aux,
        metrics.step_metrics,
        state.model_state,
        sharpness,
    )
