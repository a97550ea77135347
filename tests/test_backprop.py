"""Tests for backprop_table: the notes' intermediate variables, local partials and adjoints.

References are independent of the code under test: the notes' closed forms and backward
equations (section 6.2) evaluated in NumPy, and ``jax.grad`` of the whole function.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlgrad.backprop import BackpropTable, Row, backprop_table


def notes_f(x):
    """The notes' example: f(x) = sqrt(x^2 + e^{x^2}) + cos(x^2 + e^{x^2})."""
    return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))


def primitive(row: Row) -> str:
    return row.operation.split()[0]


# ----------------------------------------------------------------------------------------------
# The notes' worked example
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x", [0.5, 1.3])
def test_notes_example_intermediate_variables(x):
    with jax.enable_x64(True):
        t = backprop_table(notes_f, x)
        grad = float(jax.grad(notes_f)(x))

    assert [r.name for r in t.rows] == ["a", "b", "c", "d", "e", "f"]
    assert [primitive(r) for r in t.rows] == ["integer_pow", "exp", "add", "sqrt", "cos", "add"]
    assert t.rows[0].operation == "integer_pow y=2"
    assert t.formulas == (
        "a = x^2",
        "b = exp(a)",
        "c = a + b",
        "d = sqrt(c)",
        "e = cos(c)",
        "f = d + e",
    )
    assert [r.inputs for r in t.rows] == [("x",), ("a",), ("a", "b"), ("c",), ("c",), ("d", "e")]
    assert [r.name for r in t.inputs] == ["x"] and t.output == "f"

    # Forward pass, in NumPy.
    a = x**2
    b = np.exp(a)
    c = a + b
    d = np.sqrt(c)
    e = np.cos(c)
    f = d + e
    r = {row.name: row for row in t.rows}
    for name, value in zip("abcdef", [a, b, c, d, e, f], strict=True):
        np.testing.assert_allclose(r[name].value, value, rtol=1e-14)

    # Left column: the local partials, closed forms from the notes.
    expected_partials = {
        "a": {"x": 2 * x},
        "b": {"a": np.exp(a)},
        "c": {"a": 1.0, "b": 1.0},
        "d": {"c": 1 / (2 * np.sqrt(c))},
        "e": {"c": -np.sin(c)},
        "f": {"d": 1.0, "e": 1.0},
    }
    for name, partials in expected_partials.items():
        assert dict(r[name].partials).keys() == partials.keys()
        for u, value in partials.items():
            np.testing.assert_allclose(r[name].partials[u], value, rtol=1e-14)

    # Right column: the notes' backward equations, by hand.
    df_df = 1.0
    df_dd = df_df * 1.0
    df_de = df_df * 1.0
    df_dc = df_dd * (1 / (2 * np.sqrt(c))) + df_de * (-np.sin(c))
    df_db = df_dc * 1.0
    df_da = df_db * np.exp(a) + df_dc * 1.0
    df_dx = df_da * 2 * x
    for name, value in zip("fedcba", [df_df, df_de, df_dd, df_dc, df_db, df_da], strict=True):
        np.testing.assert_allclose(r[name].adjoint, value, rtol=1e-13)
    np.testing.assert_allclose(t["x"].adjoint, df_dx, rtol=1e-13)

    # The input adjoint is the gradient: jax.grad and the closed-form derivative.
    closed_form = (2 * x + 2 * x * np.exp(x**2)) * (1 / (2 * np.sqrt(c)) - np.sin(c))
    np.testing.assert_allclose(t.grads[0], grad, rtol=1e-13)
    np.testing.assert_allclose(t.grads[0], closed_form, rtol=1e-13)


def test_notes_example_str_and_repr():
    t = backprop_table(notes_f, 0.5)
    text = str(t)
    for name in ["x", "a", "b", "c", "d", "e", "f"]:
        assert f"\n{name} " in text  # one table line per variable
    for formula in t.formulas:
        assert formula in text
    assert "∂f/∂c = ∂f/∂d·∂d/∂c + ∂f/∂e·∂e/∂c" in text  # the notes' backward equation
    assert "∂f/∂a = ∂f/∂b·∂b/∂a + ∂f/∂c·∂c/∂a" in text
    assert repr(t).startswith("BackpropTable(inputs=('x',), output='f'")
    assert "'c = a + b'" in repr(t)


# ----------------------------------------------------------------------------------------------
# Input adjoints equal jax.grad on a table of functions
# ----------------------------------------------------------------------------------------------


@jax.jit
def jitted_helper(x):
    return jnp.sin(x) * x


@jax.custom_jvp
def smooth_abs(x):
    return jnp.sqrt(x**2 + 1.0)


smooth_abs.defjvp(lambda p, t: (smooth_abs(p[0]), p[0] / smooth_abs(p[0]) * t[0]))


@jax.custom_vjp
def scaled_sin(x, s):
    return jnp.sin(x) * s


scaled_sin.defvjp(
    lambda x, s: (scaled_sin(x, s), (x, s)),
    lambda res, g: (jnp.cos(res[0]) * res[1] * g, jnp.sin(res[0]) * g),
)

RNG = np.random.default_rng(0)
V3 = RNG.normal(size=3)
M23 = RNG.normal(size=(2, 3))
W_CONST = RNG.normal(size=3)

CASES = {
    "two scalars": (lambda x, y: x * jnp.exp(y) - y / x, (0.7, -0.4)),
    "python int promoted": (lambda x: x**3 + 2.0 * x, (2,)),
    "array": (lambda x: jnp.sum(jnp.tanh(x) ** 2), (V3,)),
    "matrix product": (lambda w, x: jnp.sum(jnp.tanh(w @ x)), (M23, V3)),
    "matrix-matrix": (lambda a, b: jnp.sum((a.T @ b) ** 2), (M23, M23 + 1.0)),
    "jitted helper": (lambda x: jitted_helper(x) + jitted_helper(2.0 * x), (0.9,)),
    "jnp.where": (lambda x: jnp.sum(jnp.where(x > 0, x**2, -x)), (V3,)),
    "relu": (lambda x: jnp.sum(jax.nn.relu(x) * x), (V3,)),
    "softplus": (lambda x: jnp.sum(jax.nn.softplus(3.0 * x)), (V3,)),
    "user custom_jvp": (lambda x: smooth_abs(x) * jnp.cos(x), (0.8,)),
    "user custom_vjp": (lambda x, s: scaled_sin(x, s) ** 2, (0.3, 1.7)),
    "sigmoid unit": (
        lambda w, b, x: 1.0 / (1.0 + jnp.exp(-(jnp.dot(w, x) + b))),
        (V3, 0.1, W_CONST),
    ),
    "closed-over constant": (lambda x: jnp.dot(jnp.asarray(W_CONST), jnp.sin(x)), (V3,)),
    "pytree argument": (
        lambda p, x: jnp.sum((p["w"] @ x + p["b"]) ** 2),
        ({"w": M23, "b": np.array([0.5, -0.5])}, V3),
    ),
    "jitted whole function": (jax.jit(lambda x, y: jnp.log1p(x**2) * y), (1.5, 2.0)),
    "checkpoint and cond": (
        lambda x: jax.checkpoint(jnp.sin)(x) * jax.lax.cond(x > 0, jnp.exp, jnp.cos, x),
        (0.4,),
    ),
    "multiple-output op": (lambda x: jnp.sum(jnp.split(x, 3)[1] * x[0]), (V3,)),
}


@pytest.mark.parametrize("case", CASES)
def test_input_adjoints_equal_jax_grad(case):
    f, args = CASES[case]
    with jax.enable_x64(True):
        args = tuple(
            jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), a) for a in args
        )
        t = backprop_table(f, *args)
        expected = jax.grad(f, argnums=tuple(range(len(args))))(*args)
    assert len(t.grads) == len(args)
    for got, want, arg in zip(t.grads, expected, args, strict=True):
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(arg)
        for g, w in zip(
            jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True
        ):
            assert np.shape(g) == np.shape(w)
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    # Every float adjoint has its variable's shape.
    for row in (*t.inputs, *t.rows):
        if row.adjoint is not None:
            assert np.shape(row.adjoint) == np.shape(row.value)
    # The printed table names every variable.
    text = str(t)
    for row in (*t.inputs, *t.rows):
        assert row.name in text


def test_float32_inputs_and_output():
    x = np.linspace(-1.0, 1.0, 5, dtype=np.float32)
    f = lambda x: jnp.mean(jnp.sin(x) * jnp.exp(x))  # noqa: E731
    t = backprop_table(f, x)
    assert t.grads[0].dtype == np.float32
    np.testing.assert_allclose(t.grads[0], jax.grad(f)(x), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# The tidy graph: jit inlined, custom functions as one row, identical equations merged
# ----------------------------------------------------------------------------------------------


def test_nested_jit_is_inlined():
    t = backprop_table(lambda x: jitted_helper(x) + 1.0, 0.9)
    assert [primitive(r) for r in t.rows] == ["sin", "mul", "add"]
    assert t.formulas == ("a = sin(x)", "b = a * x", "c = b + 1.0")


def test_relu_is_one_operation():
    t = backprop_table(lambda x: jnp.sum(jax.nn.relu(x)), np.array([-1.0, 2.0]))
    assert t.rows[0].operation == "custom_jvp_call name=relu"
    assert t.formulas == ("a = relu(x)", "b = sum(a)")
    # Its local Jacobian is the diagonal of the relu's derivative: 0 for -1, 1 for 2.
    np.testing.assert_allclose(t["a"].partials["x"], np.diag([0.0, 1.0]))


def test_softplus_is_one_operation():
    t = backprop_table(jax.nn.softplus, 0.3)
    (row,) = t.rows
    assert primitive(row) == "custom_jvp_call" and "softplus" in row.operation
    np.testing.assert_allclose(row.partials["x"], 1 / (1 + np.exp(-0.3)), rtol=1e-6)


def test_user_custom_jvp_partial_comes_from_its_rule():
    # A straight-through estimator: round() with the JVP rule of the identity. Differentiating
    # its internals would give 0; its own rule gives 1.
    @jax.custom_jvp
    def straight_through(x):
        return jnp.round(x)

    straight_through.defjvp(lambda p, t: (straight_through(p[0]), t[0]))
    f = lambda x: straight_through(x) * x  # noqa: E731
    t = backprop_table(f, 1.3)
    assert [r.operation for r in t.rows] == ["custom_jvp_call name=straight_through", "mul"]
    np.testing.assert_allclose(t["a"].value, 1.0)
    np.testing.assert_allclose(t["a"].partials["x"], 1.0)
    np.testing.assert_allclose(t.grads[0], 1.0 + 1.3, rtol=1e-6)  # d/dx (x * x) through the rule
    np.testing.assert_allclose(t.grads[0], jax.grad(f)(1.3), rtol=1e-6)


def test_weak_type_conversions_are_dropped():
    # jnp.where inserts a weak-type convert_element_type of its literal 0.0; it is not shown.
    t = backprop_table(lambda x: jnp.where(x > 0, x, 0.0), 2.0)
    assert [primitive(r) for r in t.rows] == ["gt", "select_n"]
    assert t["a"].adjoint is None and t["a"].partials == {}  # a boolean: no derivative


def test_sigmoid_unit_against_closed_form():
    with jax.enable_x64(True):
        w, x, b = np.array([0.5, -1.0, 0.25]), np.array([1.0, 2.0, -3.0]), 0.1

        def unit(w, b):
            return 1.0 / (1.0 + jnp.exp(-(jnp.dot(w, x) + b)))

        t = backprop_table(unit, w, b)
    s = 1 / (1 + np.exp(-(w @ x + b)))
    assert [r.name for r in t.inputs] == ["w", "b"]
    assert "b" not in [r.name for r in t.rows]  # intermediates skip the inputs' letters
    np.testing.assert_allclose(t.grads[0], s * (1 - s) * x, rtol=1e-13)
    np.testing.assert_allclose(t.grads[1], s * (1 - s), rtol=1e-13)


def test_array_partials_small_and_large():
    f = lambda x: jnp.sum(jnp.tanh(x))  # noqa: E731
    with jax.enable_x64(True):
        small = backprop_table(f, np.array([0.1, -0.5, 2.0]))
        large = backprop_table(f, np.linspace(-1.0, 1.0, 10))
    x = np.array([0.1, -0.5, 2.0])
    np.testing.assert_allclose(small["a"].partials["x"], np.diag(1 - np.tanh(x) ** 2), rtol=1e-14)
    np.testing.assert_allclose(small["b"].partials["a"], np.ones(3))
    note = large["a"].partials["x"]  # 10 x 10 = 100 entries: noted by shape only
    assert isinstance(note, jax.ShapeDtypeStruct) and note.shape == (10, 10)
    np.testing.assert_allclose(large["b"].partials["a"], np.ones(10))  # 10 entries: stored


def test_large_arrays_print_summaries():
    x = np.linspace(-1.0, 1.0, 10_000, dtype=np.float32)
    t = backprop_table(lambda x: jnp.mean(x**2), x)
    text = str(t)
    assert "f32[10000]" in text and "(not stored)" in text
    assert len(text) < 3000


def test_names_from_signature_and_pytrees():
    t = backprop_table(lambda params, x: jnp.sum(params["w"] * x), {"w": np.ones(2)}, np.ones(2))
    assert [r.name for r in t.inputs] == ["params['w']", "x"]
    t = backprop_table(lambda *args: args[0] * args[1], 1.0, 2.0)
    assert [r.name for r in t.inputs] == ["args[0]", "args[1]"]
    assert t.formulas == ("a = args[0] * args[1]",)
    t = backprop_table(lambda x, a: x * a, 1.0, 2.0)
    assert t.formulas == ("b = x * a",)


def test_output_is_an_input_or_a_constant():
    t = backprop_table(lambda x: x, 2.0)
    assert t.rows == () and t.output == "x"
    np.testing.assert_allclose(t.grads[0], 1.0)
    t = backprop_table(lambda x: jnp.asarray(3.0), np.ones(2))
    np.testing.assert_allclose(t.grads[0], np.zeros(2))


def test_table_is_immutable():
    t = backprop_table(notes_f, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.rows = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        t["c"].partials["a"] = 0.0  # type: ignore[index]
    assert isinstance(t, BackpropTable) and isinstance(t.rows, tuple)
    with pytest.raises(KeyError, match="no variable named 'z'"):
        t["z"]


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_non_scalar_output_points_to_jacobian():
    with pytest.raises(TypeError, match=r"mlgrad\.jacobian"):
        backprop_table(lambda x: 2.0 * x, np.ones(3))
    with pytest.raises(TypeError, match=r"mlgrad\.jacobian"):
        backprop_table(lambda x: (x, x), 1.0)


def test_integer_arrays_are_rejected():
    with pytest.raises(TypeError, match="int"):
        backprop_table(lambda x: jnp.sum(x), np.arange(3))
    with pytest.raises(TypeError, match="floating-point scalar output"):
        backprop_table(lambda x: jnp.argmax(x), np.ones(3))


def test_docstring_example_runs():
    import doctest

    import mlgrad.backprop

    result = doctest.testmod(mlgrad.backprop)
    assert result.attempted > 0 and result.failed == 0
