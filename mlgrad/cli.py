"""The ``mlgrad`` command line: train a config into a run directory, evaluate a saved run.

::

    mlgrad train CONFIG [key=value ...] [--out DIR] [--resume] [--dry-run] [--quiet]
    mlgrad eval RUN_DIR [--json]
    mlgrad sweep CONFIG [key=v1,v2,... ...] [--out DIR] [--dry-run] [--quiet]  (mlgrad.sweep_cli)

Exit codes: 0 success; 2 a usage, config or data error (reported before anything is written);
1 a failure during training (divergence, a disk error); 130 interrupted.

A run directory (``runs/<name>-<UTC timestamp>/``, or exactly ``--out DIR``) holds:

* ``config.yaml``: the resolved config (defaults filled in, data path absolute);
* ``metrics.jsonl``: one JSON object per logged step: ``step``, ``train_loss`` (the loss of
  that step's batch before its update), and at evaluation steps ``val_loss`` and the model's
  other validation metrics (``val_accuracy``); rewritten atomically;
* ``checkpoints/``: orbax checkpoints of the full train state (params, optimizer state, step,
  PRNG key) at step 0, every ``train.checkpoint_every`` steps and at the end (the newest
  ``train.keep_checkpoints`` and the one at step 0 are kept);
* ``summary.json``: final ``metrics`` (``train_loss``; with a validation split ``val_loss``
  and, for classifiers, ``val_accuracy``), the model's report (e.g. ``coefficients`` in data
  units and ``intercept``), ``wall_time_s``, ``devices``, ``steps``, ``name``, ``config``;
* PNG figures: ``loss.png`` and the model's own (``fit.png``, ``loss_surface.png``, ...).

The gradient-descent path over the loss surface needs the parameters after every step, so
``fit`` records them (``trace_params=True``) exactly when the model has at most two scalar
parameters (single-feature linear regression: slope and intercept); for larger models the
trace would cost memory and there is no 2-D surface to draw it on.

``--resume`` continues the run in ``--out DIR`` from its latest complete checkpoint up to
``train.steps``; any other difference from the saved config is refused. Training N steps and
resuming to 2N gives bit-identical parameters to 2N uninterrupted steps.

JAX's persistent compilation cache is on for the command (not for ``import mlgrad``): in
``$MLGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlgrad/jax``, else ``~/.cache/mlgrad/jax``,
caching every program however fast it compiled, so a second run starts faster.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import difflib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

COMMANDS = ("train", "eval", "sweep")

#: Progress-bar updates per run: chunks are about steps / this long (see _chunk_size).
CHUNKS_PER_RUN = 50
#: metrics.jsonl is rewritten at most this often (seconds), and at every checkpoint.
METRICS_FLUSH_S = 2.0


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2; nothing written)."""


class RunError(Exception):
    """A failure during training (exit code 1): divergence, a disk error."""


# ---------------------------------------------------------------------------------------------
# argument parsing


def _version() -> str:
    try:
        import mlgrad

        return str(mlgrad.__version__)
    except (ImportError, AttributeError):  # pragma: no cover
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mlgrad")
        except PackageNotFoundError:
            return "unknown"


_DESCRIPTION = (
    "Train the lecture notes' example models with XLA-compiled gradient descent, from a "
    "config file. Exit codes: 0 success, 1 failure during training, 2 usage/config/data error."
)


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlgrad",
        description=_DESCRIPTION,
        epilog="Run 'mlgrad COMMAND --help' for a command's options. Example: "
        "mlgrad train configs/linear_regression.yaml train.steps=500",
    )
    parser.add_argument("--version", action="version", version=f"mlgrad {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train a model from a config into a run directory")
    sub.add_parser("eval", help="report the metrics of a saved run from its latest checkpoint")
    sub.add_parser(
        "sweep", help="train every combination of config values (seeds x learning rates vmapped)"
    )
    return parser


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlgrad train",
        description="Train the model of CONFIG (a YAML file) and write a run directory with the "
        "resolved config, metrics.jsonl, checkpoints, summary.json and PNG plots.",
        epilog="Examples:\n"
        "  mlgrad train configs/linear_regression.yaml\n"
        "  mlgrad train configs/linear_regression.yaml optimizer.learning_rate=0.05 "
        "train.steps=500\n"
        "  mlgrad train configs/linear_regression_multi.yaml data.features=[temp,price]\n"
        "  mlgrad train configs/logistic.yaml --out runs/lr --resume train.steps=6000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="the run config (YAML), e.g. configs/*.yaml")
    p.add_argument(
        "overrides",
        metavar="KEY=VALUE",
        nargs="*",
        help="dotted overrides applied to the config, e.g. train.steps=500 "
        "data.features=[temp,price] (values are YAML)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="the run directory (default: runs/<name>-<UTC timestamp> under the current "
        "directory); an existing non-empty DIR is refused unless --resume is given",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its latest checkpoint up to train.steps; "
        "any other change to the saved config is refused",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config and the data, print the resolved config, write nothing",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info lines")
    p.add_argument("--no-plots", action="store_true", help="skip writing the PNG figures")
    group = p.add_argument_group(
        "several processes",
        "one process per host; each runs the same command with its own --process-id\n"
        "and the same --out, on a file system all hosts share",
    )
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="address of process 0's coordinator (default: $JAX_COORDINATOR_ADDRESS); "
        "given, the processes join with jax.distributed.initialize",
    )
    group.add_argument(
        "--num-processes",
        metavar="N",
        type=int,
        help="how many processes take part (default: $JAX_NUM_PROCESSES, or what JAX detects "
        "on a cluster such as SLURM)",
    )
    group.add_argument(
        "--process-id",
        metavar="I",
        type=int,
        help="this process's index, 0 to N-1 (default: $JAX_PROCESS_ID, or detected); "
        "process 0 writes the logs, plots and summary",
    )
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlgrad eval",
        description="Report the metrics of a saved run (its latest checkpoint) on the training "
        "and validation splits. Writes nothing.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by mlgrad train")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return p


def _parse(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """Dispatches on the command, then parses its options (overrides may come anywhere)."""
    top = _main_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv)  # --help / --version exit here; anything else is an error
        top.error(f"missing COMMAND ({', '.join(COMMANDS)})")
    command = argv[0]
    if command not in COMMANDS:
        match = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean '{match[0]}'?" if match else ""
        top.error(f"unknown command {command!r}{hint} (choose from {', '.join(COMMANDS)})")
    if command == "sweep":
        from mlgrad.sweep_cli import sweep_parser

        return command, sweep_parser().parse_intermixed_args(argv[1:])
    parser = _train_parser() if command == "train" else _eval_parser()
    return command, parser.parse_intermixed_args(argv[1:])


# ---------------------------------------------------------------------------------------------
# output helpers


class _Console:
    """Info lines on stderr (silenced by --quiet); errors always on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def _error(text: str) -> None:
    print(f"error: {text}", file=sys.stderr, flush=True)


#: Test hook (used by tests/test_reliability.py, inert when unset): ``MLGRAD_TEST_KILL_AT=EVENT:N``
#: makes the process SIGKILL itself at the N-th occurrence of EVENT, to simulate a crash at an
#: exact moment. Events: ``write`` (an atomic file write: temporary file complete, not yet
#: renamed), ``chunk`` (a compiled chunk done, before its metrics and checkpoint),
#: ``checkpoint_tmp`` (orbax wrote a checkpoint's temporary directory, not yet committed) and
#: ``checkpoint_saved`` (a checkpoint committed).
KILL_ENV = "MLGRAD_TEST_KILL_AT"
_kill_counts: dict[str, int] = {}


def kill_point(event: str) -> None:
    """Test hook: SIGKILLs this process at the N-th ``event`` if ``$MLGRAD_TEST_KILL_AT`` is
    ``event:N``; a no-op (one environment lookup) otherwise.

    Args:
        event: the name of the moment reached (see ``KILL_ENV``).

    Returns:
        None (or never, when the process is killed).

    Example:
        >>> kill_point("write")  # unset: nothing happens
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name != event:
        return
    _kill_counts[event] = _kill_counts.get(event, 0) + 1
    if _kill_counts[event] == int(n or 1):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file in the same directory and os.replace."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        kill_point("write")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _finite_or_none(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


class MetricsLog:
    """``metrics.jsonl``: records by step, rewritten atomically (throttled)."""

    def __init__(
        self, path: Path, records: list[dict] | None = None, *, write: bool = True
    ) -> None:
        self.path = path
        self.records: list[dict] = list(records or [])
        self._by_step = {r["step"]: r for r in self.records}
        self._flushed = 0.0
        self._write = write  # False on the processes other than 0 of a multi-process run

    @staticmethod
    def read(path: Path) -> list[dict]:
        """The records of a metrics file; a torn last line (a killed write) is skipped."""
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
        return records

    def record(self, step: int, **values: Any) -> dict:
        rec = self._by_step.get(step)
        if rec is None:
            rec = self._by_step[step] = {"step": step}
            self.records.append(rec)
        rec.update({k: _finite_or_none(v) for k, v in values.items()})
        return rec

    def flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._write or (not force and now - self._flushed < METRICS_FLUSH_S):
            return
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in self.records)
        _write_atomic(self.path, text)
        self._flushed = now


# ---------------------------------------------------------------------------------------------
# run directory


def _utc_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _check_can_create(path: Path) -> None:
    """Raises UsageError unless ``path`` is a directory we can write or can be created."""
    path = path.absolute()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"output path {path} exists and is not a directory.")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"output directory {path} is not writable.")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(
            f"cannot create output directory {path}: {parent} is a file, not a directory."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create output directory {path}: {parent} is not writable.")


def _is_leftover(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an atomic write that was killed (see
    :func:`_write_atomic`): a run killed while writing its first file leaves only that, and
    the directory still counts as empty."""
    name = path.name
    return name.startswith(".") and ".tmp-" in name and name.rpartition(".tmp-")[2].isdigit()


def _default_run_dir(name: str) -> Path:
    base = Path("runs") / f"{name}-{_utc_stamp()}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


# ---------------------------------------------------------------------------------------------
# JAX setup


def _cache_dir() -> Path:
    if os.environ.get("MLGRAD_CACHE_DIR"):
        return Path(os.environ["MLGRAD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mlgrad" / "jax"


_CACHE_OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@contextlib.contextmanager
def compilation_cache(console: _Console | None = None) -> Iterator[Path | None]:
    """JAX's persistent compilation cache, on for the duration (every program is cached).

    The previous settings are restored afterwards, so calling :func:`main` in-process leaves
    JAX's global configuration as it found it.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    directory = _cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if console is not None:
            console.info(f"note: compilation cache off ({directory}: {e.strerror or e})")
        yield None
        return
    old = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size limit
    cc.reset_cache()  # take effect even if this process compiled something before
    try:
        yield directory
    finally:
        for name, value in old.items():
            jax.config.update(name, value)
        cc.reset_cache()


def _devices(tree: Any) -> list[Any]:
    """The devices holding the arrays of ``tree`` (where training ran)."""
    import jax

    found = {}
    for leaf in jax.tree.leaves(tree):
        for d in getattr(leaf, "devices", lambda: set())():
            found[d.id, d.platform] = d
    return [found[k] for k in sorted(found)] or jax.devices()[:1]


def _describe_devices(devices: Sequence[Any]) -> str:
    """``cpu:0 (cpu)``; several devices grouped by kind: ``4 x NVIDIA H100: cuda:0, ...``."""
    if len(devices) == 1:
        return f"{devices[0]} ({devices[0].device_kind})"
    kinds: dict[str, list[str]] = {}
    for d in devices:
        kinds.setdefault(d.device_kind, []).append(str(d))
    return "; ".join(f"{len(names)} x {kind}: {', '.join(names)}" for kind, names in kinds.items())


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"${name} must be an integer, got {text!r}.") from None


def _join_processes(args: argparse.Namespace) -> bool:
    """Joins the other processes of a multi-process run (``jax.distributed.initialize``) when
    a coordinator is given (``--coordinator`` or ``$JAX_COORDINATOR_ADDRESS``); returns
    whether several processes take part. Must run before JAX touches a device."""
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num = args.num_processes if args.num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = args.process_id if args.process_id is not None else _env_int("JAX_PROCESS_ID")
    if coordinator is None:
        if num is not None or pid is not None:
            raise UsageError(
                "--num-processes and --process-id need --coordinator HOST:PORT (process 0's "
                "address), or $JAX_COORDINATOR_ADDRESS."
            )
        return False
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {coordinator!r}."
        )
    if num is not None and num < 1:
        raise UsageError(f"--num-processes must be >= 1, got {num}.")
    if pid is not None and (pid < 0 or (num is not None and pid >= num)):
        raise UsageError(
            f"--process-id must be in 0..{'N-1' if num is None else num - 1}, got {pid}."
        )
    import jax

    if not jax.distributed.is_initialized():
        try:
            jax.distributed.initialize(coordinator, num, pid)
        except (RuntimeError, ValueError) as e:
            raise RunError(
                f"cannot join the processes of the run at {coordinator}: {e}. Start every "
                "process with the same --coordinator and --num-processes and its own "
                "--process-id, before any other JAX work in the process."
            ) from None
    return jax.process_count() > 1


def _process_index() -> int:
    import jax

    return jax.process_index()


def _process_count() -> int:
    import jax

    return jax.process_count()


def _stop_together(failure: str | None, run_dir: Path) -> None:
    """Raises RunError(failure) if process 0, the only writer, failed to write, on every
    process at once (a process left alone would wait for the others at the next collective
    forever). A barrier with several processes; with one, just the raise."""
    if _process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        failed = multihost_utils.broadcast_one_to_all(np.int32(failure is not None))
        if int(failed) and failure is None:
            failure = f"process 0 could not write the run directory {run_dir} (see its error)"
    if failure:
        raise RunError(failure)


def _agree(text: str) -> str:
    """Process 0's ``text`` on every process (e.g. the default run directory's timestamp)."""
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.zeros(4096, np.uint8)
    raw = text.encode()[: len(data)]
    data[: len(raw)] = np.frombuffer(raw, np.uint8)
    agreed = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return bytes(agreed).rstrip(b"\0").decode()


def _mesh(cfg: Any) -> Any:
    """The data-parallel mesh of ``train.devices`` (None for one device)."""
    from mlgrad.config import ConfigError
    from mlgrad.training.parallel import data_mesh

    try:
        return data_mesh(cfg.train.devices)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"`train.devices`: {e}", "train.devices") from None


def _describe_run_devices(mesh: Any) -> str:
    import jax

    devices = jax.devices()[:1] if mesh is None else list(mesh.devices.flat)
    text = _describe_devices(devices)
    if mesh is not None:
        processes = len({d.process_index for d in devices})
        text += f" (data parallel over {len(devices)} devices"
        text += f", {processes} processes)" if processes > 1 else ")"
    return text


# ---------------------------------------------------------------------------------------------
# the pieces of a run


@dataclasses.dataclass
class _Setup:
    """Everything validated before anything is written."""

    cfg: Any
    module: Any
    data: Any
    model: Any
    optimizer: Any
    mesh: Any = None  # the data-parallel mesh of train.devices (None: one device)


def _prepare(config: Path, overrides: Sequence[str]) -> _Setup:
    """Validates the config, loads and checks the data, builds model and optimizer.

    Raises ConfigError or DataError (both ValueErrors) for the user's mistakes.
    """
    from mlgrad.config import build_model, build_optimizer, load_config

    cfg, module = load_config(config, overrides)
    data = _load_data(cfg)
    model = build_model(cfg, module, data)
    optimizer = build_optimizer(cfg.optimizer, steps=cfg.train.steps)
    return _Setup(cfg, module, data, model, optimizer)


def _load_data(cfg: Any) -> Any:
    from mlgrad.data import DataError, load

    d = cfg.data
    try:
        return load(
            d.name,
            path=d.path,
            features=None if d.features is None else list(d.features),
            target=d.target,
            val_split=d.val_split,
            split_seed=d.split_seed,
        )
    except DataError as e:
        raise DataError(f"`{_data_key(str(e), d)}`: {e}") from None


def _data_key(message: str, d: Any) -> str:
    """The config key a data error is most likely about (the loader does not know keys)."""
    text = message.lower()
    if "feature" in text and d.features is not None:
        return "data.features"
    if "target" in text and d.target is not None:
        return "data.target"
    if "val_split" in text or "validation row" in text or "training row" in text:
        return "data.val_split"
    return "data.path" if d.path is not None else "data.name"


def _initial_state(setup: _Setup) -> Any:
    """The train state at step 0: init params from split(PRNGKey(seed))[0], shuffling key [1]."""
    import jax
    import jax.numpy as jnp

    from mlgrad.training import TrainState

    init_key, train_key = jax.random.split(jax.random.PRNGKey(setup.cfg.seed))
    params = setup.model.init(init_key)
    return TrainState(params, setup.optimizer.init(params), jnp.asarray(0, jnp.int32), train_key)


def _param_count(params: Any) -> int:
    import jax
    import numpy as np

    return sum(int(np.size(x)) for x in jax.tree.leaves(params))


def _chunk_size(train: Any, has_val: bool) -> int:
    """Steps per compiled chunk: a divisor of checkpoint_every (and eval_every), so every
    checkpoint and evaluation falls on a chunk boundary and all chunks have one length (one
    compilation), about steps / CHUNKS_PER_RUN long for a live progress bar."""
    base = math.gcd(train.checkpoint_every, train.eval_every) if has_val else train.checkpoint_every
    target = max(1, min(base, math.ceil(train.steps / CHUNKS_PER_RUN)))
    best = 1
    for d in range(1, math.isqrt(base) + 1):
        if base % d == 0:
            for c in (d, base // d):
                if best < c <= target:
                    best = c
    return best


def _batch(split: tuple[Any, Any]) -> tuple[Any, Any]:
    import jax.numpy as jnp

    return jnp.asarray(split[0]), jnp.asarray(split[1])


def metrics_program(model: Any, data: Any, *, runs: bool = False) -> Any:
    """A compiled ``params -> {name: value}`` of a run's final metrics, in the summary's order:
    for each split, ``<split>_loss`` (the training objective, ``model.loss`` on the whole split,
    penalties included), then the model's other metrics (``<split>_accuracy``).

    With ``runs``, ``params`` has a leading run axis (a sweep's) and each value is ``(runs,)``.
    """
    import jax

    splits = [("train", _batch(data.train))]
    if data.val is not None:
        splits.append(("val", _batch(data.val)))
    names: list[str] = []  # set when traced (a dict output would come back with sorted keys)

    def evaluate(params: Any) -> list[Any]:
        out = {}
        for name, batch in splits:
            out[f"{name}_loss"] = model.loss(params, batch)
            extra = model.metrics(params, batch)
            out.update({f"{name}_{k}": v for k, v in extra.items() if k != "loss"})
        names[:] = list(out)
        return list(out.values())

    program = jax.jit(jax.vmap(evaluate) if runs else evaluate)

    def run(params: Any) -> dict[str, Any]:
        values = program(params)
        return dict(zip(names, values, strict=True))

    return run


def _final_metrics(model: Any, params: Any, data: Any) -> dict[str, float | None]:
    """The final metrics at ``params`` (:func:`metrics_program`); NaN and inf as None."""
    return {k: _finite_or_none(v) for k, v in metrics_program(model, data)(params).items()}


def _format_metrics(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {'nan' if v is None else f'{v:.6g}'}" for k, v in metrics.items())


# ---------------------------------------------------------------------------------------------
# train


def _resume_checks(setup: _Setup, run_dir: Path) -> None:
    """Refuses to resume a run whose saved config differs (other than train.steps)."""
    from omegaconf import OmegaConf

    from mlgrad.config import ConfigError, config_diff, read_config_file

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise UsageError(
            f"--resume: {run_dir} holds no config.yaml, so there is no run to resume there. "
            "Give the run directory of an earlier 'mlgrad train ... --out DIR'."
        )
    try:
        saved = read_config_file(saved_path)
    except ConfigError as e:
        raise UsageError(f"--resume: cannot read the saved config: {e}") from None
    current = OmegaConf.to_container(setup.cfg, resolve=True)
    # The step target may grow, and the run may move to other devices.
    differ = [k for k in config_diff(saved, current) if k not in ("train.steps", "train.devices")]
    if differ:
        flat_saved, flat_now = _flat(saved), _flat(current)
        changes = "; ".join(
            f"`{k}` was {_short(flat_saved.get(k, None))}, now {_short(flat_now.get(k, None))}"
            for k in differ
        )
        raise UsageError(
            f"--resume: the config differs from the saved run in {run_dir} ({changes}). "
            "Only train.steps and train.devices may change when resuming; start a new run "
            "(another --out) to "
            "train with other settings."
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


def train(args: argparse.Namespace) -> int:
    """``mlgrad train``: validate, then train into a run directory."""
    from mlgrad.config import to_yaml

    console = _Console(args.quiet)
    if args.resume and not args.out:
        raise UsageError("--resume needs --out DIR, the run directory to continue.")
    multi = _join_processes(args)
    primary = not multi or _process_index() == 0  # process 0 speaks and writes for the run
    if not primary:
        console = _Console(quiet=True)
    setup = _prepare(Path(args.config), args.overrides)
    cfg = setup.cfg
    setup.mesh = _mesh(cfg)
    run_dir = Path(args.out) if args.out else _default_run_dir(cfg.name)
    if multi and not args.out:
        run_dir = Path(_agree(str(run_dir)))
    _check_can_create(run_dir)
    resuming = bool(args.resume)
    if resuming:
        if not run_dir.is_dir():
            raise UsageError(f"--resume: {run_dir} does not exist, so there is no run to resume.")
        _resume_checks(setup, run_dir)
    elif run_dir.exists() and any(not _is_leftover(p) for p in run_dir.iterdir()):
        raise UsageError(
            f"output directory {run_dir} exists and is not empty. Pass --resume to continue the "
            "run in it, or choose another --out."
        )
    if args.dry_run:
        if primary:
            sys.stdout.write(to_yaml(cfg))
        console.info(f"dry run: config and data are valid ({setup.data!r}); nothing written.")
        return EXIT_OK
    if multi:  # every process has checked the run directory before process 0 writes to it
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("mlgrad train: checked")
    with compilation_cache(console):
        return _run(setup, run_dir, resuming, args, console)


def _run(setup: _Setup, run_dir: Path, resuming: bool, args: Any, console: _Console) -> int:
    from mlgrad.config import to_yaml
    from mlgrad.training import TrainingDivergedError, fit
    from mlgrad.training.checkpoint import Checkpointer, CheckpointError
    from mlgrad.training.parallel import host_values, place, replicated

    cfg, data, model, mesh = setup.cfg, setup.data, setup.model, setup.mesh
    t0 = time.perf_counter()
    primary = _process_index() == 0  # the only writer of logs, plots and the summary
    state0 = _initial_state(setup)
    if mesh is not None:  # checkpoints save and restore it replicated on the mesh
        state0 = place(state0, replicated(mesh))
    ckpt_dir = run_dir / "checkpoints"
    state, start = state0, 0
    if resuming:
        ckpt = Checkpointer(ckpt_dir)
        try:
            latest = ckpt.latest_step()
            if latest is not None:
                state = ckpt.restore(state0)
                start = int(state.step)
        except ValueError as e:
            raise UsageError(f"--resume: {e}") from None
        finally:
            ckpt.close()
        if start > cfg.train.steps:
            raise UsageError(
                f"--resume: the run in {run_dir} is already at step {start}, past "
                f"train.steps={cfg.train.steps}; pass train.steps={start} or more."
            )
    # From here on we write.
    log = MetricsLog(run_dir / "metrics.jsonl", write=False)
    failure = None
    try:
        if primary:
            run_dir.mkdir(parents=True, exist_ok=True)
            for leftover in filter(_is_leftover, run_dir.iterdir()):  # of a killed earlier write
                with contextlib.suppress(OSError):
                    leftover.unlink()
            _write_atomic(run_dir / "config.yaml", to_yaml(cfg))
            records = [r for r in MetricsLog.read(log.path) if r["step"] <= start]
            log = MetricsLog(log.path, records if resuming else None)
            if resuming:
                with contextlib.suppress(FileNotFoundError):  # stale until this run finishes
                    (run_dir / "summary.json").unlink()
            log.flush(force=True)
    except OSError as e:
        failure = f"cannot write the run directory {run_dir}: {e.strerror or e}"
    # Every process waits here until the run directory exists (the others save checkpoints
    # into it), and stops with process 0 if it could not write it.
    _stop_together(failure, run_dir)

    what = "training"
    if resuming and start == cfg.train.steps:
        what = f"already at step {start}; rewriting the summary and figures of"
    elif resuming and start:
        what = f"resuming at step {start} of"
    console.info(
        f"mlgrad: {what} {cfg.name} ({setup.module.__name__}, {_param_count(state0.params)} "
        f"parameters) for {cfg.train.steps} steps -> {run_dir}"
    )
    console.info(f"data: {data.source}")
    console.info(f"devices: {_describe_run_devices(mesh)}")

    import jax

    val_metrics = jax.jit(model.metrics)
    val_batch = _batch(data.val) if data.val is not None else None
    if mesh is not None and val_batch is not None:
        val_batch = place(val_batch, replicated(mesh))
    train_cfg = cfg.train
    steps = train_cfg.steps

    ckpt = Checkpointer(ckpt_dir, keep=train_cfg.keep_checkpoints)
    if _process_count() > 1:
        try:
            ckpt.open_for_writing()
        except CheckpointError as e:
            raise RunError(f"writing the run directory {run_dir} failed: {e}") from None

    def save(s: Any) -> None:
        if int(s.step) not in ckpt.all_steps():
            ckpt.save(s)
            kill_point("checkpoint_saved")

    def on_chunk(s: Any, losses: Any, val_loss: float | None) -> None:
        kill_point("chunk")
        step = int(s.step)
        first = step - len(losses) + 1
        for i, loss in enumerate(losses):
            k = first + i
            if k % train_cfg.log_every == 0 or k == steps or k == 1:
                log.record(k, train_loss=loss)
        if val_loss is not None:
            extra = {
                f"val_{k}": v for k, v in val_metrics(s.params, val_batch).items() if k != "loss"
            }
            log.record(step, train_loss=losses[-1], val_loss=val_loss, **extra)
        checkpoint = step % train_cfg.checkpoint_every == 0 or step == steps
        failure = None
        try:  # metrics first: after a crash they are truncated to the checkpoint, never short
            log.flush(force=checkpoint)
        except OSError as e:
            failure = f"writing the run directory {run_dir} failed: {e}"
        _stop_together(failure, run_dir)
        if checkpoint:
            save(s)

    trace = _param_count(state0.params) <= 2
    result = None
    try:
        if start == 0:
            save(state)
        if start < steps:
            result = fit(
                model.loss,
                None,
                _batch(data.train),
                optimizer=setup.optimizer,
                steps=steps,
                batch_size=train_cfg.batch_size,
                val_data=val_batch,
                eval_every=train_cfg.eval_every if val_batch is not None else None,
                state=state,
                chunk_size=_chunk_size(train_cfg, val_batch is not None),
                callback=on_chunk,
                progress=not console.quiet and sys.stderr.isatty(),
                trace_params=trace,
                devices=1 if mesh is None else list(mesh.devices.flat),
            )
            state = result.state
    except TrainingDivergedError as e:
        good = e.last_good_state
        with contextlib.suppress(CheckpointError, OSError, ValueError):
            latest = ckpt.latest_step()
            if latest is None or int(good.step) > latest:
                ckpt.save(good)
        # The finite losses of the chunk that diverged never reached on_chunk: log them too
        # (up to the last good step, which the saved checkpoint matches).
        for k in range(start + 1, min(e.step, start + len(e.history) + 1)):
            if k % train_cfg.log_every == 0 or k == 1:
                log.record(k, train_loss=e.history[k - start - 1])
        with contextlib.suppress(OSError):
            log.flush(force=True)
        ckpt.close()
        loss = float(e.history[-1]) if len(e.history) else float("nan")
        lr = cfg.optimizer.get("learning_rate")
        hint = f" e.g. optimizer.learning_rate={lr / 10:g}" if isinstance(lr, int | float) else ""
        raise RunError(
            f"training diverged at step {e.step}: the loss became {loss:g} (or the update "
            f"non-finite). The last good state (step {int(good.step)}) is saved in {ckpt_dir}. "
            f"Try a smaller learning rate{hint}."
        ) from None
    except (CheckpointError, OSError) as e:
        ckpt.close()
        raise RunError(f"writing the run directory {run_dir} failed: {e}") from None
    except RunError:  # a failed metrics write, raised on every process together
        ckpt.close()
        raise
    ckpt.close()
    if not primary:
        return EXIT_OK

    devices = _devices(state.params)
    params = state.params
    if mesh is not None:  # one local copy of the replicated parameters for the reports
        params = host_values(params)
    try:
        metrics = _final_metrics(model, params, data)
        summary = {
            "name": cfg.name,
            "config": str(args.config),
            "steps": int(state.step),
            "metrics": metrics,
            **model.report(params),
            "wall_time_s": round(time.perf_counter() - t0, 3),
            "devices": [
                {"platform": d.platform, "device_kind": d.device_kind, "id": d.id} for d in devices
            ],
            "processes": _process_count(),
            "resumed_from_step": start if resuming else None,
            "data": data.source,
            "run_dir": str(run_dir),
            "finished_utc": _utc_stamp(),
        }
        log.flush(force=True)
        _write_atomic(run_dir / "summary.json", _json(summary))
        figures = []
        if not args.no_plots:
            figures = _plots(setup, params, result, run_dir, log.records, console)
    except OSError as e:
        raise RunError(f"writing the run directory {run_dir} failed: {e}") from None
    if figures:
        console.info(f"figures: {', '.join(p.name for p in figures)}")
    print(f"done: {int(state.step)} steps, {_format_metrics(metrics)} -> {run_dir}")
    return EXIT_OK


def _lr_text(optimizer: Any) -> str:
    lr = optimizer.get("learning_rate")
    if isinstance(lr, int | float):
        return f"learning rate {lr:g}"
    if lr is None:
        return "default learning rate"
    return f"learning rate {lr.get('name', 'schedule')}"


def _plots(
    setup: _Setup, params: Any, result: Any, run_dir: Path, records: list[dict], console: _Console
) -> list[Path]:
    from mlgrad import plots

    cfg = setup.cfg
    train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    batched = cfg.train.batch_size is not None and cfg.train.batch_size < len(setup.data.x_train)
    figures = [
        plots.loss_curve(
            run_dir / "loss.png",
            [s for s, _ in train],
            [v for _, v in train],
            [s for s, _ in val],
            [v for _, v in val],
            title=f"Loss curve: {cfg.name} ({cfg.optimizer.name}, {_lr_text(cfg.optimizer)})",
            loss_label=getattr(setup.module, "LOSS_LABEL", "loss"),
            minibatch=batched,
        )
    ]
    try:
        figures += list(setup.model.plots(params, setup.data, result, run_dir))
    except OSError:
        raise
    except Exception as e:  # a figure must not lose a finished run
        console.info(f"warning: the model's plots failed ({type(e).__name__}: {e})")
    return [Path(f) for f in figures]


# ---------------------------------------------------------------------------------------------
# eval


def evaluate(args: argparse.Namespace) -> int:
    """``mlgrad eval``: metrics of a saved run's latest checkpoint; writes nothing."""
    from mlgrad.training.checkpoint import Checkpointer

    run_dir = Path(args.run_dir)
    config = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} not found.")
    if not config.is_file():
        raise UsageError(f"{run_dir} holds no config.yaml; is it a run directory of mlgrad train?")
    setup = _prepare(config, [])
    with compilation_cache():
        state0 = _initial_state(setup)
        ckpt = Checkpointer(run_dir / "checkpoints")
        try:
            if ckpt.latest_step() is None:
                raise UsageError(f"{run_dir} holds no complete checkpoint.")
            state = ckpt.restore(state0)
        except ValueError as e:
            raise UsageError(str(e)) from None
        finally:
            ckpt.close()
        metrics = _final_metrics(setup.model, state.params, setup.data)
    step = int(state.step)
    if args.json:
        print(json.dumps({"run_dir": str(run_dir), "step": step, "metrics": metrics}, indent=2))
    else:
        print(f"{run_dir}: step {step} of {setup.cfg.train.steps}")
        width = max(len(k) for k in metrics)
        for k, v in metrics.items():
            print(f"  {k:<{width}}  {'nan' if v is None else f'{v:.6g}'}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``mlgrad`` command line; returns the exit code (the console script exits
    with it).

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 success; 1 failure during training; 2 usage, config or data error (nothing
        written); 130 interrupted.

    Example:
        >>> main(["train", "configs/linear_regression.yaml", "--dry-run"])  # doctest: +SKIP
        0
    """
    from mlgrad.config import ConfigError
    from mlgrad.data import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, args = _parse(argv)
    except SystemExit as e:  # argparse: --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    debug = bool(os.environ.get("MLGRAD_DEBUG"))
    try:
        if command == "sweep":
            from mlgrad.sweep_cli import sweep_command

            return sweep_command(args)
        return train(args) if command == "train" else evaluate(args)
    except (ConfigError, DataError, UsageError) as e:
        _error(str(e))
        return EXIT_USAGE
    except RunError as e:
        _error(str(e))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        if command == "sweep":
            _error("interrupted; the sweep wrote nothing (its results are written at the end)")
            return EXIT_INTERRUPTED
        _error("interrupted; continue with: mlgrad train CONFIG --out RUN_DIR --resume")
        return EXIT_INTERRUPTED
    except Exception as e:
        if debug:
            raise
        _error(
            f"{command} failed unexpectedly: {type(e).__name__}: {e}. This is likely a bug "
            "in mlgrad; rerun with MLGRAD_DEBUG=1 for the traceback and report it."
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
