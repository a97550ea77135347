"""The run layer: train a config into a run directory, evaluate it, sweep it, from Python
exactly as the ``mlgrad`` command does (the CLI only parses its arguments and calls these).

* :func:`train_and_evaluate` (``mlgrad train``): :func:`prepare_run` validates everything
  and writes nothing (``--dry-run``), :func:`train_run` trains and writes the run directory;
* :func:`evaluate` (``mlgrad eval``): the metrics of a saved run;
* :func:`curvature` (``mlgrad curvature``): is the trained model at the bottom of a cup? The
  Hessian's eigenvalues, verdict, condition number and stability limit, with figures;
* :func:`sweep_and_evaluate` (``mlgrad sweep``): :func:`prepare_sweep`, then
  :func:`train_sweep`;
* :func:`join_processes`: join the other processes of a multi-process run first.

Errors: :class:`mlgrad.config.ConfigError`, :class:`mlgrad.data.DataError` and
:class:`UsageError` are the user's mistakes, found before anything is written (``ValueError``
each); :class:`RunError` is a failure while training or writing.

Example:
    >>> from mlgrad.config import load_config
    >>> from mlgrad.runs import train_and_evaluate
    >>> cfg, _ = load_config("configs/linear_regression.yaml", ["train.steps=50"])
    >>> summary = train_and_evaluate(cfg, "runs/smoke")  # doctest: +SKIP
    >>> summary["steps"]  # doctest: +SKIP
    50
"""

from mlgrad.runs.console import Console
from mlgrad.runs.curvature import curvature
from mlgrad.runs.errors import Interrupted, RunError, UsageError
from mlgrad.runs.evaluate import evaluate, restore_latest
from mlgrad.runs.runtime import compilation_cache, join_processes
from mlgrad.runs.setup import Setup, initial_state, prepare
from mlgrad.runs.sweep import sweep_and_evaluate, train_sweep
from mlgrad.runs.sweep_plan import SweepPlan, prepare_sweep
from mlgrad.runs.sweep_report import SweepReport
from mlgrad.runs.train import RunPlan, prepare_run, train_and_evaluate, train_run

__all__ = [
    "Console",
    "Interrupted",
    "RunError",
    "RunPlan",
    "Setup",
    "SweepPlan",
    "SweepReport",
    "UsageError",
    "compilation_cache",
    "curvature",
    "evaluate",
    "initial_state",
    "join_processes",
    "prepare",
    "prepare_run",
    "prepare_sweep",
    "restore_latest",
    "sweep_and_evaluate",
    "train_and_evaluate",
    "train_run",
    "train_sweep",
]
