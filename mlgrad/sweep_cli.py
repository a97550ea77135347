"""``mlgrad sweep``: train every combination of swept config values, compiled as few programs
as the shapes allow, into one run directory with a summary table and one plot.

::

    mlgrad sweep CONFIG [KEY=V1,V2,...]... [--out DIR] [--dry-run] [--no-plots] [--quiet]

Each ``KEY=V1,V2,...`` argument is split on its top-level commas (not inside ``[]``, ``{}``,
``()`` or quotes, so ``data.features=[temp],[temp,price]`` is two values); each value is parsed
exactly like an override of ``mlgrad train`` (YAML). A key with one value is a plain override
of every run. The runs are the Cartesian product of the keys' values in argument order (the
last key varies fastest); run ``i`` is the run ``mlgrad train CONFIG`` would do with run
``i``'s overrides (listed in ``sweep.json``), with the same key convention
(``split(PRNGKey(seed))``: initialisation, then mini-batch order).

Every combination is validated (config, data, model) before anything is trained or written;
a mistake exits 2 naming the key and, with several swept keys, the combination.

Runs that differ only in ``seed`` and ``optimizer.learning_rate`` (a number) form one group,
trained as ONE vmapped, compiled program (:func:`mlgrad.training.sweep.sweep`, the learning
rate injected into the optimizer state with ``optax.inject_hyperparams``); the optimizer's
other arguments stay compile-time constants, as in ``mlgrad train``. Any other swept key
(layer sizes, features, the optimizer's name or momentum, the batch size) makes one group per
value, trained one group after the other. A learning-rate schedule (a mapping) is part of its
group: its seeds still share one program. A group that cannot be vmapped (an optimizer that
fails under ``inject_hyperparams``) falls back to one ``mlgrad.fit`` per run, with a note.

The run directory (``runs/<name>-sweep-<UTC timestamp>/`` or exactly ``--out DIR``, which
must be new or empty) gets, once every run is done:

* ``sweep.csv``: one row per run: ``run``, each swept key's value (as written), ``seed``,
  ``learning_rate`` (a number, a schedule's name, or ``default``), the final metrics of
  ``mlgrad train``'s ``summary.json`` (``train_loss``; with a validation split ``val_loss``;
  for classifiers ``*_accuracy``), ``min_loss`` (the smallest training-batch loss seen) and
  ``diverged``;
* ``sweep.json``: the same rows with each run's overrides, the best run, the groups and their
  wall times, the devices, the base config and the command's arguments;
* ``config.yaml``: the base config (CONFIG with the single-valued overrides, resolved);
* ``loss_curves.png``: every run's training loss curve on one axes.

Files are written atomically, ``sweep.json`` last; a failure while writing removes what was
written. While it trains and writes, the sweep holds a claim file ``.sweep-running`` in the
directory (created exclusively), so that a second sweep started into the same ``--out`` is
refused instead of mixing its files in; it is removed however the sweep ends (after a
SIGKILL, delete it by hand).

The table is printed to stdout with the best run marked ``*`` (lowest validation loss where
there is a validation split, else lowest final training loss; diverged runs never win).

With several devices (``train.devices``: ``auto``, the default, or a number) a vmapped group's
runs are split across them, each device training its share (the runs, not the batches, are
what is parallel); a group trained one run at a time trains each run data parallel, as
``mlgrad train`` does. The multi-process options of ``mlgrad train`` do not apply.

A diverged run (a NaN or infinite loss) is reported (``diverged`` true, its metrics NaN) and
does not stop the others. Exit codes: 0 when at least one run finished; 1 when every run
diverged (the files are still written; the message suggests smaller learning rates) or
training failed; 2 a usage, config or data error (nothing written); 130 interrupted (nothing
written).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrad.cli import (
    EXIT_OK,
    RunError,
    UsageError,
    _batch,
    _check_can_create,
    _Console,
    _default_run_dir,
    _describe_devices,
    _devices,
    _finite_or_none,
    _is_leftover,
    _json,
    _load_data,
    _mesh,
    _utc_stamp,
    _write_atomic,
    compilation_cache,
    metrics_program,
)
from mlgrad.config import _is_number

__all__ = ["Axis", "parse_axes", "split_values", "sweep_command", "sweep_parser"]

SEED, LR = "seed", "optimizer.learning_rate"


# ---------------------------------------------------------------------------------------------
# arguments


def sweep_parser() -> argparse.ArgumentParser:
    """The options of ``mlgrad sweep``."""
    p = argparse.ArgumentParser(
        prog="mlgrad sweep",
        description="Train every combination of the given config values (the Cartesian "
        "product, in argument order). Runs that differ only in seed and "
        "optimizer.learning_rate train as one vmapped, compiled program; other swept keys "
        "(layer sizes, features, ...) make groups trained one after the other. Writes "
        "sweep.csv, sweep.json, config.yaml and loss_curves.png into one run directory and "
        "prints the table of runs (the best marked *). Exit codes: 0 done (diverged runs are "
        "reported, not fatal), 1 every run diverged or training failed, 2 usage/config/data "
        "error (nothing written).",
        epilog="Examples:\n"
        "  mlgrad sweep configs/linear_regression.yaml seed=0,1,2 "
        "optimizer.learning_rate=0.01,0.1,1.0\n"
        "  mlgrad sweep configs/linear_regression_multi.yaml "
        "data.features=[temp],[temp,price] optimizer.learning_rate=0.1,0.3 train.steps=300\n"
        "  mlgrad sweep configs/autoencoder.yaml model.latent=4,8,16 seed=0,1 --out runs/ae",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="the base run config (YAML)")
    p.add_argument(
        "axes",
        metavar="KEY=V1,V2,...",
        nargs="*",
        help="a dotted key and its values, split on top-level commas (lists such as "
        "[temp,price] and quoted strings stay whole; each value is YAML, as in mlgrad train); "
        "one value is a plain override of every run",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="the run directory (default: runs/<name>-sweep-<UTC timestamp>); must be new or empty",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every combination, print the runs and their groups, write nothing",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no info lines on stderr")
    p.add_argument("--no-plots", action="store_true", help="skip loss_curves.png")
    return p


def split_values(text: str) -> list[str]:
    """Splits ``text`` on its top-level commas: not inside ``[]``, ``{}``, ``()`` or quotes.

    A quote opens a quoted string only where YAML would (at the start of a value or after
    ``[``, ``{``, ``(``, ``,`` or ``:``), so the apostrophe of ``it's`` is an ordinary
    character. Pieces are stripped of surrounding spaces; nothing is parsed here.

    Args:
        text: the values part of a ``KEY=V1,V2,...`` argument.

    Returns:
        The pieces, at least one (``""`` gives ``[""]``).

    Example:
        >>> split_values("[temp],[temp, price],'a,b'")
        ['[temp]', '[temp, price]', "'a,b'"]
    """
    pieces: list[str] = []
    depth, quote, escaped, start = 0, "", False, 0
    last = ","  # the last non-space character outside quotes
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = ""
                last = ch
            continue
        if ch in "'\"" and last in ",[{(:":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
        if not ch.isspace():
            last = ch
    pieces.append(text[start:].strip())
    return pieces


@dataclasses.dataclass(frozen=True)
class Axis:
    """One ``KEY=V1,V2,...`` argument: the key, each value as written and as parsed."""

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]

    def override(self, i: int) -> str:
        """The ``mlgrad train`` override of value ``i``."""
        return f"{self.key}={self.texts[i]}"


def parse_axes(arguments: Sequence[str]) -> list[Axis]:
    """Parses the ``KEY=V1,V2,...`` arguments (each value as :func:`parse_override` does).

    Raises:
        ConfigError: a malformed argument or value, an empty value among several, a key given
            twice, a value listed twice.

    Example:
        >>> [(a.key, a.values) for a in parse_axes(["seed=0,1", "data.features=[a,b],[c]"])]
        [('seed', (0, 1)), ('data.features', (['a', 'b'], ['c']))]
    """
    from mlgrad.config import ConfigError, parse_override

    axes: list[Axis] = []
    seen: dict[str, str] = {}
    for arg in arguments:
        key, sep, rest = arg.partition("=")
        if not sep:
            parse_override(arg)  # raises: not of the form key=value
        key = parse_override(f"{key}=")[0]  # checks the key
        if key in seen:
            raise ConfigError(
                f"`{key}` is given twice ({seen[key]!r} and {arg!r}); list all its values in "
                f"one argument: {key}=V1,V2,...",
                key,
            )
        seen[key] = arg
        texts = split_values(rest)
        if len(texts) > 1 and "" in texts:
            raise ConfigError(
                f"`{key}`: {arg!r} has an empty value (two commas in a row, or one at an "
                "end); write null for a null value.",
                key,
            )
        values = []
        for text in texts:
            try:
                values.append(parse_override(f"{key}={text}")[1])
            except ConfigError as e:
                raise ConfigError(f"`{key}`: value {text!r} of {arg!r}: {e}", key) from None
        canonical = [json.dumps(v, sort_keys=True, default=str) for v in values]
        dupes = sorted({texts[i] for i, c in enumerate(canonical) if canonical.count(c) > 1})
        if dupes:
            raise ConfigError(f"`{key}` lists the value {dupes[0]} more than once.", key)
        axes.append(Axis(key, tuple(texts), tuple(values)))
    return axes


# ---------------------------------------------------------------------------------------------
# the plan: every run validated, runs grouped by what must be compiled separately


@dataclasses.dataclass
class Run:
    """One run of the sweep: a combination of the axes' values, its validated config."""

    index: int
    texts: dict[str, str]  # the value chosen on each axis, as written
    overrides: list[str]  # the equivalent `mlgrad train CONFIG` overrides
    cfg: Any
    module: Any
    seed: int
    learning_rate: Any  # a number, a schedule mapping, or None (the optimizer's default)
    group: int = -1
    n_train: int = 0  # training examples


@dataclasses.dataclass
class Group:
    """Runs that share one compiled program: they differ only in seed and learning rate."""

    index: int
    runs: list[Run]
    data: Any
    model: Any

    @property
    def cfg(self) -> Any:
        return self.runs[0].cfg


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _group_key(cfg: Any) -> str:
    """The config less what one program sweeps: the seed and a numeric learning rate."""
    tree = _plain(cfg)
    tree.pop("seed", None)
    if _is_number(tree["optimizer"].get("learning_rate")):
        tree["optimizer"].pop("learning_rate")
    return json.dumps(tree, sort_keys=True, default=str)


def plan(config: Path, axes: Sequence[Axis]) -> tuple[list[Run], list[Group]]:
    """Validates every combination (config, optimizer, data, model) and groups the runs.

    Data is loaded once per distinct ``data`` section and each group's model is built once
    (its functions are static arguments of the compiled program).

    Raises:
        ConfigError, DataError: the first bad combination, naming the key (and, with several
            swept keys, the combination).
    """
    from mlgrad.config import ConfigError, build_model, build_optimizer, load_config
    from mlgrad.data import DataError

    swept = [a for a in axes if len(a.values) > 1]
    combos = list(itertools.product(*(range(len(a.values)) for a in axes)))
    runs: list[Run] = []
    for index, choice in enumerate(combos):
        texts = {a.key: a.texts[i] for a, i in zip(axes, choice, strict=True)}
        overrides = [f"{k}={v}" for k, v in texts.items()]
        try:
            cfg, module = load_config(config, overrides)
            build_optimizer(cfg.optimizer, steps=cfg.train.steps)  # optax's own checks
            _mesh(cfg)  # train.devices against the devices JAX sees
        except ConfigError as e:
            raise _in_run(e, texts, swept) from None
        lr = _plain(cfg.optimizer).get("learning_rate")
        runs.append(Run(index, texts, overrides, cfg, module, int(cfg.seed), lr))

    datasets: dict[str, Any] = {}
    groups: dict[str, Group] = {}
    for run in runs:
        data_key = json.dumps(_plain(run.cfg.data), sort_keys=True)
        key = _group_key(run.cfg)
        try:
            if data_key not in datasets:
                datasets[data_key] = _load_data(run.cfg)
            if key not in groups:
                model = build_model(run.cfg, run.module, datasets[data_key])
                groups[key] = Group(len(groups), [], datasets[data_key], model)
        except (ConfigError, DataError) as e:
            raise _in_run(e, run.texts, swept) from None
        run.group = groups[key].index
        run.n_train = len(datasets[data_key].x_train)
        groups[key].runs.append(run)
    return runs, list(groups.values())


def _in_run(e: Exception, texts: dict[str, str], swept: Sequence[Axis]) -> Exception:
    """The error, naming the combination when several keys are swept."""
    if len(swept) < 2:
        return e
    where = " ".join(f"{a.key}={texts[a.key]}" for a in swept)
    return type(e)(f"in the sweep's run with {where}: {e}")


def _base_config(config: Path, axes: Sequence[Axis], runs: Sequence[Run]) -> Any:
    """CONFIG with the single-valued overrides (run 0's config if that alone is invalid)."""
    from mlgrad.config import ConfigError, load_config

    try:
        return load_config(config, [a.override(0) for a in axes if len(a.values) == 1])[0]
    except ConfigError:
        return runs[0].cfg


# ---------------------------------------------------------------------------------------------
# training


@dataclasses.dataclass
class Outcome:
    """What one run produced."""

    history: Any  # (steps,) float64 training losses (NaN after a divergence in a fit run)
    metrics: dict[str, float]  # train_loss, val_loss, ... (all NaN when diverged)
    diverged: bool

    @property
    def min_loss(self) -> float:
        import numpy as np

        finite = self.history[np.isfinite(self.history)]
        return float(finite.min()) if finite.size else math.nan


def _optimizer_fn(cfg: Any) -> tuple[Any, bool]:
    """``optimizer_fn(learning_rate)`` for :func:`mlgrad.training.sweep.sweep`, and whether it
    uses the learning rate it is given.

    Only the learning rate is injected (``optax.inject_hyperparams``); the optimizer's other
    arguments stay Python constants of the program, as in ``mlgrad train``. A schedule (or an
    absent learning rate: the optimizer's default) is closed over as well and the injected
    value is ignored: the optimizer counts its own steps, exactly as in ``mlgrad train``.
    (The closure takes no other parameters: inject_hyperparams would inject them too, and
    treat callable defaults as schedules.)
    """
    from mlgrad.config import optimizer_spec

    fn, kwargs = optimizer_spec(cfg.optimizer, steps=cfg.train.steps)
    fixed = {k: v for k, v in kwargs.items() if k != "learning_rate"}
    if _is_number(kwargs.get("learning_rate")):

        def optimizer(learning_rate: Any) -> Any:
            return fn(learning_rate=learning_rate, **fixed)

        return optimizer, True
    if "learning_rate" in kwargs:
        fixed["learning_rate"] = kwargs["learning_rate"]

    def scheduled(learning_rate: Any) -> Any:
        del learning_rate  # the schedule (or the optimizer's default) decides
        return fn(**fixed)

    return scheduled, False


def _why_not_vmapped(group: Group, optimizer_fn: Any) -> str:
    """'' when the group can be one vmapped program; else the reason it cannot."""
    import jax
    import optax

    x, y = _batch(group.data.train)
    loss = group.model.loss

    def one_step(key: Any) -> Any:  # traced only (jax.eval_shape): nothing runs
        opt = optax.inject_hyperparams(optimizer_fn)(learning_rate=0.1)
        params = group.model.init(key)
        value, grads = jax.value_and_grad(loss)(params, (x, y))
        return opt.update(
            grads,
            opt.init(params),
            params,
            value=value,
            grad=grads,
            value_fn=lambda p: loss(p, (x, y)),
        )

    try:
        jax.eval_shape(one_step, jax.random.PRNGKey(0))
    except Exception as e:  # any failure: train this group's runs one by one
        name = group.cfg.optimizer.name
        return (
            f"optax.{name} does not trace under optax.inject_hyperparams ({type(e).__name__}: {e})"
        )
    return ""


def _evaluator(model: Any, data: Any) -> Any:
    """``params`` (leading run axis) ``-> {metric: (runs,) NumPy array}``: the final metrics
    of ``mlgrad train``'s summary, in its order (:func:`mlgrad.cli.metrics_program`)."""
    import numpy as np

    program = metrics_program(model, data, runs=True)
    return lambda params: {k: np.asarray(v) for k, v in program(params).items()}


def _train_vmapped(group: Group, optimizer_fn: Any, uses_lr: bool) -> tuple[list[Outcome], Any]:
    """The group as one call of :func:`mlgrad.training.sweep.sweep` (seeds x learning rates)."""
    import numpy as np

    from mlgrad.training.sweep import sweep

    cfg = group.cfg
    seeds = list(dict.fromkeys(r.seed for r in group.runs))
    lrs = list(dict.fromkeys(float(r.learning_rate) for r in group.runs)) if uses_lr else [1.0]
    result = sweep(
        group.model.loss,
        group.model.init,
        _batch(group.data.train),
        optimizer_fn=optimizer_fn,
        learning_rates=lrs,
        seeds=seeds,
        steps=cfg.train.steps,
        batch_size=cfg.train.batch_size,
        devices=cfg.train.devices,
    )
    metrics = _evaluator(group.model, group.data)(result.params)
    outcomes = []
    for run in group.runs:
        column = lrs.index(float(run.learning_rate)) if uses_lr else 0
        j = seeds.index(run.seed) * len(lrs) + column  # sweep's seed-major grid
        diverged = bool(result.diverged[j])
        values = {k: math.nan if diverged else float(v[j]) for k, v in metrics.items()}
        outcomes.append(Outcome(np.asarray(result.histories[j], np.float64), values, diverged))
    return outcomes, result.params


def _train_one_by_one(group: Group) -> tuple[list[Outcome], Any]:
    """The group's runs as separate :func:`mlgrad.fit` calls, each as ``mlgrad train`` does."""
    import jax
    import numpy as np

    from mlgrad.config import build_optimizer
    from mlgrad.training import TrainingDivergedError, fit

    evaluate = _evaluator(group.model, group.data)
    batch = _batch(group.data.train)
    outcomes, params = [], None
    for run in group.runs:
        steps = run.cfg.train.steps
        init_key, key = jax.random.split(jax.random.PRNGKey(run.seed))
        history = np.full(steps, np.nan)
        try:
            result = fit(
                group.model.loss,
                group.model.init(init_key),
                batch,
                optimizer=build_optimizer(run.cfg.optimizer, steps=steps),
                steps=steps,
                batch_size=run.cfg.train.batch_size,
                key=key,
                devices=run.cfg.train.devices,
            )
            params = result.params
            history[:] = result.history
            values = evaluate(jax.tree.map(lambda x: jax.numpy.asarray(x)[None], params))
            metrics = {k: float(np.asarray(v)[0]) for k, v in values.items()}
            diverged = not all(math.isfinite(v) for v in metrics.values())
        except TrainingDivergedError as e:
            history[: len(e.history)] = e.history
            names = evaluate(jax.tree.map(lambda x: x[None], e.last_good_state.params))
            metrics, diverged = dict.fromkeys(names, math.nan), True
        if diverged:
            metrics = dict.fromkeys(metrics, math.nan)
        outcomes.append(Outcome(history, metrics, diverged))
    return outcomes, params


# ---------------------------------------------------------------------------------------------
# reporting


def _lr_text(lr: Any) -> str:
    """A learning rate for the table: the number, a schedule's name, or 'default'."""
    if _is_number(lr):
        return f"{lr:g}"
    if isinstance(lr, dict):
        return str(lr.get("name", "schedule"))
    return "default"


def _best(outcomes: Sequence[Outcome], metric: str) -> int | None:
    scores = [(o.metrics.get(metric, math.nan), i) for i, o in enumerate(outcomes)]
    finite = [(s, i) for s, i in scores if math.isfinite(s)]
    return min(finite)[1] if finite else None


def _rows(runs: Sequence[Run], outcomes: Sequence[Outcome], swept: Sequence[Axis]) -> list[dict]:
    """One row per run: run, the swept keys' values (as written; seed and learning rate have
    their own columns), seed, learning_rate, the final metrics, min_loss, diverged."""
    rows = []
    for run, outcome in zip(runs, outcomes, strict=True):
        row: dict[str, Any] = {"run": run.index}
        row.update({a.key: run.texts[a.key] for a in swept if a.key not in (SEED, LR)})
        row["seed"] = run.seed
        lr = run.learning_rate
        row["learning_rate"] = float(lr) if _is_number(lr) else _lr_text(lr)
        row.update(outcome.metrics)
        row["min_loss"] = outcome.min_loss
        row["diverged"] = outcome.diverged
        rows.append(row)
    return rows


def _csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(rows[0]))
    for row in rows:
        cells = []
        for v in row.values():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, float):
                v = repr(v)
            cells.append(v)
        writer.writerow(cells)
    return out.getvalue()


def _table_text(rows: list[dict], best: int | None) -> str:
    """The rows as an aligned text table; the best run marked '*'; numbers right-aligned."""
    header = ["", *rows[0]]
    lines = [header]
    for i, row in enumerate(rows):
        cells = ["*" if i == best else ""]
        for v in row.values():
            if isinstance(v, bool):
                cells.append("yes" if v else "no")
            elif isinstance(v, float):
                cells.append(f"{v:.6g}")
            else:
                cells.append(str(v))
        lines.append(cells)
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    right = [c > 0 and all(_numeric(line[c]) for line in lines[1:]) for c in range(len(header))]
    return "".join(
        "  ".join(
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(line, widths, right, strict=True)
        ).rstrip()
        + "\n"
        for line in lines
    )


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _curve_labels(runs: Sequence[Run], swept: Sequence[Axis]) -> tuple[list[str], Any, Any]:
    """The legend label of each run's curve (runs that differ only in seed share one, and a
    colour); with a swept numeric learning rate, the learning rates to shade the colours by
    and, when other keys are swept too, each run's group (a colour family per group)."""
    keys = sorted((a for a in swept if a.key != SEED), key=lambda a: a.key == LR)  # lr last
    if not keys:
        return [f"seed {r.seed}" if swept else f"run {r.index}" for r in runs], None, None
    labels = [
        ", ".join(
            f"lr {r.texts[a.key]}" if a.key == LR else f"{a.key}={r.texts[a.key]}" for a in keys
        )
        for r in runs
    ]
    if any(a.key == LR for a in keys) and all(_is_number(r.learning_rate) for r in runs):
        lrs = [float(r.learning_rate) for r in runs]
        return labels, lrs, ([r.group for r in runs] if len(keys) > 1 else None)
    return labels, None, None


# ---------------------------------------------------------------------------------------------
# the command


def sweep_command(args: argparse.Namespace) -> int:
    """``mlgrad sweep``: validate every combination, train the groups, write the run directory."""
    console = _Console(args.quiet)
    t0 = time.perf_counter()
    config = Path(args.config)
    axes = parse_axes(args.axes)
    swept = [a for a in axes if len(a.values) > 1]
    runs, groups = plan(config, axes)
    base = _base_config(config, axes, runs)
    run_dir = Path(args.out) if args.out else _default_run_dir(f"{base.name}-sweep")
    _check_can_create(run_dir)
    _check_empty(run_dir)
    if args.dry_run:
        _print_plan(runs, groups, swept)
        console.info(f"dry run: all {len(runs)} runs are valid; nothing written.")
        return EXIT_OK
    run_dir, created = _claim(run_dir, default=not args.out, name=f"{base.name}-sweep")
    try:  # the claim is released however this ends (files written stay)
        with compilation_cache(console):
            outcomes, group_info, devices = _train(runs, groups, swept, console)
        metric = "val_loss" if all("val_loss" in o.metrics for o in outcomes) else "train_loss"
        best = _best(outcomes, metric)
        rows = _rows(runs, outcomes, swept)
        wall = round(time.perf_counter() - t0, 3)
        summary = _summary(config, args, base, runs, outcomes, rows, swept, best, metric)
        summary.update(
            groups=group_info,
            devices=[
                {"platform": d.platform, "device_kind": d.device_kind, "id": d.id} for d in devices
            ],
            wall_time_s=wall,
            run_dir=str(run_dir),
            finished_utc=_utc_stamp(),
        )
        _write(
            run_dir,
            base,
            axes,
            rows,
            summary,
            runs,
            outcomes,
            swept,
            best,
            metric,
            args,
            console,
        )

        sys.stdout.write(_table_text(rows, best))
        n_div = sum(o.diverged for o in outcomes)
        if best is not None:
            b = runs[best]
            what = " ".join(f"{a.key}={b.texts[a.key]}" for a in swept) or "the only run"
            print(f"best: run {best} ({what}): {metric} {outcomes[best].metrics[metric]:.6g}")
        print(f"devices: {_describe_devices(devices)}")
        diverged = f" ({n_div} diverged)" if n_div else ""
        print(
            f"done: {len(runs)} runs{diverged} in {len(groups)} "
            f"group{'s' if len(groups) != 1 else ''}, {wall:.1f} s -> {run_dir}"
        )
        if n_div == len(runs):
            lrs = [r.learning_rate for r in runs if _is_number(r.learning_rate)]
            hint = f", e.g. optimizer.learning_rate={min(lrs) / 10:g}" if lrs else ""
            raise RunError(
                f"every run of the sweep diverged (the loss became NaN or infinite); the table is "
                f"in {run_dir}. Try smaller learning rates{hint}."
            )
        return EXIT_OK
    finally:
        _release(run_dir, created)


def _check_empty(run_dir: Path) -> None:
    if run_dir.exists() and any(not _is_leftover(p) for p in run_dir.iterdir()):
        raise UsageError(
            f"output directory {run_dir} exists and is not empty; choose another --out."
        )


#: Created (O_EXCL) in the run directory while a sweep trains and writes, so that a second
#: sweep started with the same --out is refused instead of mixing its files in.
CLAIM = ".sweep-running"


def _claim(run_dir: Path, *, default: bool, name: str) -> tuple[Path, bool]:
    """Takes the run directory for this sweep before training; returns it (a default name
    moves on to the next free one if another sweep took it first) and whether it was made."""
    while True:
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(run_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if default and (free := _default_run_dir(name)) != run_dir:
                run_dir = free  # the next free default name
                continue
            raise UsageError(
                f"another sweep is writing to {run_dir} (it holds {CLAIM}); choose another "
                f"--out, or delete {run_dir / CLAIM} if no sweep is running."
            ) from None
        except OSError as e:
            raise RunError(f"cannot create the run directory {run_dir}: {e}") from None
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        others = [p for p in run_dir.iterdir() if p.name != CLAIM and not _is_leftover(p)]
        if others:  # filled between the check and the claim
            _release(run_dir, created)
            _check_empty(run_dir)
        return run_dir, created


def _release(run_dir: Path, created: bool) -> None:
    """Removes the claim, and the directory if this sweep made it and left nothing in it."""
    with contextlib.suppress(OSError):
        (run_dir / CLAIM).unlink()
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty: a finished sweep's files stay


def _print_plan(runs: Sequence[Run], groups: Sequence[Group], swept: Sequence[Axis]) -> None:
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.index}
        row.update({a.key: run.texts[a.key] for a in swept if a.key not in (SEED, LR)})
        row.update(seed=run.seed, learning_rate=_lr_text(run.learning_rate), group=run.group)
        rows.append(row)
    sys.stdout.write(_table_text(rows, None))
    print(
        f"{len(runs)} runs in {len(groups)} group{'s' if len(groups) != 1 else ''} "
        "(one compiled program each, trained one after the other)"
    )


def _train(
    runs: Sequence[Run], groups: Sequence[Group], swept: Sequence[Axis], console: _Console
) -> tuple[list[Outcome], list[dict], list[Any]]:
    by_run: dict[int, Outcome] = {}
    info: list[dict] = []
    devices: dict[Any, Any] = {}
    shape_keys = [a for a in swept if a.key not in (SEED, LR)]
    console.info(
        f"mlgrad: sweeping {runs[0].cfg.name}: {len(runs)} runs in {len(groups)} "
        f"group{'s' if len(groups) != 1 else ''}"
    )
    for group in groups:
        optimizer_fn, uses_lr = _optimizer_fn(group.cfg)
        why = _why_not_vmapped(group, optimizer_fn)
        first = group.runs[0]
        label = " ".join(f"{a.key}={first.texts[a.key]}" for a in shape_keys)
        how = "one vmapped program" if not why else "one fit per run"
        console.info(
            f"group {group.index + 1}/{len(groups)}{': ' + label if label else ''}: "
            f"{len(group.runs)} run{'s' if len(group.runs) != 1 else ''}, "
            f"{group.cfg.train.steps} steps, as {how}" + (f" ({why})" if why else "")
        )
        t = time.perf_counter()
        if why:
            outcomes, params = _train_one_by_one(group)
        else:
            outcomes, params = _train_vmapped(group, optimizer_fn, uses_lr)
        seconds = round(time.perf_counter() - t, 3)
        for d in _devices(params):
            devices[d.platform, d.id] = d
        for run, outcome in zip(group.runs, outcomes, strict=True):
            by_run[run.index] = outcome
        info.append(
            {
                "group": group.index,
                "runs": [r.index for r in group.runs],
                "values": {a.key: first.texts[a.key] for a in shape_keys},
                "compiled_as": how,
                "note": why or None,
                "wall_time_s": seconds,
            }
        )
        n_div = sum(o.diverged for o in outcomes)
        console.info(f"  done in {seconds:.1f} s" + (f"; {n_div} diverged" if n_div else ""))
    return [by_run[r.index] for r in runs], info, [devices[k] for k in sorted(devices)]


def _summary(
    config: Path,
    args: argparse.Namespace,
    base: Any,
    runs: Sequence[Run],
    outcomes: Sequence[Outcome],
    rows: list[dict],
    swept: Sequence[Axis],
    best: int | None,
    metric: str,
) -> dict[str, Any]:
    entries = []
    for run, outcome, row in zip(runs, outcomes, rows, strict=True):
        entries.append(
            {
                "run": run.index,
                "group": run.group,
                "overrides": run.overrides,
                **{a.key: run.texts[a.key] for a in swept if a.key not in (SEED, LR)},
                "seed": run.seed,
                "learning_rate": run.learning_rate,
                "metrics": {k: _finite_or_none(v) for k, v in outcome.metrics.items()},
                "min_loss": _finite_or_none(row["min_loss"]),
                "diverged": outcome.diverged,
                "steps": int(run.cfg.train.steps),
            }
        )
    return {
        "name": str(base.name),
        "config": str(config),
        "arguments": list(args.axes),
        "swept": {a.key: list(a.texts) for a in swept},
        "best_run": best,
        "best_by": metric,
        "runs": entries,
        "base_config": _plain(base),
    }


def _write(
    run_dir: Path,
    base: Any,
    axes: Sequence[Axis],
    rows: list[dict],
    summary: dict,
    runs: Sequence[Run],
    outcomes: Sequence[Outcome],
    swept: Sequence[Axis],
    best: int | None,
    metric: str,
    args: argparse.Namespace,
    console: _Console,
) -> None:
    """Writes the run directory (claimed by :func:`_claim`); on any failure removes what it
    wrote (the caller removes the claim, and the directory if it made it), so a run directory
    either holds a complete sweep or nothing of it."""
    from mlgrad.config import to_yaml

    header = (
        f"# The base config of `mlgrad sweep {args.config} {' '.join(args.axes)}`.\n"
        "# Run i of the sweep is `mlgrad train config.yaml` with run i's overrides (sweep.json).\n"
    )
    written: list[Path] = []
    try:
        for leftover in filter(_is_leftover, run_dir.iterdir()):
            with contextlib.suppress(OSError):
                leftover.unlink()
        for name, text in (("config.yaml", header + to_yaml(base)), ("sweep.csv", _csv_text(rows))):
            written.append(run_dir / name)
            _write_atomic(run_dir / name, text)
        if not args.no_plots:
            path = run_dir / "loss_curves.png"
            written.append(path)
            _plot(path, runs, outcomes, swept, best, metric, console)
        written.append(run_dir / "sweep.json")
        _write_atomic(run_dir / "sweep.json", _json(summary))
    except BaseException as e:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(e, OSError):
            raise RunError(f"writing the run directory {run_dir} failed: {e}") from None
        raise


def _plot(
    path: Path,
    runs: Sequence[Run],
    outcomes: Sequence[Outcome],
    swept: Sequence[Axis],
    best: int | None,
    metric: str,
    console: _Console,
) -> None:
    """loss_curves.png, written atomically; a plotting bug is a warning, not a lost sweep."""
    from mlgrad import plots

    cfg = runs[0].cfg
    labels, color_values, color_groups = _curve_labels(runs, swept)
    per_epoch = [
        -(-r.n_train // r.cfg.train.batch_size)
        for r in runs
        if r.cfg.train.batch_size is not None and r.cfg.train.batch_size < r.n_train
    ]
    steps = max(int(r.cfg.train.steps) for r in runs)
    # Mini-batch losses are noisy: draw a trailing mean over an epoch or 1/40 of the run.
    smooth = max([*per_epoch, steps // 40]) if per_epoch else 1
    subtitle = f"{len(runs)} runs"
    n_div = sum(o.diverged for o in outcomes)
    if n_div:
        subtitle += f", {n_div} diverged"
    if best is not None:
        subtitle += f"; best: run {best} ({metric} {outcomes[best].metrics[metric]:.4g})"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        plots.loss_curves(
            tmp,
            [o.history for o in outcomes],
            labels,
            diverged=[o.diverged for o in outcomes],
            color_values=color_values,
            color_groups=color_groups,
            best=best,
            title=f"Sweep: {cfg.name} ({cfg.optimizer.name})",
            subtitle=subtitle,
            loss_label=getattr(runs[0].module, "LOSS_LABEL", "loss"),
            minibatch=bool(per_epoch),
            smooth=smooth,
        )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except Exception as e:  # a figure must not lose a finished sweep
        with contextlib.suppress(OSError):
            tmp.unlink()
        console.info(f"warning: loss_curves.png failed ({type(e).__name__}: {e})")
