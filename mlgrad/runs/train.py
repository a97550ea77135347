"""Train a config into a run directory: :func:`train_and_evaluate`.

A run directory (``runs/<name>-<UTC timestamp>/``, or exactly the ``workdir`` given) holds:

* ``config.yaml``: the resolved config (defaults filled in, data path absolute);
* ``run.json``: what the run trains on: the data's source and a SHA-256 fingerprint of its
  values, which ``resume`` checks;
* ``metrics.jsonl``: one JSON object per logged step: ``step``, ``train_loss`` (the loss of
  that step's batch before its update), ``lr``, ``grad_norm``, ``steps_per_s``, the loss's
  aux metrics as ``aux/<name>``, and at evaluation steps ``val_loss`` and the model's other
  validation metrics (``val_accuracy``); appended, durable at every checkpoint
  (:mod:`mlgrad.runs.metrics_log`);
* ``events.out.tfevents.*``: the same records as TensorBoard events, the keys as tags
  (:mod:`mlgrad.runs.event_log`; a resumed run adds a file that hides the stopped run's
  events after its checkpoint);
* ``checkpoints/``: orbax checkpoints of the full train state (params, optimizer state, step,
  PRNG key) at step 0, every ``train.checkpoint_every`` steps and at the end (the newest
  ``train.keep_checkpoints`` and the one at step 0 are kept);
* ``summary.json``: final ``metrics`` (``train_loss``; with a validation split ``val_loss``
  and, for classifiers, ``val_accuracy``), the model's report (e.g. ``coefficients`` in data
  units and ``intercept``), ``wall_time_s``, ``devices``, ``steps``, ``dtype``, ``name``,
  ``config``, and ``provenance`` (versions, platform, devices, command line, git commit:
  :func:`mlgrad.runs.provenance.provenance`);
* PNG figures: ``loss.png`` and the model's own (``fit.png``, ``loss_surface.png``, ...).

The gradient-descent path over the loss surface needs the parameters after every step, so
``fit`` records them (``trace_params=True``) exactly when the model has at most two scalar
parameters (single-feature linear regression: slope and intercept); for larger models the
trace would cost memory and there is no 2-D surface to draw it on.

``resume=True`` continues the run in ``workdir`` from its latest complete checkpoint up to
``train.steps``; any other difference from the saved config is refused. Training N steps and
resuming to 2N gives bit-identical parameters to 2N uninterrupted steps.

``train.dtype: float64`` trains in double precision: the data is loaded as float64 and the run
(training, checkpoints, final metrics) happens inside ``jax.enable_x64``, which is restored
afterwards, so the rest of the process keeps its own setting.

With several processes (joined first with :func:`mlgrad.runs.join_processes`) every process
trains and saves its part of the checkpoints; only process 0 writes the logs, the summary and
the figures, and a write failure there stops every process together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrad import _faults, _figure_worker
from mlgrad.runs import rundir, runtime
from mlgrad.runs.console import Console
from mlgrad.runs.errors import Interrupted, RunError, UsageError, out_of_memory_is_a_run_error
from mlgrad.runs.event_log import EventLog, event_files
from mlgrad.runs.metrics_log import MetricsLog
from mlgrad.runs.provenance import provenance
from mlgrad.runs.report import write_report
from mlgrad.runs.setup import (
    Setup,
    as_batch,
    chunk_size,
    data_fingerprint,
    final_metrics,
    initial_state,
    param_count,
    precision,
    prepare,
)
from mlgrad.runs.stops import StopRequest, stop_requests
from mlgrad.runs.sweep_progress import is_sweep_in_progress

#: Keys of the config that may change when a run is resumed.
RESUMABLE_CHANGES = ("train.steps", "train.devices")


@dataclasses.dataclass
class RunPlan:
    """A run validated and ready to train (:func:`prepare_run`); nothing written yet."""

    setup: Setup
    run_dir: Path
    resume: bool = False
    default_dir: bool = False  # a default name: it may move on to a free one
    command: tuple[str, ...] = ()  # CONFIG and the overrides as given (the resume hint)
    auto: bool = False  # --auto-resume: the same command starts and continues the run
    warnings: tuple[str, ...] = ()  # what the config does that it may not mean


def train_and_evaluate(
    config: str | Path | Any,
    workdir: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    plots: bool = True,
    console: Console | None = None,
) -> dict[str, Any] | None:
    """Trains the model of ``config`` into the run directory ``workdir`` and evaluates it:
    what ``mlgrad train CONFIG [overrides] --out WORKDIR`` does.

    Args:
        config: a YAML file, or a config from :func:`mlgrad.config.load_config`.
        workdir: the run directory (default: ``runs/<name>-<UTC timestamp>``); it must be new
            or empty, unless ``resume``.
        overrides: dotted ``key=value`` overrides of the config.
        resume: continue the run in ``workdir`` from its latest checkpoint.
        plots: write the PNG figures.
        console: where info lines go (default: stderr).

    Returns:
        The run's summary (what ``summary.json`` holds); None on the processes other than 0
        of a multi-process run.

    Raises:
        ConfigError, DataError, UsageError: a mistake found before anything was written.
        RunError: training diverged, or writing the run directory failed.

    Example:
        >>> summary = train_and_evaluate(  # doctest: +SKIP
        ...     "configs/linear_regression.yaml", "runs/lr", overrides=["train.steps=500"])
        >>> summary["metrics"]["train_loss"]  # doctest: +SKIP
    """
    plan = prepare_run(config, workdir, overrides=overrides, resume=resume)
    return train_run(plan, plots=plots, console=console)


def prepare_run(
    config: str | Path | Any,
    workdir: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: bool | str = False,
) -> RunPlan:
    """Validates everything a run needs (config, data, model, devices, the run directory and,
    with ``resume``, that the saved run can be continued), writing nothing: ``--dry-run``.

    ``resume="auto"`` (``--auto-resume``) resumes when ``workdir`` holds a run (its
    ``config.yaml``) and starts one otherwise.

    Raises:
        ConfigError, DataError, UsageError: naming what is wrong.
    """
    if resume and workdir is None:
        raise UsageError("--resume needs --out DIR, the run directory to continue.")
    auto = resume == "auto"
    if auto:
        resume = workdir is not None and (Path(workdir) / "config.yaml").is_file()
    setup = prepare(config, overrides)
    if workdir is None:  # several processes agree on process 0's timestamp
        run_dir = Path(runtime.agree(str(rundir.default_run_dir(setup.cfg.name))))
    else:
        run_dir = Path(workdir)
    rundir.check_can_create(run_dir)
    if resume:
        if not run_dir.is_dir():
            raise UsageError(f"--resume: {run_dir} does not exist, so there is no run to resume.")
        check_resumable(setup, run_dir)
    else:
        rundir.check_empty(
            run_dir, advice="Pass --resume to continue the run in it, or choose another --out."
        )
    command = tuple(str(x) for x in (config, *overrides)) if isinstance(config, str | Path) else ()
    from mlgrad.config import schedule_length_warnings

    warnings = schedule_length_warnings(setup.cfg.optimizer, setup.cfg.train.steps)
    return RunPlan(
        setup,
        run_dir,
        bool(resume),
        default_dir=workdir is None,
        command=command,
        auto=auto,
        warnings=tuple(warnings),
    )


def check_resumable(setup: Setup, run_dir: Path) -> None:
    """Refuses to resume a run whose saved config differs (other than
    :data:`RESUMABLE_CHANGES`)."""
    from omegaconf import OmegaConf

    from mlgrad.config import ConfigError, RunConfig, config_diff, read_config_file
    from mlgrad.config.structured import to_dict

    saved_path = run_dir / "config.yaml"
    if (
        (run_dir / "sweep.json").exists()
        or (run_dir / "sweep.csv").exists()
        or is_sweep_in_progress(run_dir)
    ):
        raise UsageError(
            f"--resume: {run_dir} is the directory of a sweep (it holds sweep.json), not of a "
            "run; give the run directory of an earlier 'mlgrad train ... --out DIR'."
        )
    if not saved_path.is_file():
        raise UsageError(
            f"--resume: {run_dir} holds no config.yaml, so there is no run to resume there. "
            "Give the run directory of an earlier 'mlgrad train ... --out DIR'."
        )
    try:
        saved = read_config_file(saved_path)
    except ConfigError as e:
        raise UsageError(f"--resume: cannot read the saved config: {e}") from None
    current = to_dict(setup.cfg)
    flat_saved, flat_now = _flat(saved), _flat(current)
    defaults = _flat(OmegaConf.to_container(OmegaConf.structured(RunConfig)))
    differ = [
        k
        for k in config_diff(saved, current)
        if k not in RESUMABLE_CHANGES  # a key added to the schema since is at its default:
        and not (k not in flat_saved and k in defaults and flat_now.get(k) == defaults[k])
    ]
    _refuse_moving_schedules(setup, differ, flat_saved, flat_now)
    if differ:
        changes = "; ".join(
            f"`{k}` was {_short(flat_saved.get(k))}, now {_short(flat_now.get(k))}" for k in differ
        )
        raise UsageError(
            f"--resume: the config differs from the saved run in {run_dir} ({changes}). "
            "Only train.steps and train.devices may change when resuming; start a new run "
            "(another --out) to train with other settings."
        )
    _check_same_data(setup, run_dir)
    _check_something_to_resume(run_dir)


def _refuse_moving_schedules(setup: Setup, differ: list[str], saved: dict, now: dict) -> None:
    """Refuses to extend a run whose schedule follows train.steps: the schedule of the steps
    already taken would change. Says how to pin it."""
    from mlgrad.config import keys_following

    following = keys_following(setup.source) if setup.source else []
    moved = [k for k in following if k in differ]
    if not moved or saved.get("train.steps") == now.get("train.steps"):
        return
    pins = " ".join(f"{k}={saved.get(k)}" for k in moved)
    raise UsageError(
        f"--resume: `{moved[0]}` follows train.steps (${{train.steps}} in {setup.source}), so "
        f"train.steps={now.get('train.steps')} would change the schedule the run has been "
        f"training with ({moved[0]} was {saved.get(moved[0])}, now {now.get(moved[0])}). "
        "To continue with the schedule as it was, pin it: add "
        f"{pins} to the command; to train the longer schedule, start a new run (another --out)."
    )


#: Written when a run starts: what the run was trained on (the data's fingerprint).
RUN_INFO = "run.json"


def _check_same_data(setup: Setup, run_dir: Path) -> None:
    """Refuses to continue on data that changed since the run started (``run.json``)."""
    try:
        info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a run of an earlier mlgrad, or killed before it wrote run.json
    saved = info.get("data_fingerprint") if isinstance(info, dict) else None
    if saved and saved != data_fingerprint(setup.data):
        raise UsageError(
            f"--resume: the data changed since the run in {run_dir} started ({setup.data.source}"
            " no longer holds the same values); continuing would train on other data. Restore "
            "the data, or start a new run (another --out)."
        )


def _check_something_to_resume(run_dir: Path) -> None:
    """Refuses when the checkpoints are gone but the metrics show the run got past step 0:
    starting over would silently drop them."""
    checkpoints = run_dir / "checkpoints"
    if checkpoints.exists() and not checkpoints.is_dir():
        raise UsageError(f"--resume: {checkpoints} is not a directory; nothing to resume from.")
    # A committed checkpoint is a folder named by its step (orbax renames it into place when
    # complete). Listed by hand: orbax's own listing is a collective call, and only process
    # 0 gets here.
    if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()):
        return
    reached = max((r["step"] for r in MetricsLog.read(run_dir / "metrics.jsonl")), default=0)
    if reached > 0:
        raise UsageError(
            f"--resume: {run_dir} holds no complete checkpoint, but its metrics reach step "
            f"{reached}: the checkpoints were removed, so there is nothing to resume from. "
            "Start a new run (another --out)."
        )


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def train_run(
    plan: RunPlan, *, plots: bool = True, console: Console | None = None
) -> dict[str, Any] | None:
    """Trains a prepared run (:func:`prepare_run`) and writes its run directory.

    Returns:
        The summary, as :func:`train_and_evaluate`.
    """
    runtime.barrier("mlgrad train: checked")  # every process checked before 0 writes
    lock, created = _claim(plan)
    try:
        with (
            out_of_memory_is_a_run_error(),
            runtime.compilation_cache(console),
            precision(plan.setup.cfg),
        ):
            return _Training(plan, console or Console()).run(plots=plots)
    except Interrupted as e:
        raise Interrupted(
            f"interrupted at step {e.step}; the checkpoint is saved, continue with: "
            f"{resume_command(plan)}",
            e.signum,
            e.step,
        ) from None
    finally:
        if lock is not None:
            lock.release()
        if created:
            rundir.remove_if_empty(plan.run_dir)  # a run that failed before writing anything


def resume_command(plan: RunPlan) -> str:
    """The command that continues the run: the one given (CONFIG and its overrides), with
    ``--out DIR`` and ``--resume`` (or ``--auto-resume`` when it was given); for a config
    built in Python, the run directory's own ``config.yaml``."""
    out = shlex.quote(str(plan.run_dir))
    flag = "--auto-resume" if plan.auto else "--resume"
    words = plan.command or (str(plan.run_dir / "config.yaml"),)
    return f"mlgrad train {shlex.join(words)} --out {out} {flag}"


def _claim(plan: RunPlan) -> tuple[rundir.RunDirLock | None, bool]:
    """Process 0 takes the run directory for this run (its OS lock) and checks again, under
    the lock, that it is empty or, resuming, that it can be continued; a default directory
    that another run took meanwhile moves on to the next free name. With several processes a
    refusal stops them all. Returns the lock and whether the directory was made for it."""
    if not runtime.is_primary():
        runtime.stop_together(None, plan.run_dir)
        return None, False
    multi = runtime.is_multiprocess()
    default = plan.setup.cfg.name if plan.default_dir and not multi else None
    lock, failure, created = None, None, False
    try:
        plan.run_dir, lock, created = rundir.claim(
            plan.run_dir, what="mlgrad train", default_name=default, resume=plan.resume
        )
        if plan.resume:
            check_resumable(plan.setup, plan.run_dir)
    except UsageError as e:
        if lock is not None:
            lock.release()
        if not multi:
            raise
        failure = str(e)
    runtime.stop_together(failure, plan.run_dir)
    return lock, created


class _Training:
    """One run from its first checkpoint to its summary, in the order the steps happen."""

    def __init__(self, plan: RunPlan, console: Console) -> None:
        self.setup, self.run_dir, self.resuming = plan.setup, plan.run_dir, plan.resume
        self.cfg = plan.setup.cfg
        self.console = console
        self.primary = runtime.is_primary()  # the only writer of logs, plots and the summary
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", write=False)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.t0 = time.perf_counter()
        self.stop = StopRequest()  # Ctrl-C or SIGTERM while fit trains: save, then stop
        self.provenance = provenance() if self.primary else None  # the tree as the run starts

    def run(self, *, plots: bool) -> dict[str, Any] | None:
        self.plots = plots
        try:
            state0 = self._initial_state()
            state, start = self._restore(state0)
            self._open_run_dir(start)
            self._announce(state0, start)
            state, result = self._train(state, start)
            if not self.primary:
                return None
            return self._finish(state, result, start, plots=plots)
        finally:
            with contextlib.suppress(OSError):
                self.log.close()

    # -- before training ------------------------------------------------------------------

    def _initial_state(self) -> Any:
        state0 = initial_state(self.setup)
        if self.setup.mesh is not None:  # checkpoints save and restore it replicated
            from mlgrad.training.parallel import place, replicated

            state0 = place(state0, replicated(self.setup.mesh))
        return state0

    def _restore(self, state0: Any) -> tuple[Any, int]:
        """The state to continue from (the latest checkpoint when resuming) and its step."""
        from mlgrad.training.checkpoint import Checkpointer, CheckpointError

        if not self.resuming:
            return state0, 0
        ckpt = Checkpointer(self.ckpt_dir)
        try:
            state = state0
            if ckpt.latest_step() is not None:
                state, skipped = ckpt.restore_newest_intact(state0)
                for damaged in skipped:
                    self.console.warning(
                        f"warning: {damaged}; resuming from the newest intact checkpoint "
                        f"(step {int(state.step)})"
                    )
        except (ValueError, CheckpointError) as e:
            raise UsageError(f"--resume: {e}") from None
        finally:
            ckpt.close()
        start, steps = int(state.step), self.cfg.train.steps
        if start > steps:
            raise UsageError(
                f"--resume: the run in {self.run_dir} is already at step {start}, past "
                f"train.steps={steps}; pass train.steps={start} or more."
            )
        return state, start

    def _open_run_dir(self, start: int) -> None:
        """Process 0 writes config.yaml and the metrics so far; every process waits for it
        (the others save checkpoints into the directory) and stops with it on failure."""
        from mlgrad.config import to_yaml

        failure = None
        try:
            if self.primary:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                rundir.remove_leftovers(self.run_dir)
                rundir.write_atomic(self.run_dir / "config.yaml", to_yaml(self.cfg))
                if not (self.run_dir / RUN_INFO).exists():
                    info = {"data": self.setup.data.source}
                    info["data_fingerprint"] = data_fingerprint(self.setup.data)
                    rundir.write_atomic(self.run_dir / RUN_INFO, rundir.to_json(info))
                kept = [r for r in MetricsLog.read(self.log.path) if r["step"] <= start]
                kept = kept if self.resuming else []
                # Resuming a run with event files: they hold the kept records already, and a
                # new file hides their events past the checkpoint. (Without any, from an
                # mlgrad before them, the new file gets every record.)
                logged = self.resuming and bool(event_files(self.run_dir))
                events = EventLog(self.run_dir, purge_step=start + 1 if logged else None)
                self.log = MetricsLog(
                    self.log.path, kept, events=events, events_from=len(kept) if logged else 0
                )
                if self.resuming:  # stale until this run finishes
                    with contextlib.suppress(FileNotFoundError):
                        (self.run_dir / "summary.json").unlink()
                self.log.flush(force=True)
        except OSError as e:
            failure = f"cannot write the run directory {self.run_dir}: {e.strerror or e}"
        runtime.stop_together(failure, self.run_dir)

    def _announce(self, state0: Any, start: int) -> None:
        cfg, info = self.cfg, self.console.info
        what = "training"
        if self.resuming and start == cfg.train.steps:
            what = f"already at step {start}; rewriting the summary and figures of"
        elif self.resuming and start:
            what = f"resuming at step {start} of"
        info(
            f"mlgrad: {what} {cfg.name} ({self.setup.module.__name__}, "
            f"{param_count(state0.params)} parameters) for {cfg.train.steps} steps "
            f"-> {self.run_dir}"
        )
        info(f"data: {self.setup.data.source}")
        info(f"devices: {runtime.describe_mesh(self.setup.mesh)}")

    # -- training -------------------------------------------------------------------------

    def _train(self, state: Any, start: int) -> tuple[Any, Any]:
        """``fit`` from ``state`` to ``train.steps``, logging and checkpointing each chunk."""
        from mlgrad.training import TrainingDivergedError
        from mlgrad.training.checkpoint import Checkpointer, CheckpointError

        train_cfg = self.cfg.train
        val_batch = self._val_batch()
        # Asynchronous saves: the next chunk trains while a checkpoint is written (one
        # process: several would have to agree on each commit).
        self.ckpt = Checkpointer(
            self.ckpt_dir,
            keep=train_cfg.keep_checkpoints,
            asynchronous=not runtime.is_multiprocess(),
        )
        result = None
        try:
            if runtime.is_multiprocess():
                self.ckpt.open_for_writing()
            if start == 0:
                self._save(state)
            if start < train_cfg.steps:
                with stop_requests() as self.stop:
                    result = self._fit(state, val_batch)
                state = result.state
        except TrainingDivergedError as e:
            raise self._diverged(e, start) from None
        except (CheckpointError, OSError) as e:
            raise RunError(f"writing the run directory {self.run_dir} failed: {e}") from None
        finally:
            self.ckpt.close()
        return state, result

    def _fit(self, state: Any, val_batch: Any) -> Any:
        """``fit`` from ``state`` to ``train.steps`` with the chunk callback."""
        from mlgrad.training import fit

        setup, train_cfg = self.setup, self.cfg.train
        return fit(
            setup.model.loss,
            None,
            as_batch(setup.data.train),
            optimizer=setup.optimizer,
            steps=train_cfg.steps,
            batch_size=train_cfg.batch_size,
            val_data=val_batch,
            eval_every=train_cfg.eval_every if val_batch is not None else None,
            state=state,
            chunk_size=chunk_size(train_cfg, val_batch is not None),
            callback=self._chunk_callback(val_batch),
            progress=self.console.progress,
            trace_params=param_count(state.params) <= 2,
            devices=1 if setup.mesh is None else list(setup.mesh.devices.flat),
            learning_rate=self._recorded_learning_rate(),
            has_aux=setup.model.has_aux,
            with_key=setup.model.with_key,
            sharpness_every=train_cfg.sharpness_every,
        )

    def _recorded_learning_rate(self) -> Any:
        """The run's learning rate (a number or the built schedule) for the metrics' ``lr``;
        None (logged as null) for a chain, whose rate lives in one of its elements."""
        from mlgrad.config import optimizer_spec

        if "chain" in self.cfg.optimizer:
            return None
        _, kwargs = optimizer_spec(self.cfg.optimizer, steps=self.cfg.train.steps)
        return kwargs.get("learning_rate")

    def _val_batch(self) -> Any:
        data, mesh = self.setup.data, self.setup.mesh
        if data.val is None:
            return None
        batch = as_batch(data.val)
        if mesh is not None:
            from mlgrad.training.parallel import place, replicated

            batch = place(batch, replicated(mesh))
        return batch

    def _save(self, state: Any) -> None:
        if int(state.step) not in self.ckpt.all_steps():
            self.ckpt.save(state)
            _faults.kill_point("checkpoint_saved")

    def _chunk_callback(self, val_batch: Any) -> Any:
        """``fit``'s callback: log the chunk's losses (and validation metrics), flush the
        metrics, then checkpoint, so after a crash the metrics are never behind a checkpoint."""
        import jax
        import numpy as np

        train_cfg, log = self.cfg.train, self.log
        steps, every = int(train_cfg.steps), int(train_cfg.log_every)  # plain ints: per step
        val_metrics = jax.jit(self.setup.model.metrics)
        chunk_start = [time.perf_counter()]  # when fit started the chunk (after our own work)

        def on_chunk(s: Any, losses: Any, val_loss: float | None, records: Any) -> None:
            _faults.kill_point("chunk")
            step = int(s.step)
            first = step - len(losses) + 1
            rate = len(losses) / max(time.perf_counter() - chunk_start[0], 1e-9)
            lr, grad_norm = records.step_metrics["lr"], records.step_metrics["grad_norm"]
            sharpness = records.step_metrics.get("sharpness")
            for i, loss in enumerate(losses):
                k = first + i
                if sharpness is not None and np.isfinite(sharpness[i]):  # measured before k
                    log.record(k, train_loss=loss, sharpness=sharpness[i])
                if k % every == 0 or k == steps or k == 1:
                    aux = {f"aux/{name}": v[i] for name, v in records.aux.items()}
                    log.record(
                        k,
                        train_loss=loss,
                        lr=lr[i],
                        grad_norm=grad_norm[i],
                        steps_per_s=rate,
                        **aux,
                    )
            if val_loss is not None:
                extra = val_metrics(s.params, val_batch)
                extra = {f"val_{k}": v for k, v in extra.items() if k != "loss"}
                log.record(step, train_loss=losses[-1], val_loss=val_loss, **extra)
            checkpoint = step % train_cfg.checkpoint_every == 0 or step == steps
            failure = None
            try:
                log.flush(force=checkpoint or self.stop.signal is not None)
            except OSError as e:
                failure = f"writing the run directory {self.run_dir} failed: {e}"
            stop = runtime.stop_together(failure, self.run_dir, self.stop.signal)
            if checkpoint or stop:
                self._save(s)
            if stop:
                raise Interrupted("stopped", stop, step)  # train_run says how to continue
            chunk_start[0] = time.perf_counter()

        return on_chunk

    def _diverged(self, e: Any, start: int) -> RunError:
        """Saves the last good state and the finite losses of the diverging chunk (they never
        reached the callback), and says what to try."""
        from mlgrad.training.checkpoint import CheckpointError

        good, train_cfg = e.last_good_state, self.cfg.train
        with contextlib.suppress(CheckpointError, OSError, ValueError):
            latest = self.ckpt.latest_step()
            if latest is None or int(good.step) > latest:
                self.ckpt.save(good)
        for k in range(start + 1, min(e.step, start + len(e.history) + 1)):
            if k % train_cfg.log_every == 0 or k == 1:
                self.log.record(k, train_loss=e.history[k - start - 1])
        with contextlib.suppress(OSError):
            self.log.flush(force=True)
        from mlgrad.config import learning_rate, learning_rate_key

        loss = float(e.history[-1]) if len(e.history) else float("nan")
        lr, key = learning_rate(self.cfg.optimizer), learning_rate_key(self.cfg.optimizer)
        hint = f" e.g. optimizer.{key}={lr / 10:g}" if isinstance(lr, int | float) else ""
        message = (
            f"training diverged at step {e.step}: the loss became {loss:g} (or the update "
            f"non-finite). The last good state (step {int(good.step)}) is saved in "
            f"{self.ckpt_dir}. Try a smaller learning rate{hint}."
        )
        if self.primary:
            self._diverged_figures(e.step, int(good.step), message)
        return RunError(message)

    def _diverged_figures(self, step: int, good: int, message: str) -> None:
        """A diverged run still teaches: loss.png (the divergence marked) and report.html;
        a figure that cannot be written never hides the divergence."""
        summary = {
            "name": self.cfg.name,
            "config": self.setup.source,
            "steps": good,
            "diverged": {"step": step, "message": message},
            "data": self.setup.data.source,
            "provenance": self.provenance,
        }
        try:
            if self.plots:
                self._loss_figure(diverged_at=step)
                for error in _figure_worker.wait().values():
                    raise error
            write_report(self.run_dir, summary)
        except Exception as e:
            self.console.warning(f"warning: the diverged run's figures failed ({e})")

    # -- after training -------------------------------------------------------------------

    def _finish(self, state: Any, result: Any, start: int, *, plots: bool) -> dict[str, Any]:
        """The summary and the figures (process 0 only). With a figure worker the figures are
        handed to it first and drawn while the summary is written; report.html (which embeds
        them) waits for them."""
        params = state.params
        if self.setup.mesh is not None:  # one local copy of the replicated parameters
            from mlgrad.training.parallel import host_values

            params = host_values(params)
        try:
            early = plots and _figure_worker.active()
            figures = self._plots(params, result) if early else None
            summary = self._summary(state, params, start)
            self.log.flush(force=True)
            rundir.write_atomic(self.run_dir / "summary.json", rundir.to_json(summary))
            if figures is None:
                figures = self._plots(params, result) if plots else ([], [])
            written = self._figures_written(*figures)
            write_report(self.run_dir)
        except OSError as e:
            raise RunError(f"writing the run directory {self.run_dir} failed: {e}") from None
        if written:
            self.console.info(f"figures: {', '.join(p.name for p in written)}")
        return summary

    def _summary(self, state: Any, params: Any, start: int) -> dict[str, Any]:
        setup = self.setup
        return {
            "name": self.cfg.name,
            "config": setup.source,
            "steps": int(state.step),
            "dtype": self.cfg.train.dtype,
            "metrics": final_metrics(setup.model, params, setup.data),
            **setup.model.report(params),
            "wall_time_s": round(time.perf_counter() - self.t0, 3),
            "devices": runtime.device_records(runtime.devices_of(state.params)),
            "processes": runtime.process_count(),
            "resumed_from_step": start if self.resuming else None,
            "data": setup.data.source,
            "run_dir": str(self.run_dir),
            "finished_utc": rundir.utc_stamp(),
            "provenance": self.provenance,
        }

    def _plots(self, params: Any, result: Any) -> tuple[list[Path], list[Path]]:
        """loss.png, sharpness.png (with ``train.sharpness_every``) and the model's own
        figures, drawn or handed to the figure worker: (the run's, the model's). A model's
        plotting bug is only a warning."""
        setup = self.setup
        own = [self._loss_figure()]
        if self.cfg.train.sharpness_every:
            own.append(self._sharpness_figure())
        model: list[Path] = []
        try:
            model = [Path(f) for f in setup.model.plots(params, setup.data, result, self.run_dir)]
        except OSError:
            raise
        except Exception as e:  # a figure must not lose a finished run
            self._model_plots_failed(e)
        _faults.kill_point("figures")  # with a worker: the figures are being drawn
        return own, model

    def _figures_written(self, own: list[Path], model: list[Path]) -> list[Path]:
        """Waits for the figure worker (if any): a figure of the run's that failed raises as
        it would have drawn here; a model's that failed is a warning. Returns the written."""
        failures = _figure_worker.wait()
        for path, error in failures.items():
            if isinstance(error, OSError) or path not in model:
                raise error
        for path in model:
            if path in failures:
                self._model_plots_failed(failures[path])
        return [p for p in own + model if p not in failures]

    def _model_plots_failed(self, e: BaseException) -> None:
        self.console.info(f"warning: the model's plots failed ({type(e).__name__}: {e})")

    def _title(self, what: str) -> str:
        from mlgrad.config import optimizer_label

        cfg = self.cfg
        return f"{what}: {cfg.name} ({optimizer_label(cfg.optimizer)}, {_lr_text(cfg.optimizer)})"

    def _loss_figure(self, diverged_at: int | None = None) -> Path:
        from mlgrad import plots

        batch, path = self.cfg.train.batch_size, self.run_dir / "loss.png"
        return _figure_worker.render(
            path,
            plots.loss_curve,
            path,
            *self.log.curve("train_loss"),
            *self.log.curve("val_loss"),
            title=self._title("Loss curve"),
            loss_label=getattr(self.setup.module, "LOSS_LABEL", "loss"),
            minibatch=batch is not None and batch < len(self.setup.data.x_train),
            diverged_at=diverged_at,
        )

    def _sharpness_figure(self) -> Path:
        """The logged sharpness beside the stability limit of gradient descent (with its
        momentum) at the logged rates; other optimizers have none for the plain sharpness
        (Adam's is of the preconditioned one: ``mlgrad curvature``)."""
        import numpy as np

        from mlgrad import plots
        from mlgrad.curvature_report import stability_limit

        steps, values = self.log.curve("sharpness")
        lr_steps, lrs = self.log.curve("lr")
        optimizer = self.cfg.optimizer
        limit_steps: list[int] = []
        limits, label = np.zeros(0), ""
        if optimizer.get("name") == "sgd" and lr_steps:  # a chain has no name
            rule = stability_limit(
                "sgd",
                1.0,
                momentum=optimizer.get("momentum"),
                nesterov=bool(optimizer.get("nesterov")),
            )
            limit_steps, limits, label = lr_steps, rule.limit / np.asarray(lrs), rule.formula
        path = self.run_dir / "sharpness.png"
        return _figure_worker.render(
            path,
            plots.sharpness_curve,
            path,
            steps,
            values,
            limit_steps,
            limits,
            limit_label=f"stability limit {label}",
            title=self._title("Sharpness"),
        )


def _lr_text(optimizer: Any) -> str:
    from mlgrad.config import learning_rate

    lr = learning_rate(optimizer)
    if isinstance(lr, int | float):
        return f"learning rate {lr:g}"
    if lr is None:
        return "default learning rate"
    return f"learning rate {lr.get('name', 'schedule')}"
