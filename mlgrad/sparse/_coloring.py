"""Colouring a sparsity pattern: which columns (rows) may share one JVP (VJP).

Two columns of a Jacobian are *structurally orthogonal* when no row has a nonzero in both; then
one JVP with the sum of their unit vectors gives both columns, each entry of the product being
one entry of one of them. A colouring groups the columns into such sets, one JVP per colour
(Curtis, Powell and Reid 1974; Gebremedhin, Manne and Pothen 2005, "What color is your
Jacobian?"). Greedy colouring in the natural order gives ``2b + 1`` colours for a band of
half-width ``b`` (the minimum) and few colours for scattered patterns.

A few dense rows would force every column into a colour of its own (an arrowhead: one full row);
such rows are taken out and computed by VJPs instead, one product each (coloured among
themselves), and the rest is coloured by columns. The number of dense rows is chosen to
minimise (rows taken out) + (the most nonzeros left in a row), the latter a lower bound on the
colours the rest needs. Reverse mode is the same on the transpose. For a symmetric matrix (a
Hessian) the products are Hessian-vector products either way: a row taken out also gives its
column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlgrad.sparse._deps import ranges as _ranges
from mlgrad.sparse._deps import unique_sorted as _unique_sorted

MAX_COLORING_WORK = 20_000_000
"""The most conflicts greedy colouring may list (the sum over rows of their nonzeros squared,
about 16 bytes each while listed); past that every column gets a colour of its own (as many
products as a dense Jacobian, which such a pattern nearly is)."""


@dataclass(frozen=True, eq=False)
class Coloring:
    """How a sparse ``m x n`` matrix is recovered from few products.

    Attributes:
      shape: ``(m, n)``.
      rows, cols: the pattern: the entries that may be nonzero, sorted by row then column
        (``cols[k]`` is the column of entry ``k``). A superset of the true nonzeros.
      column_colors: ``(n,)`` the JVP each column is seeded into, or -1 (not seeded).
      row_colors: ``(m,)`` the VJP each row is seeded into, or -1 (not seeded).
      product, position: ``(nnz,)`` for each entry, the product it is read from (the JVPs are
        products ``0 .. jvps - 1``, in colour order; the VJPs follow) and its index in that
        product's output (a row for a JVP, a column for a VJP).
      symmetric: the products are Hessian-vector products (both kinds are ``H v``).
      fallbacks: primitives the pattern detection treated conservatively (dense), if any.
    """

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    column_colors: np.ndarray
    row_colors: np.ndarray
    product: np.ndarray
    position: np.ndarray
    symmetric: bool = False
    fallbacks: tuple[str, ...] = ()

    @property
    def jvps(self) -> int:
        """The number of column products (JVPs, or HVPs for a Hessian)."""
        return int(self.column_colors.max(initial=-1)) + 1

    @property
    def vjps(self) -> int:
        """The number of row products (VJPs, or HVPs for a Hessian)."""
        return int(self.row_colors.max(initial=-1)) + 1

    @property
    def colors(self) -> int:
        """The number of products: one per colour."""
        return self.jvps + self.vjps

    @property
    def nnz(self) -> int:
        return int(self.rows.size)

    def seeds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(V, U)``: the JVP seeds ``V`` (``jvps x n``, row ``c`` the indicator of colour
        ``c``'s columns) and the VJP seeds ``U`` (``vjps x m``)."""
        m, n = self.shape
        v = np.zeros((self.jvps, n), dtype=bool)
        seeded = self.column_colors >= 0
        v[self.column_colors[seeded], np.flatnonzero(seeded)] = True
        u = np.zeros((self.vjps, m), dtype=bool)
        seeded = self.row_colors >= 0
        u[self.row_colors[seeded], np.flatnonzero(seeded)] = True
        return v, u

    def __repr__(self) -> str:
        m, n = self.shape
        kind = "HVPs" if self.symmetric else f"{self.jvps} JVPs + {self.vjps} VJPs"
        return (
            f"Coloring({m}x{n}, nnz={self.nnz}, {self.colors} colors: {kind}"
            + (f", dense fallback for {', '.join(self.fallbacks)}" if self.fallbacks else "")
            + ")"
        )


def _compressed(major: np.ndarray, minor: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of the pairs grouped by ``major``."""
    order = np.argsort(major, kind="stable")
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(major, minlength=size), out=indptr[1:])
    return indptr, minor[order]


def greedy_color(
    rows: np.ndarray,
    cols: np.ndarray,
    m: int,
    n: int,
    active_rows: np.ndarray,
    active_cols: np.ndarray,
) -> np.ndarray:
    """Greedy distance-1 colouring of the active columns, in their natural order: a column gets
    the smallest colour not used by a column that shares an active row with it. Columns with no
    entry in an active row get -1 (they need no product). Returns ``(n,)`` colours."""
    keep = active_rows[rows] & active_cols[cols]
    r, c = rows[keep], cols[keep]
    colors = np.full(n, -1, dtype=np.int64)
    if r.size == 0:
        return colors
    row_counts = np.bincount(r, minlength=m)
    if int(np.sum(row_counts.astype(np.float64) ** 2)) > MAX_COLORING_WORK:
        used = np.unique(c)
        colors[used] = np.arange(used.size)
        return colors
    # the conflicts of each column with the columns before it (those coloured already)
    row_ptr, row_cols = _compressed(r, c, m)
    counts = row_ptr[r + 1] - row_ptr[r]
    mine = np.repeat(c, counts)
    other = row_cols[_ranges(row_ptr[r], counts)]
    earlier = other < mine
    keys = _unique_sorted(mine[earlier] * n + other[earlier])
    mine, other = np.divmod(keys, n)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(mine, minlength=n), out=ptr[1:])
    ptr_l, other_l = ptr.tolist(), other.tolist()
    color = [-1] * n
    for j in np.unique(c).tolist():
        forbidden = set(map(color.__getitem__, other_l[ptr_l[j] : ptr_l[j + 1]]))
        chosen = 0
        while chosen in forbidden:
            chosen += 1
        color[j] = chosen
    return np.asarray(color, dtype=np.int64)


def _dense_rows(counts: np.ndarray, allow: bool) -> np.ndarray:
    """The rows to take out (the densest ``k``), ``k`` minimising ``k + counts[k]`` sorted
    descending (the most nonzeros left in a row bounds the colours the rest needs)."""
    if not allow or counts.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    ranked = np.concatenate([counts[order], [0]])
    k = int(np.argmin(np.arange(ranked.size) + ranked))
    return np.sort(order[:k])


def _one_sided(
    rows: np.ndarray, cols: np.ndarray, m: int, n: int, take_out_dense: bool, symmetric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column colouring with dense rows taken out: (column colours, row colours, product,
    position) for the pattern (rows, cols)."""
    counts = np.bincount(rows, minlength=m)
    dense = _dense_rows(counts, take_out_dense)
    is_dense_row = np.zeros(m, dtype=bool)
    is_dense_row[dense] = True
    active_cols = np.ones(n, dtype=bool)
    if symmetric:
        active_cols[dense] = False  # row r's product is also column r
    column_colors = greedy_color(rows, cols, m, n, ~is_dense_row, active_cols)
    # the dense rows, coloured among themselves (as columns of the transpose)
    row_colors = greedy_color(cols, rows, n, m, np.ones(n, dtype=bool), is_dense_row)
    jvps = int(column_colors.max(initial=-1)) + 1
    from_row = is_dense_row[rows]
    product = np.where(from_row, jvps + row_colors[rows], column_colors[cols])
    position = np.where(from_row, cols, rows)
    if symmetric:
        # an entry (i, j) with j taken out is entry (j, i) of row j's product
        from_col_of_row = ~from_row & is_dense_row[cols]
        product = np.where(from_col_of_row, jvps + row_colors[cols], product)
        position = np.where(from_col_of_row, rows, position)
    return column_colors, row_colors, product, position


def _reverse_bound(cols: np.ndarray, n: int) -> int:
    """A lower bound on the products of any reverse colouring with dense columns taken out:
    the most nonzeros in a column left, plus one product if any column is taken out."""
    ranked = np.concatenate([np.sort(np.bincount(cols, minlength=n))[::-1], [0]])
    k = np.arange(ranked.size)
    return int(np.min(np.minimum(k, 1) + ranked))


def color(
    rows: np.ndarray,
    cols: np.ndarray,
    shape: tuple[int, int],
    mode: str,
    symmetric: bool = False,
    fallbacks: tuple[str, ...] = (),
) -> Coloring:
    """The colouring of the pattern ``(rows, cols)`` (sorted by row, then column) that needs the
    fewest products for ``mode``: ``"forward"`` (JVPs only), ``"reverse"`` (VJPs only) or
    ``"auto"`` (either, with dense rows (columns) taken out to VJPs (JVPs); for a symmetric
    pattern, Hessian-vector products throughout)."""
    m, n = shape
    rows = rows.astype(np.int64)
    cols = cols.astype(np.int64)
    candidates = []
    if mode in ("auto", "forward"):
        cc, rc, product, position = _one_sided(rows, cols, m, n, mode == "auto", symmetric)
        candidates.append(Coloring(shape, rows, cols, cc, rc, product, position, symmetric))
    if mode == "auto" and not symmetric and candidates[0].colors <= _reverse_bound(cols, n):
        pass  # no reverse colouring can need fewer products
    elif mode in ("auto", "reverse") and not symmetric:
        rc, cc, product, position = _one_sided(cols, rows, n, m, mode == "auto", False)
        jvps = int(cc.max(initial=-1)) + 1
        vjps = int(rc.max(initial=-1)) + 1
        # on the transpose, "columns" are J's rows: products 0..vjps-1 are VJPs; put JVPs first
        is_row_product = product < vjps
        product = np.where(is_row_product, product + jvps, product - vjps)
        candidates.append(Coloring(shape, rows, cols, cc, rc, product, position, symmetric))
    best = min(candidates, key=lambda c: c.colors)  # ties: forward, the first
    return Coloring(
        shape,
        rows,
        cols,
        best.column_colors,
        best.row_colors,
        best.product,
        best.position,
        symmetric,
        fallbacks,
    )
