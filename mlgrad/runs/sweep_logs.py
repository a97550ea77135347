"""Each run of a sweep as a folder of its own, ``runs/<run>/`` in the sweep's run directory,
holding its ``metrics.jsonl`` and a TensorBoard event file with the same records, so that
``tensorboard --logdir`` over the sweep compares its runs.

The records use ``mlgrad train``'s keys (:mod:`mlgrad.runs.metrics_log`) at the run's
``train.log_every`` steps (and the first and last): ``train_loss`` (the loss of the step's
batch), ``lr`` (a number or a schedule's value at the step; none for a chain), and at the last
step the final validation metrics of ``sweep.csv`` (``val_loss``, ``val_<metric>``). A sweep
keeps no gradient norms, aux metrics or per-run timings, so these keys are absent. The folders
are written with the sweep's other results, once every run is done (a vmapped group's losses
reach the host only at its end).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgrad.config import is_number
from mlgrad.runs import rundir
from mlgrad.runs.event_log import write_events
from mlgrad.runs.metrics_log import MetricsLog
from mlgrad.runs.sweep_plan import Axis, Run

if TYPE_CHECKING:  # sweep_report imports this module to write the logs
    from mlgrad.runs.sweep_report import Outcome

#: The folder of the runs' folders in a sweep's run directory.
RUNS = "runs"


def run_name(run: Run, swept: Sequence[Axis], count: int) -> str:
    """The folder (and TensorBoard run) name of ``run``: ``run003-learning_rate=0.1-seed=1``,
    the run's number and each swept key (its last part) with the value as written."""
    width = max(3, len(str(count - 1)))
    parts = [f"run{run.index:0{width}d}"]
    for axis in swept:
        key = axis.key.rsplit(".", 1)[-1]
        parts.append(f"{key}={run.texts.get(axis.key, '')}")
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", "-".join(parts))[:120]


def run_records(run: Run, outcome: Outcome) -> list[dict[str, Any]]:
    """The metrics records of a finished run of a sweep (see the module docstring)."""
    cfg = run.cfg.train
    steps, every = int(cfg.steps), int(cfg.log_every)
    rates = _learning_rates(run)
    records = []
    for k, loss in enumerate(outcome.history, start=1):
        if k % every and k not in (1, steps):
            continue
        record: dict[str, Any] = {"step": k, "train_loss": rundir.finite_or_none(loss)}
        if record["train_loss"] is None:  # diverged: nothing left to show
            continue
        if rates is not None:
            record["lr"] = rundir.finite_or_none(rates[k - 1])
        records.append(record)
    final = {
        k: rundir.finite_or_none(v) for k, v in outcome.metrics.items() if k.startswith("val_")
    }
    if records and records[-1]["step"] == steps:
        records[-1].update(final)
    return records


def write_run_logs(
    run_dir: Path, runs: Sequence[Run], outcomes: Sequence[Outcome], swept: Sequence[Axis]
) -> Path:
    """Writes ``run_dir/runs/<run>/`` (``metrics.jsonl`` and an event file) for every run;
    returns the ``runs`` folder."""
    folder = run_dir / RUNS
    for run, outcome in zip(runs, outcomes, strict=True):
        directory = folder / run_name(run, swept, len(runs))
        directory.mkdir(parents=True, exist_ok=True)
        rundir.remove_leftovers(directory)  # of a write killed before a resume
        records = run_records(run, outcome)
        MetricsLog(directory / "metrics.jsonl", records).flush(force=True)
        write_events(directory, records)
    return folder


def _learning_rates(run: Run) -> Any:
    """The learning rate of each step (a schedule at the count before the step's update, as
    ``fit`` records it), or None when the config has none to show (a chain, the default)."""
    import numpy as np

    lr = run.learning_rate
    steps = int(run.cfg.train.steps)
    if is_number(lr):
        return np.full(steps, float(lr))
    if "chain" in run.cfg.optimizer or lr is None:
        return None
    from mlgrad.config import optimizer_spec

    _, kwargs = optimizer_spec(run.cfg.optimizer, steps=steps)
    schedule = kwargs.get("learning_rate")
    if not callable(schedule):
        return None
    return np.asarray(schedule(np.arange(steps)), np.float64)
