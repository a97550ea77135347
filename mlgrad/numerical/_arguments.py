"""Positional arguments of the operators: selection, promotion, and a flat real vector.

The finite differences step along real directions of one flat vector. The differentiated
arguments (any pytrees of float or complex arrays) are raveled into that vector, a complex
entry as two real ones (its real and imaginary parts), and unraveled again around f.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlgrad._validation import as_float, check_argnums

COMPLEX_INPUT = (
    "{name}: {what} has dtype {dtype}. {operator} of a function of complex inputs is not "
    "defined here; use mlgrad.numerical.derivative (the complex derivative of a holomorphic "
    "function) or mlgrad.numerical.gradient (real-valued f, JAX's convention), or pass the "
    "real and imaginary parts as separate real arguments."
)


class Selected(NamedTuple):
    """The positional arguments, with the differentiated ones validated and promoted."""

    args: tuple[Any, ...]
    nums: tuple[int, ...]  # positions of the differentiated arguments, all >= 0
    single: bool  # argnums was an int (the result is not wrapped in a tuple)
    kwargs: dict[str, Any]  # keyword arguments of f: passed through, never differentiated

    @property
    def like(self) -> Any:
        """The differentiated arguments: one pytree, or a tuple of them for tuple argnums."""
        if self.single:
            return self.args[self.nums[0]]
        return tuple(self.args[i] for i in self.nums)

    def call(self, f: Callable[..., Any], like: Any) -> Any:
        """f with the differentiated arguments replaced by `like` (and f's keyword arguments)."""
        new = list(self.args)
        for i, part in zip(self.nums, (like,) if self.single else like, strict=True):
            new[i] = part
        return f(*new, **self.kwargs)


def is_complex(leaf: Any) -> bool:
    return bool(jnp.issubdtype(jnp.result_type(leaf), jnp.complexfloating))


def real_only(tree: Any, what: str, name: str, operator: str) -> None:
    """A clear error for complex leaves where the operator has no complex meaning."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if is_complex(leaf):
            raise TypeError(
                COMPLEX_INPUT.format(
                    name=name, what=what, dtype=jnp.result_type(leaf), operator=operator
                )
            )


def select_args(
    args: Sequence[Any],
    argnums: int | Sequence[int],
    name: str,
    kwargs: dict[str, Any] | None = None,
) -> Selected:
    """Checks argnums (negative ones count from the end) and promotes those arguments; the
    keyword arguments go to f as they are (as under jax.grad, never differentiated)."""
    check_argnums(argnums, len(args), name)
    single = isinstance(argnums, int)
    nums = (
        (argnums % len(args),)
        if isinstance(argnums, int)
        else tuple(i % len(args) for i in argnums)
    )
    args = list(args)
    for i in set(nums):
        args[i] = as_float(args[i], f"argument {i}")
    return Selected(tuple(args), nums, single, dict(kwargs or {}))


class Flat(NamedTuple):
    """The differentiated arguments as one real vector x, and f as a function of it."""

    x: jax.Array  # real; a complex entry contributes its real, then its imaginary part
    unravel: Callable[[jax.Array], Any]  # x -> the arguments' pytree (complex leaves rebuilt)
    parts: Callable[[jax.Array], list[list[jax.Array]]]  # x-shaped -> per leaf [re] or [re, im]
    treedef: Any
    g: Callable[[jax.Array], Any]  # f as a function of x
    g_complex: Callable[[jax.Array], Any]  # f at a complex x + iy (all arguments real)


def realify(like: Any) -> tuple[jax.Array, Callable, Callable, Any]:
    """Ravels a pytree into one real vector, complex leaves as (real part, imaginary part)."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    split = [[jnp.real(a), jnp.imag(a)] if is_complex(a) else [a] for a in leaves]
    x, unravel_parts = ravel_pytree(split)
    dtypes = [jnp.result_type(a) for a in leaves]

    def unravel(v: jax.Array) -> Any:
        rebuilt = [
            (p[0] + 1j * p[1]).astype(d) if len(p) == 2 else p[0]
            for p, d in zip(unravel_parts(v), dtypes, strict=True)
        ]
        return treedef.unflatten(rebuilt)

    return x, unravel, unravel_parts, treedef


def flatten(f: Callable[..., Any], sel: Selected, like: Any) -> Flat:
    """f as a function of one real vector holding the differentiated arguments."""
    x, unravel, parts, treedef = realify(like)

    def g_complex(z: jax.Array) -> Any:  # each leaf: its entries of Re z + i its entries of Im z
        point = jax.tree_util.tree_map(
            lambda a, b: a + 1j * b, unravel(jnp.real(z)), unravel(jnp.imag(z))
        )
        return sel.call(f, point)

    return Flat(x, unravel, parts, treedef, lambda v: sel.call(f, unravel(v)), g_complex)


def complex_gradient(flat: Flat, grad: jax.Array, error: bool = False) -> Any:
    """The gradient pytree from d f / d x: for a complex entry z = a + ib, JAX's convention
    df/da - i df/db (its conjugate is the direction of steepest ascent); errors combine as
    the hypotenuse of the two parts' errors."""
    out = []
    for p in flat.parts(grad):
        if len(p) == 1:
            out.append(p[0])
        elif error:
            out.append(jnp.hypot(p[0], p[1]))
        else:
            out.append(p[0] - 1j * p[1])
    return flat.treedef.unflatten(out)


def unflatten_matrix(matrix: jax.Array, out_like: Any, in_like: Any) -> Any:
    """Splits an (m, n) matrix into jax.jacfwd's layout: output tree of input trees."""
    out_leaves, out_def = jax.tree_util.tree_flatten(out_like)
    in_leaves, in_def = jax.tree_util.tree_flatten(in_like)
    in_shapes = [tuple(jnp.shape(leaf)) for leaf in in_leaves]
    in_stops = np.cumsum([0] + [math.prod(s) for s in in_shapes])
    rows, r0 = [], 0
    for leaf in out_leaves:
        shape, r1 = tuple(leaf.shape), r0 + math.prod(leaf.shape)
        rows.append(
            in_def.unflatten(
                [
                    matrix[r0:r1, c0:c1].reshape(shape + s).astype(_result_dtype(leaf, matrix))
                    for s, c0, c1 in zip(in_shapes, in_stops[:-1], in_stops[1:], strict=True)
                ]
            )
        )
        r0 = r1
    return out_def.unflatten(rows)


def _result_dtype(out_leaf: Any, matrix: jax.Array) -> Any:
    """The output leaf's precision; complex when the matrix is (a complex f), else real."""
    dtype = jnp.result_type(out_leaf)
    real = jnp.finfo(dtype).dtype
    return jnp.result_type(real, 1j) if jnp.iscomplexobj(matrix) else real


def compiled(compute: Callable[[Any, Selected], Any]) -> Callable[[Selected], Any]:
    """Runs compute(differentiated args, selection) as one freshly compiled program.

    Eager op-by-op dispatch would compile every small operation separately, far slower than
    compiling the whole finite-difference computation once. Nothing is cached across calls:
    f is traced afresh at every call, as under jax.grad, so a changed global or closure is
    always seen (wrap the operator in jax.jit to reuse the program; under an outer jit this
    inner one is simply inlined). The other arguments are closed over as the concrete values
    they are.
    """

    def run(sel: Selected) -> Any:
        return jax.jit(lambda like: compute(like, sel))(sel.like)

    return run
