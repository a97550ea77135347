"""Backpropagation made visible: the intermediate variables of a function and their adjoints.

The lecture notes (section 6.2, "Automatic differentiation") compute the gradient of

    f(x) = sqrt(x^2 + e^{x^2}) + cos(x^2 + e^{x^2})

by naming intermediate variables ``a = x^2, b = e^a, c = a + b, d = sqrt(c), e = cos(c),
f = d + e``, writing down each local partial derivative (the left column), and then working
backward from the output with the chain rule (the right column)::

    df/dc = df/dd dd/dc + df/de de/dc,   df/db = df/dc dc/db,   df/da = df/db db/da + df/dc dc/da,
    df/dx = df/da da/dx.

:func:`backprop_table` does exactly this for any scalar-valued JAX function, from the function's
real jaxpr (what ``jax.make_jaxpr`` shows), in the spirit of micrograd: the forward pass evaluates
every equation and records its value and local partial derivatives; the reverse sweep accumulates
the adjoint ``adjoint[v] = d output / d v`` of every variable, one equation at a time, with
``jax.vjp`` of that single equation (so arrays never need materialised Jacobians):
``adjoint[input] += vjp(equation)(adjoint[output])``. The input adjoints are the gradient, equal
to ``jax.grad``.

To make the table read like the notes, the jaxpr is tidied without changing what it computes:
nested ``jit`` (and ``closed_call``, ``checkpoint``) calls are inlined; identical equations are
merged (common-subexpression elimination); ``convert_element_type`` equations that only change the
weak type are dropped; equations that do not influence the output are dropped. A ``custom_jvp`` or
``custom_vjp`` function (``jax.nn.relu``, ``jax.nn.softplus``'s ``logaddexp``, your own) stays ONE
operation, differentiated with its own rule.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Var

from mlgrad._validation import as_float, check_scalar_output

__all__ = ["BackpropTable", "Row", "backprop_table"]

#: Local Jacobians with at most this many entries are stored; larger ones are noted by shape.
MAX_JACOBIAN_ENTRIES = 64
#: The printed table clips longer operation descriptions (``Row.operation`` keeps them whole).
MAX_OPERATION_WIDTH = 48

# Call-like primitives whose body is inlined, and the parameter that holds the body.
_INLINE_BODY = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
}
# Custom-derivative primitives: shown as one operation, differentiated with their own rule.
_CUSTOM = {"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"}
# Parameters never worth showing in the operation column.
_QUIET_PARAMS = {"accuracy", "out_sharding", "sharding", "preferred_element_type", "out_dtype"}

_INFIX = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "div": "/",
    "pow": "^",
    "gt": ">",
    "ge": ">=",
    "lt": "<",
    "le": "<=",
    "eq": "==",
    "ne": "!=",
}

NOT_FLOAT_OUTPUT = (
    "backprop_table needs a real floating-point scalar output, but the function returned dtype "
    "{dtype}. Return a float, e.g. jnp.asarray(y, dtype=jnp.float32)."
)


class _FrozenDict(Mapping):
    """A read-only mapping (local partials of one variable, keyed by input name)."""

    __slots__ = ("_d",)

    def __init__(self, items: Any = ()) -> None:
        self._d = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return repr(self._d)


class Row(NamedTuple):
    """One variable of the computation: ``name = operation(inputs)``.

    Attributes:
      name: the variable's name (``a``, ``b``, ... for intermediates; the argument's name for
        an input).
      operation: the primitive with its salient parameters, e.g. ``"integer_pow y=2"``, ``"exp"``,
        ``"custom_jvp_call name=relu"``; ``"input"`` for an input.
      inputs: the names of the operation's operands: variable names, constants (``const0``) or
        literal values (``"2.0"``).
      value: the variable's value (an array).
      partials: the local partial derivatives ``d name / d input``, one per distinct
        floating-point variable among ``inputs`` (a read-only mapping keyed by input name). A
        scalar for scalars; for arrays the local Jacobian (shape ``value.shape + input.shape``)
        when it has at most 64 entries, otherwise a ``jax.ShapeDtypeStruct`` noting its shape.
      adjoint: ``d output / d name``, shaped like ``value`` (``None`` for integer or boolean
        variables, which have no derivative).
    """

    name: str
    operation: str
    inputs: tuple[str, ...]
    value: jax.Array
    partials: Mapping[str, Any]
    adjoint: jax.Array | None


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class BackpropTable:
    """The forward and backward pass of a scalar function, one row per intermediate variable.

    Attributes:
      rows: the intermediate variables in forward (evaluation) order; the last one is the output
        (unless the output is an input or a constant).
      inputs: one row per input (per array leaf of each positional argument), operation
        ``"input"``, whose ``adjoint`` is the gradient with respect to it.
      output: the name of the output variable.
      grads: the input adjoints, one per positional argument, shaped like the arguments (pytrees
        included): equal to ``jax.grad(f, argnums=(0, 1, ...))(*args)``.
      formulas: the rows' definitions in the notes' notation, e.g. ``"a = x^2"``, ``"c = a + b"``.
    """

    rows: tuple[Row, ...]
    inputs: tuple[Row, ...]
    output: str
    grads: tuple[Any, ...]
    formulas: tuple[str, ...]

    def __getitem__(self, name: str) -> Row:
        """The row (input or intermediate) of the variable called ``name``."""
        for row in (*self.inputs, *self.rows):
            if row.name == name:
                return row
        raise KeyError(
            f"no variable named {name!r}; the variables are "
            f"{[r.name for r in (*self.inputs, *self.rows)]}"
        )

    def __repr__(self) -> str:
        grads = ", ".join(_short(g) for g in jax.tree_util.tree_leaves(self.grads))
        return (
            f"BackpropTable(inputs={tuple(r.name for r in self.inputs)}, output={self.output!r}, "
            f"rows={tuple(self.formulas)}, grads=({grads}))"
        )

    def __str__(self) -> str:
        return _render(self)

    def edges(self) -> tuple[tuple[str, str, Any], ...]:
        """The graph's edges ``(u, v, dv/du)``: one per variable ``u`` that ``v`` is computed
        from (constants and literals are not variables), in forward order; ``dv/du`` is the
        local partial of ``v.partials`` (``None`` where ``u`` or ``v`` is not a float)."""
        names = {row.name for row in (*self.inputs, *self.rows)}
        out = []
        for row in self.rows:
            for u in dict.fromkeys(row.inputs):
                if u in names:
                    out.append((u, row.name, row.partials.get(u)))
        return tuple(out)

    def to_dot(self) -> str:
        """The computational graph as Graphviz DOT text (``dot -Tsvg`` renders it).

        One node per row of the table (the inputs, then the intermediate variables), labelled
        with its definition, value and adjoint as the printed table shows them; one edge
        ``u -> v`` per :meth:`edges`, labelled with the local partial ``dv/du``. Inputs are
        green, the output orange. ``mlgrad.draw.graph`` draws the same graph without Graphviz.
        """
        out = self.output
        lines = [
            "digraph backprop {",
            "  rankdir=TB;",
            f"  label={_dot_string(f'values (forward) and adjoints ∂{out}/∂v (backward)')};",
            "  labelloc=t;",
        ]
        definitions = dict(zip((r.name for r in self.rows), self.formulas, strict=True))
        for row in (*self.inputs, *self.rows):
            head = f"{row.name} (input)" if row.operation == "input" else definitions[row.name]
            label = f"{head}\nvalue {_short(row.value)}\n∂{out}/∂{row.name} = {_short(row.adjoint)}"
            fill = (
                "#d9f0d3"
                if row.operation == "input"
                else "#fde0c5"
                if row.name == out
                else "#dbe6f4"
            )
            lines.append(
                f"  {_dot_string(row.name)} [label={_dot_string(label)}, shape=box, "
                f'style="rounded,filled", fillcolor="{fill}", fontname="Helvetica"];'
            )
        for u, v, partial in self.edges():
            edge = f"  {_dot_string(u)} -> {_dot_string(v)}"
            if partial is not None:
                edge += f" [label={_dot_string(f'∂{v}/∂{u} = {_short(partial)}')}]"
            lines.append(edge + ";")
        lines.append("}")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def backprop_table(f: Callable[..., Any], *args: Any) -> BackpropTable:
    """Lists every intermediate variable of ``f`` with its value, local partials and adjoint.

    Definition (reverse-mode automatic differentiation with intermediate variables, notes 6.2):
    for each intermediate variable ``v = op(u_1, ..., u_k)`` of the jaxpr of ``f``, record its
    value and its local partial derivatives ``dv/du_i``; then, from the output ``y`` backwards,
    the adjoint ``dy/du = sum over the variables v that use u of dy/dv dv/du``, accumulated with
    one ``jax.vjp`` per equation. The input adjoints are the gradient ``jax.grad(f)``.

    Identical equations are merged, nested ``jit`` is inlined, and a ``custom_jvp``/``custom_vjp``
    function is one operation whose local derivatives come from its own rule. The table inspects
    values, so ``backprop_table`` cannot be called under ``jit`` or ``vmap``.

    Args:
      f: a scalar-valued function of floating-point arrays (or pytrees of them).
      *args: the point: JAX arrays, NumPy arrays or Python numbers (promoted to float); integer
        arrays are rejected.

    Returns:
      A :class:`BackpropTable`: ``rows`` (name, operation, inputs, value, partials, adjoint) in
      forward order, ``inputs``, ``output``, ``grads`` (one per argument, shaped like it) and
      ``formulas``; ``print(table)`` shows the forward pass and the backward equations.

    Raises:
      TypeError: when ``f`` is not scalar-valued (use ``mlgrad.jacobian``) or an argument is an
        integer array.

    Example:
      >>> import jax.numpy as jnp
      >>> def f(x):
      ...     return jnp.sqrt(x**2 + jnp.exp(x**2)) + jnp.cos(x**2 + jnp.exp(x**2))
      >>> t = backprop_table(f, 1.3)
      >>> t.formulas
      ('a = x^2', 'b = exp(a)', 'c = a + b', 'd = sqrt(c)', 'e = cos(c)', 'f = d + e')
      >>> t["c"].partials
      {'a': Array(1., dtype=float32), 'b': Array(1., dtype=float32)}
      >>> print(t)  # doctest: +NORMALIZE_WHITESPACE
      Forward pass (top to bottom) and adjoints ∂f/∂v (computed bottom to top):
      v | operation       | definition  | value    | local partials       | ∂f/∂v
      --+-----------------+-------------+----------+----------------------+----------
      x | input           |             | 1.3      |                      | -9.14487
      a | integer_pow y=2 | a = x^2     | 1.69     | ∂a/∂x = 2.6          | -3.51726
      b | exp             | b = exp(a)  | 5.41948  | ∂b/∂a = 5.41948      | -0.547904
      c | add             | c = a + b   | 7.10948  | ∂c/∂a = 1, ∂c/∂b = 1 | -0.547904
      d | sqrt            | d = sqrt(c) | 2.66636  | ∂d/∂c = 0.187522     | 1
      e | cos             | e = cos(c)  | 0.677605 | ∂e/∂c = -0.735426    | 1
      f | add             | f = d + e   | 3.34397  | ∂f/∂d = 1, ∂f/∂e = 1 | 1
      <BLANKLINE>
      Backward pass (chain rule, from the output back to the inputs):
        ∂f/∂f = 1
        ∂f/∂e = ∂f/∂f·∂f/∂e = 1
        ∂f/∂d = ∂f/∂f·∂f/∂d = 1
        ∂f/∂c = ∂f/∂d·∂d/∂c + ∂f/∂e·∂e/∂c = -0.547904
        ∂f/∂b = ∂f/∂c·∂c/∂b = -0.547904
        ∂f/∂a = ∂f/∂b·∂b/∂a + ∂f/∂c·∂c/∂a = -3.51726
        ∂f/∂x = ∂f/∂a·∂a/∂x = -9.14487
    """
    if not callable(f):
        raise TypeError(f"backprop_table: f must be callable, got {type(f).__name__}.")
    if not args:
        raise TypeError(
            "backprop_table: pass the point to evaluate at, e.g. backprop_table(f, 0.5)."
        )
    args = tuple(as_float(a, f"backprop_table: argument {i}") for i, a in enumerate(args))
    closed, out_shape = jax.make_jaxpr(f, return_shape=True)(*args)
    check_scalar_output(out_shape, "backprop_table")
    if not jnp.issubdtype(out_shape.dtype, jnp.floating):
        raise TypeError(NOT_FLOAT_OUTPUT.format(dtype=out_shape.dtype))

    leaves_per_arg = [jax.tree_util.tree_flatten_with_path(a) for a in args]
    input_names = _input_names(f, args, leaves_per_arg)
    input_values = [leaf for leaves, _ in leaves_per_arg for _, leaf in leaves]

    graph = _Graph.build(closed)
    values, jacobians, adjoints = graph.run(input_values, out_shape.dtype)

    names = _name_variables(graph, input_names)
    inputs = tuple(
        Row(names[v], "input", (), values[v], _FrozenDict(), adjoints[v]) for v in graph.invars
    )
    rows, formulas = [], []
    for i, op in enumerate(graph.ops):
        diff = op.float_var_inputs()
        for k, out in enumerate(op.outvars):
            if out not in names:  # an unused output of a multiple-output operation
                continue
            partials = _FrozenDict(
                (names[u], jacobians.get((i, k, m), _not_stored(out.aval, u.aval)))
                for m, u in enumerate(diff)
                if _is_float(out.aval)
            )
            ins = tuple(graph.atom_name(a, names) for a in op.invars)
            rows.append(Row(names[out], op.describe(), ins, values[out], partials, adjoints[out]))
            index = f"[{k}]" if len(op.outvars) > 1 else ""
            formulas.append(f"{names[out]} = {op.formula(ins)}{index}")

    grads, start = [], 0
    for leaves, treedef in leaves_per_arg:
        adj = [adjoints[v] for v in graph.invars[start : start + len(leaves)]]
        grads.append(jax.tree_util.tree_unflatten(treedef, adj))
        start += len(leaves)
    return BackpropTable(
        rows=tuple(rows),
        inputs=inputs,
        output=graph.atom_name(graph.outvar, names),
        grads=tuple(grads),
        formulas=tuple(formulas),
    )


# --------------------------------------------------------------------------------------------
# The tidied graph: inlined, merged, pruned
# --------------------------------------------------------------------------------------------


def _not_stored(out_aval: Any, in_aval: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((*out_aval.shape, *in_aval.shape), out_aval.dtype)


def _is_float(aval: Any) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


class _Node:
    """A variable of the tidied graph (hashed by identity, like a jaxpr Var)."""

    __slots__ = ("aval",)

    def __init__(self, aval: Any) -> None:
        self.aval = aval


@dataclasses.dataclass
class _Op:
    """One equation of the tidied graph."""

    primitive: Any
    params: dict[str, Any]
    invars: list[Any]  # _Node or Literal (constants are nodes with a known value)
    outvars: list[_Node]
    ctx: Any
    effects: Any
    consts: dict[_Node, Any]  # shared table of constant values
    within: str | None = None  # the jitted function this custom operation is the whole body of

    @property
    def name(self) -> str:
        return self.primitive.name

    def float_var_inputs(self) -> list[_Node]:
        """The distinct floating-point variable operands (the ones with partials)."""
        seen: list[_Node] = []
        for a in self.invars:
            if (
                isinstance(a, _Node)
                and a not in self.consts
                and _is_float(a.aval)
                and a not in seen
            ):
                seen.append(a)
        return seen

    def bind(self, invals: Sequence[Any]) -> list[Any]:
        """Evaluates this single equation on concrete (or traced) operands."""
        bind_params = self.primitive.get_bind_params(self.params)
        subfuns: Sequence[Any] = ()
        if isinstance(bind_params, tuple):  # JAX < 0.9.2 returns (subfuns, params)
            subfuns, bind_params = bind_params
        with self.ctx.manager:
            out = self.primitive.bind(*subfuns, *invals, **bind_params)
        return list(out) if self.primitive.multiple_results else [out]

    def evaluate(self, values: Mapping[_Node, Any]) -> tuple[list[Any], Callable[..., Any] | None]:
        """Evaluates this equation; also returns the VJP of its float outputs with respect to its
        float variable operands (``None`` when there is nothing to differentiate)."""
        diff = self.float_var_inputs()
        float_outs = self.float_outputs()

        def fn(*xs: Any) -> tuple[tuple[Any, ...], list[Any]]:
            env = dict(zip(diff, xs, strict=True))
            invals = [
                (env[a] if a in env else values[a]) if isinstance(a, _Node) else a.val
                for a in self.invars
            ]
            outs = self.bind(invals)
            return tuple(outs[k] for k in float_outs), outs

        primals = [values[u] for u in diff]
        if not diff or not float_outs:
            return fn(*primals)[1], None
        _, vjp_fn, outs = jax.vjp(fn, *primals, has_aux=True)
        return outs, vjp_fn

    def float_outputs(self) -> list[int]:
        """The indices of the floating-point outputs."""
        return [k for k, v in enumerate(self.outvars) if _is_float(v.aval)]

    def describe(self) -> str:
        """Primitive name with its salient parameters, e.g. ``integer_pow y=2``."""
        if self.name in _CUSTOM:
            within = f" (in {self.within})" if self.within else ""
            return f"{self.name} name={_custom_name(self)}{within}"
        parts = [self.name]
        for key, val in self.params.items():
            if key in _QUIET_PARAMS or val is None or callable(val):
                continue
            if isinstance(val, Jaxpr | ClosedJaxpr):
                continue
            parts.append(f"{key}={_compact(val)}")
        return " ".join(parts)

    def formula(self, ins: Sequence[str]) -> str:
        """The notes' notation for this operation applied to ``ins``."""
        p = self.params
        if self.name in _INFIX and len(ins) == 2:
            return f"{ins[0]} {_INFIX[self.name]} {ins[1]}"
        if self.name == "integer_pow":
            return f"{ins[0]}^{p['y']}"
        if self.name == "neg":
            return f"-{ins[0]}"
        if self.name in _CUSTOM:
            return f"{_custom_name(self)}({', '.join(ins)})"
        if self.name == "dot_general":
            (lc, rc), (lb, rb) = p["dimension_numbers"]
            ln = np.ndim(self.invars[0].aval)
            if not lb and not rb and tuple(lc) == (ln - 1,) and tuple(rc) == (0,):
                return f"{ins[0]} @ {ins[1]}"
        if self.name.startswith("reduce_") and "axes" in p:
            what = self.name.removeprefix("reduce_")
            if len(p["axes"]) == np.ndim(self.invars[0].aval):
                return f"{what}({ins[0]})"
            return f"{what}({ins[0]}, axes={_compact(p['axes'])})"
        if self.name == "convert_element_type":
            return f"{np.dtype(p['new_dtype']).name}({ins[0]})"
        return f"{self.name}({', '.join(ins)})"


def _custom_name(op: _Op) -> str:
    jaxpr = op.params.get("call_jaxpr")
    info = getattr(getattr(jaxpr, "jaxpr", jaxpr), "debug_info", None)
    return getattr(info, "func_name", None) or "custom"


def _plain(val: Any) -> Any:
    if isinstance(val, np.generic):
        return val.item()
    if type(val) in (tuple, list):
        return type(val)(_plain(v) for v in val)
    return val


def _compact(val: Any) -> str:
    if isinstance(val, np.dtype):
        return val.name
    return repr(_plain(val)).replace(" ", "")


def _hashable(x: Any) -> Any:
    """A hashable stand-in for a parameter value (raises TypeError when there is none)."""
    if isinstance(x, list | tuple):
        return (type(x).__name__, *(_hashable(v) for v in x))
    if isinstance(x, dict):
        return ("dict", *sorted((k, _hashable(v)) for k, v in x.items()))
    if isinstance(x, np.ndarray):
        return ("nd", x.dtype.str, x.shape, x.tobytes())
    hash(x)
    return x


def _literal_key(lit: Literal) -> Any:
    val = np.asarray(lit.val)
    return ("lit", str(lit.aval), val.dtype.str, val.tobytes())


@dataclasses.dataclass
class _Graph:
    invars: list[_Node]
    consts: dict[_Node, Any]
    ops: list[_Op]
    outvar: Any  # _Node or Literal

    @classmethod
    def build(cls, closed: ClosedJaxpr) -> _Graph:
        consts: dict[_Node, Any] = {}
        ops: list[_Op] = []
        seen: dict[Any, list[_Node]] = {}

        def key_of(a: Any) -> Any:
            return _literal_key(a) if isinstance(a, Literal) else ("var", id(a))

        def walk(jaxpr: Jaxpr, env: dict[Var, Any], within: str | None = None) -> None:
            """Appends the equations of ``jaxpr`` to ``ops``; ``env`` maps its variables to
            nodes (fresh for every inlined copy, since jit reuses one jaxpr for all calls)."""

            def read(a: Any) -> Any:
                return a if isinstance(a, Literal) else env[a]

            for eqn in jaxpr.eqns:
                ins = [read(a) for a in eqn.invars]
                body_param = _INLINE_BODY.get(eqn.primitive.name)
                if body_param is not None and body_param in eqn.params:
                    body = eqn.params[body_param]
                    inner = body.jaxpr if isinstance(body, ClosedJaxpr) else body
                    inner_consts = body.consts if isinstance(body, ClosedJaxpr) else ()
                    inner_env = dict(zip(inner.invars, ins, strict=True))
                    for v, c in zip(inner.constvars, inner_consts, strict=True):
                        inner_env[v] = node = _Node(v.aval)
                        consts[node] = c
                    # A jitted wrapper around one custom function (jax.nn.softplus wraps
                    # logaddexp): remember the wrapper's name for the operation column.
                    only_custom = len(inner.eqns) == 1 and inner.eqns[0].primitive.name in _CUSTOM
                    walk(inner, inner_env, eqn.params.get("name") if only_custom else None)
                    for out, inner_out in zip(eqn.outvars, inner.outvars, strict=True):
                        env[out] = (
                            inner_out if isinstance(inner_out, Literal) else inner_env[inner_out]
                        )
                    continue
                if _is_noop_convert(eqn, ins):
                    env[eqn.outvars[0]] = ins[0]
                    continue
                key = None
                if not eqn.effects:
                    try:
                        key = (eqn.primitive, _hashable(eqn.params), tuple(key_of(a) for a in ins))
                    except TypeError:
                        key = None
                if key is not None and key in seen:  # common-subexpression elimination
                    env.update(zip(eqn.outvars, seen[key], strict=True))
                    continue
                outs = [_Node(v.aval) for v in eqn.outvars]
                env.update(zip(eqn.outvars, outs, strict=True))
                if key is not None:
                    seen[key] = outs
                ops.append(
                    _Op(
                        eqn.primitive,
                        dict(eqn.params),
                        ins,
                        outs,
                        eqn.ctx,
                        eqn.effects,
                        consts,
                        within,
                    )
                )

        top = closed.jaxpr
        invars = [_Node(v.aval) for v in top.invars]
        env: dict[Var, Any] = dict(zip(top.invars, invars, strict=True))
        for v, c in zip(top.constvars, closed.consts, strict=True):
            env[v] = node = _Node(v.aval)
            consts[node] = c
        walk(top, env)
        outvar = top.outvars[0] if isinstance(top.outvars[0], Literal) else env[top.outvars[0]]
        # Dead-code elimination: keep only what the output depends on.
        live = {outvar} if isinstance(outvar, _Node) else set()
        kept = []
        for op in reversed(ops):
            if any(v in live for v in op.outvars):
                kept.append(op)
                live.update(a for a in op.invars if isinstance(a, _Node))
        kept.reverse()
        return cls(invars, consts, kept, outvar)

    def run(
        self, input_values: Sequence[Any], out_dtype: Any
    ) -> tuple[dict[_Node, Any], dict[tuple[int, int, int], Any], dict[_Node, Any]]:
        """Forward pass, local partials and reverse sweep, one equation at a time.

        Returns the value of every variable, the stored local Jacobians keyed by (operation
        index, output index, index among the operation's float variable operands), and the
        adjoint of every float variable (``None`` for the others).
        """
        values: dict[_Node, Any] = dict(self.consts)
        values.update(zip(self.invars, input_values, strict=True))
        vjps: list[Callable[..., Any] | None] = []
        for op in self.ops:
            outs, vjp_fn = op.evaluate(values)
            values.update(zip(op.outvars, outs, strict=True))
            vjps.append(vjp_fn)

        jacobians: dict[tuple[int, int, int], Any] = {}
        for i, (op, vjp_fn) in enumerate(zip(self.ops, vjps, strict=True)):
            if vjp_fn is not None:
                jacobians.update(_local_jacobians(i, op, vjp_fn))

        # The reverse sweep: adjoint[operand] += vjp(equation)(adjoint[output]).
        adjoints: dict[_Node, Any] = {}
        if isinstance(self.outvar, _Node):
            adjoints[self.outvar] = jnp.asarray(np.ones((), out_dtype))
        for op, vjp_fn in zip(reversed(self.ops), reversed(vjps), strict=True):
            float_outs = op.float_outputs()
            cts = [adjoints.get(op.outvars[k]) for k in float_outs]
            if vjp_fn is None or all(ct is None for ct in cts):
                continue
            cts = [
                _zeros(op.outvars[k].aval) if ct is None else ct
                for k, ct in zip(float_outs, cts, strict=True)
            ]
            for u, contribution in zip(op.float_var_inputs(), vjp_fn(tuple(cts)), strict=True):
                adjoints[u] = contribution if u not in adjoints else adjoints[u] + contribution
        variables = [*self.invars, *(v for op in self.ops for v in op.outvars)]
        adjoints = {v: _adjoint(v, adjoints) if _is_float(v.aval) else None for v in variables}
        return values, jacobians, adjoints

    def atom_name(self, a: Any, names: Mapping[_Node, str]) -> str:
        if isinstance(a, Literal):
            text = _number(np.asarray(a.val))
            aval: Any = a.aval  # a ShapedArray (the type checker sees an AbstractValue)
            if jnp.issubdtype(aval.dtype, jnp.floating) and text.lstrip("-").isdigit():
                text += ".0"  # show that the literal is a float: 2.0, not 2
            return text
        return names[a]


def _is_noop_convert(eqn: Any, ins: Sequence[Any]) -> bool:
    """A convert_element_type to the dtype its operand already has (only the weak type changes)."""
    if eqn.primitive.name != "convert_element_type" or eqn.params.get("sharding") is not None:
        return False
    aval = ins[0].aval
    out = eqn.outvars[0].aval
    return aval.dtype == out.dtype and tuple(aval.shape) == tuple(out.shape)


def _zeros(aval: Any) -> jax.Array:
    # Built in NumPy and transferred: no XLA compilation for a constant.
    return jnp.asarray(np.zeros(aval.shape, aval.dtype))


def _adjoint(v: _Node, adjoints: Mapping[_Node, Any]) -> jax.Array:
    return adjoints[v] if v in adjoints else _zeros(v.aval)


def _stored(out_aval: Any, in_aval: Any) -> bool:
    """Whether the local Jacobian d out / d in is small enough to store."""
    return out_aval.size * in_aval.size <= MAX_JACOBIAN_ENTRIES


def _local_jacobians(
    i: int, op: _Op, vjp_fn: Callable[..., Any]
) -> dict[tuple[int, int, int], jax.Array]:
    """The small local Jacobians of one equation, rows pulled back through its VJP."""
    diff = op.float_var_inputs()
    float_outs = op.float_outputs()
    result = {}
    for j, k in enumerate(float_outs):
        out = op.outvars[k].aval
        if not any(_stored(out, u.aval) for u in diff):
            continue

        # One Jacobian row per output entry: the VJP of a one-hot cotangent (a loop rather than
        # vmap, so that it reuses the compiled VJP of the reverse sweep).
        n = out.size
        basis = np.eye(n, dtype=out.dtype).reshape((n, *out.shape))
        rows: list[list[np.ndarray]] = [[] for _ in diff]
        for e in basis:
            cts = [_zeros(op.outvars[kk].aval) for kk in float_outs]
            cts[j] = jnp.asarray(e)
            for m, r in enumerate(vjp_fn(tuple(cts))):
                rows[m].append(np.asarray(r))
        for m, u in enumerate(diff):
            if _stored(out, u.aval):
                jac = np.stack(rows[m]).reshape((*out.shape, *u.aval.shape))
                result[(i, k, m)] = jnp.asarray(jac)
    return result


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def _input_names(
    f: Callable[..., Any], args: Sequence[Any], leaves_per_arg: Sequence[Any]
) -> list[str]:
    """One name per input leaf: the parameter's name (``x``, ``w``) plus the leaf's path."""
    arg_names = _arg_names(f, len(args))
    names = []
    for arg_name, (leaves, _) in zip(arg_names, leaves_per_arg, strict=True):
        for path, _ in leaves:
            names.append(arg_name + jax.tree_util.keystr(path))
    return names


def _arg_names(f: Callable[..., Any], nargs: int) -> list[str]:
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    for p in params:
        if len(names) == nargs:
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            names.extend(f"{p.name}[{i}]" for i in range(nargs - len(names)))
    if len(names) == nargs and len(set(names)) == nargs:
        return names
    return ["x", "y", "z"][:nargs] if nargs <= 3 else [f"x{i}" for i in range(nargs)]


def _letters() -> Iterator[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    for n in itertools.count(1):
        for combo in itertools.product(alphabet, repeat=n):
            yield "".join(combo)


def _name_variables(graph: _Graph, input_names: Sequence[str]) -> dict[_Node, str]:
    names: dict[_Node, str] = dict(zip(graph.invars, input_names, strict=True))
    # Skip the inputs' names and their roots: ``args`` of ``args[0]``, ``p`` of ``p['w']``.
    taken = set(input_names) | {n.split("[", 1)[0] for n in input_names}
    used = {a for op in graph.ops for a in op.invars if isinstance(a, _Node)}
    if isinstance(graph.outvar, _Node):
        used.add(graph.outvar)
    for i, v in enumerate(c for c in graph.consts if c in used):
        names[v] = f"const{i}"
    fresh = (n for n in _letters() if n not in taken)
    for op in graph.ops:
        for v in op.outvars:
            if v in used:
                names[v] = next(fresh)
    return names


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------


def _number(a: np.ndarray) -> str:
    x = a.item()
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, complex):
        return f"{x:.6g}"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _dtype_short(dtype: Any) -> str:
    dt = np.dtype(dtype)
    return "bool" if dt == np.bool_ else f"{dt.kind}{dt.itemsize * 8}"


def _short(v: Any) -> str:
    """A one-line summary of a value: the number for scalars, shape and range for arrays."""
    if v is None:
        return "-"
    if isinstance(v, jax.ShapeDtypeStruct):
        return f"{_dtype_short(v.dtype)}{list(v.shape)} (not stored)"
    a = np.asarray(v)
    if a.ndim == 0:
        return _number(a)
    head = f"{_dtype_short(a.dtype)}{list(a.shape)}"
    if a.size == 0:
        return head
    if a.size <= 4:
        return f"{head} [{', '.join(_number(x) for x in a.ravel())}]"
    if a.dtype == np.bool_:
        return f"{head} {int(a.sum())} true"
    return f"{head} min={_number(a.min())} max={_number(a.max())}"


def _dot_string(text: str) -> str:
    """``text`` as a DOT quoted string: quotes and backslashes escaped, lines as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return [line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in body)]


def _render(t: BackpropTable) -> str:
    out = t.output
    body = []
    for row in t.inputs:
        body.append([row.name, "input", "", _short(row.value), "", _short(row.adjoint)])
    for row, formula in zip(t.rows, t.formulas, strict=True):
        partials = ", ".join(f"∂{row.name}/∂{u} = {_short(p)}" for u, p in row.partials.items())
        body.append(
            [
                row.name,
                _clip(row.operation, MAX_OPERATION_WIDTH),
                formula,
                _short(row.value),
                partials,
                _short(row.adjoint),
            ]
        )
    lines = [f"Forward pass (top to bottom) and adjoints ∂{out}/∂v (computed bottom to top):"]
    lines += _table(["v", "operation", "definition", "value", "local partials", f"∂{out}/∂v"], body)
    lines += ["", "Backward pass (chain rule, from the output back to the inputs):"]
    users: dict[str, list[str]] = {}
    for row in t.rows:
        for u in row.partials:
            users.setdefault(u, []).append(row.name)
    for row in (*reversed(t.rows), *reversed(t.inputs)):
        if row.adjoint is None:
            continue
        if row.name == out:
            lines.append(f"  ∂{out}/∂{out} = 1")
            continue
        terms = " + ".join(f"∂{out}/∂{v}·∂{v}/∂{row.name}" for v in users.get(row.name, []))
        terms = f"{terms} = " if terms else ""
        lines.append(f"  ∂{out}/∂{row.name} = {terms}{_short(row.adjoint)}")
    if any(np.ndim(r.value) for r in (*t.rows, *t.inputs)):
        lines.append("  (for arrays, ∂out/∂v·∂v/∂u is the vector-Jacobian product, via jax.vjp)")
    return "\n".join(lines)
