"""Every picture of the five lecture notes that mlgrad can draw, each with the notes' own example.

Run it::

    python examples/lecture_figures.py                        # all, into figures/
    python examples/lecture_figures.py --out DIR --only secants --only graph
    python examples/lecture_figures.py --list                 # the pictures and their seeds

Each picture is drawn by ``mlgrad.draw`` from mlgrad's exact derivatives (secant slopes from the
difference quotient, the tangent from ``derivative``, Taylor coefficients from ``taylor``, the
Hessian from ``hessian``, the graph from ``backprop_table``) and written atomically as PNG; the
script prints each file with its caption (the numbers it shows). The ice-cream figures come
from the linear-regression model's own plots after 200 steps of gradient descent (``fit``).

The notes, numbered as in the project's seed files: 000 Vu (Stuttgart), 001 Nazarpour,
002 BITS Pilani Lecture 6, 003 Wu (IBF), 004 Lin (NTOU).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from mlgrad import draw


def backprop_function(x: Any) -> Any:
    """Seed 003, section 6.2: f(x) = sqrt(x^2 + e^{x^2}) + cos(x^2 + e^{x^2})."""
    return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))


def secants(out: Path) -> list[tuple[Path, str]]:
    """Seed 003: 'the three lines ... correspond to Δt = 2, Δt = 1 and Δt = 0.5' at t = 1."""
    picture = draw.secants(lambda t: t**2, 1.0, (2.0, 1.0, 0.5), label="x(t) = t²", var="t")
    return [(draw.save(picture, out / "secants.png"), picture.caption)]


def taylor(out: Path) -> list[tuple[Path, str]]:
    """Seed 004: the Taylor polynomials of sin + cos at 0, and of x⁴ at 1 (T₄ = f)."""
    sin_cos = draw.taylor(
        lambda x: jnp.sin(x) + jnp.cos(x), 0.0, (0, 1, 2, 3, 5), label="f(x) = sin(x) + cos(x)"
    )
    quartic = draw.taylor(
        lambda x: x**4, 1.0, (0, 1, 2, 3, 4, 6), label="f(x) = x⁴", xlim=(-1.0, 2.5)
    )
    return [
        (draw.save(sin_cos, out / "taylor_sin_cos.png"), sin_cos.caption),
        (draw.save(quartic, out / "taylor_quartic.png"), quartic.caption),
    ]


def linearization(out: Path) -> list[tuple[Path, str]]:
    """Seed 003: sqrt(4.001) ≈ 2 + 0.001/4 = 2.00025 from the linearization at 4."""
    picture = draw.linearization(jnp.sqrt, 4.0, 4.001, label="f(x) = √x")
    return [(draw.save(picture, out / "linearization_sqrt.png"), picture.caption)]


def surfaces(out: Path) -> list[tuple[Path, str]]:
    """Seed 001: the saddle x² − y², Hessian diag(2, −2); seed 004: the cup xᵀx."""
    saddle = draw.surface(lambda p: p[0] ** 2 - p[1] ** 2, label="f(x, y) = x² − y²")
    cup = draw.surface(lambda p: p @ p, label="f(x) = xᵀx = x₁² + x₂²", names=("x₁", "x₂"))
    return [
        (draw.save(saddle, out / "saddle.png"), saddle.caption),
        (draw.save(cup, out / "cup.png"), cup.caption),
    ]


def graph(out: Path) -> list[tuple[Path, str]]:
    """Seed 003, section 6.2: the intermediate variables a to f, values and adjoints."""
    picture = draw.graph(backprop_function, 0.5)
    return [
        (draw.save(picture, out / "backprop_graph.png"), picture.caption),
        (draw.save(picture, out / "backprop_graph.dot"), "the same graph as Graphviz DOT text"),
    ]


def ice_cream(out: Path) -> list[tuple[Path, str]]:
    """Seed 000: the fitted line and the 'Loss for different model parameters' (model plots)."""
    import optax

    from mlgrad import find_model, fit
    from mlgrad.data import load

    data = load("ice_cream", features=["temp"], target="cons")
    module = find_model("linear_regression")
    model = module.build(module.Config(), data)
    result = fit(
        model.loss,
        model.init(None),
        (data.x_train, data.y_train),
        optimizer=optax.sgd(0.1),
        steps=200,
        trace_params=True,
    )
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in model.plots(result.params, data, result, Path(tmp)):
            target = out / f"ice_cream_{path.name}"
            shutil.move(str(path), target)
            written.append((target, f"the linear-regression model's {path.stem} after 200 steps"))
    return written


#: The pictures, in the order of the notes.
FIGURES: dict[str, Callable[[Path], list[tuple[Path, str]]]] = {
    "ice_cream": ice_cream,
    "secants": secants,
    "taylor": taylor,
    "linearization": linearization,
    "surfaces": surfaces,
    "graph": graph,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Writes every picture (or the chosen ones) into --out; prints each file and caption."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", default="figures", help="the folder to write into (figures/)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(FIGURES),
        metavar="NAME",
        help=f"draw only this picture (repeatable): {', '.join(FIGURES)}",
    )
    parser.add_argument("--list", action="store_true", help="list the pictures and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in FIGURES.items():
            print(f"{name:<14} {(fn.__doc__ or '').strip()}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(FIGURES):
        for path, caption in FIGURES[name](out):
            print(f"{path}: {caption}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
