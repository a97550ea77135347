"""Finite differences: the lecture notes' difference quotient, made accurate and honest.

The derivative is the limit of the difference quotient,

.. math:: f'(x) = \\lim_{h \\to 0} \\frac{f(x + h) - f(x)}{h},

and this package evaluates that limit numerically. :func:`difference_quotient` is the notes'
secant slope for one step ``h``. :func:`derivative`, :func:`gradient`, :func:`jacobian` and
:func:`hessian` are called exactly like their autodiff namesakes in :mod:`mlgrad` (and in
JAX), so ``mlgrad.numerical.gradient(f)(x)`` is a drop-in check of ``mlgrad.gradient(f)(x)``.
:func:`check_grad` compares autodiff with finite differences along random directions and
raises :class:`GradientCheckError` when they disagree.

How the limit is taken. A central difference with step ``h`` has the error expansion

.. math:: D(h) = f^{(n)}(x) + a_1 h^2 + a_2 h^4 + a_3 h^6 + \\dots,

so evaluating it at a sequence of steps and eliminating the error terms one by one
(Richardson extrapolation, arranged as a Neville tableau) cancels the truncation error while
the steps stay large enough for rounding not to matter. The steps are powers of two (so
``x + h`` is exact and the stencils of consecutive steps share points). For first derivatives
in float64 they halve eight times from max(1, |x|), then shrink by 4 to 16 down to
2^-28 max(1, |x|) (about 4e-9 max(1, |x|)), so that some step matches the scale of f's own
features (a period, the distance to a kink) and not only x's; higher derivatives and lower
precision halve fifteen times. Every tableau entry gets an error estimate built so that it
cannot be zero by accident: twice the larger of its differences from its two nearest
descendants (the next step; one more error term eliminated) and of its disagreement with any
entry built from smaller steps beyond that entry's own uncertainty (smaller steps resolve what
larger ones jump over), plus the rounding error of the samples it combines, modelled as
eps (|f| + |x| |f'|) per sample. The entry with the smallest estimate is returned, chosen with
``jnp.argmin`` so the whole computation stays jit- and vmap-compatible. Where every feature of
f is at least ten times the smallest step, the estimate bounds the actual error (see the
adversarial table of ``benchmarks/calculus.py``). A first derivative costs 30 function
evaluations (see :func:`num_evaluations`) and reaches about 1e-15 relative error in float64
on smooth functions.

Two alternatives to the extrapolated central difference. ``accuracy=p`` with
``richardson=False`` picks one stencil whose truncation error falls as h^p (central p = 2, 4,
6, 8; one-sided p = 1 to 8), at p (or n + p) evaluations per point. ``method="complex"``, the
complex step f'(x) = Im f(x + ih) / h for real-analytic f, has no difference of nearby values
and hence no cancellation: first derivatives to rounding (about 1e-16 relative in float64) in
one evaluation per point or input entry.

Keyword arguments of f are passed through every operator (and :func:`check_grad`) as they
are and never differentiated, as under ``jax.grad``.

Each call traces f afresh, as ``jax.grad`` does, and compiles the whole finite-difference
computation as one program (much faster than dispatching its small operations one by one);
wrap an operator in ``jax.jit`` to reuse that program across calls, or ``jax.vmap`` it over a
batch of points.

The package, by job: ``_schemes`` (stencils, step sequences, the Richardson tableau as exact
linear functionals, in NumPy), ``_apply`` (applying them to samples in JAX: the estimate and
the choice), ``_arguments`` (argument selection and the flat real vector), ``_operators`` (the
operators) and ``_gradcheck`` (:func:`check_grad`).

Reference: L. F. Richardson, "The deferred approach to the limit" (1927); C. J. F. Ridders,
"Accurate computation of F'(x) and F'(x)F''(x)" (1982); the numdifftools documentation.
"""

from __future__ import annotations

from mlgrad.numerical._gradcheck import GradientCheckError, check_grad
from mlgrad.numerical._operators import (
    derivative,
    difference_quotient,
    gradient,
    hessian,
    jacobian,
)
from mlgrad.numerical._schemes import MAX_EVALUATIONS, STEP_RATIO, num_evaluations

__all__ = [
    "MAX_EVALUATIONS",
    "STEP_RATIO",
    "GradientCheckError",
    "check_grad",
    "derivative",
    "difference_quotient",
    "gradient",
    "hessian",
    "jacobian",
    "num_evaluations",
]

# Public names report this package as their home (error messages, reprs, doctests).
GradientCheckError.__module__ = __name__
for _f in (check_grad, derivative, difference_quotient, gradient, hessian, jacobian):
    _f.__module__ = __name__
num_evaluations.__module__ = __name__
del _f
