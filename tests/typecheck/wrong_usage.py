"""Deliberately wrong uses of mlgrad's public API: .ci/typecheck.py requires mypy to report
exactly the errors marked ``# E: <code>`` here, no more and no fewer. Each needs the name's
real signature (reached through mlgrad/__init__.py's TYPE_CHECKING imports of the lazily
loaded names), so a checker that saw the names as Any, or one that was not run, fails.

Not a test module (pytest collects test_*.py only); never imported.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

import mlgrad
import mlgrad.numerical


def f(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.sum(x**2)


mlgrad.gradient(f, argnums="x")  # E: arg-type
mlgrad.gradient(f, layout="rows")  # E: arg-type
mlgrad.derivative(f, order=1.5)  # E: arg-type
mlgrad.hessian(f, flaten=True)  # E: call-arg
mlgrad.numerical.check_grad(f, jnp.ones(3), order="3")  # E: arg-type
sgd = optax.sgd(0.1)
result = mlgrad.fit(lambda p, b: f(p), jnp.ones(3), (), optimizer=sgd, steps="10")  # E: arg-type
print(result.paramz)  # E: attr-defined
mlgrad.find_model(3)  # E: arg-type
mlgrad.gradeint(f)  # E: attr-defined
