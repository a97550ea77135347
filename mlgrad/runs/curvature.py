"""The curvature of a trained run: :func:`curvature`, what ``mlgrad curvature RUN_DIR`` writes.

Is the trained model at the bottom of a cup? :func:`curvature` loads a finished run's latest
checkpoint and answers in float64 from the Hessian of the training loss over the parameters
the model trains (:mod:`mlgrad.curvature_report` has the mathematics,
:mod:`mlgrad.curvature_plots` the figures). It writes, each file atomically and only after
everything has been computed:

* ``curvature.json``: the eigenvalues (all of them up to
  :data:`mlgrad.curvature_report.DENSE_MAX` parameters, else the extremes), the verdict (cup,
  upside-down cup, saddle or flat, with its tolerance), the condition number, the optimizer's
  stability limit and where the run stands against it, the spectral density, the loss along
  lines and over planes through the trained parameters, and for linear regression the closed
  form :math:`2 Z^\\top Z / n` it matches;
* ``curvature_spectrum.png``: the density, the eigenvalues, the stability gauge;
* ``curvature_landscape.png``: the loss along the top eigenvectors and along filter-normalised
  random directions, and over the plane of each pair (Li et al. 2018).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrad.runs import rundir, runtime
from mlgrad.runs.errors import UsageError
from mlgrad.runs.evaluate import restore_latest
from mlgrad.runs.report import write_report
from mlgrad.runs.setup import Setup, as_batch, precision, prepare

#: What :func:`curvature` writes, in the order it writes them (the JSON last).
FIGURES = ("curvature_spectrum.png", "curvature_landscape.png")
REPORT = "curvature.json"
#: Points along each line, and per axis of each plane, of the landscape.
LINE_POINTS, PLANE_POINTS = 41, 21
#: The models whose parameters are the weights of standardised features.
_STANDARDISED_MODELS = ("linear_regression", "logistic")


def curvature(
    workdir: str | Path,
    *,
    out: str | Path | None = None,
    rtol: float | None = None,
    k: int = 5,
    seed: int = 0,
    dense_max: int | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """The curvature of a finished run's training loss at its latest checkpoint, written as
    ``curvature.json`` and two figures into the run directory (or ``out``).

    Computed in float64 (the parameters cast up exactly, the data reloaded in float64), over
    the parameters the model trains: for the regression models the weights of the
    standardised features and the intercept, whose Hessian is :math:`2 Z^\\top Z / n`.

    Args:
        workdir: a run directory that ``mlgrad train`` finished (it holds ``summary.json``).
        out: the directory to write into (default: ``workdir``); created if missing.
        rtol: the flat band, relative to :math:`\\max|\\lambda|` (default
            :data:`mlgrad.curvature_report.FLAT_RTOL`, 1e-5; see
            :func:`mlgrad.curvature_report.verdict`).
        k: how many eigenvalues from each end are reported (the largest found by Lanczos).
        seed: the seed of the random directions (Lanczos starts, probes, landscape).
        dense_max: up to this many parameters the Hessian is built and diagonalised exactly
            (default :data:`mlgrad.curvature_report.DENSE_MAX`, 2000).
        plots: write the two figures (False: ``curvature.json`` only, a second faster).

    Returns:
        What ``curvature.json`` holds (see the README's section "Is it a cup?").

    Raises:
        UsageError: not a run directory, a run that has not finished, no intact checkpoint,
            an output directory that cannot be written, or another process training in it.
        ConfigError, DataError: its config or data can no longer be loaded.

    Example:
        >>> report = curvature("runs/lr")  # doctest: +SKIP
        >>> report["kind"], report["eigenvalues"]["largest"]  # doctest: +SKIP
        ('cup', [2.0000000000000004, 1.9999999999999998])
    """
    from mlgrad.curvature_report import DENSE_MAX, FLAT_RTOL

    rtol = FLAT_RTOL if rtol is None else rtol
    dense_max = DENSE_MAX if dense_max is None else dense_max
    t0 = time.perf_counter()
    run_dir = Path(workdir)
    check_finished(run_dir)
    out_dir = run_dir if out is None else Path(out)
    try:
        rundir.check_can_create(out_dir)
    except UsageError as e:
        hint = " Write the files elsewhere with --out DIR." if out is None else ""
        raise UsageError(f"{e}{hint}") from None
    setup = prepare(run_dir / "config.yaml")
    with (
        rundir.RunDirLock(run_dir, what="mlgrad curvature", shared=True),
        runtime.compilation_cache(),
    ):
        with precision(setup.cfg):
            state = restore_latest(setup, run_dir)
        wide = setup if setup.cfg.train.dtype == "float64" else _float64_setup(run_dir)
        report, figures = _analyse(
            wide, state, rtol=rtol, k=k, seed=seed, dense_max=dense_max, plots=plots
        )
        report = {"run_dir": str(run_dir), **report}
        report["out_dir"] = str(out_dir)
        report["figures"] = [str(out_dir / name) for name in figures]
        report["seconds"] = round(time.perf_counter() - t0, 2)
        _write(out_dir, figures, report, run_report=out_dir.resolve() == run_dir.resolve())
    return report


def check_finished(run_dir: Path) -> None:
    """Raises UsageError unless ``run_dir`` is a run that ``mlgrad train`` finished: a
    directory with ``config.yaml``, ``summary.json`` (written last; removed while a resumed
    run trains) and a checkpoint."""
    if not run_dir.is_dir():
        raise UsageError(
            f"run directory {run_dir} not found. Train one first: mlgrad train CONFIG --out "
            f"{run_dir}"
        )
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"{run_dir} holds no config.yaml; is it a run directory of mlgrad train?")
    if not (run_dir / "summary.json").is_file():
        raise UsageError(
            f"{run_dir} has not finished training (it holds no summary.json yet); finish it "
            f"with: mlgrad train {run_dir / 'config.yaml'} --out {run_dir} --resume"
        )


def _float64_setup(run_dir: Path) -> Setup:
    """The run's setup with ``train.dtype=float64``: the data reloaded in float64, the model
    built on it (the standardisation statistics in float64)."""
    return prepare(run_dir / "config.yaml", ["train.dtype=float64"])


def _write(
    out_dir: Path, figures: dict[str, bytes], report: dict[str, Any], *, run_report: bool
) -> None:
    """The figures, then ``curvature.json``, each atomically, then (into the run directory
    itself) the run's ``report.html`` again, now with the findings and figures; an OSError
    is a UsageError."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, png in figures.items():
            rundir.write_atomic(out_dir / name, png)
        rundir.write_atomic(out_dir / REPORT, rundir.to_json(report))
        if run_report:
            write_report(out_dir)
    except OSError as e:
        raise UsageError(
            f"cannot write into {out_dir}: {e.strerror or e}. Choose another directory with "
            "--out DIR."
        ) from None


# --------------------------------------------------------------------------------------------
# The analysis, in float64
# --------------------------------------------------------------------------------------------


def _analyse(
    setup: Setup,
    state: Any,
    *,
    rtol: float,
    k: int,
    seed: int,
    dense_max: int,
    plots: bool = True,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Everything ``curvature.json`` and the figures hold (the run's ``setup`` in float64)."""
    import jax
    import numpy as np

    from mlgrad import curvature_report as cr

    with jax.enable_x64(True):
        loss, flat, params = _flat_loss(setup, state)
        key = jax.random.PRNGKey(seed)
        value, grad = jax.jit(jax.value_and_grad(loss))(flat)
        spectrum = cr.hessian_spectrum(loss, flat, k=k, dense_max=dense_max, key=key)
        dense = spectrum.method == "dense"
        reading = cr.verdict(spectrum.values, spectrum.residuals, rtol=rtol, complete=dense)
        kappa = cr.condition_number(spectrum.values) if reading.kind == "cup" else None
        stability, limit, stand = _stability(setup, state, loss, flat, spectrum, key)
        views = _landscape(loss, flat, params, spectrum, np.asarray(grad), key)
    largest, smallest = cr.top_and_bottom(spectrum, k)
    report: dict[str, Any] = {
        "step": int(state.step),
        "steps": int(setup.cfg.train.steps),
        "name": setup.cfg.name,
        "model": setup.cfg.model.name,
        "computed_in": "float64",
        "loss": {
            "what": _loss_text(setup),
            "value": float(value),
            "gradient_norm": float(np.linalg.norm(np.asarray(grad))),
        },
        "parameters": _parameters(setup, params),
        "method": _method(spectrum),
        "eigenvalues": {
            "largest": largest,
            "smallest": smallest,
            **({"all": [float(v) for v in spectrum.values]} if dense else {}),
            "max_residual": float(np.max(spectrum.residuals)),
        },
        "kind": reading.kind,
        "verdict": reading.text,
        "flat_band": {
            "tolerance": reading.tolerance,
            "relative_tolerance": reading.rtol,
            "rule": "flat: |λ| within rtol max|λ| of zero (each eigenvalue with its residual)",
            "negative": reading.negative,
            "flat": reading.flat,
            "positive": reading.positive,
        },
        "condition_number": kappa,
        "condition_number_note": _kappa_text(kappa, reading.kind),
        "stability": stability,
        **({"closed_form": c} if (c := _closed_form(setup, spectrum)) else {}),
        "spectral_density": {
            "method": spectrum.density.method,
            "sigma": spectrum.density.sigma,
            "grid": [float(t) for t in spectrum.density.grid],
            "density": [float(p) for p in spectrum.density.density],
        },
        "landscape": _landscape_record(views),
    }
    if not plots:
        return report, {}
    figures = _figures(setup, spectrum, reading, limit, stand, stability, views, float(value))
    return report, figures


def _flat_loss(setup: Setup, state: Any) -> tuple[Any, Any, Any]:
    """The training objective on the whole training split as a function of the flat float64
    parameters; the flat checkpoint parameters; the parameters as a float64 pytree."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree

    params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), state.params)
    flat, unravel = ravel_pytree(params)
    batch = as_batch(setup.data.train)
    model = setup.model

    def loss(z: Any) -> Any:
        return model.objective(unravel(z), batch)

    return loss, flat, params


def _loss_text(setup: Setup) -> str:
    n = len(setup.data.x_train)
    text = f"the training objective (model.objective) on the whole training split, {n} examples"
    text += ", penalties included"
    if getattr(setup.model, "with_key", False):
        text += ", with the fixed key PRNGKey(0) the final metrics use"
    return text


def _parameters(setup: Setup, params: Any) -> dict[str, Any]:
    """How many parameters the Hessian is over, which, and in what order."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    layout = [{"name": _path_name(path), "shape": list(leaf.shape)} for path, leaf in leaves]
    cfg = setup.cfg
    if cfg.model.name in _STANDARDISED_MODELS and cfg.model.get("standardize", False):
        what = (
            "the parameters the model trains: the intercept b and the weights w of the "
            "standardised features z = (x - mean) / std (training-split statistics), not the "
            "data-unit coefficients of summary.json"
        )
    else:
        what = "the parameters the model trains, as its checkpoint stores them"
    return {
        "what": what,
        "count": sum(int(leaf.size) for _, leaf in leaves),
        "order": layout,
    }


def _path_name(path: Any) -> str:
    """A pytree path as ``layers.0.w``."""
    import jax

    return jax.tree_util.keystr(tuple(path), simple=True, separator=".") or "params"


def _method(spectrum: Any) -> dict[str, Any]:
    import numpy as np

    if spectrum.method == "dense":
        text = (
            f"dense: the {spectrum.size} x {spectrum.size} Hessian built from "
            f"{spectrum.size} Hessian-vector products (forward over reverse mode), all "
            "eigenvalues by numpy.linalg.eigh"
        )
    else:
        text = (
            "lanczos: the largest eigenvalues and the smallest one by restarted block Lanczos "
            "(mlgrad.hessian_eigenvalues) and the density by stochastic Lanczos quadrature "
            "(mlgrad.spectral_density), from Hessian-vector products only; each eigenvalue "
            "lies within its residual of one of the Hessian's"
        )
    return {
        "name": spectrum.method,
        "text": text,
        "hessian_vector_products": spectrum.products,
        "converged": spectrum.converged,
        "max_residual": float(np.max(spectrum.residuals)),
    }


def _kappa_text(kappa: float | None, kind: str) -> str:
    if kappa is not None:
        return (
            "λ_max / λ_min: with a step size that suits the sharpest direction, gradient "
            f"descent needs about {kappa:.4g} times as many steps along the flattest "
            "(1: every direction alike)"
        )
    return f"not a cup ({kind}): the condition number λ_max / λ_min is not defined"


# --------------------------------------------------------------------------------------------
# Stability
# --------------------------------------------------------------------------------------------


def _stability(
    setup: Setup, state: Any, loss: Any, flat: Any, spectrum: Any, key: Any
) -> tuple[dict[str, Any], Any, Any]:
    """The optimizer's stability limit at the checkpoint's step and the run's standing."""
    import numpy as np

    from mlgrad import curvature_report as cr
    from mlgrad.config.optimizers import optimizer_label, optimizer_spec
    from mlgrad.config.structured import to_dict

    cfg, step = setup.cfg, int(state.step)
    section = to_dict(cfg.optimizer, resolve=True)
    record: dict[str, Any] = {"optimizer": optimizer_label(section), "step": step}
    notes = _batch_notes(setup)
    if "chain" in section:
        return _no_limit(
            record,
            f"no stability limit is known here for the chain "
            f"{optimizer_label(section)}; the rules known are sgd and adam",
            notes,
        )
    fn, kwargs = optimizer_spec(section, steps=cfg.train.steps, dtype=cfg.train.dtype)
    hyper = _hyperparameters(fn, kwargs)
    lr = hyper["learning_rate"]
    eta = float(lr(np.int32(step))) if callable(lr) else float(lr)
    record["learning_rate"] = eta
    record["learning_rate_is_scheduled"] = callable(lr)
    name = str(section.get("name"))
    if name not in ("sgd", "adam") or (name == "adam" and hyper.get("nesterov")):
        which = "adam with nesterov=true" if name == "adam" else f"optax.{name}"
        return _no_limit(
            record,
            f"no stability limit is known here for {which}; the rules "
            "known are sgd (plain, heavy-ball or Nesterov momentum) and adam",
            notes,
        )
    if not eta > 0:
        return _no_limit(
            record,
            f"the learning rate at step {step} is {eta:g}: the step "
            "does not move, so no sharpness is unstable",
            notes,
        )
    if name == "sgd":
        limit = cr.stability_limit(
            "sgd", eta, momentum=hyper.get("momentum"), nesterov=bool(hyper.get("nesterov"))
        )
        sharpness, residual = float(spectrum.values.max()), float(spectrum.residuals[-1])
    else:
        limit = cr.stability_limit("adam", eta, b1=float(hyper["b1"]))
        p = _adam_preconditioner(state.opt_state, hyper)
        if p is None:
            return _no_limit(record, "the checkpoint holds no Adam state (nu, count)", notes)
        sharpness, residual = cr.preconditioned_sharpness(
            loss, flat, p, hessian=spectrum.hessian, key=key
        )
        record["preconditioner"] = {
            "formula": "P = (1 - β₁ᵗ) diag(sqrt(ν̂ + eps_root) + eps), ν̂ = ν / (1 - β₂ᵗ), "
            "from the checkpoint's Adam state (Cohen et al. 2022)",
            "min": float(p.min()),
            "max": float(p.max()),
        }
        record["sharpness_of_H"] = float(spectrum.values.max())
    stand = cr.standing(limit, sharpness)
    record.update(
        {
            "rule": limit.rule,
            "formula": limit.formula,
            "limit": limit.limit,
            "quantity": limit.quantity,
            "sharpness": sharpness,
            "sharpness_residual": residual,
            "ratio": stand.ratio,
            "standing": stand.kind,
            "text": stand.text,
            "notes": notes,
        }
    )
    return record, limit, stand


def _no_limit(record: dict[str, Any], why: str, notes: list[str]) -> tuple[dict, None, None]:
    record.update({"limit": None, "text": why, "notes": notes})
    return record, None, None


def _hyperparameters(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's keyword arguments, its signature's defaults filled in."""
    defaults = {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **kwargs}


def _batch_notes(setup: Setup) -> list[str]:
    size, n = setup.cfg.train.batch_size, len(setup.data.x_train)
    notes = [
        "the limits hold for a quadratic with this Hessian (and, for Adam, this "
        "preconditioner held fixed): along the top eigenvector a step beyond them grows "
        "instead of shrinking"
    ]
    if size is not None and size < n:
        notes.append(
            f"the run trained on mini-batches of {size} of the {n} training examples: the "
            "limit is that of full-batch steps on the training loss, which mini-batch noise "
            "blurs (Cohen et al. 2022 find the full-batch edge as the batch grows)"
        )
    return notes


def _adam_preconditioner(opt_state: Any, hyper: dict[str, Any]) -> Any:
    """The flat diagonal of Adam's frozen preconditioner from the optimizer state (the
    first ``ScaleByAdamState``-like node: one with ``nu`` and ``count``), or None."""
    import jax
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from mlgrad import curvature_report as cr

    def is_adam(node: Any) -> bool:
        return hasattr(node, "nu") and hasattr(node, "count")

    found = [n for n in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(n)]
    if not found:
        return None
    adam = found[0]
    nu = jax.tree.map(lambda a: np.asarray(a, np.float64), adam.nu)
    p = cr.adam_preconditioner(
        nu,
        int(np.asarray(adam.count)),
        b1=float(hyper["b1"]),
        b2=float(hyper["b2"]),
        eps=float(hyper["eps"]),
        eps_root=float(hyper["eps_root"]),
    )
    return np.asarray(ravel_pytree(p)[0], np.float64)


# --------------------------------------------------------------------------------------------
# The landscape
# --------------------------------------------------------------------------------------------


def _landscape(
    loss: Any, flat: Any, params: Any, spectrum: Any, grad: Any, key: Any
) -> dict[str, dict[str, Any]]:
    """Two views of the loss around the trained parameters: along the top eigenvectors (and
    the bottom one), over distances where the quadratic model along the top one triples the
    loss; and along filter-normalised random directions, over steps that move every filter
    by up to its own size (Li et al. 2018)."""
    import numpy as np
    from jax.flatten_util import ravel_pytree

    value = float(loss(flat))
    values = np.sort(spectrum.values)[::-1]
    top = float(values[0])
    radius = 2.0 * (value / top) ** 0.5 if value > 0 and top > 0 else 1.0
    eigen = [
        (f"top eigenvector v{i + 1}", v, float(values[i]))
        for i, v in enumerate(spectrum.top_vectors[:2])
    ]
    eigen.append(("bottom eigenvector vₙ", spectrum.bottom_vector, float(values[-1])))
    random = _random_pair(params, key, ravel_pytree)
    return {
        "eigen": _view(
            loss,
            flat,
            grad,
            value,
            eigen,
            np.linspace(-radius, radius, LINE_POINTS),
            scale=f"distance t along unit eigenvectors, |t| <= {radius:.3g} = 2 sqrt(L₀/λ_max): "
            "where the quadratic model along v₁ triples the loss",
            plane_title="Loss over the plane of the top eigenvectors (v₁, v₂)",
        ),
        "random": _view(
            loss,
            flat,
            grad,
            value,
            [("random direction d₁", random[0], None), ("random direction d₂", random[1], None)],
            np.linspace(-1.0, 1.0, LINE_POINTS),
            scale="step α along filter-normalised random directions (Li et al. 2018): α = 1 "
            "moves every filter by its own norm",
            plane_title="Loss over two filter-normalised random directions (d₁, d₂)",
        ),
    }


def _view(
    loss: Any,
    flat: Any,
    grad: Any,
    value: float,
    directions: Sequence[tuple[str, Any, float | None]],
    steps: Any,
    *,
    scale: str,
    plane_title: str,
) -> dict[str, Any]:
    """The loss along each direction with its quadratic model, and over the plane of the
    first two (on a coarser grid of the same range)."""
    import jax
    import numpy as np

    from mlgrad import curvature_report as cr

    product = jax.jit(lambda v: jax.jvp(jax.grad(loss), (flat,), (v,))[1])
    losses = cr.loss_along(loss, flat, np.stack([d for _, d, _ in directions]), steps)
    lines = []
    for (label, d, eigenvalue), row in zip(directions, losses, strict=True):
        curvature = float(d @ np.asarray(product(d)))  # dᵀHd (= λ for a unit eigenvector)
        model = value + steps * float(grad @ d) + 0.5 * steps**2 * curvature
        lines.append(
            {
                "direction": label,
                "eigenvalue": eigenvalue,
                "norm": float(np.linalg.norm(d)),
                "slope_g_d": float(grad @ d),
                "curvature_dHd": curvature,
                "losses": row,
                "quadratic_model": model,
            }
        )
    grid = np.linspace(float(steps[0]), float(steps[-1]), PLANE_POINTS)
    plane = None
    if len(directions) >= 2:
        plane = cr.loss_plane(loss, flat, directions[0][1], directions[1][1], grid)
    return {
        "scale": scale,
        "steps": np.asarray(steps),
        "lines": lines,
        "plane_title": plane_title,
        "plane_steps": grid,
        "plane": plane,
    }


def _random_pair(params: Any, key: Any, ravel: Any) -> tuple[Any, Any]:
    """Two filter-normalised random directions, flat. In many dimensions two draws are
    nearly orthogonal; a model of a few filters has little more than their signs to draw
    (linear regression: ``(±|b|, ±|w|)``), so a second direction within 25° of the first is
    made orthogonal to it (Gram-Schmidt), keeping its norm."""
    import jax
    import numpy as np

    from mlgrad import curvature_report as cr

    first = np.asarray(ravel(cr.filter_normalized(jax.random.fold_in(key, 1), params))[0])
    second = np.asarray(ravel(cr.filter_normalized(jax.random.fold_in(key, 2), params))[0])
    u = cr.unit(first)
    if abs(float(u @ cr.unit(second))) > 0.9:
        norm = float(np.linalg.norm(second))
        second = norm * cr.unit(second - (second @ u) * u)
    return first, second


def _landscape_record(views: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The views as JSON (arrays as lists)."""

    def numbers(a: Any) -> Any:
        return None if a is None else a.tolist()

    arrays = ("losses", "quadratic_model")
    return {
        name: {
            "scale": view["scale"],
            "steps": numbers(view["steps"]),
            "lines": [
                {k: numbers(v) if k in arrays else v for k, v in line.items()}
                for line in view["lines"]
            ],
            "plane": None
            if view["plane"] is None
            else {
                "title": view["plane_title"],
                "steps": numbers(view["plane_steps"]),
                "losses": numbers(view["plane"]),
            },
        }
        for name, view in views.items()
    }


# --------------------------------------------------------------------------------------------
# Linear regression's closed form
# --------------------------------------------------------------------------------------------


def _closed_form(setup: Setup, spectrum: Any) -> dict[str, Any] | None:
    """For linear regression, the Hessian and eigenvalues of :math:`2 Z^\\top Z / n` built
    from the data by hand, and how far the computed ones are from them."""
    import numpy as np

    from mlgrad import curvature_report as cr

    cfg = setup.cfg
    if cfg.model.name != "linear_regression" or spectrum.hessian is None:
        return None
    h = cr.least_squares_hessian(setup.data.x_train, standardize=bool(cfg.model.standardize))
    if h.shape != spectrum.hessian.shape:
        return None
    values = np.linalg.eigvalsh(h)
    return {
        "formula": "H = 2 Z^T Z / n, Z = [1, (x - mean) / std] the standardised design with its "
        "column of ones (intercept first, as the parameters are ordered)"
        if cfg.model.standardize
        else "H = 2 Z^T Z / n, Z = [1, x] the design with its column of ones",
        "hessian": [[float(x) for x in row] for row in h],
        "eigenvalues": [float(v) for v in values],
        "max_abs_difference_hessian": float(np.abs(h - spectrum.hessian).max()),
        "max_abs_difference_eigenvalues": float(np.abs(values - np.sort(spectrum.values)).max()),
    }


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _figures(
    setup: Setup,
    spectrum: Any,
    reading: Any,
    limit: Any,
    stand: Any,
    stability: dict[str, Any],
    views: dict[str, dict[str, Any]],
    value: float,
) -> dict[str, bytes]:
    """The two figures as PNG bytes."""
    import numpy as np

    from mlgrad import curvature_plots as cp

    cfg = setup.cfg
    head = (
        f"{cfg.name}: Hessian of the training loss at step {stability['step']} "
        f"({spectrum.size} parameters, float64)"
    )
    order = np.argsort(spectrum.values)
    spectrum_fig = cp.spectrum_figure(
        spectrum.values[order],
        spectrum.residuals[order],
        complete=spectrum.method == "dense",
        tolerance=reading.tolerance,
        density=spectrum.density,
        verdict=reading.text,
        limit=limit,
        stand=stand,
        no_limit=stability["text"] if limit is None else "",
        title=head,
        smallest_found=spectrum.smallest_found,
    )
    panels = [
        _panel_of(views["eigen"], "distance t along the unit eigenvector"),
        _panel_of(views["random"], "step α (1: every filter moved by its own norm)"),
    ]
    landscape_fig = cp.landscape_figure(
        panels,
        loss0=value,
        title=f"{cfg.name}: the loss around the trained parameters (step {stability['step']})",
    )
    return {FIGURES[0]: cp.png(spectrum_fig), FIGURES[1]: cp.png(landscape_fig)}


def _panel_of(view: dict[str, Any], xlabel: str) -> Any:
    """A view as a row of the landscape figure."""
    from mlgrad import curvature_plots as cp

    styles = ["-", "-", "-."]
    slices = [
        cp.Slice(
            line["direction"]
            + (f" (λ = {line['eigenvalue']:.3g})" if line["eigenvalue"] is not None else ""),
            line["losses"],
            line["quadratic_model"],
            styles[i % len(styles)],
        )
        for i, line in enumerate(view["lines"])
    ]
    return cp.View(
        slices, view["steps"], xlabel, view["plane"], view["plane_steps"], view["plane_title"]
    )
