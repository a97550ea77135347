"""Evaluate a saved run: :func:`evaluate`, what ``mlgrad eval RUN_DIR`` reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlgrad.runs import rundir, runtime
from mlgrad.runs.console import Console
from mlgrad.runs.errors import UsageError
from mlgrad.runs.setup import final_metrics, initial_state, precision, prepare


def evaluate(workdir: str | Path) -> dict[str, Any]:
    """The final metrics of a run directory's latest checkpoint, on the training and
    validation splits. Writes nothing.

    Args:
        workdir: a run directory written by :func:`mlgrad.runs.train_and_evaluate`.

    Returns:
        ``{"run_dir", "step", "steps", "metrics"}``: the checkpoint's step, the config's
        ``train.steps``, and the metrics as in ``summary.json`` (NaN as None).

    Raises:
        UsageError: not a run directory, or no complete checkpoint in it.
        ConfigError, DataError: its config or data can no longer be loaded.
    """
    run_dir = Path(workdir)
    config = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} not found.")
    if not config.is_file():
        raise UsageError(f"{run_dir} holds no config.yaml; is it a run directory of mlgrad train?")
    setup = prepare(config)
    # held while reading: a run training into run_dir refuses eval, and the other way round
    with (
        rundir.RunDirLock(run_dir, what="mlgrad eval", shared=True),
        runtime.compilation_cache(),
        precision(setup.cfg),
    ):
        state = restore_latest(setup, run_dir)
        metrics = final_metrics(setup.model, state.params, setup.data)
    return {
        "run_dir": str(run_dir),
        "step": int(state.step),
        "steps": int(setup.cfg.train.steps),
        "metrics": metrics,
    }


def restore_latest(setup: Any, run_dir: Path, step: int | None = None, *, warn: Any = None) -> Any:
    """The train state of ``run_dir``'s latest complete checkpoint (or of ``step``).

    A damaged newest checkpoint is skipped for the newest intact one, with a warning line
    passed to ``warn`` (default: printed on stderr).

    Raises:
        UsageError: no complete checkpoint (or none at ``step``), none intact, or one that does
            not fit the run's config.
    """
    warn = warn or Console().warning
    from mlgrad.training.checkpoint import Checkpointer, CheckpointError

    ckpt = Checkpointer(Path(run_dir) / "checkpoints")
    try:
        if ckpt.latest_step() is None:
            raise UsageError(f"{run_dir} holds no complete checkpoint.")
        if step is not None:
            return ckpt.restore(initial_state(setup), step)
        state, skipped = ckpt.restore_newest_intact(initial_state(setup))
        for damaged in skipped:
            warn(f"warning: {damaged}; using the newest intact checkpoint (step {int(state.step)})")
        return state
    except (ValueError, CheckpointError) as e:
        raise UsageError(str(e)) from None
    finally:
        ckpt.close()
