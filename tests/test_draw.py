"""mlgrad.draw: the numbers behind each picture, against references computed independently.

Secant slopes against the difference quotient by hand, the tangent against the closed-form
derivative, Taylor polynomials against the closed-form series, the Hessian's eigenvalues
against ``numpy.linalg.eigvalsh`` of the Hessian by hand, every node value and adjoint of the
graph (drawn and in ``to_dot()``) against ``jax.vjp`` of the computation downstream of that
node. Each check reads the figure's own artists (line data, legend and node texts), not only
``picture.numbers``. Then ``mlgrad draw`` (exit codes, nothing half-written) and the example
script. Everything draws on the Agg canvas of the figure itself (no pyplot).
"""

from __future__ import annotations

import importlib.util
import io
import math
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pydot
import pytest
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.quiver import Quiver
from matplotlib.text import Text

import mlgrad
from mlgrad import draw

ROOT = Path(__file__).resolve().parents[1]
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def number(text: str) -> float:
    """A number as the pictures print it (−, ×10⁻⁸) as a float."""
    text = text.strip().replace("−", "-")
    if "×10" in text:
        mantissa, exponent = text.split("×10")
        return float(mantissa) * 10.0 ** int(exponent.translate(_SUPERSCRIPT))
    return float(text)


def lines_by_label(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def assert_readable(fig: Figure) -> None:
    """Every title is one line inside the figure; the fonts are legible when projected."""
    fig.set_dpi(50)  # the layout scales with the dpi: a faster draw, the same verdict
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax.title for ax in fig.axes if ax.get_title()] + list(fig.texts)
    assert titles
    for title in titles:
        assert "\n" not in title.get_text(), title.get_text()
        extent = title.get_window_extent(renderer)
        assert fig.bbox.x0 - 1 <= extent.x0 and extent.x1 <= fig.bbox.x1 + 1, title.get_text()
        assert title.get_fontsize() >= 13
    for ax in fig.axes:
        for label in ax.get_xticklabels() + ax.get_yticklabels():
            assert label.get_fontsize() >= 10
        if ax.get_xlabel():
            assert ax.xaxis.label.get_fontsize() >= 12


# --------------------------------------------------------------------------------------------
# secants


def test_secant_slopes_are_the_difference_quotients_and_the_tangent_is_the_derivative():
    x0, steps = 0.3, (2.0, 1.0, 0.5, -0.25)
    picture = draw.secants(jnp.sin, x0, steps)
    assert isinstance(picture, Figure)
    by_hand = [(math.sin(x0 + h) - math.sin(x0)) / h for h in steps]
    np.testing.assert_allclose(picture.numbers["secant_slopes"], by_hand, rtol=1e-12)
    assert picture.numbers["tangent_slope"] == pytest.approx(math.cos(x0), rel=1e-12)

    (ax,) = picture.axes
    lines = lines_by_label(ax)
    secants = [(label, line) for label, line in lines.items() if label.startswith("secant")]
    assert len(secants) == len(steps)
    for (label, line), h, slope in zip(secants, steps, by_hand, strict=True):
        x, y = (np.asarray(v, np.float64) for v in line.get_data())
        assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(slope, rel=1e-10)
        # the secant passes through (x0, f(x0)) and (x0 + h, f(x0 + h))
        assert np.interp(x0, x, y) == pytest.approx(math.sin(x0), abs=1e-12)
        assert np.interp(x0 + h, x, y) == pytest.approx(math.sin(x0 + h), abs=1e-12)
        assert label.startswith(f"secant Δx = {h:g}: slope ")
        assert number(label.split("slope ")[1]) == pytest.approx(slope, rel=5e-4)
    (tangent_label,) = [label for label in lines if label.startswith("tangent")]
    x, y = lines[tangent_label].get_data()
    assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(math.cos(x0), rel=1e-10)
    assert number(tangent_label.split("= ")[-1]) == pytest.approx(math.cos(x0), rel=5e-4)
    x, y = lines["sin(x)"].get_data()  # the function itself, labelled by its name
    np.testing.assert_allclose(y, np.sin(x), atol=1e-12)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["sin(x)", *(s[0] for s in secants), tangent_label]
    assert_readable(picture)


def test_secants_of_the_notes_example_and_a_long_label_keep_a_one_line_title():
    picture = draw.secants(lambda t: t**2, 1.0, label="x(t) = t²", var="t")
    assert picture.numbers["secant_slopes"] == [4.0, 3.0, 2.5]  # 2t + Δt, exactly
    assert picture.caption == (
        "secant slopes 4, 3, 2.5 for Δt = 2, 1, 0.5 approach the tangent slope x′(1) = 2"
    )
    assert picture.axes[0].get_title() == "Secants of x(t) = t² approach the tangent at t = 1"
    long = draw.secants(lambda t: t**2, 1.0, label="position of the ice-cream van " * 4)
    assert long.axes[0].get_title() == "Secants approach the tangent at x = 1"
    assert_readable(long)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"steps": (1.0, 0.0)}, "nonzero"),
        ({"steps": ()}, "nonzero"),
        ({"xlim": (2.0, 1.0)}, "low < high"),
    ],
)
def test_secants_refuse_what_cannot_be_drawn(kwargs, fragment):
    with pytest.raises(draw.DrawError, match=fragment):
        draw.secants(jnp.sin, 0.0, **kwargs)


def test_a_function_undefined_at_the_point_or_not_scalar_is_a_draw_error():
    with pytest.raises(draw.DrawError, match=r"f\(-1\) = nan"):
        draw.secants(jnp.log, -1.0)
    with pytest.raises(draw.DrawError, match="shape"):
        draw.secants(lambda x: jnp.stack([x, x]), 1.0)


# --------------------------------------------------------------------------------------------
# Taylor polynomials


def test_taylor_polynomials_are_the_closed_form_series_of_sin_plus_cos():
    picture = draw.taylor(lambda x: jnp.sin(x) + jnp.cos(x), 0.0, label="f(x) = sin(x) + cos(x)")
    # sin x + cos x = 1 + x - x²/2! - x³/3! + x⁴/4! + x⁵/5! - ... (seed 004)
    series = [1.0, 1.0, -1 / 2, -1 / 6, 1 / 24, 1 / 120]
    np.testing.assert_allclose(picture.numbers["coefficients"], series, rtol=1e-12)
    (ax,) = picture.axes
    polynomials = [(k, v) for k, v in lines_by_label(ax).items() if k.startswith("T")]
    assert [k for k, _ in polynomials] == [
        "T₀ = 1",
        "T₁ = T₀ + x",
        "T₂ = T₁ − 0.5x²",
        "T₃ = T₂ − 0.1667x³",
        "T₅ = T₃ + 0.04167x⁴ + 0.008333x⁵",
    ]
    for n, (_, line) in zip((0, 1, 2, 3, 5), polynomials, strict=True):
        x, y = (np.asarray(v, np.float64) for v in line.get_data())
        np.testing.assert_allclose(y, sum(series[k] * x**k for k in range(n + 1)), atol=1e-12)
    x, y = lines_by_label(ax)["f(x) = sin(x) + cos(x)"].get_data()
    np.testing.assert_allclose(y, np.sin(x) + np.cos(x), atol=1e-12)
    assert_readable(picture)


def test_taylor_polynomials_about_a_nonzero_point():
    picture = draw.taylor(jnp.exp, 1.0, (1, 3), xlim=(0.0, 2.0))
    e = math.e
    np.testing.assert_allclose(
        picture.numbers["coefficients"], [e, e, e / 2, e / 6], rtol=1e-12
    )  # f^(k)(1) / k!
    labels = [k for k in lines_by_label(picture.axes[0]) if k.startswith("T")]
    assert labels == ["T₁ = 2.718 + 2.718(x − 1)", "T₃ = T₁ + 1.359(x − 1)² + 0.453(x − 1)³"]
    x, y = lines_by_label(picture.axes[0])[labels[1]].get_data()
    want = sum(e / math.factorial(k) * (np.asarray(x) - 1) ** k for k in range(4))
    np.testing.assert_allclose(y, want, rtol=1e-12)
    with pytest.raises(draw.DrawError, match="integers >= 0"):
        draw.taylor(jnp.exp, 0.0, (1, -1))


# --------------------------------------------------------------------------------------------
# linearization


def test_linearization_of_sqrt_at_4_and_its_error_at_4_001():
    picture = draw.linearization(jnp.sqrt, 4.0, 4.001, label="f(x) = √x")
    n = picture.numbers
    assert n["slope"] == pytest.approx(1 / (2 * math.sqrt(4.0)), rel=1e-15)  # 1 / (2 √a)
    assert n["L(x)"] == pytest.approx(2 + 0.001 / 4, rel=1e-15)  # the notes' 2.00025
    assert n["f(x)"] == pytest.approx(math.sqrt(4.001), rel=1e-15)
    assert n["error"] == pytest.approx(math.sqrt(4.001) - 2.00025, rel=1e-6)
    assert abs(n["relative_error"]) < 1e-8  # "less than 1 millionth of a percent"

    left, right = picture.axes
    lines = lines_by_label(left)
    x, y = (np.asarray(v, np.float64) for v in lines["L(x) = 2 + 0.25(x − 4)"].get_data())
    np.testing.assert_allclose(y, 2 + (x - 4) / 4, atol=1e-12)
    texts = [t.get_text() for t in left.texts]
    assert any("L(4.001) = 2.00025" in t and "f(4.001) = 2.000249984" in t for t in texts)
    (error,) = [v for k, v in lines_by_label(right).items() if k == "f(x) − L(x)"]
    x, y = (np.asarray(v, np.float64) for v in error.get_data())
    np.testing.assert_allclose(y, np.sqrt(x) - (2 + (x - 4) / 4), atol=1e-15)
    assert_readable(picture)

    alone = draw.linearization(jnp.sqrt, 4.0)
    assert len(alone.axes) == 1 and "error" not in alone.numbers


# --------------------------------------------------------------------------------------------
# functions of two variables


def _eigen_lines(ax) -> list[tuple[float, np.ndarray]]:
    """(λ from the legend, unit direction from the line's data) of each eigen-direction."""
    out = []
    for label, line in lines_by_label(ax).items():
        if label.startswith("λ = "):
            x, y = line.get_data()
            d = np.array([x[1] - x[0], y[1] - y[0]], np.float64)
            out.append((number(label.split(" along")[0][4:]), d / np.linalg.norm(d)))
    return out


def test_the_saddle_of_the_notes_eigenvalues_directions_and_verdict():
    picture = draw.surface(lambda p: p[0] ** 2 - p[1] ** 2, view="contour", grid=21)
    hessian = np.array([[2.0, 0.0], [0.0, -2.0]])  # seed 001, by hand
    np.testing.assert_allclose(picture.numbers["hessian"], hessian, atol=1e-12)
    np.testing.assert_allclose(picture.numbers["eigenvalues"], np.linalg.eigvalsh(hessian))
    assert picture.numbers["verdict"] == "saddle" and picture.numbers["critical"] is True
    ax = picture.axes[0]
    found = _eigen_lines(ax)
    assert sorted(lam for lam, _ in found) == [-2.0, 2.0]
    for lam, d in found:
        np.testing.assert_allclose(hessian @ d, lam * d, atol=1e-9)  # an eigen-direction
    assert any(isinstance(c, Quiver) for c in ax.collections)  # the gradient field
    assert any(isinstance(c, ContourSet) for c in ax.collections)
    assert picture.texts[0].get_text() == "f(x, y): a saddle at (0, 0)"
    assert_readable(picture)


def test_a_tilted_cup_away_from_its_critical_point_in_both_views():
    def f(p):
        return p[0] ** 2 + p[0] * p[1] + 2 * p[1] ** 2 + jnp.sin(p[0])

    x0 = (0.3, -0.2)
    picture = draw.surface(f, x0, extent=1.0, grid=15)
    hessian = np.array([[2 - math.sin(0.3), 1.0], [1.0, 4.0]])  # by hand
    gradient = [2 * 0.3 - 0.2 + math.cos(0.3), 0.3 - 0.8]
    np.testing.assert_allclose(picture.numbers["hessian"], hessian, rtol=1e-12)
    np.testing.assert_allclose(picture.numbers["gradient"], gradient, rtol=1e-12)
    np.testing.assert_allclose(
        picture.numbers["eigenvalues"], np.linalg.eigvalsh(hessian), rtol=1e-12
    )
    assert picture.numbers["verdict"] == "cup" and picture.numbers["critical"] is False
    assert "not a critical point" in picture.texts[0].get_text()
    contour_ax = picture.axes[0]
    for lam, d in _eigen_lines(contour_ax):
        assert lam in {float(number(f"{v:.4g}")) for v in np.linalg.eigvalsh(hessian)}
        np.testing.assert_allclose(hessian @ d, lam * d, atol=1e-3 * abs(lam))
    (ax3,) = [ax for ax in picture.axes if ax.name == "3d"]
    for line in ax3.get_lines():  # f along each eigen-direction, drawn on the surface
        x, y, z = line.get_data_3d()
        np.testing.assert_allclose(z, x**2 + x * y + 2 * y**2 + np.sin(x), atol=1e-12)
    assert len(ax3.get_lines()) == 2
    assert_readable(picture)


@pytest.mark.parametrize(
    ("f", "verdict", "title"),
    [
        (lambda p: p @ p, "cup", "a cup (a minimum) at (0, 0)"),
        (lambda p: -(p @ p), "upside-down cup", "an upside-down cup (a maximum) at (0, 0)"),
        (lambda p: p[0] ** 2, "flat", "flat along an eigen-direction"),
    ],
)
def test_the_verdicts(f, verdict, title):
    picture = draw.surface(f, view="contour", grid=9)
    assert picture.numbers["verdict"] == verdict
    assert title in picture.texts[0].get_text()


# --------------------------------------------------------------------------------------------
# the computational graph and its DOT text


def seed_f(x):
    """Seed 003, 6.2: f(x) = sqrt(x^2 + e^{x^2}) + cos(x^2 + e^{x^2})."""
    return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))


def node_texts(picture) -> dict[str, str]:
    """Each node's label, by variable name (the text boxes with three lines)."""
    out = {}
    for t in picture.axes[0].texts:
        lines = t.get_text().splitlines()
        if len(lines) == 3:
            out[re.split(r"[ =]", lines[0])[0]] = t.get_text()
    return out


def shown(label: str, out: str, name: str) -> tuple[float, float]:
    """(value, adjoint) printed in a node's label (picture or DOT)."""
    value = re.search(r"value (\S+)", label)
    adjoint = re.search(rf"∂{out}/∂{re.escape(name)} = (\S+)", label)
    assert value and adjoint, label
    return number(value[1]), number(adjoint[1])


def dot_labels(dot: str) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Node labels by name and edge labels by (u, v), parsed by pydot."""

    def unquote(s: str) -> str:
        s = s[1:-1] if s.startswith('"') and s.endswith('"') else s
        return s.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")

    with warnings.catch_warnings():
        # pydot 4.0.1 still calls pyparsing's camelCase names, deprecated in pyparsing 3.3
        warnings.simplefilter("ignore", DeprecationWarning)
        (graph,) = pydot.graph_from_dot_data(dot)
    nodes = {unquote(n.get_name()): unquote(n.get("label")) for n in graph.get_nodes()}
    edges = {
        (unquote(e.get_source()), unquote(e.get_destination())): unquote(e.get("label") or '""')
        for e in graph.get_edges()
    }
    return nodes, edges


def test_graph_values_and_adjoints_are_the_vjps_of_each_sub_computation():
    x = 0.5
    picture = draw.graph(seed_f, x)
    table = picture.table
    formulas = ("a = x^2", "b = exp(a)", "c = a + b", "d = sqrt(c)", "e = cos(c)", "f = d + e")
    assert table.formulas == formulas
    # The forward pass by hand, then each node's adjoint: jax.vjp of what is computed from it,
    # the variables it does not feed held fixed.
    a = x**2
    b = math.exp(a)
    c = a + b
    d, e = math.sqrt(c), math.cos(c)
    downstream = {
        "x": (x, seed_f),
        "a": (a, lambda a_: jnp.sqrt(a_ + jnp.exp(a_)) + jnp.cos(a_ + jnp.exp(a_))),
        "b": (b, lambda b_: jnp.sqrt(a + b_) + jnp.cos(a + b_)),
        "c": (c, lambda c_: jnp.sqrt(c_) + jnp.cos(c_)),
        "d": (d, lambda d_: d_ + e),
        "e": (e, lambda e_: d + e_),
        "f": (d + e, lambda f_: f_),
    }
    drawn = node_texts(picture)
    dot_nodes, dot_edges = dot_labels(picture.to_dot())
    assert set(drawn) == set(dot_nodes) == set(downstream)  # one node per table row
    for name, (value, g) in downstream.items():
        out, pullback = jax.vjp(g, jnp.float32(value))
        (adjoint,) = pullback(jnp.ones_like(out))
        assert float(picture.numbers["values"][name]) == pytest.approx(value, rel=1e-6)
        assert float(picture.numbers["adjoints"][name]) == pytest.approx(float(adjoint), rel=2e-5)
        for label, digits in ((drawn[name], 5e-4), (dot_nodes[name], 5e-6)):
            got_value, got_adjoint = shown(label, "f", name)
            assert got_value == pytest.approx(value, rel=digits)
            assert got_adjoint == pytest.approx(float(adjoint), rel=digits, abs=1e-7)
    assert float(table.grads[0]) == pytest.approx(float(jax.grad(seed_f)(0.5)), rel=1e-6)

    # each edge u -> v carries dv/du of its one operation (jax.grad of that operation)
    local = {
        ("x", "a"): jax.grad(lambda t: t**2)(x),
        ("a", "b"): jax.grad(jnp.exp)(a),
        ("a", "c"): 1.0,
        ("b", "c"): 1.0,
        ("c", "d"): jax.grad(jnp.sqrt)(c),
        ("c", "e"): jax.grad(jnp.cos)(c),
        ("d", "f"): 1.0,
        ("e", "f"): 1.0,
    }
    notes = {t.get_text() for t in picture.axes[0].texts if t.get_text().count("\n") == 0}
    assert set(picture.numbers["partials"]) == {(v, u) for u, v in local}
    assert set(dot_edges) == set(local)
    for (u, v), want in local.items():
        assert float(picture.numbers["partials"][(v, u)]) == pytest.approx(float(want), rel=1e-6)
        (note,) = [t for t in notes if t.startswith(f"∂{v}/∂{u} = ")]
        assert number(note.split("= ")[1]) == pytest.approx(float(want), rel=5e-4)
        assert number(dot_edges[(u, v)].split("= ")[1]) == pytest.approx(float(want), rel=5e-6)

    # the layout: top-down by topological depth, one arrow per edge
    depth = picture.numbers["depth"]
    assert depth == {"x": 0, "a": 1, "b": 2, "c": 3, "d": 4, "e": 4, "f": 5}
    heights = {
        t.get_text()[:1]: t.get_position()[1]
        for t in picture.axes[0].texts
        if t.get_text().count("\n") == 2
    }
    assert all(heights[u] > heights[v] for u, v in local)
    arrows = [p for p in picture.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(local)
    assert_readable(picture)


def test_graph_of_two_inputs_from_a_formula_and_its_dot_text():
    f = draw.expression("x*y + sin(x)")
    picture = draw.graph(f, 1.0, 2.0)
    grads = jax.vjp(lambda x, y: x * y + jnp.sin(x), 1.0, 2.0)[1](1.0)
    np.testing.assert_allclose(
        [float(picture.numbers["adjoints"][n]) for n in ("x", "y")],
        [2.0 + math.cos(1.0), 1.0],  # (y + cos x, x) by hand
        rtol=1e-6,
    )
    np.testing.assert_allclose([float(g) for g in grads], [2.0 + math.cos(1.0), 1.0], rtol=1e-6)
    nodes, edges = dot_labels(picture.table.to_dot())
    rows = [r.name for r in (*picture.table.inputs, *picture.table.rows)]
    assert sorted(nodes) == sorted(rows) and len(nodes) == len(rows)
    assert set(edges) == {(u, v) for u, v, _ in picture.table.edges()}
    assert picture.to_dot() == picture.table.to_dot()


def test_dot_text_quotes_any_variable_name():
    table = mlgrad.backprop_table(
        lambda p: p["w"] * p['b"q'] + jnp.sin(p["w"]), {"w": 1.0, 'b"q': 2.0}
    )
    nodes, edges = dot_labels(table.to_dot())
    assert set(nodes) == {"p['w']", "p['b\"q']", "a", "b", "c"}
    assert ("p['b\"q']", "a") in edges
    assert shown(nodes["p['w']"], "c", "p['w']") == pytest.approx((1.0, 2.0 + math.cos(1.0)))


def test_graph_accepts_a_table_and_refuses_a_graph_too_large_to_read():
    table = mlgrad.backprop_table(seed_f, 0.5)
    assert draw.graph(table).table is table
    with pytest.raises(draw.DrawError, match="to_dot"):
        draw.graph(seed_f, 0.5, max_nodes=5)


# --------------------------------------------------------------------------------------------
# formulas


@pytest.mark.parametrize(
    ("text", "variables", "pretty", "args", "value"),
    [
        ("sin(x) + cos(x)", ("x",), "sin(x) + cos(x)", (0.5,), math.sin(0.5) + math.cos(0.5)),
        ("x^2 - y^2", ("x", "y"), "x² − y²", (1.0, 2.0), -3.0),
        ("sqrt(x^2 + exp(x^2))", ("x",), "√(x² + exp(x²))", (1.0,), math.sqrt(1 + math.e)),
        ("2*t**3 - (t - 1)/4", ("t",), "2t³ − (t − 1)/4", (2.0,), 15.75),
        ("-x^2 + pi", ("x",), "−x² + π", (1.0,), math.pi - 1),
    ],
)
def test_formulas(text, variables, pretty, args, value):
    f = draw.expression(text)
    assert f.variables == variables and f.pretty == pretty
    assert float(f(*args)) == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "import os",
        "__import__('os')",
        "x.real",
        "(lambda: 1)()",
        "[x]",
        "sin",
        "max(x, 1)",
        "x if x else 1",
        "'a'",
        "sin(x, y)",
    ],
)
def test_formulas_run_nothing_but_arithmetic(text):
    with pytest.raises(draw.DrawError):
        draw.expression(text)


def test_a_huge_power_is_inf_not_a_hang():
    assert math.isinf(float(draw.expression("9^9^9^9 + x")(1.0)))


# --------------------------------------------------------------------------------------------
# saving, threads


def test_save_writes_whole_files_or_none(tmp_path, monkeypatch):
    picture = draw.secants(jnp.sin, 0.0, (1.0,))
    target = tmp_path / "sub" / "s.png"
    assert draw.save(picture, target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = target.read_bytes()

    def broken(fh, **kwargs):
        fh.write(b"half a picture")
        raise OSError("disk full")

    monkeypatch.setattr(picture, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        draw.save(picture, target)
    assert target.read_bytes() == before  # the old file, untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["s.png"]  # no temporary left
    with pytest.raises(draw.DrawError, match="unknown picture format"):
        draw.save(picture, tmp_path / "s.txt")
    with pytest.raises(draw.DrawError, match=".dot"):
        draw.save(picture, tmp_path / "s.dot")


def test_drawing_from_threads_gives_the_same_pictures():
    def render(h: float) -> tuple[list[float], bytes]:
        picture = draw.secants(lambda t: t**3, 0.5, (h,))
        buffer = io.BytesIO()
        picture.savefig(buffer, format="png", dpi=40)
        return picture.numbers["secant_slopes"], buffer.getvalue()

    steps = (1.0, 0.25, 0.125)
    alone = [render(h) for h in steps]
    with ThreadPoolExecutor(len(steps)) as pool:
        together = list(pool.map(render, steps))
    assert together == alone
    assert [s for (s,), _ in alone] == [((0.5 + h) ** 3 - 0.125) / h for h in steps]


# --------------------------------------------------------------------------------------------
# the command line and the example script


def test_mlgrad_draw_writes_the_notes_examples(cli):
    res = cli("draw", "secants", "--out", "figures/secants.png")
    assert res.code == 0, res.err
    assert res.out == (
        "wrote figures/secants.png: secant slopes 4, 3, 2.5 for Δt = 2, 1, 0.5 approach the "
        "tangent slope f′(1) = 2\n"
    )
    assert Path("figures/secants.png").read_bytes()[:4] == b"\x89PNG"
    res = cli("draw", "graph", "--function", "x*y + sin(x)", "--at", "1,2", "--out", "g.dot")
    assert res.code == 0, res.err
    nodes, _ = dot_labels(Path("g.dot").read_text())
    assert set(nodes) == {"x", "y", "a", "b", "c"}
    written = sorted(p.name for p in Path.cwd().rglob("*"))
    assert written == ["figures", "g.dot", "secants.png"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["secants", "--out", "s.txt"], "must end in .png, .pdf, .svg"),
        (["taylor", "--steps", "1", "--out", "sub/t.png"], "--steps applies to secants"),
        (["surface", "-f", "x + z", "--out", "s.png"], "unknown name(s) z"),
        (["secants", "-f", "import os", "--out", "s.png"], "cannot read the formula"),
        (["graph", "-f", "x*y", "--at", "1", "--out", "g.png"], "--at takes 2 number(s)"),
        (["secants", "--steps", "0", "--out", "s.png"], "nonzero"),
        (["linearization", "-f", "log(x)", "--at=-1", "--out", "l.png"], "f(-1) = nan"),
        (["secante", "--out", "s.png"], "invalid choice"),
        (["secants"], "--out"),
        (["secants", "--at", "abc", "--out", "s.png"], "not a comma-separated list"),
        (["secants", "--out", "afile/s.png"], "cannot write afile/s.png"),
    ],
)
def test_mlgrad_draw_user_errors_exit_2_and_write_nothing(cli, argv, fragment):
    Path("afile").write_text("not a folder")
    res = cli("draw", *argv)
    res.assert_user_error()
    assert fragment in res.err
    assert sorted(p.name for p in Path.cwd().rglob("*")) == ["afile"]


def _script():
    spec = importlib.util.spec_from_file_location(
        "lecture_figures", ROOT / "examples" / "lecture_figures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_script_writes_its_pictures(tmp_path, capsys):
    assert _script().main(["--out", str(tmp_path), "--only", "graph"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "backprop_graph.dot",
        "backprop_graph.png",
    ]
    assert "gradient ∂f/∂x = −1.36" in capsys.readouterr().out


@pytest.mark.slow
def test_the_example_script_writes_every_picture(tmp_path, capsys):
    assert _script().main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "backprop_graph.dot",
        "backprop_graph.png",
        "cup.png",
        "ice_cream_fit.png",
        "ice_cream_loss_surface.png",
        "linearization_sqrt.png",
        "saddle.png",
        "secants.png",
        "taylor_quartic.png",
        "taylor_sin_cos.png",
    ]


def test_the_readme_pictures_exist():
    images = re.findall(r'<img src="([^"]+)"', (ROOT / "README.md").read_text())
    pictures = [i for i in images if "figures/" in i]
    assert len(pictures) >= 2
    for image in pictures:
        assert (ROOT / image).read_bytes()[:4] == b"\x89PNG", image


def test_the_docstring_examples():
    import doctest

    result = doctest.testmod(draw)
    assert result.attempted >= 10 and result.failed == 0


def test_pictures_are_figures_drawn_without_pyplot():
    picture = draw.taylor(jnp.sin, 0.0, (1,))
    assert isinstance(picture, draw.Picture) and isinstance(picture, Figure)
    assert all(isinstance(t, Text) for t in picture.texts)
    source = Path(draw.__file__).read_text()
    assert "import pyplot" not in source and "matplotlib.pyplot" not in source
