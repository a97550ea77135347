"""check_grad without false alarms: correct gradients pass at any magnitude of x, wrong ones fail.

float64: smooth functions at |x| from 1e-6 to 1e6 and the piecewise functions of autograd's and
JAX's test suites away from their kinks pass; a gradient off by 1e-3 (relative) in one entry
fails and the message names that entry. float32: the same, with the measured ranges of |x| that
check_grad's docstring states (1e-6 to 100 for features at unit scale, 1e-2 to 1e6 for features
at |x|'s scale). The full sweeps are marked slow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlgrad.numerical import GradientCheckError, check_grad

MAGNITUDES = [1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6]


def smooth(x):
    """A sum of the usual smooth pieces; fine at any magnitude of x."""
    return (
        jnp.sum(jnp.sin(x))
        + jnp.sum(jnp.cos(x) * x)
        + jnp.sum(jnp.log1p(x**2))
        + jnp.sum(x * jnp.tanh(x))
        + jnp.sum(jnp.sqrt(x**2 + 1.0))
        + x[0] * x[1]
    )


PIECEWISE = {
    "abs": lambda x: jnp.sum(jnp.abs(x)),
    "maximum/minimum": lambda x: jnp.maximum(x[0], x[1]) + jnp.minimum(x[1], x[2]),
    "clip": lambda x: jnp.sum(jnp.clip(x, -0.5, 0.5) * x),
    "where": lambda x: jnp.sum(jnp.where(x > 0, x**2, 2 * x)),
    "mod": lambda x: jnp.sum(jnp.mod(x, 1.0) * x),
    "remainder": lambda x: jnp.sum(jnp.remainder(x, 0.7)),
    "floor": lambda x: jnp.sum(jnp.floor(x) * x),
    "relu": lambda x: jnp.sum(jax.nn.relu(x) ** 2),
    "sign": lambda x: jnp.sum(jnp.sign(x) * x**2),
    "round": lambda x: jnp.sum(jnp.round(x) + x),
    "sort": lambda x: jnp.sort(x) * jnp.arange(1.0, x.size + 1),
    "max/min": lambda x: jnp.max(x) * 2 + jnp.min(x),
}


def all_piecewise(x):
    return jnp.stack([jnp.sum(f(x)) for f in PIECEWISE.values()])


def away_from_kinks(rng, n, magnitude):
    """Distinct points clear of every kink above (multiples of 0.5 and 0.7, and 0): at least
    1e-3 away, or 1e-3 * magnitude for magnitudes below 1 (but 1e-6 at least)."""
    while True:
        x = rng.uniform(-3, 3, n) * magnitude
        to_kink = np.min(
            np.abs(np.stack([x - 0.5 * np.round(2 * x), x - 0.7 * np.round(x / 0.7), x])), axis=0
        )
        gaps = np.where(np.eye(n, dtype=bool), np.inf, np.abs(x[:, None] - x[None, :]))
        clear = 1e-3 * min(1.0, max(magnitude, 1e-3))
        if to_kink.min() > clear and gaps.min() > 1e-3 * magnitude:
            return x


def off_in_one_entry(f, entry, relative):
    """f with a JVP off by `relative` times the true derivative in one input entry."""

    @jax.custom_jvp
    def g(x):
        return f(x)

    @g.defjvp
    def g_jvp(primals, tangents):
        (x,), (v,) = primals, tangents
        y, dy = jax.jvp(f, (x,), (v,))
        return y, dy + relative * jax.grad(f)(x)[entry] * v[entry]

    return g


def test_smooth_and_piecewise_functions_pass():
    # smooth at every magnitude at once, and the peers' piecewise functions away from their
    # kinks: 7 + 9 inputs, checked along random directions and every coordinate
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = jnp.asarray(np.array(MAGNITUDES) * rng.choice([-1, 1], len(MAGNITUDES)))
        y = np.concatenate([away_from_kinks(rng, 3, m) for m in (1e-2, 1.0, 1e2)])
        check_grad(lambda a, b: smooth(a) + jnp.sum(all_piecewise(b)), x, jnp.asarray(y))


@pytest.mark.parametrize(
    "magnitude",
    [1e-6, pytest.param(1.0, marks=pytest.mark.slow), pytest.param(1e6, marks=pytest.mark.slow)],
)
def test_a_wrong_entry_fails_and_is_named(magnitude):
    # at 1e-6 the gradient is ~1e-6 everywhere: the tolerance follows f's scale, so an error of
    # 1e-3 relative (1e-9 absolute) is still seen
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(2).standard_normal(4) * magnitude)
        wrong = off_in_one_entry(smooth, 2, 1e-3)
        with pytest.raises(GradientCheckError, match=r"worst entry: d output / d argument 0\[2\]"):
            check_grad(wrong, x)


def unit_scale(v):
    """f with features at unit scale: sin and x cos x."""
    return jnp.sum(jnp.sin(v)) + jnp.sum(jnp.cos(v) * v)


def x_scale(scale):
    """f whose features scale with |x| (about `scale`): exp(-(x/s)^2), tanh(x/s), log(x^2)."""

    def f(v):
        z = v / scale
        return jnp.sum(jnp.exp(-(z**2))) + jnp.sum(jnp.tanh(z)) + jnp.sum(jnp.log(v**2))

    return f


@pytest.mark.parametrize(
    ("kind", "magnitude"),
    [
        ("unit", 100.0),
        pytest.param("unit", 1e-6, marks=pytest.mark.slow),
        pytest.param("x", 1e-2, marks=pytest.mark.slow),
        pytest.param("x", 1e6, marks=pytest.mark.slow),
    ],
)
def test_float32_holds_at_the_ends_of_the_stated_range(kind, magnitude):
    # correct gradients pass; 1e-3 (relative) in the largest entry fails, naming it
    x = jnp.asarray(np.random.default_rng(3).standard_normal(3) * magnitude, jnp.float32)
    f = unit_scale if kind == "unit" else x_scale(magnitude)
    check_grad(f, x)
    entry = int(np.argmax(np.abs(np.asarray(jax.grad(f)(x)))))
    with pytest.raises(
        GradientCheckError, match=rf"worst entry: d output / d argument 0\[{entry}\]"
    ):
        check_grad(off_in_one_entry(f, entry, 1e-3), x)
    doc = " ".join(check_grad.__doc__.split())
    assert "fails naming the entry, for |x| from 1e-6 to 100 where f's features are at unit" in doc
    assert "and from 1e-2 to 1e6 where they scale with |x|" in doc


# --------------------------------------------------------------------------------------------
# The full sweeps (slow): every magnitude, every function, both ways
# --------------------------------------------------------------------------------------------

SMOOTH_PARTS = {
    "sin": lambda x: jnp.sum(jnp.sin(x)),
    "x cos x": lambda x: jnp.sum(jnp.cos(x) * x),
    "x^2": lambda x: jnp.sum(x**2),
    "log1p(x^2)": lambda x: jnp.sum(jnp.log1p(x**2)),
    "x tanh x": lambda x: jnp.sum(x * jnp.tanh(x)),
    "sqrt(x^2+1)": lambda x: jnp.sum(jnp.sqrt(x**2 + 1)),
    "softplus": lambda x: jnp.sum(jax.nn.softplus(x)),
    "vector": lambda x: jnp.stack([jnp.sin(x[0]) * x[1], x[2] ** 3, jnp.arctan(x[0] - x[2])]),
}


@pytest.mark.slow
@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_sweep_float64(magnitude):
    rng = np.random.default_rng(4)
    alarms, missed = [], []
    with jax.enable_x64(True):
        for name, f in SMOOTH_PARTS.items():
            for n in (3, 30):
                if name == "vector" and n > 3:
                    continue
                x = jnp.asarray(rng.standard_normal(n) * magnitude)
                try:
                    check_grad(f, x)
                except GradientCheckError:
                    alarms.append((name, n))
                if name == "vector" or n > 20:
                    continue
                entry = int(rng.integers(n))
                grad = np.abs(np.asarray(jax.grad(f)(x)))
                if grad[entry] < 1e-2 * grad.max():  # the claim is for entries of its size
                    entry = int(np.argmax(grad))
                try:
                    check_grad(off_in_one_entry(f, entry, 1e-3), x)
                    missed.append((name, n))
                except GradientCheckError as error:
                    if f"argument 0[{entry}]" not in str(error):
                        missed.append((name, n, "entry"))
        if magnitude <= 1e4:
            for name, f in PIECEWISE.items():
                x = jnp.asarray(away_from_kinks(rng, 5, magnitude))
                try:
                    check_grad(f, x)
                except GradientCheckError:
                    alarms.append((name, 5))
    assert alarms == [] and missed == []


X_SCALE_PARTS = {
    "exp(-(x/s)^2)": lambda s: lambda x: jnp.sum(jnp.exp(-((x / s) ** 2))),
    "tanh(x/s)": lambda s: lambda x: jnp.sum(jnp.tanh(x / s)),
    "exp(x/s)": lambda s: lambda x: jnp.sum(jnp.exp(x / s)),
    "log(x^2)": lambda s: lambda x: jnp.sum(jnp.log(x**2)),
    "x^3": lambda s: lambda x: jnp.sum(x**3) + x[0] * x[1] * x[2],
}


@pytest.mark.slow
@pytest.mark.parametrize("magnitude", [1e-6, 1e-4, 1e-2, 1.0, 1e2, 3e2, 1e4, 1e6])
def test_sweep_float32(magnitude):
    # the statement in check_grad's docstring: unit-scale features from 1e-6 to 100, features
    # at |x|'s scale from 1e-2 to 1e6 (log1p(x^2), x tanh x: everywhere)
    rng = np.random.default_rng(5)
    parts = {}
    if magnitude <= 100:
        parts.update(sin=SMOOTH_PARTS["sin"], xcosx=SMOOTH_PARTS["x cos x"])
    parts.update({k: SMOOTH_PARTS[k] for k in ("log1p(x^2)", "x tanh x")})
    if magnitude >= 1e-2:
        parts.update({k: make(magnitude) for k, make in X_SCALE_PARTS.items()})
    alarms, missed = [], []
    for name, f in parts.items():
        x = jnp.asarray(rng.standard_normal(3) * magnitude, jnp.float32)
        try:
            check_grad(f, x)
        except GradientCheckError:
            alarms.append(name)
        entry = int(np.argmax(np.abs(np.asarray(jax.grad(f)(x)))))
        try:
            check_grad(off_in_one_entry(f, entry, 1e-3), x)
            missed.append(name)
        except GradientCheckError as error:
            if f"argument 0[{entry}]" not in str(error):
                missed.append((name, "entry"))
    assert alarms == [] and missed == []
