"""The commands: each calls :mod:`mlgrad.runs` and prints what it returns."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mlgrad import _figure_worker, runs
from mlgrad.cli._startup import started_up
from mlgrad.runs.text import format_metrics


def train(args: argparse.Namespace) -> int:
    """``mlgrad train``: validate, then train into a run directory."""
    from mlgrad.config import to_yaml

    if args.resume and args.auto_resume:
        raise runs.UsageError("give --resume or --auto-resume, not both.")
    if (args.resume or args.auto_resume) and not args.out:
        flag = "--resume" if args.resume else "--auto-resume"
        raise runs.UsageError(f"{flag} needs --out DIR, the run directory to continue.")
    resume: bool | str = "auto" if args.auto_resume else args.resume
    # The figures are drawn by a worker process that imports matplotlib while this one imports
    # JAX and trains (one process per run: not with several).
    single = args.coordinator is None and not os.environ.get("JAX_COORDINATOR_ADDRESS")
    with _figure_worker.started(single and not (args.no_plots or args.dry_run)):
        runs.join_processes(
            args.coordinator, args.num_processes, args.process_id, timeout_s=args.join_timeout
        )
        primary = runs.runtime.is_primary()  # process 0 speaks and writes for the run
        console = runs.Console(quiet=args.quiet or not primary)
        plan = runs.prepare_run(args.config, args.out, overrides=args.overrides, resume=resume)
        started_up()  # JAX, the config, the data and the model are in
        for warning in plan.warnings if primary else ():
            console.warning(f"warning: {warning}")
        if args.dry_run:
            if primary:
                sys.stdout.write(to_yaml(plan.setup.cfg))
            console.info(
                f"dry run: config and data are valid ({plan.setup.data!r}); nothing written."
            )
            return 0
        summary = runs.train_run(plan, plots=not args.no_plots, console=console)
    if summary is not None:
        metrics = format_metrics(summary["metrics"])
        print(f"done: {summary['steps']} steps, {metrics} -> {summary['run_dir']}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """``mlgrad eval``: metrics of a saved run's latest checkpoint; writes nothing."""
    result = runs.evaluate(args.run_dir)
    metrics = result["metrics"]
    if args.json:
        print(json.dumps({k: result[k] for k in ("run_dir", "step", "metrics")}, indent=2))
        return 0
    print(f"{result['run_dir']}: step {result['step']} of {result['steps']}")
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"  {k:<{width}}  {'nan' if v is None else f'{v:.6g}'}")
    return 0


def sweep(args: argparse.Namespace) -> int:
    """``mlgrad sweep``: validate every combination, train the groups, write the run directory."""
    console = runs.Console(args.quiet)
    plan = runs.prepare_sweep(args.config, args.axes, args.out, resume=args.resume)
    if args.dry_run:
        sys.stdout.write(plan.table())
        console.info(f"dry run: all {len(plan.runs)} runs are valid; nothing written.")
        return 0
    report = runs.train_sweep(plan, plots=not args.no_plots, console=console)
    sys.stdout.write(report.text())
    if report.failure:
        raise runs.RunError(report.failure)
    return 0


def configs(args: argparse.Namespace) -> int:
    """``mlgrad configs [NAME] [--copy [DIR]]``: list, print or copy out a built-in config."""
    from mlgrad import registry

    if args.name is None:
        if args.copy is not None:
            raise runs.UsageError("--copy needs NAME, the built-in config to write out.")
        found = registry.builtin_configs()
        width = max(map(len, found))
        for name, text in found.items():
            print(f"{name:<{width}}  {text}")
        return 0
    try:
        if args.copy is None:
            print(registry.find_config(args.name).read_text(encoding="utf-8"), end="")
            return 0
        path = registry.copy_config(args.name, args.copy)
    except registry.ConfigNotFoundError as e:
        raise runs.UsageError(str(e)) from None
    except FileExistsError as e:
        raise runs.UsageError(
            f"{e.filename} exists; it is not overwritten. Edit it, remove it, or pass another "
            "--copy DIR."
        ) from None
    except OSError as e:
        raise runs.UsageError(f"cannot write into {args.copy}: {e.strerror or e}.") from None
    print(f"wrote {path}; train it with: mlgrad train {path}")
    return 0


#: Each picture's example in the lecture notes (the seed files): the formula and the point.
DRAW_EXAMPLES: dict[str, tuple[str, tuple[float, ...]]] = {
    "secants": ("t^2", (1.0,)),  # seed 003: Δt = 2, 1 and 0.5 at t = 1
    "taylor": ("sin(x) + cos(x)", (0.0,)),  # seed 004
    "linearization": ("sqrt(x)", (4.0,)),  # seed 003: sqrt(4.001) ~ 2.00025
    "surface": ("x^2 - y^2", (0.0, 0.0)),  # seed 001: the Hessian diag(2, -2)
    "graph": ("sqrt(x^2 + exp(x^2)) + cos(x^2 + exp(x^2))", (0.5,)),  # seed 003, 6.2
}
#: The pictures each option of ``mlgrad draw`` applies to.
_DRAW_OPTIONS = {
    "steps": ("secants",),
    "orders": ("taylor",),
    "x": ("linearization",),
    "xlim": ("secants", "taylor", "linearization"),
    "extent": ("surface",),
    "view": ("surface",),
    "label": ("secants", "taylor", "linearization", "surface"),
}


def draw(args: argparse.Namespace) -> int:
    """``mlgrad draw NAME``: one picture of the notes, from the real derivatives, to --out."""
    from mlgrad import draw as pictures

    name = args.name
    formats = [*pictures.FORMATS, *([".dot"] if name == "graph" else [])]
    if Path(args.out).suffix.lower() not in formats:
        raise runs.UsageError(
            f"--out {args.out}: the file must end in {', '.join(formats)} (the format)."
        )
    for option, names in _DRAW_OPTIONS.items():
        if getattr(args, option) is not None and name not in names:
            raise runs.UsageError(f"--{option} applies to {' and '.join(names)}, not to {name}.")
    formula, point = DRAW_EXAMPLES[name]
    example = args.function is None and args.at is None
    formula = formula if args.function is None else args.function
    point = point if args.at is None else args.at
    try:
        picture = _picture(pictures, args, formula, point, example)
    except pictures.DrawError as e:
        raise runs.UsageError(str(e)) from None
    try:
        pictures.save(picture, args.out)  # atomic: the whole file or none
    except OSError as e:
        raise runs.UsageError(f"cannot write {args.out}: {e.strerror or e}.") from None
    print(f"wrote {args.out}: {picture.caption}")
    return 0


def _picture(
    pictures: Any, args: argparse.Namespace, formula: str, point: tuple[float, ...], example: bool
) -> Any:
    """The picture ``args.name`` of ``formula`` at ``point`` (DrawError for a user mistake)."""
    name = args.name
    if name == "surface":
        f = pictures.expression(formula, variables=("x", "y"))
        if len(point) != 2:
            raise pictures.DrawError(f"--at takes two numbers for surface (x0,y0), got {point}.")
        return pictures.surface(
            f, point, extent=args.extent, view=args.view or "both", label=args.label
        )
    f = pictures.expression(formula)
    if name == "graph":
        if len(point) != len(f.variables):
            raise pictures.DrawError(
                f"--at takes {len(f.variables)} number(s) for {formula!r}, one per variable "
                f"({', '.join(f.variables)}), got {len(point)}."
            )
        return pictures.graph(f, *point)
    if len(f.variables) != 1:
        raise pictures.DrawError(
            f"{name} draws a function of one variable; {formula!r} has "
            f"{len(f.variables)}: {', '.join(f.variables)}."
        )
    if len(point) != 1:
        raise pictures.DrawError(f"--at takes one number for {name}, got {len(point)}.")
    common = {"label": args.label, "xlim": args.xlim}
    if args.xlim is not None and len(args.xlim) != 2:
        raise pictures.DrawError(f"--xlim takes two numbers LO,HI, got {len(args.xlim)}.")
    if name == "secants":
        return pictures.secants(f, point[0], args.steps or (2.0, 1.0, 0.5), **common)
    if name == "taylor":
        return pictures.taylor(f, point[0], args.orders or (0, 1, 2, 3, 5), **common)
    x = 4.001 if example and args.x is None else args.x
    return pictures.linearization(f, point[0], x, **common)


def curvature(args: argparse.Namespace) -> int:
    """``mlgrad curvature``: the Hessian of a finished run's training loss, written as
    curvature.json and two figures; prints the findings."""
    options: dict[str, Any] = {"out": args.out, "k": args.k, "plots": not args.no_plots}
    if args.flat_tol is not None:
        options["rtol"] = args.flat_tol
    report = runs.curvature(args.run_dir, **options)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for line in curvature_lines(report):
        print(line)
    return 0


def curvature_lines(report: dict[str, Any]) -> list[str]:
    """The summary ``mlgrad curvature`` prints: one line per finding."""
    eig, stab, params = report["eigenvalues"], report["stability"], report["parameters"]
    kappa = report["condition_number"]
    written = ["curvature.json", *(Path(f).name for f in report["figures"])]
    out_dir = report["out_dir"]
    rows = [
        ("parameters", f"{params['count']}: {params['what']}"),
        ("method", report["method"]["text"]),
        ("largest", ", ".join(f"{v:.6g}" for v in eig["largest"])),
        ("smallest", ", ".join(f"{v:.6g}" for v in eig["smallest"])),
        ("verdict", report["verdict"]),
        ("condition", "undefined (not a cup)" if kappa is None else f"{kappa:.6g}"),
        ("stability", stab["text"]),
        *_closed_form_row(report),
        ("wrote", f"{', '.join(written)} -> {out_dir} ({report['seconds']:.1f} s)"),
    ]
    width = max(len(k) for k, _ in rows)
    head = (
        f"{report['run_dir']}: step {report['step']} of {report['steps']}; the Hessian of "
        f"the training loss in {report['computed_in']}"
    )
    return [head, *(f"  {k:<{width}}  {v}" for k, v in rows)]


def _closed_form_row(report: dict[str, Any]) -> list[tuple[str, str]]:
    closed = report.get("closed_form")
    if not closed:
        return []
    diff = closed["max_abs_difference_hessian"]
    return [
        ("2 Z^T Z / n", f"the closed form matches the Hessian to {diff:.2g} (max |difference|)")
    ]


#: The function of each command.
COMMANDS = {
    "train": train,
    "eval": evaluate,
    "sweep": sweep,
    "configs": configs,
    "draw": draw,
    "curvature": curvature,
}
