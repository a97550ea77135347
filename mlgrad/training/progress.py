"""``fit``'s progress report on stderr: a live bar on a terminal, plain lines elsewhere.

On a terminal a rich bar shows the step, the loss, the steps per second and the time left.
When stderr is a file or a pipe (a batch job's log, ``mlgrad train ... 2> log``) a bar would
print nothing useful, so one line is written every :data:`LINE_SECONDS` seconds instead::

    step 1200/10000 (12%)  loss 0.0123  val 0.013  2,450 steps/s  ETA 0:00:04

Before the first chunk a line says that the training program is compiling, and after it how
long the compilation took (JAX's own compile-time events: tracing, lowering and XLA's
compilation, summed; nearly nothing when the persistent compilation cache has the program).
The rate and the time left are those of the chunks after the first (which compiled).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

#: Seconds between two progress lines when stderr is not a terminal.
LINE_SECONDS = 5.0

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]  # summed over the process, by the listener below
_listening = threading.Lock()
_listener_installed = [False]


def _on_event(event: str, duration_secs: float, **_: str | int) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration_secs


def compile_seconds() -> float:
    """Seconds JAX has spent compiling in this process since the first call (a counter)."""
    with _listening:
        if not _listener_installed[0]:
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(_on_event)
            _listener_installed[0] = True
    return _compile_seconds[0]


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (rich's and tqdm's form)."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _number(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


class Progress:
    """The report of one ``fit`` call from step ``start`` to ``total``; nothing when disabled.

    Args:
      enabled: report at all.
      start, total: the steps taken before the call and the target total.
      stream: where to write (stderr); a terminal gets the bar, anything else lines.
      clock: the time source (seconds), replaceable in tests.
    """

    def __init__(
        self,
        enabled: bool,
        start: int,
        total: int,
        *,
        stream: IO[str] | None = None,
        clock: Any = time.perf_counter,
    ) -> None:
        self.enabled = enabled and total > start
        self.start, self.total, self.clock = start, total, clock
        self.stream = sys.stderr if stream is None else stream
        self.bar: Any = None
        self.rate: float | None = None  # steps/s after the compilation
        self._compiled = False
        self._last_line = -float("inf")

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        self._say("compiling the training program ...")
        self._compile0, self._t0 = compile_seconds(), self.clock()
        self._steps0 = self.start
        if self.stream.isatty():
            self.bar = self._rich_bar()
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, step: int, loss: float, val_loss: float | None) -> None:
        """After a chunk: ``step`` steps taken, the chunk's last loss, a validation loss."""
        if not self.enabled:
            return
        now = self.clock()
        if not self._compiled:  # the first chunk: compiled, then ran
            self._compiled = True
            compiling = compile_seconds() - self._compile0
            self._say(f"compiled in {compiling:.1f} s")
        elif step > self._steps0:  # the rate of the chunks after the first (it also waited
            self.rate = (step - self._steps0) / max(now - self._t0, 1e-9)  # for dispatches)
        self._t0, self._steps0 = now, step
        metrics = f"loss {loss:.4g}" + ("" if val_loss is None else f"  val {val_loss:.4g}")
        speed = "" if self.rate is None else f"{_number(self.rate)} steps/s"
        if self.bar is not None:
            eta = "" if not self.rate else format_duration((self.total - step) / self.rate)
            self.bar.update(self._task, completed=step, metrics=metrics, speed=speed, eta=eta)
        elif now - self._last_line >= LINE_SECONDS or step >= self.total:
            self._last_line = now
            self._say(self.line(step, metrics, speed))

    def line(self, step: int, metrics: str, speed: str) -> str:
        """The plain progress line of ``step``."""
        share = f"{100 * step / self.total:.0f}%"
        eta = ""
        if self.rate:
            eta = f"  ETA {format_duration((self.total - step) / self.rate)}"
        return f"step {step}/{self.total} ({share})  {metrics}  {speed}{eta}".rstrip()

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def _rich_bar(self) -> Any:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),  # from the rate after the compilation
            console=Console(file=self.stream),
        )
        self._task = bar.add_task(
            "train", total=self.total, completed=self.start, metrics="", speed="", eta=""
        )
        return bar
