"""The commands: each calls :mod:`mlgrad.runs` and prints what it returns."""

from __future__ import annotations

import argparse
import json
import sys

from mlgrad import runs
from mlgrad.runs.text import format_metrics


def train(args: argparse.Namespace) -> int:
    """``mlgrad train``: validate, then train into a run directory."""
    from mlgrad.config import to_yaml

    if args.resume and not args.out:
        raise runs.UsageError("--resume needs --out DIR, the run directory to continue.")
    runs.join_processes(
        args.coordinator, args.num_processes, args.process_id, timeout_s=args.join_timeout
    )
    primary = runs.runtime.is_primary()  # process 0 speaks and writes for the run
    console = runs.Console(quiet=args.quiet or not primary)
    plan = runs.prepare_run(args.config, args.out, overrides=args.overrides, resume=args.resume)
    if args.dry_run:
        if primary:
            sys.stdout.write(to_yaml(plan.setup.cfg))
        console.info(f"dry run: config and data are valid ({plan.setup.data!r}); nothing written.")
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


#: The function of each command.
COMMANDS = {"train": train, "eval": evaluate, "sweep": sweep, "configs": configs}
