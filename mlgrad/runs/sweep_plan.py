"""A sweep's plan: the ``KEY=V1,V2,...`` axes, every run's config validated, and the runs
grouped by what must be compiled separately (:func:`prepare_sweep`).

Each ``KEY=V1,V2,...`` argument is split on its top-level commas (not inside ``[]``, ``{}``,
``()`` or quotes, so ``data.features=[temp],[temp,price]`` is two values); each value is parsed
exactly like an override of ``mlgrad train`` (YAML). A key with one value is a plain override
of every run. The runs are the Cartesian product of the keys' values in argument order (the
last key varies fastest); run ``i`` is the run ``mlgrad train CONFIG`` would do with run
``i``'s overrides (listed in ``sweep.json``), with the same key convention
(``split(PRNGKey(seed))``: initialisation, then mini-batch order).

Every combination is validated (config, data, model) before anything is trained or written;
a mistake names the key and, with several swept keys, the combination.

Runs that differ only in ``seed`` and ``optimizer.learning_rate`` (a number) form one group,
trained as ONE vmapped, compiled program (:func:`mlgrad.training.sweep.sweep`); any other
swept key (layer sizes, features, the optimizer's name or momentum, the batch size) makes one
group per value, trained one group after the other.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrad.config import is_number
from mlgrad.runs import rundir
from mlgrad.runs.errors import UsageError
from mlgrad.runs.setup import check_optimizer, load_data, mesh_of
from mlgrad.runs.text import lr_text, table_text

SEED, LR = "seed", "optimizer.learning_rate"


def shape_axes(axes: Sequence[Axis]) -> list[Axis]:
    """The axes that change what is compiled: all but the seed and the learning rate."""
    return [a for a in axes if a.key != SEED and not is_lr(a.key)]


def is_lr(key: str) -> bool:
    """Whether ``key`` is a learning rate a sweep injects: ``optimizer.learning_rate``, or an
    optimizer chain's element's (``optimizer.chain.1.learning_rate``)."""
    return key == LR or re.fullmatch(r"optimizer\.chain\.[0-9]+\.learning_rate", key) is not None


def split_values(text: str) -> list[str]:
    """Splits ``text`` on its top-level commas: not inside ``[]``, ``{}``, ``()`` or quotes.

    A quote opens a quoted string only where YAML would (at the start of a value or after
    ``[``, ``{``, ``(``, ``,`` or ``:``), so the apostrophe of ``it's`` is an ordinary
    character. Pieces are stripped of surrounding spaces; nothing is parsed here.

    Args:
        text: the values part of a ``KEY=V1,V2,...`` argument.

    Returns:
        The pieces, at least one (``""`` gives ``[""]``).

    Example:
        >>> split_values("[temp],[temp, price],'a,b'")
        ['[temp]', '[temp, price]', "'a,b'"]
    """
    pieces: list[str] = []
    depth, quote, escaped, start = 0, "", False, 0
    last = ","  # the last non-space character outside quotes
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = ""
                last = ch
            continue
        if ch in "'\"" and last in ",[{(:":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
        if not ch.isspace():
            last = ch
    pieces.append(text[start:].strip())
    return pieces


@dataclasses.dataclass(frozen=True)
class Axis:
    """One ``KEY=V1,V2,...`` argument: the key, each value as written and as parsed."""

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]

    def override(self, i: int) -> str:
        """The ``mlgrad train`` override of value ``i``."""
        return f"{self.key}={self.texts[i]}"


def parse_axes(arguments: Sequence[str]) -> list[Axis]:
    """Parses the ``KEY=V1,V2,...`` arguments (each value as :func:`parse_override` does).

    Raises:
        ConfigError: a malformed argument or value, an empty value among several, a key given
            twice, a value listed twice.

    Example:
        >>> [(a.key, a.values) for a in parse_axes(["seed=0,1", "data.features=[a,b],[c]"])]
        [('seed', (0, 1)), ('data.features', (['a', 'b'], ['c']))]
    """
    from mlgrad.config import ConfigError, parse_override

    axes: list[Axis] = []
    seen: dict[str, str] = {}
    for arg in arguments:
        key, sep, rest = arg.partition("=")
        if not sep:
            parse_override(arg)  # raises: not of the form key=value
        key = parse_override(f"{key}=")[0]  # checks the key
        if key in seen:
            raise ConfigError(
                f"`{key}` is given twice ({seen[key]!r} and {arg!r}); list all its values in "
                f"one argument: {key}=V1,V2,...",
                key,
            )
        seen[key] = arg
        texts = split_values(rest)
        if len(texts) > 1 and "" in texts:
            raise ConfigError(
                f"`{key}`: {arg!r} has an empty value (two commas in a row, or one at an "
                "end); write null for a null value.",
                key,
            )
        values = []
        for text in texts:
            try:
                values.append(parse_override(f"{key}={text}")[1])
            except ConfigError as e:
                raise ConfigError(f"`{key}`: value {text!r} of {arg!r}: {e}", key) from None
        canonical = [json.dumps(v, sort_keys=True, default=str) for v in values]
        dupes = sorted({texts[i] for i, c in enumerate(canonical) if canonical.count(c) > 1})
        if dupes:
            raise ConfigError(f"`{key}` lists the value {dupes[0]} more than once.", key)
        axes.append(Axis(key, tuple(texts), tuple(values)))
    return axes


# ---------------------------------------------------------------------------------------------
# the plan: every run validated, runs grouped by what must be compiled separately


@dataclasses.dataclass
class Run:
    """One run of the sweep: a combination of the axes' values, its validated config."""

    index: int
    texts: dict[str, str]  # the value chosen on each axis, as written
    overrides: list[str]  # the equivalent `mlgrad train CONFIG` overrides
    cfg: Any
    module: Any
    seed: int
    learning_rate: Any  # a number, a schedule mapping, or None (the optimizer's default)
    group: int = -1
    n_train: int = 0  # training examples


@dataclasses.dataclass
class Group:
    """Runs that share one compiled program: they differ only in seed and learning rate."""

    index: int
    runs: list[Run]
    data: Any
    model: Any

    @property
    def cfg(self) -> Any:
        return self.runs[0].cfg


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _group_key(cfg: Any) -> str:
    """The config less what one program sweeps: the seed and a numeric learning rate."""
    from mlgrad.config import learning_rate, learning_rate_key

    tree = _plain(cfg)
    tree.pop("seed", None)
    if is_number(learning_rate(tree["optimizer"])):
        *path, last = learning_rate_key(tree["optimizer"]).split(".")
        node = tree["optimizer"]
        for part in path:
            node = node[int(part)] if part.isdigit() else node[part]
        node.pop(last)
    return json.dumps(tree, sort_keys=True, default=str)


def plan(config: Path, axes: Sequence[Axis]) -> tuple[list[Run], list[Group]]:
    """Validates every combination (config, optimizer, data, model) and groups the runs.

    Data is loaded once per distinct ``data`` section and each group's model is built once
    (its functions are static arguments of the compiled program).

    Raises:
        ConfigError, DataError: the first bad combination, naming the key (and, with several
            swept keys, the combination).
    """
    from mlgrad.config import ConfigError, build_model, build_optimizer, learning_rate, load_config
    from mlgrad.data import DataError

    swept = [a for a in axes if len(a.values) > 1]
    combos = list(itertools.product(*(range(len(a.values)) for a in axes)))
    runs: list[Run] = []
    for index, choice in enumerate(combos):
        texts = {a.key: a.texts[i] for a, i in zip(axes, choice, strict=True)}
        overrides = [f"{k}={v}" for k, v in texts.items()]
        try:
            cfg, module = load_config(config, overrides)
            build_optimizer(cfg.optimizer, steps=cfg.train.steps)  # optax's own checks
            mesh_of(cfg)  # train.devices against the devices JAX sees
        except ConfigError as e:
            raise _in_run(e, texts, swept) from None
        lr = learning_rate(cfg.optimizer)
        runs.append(Run(index, texts, overrides, cfg, module, int(cfg.seed), lr))

    datasets: dict[str, Any] = {}
    groups: dict[str, Group] = {}
    for run in runs:
        data_key = json.dumps(_plain(run.cfg.data), sort_keys=True)
        key = _group_key(run.cfg)
        try:
            if data_key not in datasets:
                datasets[data_key] = load_data(run.cfg)
            if key not in groups:
                model = build_model(run.cfg, run.module, datasets[data_key])
                groups[key] = Group(len(groups), [], datasets[data_key], model)
            optimizer = build_optimizer(
                run.cfg.optimizer, steps=run.cfg.train.steps, dtype=run.cfg.train.dtype
            )
            check_optimizer(run.cfg, groups[key].model, optimizer)
        except (ConfigError, DataError) as e:
            raise _in_run(e, run.texts, swept) from None
        run.group = groups[key].index
        run.n_train = len(datasets[data_key].x_train)
        groups[key].runs.append(run)
    return runs, list(groups.values())


def _in_run(e: Exception, texts: dict[str, str], swept: Sequence[Axis]) -> Exception:
    """The error, naming the combination when several keys are swept."""
    if len(swept) < 2:
        return e
    where = " ".join(f"{a.key}={texts[a.key]}" for a in swept)
    return type(e)(f"in the sweep's run with {where}: {e}")


def _base_config(config: Path, axes: Sequence[Axis], runs: Sequence[Run]) -> Any:
    """CONFIG with the single-valued overrides (run 0's config if that alone is invalid)."""
    from mlgrad.config import ConfigError, load_config

    try:
        return load_config(config, [a.override(0) for a in axes if len(a.values) == 1])[0]
    except ConfigError:
        return runs[0].cfg


@dataclasses.dataclass
class SweepPlan:
    """A sweep validated and ready to train (:func:`prepare_sweep`); nothing written yet.

    Attributes:
        config: the base config file.
        arguments: the ``KEY=V1,V2,...`` arguments as given.
        axes: those arguments parsed.
        runs: every run, in order, each with its validated config.
        groups: the runs grouped by compiled program.
        base: the base config (CONFIG with the single-valued overrides).
        run_dir: the directory it will write (new or empty; resuming, an interrupted sweep's).
        default_dir: whether ``run_dir`` is a default name (it may move on to a free one).
        resume: whether it continues the interrupted sweep in ``run_dir``.
    """

    config: Path
    arguments: list[str]
    axes: list[Axis]
    runs: list[Run]
    groups: list[Group]
    base: Any
    run_dir: Path
    default_dir: bool
    resume: bool = False

    @property
    def swept(self) -> list[Axis]:
        """The axes with more than one value."""
        return [a for a in self.axes if len(a.values) > 1]

    def table(self) -> str:
        """The runs and their groups as a text table (``mlgrad sweep --dry-run``)."""
        rows = []
        for run in self.runs:
            row: dict[str, Any] = {"run": run.index}
            row.update({a.key: run.texts[a.key] for a in shape_axes(self.swept)})
            row.update(seed=run.seed, learning_rate=lr_text(run.learning_rate), group=run.group)
            rows.append(row)
        n = len(self.groups)
        return table_text(rows, None) + (
            f"{len(self.runs)} runs in {n} group{'s' if n != 1 else ''} "
            "(one compiled program each, trained one after the other)\n"
        )


def prepare_sweep(
    config: str | Path,
    arguments: Sequence[str],
    workdir: str | Path | None = None,
    *,
    resume: bool = False,
) -> SweepPlan:
    """Parses the ``KEY=V1,V2,...`` arguments, validates every run and the run directory
    (``runs/<name>-sweep-<UTC timestamp>`` by default; else it must be new or empty, or with
    ``resume`` hold the interrupted sweep to continue, which :func:`train_sweep` checks
    under the directory's lock). Writes nothing.

    Raises:
        ConfigError, DataError: the first bad combination. UsageError: the run directory.

    Example:
        >>> plan = prepare_sweep("configs/linear_regression.yaml", ["seed=0,1"])
        >>> len(plan.runs), len(plan.groups)
        (2, 1)
    """
    config = Path(config)
    axes = parse_axes(arguments)
    runs, groups = plan(config, axes)
    base = _base_config(config, axes, runs)
    if resume and workdir is None:
        raise UsageError("--resume needs --out DIR, the directory of the interrupted sweep.")
    run_dir = Path(workdir) if workdir is not None else rundir.default_run_dir(f"{base.name}-sweep")
    if resume:
        if not run_dir.is_dir():
            raise UsageError(f"--resume: {run_dir} does not exist; there is no sweep to resume.")
    else:
        rundir.check_can_create(run_dir)
        rundir.check_empty(
            run_dir,
            advice="Pass --resume to continue an interrupted sweep in it, or choose another --out.",
        )
    return SweepPlan(
        config, list(arguments), axes, runs, groups, base, run_dir, workdir is None, resume
    )
