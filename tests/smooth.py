"""Random smooth test functions, each with a JAX form and an independent NumPy twin."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

# name: (JAX activation, NumPy twin)
ACTIVATIONS = {
    "sin": (jnp.sin, np.sin),
    "tanh": (jnp.tanh, np.tanh),
    "softplus": (jax.nn.softplus, lambda z: np.logaddexp(0.0, z)),
    "gauss": (lambda z: jnp.exp(-(z**2)), lambda z: np.exp(-(z**2))),
    "cubic": (lambda z: z**3 / 3 - z, lambda z: z**3 / 3 - z),
    "log1p_sq": (lambda z: jnp.log1p(z**2), lambda z: np.log1p(z**2)),
}


class Problem(NamedTuple):
    """F(x) = act(W x + b) in R^m and f(x) = c . F(x) + 0.1 ||x||^2 in R, at a point x."""

    vector_jax: object
    vector_np: object
    scalar_jax: object
    scalar_np: object
    x: np.ndarray
    v: np.ndarray
    dtype: object


def make_problem(n: int, m: int, act: str, seed: int, dtype) -> Problem:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(m, n)) * 0.7
    b = rng.normal(size=m) * 0.5
    c = rng.normal(size=m)
    x = rng.normal(size=n)
    v = rng.normal(size=n)
    act_jax, act_np = ACTIVATIONS[act]

    def vector_jax(x):
        return act_jax(jnp.asarray(w, x.dtype) @ x + jnp.asarray(b, x.dtype))

    def scalar_jax(x):
        return jnp.asarray(c, x.dtype) @ vector_jax(x) + 0.1 * jnp.sum(x**2)

    def vector_np(x):
        return act_np(w @ x + b)

    def scalar_np(x):
        return c @ vector_np(x) + 0.1 * np.sum(x**2)

    return Problem(vector_jax, vector_np, scalar_jax, scalar_np, x, v, dtype)


problems = st.builds(
    make_problem,
    n=st.integers(1, 4),
    m=st.integers(1, 4),
    act=st.sampled_from(sorted(ACTIVATIONS)),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)


def tolerances(dtype) -> dict:
    """Autodiff in ``dtype`` against float64 central differences (error ~1e-9)."""
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float64 else {"rtol": 2e-3, "atol": 2e-4}
