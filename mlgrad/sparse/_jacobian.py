"""sparse_jacobian and sparse_hessian: the pattern once, then one product per colour."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse
from jax.flatten_util import ravel_pytree

from mlgrad._validation import as_float_args, check_argnums
from mlgrad.derivatives import _differentiated, _normalized_argnums, _with_differentiated
from mlgrad.sparse import _deps
from mlgrad.sparse._coloring import Coloring, color
from mlgrad.sparse._propagate import Context, Info, propagate_closed

Mode = Literal["auto", "forward", "reverse"]
_MODES = ("auto", "forward", "reverse")


@dataclass(frozen=True)
class SparseJacobian:
    """A Jacobian (or Hessian) computed from as many products as colours.

    A pytree whose only array is ``matrix``; ``colors`` and ``coloring`` are static, so a
    jitted function can return it and ``colors`` stays a Python int.

    Attributes:
      matrix: the ``m x n`` matrix over the flattened output and the flattened differentiated
        input(s) (``jax.flatten_util.ravel_pytree``'s order), a ``jax.experimental.sparse.BCOO``
        whose stored entries are the pattern (a superset of the nonzeros; an entry of the
        pattern may be an exact zero at this point).
      colors: the number of products used: JVPs + VJPs (Hessian-vector products for
        :func:`sparse_hessian`).
      coloring: the pattern and its colouring (:class:`~mlgrad.sparse.Coloring`): which column
        or row went into which product, the products' seeds, and the primitives the pattern
        detection treated as dense, if any.
    """

    matrix: jsparse.BCOO
    colors: int
    coloring: Coloring

    def todense(self) -> jax.Array:
        """The matrix as a dense array."""
        return self.matrix.todense()


jax.tree_util.register_dataclass(
    SparseJacobian, data_fields=["matrix"], meta_fields=["colors", "coloring"]
)


# ---------------------------------------------------------------------------------------------
# The pattern: traced once per argument shapes
# ---------------------------------------------------------------------------------------------


def _is_array(leaf: Any) -> bool:
    return hasattr(leaf, "shape") and hasattr(leaf, "dtype")


def _signature(args: tuple, kwargs: dict) -> Any:
    """What the pattern may depend on: the shapes and dtypes of the arrays, and the other
    (static) leaves; None when a static leaf cannot be hashed (then nothing is cached)."""
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    parts = tuple(
        ("array", tuple(leaf.shape), str(leaf.dtype)) if _is_array(leaf) else ("static", leaf)
        for leaf in leaves
    )
    key = (treedef, parts)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _flat_function(
    f: Callable, args: tuple, kwargs: dict, nums: Any
) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """(the flattened differentiated input, the flat function of it with the rest fixed)."""
    flat_x, unravel = ravel_pytree(_differentiated(args, nums))

    def flat_f(flat: jax.Array) -> jax.Array:
        out = f(*_with_differentiated(args, nums, unravel(flat)), **kwargs)
        return ravel_pytree(out)[0]

    return flat_x, flat_f


def _detect(
    f: Callable, args: tuple, kwargs: dict, nums: Any, hessian: bool, name: str
) -> tuple[np.ndarray, np.ndarray, int, int, tuple[str, ...]]:
    """The pattern (rows, cols, m, n, fallbacks) of f's Jacobian (or Hessian) from its jaxpr,
    with every array argument that is not differentiated abstract (so that the pattern holds
    for all of their values, and for every point)."""
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    is_array = [_is_array(leaf) for leaf in leaves]
    flat_x, unravel = ravel_pytree(_differentiated(args, nums))
    n = int(flat_x.size)

    def traced(flat: jax.Array, array_leaves: list) -> jax.Array:
        it = iter(array_leaves)
        full = [next(it) if a else leaf for a, leaf in zip(is_array, leaves, strict=True)]
        a, kw = jax.tree_util.tree_unflatten(treedef, full)
        out = f(*_with_differentiated(a, nums, unravel(flat)), **kw)
        y = ravel_pytree(out)[0]
        if hessian:
            if y.size != 1:
                raise ValueError(
                    f"{name}: f must return a scalar, got {y.size} entries; use "
                    "mlgrad.sparse_jacobian for a vector-valued f (or mlgrad.hessian)."
                )
            return y.reshape(())
        return y

    abstract = [
        jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
        for leaf, a in zip(leaves, is_array, strict=True)
        if a
    ]
    x_spec = jax.ShapeDtypeStruct(flat_x.shape, flat_x.dtype)
    target = jax.grad(traced) if hessian else traced
    closed = jax.make_jaxpr(target)(x_spec, abstract)
    ctx = Context(n)
    inputs = [Info(_deps.identity(n))] + [Info() for _ in abstract]
    (out,) = propagate_closed(closed, inputs, ctx)
    m = n if hessian else int(np.prod(closed.out_avals[0].shape))
    deps = out.deps
    if deps is None:
        rows = cols = np.zeros(0, dtype=np.int64)
    elif deps.dense and deps.size * deps.columns().size > _deps.MAX_ENTRIES:
        raise ValueError(
            f"{name}: the {'Hessian' if hessian else 'Jacobian'} is dense or nearly so "
            f"({m} x {n}, about {deps.columns().size} inputs per entry"
            + (f"; dense fallback for {', '.join(sorted(ctx.fallbacks))}" if ctx.fallbacks else "")
            + "): no colouring can save products. Use mlgrad."
            + ("hessian" if hessian else "jacobian")
            + " instead, or pass the pattern you know as pattern=."
        )
    else:
        rows, cols = deps.coo()
    if hessian:  # symmetric by construction of the products; make the pattern so
        keys = np.unique(np.concatenate([rows * n + cols, cols * n + rows]))
        rows, cols = np.divmod(keys, n)
    return rows, cols, m, n, tuple(sorted(ctx.fallbacks))


def _given_pattern(pattern: Any, m: int, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a pattern given as a boolean m x n array, a BCOO or a (rows, cols) pair."""
    if isinstance(pattern, jsparse.BCOO):
        if pattern.shape != (m, n):
            raise ValueError(f"{name}: pattern has shape {pattern.shape}, expected ({m}, {n}).")
        idx = np.asarray(pattern.indices)
        rows, cols = idx[:, 0], idx[:, 1]
    elif isinstance(pattern, tuple) and len(pattern) == 2:
        rows, cols = (np.asarray(p).astype(np.int64).ravel() for p in pattern)
        if rows.shape != cols.shape:
            raise ValueError(f"{name}: pattern=(rows, cols) needs equally long rows and cols.")
        if rows.size and (rows.min() < 0 or rows.max() >= m or cols.min() < 0 or cols.max() >= n):
            raise ValueError(f"{name}: pattern=(rows, cols) indexes outside ({m}, {n}).")
    else:
        dense = np.asarray(pattern)
        if dense.shape != (m, n):
            raise ValueError(
                f"{name}: pattern has shape {dense.shape}, expected ({m}, {n}) (flattened "
                "output by flattened input), a BCOO of that shape, or a (rows, cols) pair."
            )
        rows, cols = np.nonzero(dense)
    keys = np.unique(rows.astype(np.int64) * n + cols.astype(np.int64))
    return np.divmod(keys, n)


# ---------------------------------------------------------------------------------------------
# The products and the decompression
# ---------------------------------------------------------------------------------------------


def _source_index(coloring: Coloring, jvp_len: int, vjp_len: int) -> np.ndarray:
    """Where each entry lies in the concatenation of the flattened JVP and VJP outputs."""
    jvps = coloring.jvps
    from_jvp = coloring.product < jvps
    return np.where(
        from_jvp,
        coloring.product * jvp_len + coloring.position,
        jvps * jvp_len + (coloring.product - jvps) * vjp_len + coloring.position,
    ).astype(np.int64)


def _assemble(coloring: Coloring, outputs: jax.Array, source: np.ndarray) -> SparseJacobian:
    indices = np.stack([coloring.rows, coloring.cols], axis=1).astype(np.int32)
    data = outputs[jnp.asarray(source)] if source.size else outputs[:0]
    matrix = jsparse.BCOO(
        (data, jnp.asarray(indices)),
        shape=coloring.shape,
        indices_sorted=True,
        unique_indices=True,
    )
    return SparseJacobian(matrix, coloring.colors, coloring)


def _one_hot_seeds(colors: np.ndarray, count: int, dtype: Any) -> jax.Array:
    """``count x len(colors)`` seeds, row ``c`` the indicator of colour ``c``, built inside the
    compiled program from the colours (n integers) rather than baked in as a matrix."""
    return (jnp.asarray(colors)[None, :] == jnp.arange(count)[:, None]).astype(dtype)


def _jacobian_products(flat_f: Callable, flat_x: jax.Array, coloring: Coloring) -> jax.Array:
    jvps, vjps = coloring.jvps, coloring.vjps
    v = _one_hot_seeds(coloring.column_colors, jvps, flat_x.dtype)
    parts = []
    if jvps and vjps:  # one linearisation serves both kinds
        y, lin = jax.linearize(flat_f, flat_x)
        pullback = jax.linear_transpose(lin, flat_x)
        parts.append(jax.vmap(lin)(v).ravel())
        u = _one_hot_seeds(coloring.row_colors, vjps, y.dtype)
        parts.append(jax.vmap(lambda w: pullback(w)[0])(u).ravel())
    elif jvps:
        parts.append(jax.vmap(lambda t: jax.jvp(flat_f, (flat_x,), (t,))[1])(v).ravel())
    elif vjps:
        y, pullback = jax.vjp(flat_f, flat_x)
        u = _one_hot_seeds(coloring.row_colors, vjps, y.dtype)
        parts.append(jax.vmap(lambda w: pullback(w)[0])(u).ravel())
    else:
        parts.append(jnp.zeros(0, dtype=flat_x.dtype))
    return jnp.concatenate(parts)


def _hessian_products(flat_f: Callable, flat_x: jax.Array, coloring: Coloring) -> jax.Array:
    if coloring.colors == 0:
        return jnp.zeros(0, dtype=flat_x.dtype)
    seeds = jnp.concatenate(
        [
            _one_hot_seeds(coloring.column_colors, coloring.jvps, flat_x.dtype),
            _one_hot_seeds(coloring.row_colors, coloring.vjps, flat_x.dtype),
        ]
    )
    grad = jax.grad(lambda z: flat_f(z).reshape(()))
    return jax.vmap(lambda t: jax.jvp(grad, (flat_x,), (t,))[1])(seeds).ravel()


def _check_real(flat_x: jax.Array, name: str) -> None:
    if jnp.issubdtype(flat_x.dtype, jnp.complexfloating):
        raise TypeError(
            f"{name}: complex inputs are not supported; differentiate with respect to the real "
            "and imaginary parts as separate real arrays."
        )


def _split_leaves(args: tuple, kwargs: dict) -> tuple[list, list[bool], Any]:
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    return leaves, [_is_array(leaf) for leaf in leaves], treedef


def _make(
    f: Callable,
    argnums: int | Sequence[int],
    mode: str,
    pattern: Any,
    hessian: bool,
    name: str,
) -> Callable[..., SparseJacobian]:
    # per argument signature: the colouring and the compiled products (one XLA program)
    cache: dict[Any, Callable[[list], SparseJacobian]] = {}

    def plan(args: tuple, kwargs: dict, nums: Any) -> Callable[[list], SparseJacobian]:
        leaves, is_array, treedef = _split_leaves(args, kwargs)
        static = [None if a else leaf for leaf, a in zip(leaves, is_array, strict=True)]

        def rebuild(array_leaves: list) -> tuple[tuple, dict]:
            it = iter(array_leaves)
            full = [next(it) if a else leaf for a, leaf in zip(is_array, static, strict=True)]
            a, kw = jax.tree_util.tree_unflatten(treedef, full)
            return a, kw

        flat_x, flat_f = _flat_function(f, args, kwargs, nums)
        _check_real(flat_x, name)
        n = int(flat_x.size)
        if pattern is None:
            rows, cols, m, n, fallbacks = _detect(f, args, kwargs, nums, hessian, name)
        else:
            m = n if hessian else int(np.prod(jax.eval_shape(flat_f, flat_x).shape))
            rows, cols = _given_pattern(pattern, m, n, name)
            fallbacks = ()
            if hessian:
                keys = np.unique(np.concatenate([rows * n + cols, cols * n + rows]))
                rows, cols = np.divmod(keys, n)
        coloring = color(rows, cols, (m, n), mode, symmetric=hessian, fallbacks=fallbacks)
        products = _hessian_products if hessian else _jacobian_products
        source = _source_index(coloring, n if hessian else m, n)

        @jax.jit
        def run(array_leaves: list) -> SparseJacobian:
            a, kw = rebuild(array_leaves)
            x, g = _flat_function(f, a, kw, nums)
            return _assemble(coloring, products(g, x, coloring), source)

        return run

    @functools.wraps(f)
    def sparse_of_f(*args: Any, **kwargs: Any) -> SparseJacobian:
        check_argnums(argnums, len(args), name)
        nums = _normalized_argnums(argnums, len(args))
        args = as_float_args(args, nums)
        key = _signature(args, kwargs)
        run = cache.get(key) if key is not None else None
        if run is None:
            run = plan(args, kwargs, nums)
            if key is not None:
                cache[key] = run
        leaves, is_array, _ = _split_leaves(args, kwargs)
        return run([leaf for leaf, a in zip(leaves, is_array, strict=True) if a])

    return sparse_of_f


def sparse_jacobian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    mode: Mode = "auto",
    pattern: Any = None,
) -> Callable[..., SparseJacobian]:
    r"""The Jacobian of a function whose outputs each depend on few inputs, from few products.

    ``jax.jacfwd`` spends one JVP per input entry: ``n`` products for ``f: R^n -> R^m``. When
    columns ``j`` and ``k`` have no row in common (*structurally orthogonal*), one JVP with
    :math:`e_j + e_k` gives both: each entry of :math:`J(e_j + e_k)` belongs to one of them.
    So the columns are coloured, structurally orthogonal ones sharing a colour, and the
    Jacobian costs one JVP per colour: a banded ``f`` (each output depends on ``b`` neighbouring
    inputs) costs about ``b`` JVPs whatever ``n`` is; an arrowhead (one output depends on every
    input, one input reaches every output) costs one VJP for the dense row and two JVPs.

    The sparsity pattern is found once per argument shapes, from ``f``'s jaxpr (a dependency
    propagation through its primitives, exact for element-wise maths, indexing, slicing,
    padding, concatenation, reductions, matrix products, ``scan`` and ``cond``; a primitive
    without a rule counts as dense, which is safe); the colouring follows (greedy, in the
    natural order); only the products run on each call, so under ``jax.jit`` the work per call
    is the products alone.

    Args:
      f: a function of arrays or pytrees. Values it closes over (index arrays, masks, constant
        matrices) shape the pattern exactly; array arguments that are not differentiated count
        as unknown values (the pattern then holds for all of them).
      argnums: which positional argument(s) to differentiate; several are flattened together.
      mode: ``"auto"`` (default: the fewest products, JVPs for columns and VJPs for a few dense
        rows, or the reverse), ``"forward"`` (JVPs only) or ``"reverse"`` (VJPs only).
      pattern: the pattern, if you know it better: a boolean ``m x n`` array, a BCOO of that
        shape, or a ``(rows, cols)`` pair over the flattened output and input. It must include
        every nonzero (entries outside it are taken to be zero).

    Returns:
      A function of the same arguments as ``f`` returning a :class:`SparseJacobian`: ``matrix``
      (a ``jax.experimental.sparse.BCOO``, ``m x n`` over the flattened output and input),
      ``colors`` (the number of products used) and ``coloring``. Keyword arguments go to ``f``.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda x: x**2 - jnp.roll(x, 1)  # each output depends on two inputs
      >>> J = mlgrad.sparse_jacobian(f)(jnp.arange(1.0, 7.0))
      >>> J.colors  # not 6
      2
      >>> J.todense()[1]
      Array([-1.,  4.,  0.,  0.,  0.,  0.], dtype=float32)
    """
    if mode not in _MODES:
        raise ValueError(f"sparse_jacobian: mode must be one of {_MODES}, got {mode!r}.")
    return _make(f, argnums, mode, pattern, False, "sparse_jacobian")


def sparse_hessian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    pattern: Any = None,
) -> Callable[..., SparseJacobian]:
    r"""The Hessian of a scalar function whose variables interact sparsely, from few products.

    The Hessian is the Jacobian of the gradient, so :func:`sparse_jacobian`'s idea carries
    over, with Hessian-vector products (forward over reverse, :math:`(\nabla^2 f) v` without
    the matrix) as the products: a sum of local terms :math:`\sum_i g(x_i, x_{i+1})` has a
    tridiagonal Hessian that costs 3 products for any ``n``. The pattern comes from the
    jaxpr of the gradient (made symmetric); a few dense rows (a variable that meets all the
    others) each take a product of their own, which gives their column too.

    Args:
      f: a scalar-valued function of arrays or pytrees.
      argnums: which positional argument(s) to differentiate.
      pattern: the Hessian's pattern, if you know it better (as for :func:`sparse_jacobian`);
        it is made symmetric.

    Returns:
      A function of the same arguments as ``f`` returning a :class:`SparseJacobian` whose
      ``matrix`` is the ``n x n`` Hessian over the flattened input and ``colors`` the number
      of Hessian-vector products used.

    Example:
      >>> import jax.numpy as jnp, mlgrad
      >>> f = lambda x: jnp.sum(x[1:] * x[:-1]) + jnp.sum(x**3)
      >>> H = mlgrad.sparse_hessian(f)(jnp.ones(5))
      >>> H.colors
      3
      >>> H.todense()[0]
      Array([6., 1., 0., 0., 0.], dtype=float32)
    """
    return _make(f, argnums, "auto", pattern, True, "sparse_hessian")
