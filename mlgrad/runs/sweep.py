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
* ``runs/<run>/``: each run's ``metrics.jsonl`` and TensorBoard event file, the same records
  (:mod:`mlgrad.runs.sweep_logs`), so that ``tensorboard --logdir`` compares the runs.

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

import contextlib
import math
import shlex
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlgrad import _faults
from mlgrad.config import is_number, optimizer_label
from mlgrad.runs import rundir, runtime
from mlgrad.runs.console import Console
from mlgrad.runs.errors import Interrupted, RunError, out_of_memory_is_a_run_error
from mlgrad.runs.provenance import provenance
from mlgrad.runs.setup import as_batch, metrics_program, precision
from mlgrad.runs.stops import StopRequest, stop_requests
from mlgrad.runs.sweep_plan import Group, Run, SweepPlan, prepare_sweep, shape_axes
from mlgrad.runs.sweep_progress import SAVE_SECONDS, SweepProgress, check_resumable
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
    module docstring); the claim is released however this ends.

    Ctrl-C or SIGTERM stops it at the next chunk boundary (about a second), after saving
    the progress, with :class:`~mlgrad.runs.errors.Interrupted` saying how to continue;
    ``plan.resume`` continues such a sweep.
    """
    console = console or Console()
    t0 = time.perf_counter()
    origin = provenance()  # the versions and the tree as the sweep starts
    name = f"{plan.base.name}-sweep" if plan.default_dir else None
    plan.run_dir, lock, created = rundir.claim(
        plan.run_dir, what="mlgrad sweep", default_name=name, resume=plan.resume
    )
    try:
        progress = SweepProgress(plan.run_dir)
        if plan.resume:
            check_resumable(plan)
        with (
            out_of_memory_is_a_run_error(),
            runtime.compilation_cache(console),
            stop_requests() as stop,
            _interrupted_says_how_to_continue(plan),
        ):
            progress.start(plan)
            outcomes, groups, devices = _Groups(plan, progress, stop, console).train()
        report = SweepReport(plan, outcomes, groups, devices)
        report.wall_time_s = round(time.perf_counter() - t0, 3)
        report.provenance = origin
        write_sweep(report, plots=plots, console=console)
        progress.remove()
        return report
    except OSError as e:
        raise RunError(f"writing the run directory {plan.run_dir} failed: {e}") from None
    finally:
        lock.release()
        if created:
            rundir.remove_if_empty(plan.run_dir)


@contextlib.contextmanager
def _interrupted_says_how_to_continue(plan: SweepPlan) -> Iterator[None]:
    """Any interruption (a stop request, or a second Ctrl-C that did not wait for the chunk)
    as :class:`Interrupted` with the command that continues the sweep."""
    try:
        yield
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        command = shlex.join(["mlgrad", "sweep", str(plan.config), *plan.arguments])
        raise Interrupted(
            f"interrupted; the sweep's progress is saved in {plan.run_dir}; continue with: "
            f"{command} --out {shlex.quote(str(plan.run_dir))} --resume",
            signum,
        ) from None


class _Groups:
    """The sweep's groups trained one after the other, each resumed from its progress."""

    def __init__(
        self, plan: SweepPlan, progress: SweepProgress, stop: StopRequest, console: Console
    ) -> None:
        self.plan, self.progress, self.stop, self.console = plan, progress, stop, console
        self.devices: dict[Any, Any] = {}

    def train(self) -> tuple[list[Outcome], list[dict], list[Any]]:
        """Each run's outcome, each group's record, and the devices used."""
        plan, info = self.plan, []
        by_run: dict[int, Outcome] = {}
        n = len(plan.groups)
        self.console.info(
            f"mlgrad: sweeping {plan.runs[0].cfg.name}: {len(plan.runs)} runs in {n} "
            f"group{'s' if n != 1 else ''}" + (" (resumed)" if plan.resume else "")
        )
        for group in plan.groups:
            self._check_stop()
            record = self.progress.finished_group(group)
            if record is None:
                record = self._train(group)
            else:
                self.console.info(f"group {group.index + 1}/{n}: done before the interruption")
            info.append(record)
            for run in group.runs:
                by_run[run.index] = self._outcome(run)
        import jax

        devices = [self.devices[k] for k in sorted(self.devices)] or jax.devices()[:1]
        return [by_run[r.index] for r in plan.runs], info, devices

    def _outcome(self, run: Run) -> Outcome:
        outcome = self.progress.outcome(run)
        assert outcome is not None  # saved when the run finished
        return outcome

    def _check_stop(self) -> None:
        if self.stop.signal is not None:
            raise Interrupted("stopped", self.stop.signal)

    def _train(self, group: Group) -> dict:
        """Trains the group (or what remains of it), saves each run's outcome and the
        group's record; returns the record."""
        shape_keys = shape_axes(self.plan.swept)
        optimizer_fn, uses_lr = _optimizer_fn(group.cfg)
        with precision(group.cfg):
            why = _why_not_vmapped(group, optimizer_fn)
        first = group.runs[0]
        label = " ".join(f"{a.key}={first.texts[a.key]}" for a in shape_keys)
        how = "one vmapped program" if not why else "one fit per run"
        runs = len(group.runs)
        self.console.info(
            f"group {group.index + 1}/{len(self.plan.groups)}{': ' + label if label else ''}: "
            f"{runs} run{'s' if runs != 1 else ''}, {group.cfg.train.steps} steps, as {how}"
            + (f" ({why})" if why else "")
        )
        t = time.perf_counter()
        with precision(group.cfg):
            params = self._one_by_one(group) if why else self._vmapped(group, optimizer_fn, uses_lr)
        seconds = round(time.perf_counter() - t, 3)
        if params is not None:
            for d in runtime.devices_of(params):
                self.devices[d.platform, d.id] = d
        record = {
            "group": group.index,
            "runs": [r.index for r in group.runs],
            "values": {a.key: first.texts[a.key] for a in shape_keys},
            "compiled_as": how,
            "note": why or None,
            "wall_time_s": seconds,
        }
        self.progress.finish_group(group, record)
        n_div = sum(self._outcome(r).diverged for r in group.runs)
        self.console.info(f"  done in {seconds:.1f} s" + (f"; {n_div} diverged" if n_div else ""))
        return record

    def _vmapped(self, group: Group, optimizer_fn: Any, uses_lr: bool) -> Any:
        """The group as one call of :func:`mlgrad.training.sweep.sweep` (seeds x learning
        rates), from its last checkpoint if there is one, checkpointed as it goes."""
        import numpy as np

        from mlgrad.training.sweep import initial_sweep_state, sweep

        cfg = group.cfg
        seeds = list(dict.fromkeys(r.seed for r in group.runs))
        lrs = list(dict.fromkeys(float(r.learning_rate) for r in group.runs)) if uses_lr else [1.0]
        kwargs = dict(
            optimizer_fn=optimizer_fn,
            learning_rates=lrs,
            seeds=seeds,
            steps=cfg.train.steps,
            devices=cfg.train.devices,
            with_key=group.model.with_key,
            has_aux=group.model.has_aux,
        )
        data = as_batch(group.data.train)
        state, damaged = self.progress.restore_state(
            group, lambda: initial_sweep_state(group.model.init, data, **kwargs)
        )
        if damaged:
            self.console.warning(f"{damaged}; training the group from its start")
        every, saved = cfg.train.checkpoint_every, [-math.inf, 0]  # [time, step] of the last
        if state is not None:
            saved[1] = int(state.step)
            self.console.info(f"  continuing from step {saved[1]}")

        def on_chunk(state: Any) -> None:
            step = int(state.step)
            due = step // every > saved[1] // every and time.monotonic() - saved[0] >= SAVE_SECONDS
            if (due or self.stop.signal is not None) and step < cfg.train.steps:
                self.progress.save_state(group, state)
                saved[:] = [time.monotonic(), step]
            _faults.kill_point("sweep_chunk")
            self._check_stop()

        result = sweep(
            group.model.loss,
            group.model.init,
            data,
            batch_size=cfg.train.batch_size,
            state=state,
            callback=on_chunk,
            **kwargs,
        )
        metrics = _evaluator(group.model, group.data)(result.params)
        for run in group.runs:
            column = lrs.index(float(run.learning_rate)) if uses_lr else 0
            j = seeds.index(run.seed) * len(lrs) + column  # sweep's seed-major grid
            diverged = bool(result.diverged[j])
            values = {k: math.nan if diverged else float(v[j]) for k, v in metrics.items()}
            history = np.asarray(result.histories[j], np.float64)
            self.progress.save_outcome(run, Outcome(history, values, diverged))
        return result.params

    def _one_by_one(self, group: Group) -> Any:
        """The group's runs as separate :func:`mlgrad.fit` calls, each as ``mlgrad train``
        does; a run done before an interruption is not trained again (one interrupted part-way
        starts over)."""
        import jax
        import numpy as np

        from mlgrad.config import build_optimizer
        from mlgrad.training import TrainingDivergedError, fit

        evaluate = _evaluator(group.model, group.data)
        batch = as_batch(group.data.train)
        params = None
        for run in group.runs:
            if self.progress.outcome(run) is not None:
                continue
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
                    with_key=group.model.with_key,
                    has_aux=group.model.has_aux,
                    callback=lambda *_: self._check_stop(),
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
            self.progress.save_outcome(run, Outcome(history, metrics, diverged))
        return params


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
    loss = group.model.objective

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
