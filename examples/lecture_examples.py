"""Every worked example of the five lecture notes on vector calculus, computed with mlgrad.

Run it::

    python examples/lecture_examples.py                      # all sections, a few seconds
    python examples/lecture_examples.py --section taylor     # one section (repeatable)
    python examples/lecture_examples.py --list               # the section names

Each example is evaluated at a concrete point (printed), and mlgrad's answer is printed beside
the answer the notes give, marked ✓ when they agree. Every reference value was derived by hand
(a closed form written out below in NumPy), never taken from mlgrad. Where the notes' printed
answer is wrong, the example says so: "ERRATUM in the notes: printed X, correct value Y (reason)".
A ✗ would mean that mlgrad disagrees with the hand-derived value (a bug): the script then exits
with status 1.

Derivatives are evaluated under ``jax.jit``, as in research code: the wrappers are ordinary JAX
functions, and one compiled program per example is much faster than JAX's op-by-op dispatch.

The notes, numbered as in the project's seed files:

* 000  Thang Vu, *Math for Machine Learning* (University of Stuttgart)
* 001  Kia Nazarpour, *Machine Learning Calculus: a crash course*
* 002  BITS Pilani Math Foundations Team, *Lecture 6*
* 003  Yilin Wu, *IBF Applied Mathematics for Machine Learning, Part II: Vector Calculus*
* 004  Joseph Chuang-Chieh Lin, *Mathematics for Machine Learning: Vector Calculus* (NTOU)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import mlgrad

OK = "✓"
BAD = "✗"
ERRATUM = "ERRATUM in the notes"
_MISSING = object()


# --------------------------------------------------------------------------------------------
# Printing and checking
# --------------------------------------------------------------------------------------------


def compiled(fn: Callable[[], Any]) -> Any:
    """Evaluates ``fn()`` as one compiled XLA program (``jax.jit``) rather than op by op."""
    return jax.jit(fn)()


#: Arrays with more entries than this are summarised rather than printed in full.
MAX_SHOWN = 32


def _fmt(x: Any, digits: int = 6, *, oneline: bool = False) -> str:
    """A value as a student reads it: shapes as 2 x 3, numbers to `digits` significant digits."""
    if isinstance(x, tuple) and all(isinstance(i, int) for i in x):
        return " x ".join(str(i) for i in x) if x else "a scalar"
    if isinstance(x, tuple) and all(isinstance(i, str) for i in x):
        return "; ".join(x)
    a = np.asarray(x, dtype=np.float64)
    # Hide float32 round-off such as 1.9e-06 in place of 0 (display only; checks use raw values).
    if digits <= 6 and a.size:
        a = np.where(np.abs(a) < 1e-6 * max(1.0, float(np.abs(a).max())), 0.0, a)
    a = a + 0.0  # no "-0"
    if a.ndim == 0:
        return f"{a.item():.{digits}g}"
    text = np.array2string(
        a, separator=", ", formatter={"float_kind": lambda v: f"{v:.{digits}g}"}, max_line_width=88
    )
    text = "\n".join(line for line in text.splitlines() if line.strip())
    return " ".join(text.split()) if oneline else text


def _close(a: Any, b: Any, rtol: float, atol: float | None) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return tuple(a) == tuple(b)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    if atol is None:
        atol = rtol * max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    return bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _formula_equals(formula: str, value: str) -> list[str]:
    """Lines showing `formula = value`, the value on its own lines when it is a matrix."""
    if not formula or formula == value:
        return value.splitlines()
    lines = value.splitlines()
    if len(lines) == 1:
        return [f"{formula} = {value}"]
    return [formula, "= " + lines[0], *("  " + line for line in lines[1:])]


class Lecture:
    """Prints the examples and keeps the score: answers that agree, errata, mismatches."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.checks = 0
        self.errata: list[str] = []
        self.mismatches: list[str] = []

    def print(self, text: str = "") -> None:
        print(text, file=self.stream)

    def section(self, title: str, seeds: str) -> None:
        self.print()
        self.print("=" * 96)
        self.print(f"{title}   [{seeds}]")
        self.print("=" * 96)

    def example(self, seeds: str, text: str) -> None:
        self.print()
        self.print(f"[{seeds}] {text}")

    def note(self, text: str) -> None:
        self.print(f"    note: {text}")

    def _column(self, label: str, lines: list[str], mark: str = "") -> None:
        head = f"    {label:<7} : "
        lines = list(lines) or [""]
        if mark:
            lines[-1] += f"   {mark}"
        self.print(head + lines[0])
        for line in lines[1:]:
            self.print(" " * len(head) + line)

    def check(
        self,
        label: str,
        got: Any,
        expected: Any,
        *,
        printed: Any = _MISSING,
        printed_text: str = "",
        by_hand: str = "",
        reason: str | None = None,
        rtol: float = 1e-5,
        atol: float | None = None,
        digits: int = 6,
    ) -> None:
        """Shows mlgrad's answer beside the notes' answer, checked against the correct value.

        Args:
          label: what is computed, e.g. "∂f/∂x".
          got: mlgrad's answer.
          expected: the mathematically correct value, derived by hand (a NumPy closed form).
          printed: the notes' printed answer evaluated at the same point (omit it when the
            notes print no answer); `printed_text` is that answer as printed.
          by_hand: the hand-derived formula, shown when the notes print no answer or a wrong one.
          reason: why the notes' printed answer is wrong ("seed NNN: ..."), when it is.
          rtol, atol: the tolerance of the comparisons (float32 by default).
        """
        self.print(f"  {label}")
        big = np.size(expected) > MAX_SHOWN and not isinstance(expected, tuple)
        if big:
            shape = tuple(np.shape(expected))
            diff = float(np.max(np.abs(np.asarray(got, np.float64) - expected)))
            self._column("mlgrad", [f"a {_fmt(shape)} tensor"])
            shown = f"the same {_fmt(shape)} tensor (max |difference| = {diff:.2g})"
        else:
            self._column("mlgrad", _fmt(got, digits).splitlines())
            shown = _fmt(expected, digits)
        if not _close(got, expected, rtol, atol):
            self._column("correct", _formula_equals(by_hand, _fmt(expected, digits)), BAD)
            self.mismatches.append(label)
            self.print(f"    {BAD} MISMATCH: mlgrad disagrees with the hand-derived value")
            return
        if printed is _MISSING:
            self._column("notes", ["(no answer printed)", *_formula_equals(by_hand, shown)], OK)
            self.checks += 1
            return
        if _close(printed, expected, max(rtol, 1e-9), atol):
            shown = shown if big else _fmt(printed, digits)
            self._column("notes", _formula_equals(printed_text, shown), OK)
            self.checks += 1
            return
        notes = _formula_equals(printed_text, _fmt(printed, digits, oneline=True))[0]
        self._column("notes", [notes], BAD if reason is None else "")
        if reason is None:  # the notes disagree with the hand-derived value: undocumented
            self.mismatches.append(label)
            self.print(
                f"    {BAD} MISMATCH: the notes' answer is wrong, and no erratum is documented"
            )
            return
        correct = _formula_equals(by_hand, _fmt(expected, digits, oneline=True))[0]
        self.erratum(notes, correct, reason)

    def claim(self, label: str, holds: bool, text: str) -> None:
        """Checks a statement of the notes that is not a value (an inequality, a rounding)."""
        self.print(f"  {label}")
        self._column("notes", [text], OK if holds else BAD)
        if holds:
            self.checks += 1
        else:
            self.mismatches.append(label)
            self.print(f"    {BAD} MISMATCH: the statement does not hold")

    def erratum(self, printed: str, correct: str, reason: str) -> None:
        """Records and prints an erratum in the notes: a wrong answer, formula or notation.

        `reason` starts with the seed it is in, "seed NNN: why".
        """
        seed = reason.partition(":")[0]
        self.errata.append(f"{seed}: printed {printed}, correct {correct}")
        self.print(f"    {ERRATUM}: printed {printed}, correct value {correct} ({reason})")


# --------------------------------------------------------------------------------------------
# Difference quotient and derivative
# --------------------------------------------------------------------------------------------


def difference_quotient_and_derivative(out: Lecture) -> None:
    """The secant slope (f(x0 + h) - f(x0)) / h, its limit, and the power rule."""
    out.section("Difference quotient and derivative", "seeds 000, 002, 003, 004")

    def square(x: Any) -> Any:
        return x**2

    x0 = 2.0
    out.example(
        "000, 003, 004",
        f"Difference quotient δy/δx = (f(x0 + h) - f(x0)) / h of f(x) = x^2 at x0 = {x0:g}, "
        "for shrinking h (float64)",
    )
    out.note("seed 000 derives ((x + h)^2 - x^2) / h = (2xh + h^2) / h = 2x + h -> 2x")
    steps = np.array([1.0, 0.1, 0.01, 0.001, 1e-6])
    with jax.enable_x64(True):
        quotients = compiled(lambda: mlgrad.difference_quotient(square, x0, steps))
        central = compiled(lambda: mlgrad.difference_quotient(square, x0, 0.1, scheme="central"))
    for h, dq in zip(steps, quotients, strict=True):
        out.check(
            f"h = {h:g}",
            dq,
            2 * x0 + h,
            printed=2 * x0 + h,
            printed_text="2x + h",
            rtol=1e-8,
            digits=12,
        )
    out.note("as h shrinks, rounding error (about eps |f(x0)| / h) replaces the O(h) error")
    out.check(
        "central quotient (f(x0 + h) - f(x0 - h)) / 2h, h = 0.1",
        central,
        2 * x0,
        by_hand="((x + h)^2 - (x - h)^2) / 2h = 4xh / 2h = 2x",
        rtol=1e-12,
        digits=12,
    )

    out.example("000, 003", f"Derivative of f(x) = x^2 (the limit h -> 0); seed 003: at x = {x0:g}")
    out.check(
        "df/dx", jax.jit(mlgrad.derivative(square))(x0), 2 * x0, printed=2 * x0, printed_text="2x"
    )
    out.check(
        "finite differences (mlgrad.numerical.derivative)",
        jax.jit(mlgrad.numerical.derivative(square))(x0),
        2 * x0,
        by_hand="2x",
        rtol=1e-3,
    )

    x = 1.5
    out.example("002, 004", f"Derivative of a polynomial: d/dx x^n = n x^(n-1), at x = {x:g}")
    slopes = compiled(lambda: [mlgrad.derivative(lambda t, n=n: t**n)(x) for n in range(1, 6)])
    for n in range(1, 6):
        out.check(
            f"n = {n}",
            slopes[n - 1],
            n * x ** (n - 1),
            printed=n * x ** (n - 1),
            printed_text="n x^(n-1)",
        )


# --------------------------------------------------------------------------------------------
# Differentiation rules
# --------------------------------------------------------------------------------------------


def differentiation_rules(out: Lecture) -> None:
    """Sum, product, quotient and chain rules, and the tables of common derivatives."""
    out.section("Differentiation rules", "seeds 000, 002, 003, 004")
    x = 3.0
    out.example("000", f"Sum rule: d/dx 2x = d/dx (x + x), at x = {x:g}")
    out.check(
        "d/dx 2x",
        jax.jit(mlgrad.derivative(lambda t: t + t))(x),
        2.0,
        printed=2.0,
        printed_text="1 + 1",
    )

    out.example("000", f"Product rule: d/dx x^2 = d/dx (x · x), at x = {x:g}")
    out.check(
        "d/dx x·x",
        jax.jit(mlgrad.derivative(lambda t: t * t))(x),
        2 * x,
        printed=2 * x,
        printed_text="2x",
    )

    points = jnp.array([-2.0, 0.5, 3.0])
    out.example("000", f"Quotient rule: d/dx x^2 / (2x), at x = {_fmt(points)} (vectorised)")
    out.check(
        "d/dx x^2/(2x)",
        jax.jit(mlgrad.derivative(lambda t: t**2 / (2 * t)))(points),
        np.full(3, 0.5),
        printed=np.full(3, 0.5),
        printed_text="1/2",
    )

    x = 1.5
    out.example("000", f"Chain rule: d/dx (2 + x^2)^2, at x = {x:g}")
    out.check(
        "d/dx (2 + x^2)^2",
        jax.jit(mlgrad.derivative(lambda t: (2 + t**2) ** 2))(x),
        2 * (2 + x**2) * 2 * x,
        by_hand="2(2 + x^2)·2x",
        printed=8 * x + 4 * x**3,
        printed_text="8x + 4x^3",
    )

    x = 0.5
    out.example(
        "002, 003, 004",
        f"Chain rule: h(x) = (2x + 1)^4 = g(f(x)), f(x) = 2x + 1, g(f) = f^4, at x = {x:g}",
    )
    stages = jax.jit(mlgrad.chain_rule(lambda f: f**4, lambda t: 2 * t + 1))(x)
    out.check(
        "g'(f)",
        stages.jacobians[0],
        [[4 * (2 * x + 1) ** 3]],
        printed=[[4 * (2 * x + 1) ** 3]],
        printed_text="4f^3",
    )
    out.check("f'(x)", stages.jacobians[1], [[2.0]], printed=[[2.0]], printed_text="2")
    out.check(
        "h'(x) = g'(f) f'(x)",
        jax.jit(mlgrad.derivative(lambda t: (2 * t + 1) ** 4))(x),
        8 * (2 * x + 1) ** 3,
        printed=8 * (2 * x + 1) ** 3,
        printed_text="8(2x + 1)^3",
    )

    x, n, a = 0.7, 3, 3.0
    out.example(
        "000, 003",
        f"Tables of common derivatives, at x = {x:g} (n = {n}, a = {a:g}; ln|x| at -x)",
    )
    table: list[tuple[str, Callable[[Any], Any], float, float, str]] = [
        ("d/dx c (c = 5)", lambda t: 5.0 + 0 * t, x, 0.0, "0"),
        ("d/dx 3 sin x", lambda t: 3 * jnp.sin(t), x, 3 * math.cos(x), "3 cos x"),
        ("d/dx x^n", lambda t: t**n, x, n * x ** (n - 1), "n x^(n-1)"),
        ("d/dx x^(-n)", lambda t: t ** (-n), x, -n / x ** (n + 1), "-n / x^(n+1)"),
        ("d/dx e^x", jnp.exp, x, math.exp(x), "e^x"),
        ("d/dx a^x", lambda t: a**t, x, a**x * math.log(a), "a^x ln a"),
        ("d/dx ln x", jnp.log, x, 1 / x, "1/x"),
        ("d/dx ln|x|", lambda t: jnp.log(jnp.abs(t)), -x, 1 / -x, "1/x"),
        ("d/dx sin x", jnp.sin, x, math.cos(x), "cos x"),
        ("d/dx cos x", jnp.cos, x, -math.sin(x), "-sin x"),
        ("d/dx tan x", jnp.tan, x, 1 / math.cos(x) ** 2, "1/cos^2 x = sec^2 x"),
        ("d/dx cot x", lambda t: 1 / jnp.tan(t), x, -1 / math.sin(x) ** 2, "-csc^2 x"),
        ("d/dx sec x", lambda t: 1 / jnp.cos(t), x, math.tan(x) / math.cos(x), "sec x tan x"),
        (
            "d/dx csc x",
            lambda t: 1 / jnp.sin(t),
            x,
            -1 / (math.sin(x) * math.tan(x)),
            "-csc x cot x",
        ),
        ("d/dx arcsin x", jnp.arcsin, x, 1 / math.sqrt(1 - x**2), "1/sqrt(1 - x^2)"),
        ("d/dx arctan x", jnp.arctan, x, 1 / (1 + x**2), "1/(1 + x^2)"),
    ]
    slopes = compiled(lambda: [mlgrad.derivative(f)(at) for _, f, at, _, _ in table])
    for (label, _, _, value, text), slope in zip(table, slopes, strict=True):
        out.check(label, slope, value, printed=value, printed_text=text)


# --------------------------------------------------------------------------------------------
# Partial derivatives
# --------------------------------------------------------------------------------------------


def sigmoid_unit(w: Any, b: Any, x: Any) -> Any:
    """f(w, b) = 1 / (1 + exp(-(w^T x + b))), the notes' sigmoid unit."""
    return 1 / (1 + jnp.exp(-(w @ x + b)))


SIGMOID_W = np.array([0.5, -1.0, 2.0])
SIGMOID_X = np.array([1.0, 2.0, 0.5])
SIGMOID_B = 0.3


def partial_derivatives(out: Lecture) -> None:
    """Partial derivatives: one variable at a time, the others held fixed."""
    out.section("Partial derivatives", "seeds 000, 001, 002, 003, 004")
    x, g = 1.5, -2.0
    out.example("000", f"f(x, g) = 2x + 3g, at (x, g) = ({x:g}, {g:g})")

    def f_xg(x: Any, g: Any) -> Any:
        return 2 * x + 3 * g

    out.check(
        "∂f/∂x",
        jax.jit(mlgrad.partial_derivative(f_xg, 0))(x, g),
        2.0,
        printed=2.0,
        printed_text="2",
    )
    out.check(
        "∂f/∂g",
        jax.jit(mlgrad.partial_derivative(f_xg, 1))(x, g),
        3.0,
        printed=3.0,
        printed_text="3",
    )

    p = jnp.array([1.5, -2.0])
    out.example(
        "001",
        f"f(x, y) = x^2 - y^2 at (x, y) = ({p[0]:g}, {p[1]:g}): a partial derivative is the "
        "directional derivative along a coordinate axis",
    )

    def saddle(v: Any) -> Any:
        return v[0] ** 2 - v[1] ** 2

    out.check(
        "∂f/∂x",
        jax.jit(mlgrad.partial_derivative(saddle, index=0))(p),
        3.0,
        printed=3.0,
        printed_text="2x",
    )
    out.check(
        "∂f/∂y",
        jax.jit(mlgrad.partial_derivative(saddle, index=1))(p),
        4.0,
        printed=4.0,
        printed_text="-2y",
    )
    out.check(
        "D_(1,0) f (= (D_t g)(0), g(t) = f(x + t, y))",
        mlgrad.directional_derivative(saddle, p, jnp.array([1.0, 0.0])),
        3.0,
        printed=3.0,
        printed_text="2x",
    )
    out.erratum(
        "'the partial derivatives along the axes are ∂f/∂x = ∂f/∂y = ∂f/∂z'",
        "'... are ∂f/∂x, ∂f/∂y and ∂f/∂z', a list, not equalities",
        "seed 001: the three partials differ in general, e.g. 7, 14, -21 in the next example",
    )

    q = np.array([1.0, 2.0, 0.5])
    s = q[0] + 2 * q[1] - 3 * q[2]
    out.example(
        "001", f"f(x, y, z) = (x + 2y - 3z)^2, at (x, y, z) = ({q[0]:g}, {q[1]:g}, {q[2]:g})"
    )

    def f_xyz(v: Any) -> Any:
        return (v[0] + 2 * v[1] - 3 * v[2]) ** 2

    qj = jnp.asarray(q, jnp.float32)
    out.check(
        "∂f/∂x",
        jax.jit(mlgrad.partial_derivative(f_xyz, index=0))(qj),
        2 * s,
        printed=2 * s,
        printed_text="2(x + 2y - 3z)",
    )
    out.check(
        "∂f/∂y",
        jax.jit(mlgrad.partial_derivative(f_xyz, index=1))(qj),
        2 * s * 2,
        printed=2 * s * 2,
        printed_text="2(x + 2y - 3z)·2",
    )
    out.check(
        "∂f/∂z",
        jax.jit(mlgrad.partial_derivative(f_xyz, index=2))(qj),
        2 * s * -3,
        printed=2 * s * (-3 * q[2]),
        printed_text="2(x + 2y - 3z)·(-3z)",
        by_hand="2(x + 2y - 3z)·(-3)",
        reason="seed 001: ∂(x + 2y - 3z)/∂z = -3, not -3z; the gradient two slides later has -3",
    )

    r = np.array([1.0, -0.5])
    u = r[0] + 2 * r[1] ** 3
    out.example("002, 003, 004", f"f(x, y) = (x + 2y^3)^2, at (x, y) = ({r[0]:g}, {r[1]:g})")

    def f_cubic(v: Any) -> Any:
        return (v[0] + 2 * v[1] ** 3) ** 2

    rj = jnp.asarray(r, jnp.float32)
    out.check(
        "∂f/∂x",
        jax.jit(mlgrad.partial_derivative(f_cubic, index=0))(rj),
        2 * u,
        printed=2 * u,
        printed_text="2(x + 2y^3)",
    )
    out.check(
        "∂f/∂y",
        jax.jit(mlgrad.partial_derivative(f_cubic, index=1))(rj),
        2 * u * 6 * r[1] ** 2,
        by_hand="2(x + 2y^3)·6y^2",
        printed=12 * r[1] ** 2 * u,
        printed_text="12y^2(x + 2y^3)",
    )

    out.example(
        "001",
        f"Sigmoid unit f(w, b) = 1 / (1 + exp(-(w^T x + b))), at w = {_fmt(SIGMOID_W)}, "
        f"b = {SIGMOID_B:g}, x = {_fmt(SIGMOID_X)}",
    )
    fwb = 1 / (1 + np.exp(-(SIGMOID_W @ SIGMOID_X + SIGMOID_B)))
    w, xs = jnp.asarray(SIGMOID_W, jnp.float32), jnp.asarray(SIGMOID_X, jnp.float32)
    out.check(
        "∂f/∂b",
        jax.jit(mlgrad.partial_derivative(sigmoid_unit, 1))(w, SIGMOID_B, xs),
        fwb * (1 - fwb),
        printed=fwb * (1 - fwb),
        printed_text="f(w, b)(1 - f(w, b))",
    )


# --------------------------------------------------------------------------------------------
# Gradient
# --------------------------------------------------------------------------------------------


def gradients(out: Lecture) -> None:
    """Gradients: all partial derivatives, as a row (the notes' df/dx) or a column."""
    out.section("Gradient", "seeds 000, 001, 002, 003, 004")
    x1, x2 = 1.0, 2.0
    p = jnp.array([x1, x2])
    out.example(
        "000, 002, 004",
        "f(x1, x2) = x1^2 x2 + x1 x2^3: df/dx as the 1 x 2 row vector, "
        f"at (x1, x2) = ({x1:g}, {x2:g})",
    )

    def f(v: Any) -> Any:
        return v[0] ** 2 * v[1] + v[0] * v[1] ** 3

    row = jax.jit(mlgrad.gradient(f, layout="row"))(p)
    want = np.array([[2 * x1 * x2 + x2**3, x1**2 + 3 * x1 * x2**2]])
    out.check(
        "df/dx (layout='row')",
        row,
        want,
        printed=want,
        printed_text="[2x1x2 + x2^3, x1^2 + 3x1x2^2]",
    )
    out.check("shape", tuple(row.shape), (1, 2), printed=(1, 2), printed_text="R^(1x2)")
    out.check(
        "as a column (layout='column')",
        jax.jit(mlgrad.gradient(f, layout="column"))(p),
        want.T,
        by_hand="the transposed row",
    )
    out.erratum(
        "'f(x, y) = x1^2 x2 + x1 x2^3, compute ∂f(x, y)/∂x and ∂f(x, y)/∂y'",
        "'f(x1, x2) = x1^2 x2 + x1 x2^3, compute ∂f/∂x1 and ∂f/∂x2'",
        "seed 004: the function's variables are x1 and x2",
    )

    out.example(
        "003",
        "f(x1, x2) = x1^2 x2 + x1 x2^2 (x2^2 here, x2^3 in the other notes), gradient as a "
        f"column vector (seed 003's convention), at ({x1:g}, {x2:g})",
    )
    out.check(
        "∇f (layout='column')",
        jax.jit(mlgrad.gradient(lambda v: v[0] ** 2 * v[1] + v[0] * v[1] ** 2, layout="column"))(p),
        [[2 * x1 * x2 + x2**2], [x1**2 + 2 * x1 * x2]],
        by_hand="[2x1x2 + x2^2, x1^2 + 2x1x2]^T",
    )

    q = np.array([1.0, 2.0, 0.5])
    s = q[0] + 2 * q[1] - 3 * q[2]
    out.example("001", f"∇f for f(x, y, z) = (x + 2y - 3z)^2, at ({q[0]:g}, {q[1]:g}, {q[2]:g})")
    out.check(
        "∇f (layout='column')",
        jax.jit(mlgrad.gradient(lambda v: (v[0] + 2 * v[1] - 3 * v[2]) ** 2, layout="column"))(
            jnp.asarray(q, jnp.float32)
        ),
        [[2 * s], [2 * s * 2], [2 * s * -3]],
        printed=[[2 * s], [2 * s * 2], [2 * s * -3]],
        printed_text="[2(x+2y-3z), 2(x+2y-3z)·2, 2(x+2y-3z)·(-3)]^T",
    )

    out.example("004", f"f(x) = x^T x = x1^2 + x2^2, x in R^2, at x = ({x1:g}, {x2:g})")
    out.check(
        "f(x)", jnp.dot(p, p), x1**2 + x2**2, printed=x1**2 + x2**2, printed_text="x1^2 + x2^2"
    )
    out.check("∇f", jax.jit(mlgrad.gradient(lambda v: v @ v))(p), [2 * x1, 2 * x2], by_hand="2x")
    out.erratum(
        "'Δ_x f = grad f = df/dx'",
        "'∇_x f = grad f = df/dx'",
        "seed 002, eq. (8): the gradient is written with nabla; Δ is the Laplacian",
    )

    xs, ys = np.array([10.0, 15.0, 20.0, 25.0]), np.array([2.0, 3.0, 4.5, 5.0])
    a, b = 0.2, 0.1
    out.example(
        "000",
        "Motivation: the loss L(a, b) = 1/N Σ_i [f(x_i) - y_i]^2 of the line f(x) = a x + b, "
        f"derivatives w.r.t. the parameters at (a, b) = ({a:g}, {b:g}), data x = {_fmt(xs)}, "
        f"y = {_fmt(ys)}",
    )

    def loss(params: Any) -> Any:
        return jnp.mean((params[0] * xs + params[1] - ys) ** 2)

    resid = a * xs + b - ys
    out.check(
        "[∂L/∂a, ∂L/∂b]",
        jax.jit(mlgrad.gradient(loss))(jnp.array([a, b])),
        [2 * np.mean(resid * xs), 2 * np.mean(resid)],
        by_hand="[2/N Σ (a x_i + b - y_i) x_i, 2/N Σ (a x_i + b - y_i)]",
    )
    out.erratum(
        "'L = 1/N Σ_1^N [f(x) - y]^2'",
        "'L = 1/N Σ_{i=1}^N [f(x_i) - y_i]^2'",
        "seed 000: the summand must depend on the summation index",
    )


# --------------------------------------------------------------------------------------------
# Directional derivative
# --------------------------------------------------------------------------------------------


def directional_derivatives(out: Lecture) -> None:
    """The directional derivative (D_v f)(x0) = g'(0) for g(t) = f(x0 + t v)."""
    out.section("Directional derivative", "seed 001")
    x0, v = jnp.array([2.0, 0.0]), jnp.array([1.0, 0.0])
    out.example("001", "f(x, y) = x^2 y^2 at (2, 0) along v = (1, 0)")

    def f(p: Any) -> Any:
        return p[0] ** 2 * p[1] ** 2

    out.check(
        "(D_v f)(2, 0)",
        mlgrad.directional_derivative(f, x0, v),
        0.0,
        printed=4.0,
        printed_text="4",
        by_hand="(D_t g)(0) for g(t) = f(2 + t, 0) = (2 + t)^2 · 0^2",
        reason="seed 001: the notes wrote g(t) = f(2 + t, 0) = (2 + t)^2, dropping the factor "
        "y^2 = 0",
    )
    out.check(
        "(D_t g)(0), g(t) = f((2, 0) + t(1, 0))",
        jax.jit(mlgrad.derivative(lambda t: f(x0 + t * v)))(0.0),
        0.0,
        by_hand="g(t) = 0 for every t, so g'(0)",
    )
    out.note(
        "the notes' g(t) = (2 + t)^2 is the restriction of x^2 + y^2 at (2, 0), "
        "or of x^2 y^2 at (2, 1):"
    )
    out.check(
        "f = x^2 + y^2 at (2, 0) along (1, 0)",
        mlgrad.directional_derivative(lambda p: p[0] ** 2 + p[1] ** 2, x0, v),
        4.0,
        printed=4.0,
        printed_text="2·(2 + 0)",
    )
    out.check(
        "f = x^2 y^2 at (2, 1) along (1, 0)",
        mlgrad.directional_derivative(f, jnp.array([2.0, 1.0]), v),
        4.0,
        printed=4.0,
        printed_text="2·(2 + 0)",
    )


# --------------------------------------------------------------------------------------------
# Jacobian
# --------------------------------------------------------------------------------------------


def jacobians(out: Lecture) -> None:
    """Jacobians of vector-valued functions, and the shapes of derivatives."""
    out.section("Jacobian", "seeds 000, 002, 003, 004")
    x1, x2 = 3.0, 1.0
    out.example("000", f"f(x) = [x1^2 + 5, 2x1 + x2]^T, J_f at (x1, x2) = ({x1:g}, {x2:g})")

    def f(x: Any) -> Any:
        return jnp.array([x[0] ** 2 + 5, 2 * x[0] + x[1]])

    out.check(
        "J_f",
        jax.jit(mlgrad.jacobian(f))(jnp.array([x1, x2])),
        [[2 * x1, 0.0], [2.0, 1.0]],
        printed=[[2 * x1, 0.0], [2.0, 1.0]],
        printed_text="[[2x, 0], [2, 1]] (x read as x1)",
    )
    out.erratum(
        "'J_f = [[2x, 0], [2, 1]]'",
        "'[[2x1, 0], [2, 1]]'",
        "seed 000: minor, there is no variable x; ∂(x1^2 + 5)/∂x1 = 2x1",
    )

    out.example(
        "004", "'Heads up': the shapes of df/dx for scalar, vector-in and vector-out functions"
    )
    x3 = jnp.array([1.0, 2.0, 3.0])
    out.check(
        "f: R^3 -> R, f(x) = x^T x",
        tuple(jax.jit(mlgrad.gradient(lambda v: v @ v, layout="row"))(x3).shape),
        (1, 3),
        printed=(1, 3),
        printed_text="1 x D (a row)",
    )
    out.check(
        "f: R -> R^2, f(t) = (t cos t, t sin t)",
        tuple(
            jax.jit(
                mlgrad.jacobian(lambda t: jnp.array([t * jnp.cos(t), t * jnp.sin(t)]), flatten=True)
            )(0.5).shape
        ),
        (2, 1),
        printed=(2, 1),
        printed_text="E x 1 (a column)",
    )
    out.check(
        "f: R^3 -> R^2, f(x) = [x1 x2, x2 + x3]",
        tuple(jax.jit(mlgrad.jacobian(lambda v: jnp.array([v[0] * v[1], v[1] + v[2]])))(x3).shape),
        (2, 3),
        printed=(2, 3),
        printed_text="E x D (a matrix)",
    )


# --------------------------------------------------------------------------------------------
# Gradients of matrices
# --------------------------------------------------------------------------------------------


def case_formula_dK_dB(b: np.ndarray) -> np.ndarray:
    """Seed 002's case formula for ∂K_pq/∂B_ij, K = B^T B, as an (n, n, m, n) NumPy tensor."""
    m, n = b.shape
    t = np.zeros((n, n, m, n))
    for p in range(n):
        for q in range(n):
            for i in range(m):
                for j in range(n):
                    if j == p and p != q:
                        t[p, q, i, j] = b[i, q]
                    elif j == q and p != q:
                        t[p, q, i, j] = b[i, p]
                    elif j == p and p == q:
                        t[p, q, i, j] = 2 * b[i, q]
    return t


def a_of_x(x: Any) -> Any:
    """Seed 003, section 5: a 3 x 3 matrix-valued function of x in R^3."""
    x1, x2, x3 = x[0], x[1], x[2]
    return jnp.array(
        [
            [x1 + x2, x1 * x2, x1 * x2 * x3],
            [x1, x1 + x3, x2**2],
            [x2, x1 * x3**2, x3**2],
        ]
    )


def a_of_x_derivative(x: np.ndarray) -> np.ndarray:
    """dA/dx for seed 003's A(x), by hand: shape (3, 3, 3), entry [i, j, k] = ∂A_ij/∂x_k."""
    x1, x2, x3 = x
    d1 = [[1, x2, x2 * x3], [1, 1, 0], [0, x3**2, 0]]
    d2 = [[1, x1, x1 * x3], [0, 0, 2 * x2], [1, 0, 0]]
    d3 = [[0, 0, x1 * x2], [0, 1, 0], [0, 2 * x1 * x3, 2 * x3]]
    return np.stack([np.array(d, dtype=np.float64) for d in (d1, d2, d3)], axis=-1)


def gradients_of_matrices(out: Lecture) -> None:
    """Derivatives of and with respect to matrices: 3-D and 4-D tensors, identities."""
    out.section("Gradients of matrices", "seeds 002, 003")
    a = np.array([[1.0, 2.0, 0.0, -1.0], [0.5, 0.0, 3.0, 2.0], [-2.0, 1.0, 1.0, 0.0]])
    x = np.array([1.0, -1.0, 2.0, 0.5])
    aj, xj = jnp.asarray(a, jnp.float32), jnp.asarray(x, jnp.float32)
    out.example("002", f"f(x) = A x with A in R^(3x4): df/dx, at x = {_fmt(x)}, A =\n{_fmt(a)}")
    out.check(
        "df/dx", jax.jit(mlgrad.jacobian(lambda v: aj @ v))(xj), a, printed=a, printed_text="A"
    )

    out.example(
        "002",
        "A matrix-valued function of a vector, A(x) in R^(4x2), x in R^3 (the slide's shapes)",
    )

    def a42(v: Any) -> Any:
        return jnp.array([[v[0], v[1]], [v[1] * v[2], v[0] ** 2], [v[2], 1.0], [v[0] * v[2], v[1]]])

    x3 = jnp.array([1.0, 2.0, 3.0])
    out.check(
        "dA/dx, shape",
        tuple(jax.jit(mlgrad.jacobian(a42))(x3).shape),
        (4, 2, 3),
        printed=(4, 2, 3),
        printed_text="R^(4x2x3)",
    )
    out.check(
        "flatten=True, shape",
        tuple(jax.jit(mlgrad.jacobian(a42, flatten=True))(x3).shape),
        (8, 3),
        printed=(8, 3),
        printed_text="R^(8x3)",
    )

    m, n = 2, 3
    a2 = a[:m, :n]
    x2 = x[:n]
    out.example(
        "002",
        f"f = A x, A in R^(2x3): ∂f/∂A as a 3-D tensor, at x = {_fmt(x2)}, A = {_fmt(a2)}",
    )
    t = jax.jit(mlgrad.jacobian(lambda mat: mat @ jnp.asarray(x2, jnp.float32)))(
        jnp.asarray(a2, jnp.float32)
    )
    out.check("shape", tuple(t.shape), (m, m, n), printed=(m, m, n), printed_text="R^(m x (m x n))")
    want = np.einsum("ik,q->ikq", np.eye(m), x2)
    out.check(
        "∂f/∂A",
        t,
        want,
        printed=want,
        printed_text="∂f_i/∂A_(i,:) = x^T, ∂f_i/∂A_(k,:) = 0^T (k != i)",
    )
    out.erratum(
        "'∂f_i/∂A_(k,:) = [0^T; ...; x^T; ...; 0^T] in R^(1 x m x n)'",
        "'∂f_i/∂A = [0^T; ...; x^T; ...; 0^T]'",
        "seed 002: the stacked rows form the derivative w.r.t. all of A, not w.r.t. row k",
    )

    bmat = np.array([[1.0, 2.0], [-1.0, 0.5], [3.0, 1.0]])
    m, n = bmat.shape
    out.example(
        "002", f"K = f(B) = B^T B, B in R^(3x2): ∂K/∂B as a 4-D tensor, at B =\n{_fmt(bmat)}"
    )
    bj = jnp.asarray(bmat, jnp.float32)
    dk = jax.jit(mlgrad.jacobian(lambda mat: mat.T @ mat))(bj)
    cases = case_formula_dK_dB(bmat)
    out.check(
        "shape",
        tuple(dk.shape),
        (n, n, m, n),
        printed=(n, n, m, n),
        printed_text="(n x n) x (m x n)",
    )
    out.check(
        "∂K_pq/∂B_ij",
        dk,
        cases,
        printed=cases,
        printed_text="B_iq if j = p != q; B_ip if j = q != p; 2B_iq if j = p = q; else 0",
    )
    out.check(
        "flatten=True: the (n n) x (m n) matrix",
        jax.jit(mlgrad.jacobian(lambda mat: mat.T @ mat, flatten=True))(bj),
        cases.reshape(n * n, m * n),
        printed=cases.reshape(n * n, m * n),
        printed_text="the case formula, rows (p, q), columns (i, j)",
    )
    out.erratum(
        "'let the i-th column of B be b_i, then K_pq = r_p^T r_q'",
        "'K_pq = b_p^T b_q'",
        "seed 002: the columns were just named b_i; r_p is never defined",
    )

    xa = np.array([1.0, 2.0, 3.0])
    out.example(
        "003",
        "dA/dx for A = [[x1 + x2, x1 x2, x1 x2 x3], [x1, x1 + x3, x2^2], "
        f"[x2, x1 x3^2, x3^2]], at x = {_fmt(xa)}",
    )
    da = jax.jit(mlgrad.jacobian(a_of_x))(jnp.asarray(xa, jnp.float32))
    want = a_of_x_derivative(xa)
    out.check("shape", tuple(da.shape), (3, 3, 3), by_hand="3 x 3 x 3")
    for k, formula in enumerate(
        (
            "[[1, x2, x2 x3], [1, 1, 0], [0, x3^2, 0]]",
            "[[1, x1, x1 x3], [0, 0, 2x2], [1, 0, 0]]",
            "[[0, 0, x1 x2], [0, 1, 0], [0, 2x1 x3, 2x3]]",
        )
    ):
        out.check(f"∂A/∂x{k + 1}", da[..., k], want[..., k], by_hand=formula)

    matrix_identities(out)


def matrix_identities(out: Lecture) -> None:
    """Seed 002's 'Useful identities for computing gradients', each at random matrices."""
    rng = np.random.default_rng(0)
    n = 3
    xm = rng.normal(size=(n, n)) + 3 * np.eye(n)  # well conditioned, det != 0
    c, bm, am = rng.normal(size=(n, n)), rng.normal(size=(n, n)), rng.normal(size=(n, n))
    w = rng.normal(size=(n, n))
    w = w + w.T  # symmetric
    av, bv, xv, sv = (rng.normal(size=n) for _ in range(4))
    out.example(
        "002",
        "Useful identities for computing gradients, at random 3 x 3 matrices (seed 0); "
        "∂f/∂X is the 4-D tensor [i, j, k, l] = ∂f_ij/∂X_kl, the identities hold for each "
        "X_kl; here f(X) = X C X + X",
    )
    X, C, B, A, W, a, b, x, s = (
        jnp.asarray(v, jnp.float32) for v in (xm, c, bm, am, w, av, bv, xv, sv)
    )

    def f(mat: Any) -> Any:
        return mat @ C @ mat + mat

    got = compiled(
        lambda: {
            "transpose": mlgrad.jacobian(lambda m: f(m).T)(X),
            "trace": mlgrad.gradient(lambda m: jnp.trace(f(m)))(X),
            "det": mlgrad.gradient(lambda m: jnp.linalg.det(f(m)))(X),
            "inverse": mlgrad.jacobian(lambda m: jnp.linalg.inv(f(m)))(X),
            "a^T X^-1 b": mlgrad.gradient(lambda m: a @ jnp.linalg.inv(m) @ b)(X),
            "x^T a": mlgrad.gradient(lambda v: v @ a, layout="row")(x),
            "a^T x": mlgrad.gradient(lambda v: a @ v, layout="row")(x),
            "a^T X b": mlgrad.gradient(lambda m: a @ m @ b)(X),
            "x^T B": mlgrad.jacobian(lambda v: v @ B)(x),
            "x^T B x": mlgrad.gradient(lambda v: v @ B @ v, layout="row")(x),
            "quadratic": mlgrad.gradient(lambda u: (x - A @ u) @ W @ (x - A @ u), layout="row")(s),
        }
    )

    # By hand: ∂f(X)/∂X_kl = E_kl C X + X C E_kl + E_kl, as an (n, n, n, n) tensor [i, j, k, l].
    e = np.eye(n)
    fx = xm @ c @ xm + xm
    df = (
        np.einsum("ik,lj->ijkl", e, c @ xm)
        + np.einsum("ik,jl->ijkl", xm @ c, e)
        + np.einsum("ik,jl->ijkl", e, e)
    )
    inv, xinv = np.linalg.inv(fx), np.linalg.inv(xm)
    identities = [
        ("∂f(X)^T/∂X", "transpose", df.transpose(1, 0, 2, 3), "(∂f(X)/∂X)^T"),
        ("∂ tr(f(X))/∂X", "trace", np.einsum("iikl->kl", df), "tr(∂f(X)/∂X)"),
        (
            "∂ det(f(X))/∂X",
            "det",
            np.linalg.det(fx) * np.einsum("ij,jikl->kl", inv, df),
            "det(f(X)) tr(f(X)^-1 ∂f(X)/∂X)",
        ),
        (
            "∂ f(X)^-1/∂X",
            "inverse",
            -np.einsum("ia,abkl,bj->ijkl", inv, df, inv),
            "-f(X)^-1 (∂f(X)/∂X) f(X)^-1",
        ),
        (
            "∂ a^T X^-1 b/∂X",
            "a^T X^-1 b",
            -xinv.T @ np.outer(av, bv) @ xinv.T,
            "-(X^-1)^T a b^T (X^-1)^T",
        ),
        ("∂ x^T a/∂x", "x^T a", av[None, :], "a^T"),
        ("∂ a^T x/∂x", "a^T x", av[None, :], "a^T"),
        ("∂ a^T X b/∂X", "a^T X b", np.outer(av, bv), "a b^T"),
    ]
    for label, key, want, text in identities:
        out.check(label, got[key], want, printed=want, printed_text=text, rtol=1e-4)
    out.check(
        "∂ x^T B/∂x (the Jacobian of the row x^T B)",
        got["x^T B"],
        bm.T,
        by_hand="B^T (an n x n matrix: (x^T B)_j = Σ_i x_i B_ij)",
        printed=xv @ (bm + bm.T),
        printed_text="x^T (B + B^T)",
        reason="seed 002: that is the gradient of the quadratic form x^T B x, checked next",
    )
    want = (xv @ (bm + bm.T))[None, :]
    out.check("∂ x^T B x/∂x", got["x^T B x"], want, printed=want, printed_text="x^T (B + B^T)")
    want = (-2 * (xv - am @ sv) @ w @ am)[None, :]
    out.check(
        "∂/∂s (x - A s)^T W (x - A s), W symmetric",
        got["quadratic"],
        want,
        printed=want,
        printed_text="-2 (x - A s)^T W A",
        rtol=1e-4,
    )


# --------------------------------------------------------------------------------------------
# Second derivative and Hessian
# --------------------------------------------------------------------------------------------


def second_derivative_and_hessian(out: Lecture) -> None:
    """The second derivative and the Hessian."""
    out.section("Second derivative and Hessian", "seed 001")
    x = 1.5
    out.example("001", f"Second-order derivative of f(x) = x^2, at x = {x:g}")
    out.check(
        "d^2f/dx^2",
        jax.jit(mlgrad.derivative(lambda t: t**2, order=2))(x),
        2.0,
        printed=2.0,
        printed_text="2",
    )

    p = jnp.array([1.5, -2.0])
    out.example("001", f"Hessian of f(x, y) = x^2 - y^2, at (x, y) = ({p[0]:g}, {p[1]:g})")
    out.check(
        "H",
        jax.jit(mlgrad.hessian(lambda v: v[0] ** 2 - v[1] ** 2))(p),
        [[2.0, 0.0], [0.0, -2.0]],
        printed=[[2.0, 0.0], [0.0, -2.0]],
        printed_text="[[2, 0], [0, -2]]",
    )

    x1, x2 = 1.0, 2.0
    out.example(
        "001",
        "'The Hessian matrix is always symmetric': the Hessian of x1^2 x2 + x1 x2^3 at "
        f"({x1:g}, {x2:g})",
    )
    out.check(
        "H",
        jax.jit(mlgrad.hessian(lambda v: v[0] ** 2 * v[1] + v[0] * v[1] ** 3))(jnp.array([x1, x2])),
        [[2 * x2, 2 * x1 + 3 * x2**2], [2 * x1 + 3 * x2**2, 6 * x1 * x2]],
        by_hand="[[2x2, 2x1 + 3x2^2], [2x1 + 3x2^2, 6x1x2]], symmetric",
    )
    out.note(
        "'always' needs continuous second partial derivatives (Schwarz's theorem); "
        "for f = xy(x^2 - y^2)/(x^2 + y^2) the mixed partials at (0, 0) are -1 and +1"
    )


# --------------------------------------------------------------------------------------------
# Chain rule
# --------------------------------------------------------------------------------------------


def chain_rules(out: Lecture) -> None:
    """The multivariate chain rule as a product of stage Jacobians."""
    out.section("Chain rule", "seeds 002, 003, 004")
    t = 0.7
    out.example(
        "002, 003, 004",
        f"f(x1, x2) = x1^2 + 2x2 with x1 = sin t, x2 = cos t: df/dt, at t = {t:g}",
    )

    def f(x: Any) -> Any:
        return x[0] ** 2 + 2 * x[1]

    def x_of_t(s: Any) -> Any:
        return jnp.array([jnp.sin(s), jnp.cos(s)])

    steps = jax.jit(mlgrad.chain_rule(f, x_of_t))(t)
    out.check(
        "∂f/∂x (1 x 2)",
        steps.jacobians[0],
        [[2 * math.sin(t), 2.0]],
        printed=[[2 * math.sin(t), 2.0]],
        printed_text="[2 sin t, 2]",
    )
    out.check(
        "∂x/∂t (2 x 1)",
        steps.jacobians[1],
        [[math.cos(t)], [-math.sin(t)]],
        printed=[[math.cos(t)], [-math.sin(t)]],
        printed_text="[cos t, -sin t]^T",
    )
    out.check(
        "df/dt = ∂f/∂x ∂x/∂t",
        steps.product,
        [[2 * math.sin(t) * (math.cos(t) - 1)]],
        printed=[[2 * math.sin(t) * math.cos(t) - 2 * math.sin(t)]],
        printed_text="2 sin t cos t - 2 sin t = 2 sin t (cos t - 1)",
    )
    out.erratum(
        "'consider a function f: R -> R of two variables x1, x2'",
        "'f: R^2 -> R'",
        "seed 002: a function of two variables has domain R^2",
    )
    out.erratum(
        "'∂/∂x (g∘f)(x) = ∂g/∂x (g(f(x))) = ∂g/∂f ∂f/∂x'",
        "'∂/∂x (g∘f)(x) = ∂/∂x g(f(x)) = ∂g/∂f ∂f/∂x'",
        "seed 004: the middle term applies g to itself",
    )

    s, t = 1.5, 0.7
    out.example(
        "002, 003, 004",
        "Two parameters: df/d(s, t) = ∂f/∂x ∂x/∂(s, t), a (1 x 2)(2 x 2) product; the notes state "
        "the rule without an example, so take x1 = s sin t, x2 = s cos t, "
        f"at (s, t) = ({s:g}, {t:g})",
    )
    steps = jax.jit(
        mlgrad.chain_rule(f, lambda st: jnp.array([st[0] * jnp.sin(st[1]), st[0] * jnp.cos(st[1])]))
    )(jnp.array([s, t]))
    out.check(
        "df/d(s, t)",
        steps.product,
        [
            [
                2 * s * math.sin(t) ** 2 + 2 * math.cos(t),
                2 * s**2 * math.sin(t) * math.cos(t) - 2 * s * math.sin(t),
            ]
        ],
        by_hand="[2s sin^2 t + 2 cos t, 2s^2 sin t cos t - 2s sin t]",
    )

    t = 0.7
    out.example(
        "002, 003",
        f"h(t) = f(g(t)), f(x) = exp(x1 x2^2), x = g(t) = (t cos t, t sin t): dh/dt, at t = {t:g}",
    )
    x1, x2 = t * math.cos(t), t * math.sin(t)
    ef = math.exp(x1 * x2**2)
    steps = jax.jit(
        mlgrad.chain_rule(
            lambda x: jnp.exp(x[0] * x[1] ** 2),
            lambda s: jnp.array([s * jnp.cos(s), s * jnp.sin(s)]),
        )
    )(t)
    out.check(
        "∂f/∂x (1 x 2)",
        steps.jacobians[0],
        [[ef * x2**2, 2 * ef * x1 * x2]],
        printed=[[ef * x2**2, 2 * ef * x1 * x2]],
        printed_text="[exp(x1 x2^2) x2^2, 2 exp(x1 x2^2) x1 x2]",
    )
    dx = [[math.cos(t) - t * math.sin(t)], [math.sin(t) + t * math.cos(t)]]
    out.check(
        "∂x/∂t (2 x 1)",
        steps.jacobians[1],
        dx,
        printed=dx,
        printed_text="[cos t - t sin t, sin t + t cos t]^T",
    )
    want = ef * (x2**2 * dx[0][0] + 2 * x1 * x2 * dx[1][0])
    out.check(
        "dh/dt",
        steps.product,
        [[want]],
        printed=[[want]],
        printed_text="exp(x1 x2^2)(x2^2 (cos t - t sin t) + 2 x1 x2 (sin t + t cos t))",
    )
    out.erratum(
        "'Consider the function g: h(t) = (f∘g)(t)'",
        "'Consider the function h: h(t) = (f∘g)(t)'",
        "seed 003: the function being differentiated is h; g is the inner map",
    )


# --------------------------------------------------------------------------------------------
# Gradient identities
# --------------------------------------------------------------------------------------------


def gradient_identities(out: Lecture) -> None:
    """Seed 001's gradient identities and the theorem D_v f = (grad f)^T v."""
    out.section("Gradient identities", "seed 001")
    a = np.array([1.0, -2.0, 0.5])
    b = np.array([0.3, 1.0, -1.5])
    amat = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 0.5, 1.0]])
    f32 = lambda z: jnp.asarray(z, jnp.float32)  # noqa: E731
    out.example("001", f"Gradients w.r.t. a, at a = {_fmt(a)}, b = {_fmt(b)}, A =\n{_fmt(amat)}")
    out.check(
        "∇ b^T a",
        jax.jit(mlgrad.gradient(lambda v: f32(b) @ v))(f32(a)),
        b,
        printed=b,
        printed_text="b",
    )
    out.check(
        "∇ b^T A a",
        jax.jit(mlgrad.gradient(lambda v: f32(b) @ f32(amat) @ v))(f32(a)),
        amat.T @ b,
        printed=amat.T @ b,
        printed_text="A^T b",
    )
    out.check(
        "∇ ||a||_2^2",
        jax.jit(mlgrad.gradient(lambda v: jnp.sum(v**2)))(f32(a)),
        2 * a,
        printed=2 * a,
        printed_text="2a",
    )

    w, x, bias, y = SIGMOID_W, SIGMOID_X, SIGMOID_B, 1.2
    out.example(
        "001", f"Gradients w.r.t. w, at w = {_fmt(w)}, x = {_fmt(x)}, b = {bias:g}, y = {y:g}"
    )
    out.check(
        "∇ (w^T x + b - y)^2",
        jax.jit(mlgrad.gradient(lambda v: (v @ f32(x) + bias - y) ** 2))(f32(w)),
        2 * (w @ x + bias - y) * x,
        printed=2 * (w @ x + bias - y) * x,
        printed_text="2(w^T x + b - y) x",
    )
    fw = 1 / (1 + math.exp(-(w @ x + bias)))
    out.check(
        "∇ 1 / (1 + exp(-(w^T x + b)))",
        jax.jit(mlgrad.gradient(sigmoid_unit))(f32(w), bias, f32(x)),
        fw * (1 - fw) * x,
        printed=fw * (1 - fw) * x,
        printed_text="f(w)(1 - f(w)) x",
    )

    p, v = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    out.example(
        "001",
        "Theorem (D_v f)(x) = (∇f)(x)^T v, for f = x1^2 x2 + x1 x2^3 at "
        f"x = {_fmt(p)} along v = {_fmt(v)}",
    )

    def f(z: Any) -> Any:
        return z[0] ** 2 * z[1] + z[0] * z[1] ** 3

    grad = np.array([2 * p[0] * p[1] + p[1] ** 3, p[0] ** 2 + 3 * p[0] * p[1] ** 2])
    out.check(
        "D_v f",
        mlgrad.directional_derivative(f, f32(p), f32(v)),
        grad @ v,
        printed=grad @ v,
        printed_text="(∇f)^T v",
    )


# --------------------------------------------------------------------------------------------
# Backpropagation with intermediate variables
# --------------------------------------------------------------------------------------------


def backprop_function(x: Any) -> Any:
    """Seed 003, section 6.2: f(x) = sqrt(x^2 + e^{x^2}) + cos(x^2 + e^{x^2})."""
    return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))


def backpropagation(out: Lecture) -> None:
    """Backpropagation with the intermediate variables a to f of seed 003."""
    out.section("Backpropagation with intermediate variables", "seed 003")
    x = 0.5
    out.example(
        "003",
        "f(x) = sqrt(x^2 + e^(x^2)) + cos(x^2 + e^(x^2)) with intermediate variables, "
        f"at x = {x:g}",
    )
    table = mlgrad.backprop_table(backprop_function, x)
    for line in str(table).splitlines():
        out.print("    " + line)

    # The notes' forward pass and local partials (left column), by hand in NumPy.
    a = x**2
    b = math.exp(a)
    c = a + b
    d = math.sqrt(c)
    e = math.cos(c)
    notes_formulas = (
        "a = x^2",
        "b = exp(a)",
        "c = a + b",
        "d = sqrt(c)",
        "e = cos(c)",
        "f = d + e",
    )
    out.check(
        "the intermediate variables",
        tuple(row.name for row in table.rows),
        tuple("abcdef"),
        printed=tuple("abcdef"),
    )
    out.check("their definitions", table.formulas, notes_formulas, printed=notes_formulas)
    for name, value in zip("abcdef", (a, b, c, d, e, d + e), strict=True):
        out.check(
            f"value of {name}",
            table[name].value,
            value,
            by_hand=notes_formulas["abcdef".index(name)],
        )
    local = {
        ("a", "x"): (2 * x, "2x"),
        ("b", "a"): (math.exp(a), "e^a"),
        ("c", "a"): (1.0, "1"),
        ("c", "b"): (1.0, "1"),
        ("d", "c"): (1 / (2 * math.sqrt(c)), "1/(2 sqrt(c))"),
        ("e", "c"): (-math.sin(c), "-sin c"),
        ("f", "d"): (1.0, "1"),
    }
    for (var, wrt), (value, text) in local.items():
        out.check(
            f"local partial ∂{var}/∂{wrt}",
            table[var].partials[wrt],
            value,
            printed=value,
            printed_text=text,
        )
    out.check("local partial ∂f/∂e", table["f"].partials["e"], 1.0, by_hand="1, since f = d + e")

    # The notes' backward equations (right column), by hand in NumPy.
    df_dd, df_de = 1.0, 1.0
    df_dc = df_dd / (2 * math.sqrt(c)) + df_de * -math.sin(c)
    df_db = df_dc * 1.0
    df_da = df_db * math.exp(a) + df_dc * 1.0
    df_dx = df_da * 2 * x
    out.check(
        "∂f/∂c, which the notes' left column gives as 1",
        table["c"].adjoint,
        df_dc,
        printed=1.0,
        printed_text="∂f/∂c",
        by_hand="∂f/∂d ∂d/∂c + ∂f/∂e ∂e/∂c",
        reason="seed 003: f = d + e, so the local partial equal to 1 is ∂f/∂e; f depends on c "
        "only through d and e, as the notes' own backward pass says",
    )
    backward = {
        "e": (df_de, "1 (f = d + e)"),
        "d": (df_dd, "1 (f = d + e)"),
        "c": (df_dc, "∂f/∂d ∂d/∂c + ∂f/∂e ∂e/∂c"),
        "b": (df_db, "∂f/∂c ∂c/∂b"),
        "a": (df_da, "∂f/∂b ∂b/∂a + ∂f/∂c ∂c/∂a"),
        "x": (df_dx, "∂f/∂a ∂a/∂x"),
    }
    for var, (value, text) in backward.items():
        out.check(f"adjoint ∂f/∂{var}", table[var].adjoint, value, printed=value, printed_text=text)
    closed = 2 * x * (1 + math.exp(x**2)) * (1 / (2 * math.sqrt(c)) - math.sin(c))
    out.check(
        "df/dx, also by mlgrad.derivative",
        jax.jit(mlgrad.derivative(backprop_function))(x),
        closed,
        by_hand="2x (1 + e^(x^2)) (1/(2 sqrt(c)) - sin c)",
    )


# --------------------------------------------------------------------------------------------
# Linearization
# --------------------------------------------------------------------------------------------


def linearizations(out: Lecture) -> None:
    """Linearization: the first-order Taylor polynomial, sqrt(4.001) in float64."""
    out.section("Linearization", "seed 003")
    out.example(
        "003",
        "sqrt(4.001) from the linearization of f(x) = sqrt(x) at a = 4: y = 2 + (x - 4)/4 "
        "(float64)",
    )
    true = math.sqrt(4.001)
    with jax.enable_x64(True):
        lin = mlgrad.linearization(jnp.sqrt, 4.0)
        y = float(lin(4.001))
    out.check(
        "L(4.001)",
        y,
        2 + 0.001 / 4,
        printed=2.00025,
        printed_text="2 + (4.001 - 4)/4",
        rtol=1e-12,
        digits=12,
    )
    out.claim(
        "the true value",
        abs(true - 2.00024998) < 5e-9,
        f"'close to 2.00024998': sqrt(4.001) = {true:.12g} (NumPy), equal to 8 decimals",
    )
    rel = abs(y - true) / true
    out.claim(
        "the relative error |L(4.001) - sqrt(4.001)| / sqrt(4.001)",
        rel < 1e-8,
        f"'less than 1 million of a percent', i.e. one millionth of a percent = 1e-8: {rel:.3g}",
    )
    out.erratum(
        "'the linearization function at x = a is f(x) = f(a) + f'(a)(x - a)'",
        "'f(x) ≈ f(a) + f'(a)(x - a)' (or L(x) = ...)",
        "seed 003: the linearization only approximates f",
    )

    x0, x = np.array([3.0, 1.0]), np.array([3.01, 0.98])
    out.example(
        "003",
        "The local linear approximation f(x) ≈ f(x0) + (∇_x f)(x0)(x - x0) of a vector function, "
        f"f(x) = [x1^2 + 5, 2x1 + x2], x0 = {_fmt(x0)}, x = {_fmt(x)}",
    )

    def f(v: Any) -> Any:
        return jnp.array([v[0] ** 2 + 5, 2 * v[0] + v[1]])

    x0j, xj = jnp.asarray(x0, jnp.float32), jnp.asarray(x, jnp.float32)
    fx0 = np.array([x0[0] ** 2 + 5, 2 * x0[0] + x0[1]])
    jac = np.array([[2 * x0[0], 0.0], [2.0, 1.0]])
    out.check(
        "L(x)",
        compiled(lambda: mlgrad.linearization(f, x0j)(xj)),
        fx0 + jac @ (x - x0),
        by_hand="f(x0) + J(x0)(x - x0)",
    )


# --------------------------------------------------------------------------------------------
# Taylor polynomials and series
# --------------------------------------------------------------------------------------------


def taylor_series(out: Lecture) -> None:
    """Taylor polynomials and series, univariate and multivariate, in float64."""
    out.section("Taylor polynomials and series (float64)", "seeds 003, 004")
    with jax.enable_x64(True):  # float64: T_6(x) = x^4 exactly, the tiny coefficients in full
        _taylor_series(out)


def _taylor_series(out: Lecture) -> None:
    out.example("004", "f(x) = x^4: the Taylor polynomial T_6 at x0 = 1; check T_6(x) = f(x)")

    def quartic(x: Any) -> Any:
        return x**4

    derivs = [(4.0, "4x^3"), (12.0, "12x^2"), (24.0, "24x"), (24.0, "24"), (0.0, "0"), (0.0, "0")]
    slopes = compiled(lambda: [mlgrad.derivative(quartic, order=k)(1.0) for k in range(1, 7)])
    for k, (value, text) in enumerate(derivs, start=1):
        out.check(
            f"f^({k})(1)",
            slopes[k - 1],
            value,
            printed=value,
            printed_text=text,
        )
    coeffs = [1.0, 4.0, 6.0, 4.0, 1.0, 0.0, 0.0]
    out.check(
        "coefficients f^(k)(1)/k!",
        compiled(lambda: mlgrad.taylor(quartic, 1.0, 6).coefficients),
        coeffs,
        printed=coeffs,
        printed_text="1 + 4(x-1) + 6(x-1)^2 + 4(x-1)^3 + (x-1)^4 + 0",
    )
    xs = np.array([-1.0, 0.5, 2.0, 3.0])
    out.check(
        f"T_6(x) at x = {_fmt(xs)}",
        compiled(lambda: mlgrad.taylor(quartic, 1.0, 6)(xs)),
        xs**4,
        printed=xs**4,
        printed_text="x^4",
    )

    out.example(
        "004",
        "f(x) = sin(x) + cos(x): the Taylor (Maclaurin) series at x0 = 0; check T_∞(x) = f(x)",
    )

    def sin_cos(x: Any) -> Any:
        return jnp.sin(x) + jnp.cos(x)

    printed = [1.0, 1.0, -1.0, -1.0, 1.0]
    texts = ["sin 0 + cos 0", "cos 0 - sin 0", "-sin 0 - cos 0", "-cos 0 + sin 0", "sin 0 + cos 0"]
    out.check("f(0)", sin_cos(0.0), 1.0, printed=1.0, printed_text=texts[0])
    slopes = compiled(lambda: [mlgrad.derivative(sin_cos, order=k)(0.0) for k in range(1, 5)])
    for k in range(1, 5):
        out.check(
            f"f^({k})(0)",
            slopes[k - 1],
            printed[k],
            printed=printed[k],
            printed_text=texts[k],
        )
    order = 8
    want = [(-1) ** (k // 2) / math.factorial(k) for k in range(order + 1)]
    out.check(
        f"coefficients k = 0..{order}",
        compiled(lambda: mlgrad.taylor(sin_cos, 0.0, order).coefficients),
        want,
        printed=want,
        printed_text="1 + x - x^2/2! - x^3/3! + x^4/4! + x^5/5! - ...",
    )
    x = 1.0
    orders = (2, 4, 8, 12)
    values = compiled(lambda: [mlgrad.taylor(sin_cos, 0.0, n)(x) for n in orders])
    for n, tn in zip(orders, values, strict=True):
        partial_sum = sum((-1) ** (k // 2) / math.factorial(k) * x**k for k in range(n + 1))
        err = abs(partial_sum - (math.sin(x) + math.cos(x)))
        out.check(
            f"T_{n}({x:g}), |T_{n}(1) - f(1)| = {err:.2g}",
            tn,
            partial_sum,
            by_hand=f"Σ_(k<={n}) (-1)^floor(k/2) x^k/k!",
            rtol=1e-12,
            digits=12,
        )
    out.check(
        "cos: coefficients k = 0..6",
        compiled(lambda: mlgrad.taylor(jnp.cos, 0.0, 6).coefficients),
        [1, 0, -1 / 2, 0, 1 / 24, 0, -1 / 720],
        printed=[1, 0, -1 / 2, 0, 1 / 24, 0, -1 / 720],
        printed_text="Σ (-1)^k x^(2k)/(2k)!",
    )
    out.check(
        "sin: coefficients k = 0..6",
        compiled(lambda: mlgrad.taylor(jnp.sin, 0.0, 6).coefficients),
        [0, 1, 0, -1 / 6, 0, 1 / 120, 0],
        printed=[0, 1, 0, -1 / 6, 0, 1 / 120, 0],
        printed_text="Σ (-1)^k x^(2k+1)/(2k+1)!",
    )

    out.example(
        "003", "f(x, y) = x^2 + 2xy + y^2: the Taylor series expansion at (x0, y0) = (1, 2)"
    )

    def f(v: Any) -> Any:
        return v[0] ** 2 + 2 * v[0] * v[1] + v[1] ** 2

    t2 = compiled(lambda: mlgrad.taylor(f, jnp.array([1.0, 2.0]), 3).coefficients)
    out.check("f(1, 2)", t2[0], 9.0, by_hand="(1 + 2)^2")
    out.check("∇f(1, 2)", t2[1], [6.0, 6.0], by_hand="[2x + 2y, 2x + 2y]")
    out.check("Hessian / 2!", t2[2], [[1.0, 1.0], [1.0, 1.0]], by_hand="[[2, 2], [2, 2]] / 2")
    out.check("D^3 f / 3!", t2[3], np.zeros((2, 2, 2)), by_hand="0 (f is quadratic)")
    pts = np.array([[0.0, 0.0], [3.0, -5.0], [-1.5, 2.5]])
    out.check(
        f"T_2 at (x, y) = {_fmt(pts, oneline=True)}",
        compiled(lambda: mlgrad.taylor(f, jnp.array([1.0, 2.0]), 2)(pts)),
        (pts[:, 0] + pts[:, 1]) ** 2,
        by_hand="9 + 6(x-1) + 6(y-2) + (x-1)^2 + 2(x-1)(y-2) + (y-2)^2 = (x + y)^2 = f",
    )
    out.erratum(
        "'f(x) = Σ_n D_x^n f(x0)/n! (x - x0)^k'",
        "'f(x) = Σ_n D_x^n f(x0)/n! (x - x0)^n'",
        "seed 003: the power must be the summation index n (a contraction of the n-th derivative "
        "tensor with n copies of x - x0)",
    )


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Lecture], None]] = {
    "difference-quotient": difference_quotient_and_derivative,
    "rules": differentiation_rules,
    "partial": partial_derivatives,
    "gradient": gradients,
    "directional": directional_derivatives,
    "jacobian": jacobians,
    "matrices": gradients_of_matrices,
    "hessian": second_derivative_and_hessian,
    "chain-rule": chain_rules,
    "identities": gradient_identities,
    "backprop": backpropagation,
    "linearization": linearizations,
    "taylor": taylor_series,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Prints every worked example (or the chosen sections); returns 1 if mlgrad disagrees."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--section",
        action="append",
        choices=list(SECTIONS),
        metavar="NAME",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in SECTIONS.items():
            print(f"{name:<20} {(fn.__doc__ or '').strip()}")
        return 0

    out = Lecture()
    for name in args.section or list(SECTIONS):
        SECTIONS[name](out)

    out.print()
    out.print("=" * 96)
    out.print(
        f"{out.checks} answers agree ({OK}), {len(out.errata)} errata in the notes, "
        f"{len(out.mismatches)} mismatches"
    )
    for i, erratum in enumerate(sorted(out.errata, key=lambda e: e[:8]), start=1):
        out.print(f"  erratum {i:>2}: {erratum}")
    for label in out.mismatches:
        out.print(f"  {BAD} mismatch: {label}")
    return 1 if out.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
