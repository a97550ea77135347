"""Dependency sets: which input entries each entry of an array can depend on (NumPy only).

A :class:`Deps` is a boolean ``size x n`` matrix in compressed-row form (row ``e``: the inputs
that entry ``e`` of the array depends on), or, when that would be too large, the conservative
*dense* form: every entry depends on all of the inputs listed in ``everything``. Every operation
here is sound (never drops a dependency) and turns to the dense form rather than allocate more
than :data:`MAX_ENTRIES` index pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_ENTRIES = 20_000_000
"""The most (entry, input) pairs one array's dependency set may hold (about 160 MB of int64 while
it is built); a larger set is kept in the dense form, which costs nothing but is conservative."""


@dataclass(frozen=True, eq=False)
class Deps:
    """The input dependencies of one array's ``size`` entries, among ``n`` inputs.

    Either ``indptr``/``indices`` (compressed rows: the inputs of entry ``e`` are
    ``indices[indptr[e]:indptr[e + 1]]``, sorted and unique), or ``everything`` (sorted inputs
    that every entry depends on; the dense form), never both.
    """

    size: int
    n: int
    indptr: np.ndarray | None = None
    indices: np.ndarray | None = None
    everything: np.ndarray | None = None

    @property
    def dense(self) -> bool:
        return self.everything is not None

    def counts(self) -> np.ndarray:
        """The number of inputs of each entry."""
        if self.everything is not None:
            return np.full(self.size, self.everything.size, dtype=np.int64)
        assert self.indptr is not None
        return np.diff(self.indptr)

    def columns(self) -> np.ndarray:
        """All inputs that any entry depends on (sorted, unique)."""
        if self.everything is not None:
            return self.everything
        assert self.indices is not None
        return np.unique(self.indices)

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        """(entry, input) pairs, sorted by entry then input (may be large for the dense form)."""
        if self.everything is not None:
            rows = np.repeat(np.arange(self.size, dtype=np.int64), self.everything.size)
            return rows, np.tile(self.everything, self.size)
        assert self.indptr is not None and self.indices is not None
        rows = np.repeat(np.arange(self.size, dtype=np.int64), np.diff(self.indptr))
        return rows, self.indices


def identity(n: int) -> Deps:
    """Input entry ``i`` depends on input ``i``."""
    return Deps(n, n, np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int64))


def dense(size: int, n: int, columns: np.ndarray) -> Deps | None:
    """Every one of ``size`` entries depends on all of ``columns``: compressed when it fits."""
    columns = np.unique(columns).astype(np.int64)
    if columns.size == 0 or size == 0:
        return None
    if size * columns.size <= MAX_ENTRIES:
        indptr = np.arange(size + 1, dtype=np.int64) * columns.size
        return Deps(size, n, indptr, np.tile(columns, size))
    return Deps(size, n, everything=columns)


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + c)`` for each start ``s`` and count ``c``."""
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts  # where each range begins in the output
    within = np.arange(total, dtype=np.int64) - np.repeat(offsets, counts)
    return np.repeat(starts.astype(np.int64), counts) + within


def unique_sorted(keys: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an int64 array (a sort, faster than ``np.unique``)."""
    keys = np.sort(keys)
    if keys.size < 2:
        return keys
    keep = np.empty(keys.size, dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def from_coo(size: int, n: int, rows: np.ndarray, cols: np.ndarray) -> Deps | None:
    """The dependency set of (entry, input) pairs, duplicates merged."""
    if rows.size == 0:
        return None
    keys = unique_sorted(rows.astype(np.int64) * n + cols.astype(np.int64))
    rows_u, cols_u = np.divmod(keys, n)
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows_u, minlength=size), out=indptr[1:])
    return Deps(size, n, indptr, cols_u)


def pull(
    size: int, n: int, sources: Sequence[tuple[np.ndarray, np.ndarray, Deps | None]]
) -> Deps | None:
    """The union over ``(out, src, deps)`` of: entry ``out[k]`` depends on what entry ``src[k]``
    of ``deps``'s array depends on (a sparse boolean product of a routing matrix with ``deps``).
    """
    live = [(o, s, d) for o, s, d in sources if d is not None and o.size]
    if not live:
        return None
    if any(d.dense for _, _, d in live):
        cols = np.concatenate([d.columns() for _, _, d in live])
        touched = np.unique(np.concatenate([o for o, _, _ in live]))
        if touched.size == size:
            return dense(size, n, cols)
        # only some entries are touched: the others depend on nothing
        return _dense_rows(size, n, touched, np.unique(cols))
    total = sum(int(d.counts()[s].sum()) for _, s, d in live)
    if total > MAX_ENTRIES:
        cols = np.concatenate([d.columns() for _, _, d in live])
        return dense(size, n, cols)
    rows_all, cols_all = [], []
    for out, src, d in live:
        assert d.indptr is not None and d.indices is not None
        starts = d.indptr[src]
        counts = d.indptr[src + 1] - starts
        rows_all.append(np.repeat(out.astype(np.int64), counts))
        cols_all.append(d.indices[ranges(starts, counts)])
    rows, cols = np.concatenate(rows_all), np.concatenate(cols_all)
    if len(live) == 1 and _strictly_increasing(live[0][0]):
        # one source routed to distinct, ordered entries: already sorted and unique per entry
        indptr = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=size), out=indptr[1:])
        return Deps(size, n, indptr, cols) if rows.size else None
    return from_coo(size, n, rows, cols)


def _dense_rows(size: int, n: int, touched: np.ndarray, cols: np.ndarray) -> Deps | None:
    if touched.size * cols.size <= MAX_ENTRIES:
        rows = np.repeat(touched, cols.size)
        return from_coo(size, n, rows, np.tile(cols, touched.size))
    return Deps(size, n, everything=cols)  # conservative: untouched entries too


def _strictly_increasing(a: np.ndarray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] > a[:-1]))


def union(size: int, n: int, parts: Sequence[Deps | None]) -> Deps | None:
    """Entry-wise union of dependency sets of arrays of the same size."""
    live = [p for p in parts if p is not None]
    if not live:
        return None
    if len(live) == 1:
        return live[0]
    idx = np.arange(size, dtype=np.int64)
    return pull(size, n, [(idx, idx, p) for p in live])


def same(a: Deps | None, b: Deps | None) -> bool:
    """Whether two dependency sets are equal (for fixed-point iterations)."""
    if a is None or b is None:
        return a is b
    if a.dense or b.dense:
        return (
            a.dense and b.dense and np.array_equal(a.everything, b.everything)  # type: ignore[arg-type]
        )
    return np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)  # type: ignore[arg-type]
