"""Train a sweep: every run of a :class:`SweepPlan`, a group at a time, into one run
directory (:func:`sweep_and_evaluate`, what ``mlgrad sweep`` does).

Each group that differs only in seeds and numeric learning rates is ONE call of
:func:`mlgrad.training.sweep.sweep` (the learning rate injected with
``optax.inject_hyperparams``; the optimizer's other arguments stay compile-time constants, as
in ``mlgrad train``). A learning-rate schedule is part of its group: its seeds still share one
program. A group that cannot be vmapped (an optimizer that fails under
``inject_hyperparams``) falls back to one :func:`mlgrad.fit` per run, with a note.

The run directory (``runs/<name>-sweep-<UTC timestamp>/`` or exactly ``workdir``, which must
be new or empty) gets, once every run is done:

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
written. While it trains and writes, the sweep owns the directory (an OS lock,
:class:`mlgrad.runs.rundir.RunDirLock`), so that a second sweep or run started into the same
directory is refused instead of mixing its files in; the kernel releases the lock however the
sweep ends, a SIGKILL included.

The best run has the lowest validation loss where there is a validation split, else the
lowest final training loss; diverged runs never win.

With several devices (``train.devices``: ``auto``, the default, or a number) a vmapped group's
runs are split across them, each device training its share (the runs, not the batches, are
what is parallel); a group trained one run at a time trains each run data parallel, as
``mlgrad train`` does.

A diverged run (a NaN or infinite loss) is reported (``diverged`` true, its metrics NaN) and
does not stop the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrad.config import is_number, optimizer_label
from mlgrad.runs import rundir, runtime
from mlgrad.runs.console import Console
from mlgrad.runs.errors import out_of_memory_is_a_run_error
from mlgrad.runs.setup import as_batch, metrics_program, precision
from mlgrad.runs.sweep_plan import Group, SweepPlan, prepare_sweep, shape_axes
from mlgrad.runs.sweep_report import Outcome, SweepReport, write_sweep


def sweep_and_evaluate(
    config: str | Path,
    arguments: Sequence[str],
    workdir: str | Path | None = None,
    *,
    plots: bool = True,
    console: Console | None = None,
) -> SweepReport:
    """Trains every combination of the ``KEY=V1,V2,...`` arguments and writes the sweep's
    run directory: what ``mlgrad sweep CONFIG ARGUMENTS --out WORKDIR`` does.

    Returns:
        The :class:`SweepReport` (``.summary()`` is ``sweep.json``; ``.text()`` the table).

    Raises:
        ConfigError, DataError, UsageError: a mistake found before anything was written.
        RunError: writing failed (nothing of the sweep is left).

    Example:
        >>> report = sweep_and_evaluate(  # doctest: +SKIP
        ...     "configs/linear_regression.yaml", ["optimizer.learning_rate=0.1,0.3"], "runs/s")
        >>> report.best  # doctest: +SKIP
        1
    """
    return train_sweep(prepare_sweep(config, arguments, workdir), plots=plots, console=console)


def train_sweep(
    plan: SweepPlan, *, plots: bool = True, console: Console | None = None
) -> SweepReport:
    """Claims the plan's run directory, trains every group, writes the results (see the
    module docstring); the claim is released however this ends."""
    console = console or Console()
    t0 = time.perf_counter()
    name = f"{plan.base.name}-sweep" if plan.default_dir else None
    plan.run_dir, lock, created = rundir.claim(plan.run_dir, what="mlgrad sweep", default_name=name)
    try:
        with out_of_memory_is_a_run_error(), runtime.compilation_cache(console):
            outcomes, groups, devices = _train_groups(plan, console)
        report = SweepReport(plan, outcomes, groups, devices)
        report.wall_time_s = round(time.perf_counter() - t0, 3)
        write_sweep(report, plots=plots, console=console)
        return report
    finally:
        lock.release()
        if created:
            rundir.remove_if_empty(plan.run_dir)


def _train_groups(plan: SweepPlan, console: Console) -> tuple[list[Outcome], list[dict], list[Any]]:
    """Trains the groups one after the other; each run's outcome, each group's record, and
    the devices used."""
    runs, groups = plan.runs, plan.groups
    by_run: dict[int, Outcome] = {}
    info: list[dict] = []
    devices: dict[Any, Any] = {}
    shape_keys = [a for a in shape_axes(plan.swept)]
    console.info(
        f"mlgrad: sweeping {runs[0].cfg.name}: {len(runs)} runs in {len(groups)} "
        f"group{'s' if len(groups) != 1 else ''}"
    )
    for group in groups:
        optimizer_fn, uses_lr = _optimizer_fn(group.cfg)
        with precision(group.cfg):
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
        with precision(group.cfg):
            if why:
                outcomes, params = _train_one_by_one(group)
            else:
                outcomes, params = _train_vmapped(group, optimizer_fn, uses_lr)
        seconds = round(time.perf_counter() - t, 3)
        for d in runtime.devices_of(params):
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
    if is_number(kwargs.get("learning_rate")):

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

    x, y = as_batch(group.data.train)
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
        name = optimizer_label(group.cfg.optimizer)
        return (
            f"optax.{name} does not trace under optax.inject_hyperparams ({type(e).__name__}: {e})"
        )
    return ""


def _evaluator(model: Any, data: Any) -> Any:
    """``params`` (leading run axis) ``-> {metric: (runs,) NumPy array}``: the final metrics
    of ``mlgrad train``'s summary, in its order (:func:`mlgrad.runs.setup.metrics_program`)."""
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
        as_batch(group.data.train),
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
    batch = as_batch(group.data.train)
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
