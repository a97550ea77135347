"""A sweep's progress on disk, so that a stopped or killed sweep continues where it was
(``mlgrad sweep ... --resume``) instead of starting over.

While a sweep trains, its run directory holds ``progress/``:

* ``plan.json``: what is being swept (the config file, the arguments, every run's resolved
  config, a SHA-256 of each group's data), written before anything trains; a resume must
  match it;
* ``group-<g>/state.npz`` and ``group-<g>/losses.bin``: the newest state of the group
  being trained as one vmapped program (a :class:`mlgrad.training.sweep.SweepState`): every
  run's params and optimizer state and the step, in one NumPy archive (no pickle), and the
  losses so far, appended (one row of float losses per step). Saved every
  ``train.checkpoint_every`` steps (at most once per :data:`SAVE_SECONDS`) and when the
  sweep is asked to stop. (A run's checkpoints use orbax; these are written in
  milliseconds where an orbax save takes 0.3 to 2 s, on the path of a stop request, and
  the losses are appended rather than rewritten);
* ``group-<g>/run-<i>.npz``: run ``i``'s outcome (its losses, final metrics, whether it
  diverged) once the run is done; ``group-<g>/group.json``: the group's record, once all of
  its runs are.

The sweep's results (``sweep.json`` and the rest) are written once every group is done, and
``progress/`` is removed after them: a run directory holds a finished sweep, or an
interrupted one that ``--resume`` continues, or nothing.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlgrad.runs import rundir
from mlgrad.runs.errors import UsageError
from mlgrad.runs.sweep_plan import Group, Run, SweepPlan
from mlgrad.runs.sweep_report import Outcome

PROGRESS = "progress"
PLAN = "plan.json"
STATE = "state.npz"
LOSSES = "losses.bin"
#: The least time between two checkpoints of a group (a stop request always saves).
SAVE_SECONDS = 10.0


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _is_key(x: Any) -> bool:
    import jax
    import jax.numpy as jnp

    return jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key)


def record(plan: SweepPlan) -> dict[str, Any]:
    """What ``plan.json`` holds for ``plan``: what a resume must match."""
    from mlgrad.runs.setup import data_fingerprint

    runs = []
    for run in plan.runs:
        cfg = _plain(run.cfg)
        cfg.get("train", {}).pop("devices", None)  # where it trains may change
        runs.append(cfg)
    return {
        "config": str(plan.config),
        "arguments": list(plan.arguments),
        "runs": runs,
        "data": [data_fingerprint(g.data) for g in plan.groups],
    }


def is_sweep_in_progress(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an interrupted sweep."""
    return (run_dir / PROGRESS / PLAN).is_file()


class SweepProgress:
    """The ``progress/`` folder of a sweep's run directory (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / PROGRESS

    # -- the plan --------------------------------------------------------------------------

    def start(self, plan: SweepPlan) -> None:
        """Records the plan (kept when it is already there: a resumed sweep's)."""
        if not (self.dir / PLAN).is_file():
            self.dir.mkdir(exist_ok=True)
            rundir.write_atomic(self.dir / PLAN, rundir.to_json(record(plan)))

    def check(self, plan: SweepPlan) -> None:
        """Refuses (UsageError) to continue a sweep other than the one recorded."""
        run_dir = self.dir.parent
        try:
            saved = json.loads((self.dir / PLAN).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(
                f"--resume: cannot read {self.dir / PLAN} ({e}); the interrupted sweep cannot "
                "be continued. Start it again into another --out."
            ) from None
        now = record(plan)
        if saved.get("runs") != now["runs"] or saved.get("arguments") != now["arguments"]:
            raise UsageError(
                f"--resume: {run_dir} holds an interrupted sweep of other runs "
                f"(`mlgrad sweep {saved.get('config')} {' '.join(saved.get('arguments', []))}`"
                f"{_first_difference(saved.get('runs') or [], now['runs'])}). Give the same "
                "config and arguments to continue it, or choose another --out."
            )
        if saved.get("data") != now["data"]:
            raise UsageError(
                f"--resume: the data changed since the sweep in {run_dir} started; continuing "
                "would train its runs on other data. Restore the data, or start the sweep "
                "again into another --out."
            )

    # -- groups and runs -------------------------------------------------------------------

    def group_dir(self, group: Group) -> Path:
        return self.dir / f"group-{group.index}"

    def save_state(self, group: Group, state: Any) -> None:
        """Saves the group's :class:`~mlgrad.training.sweep.SweepState`: the losses since
        the last save are appended, then the arrays are replaced (atomically), so the state
        file never names a step whose losses are not on disk."""
        import jax
        import numpy as np

        folder = self.group_dir(group)
        folder.mkdir(parents=True, exist_ok=True)
        losses = np.asarray(state.histories)  # (runs, step)
        with open(folder / LOSSES, "ab") as f:
            done = f.tell() // (losses.shape[0] * losses.itemsize)
            f.write(np.ascontiguousarray(losses[:, done:].T).tobytes())
            f.flush()
            os.fsync(f.fileno())
        arrays: dict[str, Any] = {
            f"leaf_{i}": np.asarray(jax.random.key_data(x) if _is_key(x) else x)
            for i, x in enumerate(jax.tree.leaves(state._replace(histories=None)))
        }
        out = io.BytesIO()
        np.savez(out, **arrays)
        rundir.write_atomic(folder / STATE, out.getvalue())

    def restore_state(self, group: Group, like: Callable[[], Any]) -> tuple[Any, str | None]:
        """The group's saved state in the structure of ``like()`` (its state at step 0),
        or None (with the reason when one was saved but does not read back or match)."""
        import jax
        import jax.numpy as jnp
        import numpy as np

        folder = self.group_dir(group)
        if not (folder / STATE).is_file():
            return None, None
        start = like()
        template, treedef = jax.tree.flatten(start._replace(histories=None))
        leaves = []
        try:
            with np.load(folder / STATE, allow_pickle=False) as f:
                if len(f.files) != len(template):
                    raise ValueError(f"{len(f.files)} arrays, expected {len(template)}")
                for i, t in enumerate(template):
                    a = f[f"leaf_{i}"]
                    want = jax.eval_shape(jax.random.key_data, t) if _is_key(t) else t
                    if a.shape != np.shape(want) or a.dtype != jnp.result_type(want):
                        raise ValueError(f"array {i} is {a.dtype}{list(a.shape)}")
                    if _is_key(t):
                        a = jax.random.wrap_key_data(a, impl=jax.random.key_impl(t))
                    leaves.append(a)
            state = jax.tree.unflatten(treedef, leaves)
            runs, dtype = start.histories.shape[0], start.histories.dtype
            step = int(state.step)
            losses = np.fromfile(folder / LOSSES, dtype=dtype, count=step * runs)
            if losses.size != step * runs:
                raise ValueError(f"{losses.size // runs} steps of losses, expected {step}")
        except Exception as e:  # a damaged or foreign file: the group starts over
            return None, f"{folder / STATE} cannot be read ({type(e).__name__}: {e})"
        with open(folder / LOSSES, "r+b") as f:  # drop losses appended after the state
            f.truncate(losses.nbytes)
        return state._replace(histories=losses.reshape(step, runs).T), None

    def outcome(self, run: Run) -> Outcome | None:
        """Run ``run``'s saved outcome, or None when it is not done."""
        import numpy as np

        path = self.dir / f"group-{run.group}" / f"run-{run.index}.npz"
        try:
            with np.load(path, allow_pickle=False) as f:
                names = [str(n) for n in f["metric_names"]]
                values = [float(v) for v in f["metric_values"]]
                return Outcome(
                    f["history"].copy(), dict(zip(names, values, strict=True)), bool(f["diverged"])
                )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(
                f"--resume: {path} cannot be read ({e}); remove it to train that run again."
            ) from None

    def save_outcome(self, run: Run, outcome: Outcome) -> None:
        import numpy as np

        out = io.BytesIO()
        np.savez(
            out,
            history=np.asarray(outcome.history, np.float64),
            metric_names=np.array(list(outcome.metrics), dtype=str),
            metric_values=np.array([float(v) for v in outcome.metrics.values()], np.float64),
            diverged=np.bool_(outcome.diverged),
        )
        path = self.dir / f"group-{run.group}"
        path.mkdir(parents=True, exist_ok=True)
        rundir.write_atomic(path / f"run-{run.index}.npz", out.getvalue())

    def finished_group(self, group: Group) -> dict | None:
        """The record of a group whose runs are all done, or None."""
        try:
            return json.loads((self.group_dir(group) / "group.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def finish_group(self, group: Group, info: dict) -> None:
        """Records the group as done and removes its saved state."""
        info = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in info.items()
        }
        rundir.write_atomic(self.group_dir(group) / "group.json", rundir.to_json(info))
        (self.group_dir(group) / STATE).unlink(missing_ok=True)
        (self.group_dir(group) / LOSSES).unlink(missing_ok=True)

    def remove(self) -> None:
        """Removes ``progress/`` (the sweep's results are written)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _first_difference(saved: list, now: list) -> str:
    """``; run i: `key` was X, now Y`` for the first difference, or ``; N runs, now M``."""
    from mlgrad.config import config_diff

    if len(saved) != len(now):
        return f"; {len(saved)} runs, now {len(now)}"
    for i, (a, b) in enumerate(zip(saved, now, strict=True)):
        keys = config_diff(a, b)
        if keys:
            return f"; run {i}: `{keys[0]}` differs"
    return ""


def check_resumable(plan: SweepPlan) -> None:
    """Refuses (UsageError) to resume into ``plan.run_dir`` unless it holds an interrupted
    sweep of the same runs on the same data."""
    run_dir = plan.run_dir
    if (run_dir / "sweep.json").exists():
        raise UsageError(
            f"--resume: the sweep in {run_dir} is complete (it holds sweep.json); there is "
            "nothing to resume."
        )
    if not is_sweep_in_progress(run_dir):
        what = (
            "the run directory of `mlgrad train`; resume it with mlgrad train ... --resume"
            if (run_dir / "config.yaml").exists()
            else "no interrupted sweep"
        )
        raise UsageError(
            f"--resume: {run_dir} holds {what}. Give the --out of an interrupted 'mlgrad sweep'."
        )
    SweepProgress(run_dir).check(plan)
