"""The sparsity pattern of a Jacobian from the jaxpr: forward dependency propagation.

Each variable of the jaxpr gets the set of input entries each of its entries can depend on
(:class:`~mlgrad.sparse._deps.Deps`), equation by equation; the output's sets are the rows of the
Jacobian's pattern. The pattern is *global*: it holds at every input, because it follows the
program's structure, not the values of one point. Values the input does not affect (constants,
``iota``, index arrays the function closes over) are evaluated where they are small, so that
``x[idx]``, ``jnp.eye(n) @ x`` and masks give their exact pattern.

Every primitive without a rule here is treated conservatively: each of its outputs depends on
everything any of its inputs depends on (the dense fallback), which is always a superset of the
truth. The names of such primitives are reported, so that a user can see why a pattern is dense.
Custom derivative rules (``custom_jvp``, ``custom_vjp``) are assumed to have the dependency
structure of the function they differentiate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

from mlgrad.sparse import _deps
from mlgrad.sparse._deps import Deps
from mlgrad.sparse._numpy_ops import FOLDING, STRUCTURAL

MAX_FOLDED = 4_000_000
"""The largest constant (in entries) evaluated while propagating; larger ones count as unknown."""

UNROLL_BUDGET = 5_000
"""A ``scan`` is followed iteration by iteration (exactly) while length x equations stays below
this; longer ones are summarised by a fixed point over the iterations (conservatively)."""

MAX_FIXED_POINT = 64
"""Iterations of a ``while`` body (or long ``scan``) before its carries count as dense."""


@dataclass(frozen=True, eq=False)
class Info:
    """What is known of one variable: its input dependencies, and its value when the input does
    not affect it and it was small enough to evaluate."""

    deps: Deps | None = None
    value: np.ndarray | None = None


_UNKNOWN = Info()


@dataclass
class Context:
    """The number of inputs, and the primitives that were treated conservatively."""

    n: int
    fallbacks: set[str] = field(default_factory=set)


ELEMENTWISE = frozenset(
    [
        "neg",
        "exp",
        "exp2",
        "log",
        "log1p",
        "expm1",
        "tanh",
        "logistic",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "asinh",
        "acosh",
        "atanh",
        "sqrt",
        "rsqrt",
        "cbrt",
        "abs",
        "integer_pow",
        "square",
        "pow",
        "erf",
        "erfc",
        "erf_inv",
        "lgamma",
        "digamma",
        "polygamma",
        "igamma",
        "igammac",
        "igamma_grad_a",
        "random_gamma_grad",
        "bessel_i0e",
        "bessel_i1e",
        "zeta",
        "regularized_incomplete_beta",
        "real",
        "imag",
        "conj",
        "complex",
        "add",
        "sub",
        "mul",
        "div",
        "rem",
        "max",
        "min",
        "atan2",
        "nextafter",
        "add_any",
        "convert_element_type",
        "reduce_precision",
        "copy",
        "copy_p",
        "clamp",
    ]
)
ZERO_DERIVATIVE = frozenset(["sign", "floor", "ceil", "round", "stop_gradient", "is_finite"])
IDENTITY = frozenset(["device_put", "optimization_barrier"])
REDUCTIONS = frozenset(["reduce_sum", "reduce_max", "reduce_min", "reduce_prod"])
CUMULATIVE = frozenset(["cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"])
CALLS = frozenset(
    [
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "checkpoint",
        "remat",
        "remat2",
    ]
)
# Routing primitives: each output entry is one entry of one operand (or a constant); the
# positions of the operands that carry data (the others are index operands, needed as values).
ROUTING: dict[str, tuple[int, ...] | None] = {
    "reshape": (0,),
    "squeeze": (0,),
    "expand_dims": (0,),
    "broadcast_in_dim": (0,),
    "transpose": (0,),
    "rev": (0,),
    "slice": (0,),
    "split": (0,),
    "pad": (0, 1),
    "concatenate": None,  # every operand
    "gather": (0,),
    "dynamic_slice": (0,),
    "dynamic_update_slice": (0, 1),
    "scatter": (0, 2),
}
SCATTER_COMBINE = frozenset(
    [
        "scatter-add",
        "scatter_add",
        "scatter-mul",
        "scatter_mul",
        "scatter-min",
        "scatter_min",
        "scatter-max",
        "scatter_max",
        "scatter-sub",
        "scatter_sub",
    ]
)


def _size(var: Any) -> int:
    return math.prod(var.aval.shape)


def _inexact(var: Any) -> bool:
    dtype = getattr(var.aval, "dtype", None)
    if dtype is None:
        return False
    try:
        return bool(np.issubdtype(dtype, np.inexact))
    except TypeError:  # extended dtypes (PRNG keys)
        return False


def _concrete(x: Any) -> np.ndarray | None:
    """A NumPy copy of a constant, or None for a tracer (a value unknown until run time)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except Exception:  # extended dtypes and other values NumPy cannot hold
        return None


def _read(env: dict[Any, Info], var: Any) -> Info:
    if isinstance(var, jcore.Literal):
        return Info(None, _concrete(var.val))
    return env.get(var, _UNKNOWN)


def propagate(jaxpr: Any, consts: Sequence[Info], args: Sequence[Info], ctx: Context) -> list[Info]:
    """The :class:`Info` of each output of an open ``jaxpr`` from its consts' and inputs'."""
    env: dict[Any, Info] = {}
    for var, info in zip(jaxpr.constvars, consts, strict=True):
        env[var] = info
    for var, info in zip(jaxpr.invars, args, strict=True):
        env[var] = info
    for eqn in jaxpr.eqns:
        ins = [_read(env, v) for v in eqn.invars]
        outs = _equation(eqn, ins, ctx)
        for var, info in zip(eqn.outvars, outs, strict=True):
            env[var] = info
    return [_read(env, v) for v in jaxpr.outvars]


def propagate_closed(closed: Any, args: Sequence[Info], ctx: Context) -> list[Info]:
    """:func:`propagate` for a ClosedJaxpr (its consts as known values where concrete)."""
    consts = [Info(None, _concrete(c)) for c in closed.consts]
    return propagate(closed.jaxpr, consts, args, ctx)


def _evaluate(eqn: Any, values: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """The equation's outputs on known inputs (small ones only), or None where not possible."""
    if any(_size(v) > MAX_FOLDED for v in eqn.outvars):
        return [None] * len(eqn.outvars)
    twin = FOLDING.get(eqn.primitive.name)
    if twin is not None:
        try:
            out = twin(*values, **eqn.params)
            outs = out if eqn.primitive.multiple_results else [out]
            return [
                np.asarray(o).astype(v.aval.dtype) for o, v in zip(outs, eqn.outvars, strict=True)
            ]
        except Exception:  # not a case the twin covers: let JAX run it
            pass
    try:
        bind_params = eqn.primitive.get_bind_params(eqn.params)
        # (subfuns, params) on older JAX, params alone on newer
        subfuns, params = bind_params if isinstance(bind_params, tuple) else ((), bind_params)
        with jax.ensure_compile_time_eval():
            out = eqn.primitive.bind(*subfuns, *values, **params)
        outs = out if eqn.primitive.multiple_results else [out]
        return [_concrete(o) for o in outs]
    except Exception:  # a primitive that cannot run eagerly here: its value stays unknown
        return [None] * len(eqn.outvars)


def _equation(eqn: Any, ins: list[Info], ctx: Context) -> list[Info]:
    name = eqn.primitive.name
    if all(i.deps is None for i in ins):
        if name in CALLS:  # fold what is known inside (a jnp function's jit)
            inner = _call(eqn, ins, ctx)
            if inner is not None:
                return [Info(None, i.value) for i in inner]
        if all(i.value is not None for i in ins):
            return [Info(None, v) for v in _evaluate(eqn, [i.value for i in ins])]  # type: ignore[misc]
        return [_UNKNOWN] * len(eqn.outvars)
    if not any(_inexact(v) for v in eqn.outvars):  # comparisons, argmax, ...: no derivative
        return [_UNKNOWN] * len(eqn.outvars)
    outs = _rule(name, eqn, ins, ctx)
    if outs is None:  # no rule, or the rule needs a value that is unknown: conservative
        ctx.fallbacks.add(name)
        outs = _fallback(eqn, ins, ctx)
    # integer and boolean results have no derivative
    return [o if _inexact(v) else _UNKNOWN for o, v in zip(outs, eqn.outvars, strict=True)]


def _fallback(eqn: Any, ins: Sequence[Info], ctx: Context) -> list[Info]:
    live = [i.deps for i in ins if i.deps is not None]
    cols = np.unique(np.concatenate([d.columns() for d in live]))
    return [Info(_deps.dense(_size(v), ctx.n, cols)) for v in eqn.outvars]


def _rule(name: str, eqn: Any, ins: list[Info], ctx: Context) -> list[Info] | None:
    if name in ZERO_DERIVATIVE:
        return [_UNKNOWN] * len(eqn.outvars)
    if name in IDENTITY:
        return [Info(i.deps) for i in ins]
    if name == "select_n":
        return _select_n(eqn, ins, ctx)
    if name in ELEMENTWISE:
        return _elementwise(eqn, ins, ctx)
    if name in ROUTING:
        return _routing(eqn, ins, ctx, ROUTING[name])
    if name in SCATTER_COMBINE:
        return _scatter_combine(eqn, ins, ctx)
    if name in REDUCTIONS:
        return _reduction(eqn, ins, ctx)
    if name in CUMULATIVE:
        return _along_axis(eqn, ins, ctx, eqn.params["axis"], eqn.params["reverse"])
    if name == "sort":
        return _along_axis(eqn, ins, ctx, eqn.params["dimension"], None)
    if name == "top_k":
        return _along_axis(eqn, ins, ctx, len(eqn.invars[0].aval.shape) - 1, None)
    if name == "dot_general":
        return _dot_general(eqn, ins, ctx)
    if name in CALLS:
        return _call(eqn, ins, ctx)
    if name == "cond":
        return _cond(eqn, ins, ctx)
    if name == "while":
        return _while(eqn, ins, ctx)
    if name == "scan":
        return _scan(eqn, ins, ctx)
    return None


# ---------------------------------------------------------------------------------------------
# Entry-wise operations
# ---------------------------------------------------------------------------------------------


def _entrywise_sources(
    out_var: Any, var: Any, info: Info, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, Deps | None] | None:
    """(out, src, deps) routing an operand entry by entry to the output, broadcasting its
    size-1 axes as the primitive does; ``rows`` restricts it to some output entries. None for
    shapes that do not broadcast."""
    out_shape = tuple(out_var.aval.shape)
    size = _size(var)
    out = np.arange(math.prod(out_shape), dtype=np.int64) if rows is None else rows
    if tuple(var.aval.shape) == out_shape:
        return out, out, info.deps
    try:
        ids = np.arange(size, dtype=np.int64).reshape(var.aval.shape)
        src = np.broadcast_to(ids, out_shape).ravel()
    except ValueError:
        return None
    return out, src[out], info.deps


def _elementwise(eqn: Any, ins: list[Info], ctx: Context) -> list[Info] | None:
    out_var = eqn.outvars[0]
    out_size = _size(out_var)
    rows = None
    if eqn.primitive.name == "mul" and len(ins) == 2:
        # a product with a known factor is zero (and so has no derivative) where that factor is
        known = [i for i in ins if i.deps is None and i.value is not None]
        if known:
            factor = np.broadcast_to(known[0].value, out_var.aval.shape)  # type: ignore[arg-type]
            rows = np.flatnonzero(factor)
    sources = []
    for var, info in zip(eqn.invars, ins, strict=True):
        if info.deps is None:
            continue
        src = _entrywise_sources(out_var, var, info, rows)
        if src is None:
            return None
        sources.append(src)
    return [Info(_deps.pull(out_size, ctx.n, sources))]


def _select_n(eqn: Any, ins: list[Info], ctx: Context) -> list[Info] | None:
    out_var = eqn.outvars[0]
    out_size = _size(out_var)
    which, cases = ins[0], ins[1:]
    sources = []
    if which.value is not None:  # a known choice: each entry takes its case's dependencies
        chosen = np.broadcast_to(which.value, out_var.aval.shape).ravel().astype(np.int64)
        for k, (var, info) in enumerate(zip(eqn.invars[1:], cases, strict=True)):
            if info.deps is None:
                continue
            src = _entrywise_sources(out_var, var, info, np.flatnonzero(chosen == k))
            if src is None:
                return None
            sources.append(src)
    else:  # either case, entry by entry (the choice itself has no derivative)
        for var, info in zip(eqn.invars[1:], cases, strict=True):
            if info.deps is None:
                continue
            src = _entrywise_sources(out_var, var, info)
            if src is None:
                return None
            sources.append(src)
    return [Info(_deps.pull(out_size, ctx.n, sources))]


# ---------------------------------------------------------------------------------------------
# Routing: run the primitive itself on the entries' numbers
# ---------------------------------------------------------------------------------------------


def _routing(
    eqn: Any, ins: list[Info], ctx: Context, data: tuple[int, ...] | None
) -> list[Info] | None:
    """Runs the primitive on arrays of entry numbers (1, 2, ...; 0 for entries that depend on
    nothing), so that each output entry names the operand entry it is a copy of."""
    positions = range(len(ins)) if data is None else data
    args: list[Any] = []
    blocks: list[tuple[int, int, Deps]] = []  # (first number, size, deps) per data operand
    next_id = 1
    for k, (var, info) in enumerate(zip(eqn.invars, ins, strict=True)):
        shape = var.aval.shape
        if k in positions:
            size = math.prod(shape)
            if info.deps is None:
                args.append(np.zeros(shape, dtype=np.int32))
            else:
                ids = np.arange(next_id, next_id + size, dtype=np.int64)
                args.append(ids.reshape(shape))
                blocks.append((next_id, size, info.deps))
                next_id += size
        else:
            if info.value is None:
                return None  # the routing depends on unknown indices
            args.append(info.value)
    if next_id >= 2**31 - 1:
        return None
    twin = STRUCTURAL.get(eqn.primitive.name)
    try:
        if twin is not None:
            out = twin(*args, **eqn.params)
        else:
            args = [a.astype(np.int32) if k in positions else a for k, a in enumerate(args)]
            params = dict(eqn.params)
            if eqn.primitive.name == "gather":
                params["fill_value"] = 0  # entries gathered from out of bounds copy nothing
            with jax.ensure_compile_time_eval():
                out = eqn.primitive.bind(*args, **params)
    except Exception:
        return None
    outs = out if eqn.primitive.multiple_results else [out]
    return [Info(_decode(np.asarray(o).ravel().astype(np.int64), blocks, ctx)) for o in outs]


def _decode(ids: np.ndarray, blocks: Sequence[tuple[int, int, Deps]], ctx: Context) -> Deps | None:
    sources = []
    for first, size, deps in blocks:
        rows = np.flatnonzero((ids >= first) & (ids < first + size))
        sources.append((rows, ids[rows] - first, deps))
    return _deps.pull(ids.size, ctx.n, sources)


def _scatter_combine(eqn: Any, ins: list[Info], ctx: Context) -> list[Info] | None:
    """``scatter-add`` and kin: each output entry combines its operand entry with every update
    aimed at it. Where each update lands is read off the transposed gather (JAX's transpose
    rule of ``scatter-add``) run on the output entries' numbers."""
    operand, indices, updates = ins[:3]
    if indices.value is None:
        return None
    dnums = eqn.params["dimension_numbers"]
    shape = eqn.invars[0].aval.shape
    upd_shape = eqn.invars[2].aval.shape
    slice_sizes, pos = [], 0
    for i in range(len(shape)):
        if i in dnums.inserted_window_dims or i in dnums.operand_batching_dims:
            slice_sizes.append(1)
        else:
            slice_sizes.append(upd_shape[dnums.update_window_dims[pos]])
            pos += 1
    gather_dnums = jax.lax.GatherDimensionNumbers(
        offset_dims=dnums.update_window_dims,
        collapsed_slice_dims=dnums.inserted_window_dims,
        start_index_map=dnums.scatter_dims_to_operand_dims,
        operand_batching_dims=dnums.operand_batching_dims,
        start_indices_batching_dims=dnums.scatter_indices_batching_dims,
    )
    out_size = math.prod(shape)
    if out_size >= 2**31 - 1:
        return None
    numbers = np.arange(1, out_size + 1, dtype=np.int32).reshape(shape)
    try:
        with jax.ensure_compile_time_eval():
            gathered = jax.lax.gather(
                numbers,
                indices.value,
                gather_dnums,
                tuple(slice_sizes),
                mode=eqn.params["mode"],
                fill_value=0,
            )
    except Exception:
        return None
    target = np.asarray(gathered).ravel().astype(np.int64)  # 0: an update that is dropped
    keep = np.flatnonzero(target > 0)
    identity = np.arange(out_size, dtype=np.int64)
    return [
        Info(
            _deps.pull(
                out_size,
                ctx.n,
                [(identity, identity, operand.deps), (target[keep] - 1, keep, updates.deps)],
            )
        )
    ]


# ---------------------------------------------------------------------------------------------
# Reductions, scans along an axis, contractions
# ---------------------------------------------------------------------------------------------


def _reduction(eqn: Any, ins: list[Info], ctx: Context) -> list[Info]:
    shape = eqn.invars[0].aval.shape
    axes = tuple(eqn.params["axes"])
    kept = tuple(d for d in range(len(shape)) if d not in axes)
    out_size = math.prod(shape[d] for d in kept)
    out_ids = np.arange(out_size, dtype=np.int64).reshape([shape[d] for d in kept])
    target = np.broadcast_to(np.expand_dims(out_ids, axes), shape).ravel()
    src = np.arange(target.size, dtype=np.int64)
    return [Info(_deps.pull(out_size, ctx.n, [(target, src, ins[0].deps)]))]


def _along_axis(
    eqn: Any, ins: list[Info], ctx: Context, axis: int, reverse: bool | None
) -> list[Info]:
    """Each output entry depends on the entries of its line along ``axis``: those before it
    (cumulative ops; after it when ``reverse``), or all of them (``reverse=None``: sorting),
    in every operand."""
    shape = eqn.invars[0].aval.shape
    axis = axis % len(shape)
    length = shape[axis]
    ids = np.moveaxis(np.arange(math.prod(shape), dtype=np.int64).reshape(shape), axis, -1)
    lines = ids.reshape(-1, length)  # one line per row, in the axis' order
    if reverse is None:
        i, j = np.divmod(np.arange(length * length, dtype=np.int64), length)
    else:
        i, j = np.tril_indices(length) if not reverse else np.triu_indices(length)
    pairs = lines.shape[0] * i.size
    if pairs > _deps.MAX_ENTRIES:
        return _fallback(eqn, ins, ctx)
    out = lines[:, i].ravel()
    src = lines[:, j].ravel()
    sources = [(out, src, info.deps) for info in ins if info.deps is not None]
    deps = _deps.pull(math.prod(shape), ctx.n, sources)
    return [Info(deps) for _ in eqn.outvars]


def _nonzero(info: Info, shape: tuple[int, ...]) -> np.ndarray:
    """Where an operand can be nonzero: everywhere, unless it is a known constant."""
    if info.deps is None and info.value is not None:
        return np.broadcast_to(info.value != 0, shape)
    return np.ones(shape, dtype=bool)


def _dot_general(eqn: Any, ins: list[Info], ctx: Context) -> list[Info]:
    (contract_a, contract_b), (batch_a, batch_b) = eqn.params["dimension_numbers"]
    a_var, b_var = eqn.invars
    sa, sb = a_var.aval.shape, b_var.aval.shape
    free_a = [d for d in range(len(sa)) if d not in contract_a and d not in batch_a]
    free_b = [d for d in range(len(sb)) if d not in contract_b and d not in batch_b]
    nb = math.prod(sa[d] for d in batch_a)
    ni = math.prod(sa[d] for d in free_a)
    nj = math.prod(sb[d] for d in free_b)
    nk = math.prod(sa[d] for d in contract_a)
    order_a = [*batch_a, *free_a, *contract_a]
    order_b = [*batch_b, *free_b, *contract_b]
    ids_a = np.arange(math.prod(sa), dtype=np.int64).reshape(sa).transpose(order_a).ravel()
    ids_b = np.arange(math.prod(sb), dtype=np.int64).reshape(sb).transpose(order_b).ravel()
    nz_a = np.flatnonzero(_nonzero(ins[0], sa).transpose(order_a).ravel())
    nz_b = np.flatnonzero(_nonzero(ins[1], sb).transpose(order_b).ravel())
    # a's entry (b, i, k) meets b's entries (b, j, k): join the nonzeros on (b, k)
    ba, ia, ka = np.unravel_index(nz_a, (nb, ni, nk))
    bb, jb, kb = np.unravel_index(nz_b, (nb, nj, nk))
    key_b = bb * nk + kb
    order = np.argsort(key_b, kind="stable")
    key_sorted = key_b[order]
    key_a = ba * nk + ka
    lo = np.searchsorted(key_sorted, key_a, side="left")
    hi = np.searchsorted(key_sorted, key_a, side="right")
    counts = hi - lo
    out_size = nb * ni * nj
    if int(counts.sum()) > _deps.MAX_ENTRIES:
        return _fallback(eqn, ins, ctx)
    rep = np.repeat(np.arange(nz_a.size, dtype=np.int64), counts)
    partner = order[_deps.ranges(lo, counts)]
    out = (ba[rep] * ni + ia[rep]) * nj + jb[partner]
    sources = []
    if ins[0].deps is not None:
        sources.append((out, ids_a[nz_a[rep]], ins[0].deps))
    if ins[1].deps is not None:
        sources.append((out, ids_b[nz_b[partner]], ins[1].deps))
    return [Info(_deps.pull(out_size, ctx.n, sources))]


# ---------------------------------------------------------------------------------------------
# Calls and control flow
# ---------------------------------------------------------------------------------------------


def _run(sub: Any, args: Sequence[Info], ctx: Context) -> list[Info]:
    """Propagates through a sub-jaxpr, closed (its consts known where concrete) or open."""
    if hasattr(sub, "consts"):
        return propagate_closed(sub, args, ctx)
    return propagate(sub, [], args, ctx)


def _call(eqn: Any, ins: list[Info], ctx: Context) -> list[Info] | None:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        inner = getattr(sub, "jaxpr", sub)
        if (
            sub is not None
            and hasattr(inner, "eqns")
            and len(inner.invars) == len(ins)
            and len(inner.outvars) == len(eqn.outvars)
        ):
            return _run(sub, ins, ctx)
    return None


def _union_infos(parts: Sequence[Sequence[Info]], vars_: Sequence[Any], ctx: Context) -> list[Info]:
    return [
        Info(_deps.union(_size(v), ctx.n, [p[k].deps for p in parts])) for k, v in enumerate(vars_)
    ]


def _cond(eqn: Any, ins: list[Info], ctx: Context) -> list[Info]:
    branches = eqn.params["branches"]
    index, operands = ins[0], ins[1:]
    if index.value is not None and index.value.size == 1:
        k = int(np.clip(int(index.value), 0, len(branches) - 1))
        return _run(branches[k], operands, ctx)
    parts = [_run(b, operands, ctx) for b in branches]
    return _union_infos(parts, eqn.outvars, ctx)


def _fixed_point(
    step: Callable[[list[Info]], list[Info]], init: list[Info], vars_: Sequence[Any], ctx: Context
) -> list[Info]:
    """The union of the carries over any number of iterations of ``step`` (values unknown)."""
    carry = [Info(i.deps) for i in init]
    for _ in range(MAX_FIXED_POINT):
        new = _union_infos([carry, step(carry)], vars_, ctx)
        if all(_deps.same(a.deps, b.deps) for a, b in zip(carry, new, strict=True)):
            return carry
        carry = new
    cols = [c.deps.columns() for c in carry if c.deps is not None]
    every = np.unique(np.concatenate(cols)) if cols else np.zeros(0, dtype=np.int64)
    return [Info(_deps.dense(_size(v), ctx.n, every)) for v in vars_]


def _while(eqn: Any, ins: list[Info], ctx: Context) -> list[Info]:
    body = eqn.params["body_jaxpr"]
    n_cond, n_body = eqn.params["cond_nconsts"], eqn.params["body_nconsts"]
    body_consts = ins[n_cond : n_cond + n_body]
    init = ins[n_cond + n_body :]
    return _fixed_point(
        lambda carry: _run(body, [*body_consts, *carry], ctx), init, eqn.outvars, ctx
    )


def _count_equations(jaxpr: Any) -> int:
    inner = getattr(jaxpr, "jaxpr", jaxpr)
    return max(1, len(inner.eqns))


def _scan(eqn: Any, ins: list[Info], ctx: Context) -> list[Info]:
    params = eqn.params
    body, length = params["jaxpr"], int(params["length"])
    n_consts, n_carry = params["num_consts"], params["num_carry"]
    consts, init, xs = ins[:n_consts], ins[n_consts : n_consts + n_carry], ins[n_consts + n_carry :]
    xs_vars = eqn.invars[n_consts + n_carry :]
    ys_vars = eqn.outvars[n_carry:]
    slice_sizes = [_size(v) // max(length, 1) for v in xs_vars]
    y_sizes = [_size(v) // max(length, 1) for v in ys_vars]
    steps = range(length - 1, -1, -1) if params["reverse"] else range(length)

    if length * _count_equations(body) <= UNROLL_BUDGET:  # exact: iteration by iteration
        carry = list(init)
        y_sources: list[list[tuple[np.ndarray, np.ndarray, Deps | None]]] = [[] for _ in ys_vars]
        for t in steps:
            x_t = []
            for x, s in zip(xs, slice_sizes, strict=True):
                rows = np.arange(s, dtype=np.int64)
                deps = _deps.pull(s, ctx.n, [(rows, t * s + rows, x.deps)])
                value = None if x.value is None else x.value[t]
                x_t.append(Info(deps, value))
            outs = _run(body, [*consts, *carry, *x_t], ctx)
            carry = outs[:n_carry]
            for k, (y, s) in enumerate(zip(outs[n_carry:], y_sizes, strict=True)):
                rows = np.arange(s, dtype=np.int64)
                y_sources[k].append((t * s + rows, rows, y.deps))
        ys = [
            Info(_deps.pull(_size(v), ctx.n, src))
            for v, src in zip(ys_vars, y_sources, strict=True)
        ]
        return [Info(c.deps) for c in carry] + ys

    # long: every iteration sees the union of the slices, and the carries' fixed point
    x_any = []
    for x, s in zip(xs, slice_sizes, strict=True):
        src = np.arange(length * s, dtype=np.int64)
        x_any.append(Info(_deps.pull(s, ctx.n, [(src % s, src, x.deps)])))
    carry_vars = eqn.outvars[:n_carry]

    def step(carry: list[Info]) -> list[Info]:
        return _run(body, [*consts, *carry, *x_any], ctx)[:n_carry]

    carry = _fixed_point(step, init, carry_vars, ctx)
    outs = _run(body, [*consts, *carry, *x_any], ctx)
    ys = []
    for v, y, s in zip(ys_vars, outs[n_carry:], y_sizes, strict=True):
        out = np.arange(length * s, dtype=np.int64)
        ys.append(Info(_deps.pull(_size(v), ctx.n, [(out, out % s, y.deps)])))
    return carry + ys
