"""Input checks shared by the calculus operators.

Every public operator accepts JAX arrays, NumPy arrays and Python numbers. Python
ints (and bools) are promoted to the default float type, as ``jnp.asarray(1.0)``
would be; integer *arrays* are rejected, because a derivative with respect to an
integer is not defined and JAX would silently return ``float0`` zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

INTEGER_INPUT = (
    "{what} has dtype {dtype}; derivatives are only defined for floating-point (or complex) "
    "inputs. Pass floats instead, e.g. jnp.asarray(x, dtype=jnp.float32) or 2.0 instead of 2."
)


def as_float(x: Any, what: str = "input") -> Any:
    """Promotes Python numbers to float arrays and rejects integer arrays, leaf by leaf."""

    def leaf(v: Any) -> Any:
        if isinstance(v, bool | int):
            return jnp.asarray(float(v))
        if isinstance(v, float | complex):
            return jnp.asarray(v)
        dtype = getattr(v, "dtype", None)
        if dtype is None:
            v = np.asarray(v)
            dtype = v.dtype
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
            raise TypeError(INTEGER_INPUT.format(what=what, dtype=dtype))
        return jnp.asarray(v) if isinstance(v, np.ndarray) else v

    return jax.tree_util.tree_map(leaf, x)


def as_float_args(args: Sequence[Any], argnums: int | Sequence[int]) -> tuple[Any, ...]:
    """Applies :func:`as_float` to the differentiated positional arguments only."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    return tuple(as_float(a, f"argument {i}") if i in nums else a for i, a in enumerate(args))


def check_argnums(argnums: int | Sequence[int], nargs: int, name: str) -> None:
    """Raises a clear error when an argnum does not index the positional arguments."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise ValueError(f"{name}: argnums is empty; name at least one argument to differentiate.")
    for i in nums:
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError(f"{name}: argnums must be ints, got {i!r}.")
        if not -nargs <= i < nargs:
            raise ValueError(
                f"{name}: argnums={argnums!r} is out of range for a call with {nargs} positional "
                f"argument{'s' if nargs != 1 else ''} (valid: 0 to {nargs - 1})."
            )


def check_scalar_output(y: Any, name: str, alternative: str = "mlgrad.jacobian") -> None:
    """Raises when a function meant to be scalar-valued returned something else."""
    shape = getattr(y, "shape", None)
    if shape is None or shape != ():
        got = f"shape {shape}" if shape is not None else f"a {type(y).__name__}"
        raise TypeError(
            f"{name} is only defined for scalar-output functions, but the function returned "
            f"{got}. For a vector- or matrix-valued function use {alternative} instead."
        )


def flat_size(tree: Any) -> int:
    """The total number of scalar entries in a pytree of arrays."""
    return sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree_util.tree_leaves(tree))
