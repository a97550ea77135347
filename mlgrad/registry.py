"""The model registry: :class:`Model`, and :func:`find_model`, which finds a model by name;
and the built-in run configs, found by name (:func:`find_config`).

A model module defines a ``Config`` dataclass (its typed schema: plain types, a default for
every field, usable as an OmegaConf structured config) and ``build(cfg, data) -> Model``. The
:class:`Model` is a named tuple of pure functions that close over the config and over statistics
of the training split, so nothing hides in globals or in the parameters.

Built-in models (the lecture notes' examples, installed as :mod:`mlgrad.models` so that they
can never collide with a user's own ``models`` package): ``linear_regression``, ``logistic``,
``autoencoder``. A user's own model is any
importable module (``mypkg.mymodel``) or attribute (``mypkg.mymodel:my_model``) that has
``Config`` and ``build``; naming it in a config imports it, which runs that module's code.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.resources
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "BUILTIN_MODELS",
    "Model",
    "ModelConfigError",
    "ModelNotFoundError",
    "builtin_configs",
    "copy_config",
    "find_config",
    "find_model",
]

BUILTIN_MODELS = ("linear_regression", "logistic", "autoencoder")

_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$")


class Model(NamedTuple):
    """A model as pure functions of its parameters (a pytree).

    Attributes:
        init: ``init(key) -> params``, the initial parameters from a PRNG key.
        apply: ``apply(params, x) -> y``, predictions for a batch ``x`` of shape (n, features).
        loss: ``loss(params, batch) -> scalar`` with ``batch = (x, y)``: a mean over the
            examples of the batch plus terms that do not depend on the batch (penalties), as
            the training engine requires for padded mini-batches.
        metrics: ``metrics(params, batch) -> dict`` of scalars; always ``"loss"``, classifiers
            add ``"accuracy"``.
        report: ``report(params) -> dict``, JSON-able extras for a run summary (for example
            coefficients in the data's own units).
        plots: ``plots(params, data, fit_result, out_dir) -> list[Path]``, writes the model's
            PNG figures into ``out_dir`` and returns their paths. ``fit_result`` may be ``None``.
        has_aux: ``loss`` returns ``(loss, aux)``, ``aux`` a dict of scalars (a KL term, an
            accuracy) that ``mlgrad train`` logs every ``train.log_every`` steps as
            ``aux/<name>`` in ``metrics.jsonl`` (``mlgrad.fit(has_aux=True)``).
        with_key: ``loss(params, batch, key)`` gets a fresh PRNG key every step (dropout,
            noise; ``mlgrad.fit(with_key=True)``); ``train.batch_size`` must then divide the
            training examples. The final metrics evaluate the loss with one fixed key.
    """

    init: Callable[[Any], Any]
    apply: Callable[[Any, Any], Any]
    loss: Callable[..., Any]
    metrics: Callable[[Any, Any], dict[str, Any]]
    report: Callable[[Any], dict[str, Any]]
    plots: Callable[[Any, Any, Any, Path], list[Path]]
    has_aux: bool = False
    with_key: bool = False

    def objective(self, params: Any, batch: Any) -> Any:
        """The training loss of ``batch`` as a number: without the aux, with a fixed key
        (``PRNGKey(0)``) when the loss takes one (final metrics, validation)."""
        import jax

        out = (
            self.loss(params, batch, jax.random.PRNGKey(0))
            if self.with_key
            else self.loss(params, batch)
        )
        return out[0] if self.has_aux else out


class ModelConfigError(ValueError):
    """A model's ``build`` rejects its settings or its data.

    Attributes:
        key: the config key at fault, as a run config spells it (``"model.l2"``,
            ``"data.target"``), so that the message can name it; ``"model"`` when no single
            field is to blame.

    Example:
        >>> raise ModelConfigError("l2 must be >= 0; got -1", "model.l2")
        Traceback (most recent call last):
        mlgrad.registry.ModelConfigError: l2 must be >= 0; got -1
    """

    def __init__(self, message: str, key: str = "model") -> None:
        super().__init__(message)
        self.key = key


class ModelNotFoundError(ValueError):
    """No model of that name: the message lists the built-in models and the closest match."""


def _not_found(name: str, why: str) -> ModelNotFoundError:
    match = difflib.get_close_matches(name, BUILTIN_MODELS, n=1, cutoff=0.6)
    hint = f" Did you mean {match[0]!r}?" if match else ""
    return ModelNotFoundError(
        f"unknown model {name!r} ({why}).{hint} Built-in models: {', '.join(BUILTIN_MODELS)}; "
        "or give your own module as 'package.module' (or 'package.module:attribute') that "
        "defines Config and build, importable on the Python path (for a module in the current "
        "directory: PYTHONPATH=.; it imports Model from mlgrad)."
    )


def find_model(name: str) -> Any:
    """Finds a model by short name or import path.

    ``linear_regression`` finds the built-in ``mlgrad.models.linear_regression``; ``mypkg.mymodel``
    imports a user's module, ``mypkg.mymodel:attr`` an attribute of it. Whatever is found must
    have a ``Config`` dataclass and a callable ``build(cfg, data) -> Model``. Importing a user's
    module runs its code, so name only modules you trust.

    Args:
        name: a built-in model name, or a dotted module path with an optional ``:attribute``.

    Returns:
        The module (or attribute) with ``Config`` and ``build``.

    Raises:
        ModelNotFoundError: a ``ValueError`` listing the built-in models and, for a
            misspelling, the closest one; also when what was found lacks ``Config`` or
            ``build``. An import error raised inside an existing user module propagates.

    Example:
        >>> from mlgrad import find_model
        >>> find_model("linear_regression").__name__
        'mlgrad.models.linear_regression'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise _not_found(str(name), "not a model name or a Python import path")
    if name in BUILTIN_MODELS:
        module_name, attr = f"mlgrad.models.{name}", None
    else:
        module_name, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only "the module named is missing" means not found; a missing dependency of an
        # existing module is the user's bug and must surface as it is.
        parts = module_name.split(".")
        if e.name is None or e.name not in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise
        raise _not_found(name, f"no module named {e.name!r}") from None
    for part in (attr or "").split(".") if attr else ():
        if not hasattr(obj, part):
            raise _not_found(name, f"module {module_name!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    missing = [a for a in ("Config", "build") if not hasattr(obj, a)]
    if missing:
        raise _not_found(
            name,
            f"{name!r} has no {' or '.join(missing)}; a model defines a "
            "Config dataclass and build(cfg, data) -> Model",
        )
    if not (isinstance(obj.Config, type) and dataclasses.is_dataclass(obj.Config)):
        raise _not_found(name, f"{name}.Config is not a dataclass")
    if not callable(obj.build):
        raise _not_found(name, f"{name}.build is not callable")
    return obj


# ---------------------------------------------------------------------------------------------
# the built-in configs

CONFIG_SUFFIX = ".yaml"


class ConfigNotFoundError(ValueError):
    """Neither a config file nor a built-in config of that name."""


def _configs_dir() -> Any:
    return importlib.resources.files("mlgrad.configs")


def builtin_configs() -> dict[str, str]:
    """The built-in run configs (shipped inside the package): name -> one-line description
    (the first line of the file's leading comment).

    Example:
        >>> sorted(builtin_configs())[:2]
        ['autoencoder', 'autoencoder_linear']
    """
    found = {}
    for entry in sorted(_configs_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(CONFIG_SUFFIX):
            first = entry.read_text(encoding="utf-8").splitlines()[:1]
            text = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
            found[entry.name[: -len(CONFIG_SUFFIX)]] = text
    return found


def find_config(name_or_path: str | Path) -> Path:
    """The config file meant by ``name_or_path``: the file itself if it exists, else the
    built-in config of that name (``linear_regression`` or ``linear_regression.yaml``). A
    folder named like a built-in config (a run directory, ``--out linear_regression``) does
    not hide the config.

    Raises:
        ConfigNotFoundError: neither, naming both places looked at and ``mlgrad configs``.

    Example:
        >>> find_config("linear_regression").name
        'linear_regression.yaml'
    """
    path = Path(name_or_path).expanduser()
    text = str(name_or_path)
    stem = text[: -len(CONFIG_SUFFIX)] if text.endswith(CONFIG_SUFFIX) else text
    names = builtin_configs()
    if path.exists() and not (path.is_dir() and stem in names):
        return path
    if stem in names:
        return Path(str(_configs_dir() / f"{stem}{CONFIG_SUFFIX}"))
    match = difflib.get_close_matches(stem, list(names), n=1, cutoff=0.6)
    hint = f" Did you mean {match[0]!r}?" if match else ""
    raise ConfigNotFoundError(
        f"config {text!r} not found: there is no file {path.absolute()} and no built-in config "
        f"named {stem!r}.{hint} Built-in configs: {', '.join(names)} (`mlgrad configs` lists "
        "them; `mlgrad configs NAME --copy` writes one out to edit)."
    )


def copy_config(name: str, directory: str | Path = ".") -> Path:
    """Writes the built-in config ``name`` to ``directory/name.yaml`` for editing; never
    overwrites a file.

    Raises:
        ConfigNotFoundError: no built-in config of that name. FileExistsError: the file exists.
    """
    text = str(name)
    stem = text[: -len(CONFIG_SUFFIX)] if text.endswith(CONFIG_SUFFIX) else text
    if stem not in builtin_configs():
        match = difflib.get_close_matches(stem, list(builtin_configs()), n=1, cutoff=0.6)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise ConfigNotFoundError(
            f"no built-in config named {stem!r}.{hint} Built-in configs: "
            f"{', '.join(builtin_configs())}."
        )
    source = (_configs_dir() / f"{stem}{CONFIG_SUFFIX}").read_text(encoding="utf-8")
    target = Path(directory).expanduser() / f"{stem}{CONFIG_SUFFIX}"
    with open(target, "x", encoding="utf-8") as f:
        f.write(source)
    return target
