"""Checkpoints of the full train state (params, optimizer state, step, PRNG key) with orbax.

A checkpoint directory holds one sub-directory per saved step, written by orbax-checkpoint's
``CheckpointManager``: each step is written to a temporary directory and renamed into place
only when complete (atomic), so an interrupted or failed save never touches the checkpoints
already there, and a half-written one is never listed by :func:`latest_step`. Old steps beyond
``keep`` are deleted only after the new one is committed.

The state is stored as a PyTree of arrays (orbax ``StandardSave``; no pickle) and restored
into the structure of a template :class:`~mlgrad.training.TrainState` (``StandardRestore``),
after checking that every array's shape and dtype match.

Saves are synchronous by default: when :func:`save` (or :meth:`Checkpointer.save`) returns,
the checkpoint is complete on disk. A ``Checkpointer(..., asynchronous=True)`` (what ``mlgrad
train`` uses) copies the state to host memory and returns, while orbax writes and commits it in
a background thread, so that training continues during the write; the next save, listing the
steps, :meth:`Checkpointer.wait` and :meth:`Checkpointer.close` wait for it first. The commit is
the same atomic rename, so a process killed mid-write leaves the earlier checkpoints only.

Example:
  >>> import tempfile, jax.numpy as jnp, optax
  >>> from mlgrad.training import fit
  >>> loss = lambda params, batch: jnp.mean((params["w"] * batch[0] - batch[1]) ** 2)
  >>> data, opt = (jnp.arange(4.0), 3.0 * jnp.arange(4.0)), optax.sgd(0.05)
  >>> result = fit(loss, {"w": 0.0}, data, optimizer=opt, steps=100)
  >>> tmp = tempfile.TemporaryDirectory()
  >>> save(f"{tmp.name}/checkpoints", result.state)   # the step saved
  100
  >>> latest_step(f"{tmp.name}/checkpoints")
  100
  >>> state = restore(f"{tmp.name}/checkpoints", like=result.state)
  >>> resumed = fit(loss, None, data, optimizer=opt, steps=200, state=state)   # on to 200
  >>> int(resumed.state.step), round(float(resumed.params["w"]), 4)
  (200, 3.0)
  >>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mlgrad import _faults
from mlgrad.training.fit import TrainState, _split_params

PathLike = str | os.PathLike


# Characters a path may hold and still reach orbax and tensorstore as itself: orbax expands
# glob patterns ([], *, ?) under the checkpoint directory, and a prefix such as `gs:` reads
# as a URL. A directory with any other character is handed to them through an alias.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./+=,@~% -]*$")


def _orbax_path(directory: Path, *, write: bool) -> tuple[Path, Path | None]:
    """The path orbax is given for ``directory``: itself when plain, else a symlink with a
    plain name in a private temporary folder (returned second, to remove on close). Paths are
    data, never patterns: ``runs/lr[0.1]`` checkpoints like any other directory."""
    if _PLAIN_PATH.match(str(directory)):
        return directory, None
    if write:
        directory.mkdir(parents=True, exist_ok=True)  # the alias needs its target
    alias_dir = Path(tempfile.mkdtemp(prefix="mlgrad-checkpoints-"))
    alias = alias_dir / "checkpoints"
    alias.symlink_to(directory, target_is_directory=True)
    return alias, alias_dir


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (disk full, I/O error, ...).

    The checkpoints saved before are untouched; the failed step is not listed.
    """


class DamagedCheckpointError(CheckpointError):
    """A complete checkpoint whose files cannot be read back (damaged on disk).

    Attributes:
        step: its step. path: its directory. reason: the reader's error, in one line.
    """

    def __init__(self, step: int, path: Path, reason: str) -> None:
        self.step, self.path, self.reason = step, path, reason
        files = re.findall(r'local file "([^"]+)"', reason)
        where = f": {files[-1]} cannot be read" if files else ""
        short = reason.split(":")[0] if files else reason
        super().__init__(f"the checkpoint of step {step} in {path} is damaged{where} ({short})")


@contextlib.contextmanager
def _quiet_async_failures() -> Any:
    """While a damaged checkpoint is read: orbax reads its arrays in asyncio tasks, and when
    one fails the others' errors are logged ("Task exception was never retrieved") and their
    event loop's shutdown raises "Event loop is closed" at garbage collection, a screenful of
    tracebacks for one damaged file. The first error is raised, as one line; these are not."""
    import sys

    log = logging.getLogger("asyncio")
    level, hook = log.level, sys.unraisablehook

    def unraisable(info: Any) -> None:
        if not isinstance(info.exc_value, RuntimeError | ValueError):
            hook(info)

    log.setLevel(logging.CRITICAL)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        log.setLevel(level)
        sys.unraisablehook = hook


def _settle_failed_reads(seconds: float = 0.5) -> None:
    """Lets the failed restore's other reads finish while their noise goes nowhere: tensorstore
    completes them on its own threads and reports each, into the closed event loop, as a
    traceback on ``sys.stderr``."""
    import io
    import sys
    import time

    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        time.sleep(seconds)
        gc.collect()
    finally:
        sys.stderr = stderr


def _one_line(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    text = text.split(" [tensorstore_spec=")[0]  # tensorstore appends its whole spec
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preservation(keep: int | None) -> Any:
    """Keep the latest ``keep`` checkpoints (all when None) and, always, the one at step 0."""
    if keep is None:
        return ocp.checkpoint_managers.preservation_policy.PreserveAll()
    return ocp.checkpoint_managers.AnyPreservationPolicy(
        [ocp.checkpoint_managers.LatestN(n=keep), ocp.checkpoint_managers.CustomSteps([0])]
    )


def _options(
    keep: int | None, *, write: bool, asynchronous: bool = False
) -> ocp.CheckpointManagerOptions:
    """The manager's options.

    Test hook (only with ``$MLGRAD_TEST_KILL_AT=checkpoint_async:N``, see
    :func:`mlgrad._faults.kill_point`): an asynchronous save reaches the ``checkpoint_async``
    kill point in orbax's background thread, its files written and finalized, just before
    the commit (rename), while the run goes on training.
    """
    asynchronous = write and asynchronous
    kill = None
    if asynchronous and _faults.armed("checkpoint_async"):
        kill = lambda: _faults.kill_point("checkpoint_async")  # noqa: E731
    return ocp.CheckpointManagerOptions(
        preservation_policy=_preservation(keep),
        create=write,
        # synchronous: "saved" means complete on disk; asynchronous: once waited for
        enable_async_checkpointing=asynchronous,
        # The save's temporary directory is made by the save call itself (a few mkdirs),
        # not by a task its writes wait on: measured, a little less per save for small states.
        async_options=ocp.AsyncOptions(
            create_directories_asynchronously=False, post_finalization_callback=kill
        ),
        # The checkpoints beyond `keep` are deleted by a thread of their own after the new
        # one is committed, so waiting for a save does not wait for them (close does).
        enable_background_delete=write,
        # A writer removes the leftovers of a save that was killed or failed; a reader must
        # not (it could delete the temporary directory of a save in progress elsewhere).
        cleanup_tmp_directories=write,
    )


def _no_merge_notice(record: logging.LogRecord) -> bool:
    """orbax 0.12 tries to merge OCDBT files after every save, OCDBT or not, and warns that it
    found none: the arrays are stored without OCDBT (see :func:`_handler`), so that is no news."""
    return "Skipping merge of OCDBT checkpoints" not in str(record.msg)


logging.getLogger("absl").addFilter(_no_merge_notice)


def _handler() -> ocp.StandardCheckpointHandler:
    """orbax's handler for a PyTree of arrays, each array in a Zarr directory of its own
    rather than one OCDBT store: for the few small arrays of a typical mlgrad state OCDBT's
    per-array transactions and merge cost more than they save (measured: 5 ms of CPU a save of
    the ice-cream state, a fifth of the long run's wall time on a busy machine). Checkpoints
    written with OCDBT (before) restore the same: orbax reads either. (An orbax whose
    handler has no ``use_ocdbt`` option, such as the 0.11.17 floor, writes OCDBT as before.)

    Test hook (only with ``$MLGRAD_TEST_KILL_AT=checkpoint_tmp:N``, see
    :func:`mlgrad._faults.kill_point`): the handler writes the checkpoint's files into orbax's
    temporary directory, then reaches the ``checkpoint_tmp`` kill point before orbax commits
    (renames) it.
    """
    options = inspect.signature(ocp.StandardCheckpointHandler).parameters
    handler = ocp.StandardCheckpointHandler(
        **({"use_ocdbt": False} if "use_ocdbt" in options else {})
    )
    if not _faults.armed("checkpoint_tmp"):
        return handler
    save = handler.async_save

    async def save_then_kill(*args: Any, **kwargs: Any) -> Any:
        futures = await save(*args, **kwargs)
        for f in futures or []:
            f.result()
        _faults.kill_point("checkpoint_tmp")
        return futures

    handler.async_save = save_then_kill
    return handler


def _is_typed_key(x: Any) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def _fields(state: TrainState) -> dict[str, Any]:
    """The state as orbax stores it: its fields by name, ``model_state`` only when there is
    one (so the checkpoints of stateless runs, and those written before mlgrad had model
    states, keep one layout); of a module's params (an Equinox module) the float arrays that
    ``fit`` trains, ``None`` in place of the fixed leaves, which come back from the template."""
    fields = state._asdict()
    fields["params"] = _split_params(fields["params"], "state.params")[0]
    if fields.get("model_state") is None:
        fields.pop("model_state", None)
    return fields


def _storable(state: TrainState) -> dict[str, Any]:
    """Arrays only: Python numbers become arrays and every typed PRNG key (the run's, or one
    in an optimizer's state such as ``optax.noisy_sgd``'s) its raw key data."""
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if _is_typed_key(x) else jnp.asarray(x), _fields(state)
    )


def _abstract(like: TrainState) -> dict[str, Any]:
    """Shape/dtype/sharding structs of the template (typed keys as their raw key data)."""
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def struct(x: Any) -> jax.ShapeDtypeStruct:
        if _is_typed_key(x):
            x = jax.eval_shape(jax.random.key_data, x)
        if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is not None:
            return x
        sharding = getattr(x, "sharding", None)
        if not isinstance(sharding, jax.sharding.Sharding):
            sharding = default
        return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x), sharding=sharding)

    return jax.tree.map(struct, _fields(like))


def _with_typed_keys(state: Any, like: TrainState) -> TrainState:
    """The restored raw key data wrapped again wherever the template holds a typed key."""

    def wrap(x: Any, template: Any) -> Any:
        if _is_typed_key(template):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(template))
        return x

    restored = TrainState(**state) if isinstance(state, dict) else TrainState(*state)
    return jax.tree.map(wrap, restored, like)


def _path_str(path: tuple[Any, ...]) -> str:
    """A key path as ``params/w`` whatever the container (NamedTuple, dict, list, tuple)."""
    parts = []
    for k in path:
        for attr in ("name", "key", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _describe(x: Any) -> str:
    return f"{np.dtype(x.dtype).name}{list(x.shape)}"


def _mismatches(expected: Any, found: Any) -> list[str]:
    """Differences between the template's arrays and the checkpoint's, one line each."""
    want = {_path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(expected)[0]}
    have = {_path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(found)[0]}
    lines = []
    for name, x in want.items():
        if name not in have:
            lines.append(f"  {name}: expected {_describe(x)}, not in the checkpoint")
        elif tuple(have[name].shape) != tuple(x.shape) or np.dtype(have[name].dtype) != x.dtype:
            lines.append(f"  {name}: expected {_describe(x)}, found {_describe(have[name])}")
    lines += [f"  {n}: found {_describe(have[n])}, not expected" for n in have if n not in want]
    return lines


MISMATCH = (
    "The checkpoint at step {step} in {directory} does not match the expected train state "
    "(the model or the optimizer differs from the one it was saved with):\n{lines}\n"
    "Restore with the same model configuration and optimizer as the saved run."
)


class Checkpointer:
    """A checkpoint directory: save, list and restore :class:`TrainState` s (one manager).

    Args:
      directory: where the step sub-directories live (created on the first save).
      keep: how many of the most recent checkpoints to keep (None keeps all); the
        checkpoint at step 0 is always kept as well.
      asynchronous: :meth:`save` returns once the state is copied to host memory and the
        write continues in the background (see the module docstring); :meth:`wait` for it.

    Example:
      >>> import tempfile, jax.numpy as jnp, optax
      >>> from mlgrad.training import fit
      >>> loss = lambda params, batch: jnp.mean((params["w"] - batch) ** 2)
      >>> state = fit(loss, {"w": 0.0}, jnp.ones(4), optimizer=optax.sgd(0.1), steps=10).state
      >>> with tempfile.TemporaryDirectory() as tmp, Checkpointer(tmp, keep=3) as ckpt:
      ...     ckpt.save(state), ckpt.all_steps(), ckpt.latest_step()
      (10, [10], 10)
    """

    def __init__(
        self, directory: PathLike, *, keep: int | None = None, asynchronous: bool = False
    ) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"Checkpointer: keep must be None or an int >= 1, got {keep!r}.")
        self.directory = Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(
                f"checkpoint directory {self.directory} exists and is not a directory."
            )
        self._keep = keep
        self._asynchronous = asynchronous
        self._manager: ocp.CheckpointManager | None = None
        self._writable = False
        self._alias: Path | None = None  # a plain-named symlink orbax sees (_orbax_path)
        self._pending: int | None = None  # the step of a save not waited for yet
        # A writer's manager knows the steps: it listed them when opened and tracks its own
        # saves and deletions (the directory has one writer), so listing re-reads the
        # directory only after a failed save, whose step the manager may still list.
        self._listing_current = False

    def _open(self, *, write: bool) -> ocp.CheckpointManager | None:
        """The orbax manager (None when reading a directory that does not exist)."""
        if self._manager is not None and write and not self._writable:
            self.close()  # reopen as a writer
        if self._manager is None:
            if not write and not self.directory.is_dir():
                return None
            path, self._alias = _orbax_path(self.directory, write=write)
            self._manager = ocp.CheckpointManager(
                path,
                options=_options(self._keep, write=write, asynchronous=self._asynchronous),
                item_handlers=_handler(),
            )
            self._writable = write
            self._listing_current = write
        return self._manager

    def open_for_writing(self) -> Checkpointer:
        """Opens the directory for saves now (creating it) rather than at the first save.

        With several processes every one must make the same orbax calls in the same order
        (each call synchronises them); opening the writer up front, on every process, keeps
        the calls that follow (listing steps, saving) the same everywhere, whatever each
        process happens to find on disk first. Returns ``self``.
        """
        try:
            self._open(write=True)
        except OSError as e:
            raise CheckpointError(
                f"cannot create the checkpoint directory {self.directory}: {e}"
            ) from e
        return self

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints, ascending (after a save in flight)."""
        self.wait()
        manager = self._open(write=False)
        if manager is None:
            return []
        if not (self._writable and self._listing_current):
            manager.reload()  # a reader: the directory as it is now
            self._listing_current = self._writable
        return sorted(manager.all_steps())

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, state: TrainState) -> int:
        """Saves ``state`` as the checkpoint of step ``int(state.step)``; returns the step.

        Complete on disk when it returns (asynchronous: when :meth:`wait` returns). Raises
        ValueError if that step is already saved, and :class:`CheckpointError` if writing
        fails (earlier checkpoints stay intact; an asynchronous write's failure surfaces at
        the next save, :meth:`wait` or :meth:`close`).
        """
        if not isinstance(state, TrainState):
            raise TypeError(f"save: state must be a TrainState, got {type(state).__name__}.")
        step = int(state.step)
        try:
            manager = self._open(write=True)
        except OSError as e:
            raise CheckpointError(
                f"cannot create the checkpoint directory {self.directory}: {e}"
            ) from e
        assert manager is not None  # a writer's manager always opens
        self.wait()  # the previous save, committed (or its failure raised) before the next
        if step in manager.all_steps():
            raise ValueError(
                f"a checkpoint for step {step} already exists in {self.directory}; "
                "checkpoints are never overwritten."
            )
        try:
            manager.save(step, args=ocp.args.StandardSave(_storable(state)))
            self._pending = step
            if not self._asynchronous:
                self.wait()
        except CheckpointError:
            raise
        except Exception as e:
            raise self._save_failed(step, e) from e
        return step

    def _save_failed(self, step: int, e: Exception) -> CheckpointError:
        """The error of a failed save of ``step``; the directory is listed afresh next time."""
        self._listing_current = False
        return CheckpointError(
            f"writing the checkpoint of step {step} to {self.directory} failed: {e}. "
            "The earlier checkpoints are intact."
        )

    def wait(self) -> None:
        """Waits until the save in flight (if any) is complete on disk.

        Raises:
          CheckpointError: that save failed (the earlier checkpoints are intact).
        """
        step, self._pending = self._pending, None
        if step is None or self._manager is None:
            return
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._save_failed(step, e) from e

    def restore(self, like: TrainState, step: int | None = None) -> TrainState:
        """The checkpoint of ``step`` (default: the latest) in the structure of ``like``.

        Args:
          like: a template TrainState with the expected structure, shapes and dtypes (e.g.
            a freshly initialised state of the same model and optimizer); its values are
            not used. Arrays are placed with the template's shardings.
          step: which checkpoint; None for the latest.

        Raises:
          FileNotFoundError: no checkpoint (of that step) in the directory.
          ValueError: the checkpoint's arrays do not match the template's shapes/dtypes.
        """
        if not isinstance(like, TrainState):
            raise TypeError(f"restore: like must be a TrainState, got {type(like).__name__}.")
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}.")
        step = steps[-1] if step is None else int(step)
        if step not in steps:
            raise FileNotFoundError(
                f"no checkpoint of step {step} in {self.directory}; available steps: {steps}."
            )
        abstract = _abstract(like)
        manager = self._manager
        assert manager is not None  # all_steps() opened it
        try:
            found = manager.item_metadata(step)
        except Exception as e:  # unreadable metadata: damaged on disk
            raise DamagedCheckpointError(step, self.directory / str(step), _one_line(e)) from e
        found = getattr(found, "tree", found)
        lines = _mismatches(abstract, found) if found is not None else []
        if lines:
            raise ValueError(
                MISMATCH.format(step=step, directory=self.directory, lines="\n".join(lines))
            )
        with _quiet_async_failures():
            damaged = None
            try:
                state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # the arrays cannot be read back
                damaged = DamagedCheckpointError(step, self.directory / str(step), _one_line(e))
            if damaged is not None:  # raised outside the except: no traceback keeps orbax's
                _settle_failed_reads()  # failed reads alive, so they are collected here, quietly
                raise damaged
        trained, static = _split_params(like.params, "like.params")
        restored = _with_typed_keys(state, like._replace(params=trained))
        if static is None:
            return restored
        return restored._replace(params=static.combine(restored.params))

    def restore_newest_intact(
        self, like: TrainState
    ) -> tuple[TrainState, list[DamagedCheckpointError]]:
        """The newest checkpoint that reads back, and the damaged newer ones it skipped.

        Raises:
          FileNotFoundError: no complete checkpoint. DamagedCheckpointError: none reads back
            (the newest one's error). ValueError: a checkpoint does not match ``like``.
        """
        skipped: list[DamagedCheckpointError] = []
        for step in reversed(self.all_steps()):
            try:
                return self.restore(like, step), skipped
            except DamagedCheckpointError as e:
                skipped.append(e)
        if skipped:
            raise skipped[0]
        raise FileNotFoundError(f"no complete checkpoint in {self.directory}.")

    def wait_until_finished(self) -> None:
        """Blocks until pending saves are on disk (saves are synchronous: a no-op guard)."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending work (a save in flight: see :meth:`wait`) and releases the
        manager."""
        try:
            self.wait()
        finally:
            manager, self._manager = self._manager, None
            if manager is not None:
                try:
                    manager.close()  # waits for the deletion of old checkpoints
                except Exception as e:
                    raise CheckpointError(
                        f"removing old checkpoints from {self.directory} failed: {e}"
                    ) from e
        if self._alias is not None:
            shutil.rmtree(self._alias, ignore_errors=True)  # the symlink, not its target
            self._alias = None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.directory)!r}, keep={self._keep})"


def save(directory: PathLike, state: TrainState, *, keep: int | None = None) -> int:
    """Saves ``state`` to ``directory`` as the checkpoint of step ``int(state.step)``.

    Atomic and synchronous; with ``keep`` only the ``keep`` newest checkpoints (and step 0) remain.
    For many saves in a loop a :class:`Checkpointer` avoids re-reading the directory.

    Returns:
      The step saved.
    """
    with Checkpointer(directory, keep=keep) as ckpt:
        return ckpt.save(state)


def latest_step(directory: PathLike) -> int | None:
    """The step of the newest complete checkpoint in ``directory``, or None."""
    with Checkpointer(directory) as ckpt:
        return ckpt.latest_step()


def all_steps(directory: PathLike) -> list[int]:
    """The steps of all complete checkpoints in ``directory``, ascending."""
    with Checkpointer(directory) as ckpt:
        return ckpt.all_steps()


def restore(directory: PathLike, like: TrainState, step: int | None = None) -> TrainState:
    """Restores the checkpoint of ``step`` (default: the latest) into the structure of ``like``.

    Raises FileNotFoundError when there is no such checkpoint and ValueError, naming each
    array's expected and found shape, when the checkpoint does not match the template.
    """
    with Checkpointer(directory) as ckpt:
        return ckpt.restore(like, step)
