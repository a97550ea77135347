"""Sparse Jacobians and Hessians: equal to the dense ones, from as many products as colours.

References, independent of mlgrad.sparse: the dense ``jax.jacfwd`` / ``jax.hessian`` for the
values, and each test function's pattern written out in NumPy from its definition (which
inputs each output reads) for the sparsity. The colouring is checked from first principles:
every entry is read off a product in which no other entry of the pattern lands, and the
products are counted by a callback in the function's own derivative rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlgrad
from mlgrad.sparse import Coloring

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------
# Test functions, each with its pattern written out
# ---------------------------------------------------------------------------------------------


def banded(x):
    """Output i reads inputs i-1, i, i+1 (cyclic) and i+2 (not for the last two rows)."""
    return x**2 + 0.5 * jnp.roll(x, 1) * jnp.sin(jnp.roll(x, -1)) + jnp.pad(x[2:], (0, 2))


def banded_pattern(n):
    pairs = [(i, j % n) for i in range(n) for j in (i - 1, i, i + 1)]
    pairs += [(i, i + 2) for i in range(n - 2)]
    return set(pairs)


def arrowhead(x):
    """Output 0 reads every input; output i > 0 reads inputs 0 and i."""
    return jnp.concatenate([jnp.sum(x**2)[None], x[1:] * x[0]])


def arrowhead_pattern(n):
    return (
        {(0, j) for j in range(n)} | {(i, 0) for i in range(1, n)} | {(i, i) for i in range(1, n)}
    )


def random_sparse(n, k=3):
    """Output i reads input i and k random inputs (an index array the function closes over)."""
    idx = RNG.integers(0, n, (n, k))
    idx_j = jnp.asarray(idx)

    def f(x):
        return jnp.sum(jnp.tanh(x[idx_j]), axis=1) * x

    return f, {(i, j) for i in range(n) for j in (i, *idx[i])}


def stencil(u):
    """A nonlinear 2-D Poisson operator on a square grid, zero boundary: the 5-point stencil."""
    side = round(u.size**0.5)
    grid = u.reshape(side, side)
    p = jnp.pad(grid, 1)
    lap = 4 * grid - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]
    return (lap + grid**3).ravel()


def stencil_pattern(n):
    side = round(n**0.5)
    pairs = set()
    for r in range(side):
        for c in range(side):
            for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                if 0 <= r + dr < side and 0 <= c + dc < side:
                    pairs.add((r * side + c, (r + dr) * side + c + dc))
    return pairs


def sparse_matvec(m, n, density=0.08):
    """tanh(A x) for a sparse constant A held as a dense array: the pattern is A's nonzeros."""
    a = np.where(RNG.random((m, n)) < density, RNG.normal(size=(m, n)), 0.0)
    a_j = jnp.asarray(a)
    return (lambda x: jnp.tanh(a_j @ x)), {tuple(ij) for ij in np.argwhere(a != 0)}


def _jacfwd(f):
    """The dense reference, compiled (one XLA program rather than one per primitive)."""
    return jax.jit(jax.jacfwd(f))


def _dense(result) -> np.ndarray:
    """The result as a NumPy matrix, from its stored entries."""
    out = np.zeros(result.matrix.shape)
    indices = np.asarray(result.matrix.indices)
    np.add.at(out, (indices[:, 0], indices[:, 1]), np.asarray(result.matrix.data))
    return out


def _point(n):
    return jnp.asarray(RNG.normal(size=n))


def _pattern_set(coloring: Coloring) -> set:
    return set(zip(coloring.rows.tolist(), coloring.cols.tolist(), strict=True))


def _check_coloring(c: Coloring) -> None:
    """Every entry is read off a product where it lands alone: for a JVP (seeded with the
    columns of one colour) no other column of that colour has an entry in the entry's row;
    for a VJP likewise by rows; and the products are the colours."""
    v, u = c.seeds()
    assert v.shape[0] == c.jvps == len(np.unique(c.column_colors[c.column_colors >= 0]))
    assert u.shape[0] == c.vjps == len(np.unique(c.row_colors[c.row_colors >= 0]))
    assert c.colors == c.jvps + c.vjps
    m, n = c.shape
    dense = np.zeros((m, n), dtype=bool)
    dense[c.rows, c.cols] = True
    for k in range(c.nnz):
        g, pos = int(c.product[k]), int(c.position[k])
        if g < c.jvps:  # (J v)[pos]: the entries of row pos in seeded columns
            landing = np.flatnonzero(dense[pos] & v[g])
            assert landing.tolist() == [c.cols[k]], (k, g, landing)
        else:  # (u^T J)[pos]: the entries of column pos in seeded rows
            landing = np.flatnonzero(dense[:, pos] & u[g - c.jvps])
            target = c.rows[k] if pos == c.cols[k] else c.cols[k]  # a Hessian's mirrored entry
            assert landing.tolist() == [target], (k, g, landing)


MODES = ("auto", "forward", "reverse")
CASES = {
    "banded": (banded, banded_pattern, 40),
    "arrowhead": (arrowhead, arrowhead_pattern, 30),
    "stencil": (stencil, stencil_pattern, 49),
}


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        *((name, mode) for name in ("banded", "arrowhead", "random_sparse") for mode in MODES),
        ("stencil", "auto"),
        ("sparse_matvec", "auto"),
        ("sparse_matvec", "reverse"),
    ],
)
def test_equals_dense_jacfwd_with_the_exact_pattern(name, mode):
    with jax.enable_x64(True):
        if name in CASES:
            f, pattern_of, n = CASES[name]
            m, expected = n, pattern_of(n)
        elif name == "random_sparse":
            n = m = 40
            f, expected = random_sparse(n)
        else:
            m, n = 30, 40
            f, expected = sparse_matvec(m, n)
        x = _point(n)
        result = mlgrad.sparse_jacobian(f, mode=mode)(x)
        got, dense = result.todense(), _jacfwd(f)(x)
    assert isinstance(result.matrix, jax.experimental.sparse.BCOO)
    assert result.matrix.shape == (m, n)
    np.testing.assert_allclose(got, dense, rtol=1e-13, atol=1e-13)
    assert _pattern_set(result.coloring) == expected  # the jaxpr's pattern is exact here
    truly_nonzero = set(map(tuple, np.argwhere(np.asarray(dense) != 0)))
    assert truly_nonzero <= _pattern_set(result.coloring)
    _check_coloring(result.coloring)
    assert result.colors == result.coloring.colors
    assert result.coloring.fallbacks == ()


def test_a_band_costs_its_width_whatever_n():
    # each row reads 4 neighbouring inputs: 4 colours when 4 divides n (a lower bound: the 4
    # columns of one row need 4), at most 6 where the cyclic wrap meets the start; jacfwd: n
    colors = [mlgrad.sparse_jacobian(banded)(_point(n)).colors for n in (301, 3000)]
    assert colors[1] == 4 and max(colors) <= 6, colors


def test_arrowhead_takes_the_dense_row_by_one_vjp():
    n = 50
    auto = mlgrad.sparse_jacobian(arrowhead)(_point(n)).coloring
    assert (auto.jvps, auto.vjps) == (2, 1)  # column 0, the diagonal; row 0 by a VJP
    forward = mlgrad.sparse_jacobian(arrowhead, mode="forward")(_point(n)).coloring
    assert forward.colors == n  # the dense row makes every column conflict


def _counting_jvp(g, counter):
    @jax.custom_jvp
    def h(x):
        return g(x)

    @h.defjvp
    def h_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        jax.debug.callback(lambda _: counter.append("jvp"), t)  # once per product, even vmapped
        return jax.jvp(g, (x,), (t,))

    return h


def _counting_vjp(g, counter):
    @jax.custom_vjp
    def h(x):
        return g(x)

    def fwd(x):
        y, pullback = jax.vjp(g, x)
        return y, pullback

    def bwd(pullback, ct):
        jax.debug.callback(lambda _: counter.append("vjp"), ct)
        return pullback(ct)

    h.defvjp(fwd, bwd)
    return h


def test_the_products_used_are_the_colours():
    n = 60
    f_rand, _ = random_sparse(n)
    for g, mode, counting, jit in (
        (banded, "forward", _counting_jvp, False),
        (f_rand, "forward", _counting_jvp, True),
        (stencil, "reverse", _counting_vjp, True),
    ):
        x = _point(49 if g is stencil else n)
        counter: list = []
        fn = mlgrad.sparse_jacobian(counting(g, counter), mode=mode)
        result = jax.jit(fn)(x) if jit else fn(x)
        jax.block_until_ready(result.matrix.data)
        assert isinstance(result.colors, int)  # static, even out of jax.jit
        assert len(counter) == result.colors < x.size
        kind = result.coloring.jvps if mode == "forward" else result.coloring.vjps
        assert result.colors == kind
        np.testing.assert_allclose(_dense(result), _jacfwd(g)(x), rtol=1e-6, atol=1e-6)


def test_the_pattern_is_found_once_per_shape():
    fn = mlgrad.sparse_jacobian(banded)
    first, second = fn(_point(20)), fn(_point(20))
    assert first.coloring is second.coloring
    assert fn(_point(21)).coloring is not first.coloring


def local_terms(x):
    """A sum of local terms plus one variable that meets all the others."""
    return jnp.sum(jnp.sin(x[1:] * x[:-1])) + jnp.sum(x**4) + x[0] * jnp.sum(jnp.cos(x))


def local_terms_pattern(n):
    return (
        {(i, i) for i in range(n)}
        | {(i, i + 1) for i in range(n - 1)}
        | {(i + 1, i) for i in range(n - 1)}
        | {(0, j) for j in range(n)}
        | {(j, 0) for j in range(n)}
    )


def test_sparse_hessian_equals_jax_hessian():
    n = 40
    with jax.enable_x64(True):
        x = _point(n)
        result = mlgrad.sparse_hessian(local_terms)(x)
        got, dense = _dense(result), jax.jit(jax.hessian(local_terms))(x)
    np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-12)
    assert _pattern_set(result.coloring) == local_terms_pattern(n)
    _check_coloring(result.coloring)
    # variable 0 by a product of its own, the tridiagonal rest by 3
    assert result.colors == 4

    f_rand, _ = random_sparse(n)
    g = lambda x: jnp.sum(f_rand(x))  # noqa: E731
    with jax.enable_x64(True):
        result = mlgrad.sparse_hessian(g)(x)
        got, dense = _dense(result), jax.jit(jax.hessian(g))(x)
    np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-12)
    truly_nonzero = set(map(tuple, np.argwhere(np.asarray(dense) != 0)))
    assert truly_nonzero <= _pattern_set(result.coloring)
    _check_coloring(result.coloring)
    assert result.colors < n


def test_pytrees_argnums_and_keyword_arguments():
    def f(params, scale, *, shift):
        w, b = params["w"], params["b"]
        return scale * jnp.concatenate([w**2, jnp.roll(w, 1) * b]) + shift

    params = {"w": _point(8), "b": _point(8)}
    result = mlgrad.sparse_jacobian(f)(params, 2.0, shift=1.0)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    dense = _jacfwd(lambda p: f(unravel(p), 2.0, shift=1.0))(flat)
    np.testing.assert_allclose(_dense(result), dense, rtol=1e-6)
    assert result.colors < 16

    a, b = _point(5), _point(5)
    both = mlgrad.sparse_jacobian(lambda a, b: a * b, argnums=(0, 1))(a, b)
    assert both.matrix.shape == (5, 10)
    np.testing.assert_allclose(_dense(both), np.hstack([np.diag(b), np.diag(a)]), rtol=1e-6)
    assert both.colors == 1  # [diag(b) diag(a)]: the rows never share a column, so one VJP


def test_a_primitive_without_a_rule_is_dense_and_named():
    kernel = jnp.array([1.0, -2.0, 1.0])
    f = lambda x: jnp.convolve(x, kernel, mode="same") ** 2  # noqa: E731
    x = _point(12)
    result = mlgrad.sparse_jacobian(f)(x)
    np.testing.assert_allclose(_dense(result), _jacfwd(f)(x), rtol=1e-5, atol=1e-5)
    assert "conv_general_dilated" in result.coloring.fallbacks
    assert result.coloring.nnz == 12 * 12  # conservative: dense


def test_control_flow_patterns_are_supersets():
    def scanned(x):
        return jax.lax.scan(lambda c, xi: (0.5 * c + xi, c * xi), 0.0, x)[1]

    def looped(x):
        return jax.lax.fori_loop(0, 3, lambda i, y: y + jnp.roll(y, 1) ** 2, x)

    def branched(x):
        return jax.lax.cond(x[0] > 0, lambda y: 2 * y, lambda y: jnp.roll(y, 1), x)

    patterns = {}
    for f in (scanned, looped, branched):
        x = _point(10)
        result = mlgrad.sparse_jacobian(f)(x)
        dense = np.asarray(_jacfwd(f)(x))
        np.testing.assert_allclose(_dense(result), dense, rtol=1e-5, atol=1e-6)
        assert set(map(tuple, np.argwhere(dense != 0))) <= _pattern_set(result.coloring)
        assert result.coloring.nnz < 100  # not the dense fallback
        patterns[f] = _pattern_set(result.coloring)
    # scan is followed iteration by iteration: exact (y_t = c_t x_t reads x_0 .. x_t, and
    # y_0 = 0 * x_0 reads nothing: the initial carry is a known zero)
    assert patterns[scanned] == {(t, s) for t in range(1, 10) for s in range(t + 1)}


def test_row_wise_operations_give_blocks():
    # softmax over rows of a 3 x 4 matrix: each output reads its own row (the row sums
    # broadcast back over size-1 axes, as the jaxpr's div does), a block-diagonal Jacobian
    def f(x):
        return jax.nn.softmax(x.reshape(3, 4), axis=1).ravel()

    x = _point(12)
    result = mlgrad.sparse_jacobian(f)(x)
    np.testing.assert_allclose(_dense(result), _jacfwd(f)(x), rtol=1e-6, atol=1e-7)
    assert _pattern_set(result.coloring) == {
        (i, j) for i in range(12) for j in range(12) if i // 4 == j // 4
    }
    assert result.colors == 4


def test_a_given_pattern_is_used_and_checked():
    n = 12
    rows, cols = zip(*sorted(banded_pattern(n)), strict=True)
    given = np.zeros((n, n), dtype=bool)
    given[list(rows), list(cols)] = True
    x = _point(n)
    result = mlgrad.sparse_jacobian(banded, pattern=given)(x)
    np.testing.assert_allclose(_dense(result), _jacfwd(banded)(x), rtol=1e-6)
    with pytest.raises(ValueError, match=r"pattern has shape \(3, 3\), expected \(12, 12\)"):
        mlgrad.sparse_jacobian(banded, pattern=np.eye(3, dtype=bool))(x)


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="must return a scalar.*sparse_jacobian"):
        mlgrad.sparse_hessian(banded)(_point(4))
    with pytest.raises(ValueError, match="mode must be one of"):
        mlgrad.sparse_jacobian(banded, mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="complex inputs are not supported"):
        mlgrad.sparse_jacobian(banded)(jnp.ones(3, dtype=jnp.complex64))
