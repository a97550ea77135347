"""Curvature matrices as products with flat vectors, and the loops that apply them.

Every estimator in :mod:`mlgrad.curvature` works on a symmetric ``n x n`` matrix it sees only
through products ``v -> M v`` on flat vectors of length ``n`` (the differentiated argument,
flattened by ``ravel_pytree``). This module builds those products:

* the Hessian of a scalar ``f``: ``jax.linearize`` of the gradient, taken once at the point,
  so that each product ``H v`` is one forward-mode pass through the saved linearisation
  (the product :func:`mlgrad.hvp` computes, without redoing the gradient's primal pass);
* the generalized Gauss-Newton matrix ``J^T H_loss J`` of a ``(model_fn, loss_fn)`` pair
  (the product :func:`mlgrad.gnvp` computes), likewise linearised once;
* any user product on pytrees (``matvec(v) -> M v``).

It also has the two loops that apply a product to many vectors in bounded memory: a chunked
``vmap`` (``batch_size`` vectors at a time) that maps or that sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlgrad._validation import as_float, check_argnums, check_scalar_output
from mlgrad.derivatives import _normalized_argnums, _point_and_function

Matrix = Literal["hessian", "ggn"]
_MATRICES = ("hessian", "ggn")

#: Default bound on a chunk of basis directions: about this many entries of ``n`` per chunk.
_DIRECTIONS_PER_CHUNK_ENTRIES = 2**22
#: Default number of random probes applied at once.
DEFAULT_PROBE_BATCH = 32


T = TypeVar("T")


def compiled(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` as one compiled program: a fresh ``jax.jit`` per call.

    One program compiles in a fraction of the time that running the estimators' loops and
    linear algebra op by op takes. Nothing is cached between calls, so a function that reads
    global arrays sees their current values (wrap the call in your own ``jax.jit`` to compile
    once for many calls). Array leaves of ``args`` are traced; every other leaf (Python
    numbers, strings, objects) is held as a constant, as it would be in eager code.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    traced = [isinstance(leaf, jax.Array | np.ndarray) for leaf in leaves]

    def run(dynamic: list) -> T:
        it = iter(dynamic)
        full = [next(it) if t else leaf for leaf, t in zip(leaves, traced, strict=True)]
        return fn(*treedef.unflatten(full))

    return jax.jit(run)([leaf for leaf, t in zip(leaves, traced, strict=True) if t])


class FlatOperator(NamedTuple):
    """A symmetric matrix seen through its products with flat vectors.

    Attributes:
      matvec: ``(n,) -> (n,)``, the product ``M v``.
      size: ``n``.
      dtype: the dtype of the vectors (the flattened point's).
      unravel: a flat vector ``(n,)`` -> a pytree like the differentiated argument.
    """

    matvec: Callable[[jax.Array], jax.Array]
    size: int
    dtype: Any
    unravel: Callable[[jax.Array], Any]

    def matmat(self, v: jax.Array) -> jax.Array:
        """The products with the rows of the ``(b, n)`` block ``v``, as rows (``vmap``)."""
        return jax.vmap(self.matvec)(v)


def _real_flat(x: Any, name: str, what: str) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    flat, unravel = ravel_pytree(x)
    if flat.size == 0:
        raise ValueError(f"{name}: {what} has no entries; there is no matrix to analyse.")
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        raise TypeError(
            f"{name}: {what} has dtype {flat.dtype}; the curvature estimators need real "
            "floating-point inputs (float32 or float64)."
        )
    return flat, unravel


def _check_matrix(matrix: Any, name: str) -> None:
    if matrix not in _MATRICES:
        raise ValueError(f"{name}: matrix must be one of {_MATRICES}, got {matrix!r}.")


def _is_pair(f: Any) -> bool:
    return isinstance(f, tuple | list) and len(f) == 2 and all(callable(g) for g in f)


def curvature_operator(
    f: Any, args: tuple, argnums: Any, matrix: Matrix, name: str
) -> FlatOperator:
    """The Hessian (or Gauss-Newton matrix) of ``f`` at ``args``, as a :class:`FlatOperator`.

    ``f`` is a scalar function ``f(*args)``, or the pair ``(model_fn, loss_fn)`` standing for
    ``loss_fn(model_fn(params, x), y)`` with ``args == (params, x, y)`` (as :func:`mlgrad.gnvp`).
    """
    _check_matrix(matrix, name)
    if _is_pair(f):
        model_fn, loss_fn = f
        if matrix == "ggn":
            return _ggn_operator(model_fn, loss_fn, args, argnums, name)

        def f(params: Any, x: Any, y: Any) -> Any:  # the Hessian of the composed loss
            return loss_fn(model_fn(params, x), y)

    elif not callable(f):
        raise TypeError(
            f"{name}: f must be a scalar function f(*args), or the pair (model_fn, loss_fn); "
            f"got a {type(f).__name__}."
        )
    elif matrix == "ggn":
        raise ValueError(
            f"{name}: matrix='ggn' needs the model and the loss apart: pass f as the pair "
            "(model_fn, loss_fn), with model_fn(params, x) -> z and loss_fn(z, y) -> scalar, "
            "and the arguments (params, x, y), as for mlgrad.gnvp."
        )
    if not args:
        raise TypeError(f"{name}: give the point after f, e.g. {name}(loss, params, x, y).")
    x, g, _ = _point_and_function(f, tuple(args), argnums, {}, name)
    flat, unravel = _real_flat(x, name, "the differentiated argument")

    def scalar(z: jax.Array) -> jax.Array:
        out = g(unravel(z))
        check_scalar_output(out, name, "a scalar loss (e.g. jnp.mean of it)")
        return out

    _, hvp = jax.linearize(jax.grad(scalar), flat)
    return FlatOperator(hvp, int(flat.size), flat.dtype, unravel)


def _ggn_operator(
    model_fn: Callable, loss_fn: Callable, args: tuple, argnums: Any, name: str
) -> FlatOperator:
    if len(args) != 3:
        raise TypeError(
            f"{name}: with f=(model_fn, loss_fn) give the arguments (params, x, y); got "
            f"{len(args)} argument{'s' if len(args) != 1 else ''}."
        )
    check_argnums(argnums, 3, name)
    if _normalized_argnums(argnums, 3) != 0:
        raise ValueError(
            f"{name}: the Gauss-Newton matrix is over the parameters (argnums=0); got "
            f"argnums={argnums!r}."
        )
    params, x, y = args
    params = as_float(params, f"{name}: params")
    flat, unravel = _real_flat(params, name, "params")

    def loss_of_z(z: Any) -> jax.Array:
        loss = loss_fn(z, y)
        if jnp.shape(loss) != () or not jax.tree_util.treedef_is_leaf(
            jax.tree_util.tree_structure(loss)
        ):
            raise TypeError(
                f"{name}: loss_fn(z, y) must return a scalar, but it returned "
                f"{getattr(loss, 'shape', type(loss).__name__)}. Reduce it to one number, "
                "e.g. with jnp.mean or jnp.sum."
            )
        return loss

    z, model_jvp = jax.linearize(lambda p: model_fn(unravel(p), x), flat)
    model_vjp = jax.linear_transpose(model_jvp, flat)
    _, loss_hvp = jax.linearize(jax.grad(loss_of_z), z)

    def ggn_matvec(v: jax.Array) -> jax.Array:
        (gv,) = model_vjp(loss_hvp(model_jvp(v)))
        return gv

    return FlatOperator(ggn_matvec, int(flat.size), flat.dtype, unravel)


def matvec_operator(matvec: Callable[[Any], Any], like: Any, name: str) -> FlatOperator:
    """A user's product ``matvec(v) -> M v`` on pytrees like ``like``, as a FlatOperator."""
    if not callable(matvec):
        raise TypeError(f"{name}: matvec must be a function v -> M v; got {type(matvec).__name__}.")
    like = as_float(like, f"{name}: like")
    flat, unravel = _real_flat(like, name, "like")
    structure = jax.tree_util.tree_structure(like)

    def flat_matvec(v: jax.Array) -> jax.Array:
        out = matvec(unravel(v))
        if jax.tree_util.tree_structure(out) != structure or [
            jnp.shape(a) for a in jax.tree_util.tree_leaves(out)
        ] != [jnp.shape(a) for a in jax.tree_util.tree_leaves(like)]:
            raise ValueError(
                f"{name}: matvec(v) must return a pytree shaped like v (and like), but it "
                f"returned {jax.tree_util.tree_map(jnp.shape, out)} for "
                f"{jax.tree_util.tree_map(jnp.shape, like)}."
            )
        return ravel_pytree(out)[0].astype(flat.dtype)

    return FlatOperator(flat_matvec, int(flat.size), flat.dtype, unravel)


def check_positive_int(value: Any, what: str, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: {what} must be an integer >= {minimum}, got {value!r}.")
    return value


def default_key(key: Any) -> jax.Array:
    """``key``, or ``jax.random.PRNGKey(0)`` for None (the same probes on every call)."""
    return jax.random.PRNGKey(0) if key is None else key


def direction_batch(n: int, batch_size: int | None, name: str) -> int:
    """How many of ``n`` basis directions to apply at once: ``batch_size`` or a default that
    keeps a chunk of directions times ``n`` to about 4 million entries."""
    if batch_size is None:
        return max(1, min(n, _DIRECTIONS_PER_CHUNK_ENTRIES // n))
    return min(check_positive_int(batch_size, "batch_size", name), n)


def probe_batch(num: int, batch_size: int | None, name: str) -> int:
    if batch_size is None:
        return min(num, DEFAULT_PROBE_BATCH)
    return min(check_positive_int(batch_size, "batch_size", name), num)


def _even_chunks(num: int, batch: int) -> tuple[int, int]:
    """``(chunks, size)``: ``num`` items in the fewest chunks of at most ``batch``, all of one
    size (the last padded by fewer than ``chunks`` items), so one program serves them all."""
    chunks = math.ceil(num / batch)
    return chunks, math.ceil(num / chunks)


def chunked_map(fn: Callable[[Any], Any], xs: Any, batch_size: int) -> Any:
    """``vmap(fn)(xs)``, computed ``batch_size`` rows at a time (in chunks of equal size)."""
    num = jax.tree_util.tree_leaves(xs)[0].shape[0]
    chunks, size = _even_chunks(num, batch_size)
    if chunks == 1:
        return jax.vmap(fn)(xs)

    def pad(a: jax.Array) -> jax.Array:
        a = jnp.concatenate([a, jnp.repeat(a[:1], chunks * size - num, axis=0)])
        return a.reshape(chunks, size, *a.shape[1:])

    out = jax.lax.map(jax.vmap(fn), jax.tree_util.tree_map(pad, xs))
    return jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[2:])[:num], out)


def chunked_sum(fn: Callable[[jax.Array], Any], n: int, batch_size: int) -> Any:
    """``sum(fn(i) for i in range(n))``, ``fn`` vectorised over ``batch_size`` indices at a time;
    only one chunk's outputs are ever held."""
    chunks, size = _even_chunks(n, batch_size)
    vfn = jax.vmap(fn)

    def chunk_sum(c: Any) -> Any:
        idx = c * size + jnp.arange(size)
        keep = idx < n
        values = vfn(jnp.where(keep, idx, 0))
        return jax.tree_util.tree_map(
            lambda a: jnp.sum(jnp.where(keep.reshape(-1, *[1] * (a.ndim - 1)), a, 0), axis=0),
            values,
        )

    total = chunk_sum(jnp.asarray(0))
    if chunks > 1:
        total = jax.lax.fori_loop(
            1, chunks, lambda c, acc: jax.tree_util.tree_map(jnp.add, acc, chunk_sum(c)), total
        )
    return total


class Moments(NamedTuple):
    """Sample mean and standard error of the mean (pytrees like one sample)."""

    mean: Any
    stderr: Any


def rademacher_bits(key: jax.Array, num: int, n: int) -> jax.Array:
    """Random bits for ``num`` Rademacher vectors of length ``n``: ``(num, ceil(n / 32))``
    words from one draw (a thirty-second of the memory of the vectors themselves)."""
    return jax.random.bits(key, (num, math.ceil(n / 32)), jnp.uint32)


def rademacher_signs(bits: jax.Array, n: int, dtype: Any) -> jax.Array:
    """The ``+-1`` vectors, shape ``bits.shape[:-1] + (n,)``, that rows of ``bits`` encode:
    each entry independently +1 or -1 with probability 1/2."""
    shifts = jnp.arange(32, dtype=jnp.uint32)
    b = (bits[..., :, None] >> shifts) & jnp.uint32(1)
    b = b.reshape(*bits.shape[:-1], -1)[..., :n]
    return (1 - 2 * b.astype(jnp.int32)).astype(dtype)


def sample_moments(
    sample: Callable[[jax.Array], Any], bits: jax.Array, n: int, dtype: Any, batch: int
) -> Moments:
    """The mean of ``sample(v)`` over the Rademacher vectors ``v`` that the rows of ``bits``
    encode, and its standard error (sample standard deviation / sqrt(number)), accumulated
    ``batch`` samples at a time by Chan's pairwise update (no cancellation when every sample
    is the same)."""
    num = bits.shape[0]
    chunks, size = _even_chunks(num, batch)
    bits = jnp.concatenate([bits, jnp.repeat(bits[:1], chunks * size - num, axis=0)])
    vsample = jax.vmap(lambda row: sample(rademacher_signs(row, n, dtype)))

    def body(c: Any, state: tuple) -> tuple:
        count, mean, m2 = state
        idx = c * size + jnp.arange(size)
        weight = (idx < num).astype(dtype)
        values = vsample(jax.lax.dynamic_slice_in_dim(bits, c * size, size))
        count_b = jnp.sum(weight)
        total = count + count_b

        def merge(ma: Any, qa: Any, x: Any) -> tuple:
            w = weight.reshape(-1, *[1] * (x.ndim - 1))
            mb = jnp.sum(w * x, axis=0) / count_b
            qb = jnp.sum(w * (x - mb) ** 2, axis=0)
            delta = mb - ma
            return ma + delta * (count_b / total), qa + qb + delta**2 * (count * count_b / total)

        treedef = jax.tree_util.tree_structure(mean)
        pairs = [
            merge(ma, qa, x)
            for ma, qa, x in zip(
                jax.tree_util.tree_leaves(mean),
                jax.tree_util.tree_leaves(m2),
                jax.tree_util.tree_leaves(values),
                strict=True,
            )
        ]
        return (
            total,
            treedef.unflatten([m for m, _ in pairs]),
            treedef.unflatten([q for _, q in pairs]),
        )

    shape = jax.eval_shape(lambda: vsample(bits[:1]))
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape[1:], a.dtype), shape)
    state = (jnp.zeros((), dtype), zeros, zeros)
    _, mean, m2 = jax.lax.fori_loop(0, chunks, body, state)
    stderr = jax.tree_util.tree_map(lambda q: jnp.sqrt(q / (num - 1) / num), m2)
    return Moments(mean, stderr)
