"""The lecture notes' pictures, drawn from the real derivatives of any JAX function.

The notes teach with pictures: secants turning into the tangent as the step shrinks ("the
three lines in the following diagram correspond to Δt = 2, Δt = 1 and Δt = 0.5"), Taylor
polynomials of increasing order approaching sin + cos, the linearization of sqrt at 4, the
saddle x² − y² whose Hessian is diag(2, −2), and backpropagation as a graph of intermediate
variables a ... f with their values and adjoints. Each function here draws one of them from
mlgrad's exact derivatives:

* :func:`secants`        f, the secants of the difference quotient, the tangent (``derivative``)
* :func:`taylor`         f and its Taylor polynomials (``taylor``)
* :func:`linearization`  f, its tangent line and the error at a point (``linearization``)
* :func:`surface`        a function of two variables: contours, gradient field, the Hessian's
                         eigen-directions and the verdict: cup, upside-down cup or saddle
* :func:`graph`          the computational graph of ``backprop_table``: each node's operation,
                         value and adjoint, each edge's local partial derivative

Each returns a :class:`Picture`: a matplotlib ``Figure`` built with the object API (no pyplot,
no global state: safe to draw from several threads) that also keeps the numbers it shows
(``picture.numbers``) and a one-line ``caption``. Save it with ``picture.savefig(path)``, or
with :func:`save`, which writes atomically. The one-variable pictures are evaluated in float64
(``jax.enable_x64`` inside the call only), so the numbers they print are exact to their digits.

:func:`expression` turns a formula such as ``"sin(x) + cos(x)"`` into a JAX function (what the
command line's ``mlgrad draw NAME --function EXPR`` draws).
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from mlgrad import backprop, derivatives, expansions, jacobians
from mlgrad._atomic import save_figure

__all__ = [
    "DrawError",
    "Expression",
    "GraphPicture",
    "Picture",
    "expression",
    "graph",
    "linearization",
    "save",
    "secants",
    "surface",
    "taylor",
]

# Sizes legible when projected: a 8-inch figure on a lecture-room screen.
TITLE_SIZE = 15
LABEL_SIZE = 13
TICK_SIZE = 12
LEGEND_SIZE = 12
NOTE_SIZE = 12
DPI = 150
#: Points on the x axis of the one-variable pictures.
CURVE_POINTS = 401
#: The formats :func:`save` writes (``.dot`` only for a :class:`GraphPicture`).
FORMATS = (".png", ".pdf", ".svg")

View = Literal["both", "contour", "3d"]


class DrawError(ValueError):
    """A picture cannot be drawn from these inputs (the message says what to change)."""


# --------------------------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------------------------


class Picture(Figure):
    """A matplotlib ``Figure`` that keeps the numbers it shows.

    Attributes:
      numbers: the numbers behind the picture (slopes, coefficients, eigenvalues...), as
        Python floats and NumPy arrays; each drawing function documents its keys.
      caption: one line saying what the picture shows, with its numbers.
    """

    def __init__(
        self, width: float, height: float, numbers: Mapping[str, Any], caption: str
    ) -> None:
        super().__init__(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(self)  # a canvas of its own: no pyplot, no global backend
        self.numbers: dict[str, Any] = dict(numbers)
        self.caption = caption


class GraphPicture(Picture):
    """The computational graph of :func:`graph`; ``table`` is its ``BackpropTable``."""

    def __init__(
        self,
        width: float,
        height: float,
        numbers: Mapping[str, Any],
        caption: str,
        table: backprop.BackpropTable,
    ) -> None:
        super().__init__(width, height, numbers, caption)
        self.table = table

    def to_dot(self) -> str:
        """The same graph as Graphviz DOT text (``BackpropTable.to_dot``)."""
        return self.table.to_dot()


def save(picture: Figure, path: str | Path) -> Path:
    """Writes ``picture`` to ``path`` atomically: a complete file or none (never half of one).

    The format follows the suffix: ``.png``, ``.pdf`` or ``.svg``; ``.dot`` writes the
    Graphviz text of a :class:`GraphPicture`. Missing parent folders are created; an existing
    file is replaced.

    Returns:
      ``path``.

    Raises:
      DrawError: an unknown suffix. OSError: the file cannot be written (nothing is left
        behind).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    dot = suffix == ".dot"
    if dot and not isinstance(picture, GraphPicture):
        raise DrawError(f"{path}: only the computational graph (draw.graph) has a .dot form.")
    if not dot and suffix not in FORMATS:
        known = ", ".join(FORMATS) + (", .dot" if isinstance(picture, GraphPicture) else "")
        raise DrawError(f"{path}: unknown picture format {suffix or '(no suffix)'!r}; use {known}.")
    if not dot:
        return save_figure(picture, path, suffix[1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(cast(GraphPicture, picture).to_dot().encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _text_width(text: str, size: float) -> float:
    """The width of one line of ``text`` in inches at font ``size``."""
    width, _, _ = text_to_path.get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False
    )
    return float(width) / 72.0


def _one_line(candidates: Sequence[str], width: float, size: float = TITLE_SIZE) -> str:
    """The first of ``candidates`` that fits on one line ``width`` inches wide (else the last)."""
    for text in candidates:
        if _text_width(text, size) <= width:
            return text
    return candidates[-1]


def _style(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    ax.grid(alpha=0.3)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _sup(n: int) -> str:
    return str(n).translate(_SUPERSCRIPT)


def _sub(n: int) -> str:
    return str(n).translate(_SUBSCRIPT)


def _num(value: Any, digits: int = 4) -> str:
    """A number as a projected slide shows it: 4 significant digits, −, ×10⁻⁸."""
    v = float(value)
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return str(v)
    text = f"{v:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}×10{_sup(int(exponent))}"
    return text.replace("-", "−")


def _point_text(p: Sequence[float] | np.ndarray) -> str:
    return "(" + ", ".join(_num(v) for v in p) + ")"


# --------------------------------------------------------------------------------------------
# Evaluating a function of one variable (float64)
# --------------------------------------------------------------------------------------------


def _real(x: Any, what: str, name: str) -> float:
    try:
        value = float(np.asarray(x).item()) if np.ndim(x) == 0 else None
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value):
        raise DrawError(f"draw.{name}: {what} must be a finite real number, got {x!r}.")
    return value


def _scalar(f: Callable[..., Any], x: Any, name: str) -> Any:
    """``f(x)``, checked while tracing to be a real scalar (else a clear DrawError)."""
    out = f(x)
    if jnp.ndim(out) != 0 or not jnp.issubdtype(jnp.result_type(out), jnp.floating):
        raise DrawError(
            f"draw.{name} draws a real function of one variable, but f returned shape "
            f"{jnp.shape(out)} and dtype {jnp.result_type(out)}."
        )
    return out


def _compiled(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as one XLA program in float64, its results as NumPy float64 arrays.

    One compiled program costs a fraction of the op-by-op dispatch of the same derivatives
    (each primitive compiled on its own); the picture's numbers are float64 whatever the
    global setting (``jax.enable_x64`` holds inside this call only).
    """
    with jax.enable_x64(True):
        out = jax.jit(fn)(*(jnp.asarray(a, jnp.float64) for a in args))
        return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out)


def _defined(values: Sequence[float], points: Sequence[float], name: str) -> None:
    for x, value in zip(points, values, strict=True):
        if not math.isfinite(value):
            raise DrawError(f"draw.{name}: f({x:g}) = {value}; f must be defined there.")


def _y_window(ys: np.ndarray, pad: float) -> tuple[float, float]:
    finite = ys[np.isfinite(ys)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    span = hi - lo or max(1.0, abs(hi))
    return lo - pad * span, hi + pad * span


def _window(xlim: Sequence[float] | None, default: tuple[float, float], name: str) -> np.ndarray:
    lo, hi = default if xlim is None else (float(xlim[0]), float(xlim[1]))
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise DrawError(f"draw.{name}: xlim must be (low, high) with low < high, got {xlim!r}.")
    return np.linspace(lo, hi, CURVE_POINTS)


def _variable(f: Callable[..., Any], var: str | None) -> str:
    if var is not None:
        return var
    if isinstance(f, Expression) and len(f.variables) == 1:
        return f.variables[0]
    return "x"


def _label(f: Callable[..., Any], variables: str, label: str | None) -> str:
    """The function's legend label: the given one, its formula, or its name."""
    if label is not None:
        return label
    if isinstance(f, Expression):
        return f"f({variables}) = {f.pretty}"
    name = getattr(f, "__name__", "f")
    name = name if name.isidentifier() and name != "f" else "f"
    return f"{name}({variables})"


def _axis_name(label: str) -> str:
    """The y axis of ``"f(x) = x²"``: ``"f(x)"`` (clipped, so a long label cannot crowd)."""
    return _clip(label.split("=", 1)[0].strip(), 24)


def _function_name(label: str) -> str:
    """``"f"`` of ``"f(x) = x²"``, for f′(x₀)."""
    head = label.split("(", 1)[0].strip()
    return head if head.isidentifier() else "f"


# --------------------------------------------------------------------------------------------
# Secants and the tangent
# --------------------------------------------------------------------------------------------


def secants(
    f: Callable[[Any], Any],
    x0: float,
    steps: Sequence[float] = (2.0, 1.0, 0.5),
    *,
    label: str | None = None,
    var: str | None = None,
    xlim: Sequence[float] | None = None,
) -> Picture:
    r"""The secants through :math:`(x_0, f(x_0))` and :math:`(x_0 + \Delta x, f(x_0 + \Delta x))`
    for each step, and the tangent they approach as :math:`\Delta x \to 0`.

    Each secant's slope is the difference quotient
    :math:`\frac{f(x_0 + \Delta x) - f(x_0)}{\Delta x}`; the tangent's is the derivative
    :math:`f'(x_0)` from :func:`mlgrad.derivative`. The legend lists every slope.

    Args:
      f: a real function of one real variable (JAX-traceable).
      x0: the point of tangency.
      steps: the steps :math:`\Delta x` (nonzero; negative ones draw secants to the left).
      label: the function's legend label (default: its formula or name, e.g. ``"f(x)"``).
      var: the variable's name in the labels (default ``x``, or an :class:`Expression`'s).
      xlim: the x window (default: the points with a margin).

    Returns:
      A :class:`Picture` with ``numbers``: ``x0``, ``f(x0)``, ``steps``, ``secant_slopes``
      (one per step), ``tangent_slope``.

    Example (seed 003: position x(t) = t² at t = 1 for Δt = 2, 1 and 0.5):
      >>> from mlgrad import draw
      >>> picture = draw.secants(lambda t: t**2, 1.0, label="x(t) = t²", var="t")
      >>> picture.numbers["secant_slopes"], picture.numbers["tangent_slope"]
      ([4.0, 3.0, 2.5], 2.0)
    """
    var = _variable(f, var)
    x = _real(x0, "x0", "secants")
    hs = [_real(h, "each step", "secants") for h in steps]
    if not hs or any(h == 0 for h in hs):
        raise DrawError(f"draw.secants: steps must be nonzero numbers, got {tuple(steps)!r}.")
    label = _label(f, var, label)
    points = [x, *(x + h for h in hs)]
    span = max(points) - min(points)
    xs = _window(xlim, (min(points) - 0.25 * span, max(points) + 0.25 * span), "secants")

    def compute(points: Any, xs: Any) -> Any:
        values = jax.vmap(lambda t: _scalar(f, t, "secants"))(points)
        return values, derivatives.derivative(f)(points[0]), jax.vmap(f)(xs)

    values, tangent_slope, ys = _compiled(compute, points, xs)
    _defined(values.tolist(), points, "secants")
    fx0, ends, tangent = float(values[0]), values[1:].tolist(), float(tangent_slope)
    slopes = [(end - fx0) / h for end, h in zip(ends, hs, strict=True)]

    name = _function_name(label)
    picture = Picture(
        8.0,
        5.2,
        {
            "x0": x,
            "f(x0)": fx0,
            "steps": hs,
            "secant_slopes": slopes,
            "tangent_slope": tangent,
        },
        f"secant slopes {', '.join(_num(s) for s in slopes)} for Δ{var} = "
        f"{', '.join(f'{h:g}' for h in hs)} approach the tangent slope "
        f"{name}′({x:g}) = {_num(tangent)}",
    )
    ax = picture.add_subplot()
    ax.plot(xs, ys, color="black", lw=3, label=_clip(label, 44), zorder=3)
    colors = ["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#da8bc3"]
    for i, (h, s, end) in enumerate(zip(hs, slopes, ends, strict=True)):
        color = colors[i % len(colors)]
        ax.plot(
            xs,
            fx0 + s * (xs - x),
            color=color,
            lw=2,
            label=f"secant Δ{var} = {h:g}: slope {_num(s)}",
            zorder=2,
        )
        ax.plot([x + h], [end], "o", color=color, ms=9, mec="black", zorder=5)
    ax.plot(
        xs,
        fx0 + tangent * (xs - x),
        color="#c44e52",
        lw=2.5,
        ls="--",
        label=f"tangent: slope {name}′({x:g}) = {_num(tangent)}",
        zorder=4,
    )
    ax.plot([x], [fx0], "o", color="black", ms=9, zorder=6)
    ax.set_xlim(float(xs[0]), float(xs[-1]))
    ax.set_ylim(*_y_window(ys, 0.08))
    ax.legend(fontsize=LEGEND_SIZE, loc="best", framealpha=0.92)
    _style(ax, var, _axis_name(label))
    ax.set_title(
        _one_line(
            [
                f"Secants of {label} approach the tangent at {var} = {x:g}",
                f"Secants approach the tangent at {var} = {x:g}",
                "Secants and the tangent",
            ],
            7.6,
        ),
        fontsize=TITLE_SIZE,
    )
    return picture


# --------------------------------------------------------------------------------------------
# Taylor polynomials
# --------------------------------------------------------------------------------------------


def _power(var: str, x0: float, k: int) -> str:
    base = var if x0 == 0 else f"({var} − {_num(x0)})" if x0 > 0 else f"({var} + {_num(-x0)})"
    return "" if k == 0 else base if k == 1 else base + _sup(k)


def _terms(coefficients: Sequence[float], ks: Sequence[int], var: str, x0: float) -> list[str]:
    """The nonzero terms ``c (x - x0)^k`` for ``k`` in ``ks``, signed: ["1", "+ x", "− 0.5x²"]."""
    out = []
    for k in ks:
        c = coefficients[k]
        if c == 0:
            continue
        factor = _num(abs(c))
        factor = "" if factor == "1" and k > 0 else factor
        sign = "−" if c < 0 else "+"
        out.append(f"{sign} {factor}{_power(var, x0, k)}")
    return out


def taylor(
    f: Callable[[Any], Any],
    x0: float,
    orders: Sequence[int] = (0, 1, 2, 3, 5),
    *,
    label: str | None = None,
    var: str | None = None,
    xlim: Sequence[float] | None = None,
) -> Picture:
    r"""f and its Taylor polynomials :math:`T_n(x) = \sum_{k=0}^n \frac{f^{(k)}(x_0)}{k!}
    (x - x_0)^k` of the given orders, on one axes.

    The coefficients come from one call of :func:`mlgrad.taylor` of the highest order; each
    legend entry shows the terms an order adds to the one before (``T₃ = T₂ − 0.1667x³``).

    Args:
      f: a real function of one real variable (JAX-traceable).
      x0: the expansion point.
      orders: the polynomial orders to draw (integers >= 0).
      label, var: as in :func:`secants`.
      xlim: the x window (default: ``x0 - 3`` to ``x0 + 3``).

    Returns:
      A :class:`Picture` with ``numbers``: ``x0``, ``orders``, ``coefficients``
      (:math:`f^{(k)}(x_0)/k!` for k = 0 to the highest order).

    Example (seed 004: sin + cos at 0):
      >>> import jax.numpy as jnp
      >>> from mlgrad import draw
      >>> picture = draw.taylor(lambda x: jnp.sin(x) + jnp.cos(x), 0.0)
      >>> [round(c, 4) for c in picture.numbers["coefficients"]]
      [1.0, 1.0, -0.5, -0.1667, 0.0417, 0.0083]
    """
    var = _variable(f, var)
    x = _real(x0, "x0", "taylor")
    if not orders or any(
        isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0 for n in orders
    ):
        raise DrawError(f"draw.taylor: orders must be integers >= 0, got {tuple(orders)!r}.")
    wanted = sorted({int(n) for n in orders})
    label = _label(f, var, label)
    xs = _window(xlim, (x - 3.0, x + 3.0), "taylor")

    def compute(x: Any, xs: Any) -> Any:
        value = _scalar(f, x, "taylor")
        return value, expansions.taylor(f, x, max(wanted)).coefficients, jax.vmap(f)(xs)

    value, coefficient_arrays, ys = _compiled(compute, x, xs)
    _defined([float(value)], [x], "taylor")
    fx0 = float(value)
    coefficients = [float(c) for c in coefficient_arrays]
    if not all(math.isfinite(c) for c in coefficients):
        raise DrawError(
            f"draw.taylor: f has no Taylor expansion at {x:g} (a coefficient is "
            f"not finite: {coefficients})."
        )

    legends = []
    previous: int | None = None
    for n in wanted:
        if previous is None:
            added = _terms(coefficients, range(n + 1), var, x)
            text = " ".join(added).removeprefix("+ ") if added else "0"
            text = "−" + text[2:] if text.startswith("− ") else text
            legends.append(f"T{_sub(n)} = {text}")
        else:
            added = _terms(coefficients, range(previous + 1, n + 1), var, x)
            legends.append(f"T{_sub(n)} = T{_sub(previous)} {' '.join(added)}".rstrip())
        previous = n
    legend_width = max(_text_width(t, LEGEND_SIZE) for t in [label, *legends]) + 0.9
    picture = Picture(
        7.0 + legend_width,
        5.4,
        {"x0": x, "orders": wanted, "coefficients": coefficients},
        f"Taylor polynomials of orders {', '.join(map(str, wanted))} of {label} at "
        f"{var}₀ = {x:g}; coefficients {', '.join(_num(c) for c in coefficients)}",
    )
    ax = picture.add_subplot()
    ax.plot(xs, ys, color="0.72", lw=7, label=_clip(label, 44), zorder=2, solid_capstyle="round")
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    dx = xs - x
    for i, (n, legend) in enumerate(zip(wanted, legends, strict=True)):
        values = sum(coefficients[k] * dx**k for k in range(n + 1))
        ax.plot(
            xs,
            np.broadcast_to(values, xs.shape),
            color=cmap(0.82 * i / max(len(wanted) - 1, 1)),
            lw=2.2,
            label=legend,
            zorder=3,
        )
    ax.plot([x], [fx0], "o", color="black", ms=9, zorder=5)
    ax.set_xlim(float(xs[0]), float(xs[-1]))
    ax.set_ylim(*_y_window(ys, 0.6))
    ax.legend(
        fontsize=LEGEND_SIZE,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        frameon=False,
    )
    _style(ax, var, _axis_name(label))
    ax.set_title(
        _one_line(
            [
                f"Taylor polynomials of {label} at {var}₀ = {x:g}",
                f"Taylor polynomials at {var}₀ = {x:g}",
                "Taylor polynomials",
            ],
            6.2,
        ),
        fontsize=TITLE_SIZE,
    )
    return picture


# --------------------------------------------------------------------------------------------
# Linearization
# --------------------------------------------------------------------------------------------


def linearization(
    f: Callable[[Any], Any],
    x0: float,
    x: float | None = None,
    *,
    label: str | None = None,
    var: str | None = None,
    xlim: Sequence[float] | None = None,
) -> Picture:
    r"""f and its linearization :math:`L(x) = f(x_0) + f'(x_0)(x - x_0)`, and the error at ``x``.

    With ``x``, a second panel draws the error :math:`f(t) - L(t)` near :math:`x_0` (too small
    to see beside f: it shrinks like :math:`(t - x_0)^2`) and the first panel lists
    :math:`L(x)`, :math:`f(x)` and the error, as the notes' :math:`\sqrt{4.001} \approx 2.00025`.

    Args:
      f: a real function of one real variable (JAX-traceable).
      x0: the point to linearize at.
      x: the point to approximate f at (optional).
      label, var: as in :func:`secants`.
      xlim: the x window of the first panel (default: ``x0 ± max(|x0|, 1, 2|x - x0|)``).

    Returns:
      A :class:`Picture` with ``numbers``: ``x0``, ``f(x0)``, ``slope`` (f′(x₀), from
      :func:`mlgrad.linearization`), and with ``x``: ``x``, ``f(x)``, ``L(x)``, ``error``
      (f(x) − L(x)), ``relative_error``.

    Example (seed 003: sqrt at 4, x = 4.001):
      >>> import jax.numpy as jnp
      >>> from mlgrad import draw
      >>> picture = draw.linearization(jnp.sqrt, 4.0, 4.001)
      >>> round(picture.numbers["L(x)"], 12), round(picture.numbers["error"], 12)
      (2.00025, -1.5623e-08)
    """
    var = _variable(f, var)
    a = _real(x0, "x0", "linearization")
    at = None if x is None else _real(x, "x", "linearization")
    if at is not None and at == a:
        raise DrawError("draw.linearization: x must differ from x0 (the error there is 0).")
    label = _label(f, var, label)
    name = _function_name(label)
    numbers: dict[str, Any] = {"x0": a}
    half = max(abs(a), 1.0, 0.0 if at is None else 2 * abs(at - a))
    xs = _window(xlim, (a - half, a + half), "linearization")
    b = a + 1.0 if at is None else at
    zoom = np.linspace(a - 2 * abs(b - a), a + 2 * abs(b - a), CURVE_POINTS)

    def compute(a: Any, b: Any, xs: Any, zoom: Any) -> Any:
        lin = cast(Callable[[Any], Any], expansions.linearization(f, a))
        values = jax.vmap(lambda t: _scalar(f, t, "linearization"))(jnp.stack([a, b]))
        curves = jax.vmap(f)(xs), lin(xs), jax.vmap(f)(zoom) - lin(zoom)
        return values, lin(b), derivatives.derivative(f)(a), curves

    values, lb, slope_array, (ys, tangent, errors) = _compiled(compute, a, b, xs, zoom)
    checked = 1 if at is None else 2
    _defined(values.tolist()[:checked], [a, b][:checked], "linearization")
    fa, slope = float(values[0]), float(slope_array)
    numbers.update({"f(x0)": fa, "slope": slope})
    if at is not None:
        fx, lx = float(values[1]), float(lb)
        numbers.update(
            {
                "x": at,
                "f(x)": fx,
                "L(x)": lx,
                "error": fx - lx,
                "relative_error": (fx - lx) / fx if fx else math.inf,
            }
        )

    offset = f"{var} − {_num(a)}" if a >= 0 else f"{var} + {_num(-a)}"
    line = f"L({var}) = {_num(fa)} {'−' if slope < 0 else '+'} {_num(abs(slope))}({offset})"
    caption = f"linearization of {label} at {var}₀ = {a:g}: {line}"
    if at is not None:
        caption += (
            f"; at {var} = {at:g}: L = {numbers['L(x)']:.10g}, f = {numbers['f(x)']:.10g}, "
            f"error {_num(numbers['error'])}"
        )
    picture = Picture(13.0 if at is not None else 8.0, 5.4, numbers, caption)
    axes = picture.subplots(1, 2 if at is not None else 1, squeeze=False)[0]
    ax = axes[0]
    ax.plot(xs, ys, color="black", lw=3, label=_clip(label, 44), zorder=3)
    ax.plot(xs, tangent, color="#c44e52", lw=2.5, ls="--", label=line, zorder=4)
    ax.plot([a], [fa], "o", color="black", ms=9, zorder=5, label=f"{var}₀ = {a:g}")
    if at is not None:
        ax.plot(
            [at], [numbers["L(x)"]], "D", color="#4c72b0", ms=8, zorder=6, label=f"{var} = {at:g}"
        )
        ax.text(
            0.97,
            0.04,
            f"L({at:g}) = {numbers['L(x)']:.10g}\n"
            f"{name}({at:g}) = {numbers['f(x)']:.10g}\n"
            f"error {name} − L = {_num(numbers['error'])}\n"
            f"relative error {_num(numbers['relative_error'])}",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            multialignment="left",
            fontsize=NOTE_SIZE,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.6", "alpha": 0.95},
            zorder=7,
        )
    ax.set_xlim(float(xs[0]), float(xs[-1]))
    ax.set_ylim(*_y_window(ys, 0.1))
    ax.legend(fontsize=LEGEND_SIZE, loc="upper left", framealpha=0.92)
    _style(ax, var, _axis_name(label))
    ax.set_title(f"{name} and its tangent line L", fontsize=LABEL_SIZE)
    if at is not None:
        err_ax = axes[1]
        err_ax.axhline(0.0, color="0.4", lw=1)
        err_ax.plot(zoom, errors, color="#4c72b0", lw=2.5, label=f"{name}({var}) − L({var})")
        err_ax.plot([a], [0.0], "o", color="black", ms=9, zorder=5)
        err_ax.plot(
            [at],
            [numbers["error"]],
            "D",
            color="#4c72b0",
            ms=9,
            mec="black",
            zorder=5,
            label=f"error at {var} = {at:g}: {_num(numbers['error'])}",
        )
        err_ax.legend(fontsize=LEGEND_SIZE, loc="best", framealpha=0.92)
        _style(err_ax, var, "error")
        from matplotlib.ticker import MaxNLocator

        err_ax.xaxis.set_major_locator(MaxNLocator(5))
        err_ax.yaxis.get_offset_text().set_fontsize(TICK_SIZE)
        err_ax.set_title(f"the error near {var}₀ is second order", fontsize=LABEL_SIZE)
    picture.suptitle(
        _one_line(
            [f"Linearization of {label} at {var}₀ = {a:g}", f"Linearization at {var}₀ = {a:g}"],
            picture.get_figwidth() - 0.4,
        ),
        fontsize=TITLE_SIZE,
    )
    return picture


# --------------------------------------------------------------------------------------------
# Functions of two variables
# --------------------------------------------------------------------------------------------


def _verdict(eigenvalues: np.ndarray) -> str:
    """The notes' reading of the Hessian: cup, upside-down cup or saddle (or flat)."""
    scale = max(1.0, float(np.abs(eigenvalues).max()))
    tol = 1e-9 * scale
    if np.all(eigenvalues > tol):
        return "cup"
    if np.all(eigenvalues < -tol):
        return "upside-down cup"
    if np.any(eigenvalues > tol) and np.any(eigenvalues < -tol):
        return "saddle"
    return "flat"


_VERDICT_TEXT = {
    "cup": "a cup",
    "upside-down cup": "an upside-down cup",
    "saddle": "a saddle",
    "flat": "flat along an eigen-direction",
}
_EXTREMUM = {
    "cup": " (a minimum)",
    "upside-down cup": " (a maximum)",
    "saddle": "",
    "flat": " (the test is inconclusive)",
}


def _two_variables(f: Callable[..., Any]) -> Callable[[Any], Any]:
    """A function of one length-2 vector (an :class:`Expression` of two variables wrapped)."""
    if isinstance(f, Expression):
        if len(f.variables) != 2:
            raise DrawError(
                f"draw.surface draws a function of two variables; {f.text!r} has "
                f"{len(f.variables)}: {', '.join(f.variables) or 'none'}."
            )
        return lambda p: f(p[0], p[1])
    return f


def surface(
    f: Callable[[Any], Any],
    x0: Sequence[float] | None = None,
    *,
    extent: float | None = None,
    view: View = "both",
    label: str | None = None,
    names: tuple[str, str] = ("x", "y"),
    grid: int = 81,
) -> Picture:
    r"""A function of two variables around ``x0``: contours, the gradient field, and the
    Hessian's eigen-directions with their eigenvalues and the notes' verdict.

    "The second-order derivative tells us whether the function looks like a cup or an
    upside-down cup": all eigenvalues of the Hessian :math:`H(x_0)` positive, a cup; all
    negative, an upside-down cup; both signs, a saddle. Each eigen-direction :math:`v` is drawn
    through :math:`x_0`, labelled with its eigenvalue :math:`\lambda = v^\top H v` (the
    curvature of f along it); the 3-D view draws f along it.

    Args:
      f: a scalar function of a length-2 vector ``p`` (``lambda p: p[0]**2 - p[1]**2``), or an
        :class:`Expression` of two variables.
      x0: the point to analyse (default the origin): a critical point when the gradient is 0.
      extent: the half-width of the square window around ``x0`` (default 2).
      view: ``"both"`` (contours beside the 3-D surface), ``"contour"`` or ``"3d"``.
      label: the function's label (default: its formula or name).
      names: the two variables' names in the labels.
      grid: grid points per side.

    Returns:
      A :class:`Picture` with ``numbers``: ``x0``, ``f(x0)``, ``gradient``, ``hessian``
      (2 x 2, from :func:`mlgrad.hessian`), ``eigenvalues`` (ascending), ``eigenvectors``
      (columns), ``verdict`` (``"cup"``, ``"upside-down cup"``, ``"saddle"`` or ``"flat"``)
      and ``critical`` (whether the gradient is 0 at ``x0``).

    Example (seed 001: the saddle x² − y², Hessian diag(2, −2)):
      >>> from mlgrad import draw
      >>> picture = draw.surface(lambda p: p[0] ** 2 - p[1] ** 2)
      >>> picture.numbers["eigenvalues"].tolist(), picture.numbers["verdict"]
      ([-2.0, 2.0], 'saddle')
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.patches import Patch

    if view not in ("both", "contour", "3d"):
        raise DrawError(f"draw.surface: view must be 'both', 'contour' or '3d', got {view!r}.")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 5:
        raise DrawError(f"draw.surface: grid must be an integer >= 5, got {grid!r}.")
    if label is None:
        label = _label(f, ", ".join(names), None)
    g = _two_variables(f)
    center = np.zeros(2) if x0 is None else np.asarray(x0, np.float64).reshape(-1)
    if center.shape != (2,) or not np.all(np.isfinite(center)):
        raise DrawError(f"draw.surface: x0 must be two finite numbers, got {x0!r}.")
    half = 2.0 if extent is None else _real(extent, "extent", "surface")
    if half <= 0:
        raise DrawError(f"draw.surface: extent must be positive, got {extent!r}.")

    axis_x = np.linspace(center[0] - half, center[0] + half, grid)
    axis_y = np.linspace(center[1] - half, center[1] + half, grid)
    xx, yy = np.meshgrid(axis_x, axis_y)
    arrows = 11
    qx, qy = np.meshgrid(
        np.linspace(center[0] - 0.9 * half, center[0] + 0.9 * half, arrows),
        np.linspace(center[1] - 0.9 * half, center[1] + 0.9 * half, arrows),
    )

    def compute(p0: Any, flat: Any, at: Any) -> Any:
        value = g(p0)
        if jnp.ndim(value) != 0 or not jnp.issubdtype(jnp.result_type(value), jnp.floating):
            raise DrawError(
                "draw.surface draws a real scalar function of a length-2 vector; f(x0) has "
                f"shape {jnp.shape(value)} and dtype {jnp.result_type(value)}."
            )
        grad = derivatives.gradient(g)
        return value, grad(p0), jacobians.hessian(g)(p0), jax.vmap(g)(flat), jax.vmap(grad)(at)

    value_array, grad, hess, zz, field = _compiled(
        compute,
        center,
        np.stack([xx.ravel(), yy.ravel()], axis=1),
        np.stack([qx.ravel(), qy.ravel()], axis=1),
    )
    value, zz = float(value_array), zz.reshape(xx.shape)
    if not (math.isfinite(value) and np.all(np.isfinite(hess)) and np.all(np.isfinite(grad))):
        raise DrawError(f"draw.surface: f, its gradient or Hessian is not finite at {x0!r}.")
    hess = 0.5 * (hess + hess.T)
    eigenvalues, eigenvectors = np.linalg.eigh(hess)
    for k in range(2):  # a readable sign: the larger component positive
        v = eigenvectors[:, k]
        if v[np.argmax(np.abs(v))] < 0:
            eigenvectors[:, k] = -v
    verdict = _verdict(eigenvalues)
    scale = max(1.0, float(np.abs(hess).max()) * half)
    critical = bool(np.linalg.norm(grad) <= 1e-8 * scale)
    where = _point_text(center)
    if critical:
        reading = f"{_VERDICT_TEXT[verdict]}{_EXTREMUM[verdict]} at {_point_text(center)}"
    else:
        reading = (
            f"at {_point_text(center)} not a critical point (∇f ≠ 0), curved like "
            f"{_VERDICT_TEXT[verdict]}"
        )
    numbers = {
        "x0": center,
        "f(x0)": value,
        "gradient": grad,
        "hessian": hess,
        "eigenvalues": eigenvalues,
        "eigenvectors": eigenvectors,
        "verdict": verdict,
        "critical": critical,
    }
    caption = (
        f"{label}: {reading}; Hessian [[{_num(hess[0, 0])}, {_num(hess[0, 1])}], "
        f"[{_num(hess[1, 0])}, {_num(hess[1, 1])}]], eigenvalues "
        f"{', '.join(_num(v) for v in eigenvalues)}"
    )
    width = {"both": 14.0, "contour": 8.0, "3d": 7.6}[view]
    picture = Picture(width, 6.4, numbers, caption)

    lo, hi = float(zz[np.isfinite(zz)].min()), float(zz[np.isfinite(zz)].max())
    if lo < value < hi:
        norm: Normalize = TwoSlopeNorm(vcenter=value, vmin=lo, vmax=hi)
        cmap = colormaps["RdBu_r"]
    else:
        norm, cmap = Normalize(lo, hi if hi > lo else lo + 1.0), colormaps["viridis"]
    colors = {"up": "#b2182b", "down": "#2166ac", "flat": "#1b7837"}

    def direction(lam: float) -> tuple[str, str]:
        if lam > 1e-9 * scale:
            return colors["up"], "curves up"
        if lam < -1e-9 * scale:
            return colors["down"], "curves down"
        return colors["flat"], "flat"

    reach = 0.8 * half
    panels = {"both": (1, 2), "contour": (1, 1), "3d": (1, 1)}[view]
    if view in ("both", "contour"):
        ax = picture.add_subplot(*panels, 1)
        levels = np.linspace(lo, hi, 21) if hi > lo else 5
        filled = ax.contourf(xx, yy, zz, levels=levels, cmap=cmap, norm=norm, alpha=0.9)
        ax.contour(xx, yy, zz, levels=levels, colors="black", linewidths=0.5, alpha=0.45)
        bar = picture.colorbar(filled, ax=ax, pad=0.02, shrink=0.9)
        bar.set_label(_axis_name(label), fontsize=LABEL_SIZE)
        bar.ax.tick_params(labelsize=TICK_SIZE)
        ax.quiver(
            qx.ravel(),
            qy.ravel(),
            field[:, 0],
            field[:, 1],
            color="0.2",
            alpha=0.55,
            angles="xy",
            width=0.004,
        )
        handles: list[Any] = [Patch(color="0.4", alpha=0.6, label="gradient ∇f (arrows)")]
        for k in range(2):
            lam, v = float(eigenvalues[k]), eigenvectors[:, k]
            color, how = direction(lam)
            ends = np.stack([center - reach * v, center + reach * v])
            (line,) = ax.plot(
                ends[:, 0],
                ends[:, 1],
                color=color,
                lw=3.5,
                solid_capstyle="round",
                label=f"λ = {_num(lam)} along ({_num(v[0], 3)}, {_num(v[1], 3)}): {how}",
                zorder=5,
            )
            handles.append(line)
        (star,) = ax.plot(
            [center[0]],
            [center[1]],
            "*",
            color="gold",
            mec="black",
            ms=20,
            zorder=6,
            label=f"{where}: {verdict}",
        )
        handles.append(star)
        ax.legend(
            handles=handles,
            fontsize=LEGEND_SIZE - 1,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.11),
            ncols=2,
            frameon=False,
        )
        entries = [_num(v) for v in hess.ravel()]
        w = max(map(len, entries))
        ax.text(
            0.02,
            0.03,
            f"Hessian at {where}\n[ {entries[0]:>{w}}  {entries[1]:>{w}} ]\n"
            f"[ {entries[2]:>{w}}  {entries[3]:>{w}} ]",
            transform=ax.transAxes,
            fontsize=NOTE_SIZE,
            family="DejaVu Sans Mono",
            va="bottom",
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.6", "alpha": 0.92},
            zorder=7,
        )
        ax.set_aspect("equal")
        ax.set_xlim(axis_x[0], axis_x[-1])
        ax.set_ylim(axis_y[0], axis_y[-1])
        _style(ax, names[0], names[1])
        ax.grid(False)
        ax.set_title("contours, gradient field, Hessian eigen-directions", fontsize=LABEL_SIZE)
    if view in ("both", "3d"):
        ax3: Any = picture.add_subplot(*panels, panels[1], projection="3d")  # an Axes3D
        ax3.plot_surface(
            xx, yy, zz, cmap=cmap, norm=norm, alpha=0.75, linewidth=0, antialiased=True
        )
        t = np.linspace(-reach, reach, 101)
        paths = [center[None, :] + t[:, None] * eigenvectors[None, :, k] for k in range(2)]
        along = _compiled(jax.vmap(g), np.concatenate(paths)).reshape(2, -1)
        for k in range(2):
            color, how = direction(float(eigenvalues[k]))
            ax3.plot(
                paths[k][:, 0],
                paths[k][:, 1],
                along[k],
                color=color,
                lw=4,
                zorder=10,
                label=f"f along λ = {_num(eigenvalues[k])}: {how}",
            )
        ax3.scatter(
            [center[0]], [center[1]], [value], color="gold", edgecolor="black", s=160, zorder=11
        )
        ax3.set_xlabel(names[0], fontsize=LABEL_SIZE)
        ax3.set_ylabel(names[1], fontsize=LABEL_SIZE)
        ax3.set_zlabel(_axis_name(label), fontsize=LABEL_SIZE)
        ax3.tick_params(labelsize=TICK_SIZE - 2)
        ax3.legend(fontsize=LEGEND_SIZE - 1, loc="upper left")
        ax3.set_title(f"{_VERDICT_TEXT[verdict]}", fontsize=LABEL_SIZE)
    picture.suptitle(
        _one_line(
            [f"{label}: {reading}", reading, f"{_point_text(center)}: {verdict}"],
            width - 0.4,
        ),
        fontsize=TITLE_SIZE,
    )
    return picture


# --------------------------------------------------------------------------------------------
# The computational graph of backprop_table
# --------------------------------------------------------------------------------------------


def _short_value(v: Any) -> str:
    """A value or adjoint in a node's label: the number, a short array, or its shape."""
    if v is None:
        return "none (not a float)"
    if isinstance(v, jax.ShapeDtypeStruct):
        return "×".join(map(str, v.shape)) + " (not stored)"
    a = np.asarray(v)
    if a.ndim == 0:
        return _num(a.item()) if a.dtype.kind in "fc" else str(a.item())
    if a.size <= 3:
        return "[" + ", ".join(_num(x) for x in a.ravel()) + "]"
    return "array " + "×".join(map(str, a.shape))


def _powers(text: str) -> str:
    """``a = x^2`` as the notes write it: ``a = x²``."""
    return re.sub(r"\^(\d+)\b", lambda m: _sup(int(m.group(1))), text)


def _clip(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def graph(
    f: Callable[..., Any] | backprop.BackpropTable, *args: Any, max_nodes: int = 60
) -> GraphPicture:
    """The computational graph of :func:`mlgrad.backprop_table`, laid out top-down.

    One node per row of the table (inputs, then each intermediate variable, merged as the table
    merges them), labelled with its definition (its operation), its value (the forward pass)
    and its adjoint ∂out/∂v (the backward pass); each edge ``u -> v`` with the local partial
    derivative ∂v/∂u. A node sits one level below its deepest operand (its topological depth).
    Rendering needs no system package; ``picture.to_dot()`` gives the same graph as Graphviz
    DOT text.

    Args:
      f: a scalar-valued JAX function, or a ``BackpropTable`` already computed (then no args).
      *args: the point, as for :func:`mlgrad.backprop_table`.
      max_nodes: a larger graph is refused (DrawError): draw it with Graphviz from
        ``backprop_table(f, *args).to_dot()``.

    Returns:
      A :class:`GraphPicture`: ``table`` (the ``BackpropTable``), ``to_dot()``, and
      ``numbers``: ``values`` and ``adjoints`` (by variable name), ``partials`` (by
      ``(v, u)``: ∂v/∂u), ``depth`` (by variable name).

    Example (seed 003, section 6.2: the intermediate variables a to f):
      >>> import jax.numpy as jnp
      >>> from mlgrad import draw
      >>> def f(x):
      ...     return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))
      >>> picture = draw.graph(f, 0.5)
      >>> picture.numbers["depth"]
      {'x': 0, 'a': 1, 'b': 2, 'c': 3, 'd': 4, 'e': 4, 'f': 5}
      >>> round(float(picture.numbers["adjoints"]["x"]), 4)
      -1.3604
    """
    from matplotlib.patches import FancyArrowPatch

    if isinstance(f, backprop.BackpropTable):
        if args:
            raise TypeError("draw.graph: pass either a BackpropTable or a function and a point.")
        table = f
    else:
        table = backprop.backprop_table(f, *args)
    rows = [*table.inputs, *table.rows]
    if len(rows) > max_nodes:
        raise DrawError(
            f"draw.graph: the graph has {len(rows)} nodes, more than max_nodes={max_nodes} can "
            "show legibly; raise max_nodes, or render backprop_table(f, *args).to_dot() with "
            "Graphviz (dot -Tsvg)."
        )
    edges = table.edges()
    parents: dict[str, list[str]] = {r.name: [] for r in rows}
    for parent, child, _ in edges:
        parents[child].append(parent)
    depth: dict[str, int] = {}
    for r in rows:  # forward order: operands come first
        depth[r.name] = 1 + max((depth[p] for p in parents[r.name]), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for r in rows:
        levels[depth[r.name]].append(r.name)

    out = table.output
    formulas = dict(zip((r.name for r in table.rows), table.formulas, strict=True))
    labels = {}
    for r in rows:
        head = f"{r.name} (input)" if r.operation == "input" else _clip(_powers(formulas[r.name]))
        labels[r.name] = (
            f"{head}\nvalue {_short_value(r.value)}\n∂{out}/∂{r.name} = {_short_value(r.adjoint)}"
        )
    notes = {
        (parent, child): f"∂{child}/∂{parent} = {_short_value(partial)}"
        for parent, child, partial in edges
        if partial is not None
    }
    node_size = 12
    box_width = max(
        _text_width(line, node_size) for text in labels.values() for line in text.splitlines()
    )
    note_width = max((_text_width(t, node_size - 2) for t in notes.values()), default=0.0)
    # Inches between node centres: room for the boxes, and for the partials of two edges
    # that leave one node side by side (their labels sit 0.58 of the way down).
    dx = max(box_width + 0.7, (note_width + 0.25) / 0.58)
    dy = 1.6
    # Positions: each level centred; a node placed under the mean position of its operands.
    x: dict[str, float] = {}
    for level in levels:
        keyed = sorted(
            enumerate(level),
            key=lambda item: (
                np.mean([x[p] for p in parents[item[1]]]) if parents[item[1]] else 0.0,
                item[0],
            ),
        )
        for slot, (_, name) in enumerate(keyed):
            x[name] = (slot - (len(keyed) - 1) / 2) * dx
    y = {name: -depth[name] * dy for name in x}
    widest = max(len(level) for level in levels)
    width = max(6.4, widest * dx + 1.2)
    height = len(levels) * dy + 0.9

    values = {r.name: r.value for r in rows}
    adjoints = {r.name: r.adjoint for r in rows}
    partials = {(child, parent): p for parent, child, p in edges}
    caption = (
        f"computational graph of {len(rows)} variables: output {out} = "
        f"{_short_value(values.get(out))}; gradient "
        + ", ".join(f"∂{out}/∂{r.name} = {_short_value(r.adjoint)}" for r in table.inputs)
    )
    picture = GraphPicture(
        width,
        height,
        {"values": values, "adjoints": adjoints, "partials": partials, "depth": dict(depth)},
        caption,
        table,
    )
    ax = picture.add_subplot()
    ax.set_axis_off()
    fills = {"input": "#d9f0d3", "output": "#fde0c5", "other": "#dbe6f4"}
    boxes = {}
    for r in rows:
        kind = "input" if r.operation == "input" else "output" if r.name == out else "other"
        text = ax.text(
            x[r.name],
            y[r.name],
            labels[r.name],
            ha="center",
            va="center",
            fontsize=node_size,
            linespacing=1.35,
            zorder=3,
            bbox={"boxstyle": "round,pad=0.45", "fc": fills[kind], "ec": "0.35", "lw": 1.2},
        )
        text.set_in_layout(False)
        boxes[r.name] = text
    fan_out = {name: 0 for name in x}
    for parent, _, _ in edges:
        fan_out[parent] += 1
    for parent, child, _ in edges:
        ddx, ddy = x[child] - x[parent], y[child] - y[parent]
        chord = math.hypot(ddx, ddy)
        # An edge that skips a level bows outward, around the nodes between its ends: its
        # middle is pushed sideways by rad * chord / 2, past half a box.
        rad = 0.0
        if depth[child] - depth[parent] > 1:
            rad = min(1.0, (box_width / 2 + 0.35) / (chord / 2))
            rad = rad if (x[parent] + x[child]) / 2 <= 0 else -rad
        arrow = FancyArrowPatch(
            (x[parent], y[parent]),
            (x[child], y[child]),
            arrowstyle="-|>",
            mutation_scale=16,
            lw=1.4,
            color="0.3",
            connectionstyle=f"arc3,rad={rad}",
            patchA=boxes[parent].get_bbox_patch(),
            patchB=boxes[child].get_bbox_patch(),
            shrinkA=1,
            shrinkB=1,
            zorder=4,
        )
        arrow.set_in_layout(False)
        ax.add_patch(arrow)
        if (parent, child) not in notes:
            continue
        # The label sits on the curve (arc3's quadratic Bezier, control point pushed by rad
        # perpendicular to the chord), a little nearer the child when edges fan out.
        t = 0.58 if fan_out[parent] > 1 and len(parents[child]) == 1 else 0.5
        cx = (x[parent] + x[child]) / 2 + rad * ddy
        cy = (y[parent] + y[child]) / 2 - rad * ddx
        lx = (1 - t) ** 2 * x[parent] + 2 * t * (1 - t) * cx + t**2 * x[child]
        ly = (1 - t) ** 2 * y[parent] + 2 * t * (1 - t) * cy + t**2 * y[child]
        note = ax.text(
            lx,
            ly,
            notes[(parent, child)],
            ha="center",
            va="center",
            fontsize=node_size - 2,
            color="#303060",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
        )
        note.set_in_layout(False)
    left = min(x.values()) - box_width / 2 - 0.45
    right = max(x.values()) + box_width / 2 + 0.45
    ax.set_xlim(min(left, -width / 2 + 0.3), max(right, width / 2 - 0.3))
    ax.set_ylim(-(len(levels) - 1) * dy - 0.6, 0.6)
    ax.set_aspect("equal")
    name = getattr(f, "__name__", "f") if callable(f) else "f"
    name = name if name.isidentifier() else "f"
    ax.set_title(
        _one_line(
            [
                f"Backpropagation: values (forward) and adjoints ∂{out}/∂v (backward) of {name}",
                f"Backpropagation: values and adjoints ∂{out}/∂v",
                f"Values and adjoints ∂{out}/∂v",
            ],
            width - 0.4,
        ),
        fontsize=TITLE_SIZE,
    )
    return picture


# --------------------------------------------------------------------------------------------
# Formulas
# --------------------------------------------------------------------------------------------

_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "abs": jnp.abs,
    "tanh": jnp.tanh,
    "sinh": jnp.sinh,
    "cosh": jnp.cosh,
    "arctan": jnp.arctan,
    "arcsin": jnp.arcsin,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Pow: 4}


class Expression:
    """A formula of named variables as a JAX function of them, e.g. ``"sin(x) + cos(x)"``.

    Attributes:
      text: the formula as given.
      variables: the variables, in the order the function takes them.
      pretty: the formula for a label (``x^2 - y^2`` reads ``x² − y²``).
    """

    __signature__: inspect.Signature
    __name__: str

    def __init__(self, text: str, variables: Sequence[str] | None = None) -> None:
        self.text = text
        tree = _parse(text)
        free = sorted(_free_names(tree))
        if variables is None:
            chosen = tuple(free) if free else ("x",)
        else:
            chosen = tuple(variables)
            bad = [v for v in chosen if not v.isidentifier() or v in _FUNCTIONS]
            unknown = [v for v in free if v not in chosen]
            if bad or len(set(chosen)) != len(chosen):
                raise DrawError(f"expression: invalid variable names {chosen!r}.")
            if unknown:
                raise DrawError(
                    f"expression {text!r}: unknown name(s) {', '.join(unknown)}; the variables "
                    f"are {', '.join(chosen)} (functions: {', '.join(sorted(_FUNCTIONS))}; "
                    "constants: pi, e)."
                )
        self.variables = chosen
        self.pretty = _pretty(tree.body)
        self._tree = tree.body
        self.__name__ = "f"
        self.__signature__ = inspect.Signature(
            [inspect.Parameter(v, inspect.Parameter.POSITIONAL_OR_KEYWORD) for v in chosen]
        )

    def __call__(self, *args: Any) -> Any:
        if len(args) != len(self.variables):
            raise TypeError(
                f"{self.text!r} takes {len(self.variables)} argument(s) "
                f"({', '.join(self.variables)}), got {len(args)}."
            )
        return _evaluate(self._tree, dict(zip(self.variables, args, strict=True)))

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, variables={self.variables!r})"


def expression(text: str, variables: Sequence[str] | None = None) -> Expression:
    """A formula as a JAX function: ``expression("x^2 - y^2")(1.0, 2.0)`` is ``-3.0``.

    The formula is Python arithmetic (``+ - * / **``, with ``^`` also a power) of numbers,
    variables, the constants ``pi`` and ``e``, and the functions sin, cos, tan, exp, log, sqrt,
    abs, tanh, sinh, cosh, arctan, arcsin, sigmoid, relu and softplus (jax.numpy's). Nothing
    else is evaluated (no attribute, import or other name), so a formula from the command line
    is safe to run.

    Args:
      text: the formula.
      variables: the variables in argument order (default: the formula's names, sorted).

    Returns:
      An :class:`Expression`: callable with one argument per variable, with ``pretty`` (the
      formula for a label) and a signature naming its variables (``backprop_table`` shows
      them).

    Raises:
      DrawError: a formula that does not parse, or uses anything else.

    Example:
      >>> from mlgrad import draw
      >>> f = draw.expression("sqrt(x^2 + exp(x^2))")
      >>> f.variables, f.pretty
      (('x',), '√(x² + exp(x²))')
    """
    if not isinstance(text, str):
        raise DrawError(f"expression: the formula must be a string, got {type(text).__name__}.")
    return Expression(text, variables)


def _parse(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text.replace("^", "**").strip(), mode="eval")
    except (RecursionError, MemoryError):
        raise DrawError(f"cannot read the formula {text[:40]!r}...: too deeply nested.") from None
    except SyntaxError as e:
        raise DrawError(
            f"cannot read the formula {text!r}: {e.msg}. Write it as Python arithmetic, e.g. "
            "'sin(x) + x^2'."
        ) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in _FUNCTIONS or node.keywords or len(node.args) != 1:
                called = name or ast.unparse(node.func)
                raise DrawError(
                    f"formula {text!r}: {called}(...) is not one of the functions of one "
                    f"argument: {', '.join(sorted(_FUNCTIONS))}."
                )
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise DrawError(f"formula {text!r}: {node.value!r} is not a real number.")
        elif (
            not isinstance(
                node,
                ast.Expression
                | ast.BinOp
                | ast.UnaryOp
                | ast.Name
                | ast.Load
                | ast.USub
                | ast.UAdd,
            )
            and type(node) not in _BINARY
        ):
            raise DrawError(
                f"formula {text!r}: {ast.unparse(node) if isinstance(node, ast.expr) else ''} "
                "is not arithmetic (use + - * / ^ and the functions "
                f"{', '.join(sorted(_FUNCTIONS))})."
            )
    functions = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in functions and node.id in _FUNCTIONS:
            raise DrawError(f"formula {text!r}: {node.id} is a function; write {node.id}(x).")
    return tree


def _free_names(tree: ast.AST) -> set[str]:
    functions = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and id(n) not in functions and n.id not in _CONSTANTS
    }


def _evaluate(node: ast.expr, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BinOp):
        right = node.right
        if (
            isinstance(node.op, ast.Pow)
            and isinstance(right, ast.Constant)
            and isinstance(right.value, int)
            and abs(right.value) <= 64
        ):  # x^2 stays an integer power (the notes' a = x²)
            return _evaluate(node.left, env) ** right.value
        a, b = _evaluate(node.left, env), _evaluate(right, env)
        if isinstance(a, float) and isinstance(b, float):  # numbers only: IEEE, no exceptions
            with np.errstate(all="ignore"):
                return float(_BINARY[type(node.op)](np.float64(a), np.float64(b)))
        return _BINARY[type(node.op)](a, b)
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](_evaluate(node.args[0], env))
    if isinstance(node, ast.Name):
        return env[node.id] if node.id in env else _CONSTANTS[node.id]
    assert isinstance(node, ast.Constant) and isinstance(node.value, int | float)
    return float(node.value)  # never Python's unbounded integers: 9^9^9 is inf, not a hang


def _pretty(node: ast.expr, parent: int = 0) -> str:
    """The formula as a label shows it: x², √x, 2x, −, with parentheses only where needed."""
    if isinstance(node, ast.Constant):
        return f"{node.value:g}" if isinstance(node.value, float) else str(node.value)
    if isinstance(node, ast.Name):
        return "π" if node.id == "pi" else node.id
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        arg = node.args[0]
        if node.func.id == "sqrt":
            inner = _pretty(arg)
            return "√" + (inner if isinstance(arg, ast.Name | ast.Constant) else f"({inner})")
        return f"{node.func.id}({_pretty(arg)})"
    if isinstance(node, ast.UnaryOp):
        text = ("−" if isinstance(node.op, ast.USub) else "+") + _pretty(node.operand, 3)
        return f"({text})" if parent >= 3 else text
    assert isinstance(node, ast.BinOp)
    rank = _PRECEDENCE[type(node.op)]
    if isinstance(node.op, ast.Pow):
        base = _pretty(node.left, 5)
        e = node.right
        if isinstance(e, ast.Constant) and isinstance(e.value, int) and e.value >= 0:
            text = base + _sup(e.value)
        else:
            text = f"{base}^{_pretty(e, 5)}"
    else:
        left = _pretty(node.left, rank)
        right = _pretty(node.right, rank + 1)  # a - (b - c) keeps its parentheses
        if isinstance(node.op, ast.Mult):
            implicit = isinstance(node.left, ast.Constant) and not isinstance(
                node.right, ast.Constant
            )
            text = f"{left}{right}" if implicit else f"{left}·{right}"
        else:
            symbol = {ast.Add: " + ", ast.Sub: " − ", ast.Div: "/"}[type(node.op)]
            text = f"{left}{symbol}{right}"
    return f"({text})" if rank < parent else text
