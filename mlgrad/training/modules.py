"""Models of Flax (NNX and Linen) trained by :func:`mlgrad.fit`; Equinox modules need nothing.

``fit`` trains ``params``, a pytree of float arrays, and carries ``model_state`` (batch
statistics, RNG counters) beside it. A framework's model maps onto the two as follows.

**Equinox**: pass the module itself as ``params``; ``loss_fn(model, batch[, key])``. ``fit``
trains its float arrays and holds every other leaf (activation functions, Python numbers
such as a dropout rate, integer arrays, static fields) fixed, as
``eqx.partition(model, eqx.is_inexact_array)`` splits it (no adapter, and no import of
Equinox): ``result.params`` is the trained module. A model with state
(``eqx.nn.make_with_state``) passes its ``eqx.nn.State`` as ``model_state=``::

    model = eqx.nn.MLP(64, 10, 128, 2, key=jax.random.key(0))
    r = fit(lambda m, b: loss(jax.vmap(m)(b[0]), b[1]), model, (x, y), optimizer=..., steps=...)
    r.params(x[0])  # the trained module

**Flax NNX**: :func:`from_nnx` splits the module as ``nnx.split(model, nnx.Param, ...)``:
the ``nnx.Param`` state is ``params``, every other variable (``nnx.BatchStat``, the RNG keys
and counters of ``nnx.Rngs``) is ``model_state``, carried from step to step, so dropout
masks change at every step and batch statistics accumulate; a resumed run continues them
exactly. The loss takes the module, ``loss_fn(model, batch[, key])``, merged from the
graph and the current state before each call; the variables it changes (statistics,
counters) become the next step's model state::

    parts = from_nnx(model, loss_fn)  # loss_fn(model, batch) -> loss, or (loss, aux)
    r = fit(parts.loss_fn, parts.params, data, model_state=parts.model_state, ...)
    trained = parts.model(r)          # a new nnx.Module (the given one is not changed)

**Flax Linen**: :func:`from_linen` takes ``variables["params"]`` as ``params`` and the other
collections (``batch_stats``) as ``model_state``. The loss gets ``apply``, the model's
``apply_fn`` bound to the current variables with those collections mutable:
``loss_fn(apply, batch[, key])`` calls ``apply(x, train=True, rngs={"dropout": key})``
where it would call ``model.apply(variables, x, ...)``::

    parts = from_linen(model.apply, variables, loss_fn)
    r = fit(parts.loss_fn, parts.params, data, model_state=parts.model_state, with_key=True, ...)
    variables = parts.model(r)        # {"params": ..., "batch_stats": ...}

A model without state (NNX: only ``nnx.Param`` variables; Linen: only ``params``) gets
``model_state=None`` and a stateless ``loss_fn``, so a ragged last batch is allowed as for
any stateless loss. With ``fit(..., with_key=True)`` the step's key is passed on as the
loss's last argument. The adapters' losses compare equal for the same graph (NNX), apply
function (Linen) and ``loss_fn``, so a second ``fit`` (or a resumed one) reuses the
compiled program. Neither Flax nor Equinox is a dependency of mlgrad: nothing here imports
them until a Flax model is given.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

PyTree = Any

__all__ = ["ModuleParts", "from_linen", "from_nnx"]


class ModuleParts(NamedTuple):
    """What :func:`mlgrad.fit` needs to train a framework's model, and the way back.

    Attributes:
      loss_fn: ``fit``'s loss: ``loss_fn(params, model_state, batch[, key]) -> (out,
        new_model_state)``, or ``loss_fn(params, batch[, key]) -> out`` when ``model_state``
        is None (``out`` the user's loss, or ``(loss, aux)`` with ``has_aux``).
      params: the trained variables (pass as ``params``).
      model_state: the other variables (pass as ``model_state=``), or None.
      rebuild: ``rebuild(params, model_state)``, the model (or variables) they make.
    """

    loss_fn: Callable[..., Any]
    params: PyTree
    model_state: PyTree
    rebuild: Callable[[PyTree, PyTree], Any]

    def model(self, trained: Any) -> Any:
        """The model of a :class:`~mlgrad.training.FitResult` or
        :class:`~mlgrad.training.TrainState` (its ``params`` and ``model_state``)."""
        return self.rebuild(trained.params, trained.model_state)


def _nnx() -> Any:
    return importlib.import_module("flax.nnx")


@dataclasses.dataclass(frozen=True)
class _NNXLoss:
    """``fn(model, batch[, key])`` on the module merged from ``graphdef`` and the state."""

    graphdef: Any
    fn: Callable[..., Any]
    wrt: Any
    stateful: bool

    def __call__(self, params: PyTree, *args: Any) -> Any:
        # copy=True: new Variables, made in the trace of the step (its gradient), which the
        # model may then update (NNX refuses to change a Variable of another trace level)
        nnx = _nnx()
        if not self.stateful:
            return self.fn(nnx.merge(self.graphdef, params, copy=True), *args)
        model_state, *rest = args
        model = nnx.merge(self.graphdef, params, model_state, copy=True)
        out = self.fn(model, *rest)
        _, _, new_state = nnx.split(model, self.wrt, ...)
        return out, new_state


def from_nnx(model: Any, loss_fn: Callable[..., Any], *, wrt: Any = None) -> ModuleParts:
    """A Flax NNX module as ``fit``'s params (its ``nnx.Param`` state) and model state
    (every other variable).

    Args:
      model: an ``nnx.Module`` (not changed: ``parts.model(result)`` is a new module).
      loss_fn: ``loss_fn(model, batch) -> loss`` (or ``(loss, aux)`` with ``has_aux``; a
        last ``key`` argument with ``with_key``). It may change the module's other
        variables (``nnx.BatchNorm``'s statistics, ``nnx.Rngs``' counters): their new
        values are the next step's model state.
      wrt: the NNX filter of the trained variables; default ``nnx.Param``.

    Returns:
      :class:`ModuleParts`: train with ``fit(parts.loss_fn, parts.params, data,
      model_state=parts.model_state, ...)``.
    """
    nnx = _nnx()
    if not isinstance(model, nnx.Module):
        raise TypeError(f"from_nnx: model must be a flax.nnx.Module, got {type(model).__name__}.")
    wrt = nnx.Param if wrt is None else wrt
    graphdef, params, rest = nnx.split(model, wrt, ...)
    stateful = len(rest) > 0

    def rebuild(params: PyTree, model_state: PyTree) -> Any:
        states = (params,) if model_state is None else (params, model_state)
        return _nnx().merge(graphdef, *states, copy=True)

    loss = _NNXLoss(graphdef, loss_fn, wrt, stateful)
    return ModuleParts(loss, params, rest if stateful else None, rebuild)


class _Apply:
    """``apply_fn`` bound to the current variables, the model state's collections mutable;
    each call's changes are kept (``state``) for the next call and the next step."""

    def __init__(
        self,
        apply_fn: Callable[..., Any],
        params: PyTree,
        state: dict[str, Any],
        collections: tuple[str, ...],
        name: str,
    ) -> None:
        self._apply_fn, self._params, self.state = apply_fn, params, state
        self._collections, self._name = collections, name

    @property
    def variables(self) -> dict[str, Any]:
        """The current variables (``{"params": ..., **model_state}``), e.g. for a penalty."""
        return {self._name: self._params, **self.state}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._collections or "mutable" in kwargs:
            return self._apply_fn(self.variables, *args, **kwargs)
        out, updates = self._apply_fn(
            self.variables, *args, mutable=list(self._collections), **kwargs
        )
        self.state.update({k: updates[k] for k in self._collections if k in updates})
        return out


@dataclasses.dataclass(frozen=True)
class _LinenLoss:
    """``fn(apply, batch[, key])`` with ``apply`` bound to the params and model state."""

    apply_fn: Callable[..., Any]
    fn: Callable[..., Any]
    collections: tuple[str, ...]
    name: str

    def __call__(self, params: PyTree, *args: Any) -> Any:
        if not self.collections:
            return self.fn(_Apply(self.apply_fn, params, {}, (), self.name), *args)
        model_state, *rest = args
        apply = _Apply(self.apply_fn, params, dict(model_state), self.collections, self.name)
        out = self.fn(apply, *rest)
        return out, {k: apply.state[k] for k in self.collections}


def from_linen(
    apply_fn: Callable[..., Any],
    variables: Mapping[str, Any],
    loss_fn: Callable[..., Any],
    *,
    params: str = "params",
) -> ModuleParts:
    """A Flax Linen model's variables as ``fit``'s params (``variables["params"]``) and model
    state (the other collections, e.g. ``batch_stats``).

    Args:
      apply_fn: the model's ``apply`` (``model.apply``).
      variables: its variables (``model.init(...)``).
      loss_fn: ``loss_fn(apply, batch) -> loss`` (or ``(loss, aux)`` with ``has_aux``; a
        last ``key`` argument with ``with_key``), where ``apply(*args, **kwargs)`` is
        ``apply_fn(variables, *args, mutable=[the model state's collections], **kwargs)``
        with the current variables; it returns the model's output and keeps the updated
        collections (the next step's model state). ``apply.variables`` holds the current
        variables. Pass ``rngs={"dropout": key}`` as with ``apply_fn``.
      params: the name of the trained collection.

    Returns:
      :class:`ModuleParts`: train with ``fit(parts.loss_fn, parts.params, data,
      model_state=parts.model_state, ...)``; ``parts.model(result)`` is the trained
      variables.
    """
    if not isinstance(variables, Mapping) or params not in variables:
        found = list(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise TypeError(
            f"from_linen: variables must be a Linen model's variables (model.init(...)), a "
            f"mapping with a {params!r} collection; got {found}."
        )
    collections = tuple(k for k in variables if k != params)
    model_state = {k: variables[k] for k in collections} if collections else None

    def rebuild(trained: PyTree, model_state: PyTree) -> dict[str, Any]:
        return {params: trained, **(model_state or {})}

    loss = _LinenLoss(apply_fn, loss_fn, collections, params)
    return ModuleParts(loss, variables[params], model_state, rebuild)
