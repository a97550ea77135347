"""A sweep's results: the table of runs, ``sweep.csv``, ``sweep.json``, ``config.yaml``,
``loss_curves.png`` and each run's metrics and TensorBoard events (``runs/<run>/``,
:mod:`mlgrad.runs.sweep_logs`), written atomically into the sweep's run directory."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrad.config import is_number, learning_rate_key, optimizer_label
from mlgrad.runs import rundir, runtime
from mlgrad.runs.console import Console
from mlgrad.runs.errors import RunError
from mlgrad.runs.report import sweep_page
from mlgrad.runs.sweep_plan import SEED, Axis, Run, SweepPlan, _plain, is_lr, shape_axes
from mlgrad.runs.text import lr_text, table_text


def best_run(outcomes: Sequence[Outcome], metric: str) -> int | None:
    scores = [(o.metrics.get(metric, math.nan), i) for i, o in enumerate(outcomes)]
    finite = [(s, i) for s, i in scores if math.isfinite(s)]
    return min(finite)[1] if finite else None


def rows_of(runs: Sequence[Run], outcomes: Sequence[Outcome], swept: Sequence[Axis]) -> list[dict]:
    """One row per run: run, the swept keys' values (as written; seed and learning rate have
    their own columns), seed, learning_rate, the final metrics, min_loss, diverged."""
    rows = []
    for run, outcome in zip(runs, outcomes, strict=True):
        row: dict[str, Any] = {"run": run.index}
        row.update({a.key: run.texts[a.key] for a in shape_axes(swept)})
        row["seed"] = run.seed
        lr = run.learning_rate
        row["learning_rate"] = float(lr) if is_number(lr) else lr_text(lr)
        row.update(outcome.metrics)
        row["min_loss"] = outcome.min_loss
        row["diverged"] = outcome.diverged
        rows.append(row)
    return rows


def csv_text(rows: list[dict]) -> str:
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


def curve_labels(runs: Sequence[Run], swept: Sequence[Axis]) -> tuple[list[str], Any, Any]:
    """The legend label of each run's curve (runs that differ only in seed share one, and a
    colour); with a swept numeric learning rate, the learning rates to shade the colours by
    and, when other keys are swept too, each run's group (a colour family per group)."""
    keys = sorted((a for a in swept if a.key != SEED), key=lambda a: is_lr(a.key))  # lr last
    if not keys:
        return [f"seed {r.seed}" if swept else f"run {r.index}" for r in runs], None, None
    labels = [
        ", ".join(
            f"lr {r.texts[a.key]}" if is_lr(a.key) else f"{a.key}={r.texts[a.key]}" for a in keys
        )
        for r in runs
    ]
    if any(is_lr(a.key) for a in keys) and all(is_number(r.learning_rate) for r in runs):
        lrs = [float(r.learning_rate) for r in runs]
        return labels, lrs, ([r.group for r in runs] if len(keys) > 1 else None)
    return labels, None, None


#: Why ``min_loss`` can be below (or above) the final loss, under the table.
MIN_LOSS_NOTE = (
    "train_loss: the whole training split's loss at the final parameters;\n"
    "min_loss: the smallest loss of one training step's batch, before its update\n"
)


@dataclasses.dataclass
class Outcome:
    """What one run of a sweep produced."""

    history: Any  # (steps,) float64 training losses (NaN after a divergence in a fit run)
    metrics: dict[str, float]  # train_loss, val_loss, ... (all NaN when diverged)
    diverged: bool

    @property
    def min_loss(self) -> float:
        import numpy as np

        finite = self.history[np.isfinite(self.history)]
        return float(finite.min()) if finite.size else math.nan


@dataclasses.dataclass
class SweepReport:
    """A finished sweep: its plan, each run's outcome, and how the groups were trained.

    Attributes:
        plan: the :class:`SweepPlan`; ``plan.run_dir`` is where it was written.
        outcomes: one per run, in run order.
        groups: for each group: its runs, swept values, how it was compiled, its wall time.
        devices: the devices the runs trained on.
        wall_time_s: the whole sweep's time.
        provenance: versions, devices, command line, git commit (:mod:`~mlgrad.runs.provenance`).
    """

    plan: SweepPlan
    outcomes: list[Outcome]
    groups: list[dict]
    devices: list[Any]
    wall_time_s: float = 0.0
    provenance: dict | None = None

    @property
    def metric(self) -> str:
        """What picks the best run: ``val_loss`` when every run has one, else ``train_loss``."""
        return "val_loss" if all("val_loss" in o.metrics for o in self.outcomes) else "train_loss"

    @property
    def best(self) -> int | None:
        """The best run's index (diverged runs never win), or None when all diverged."""
        return best_run(self.outcomes, self.metric)

    @property
    def rows(self) -> list[dict]:
        """One row per run, as in ``sweep.csv``."""
        return rows_of(self.plan.runs, self.outcomes, self.plan.swept)

    @property
    def diverged(self) -> int:
        """How many runs diverged."""
        return sum(o.diverged for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        """What ``sweep.json`` holds."""
        plan, metric = self.plan, self.metric
        entries = []
        for run, outcome, row in zip(plan.runs, self.outcomes, self.rows, strict=True):
            entries.append(
                {
                    "run": run.index,
                    "group": run.group,
                    "overrides": run.overrides,
                    **{
                        a.key: run.texts[a.key]
                        for a in plan.swept
                        if a.key != SEED and not is_lr(a.key)
                    },
                    "seed": run.seed,
                    "learning_rate": run.learning_rate,
                    "metrics": {k: rundir.finite_or_none(v) for k, v in outcome.metrics.items()},
                    "min_loss": rundir.finite_or_none(row["min_loss"]),
                    "diverged": outcome.diverged,
                    "steps": int(run.cfg.train.steps),
                }
            )
        return {
            "name": str(plan.base.name),
            "config": str(plan.config),
            "arguments": list(plan.arguments),
            "swept": {a.key: list(a.texts) for a in plan.swept},
            "best_run": self.best,
            "best_by": metric,
            "runs": entries,
            "base_config": _plain(plan.base),
            "groups": self.groups,
            "devices": runtime.device_records(self.devices),
            "wall_time_s": self.wall_time_s,
            "run_dir": str(plan.run_dir),
            "finished_utc": rundir.utc_stamp(),
            "provenance": self.provenance,
        }

    def text(self) -> str:
        """The table of runs (the best marked ``*``), the best run, the devices, a last line."""
        plan, best, n = self.plan, self.best, len(self.plan.groups)
        lines = [table_text(self.rows, best), MIN_LOSS_NOTE]
        if best is not None:
            b = plan.runs[best]
            what = " ".join(f"{a.key}={b.texts[a.key]}" for a in plan.swept) or "the only run"
            value = self.outcomes[best].metrics[self.metric]
            lines.append(f"best: run {best} ({what}): {self.metric} {value:.6g}\n")
        lines.append(f"devices: {runtime.describe_devices(self.devices)}\n")
        diverged = f" ({self.diverged} diverged)" if self.diverged else ""
        lines.append(
            f"done: {len(plan.runs)} runs{diverged} in {n} group{'s' if n != 1 else ''}, "
            f"{self.wall_time_s:.1f} s -> {plan.run_dir}\n"
        )
        return "".join(lines)

    @property
    def failure(self) -> str | None:
        """Why the sweep failed as a whole (every run diverged), or None."""
        if self.diverged < len(self.outcomes):
            return None
        lrs = [r.learning_rate for r in self.plan.runs if is_number(r.learning_rate)]
        key = learning_rate_key(self.plan.runs[0].cfg.optimizer)
        hint = f", e.g. optimizer.{key}={min(lrs) / 10:g}" if lrs else ""
        return (
            f"every run of the sweep diverged (the loss became NaN or infinite); the table is "
            f"in {self.plan.run_dir}. Try smaller learning rates{hint}."
        )


def write_sweep(report: SweepReport, *, plots: bool = True, console: Console | None = None) -> None:
    """Writes the sweep's files into its run directory (which it owns), ``sweep.json`` last;
    on any failure removes what it wrote (the caller releases the directory, and removes it if
    it made it), so a run directory holds a complete sweep or nothing of it."""
    from mlgrad.config import to_yaml
    from mlgrad.runs.sweep_logs import RUNS, write_run_logs

    plan, run_dir = report.plan, report.plan.run_dir
    header = (
        f"# The base config of `mlgrad sweep {plan.config} {' '.join(plan.arguments)}`.\n"
        "# Run i of the sweep is `mlgrad train config.yaml` with run i's overrides (sweep.json).\n"
    )
    files = [("config.yaml", header + to_yaml(plan.base)), ("sweep.csv", csv_text(report.rows))]
    written: list[Path] = []
    try:
        rundir.remove_leftovers(run_dir)
        for name, text in files:
            written.append(run_dir / name)
            rundir.write_atomic(run_dir / name, text)
        written.append(run_dir / RUNS)
        write_run_logs(run_dir, plan.runs, report.outcomes, plan.swept)
        if plots:
            written.append(run_dir / "loss_curves.png")
            _plot(run_dir / "loss_curves.png", report, console or Console())
        written.append(run_dir / "report.html")  # before sweep.json: it marks the end
        rundir.write_atomic(run_dir / "report.html", sweep_page(run_dir, report.summary()))
        written.append(run_dir / "sweep.json")
        rundir.write_atomic(run_dir / "sweep.json", rundir.to_json(report.summary()))
    except BaseException as e:
        for path in written:
            with contextlib.suppress(OSError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        if isinstance(e, OSError):
            raise RunError(f"writing the run directory {run_dir} failed: {e}") from None
        raise


def _plot(path: Path, report: SweepReport, console: Console) -> None:
    """loss_curves.png, written atomically; a plotting bug is a warning, not a lost sweep."""
    from mlgrad import plots

    runs, outcomes, swept = report.plan.runs, report.outcomes, report.plan.swept
    best, metric = report.best, report.metric
    cfg = runs[0].cfg
    labels, color_values, color_groups = curve_labels(runs, swept)
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
    tmp = rundir.temporary(path)
    try:
        plots.loss_curves(
            tmp,
            [o.history for o in outcomes],
            labels,
            diverged=[o.diverged for o in outcomes],
            color_values=color_values,
            color_groups=color_groups,
            best=best,
            title=f"Sweep: {cfg.name} ({optimizer_label(cfg.optimizer)})",
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
