"""A small, fair timer for JAX benchmarks: interleaved repeats of millisecond workloads.

How a time is taken (shared by every benchmark in this folder):

* Each contender is a zero-argument callable (usually a ``jax.jit``-ed function with its
  arguments bound) returning arrays. It is called ``warmup`` times first, so compilation and
  first-call costs are never timed.
* A *workload* is ``number`` back-to-back calls followed by one ``jax.block_until_ready`` on
  the last result (JAX dispatches asynchronously; calls on one device run in order). ``number``
  is calibrated per contender so that a workload lasts at least ``target_time`` (default 5 ms,
  five times the 1 ms floor below which timer resolution and dispatch jitter dominate).
* Repeats are *interleaved*: every repeat runs one workload of each contender, so that a burst
  of load from other processes hits all contenders alike. The order within a repeat cycles
  through all permutations of the contenders (a seeded shuffle beyond four), so that no
  contender always runs right after the same one (a slow contender that flushes the caches
  would otherwise penalise whoever follows it). Each workload is preceded by one untimed call
  of the same contender, for the same reason (when the workload is several short calls). A
  time budget may raise the number of repeats for cheap contenders. The reported time per
  call is the median over repeats.
* Ratios are *paired*: the per-repeat ratio of two contenders measured in the same repeat. The
  median of these ratios is reported with a distribution-free 95% confidence interval for that
  median (from the order statistics), which shows how much the machine's noise leaves unknown.

Example:
  >>> import jax, jax.numpy as jnp
  >>> x = jnp.ones(1000)
  >>> sin, cos = jax.jit(jnp.sin), jax.jit(jnp.cos)
  >>> timings = time_interleaved({"sin": lambda: sin(x), "cos": lambda: cos(x)})
  >>> rows = [[name, format_seconds(t.median)] for name, t in timings.items()]
  >>> print(format_table(["contender", "per call"], rows))
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

MIN_WORKLOAD_S = 1e-3
"""The shortest timed workload a benchmark accepts (seconds)."""


class Timing(NamedTuple):
    """The measured time of one contender.

    Attributes:
      name: the contender's name.
      per_call: seconds per call, one entry per repeat (workload time / ``number``).
      number: calls per timed workload.
    """

    name: str
    per_call: np.ndarray
    number: int

    @property
    def median(self) -> float:
        """Median seconds per call over the repeats."""
        return float(np.median(self.per_call))

    @property
    def shortest_workload(self) -> float:
        """The shortest timed workload (seconds): should be >= :data:`MIN_WORKLOAD_S`."""
        return float(np.min(self.per_call) * self.number)


class Ratio(NamedTuple):
    """The paired ratio of two contenders: the median over the repeats and its 95% CI."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.3f}x [{self.low:.3f}-{self.high:.3f}]"


def _run(fn: Callable[[], Any], number: int, settle: bool = False) -> float:
    if settle:
        jax.block_until_ready(fn())
    start = time.perf_counter()
    out = None
    for _ in range(number):
        out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start


def calibrate(fn: Callable[[], Any], target_time: float = 5e-3) -> tuple[int, float]:
    """The number of back-to-back calls of ``fn`` lasting at least ``target_time`` seconds.

    Returns:
      ``(number, seconds)``: the number of calls and how long that many took (the faster of
      two tries).
    """
    number = 1
    while True:
        elapsed = min(_run(fn, number) for _ in range(2))
        if elapsed >= target_time:
            return number, elapsed
        # aim 30% above the target so that a quieter moment keeps the workload above it
        guess = math.ceil(number * 1.3 * target_time / max(elapsed, 1e-7))
        number = max(number + 1, min(guess, 100 * number))


def time_interleaved(
    contenders: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 24,
    budget: float | None = None,
    max_repeats: int = 480,
    target_time: float = 5e-3,
    warmup: int = 2,
) -> dict[str, Timing]:
    """Times each contender as the median of interleaved repeats of calibrated workloads.

    Args:
      contenders: name -> zero-argument callable returning JAX arrays.
      repeats: interleaved repeats (one workload of every contender per repeat), at least.
      budget: if given, the number of repeats is raised (up to ``max_repeats``) so that the
        repeats take about this many seconds: cheap contenders get many repeats, and so
        tighter medians, at no great cost.
      max_repeats: the most repeats ``budget`` may ask for.
      target_time: the calibrated length of one workload, in seconds.
      warmup: untimed calls per contender first (compilation, caches).

    Returns:
      name -> :class:`Timing`, in the order given.
    """
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            jax.block_until_ready(contenders[name]())
    calibrated = {name: calibrate(contenders[name], target_time) for name in names}
    numbers = {name: number for name, (number, _) in calibrated.items()}
    if budget is not None:
        # one repeat: each workload, plus the settling call before it when there is one
        per_repeat = sum(t * (1 + 1 / n) if n > 1 else t for n, t in calibrated.values())
        repeats = max(repeats, min(max_repeats, int(budget / per_repeat)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for order in _orders(names, repeats):
        for name in order:
            # a workload of several short calls is preceded by one untimed call, so that caches
            # disturbed by the previous contender do not count; a single long call needs none
            elapsed = _run(contenders[name], numbers[name], settle=numbers[name] > 1)
            samples[name].append(elapsed / numbers[name])
    return {name: Timing(name, np.array(samples[name]), numbers[name]) for name in names}


def _orders(names: list[str], repeats: int) -> list[tuple[str, ...]]:
    """The order of the contenders in each repeat: all permutations in turn, or shuffles."""
    if len(names) <= 4:
        perms = list(itertools.permutations(names))
        repeats = len(perms) * math.ceil(repeats / len(perms))  # each order equally often
        return [perms[i % len(perms)] for i in range(repeats)]
    rng = np.random.default_rng(0)
    return [tuple(names[i] for i in rng.permutation(len(names))) for _ in range(repeats)]


def paired_ratio(numerator: Timing, denominator: Timing) -> Ratio:
    """The median of the per-repeat ratios numerator / denominator, with its 95% CI.

    The interval is the distribution-free one from the order statistics: the k-th smallest
    and k-th largest ratio, k = (n - 1.96 sqrt(n)) / 2 (normal approximation to the binomial).
    """
    r = np.sort(numerator.per_call / denominator.per_call)
    n = r.size
    k = max(0, math.floor((n - 1.96 * math.sqrt(n)) / 2))
    return Ratio(float(np.median(r)), float(r[k]), float(r[n - 1 - k]))


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(cells[0]))
    underline = "=" * max((len(t) for t in (title or "").splitlines()), default=0)
    out = ([title, underline] if title else []) + [line(cells[0]), rule]
    return "\n".join(out + [line(row) for row in cells[1:]])


def format_seconds(seconds: float) -> str:
    """A duration with a unit that keeps 3 significant digits (us, ms or s)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds:.3f} s"


def environment() -> list[str]:
    """Lines describing where the benchmark ran: JAX version, backend, devices, CPU count."""
    devices = jax.devices()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 0
    return [
        f"jax {jax.__version__} (jaxlib {jax.lib.__version__}), numpy {np.__version__}, "
        f"python {platform.python_version()}",
        f"backend: {jax.default_backend()}; devices: {', '.join(str(d) for d in devices)}",
        f"CPUs usable by this process: {cpus} (of {os.cpu_count()}); "
        f"platform: {platform.platform()}; load average: {_loadavg()}",
    ]


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"
