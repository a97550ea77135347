"""Data sets for training: the built-in examples and a user's own CSV or NPZ file.

:func:`load` returns a :class:`Dataset`: training arrays, an optional validation split, the
feature and target names, and a human-readable description of where the data came from.

Built-in data sets (nothing is downloaded):

* ``ice_cream``: US ice-cream consumption, 30 four-week periods 1951-1953 (ships with mlgrad).
  Columns ``period``, ``cons``, ``income``, ``price``, ``temp``; default target ``cons`` from
  feature ``temp``.
* ``breast_cancer``: scikit-learn's bundled Wisconsin diagnostic breast-cancer data (569 x 30);
  target ``benign`` (1 = benign, 0 = malignant, scikit-learn's coding).
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 x 64), pixels scaled to [0, 1].
  The target is the image itself (``pixels``, so ``y = x``), as an autoencoder needs.

A bad file raises :class:`DataError` (a ``ValueError``) whose message names the file and the
problem, and whose ``key`` names the argument of :func:`load` at fault. Files are parsed without
pickle: CSV with the standard library, NPZ with ``numpy.load(allow_pickle=False)``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import difflib
import io
import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BUILTIN_DATASETS", "DataError", "Dataset", "load"]

BUILTIN_DATASETS = ("ice_cream", "breast_cancer", "digits")

ICE_CREAM_LABELS = {
    "period": "four-week period (1 = 18 March 1951)",
    "cons": "ice-cream consumption (pints per head)",
    "income": "average weekly family income (US dollars)",
    "price": "price of ice cream (US dollars per pint)",
    "temp": "mean temperature (°F)",
}


class DataError(ValueError):
    """A data set could not be loaded: the message names the file (or data set) and the problem.

    Args:
        message: what went wrong; ``str(error)`` is exactly this message.
        key: the name of :func:`load`'s argument the problem is about.

    Attributes:
        key: the name of :func:`load`'s argument the problem is about: one of ``"name"``,
            ``"path"``, ``"features"``, ``"target"``, ``"val_split"``, ``"split_seed"``,
            ``"dtype"``, or ``None`` when no single argument is to blame (e.g. both or neither
            of ``name`` and ``path`` given, or a :class:`Dataset` built with inconsistent
            arrays). Problems with the data itself (bad cells, too few rows, ...) are about
            ``"path"`` for a file and ``"name"`` for a built-in data set.

    Example:
        >>> e = DataError("d.csv: the file is empty", "path")
        >>> str(e), e.key
        ('d.csv: the file is empty', 'path')
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _closest(word: str, options: Sequence[str]) -> str:
    """Returns "; did you mean 'x'?" for the closest option, or "" when none is close."""
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


#: Messages list at most this many column names (a file may have 100,000 columns).
_LISTED = 20


def _listing(names: Sequence[str]) -> str:
    """Column names for a message, comma-separated; the first few of a long list."""
    if len(names) <= _LISTED:
        return ", ".join(names)
    return f"{', '.join(names[:_LISTED])}, ... ({len(names)} in all)"


def _duplicates(names: Sequence[str]) -> list[str]:
    """The names that occur more than once, sorted (linear time)."""
    return sorted(n for n, k in collections.Counter(names).items() if k > 1)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Training arrays, an optional validation split, and what the columns mean.

    Args:
        x_train: features of the training split, shape ``(n_train, n_features)``.
        y_train: targets of the training split, shape ``(n_train,)`` or ``(n_train, k)``.
        x_val: features of the validation split, or ``None`` without a split.
        y_val: targets of the validation split, or ``None`` without a split.
        feature_names: one name per column of ``x``.
        target_name: the name of the target.
        source: human-readable provenance (data set or file, and the split).
        labels: axis labels with units for columns whose meaning is known, e.g.
            ``{"temp": "mean temperature (°F)"}``; see :meth:`label`. A key
            ``"<target>=<class>"`` names a class of a 0/1 target (``"benign=0"``:
            ``"malignant"``).

    Example:
        >>> from mlgrad.data import load
        >>> data = load("ice_cream")
        >>> data.x_train.shape, data.feature_names, data.target_name
        ((30, 1), ('temp',), 'cons')
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    feature_names: tuple[str, ...]
    target_name: str
    source: str
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "labels", dict(self.labels))
        if np.ndim(self.x_train) != 2:
            raise DataError(
                f"x_train must be 2-D (examples, features); got shape {np.shape(self.x_train)}"
            )
        if len(self.feature_names) != self.x_train.shape[1]:
            raise DataError(
                f"{len(self.feature_names)} feature names for "
                f"{self.x_train.shape[1]} feature columns"
            )
        if len(self.y_train) != len(self.x_train):
            raise DataError(
                f"x_train has {len(self.x_train)} rows but y_train has {len(self.y_train)}"
            )
        if (self.x_val is None) != (self.y_val is None):
            raise DataError("x_val and y_val must both be given or both be None")
        if self.x_val is not None and self.y_val is not None:
            if np.shape(self.x_val)[1:] != self.x_train.shape[1:]:
                raise DataError(
                    f"x_val has shape {np.shape(self.x_val)} but x_train has {self.x_train.shape}"
                )
            if len(self.y_val) != len(self.x_val):
                raise DataError(f"x_val has {len(self.x_val)} rows but y_val has {len(self.y_val)}")

    @property
    def n_features(self) -> int:
        """The number of feature columns."""
        return self.x_train.shape[1]

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """The training batch ``(x_train, y_train)``."""
        return self.x_train, self.y_train

    @property
    def val(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The validation batch ``(x_val, y_val)``, or ``None`` without a split."""
        return None if self.x_val is None or self.y_val is None else (self.x_val, self.y_val)

    def label(self, column: str) -> str:
        """An axis label for a column: its known meaning with units, else its name."""
        return self.labels.get(column, column)

    def __repr__(self) -> str:
        val = "no validation split" if self.x_val is None else f"x_val {self.x_val.shape}"
        return (
            f"Dataset(x_train {self.x_train.shape}, y_train {self.y_train.shape}, {val}, "
            f"{self.x_train.dtype}, target {self.target_name!r}, source {self.source!r})"
        )


# ---------------------------------------------------------------------------------------------
# argument checks


def _as_names(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    try:
        names = list(value)
    except TypeError:
        raise DataError(f"{what} must be a list of column names; got {value!r}", what) from None
    if not names:
        raise DataError(
            f"{what} is an empty list; give at least one column name or leave it "
            "unset for the default",
            what,
        )
    for n in names:
        if not isinstance(n, str):
            raise DataError(f"{what} must be column names (strings); got {n!r}", what)
    dupes = _duplicates(names)
    if dupes:
        raise DataError(f"{what} lists {_listing(list(map(repr, dupes)))} more than once", what)
    return names


def _check_split(val_split: Any, split_seed: Any) -> tuple[float, int]:
    if isinstance(val_split, bool) or not isinstance(val_split, int | float | np.number):
        raise DataError(f"val_split must be a number in [0, 1); got {val_split!r}", "val_split")
    val_split = float(val_split)
    if not 0.0 <= val_split < 1.0:
        raise DataError(
            f"val_split must be in [0, 1) (the fraction of rows held out for "
            f"validation); got {val_split}",
            "val_split",
        )
    if isinstance(split_seed, bool) or not isinstance(split_seed, int | np.integer):
        raise DataError(f"split_seed must be an integer; got {split_seed!r}", "split_seed")
    if not 0 <= int(split_seed) < 2**32:
        raise DataError(f"split_seed must be in [0, 2**32); got {split_seed}", "split_seed")
    return val_split, int(split_seed)


# ---------------------------------------------------------------------------------------------
# column selection


def _pick(
    where: str,
    columns: Sequence[str],
    features: list[str] | None,
    target: str | None,
    default_features: list[str] | None,
    default_target: str | None,
    *,
    data_key: str,
) -> tuple[list[str], str]:
    """Chooses the feature columns and the target column, with clear errors.

    ``data_key`` is the :attr:`DataError.key` for a problem with the data itself: ``"path"``
    for a file, ``"name"`` for a built-in data set.
    """
    available = _listing(columns)
    known = set(columns)

    def check(name: str, what: str) -> None:
        if name not in known:
            raise DataError(
                f"{where}: {what} column {name!r} not found; available columns: "
                f"{available}{_closest(name, columns)}",
                "target" if what == "target" else "features",
            )

    if target is None:
        target = default_target
        if target is None:
            raise DataError(
                f"{where}: no target column given; pass target=... (data.target in "
                f"a config) naming one of: {available}",
                "target",
            )
    check(target, "target")
    if features is None:
        features = default_features
        if features is None:
            features = [c for c in columns if c != target]
            if not features:
                raise DataError(
                    f"{where}: the only column is the target {target!r}; there is "
                    "no feature column left",
                    data_key,
                )
    for f in features:
        check(f, "feature")
    if target in features:
        raise DataError(
            f"{where}: column {target!r} is both a feature and the target; remove "
            "it from the features",
            "features",
        )
    return features, target


# ---------------------------------------------------------------------------------------------
# CSV


def _parse_csv(
    text: str,
    where: str,
    features: list[str] | None,
    target: str | None,
    default_features: list[str] | None = None,
    default_target: str | None = None,
    *,
    data_key: str,
) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Parses CSV text with a header row; converts only the selected columns to numbers.

    ``data_key`` is the :attr:`DataError.key` for a problem with the text itself: ``"path"``
    for a file, ``"name"`` for a built-in data set.
    """
    if not text.strip():
        raise DataError(
            f"{where}: the file is empty (expected a header row and data rows)", data_key
        )
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        while not any(c.strip() for c in header):
            header = next(reader)
    except StopIteration:
        raise DataError(f"{where}: the file is empty", data_key) from None
    except csv.Error as e:
        raise DataError(f"{where}: malformed CSV header ({e})", data_key) from None
    header = [c.strip() for c in header]
    for j, c in enumerate(header):
        if not c:
            raise DataError(f"{where}: column {j + 1} of the header row has no name", data_key)
    dupes = _duplicates(header)
    if dupes:
        raise DataError(
            f"{where}: the header names column {_listing(list(map(repr, dupes)))} more than once",
            data_key,
        )
    features, target = _pick(
        where, header, features, target, default_features, default_target, data_key=data_key
    )
    wanted = [*features, target]
    position = {c: j for j, c in enumerate(header)}
    index = [position[c] for c in wanted]
    values: list[list[float]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue  # blank line
            line = reader.line_num
            if len(row) != len(header):
                raise DataError(
                    f"{where}: line {line} has {len(row)} cells but the header has "
                    f"{len(header)} columns ({_listing(header)})",
                    data_key,
                )
            out = []
            for j, name in zip(index, wanted, strict=True):
                cell = row[j].strip()
                if not cell:
                    raise DataError(
                        f"{where}: empty cell in column {name!r} at line {line}", data_key
                    )
                try:
                    out.append(float(cell))
                except ValueError:
                    raise DataError(
                        f"{where}: non-numeric value {cell!r} in column {name!r} at line {line}",
                        data_key,
                    ) from None
            values.append(out)
            lines.append(line)
    except csv.Error as e:
        raise DataError(
            f"{where}: malformed CSV at line {reader.line_num} ({e})", data_key
        ) from None
    if not values:
        raise DataError(f"{where}: the file has a header but no data rows", data_key)
    table = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(table)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(
            f"{where}: non-finite value {table[i, j]} in column {wanted[j]!r} at "
            f"line {lines[i]} ({int(bad.sum())} non-finite value(s) in all); remove "
            "or fill in those rows",
            data_key,
        )
    return table[:, :-1], table[:, -1], features, target


def _read_bytes(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{where}: cannot read the file ({e.strerror or e})", "path") from None


def _read_text(path: Path, where: str) -> str:
    data = _read_bytes(path, where)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{where}: not a UTF-8 text file (byte {e.start}: {e.reason}); save the CSV as UTF-8",
            "path",
        ) from None


# ---------------------------------------------------------------------------------------------
# NPZ


#: How a .npy member and a zip archive (an NPZ) begin.
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

_NUMERIC_ONLY = "save numeric arrays only, e.g. numpy.savez(path, x=x.astype(float), y=y)"


def _declared_size(npz: Any, name: str) -> tuple[tuple[int, ...], np.dtype, int, int] | None:
    """What the .npy header of member ``name`` declares: ``(shape, dtype, bytes of data,
    bytes the member holds after its header)``; None when there is no readable .npy header
    (numpy then says what is wrong)."""
    try:
        member = name if name in npz.zip.namelist() else f"{name}.npy"
        held = npz.zip.getinfo(member).file_size
        with npz.zip.open(member) as f:
            version = np.lib.format.read_magic(f)
            read = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read is None:
                return None
            shape, _, dtype = read(f)
            held -= f.tell()
    except Exception:  # any damage: numpy's own read below reports it
        return None
    if dtype.hasobject:
        return None
    return tuple(shape), dtype, math.prod(shape) * dtype.itemsize, held


def _npz_array(npz: Any, name: str, where: str) -> np.ndarray:
    """Member ``name`` of an NPZ archive: a numeric .npy array, or a DataError naming the file
    and the member. Never unpickles: numpy.load(allow_pickle=False) refuses object arrays. A
    header that declares more data than the member holds is refused before numpy allocates
    the array."""
    declared = _declared_size(npz, name)
    if declared is not None and declared[2] > declared[3]:
        shape, dtype, needed, held = declared
        raise DataError(
            f"{where}: array {name!r} is damaged: its header declares shape {shape} of {dtype} "
            f"({needed} bytes) but the archive holds {held} bytes of it; write the file again "
            "with numpy.savez",
            "path",
        )
    try:
        a = npz[name]
    except ValueError as e:
        if "allow_pickle" in str(e) or "bject arrays" in str(e):
            raise DataError(
                f"{where}: array {name!r} holds pickled Python objects (dtype object), not "
                f"numbers, and mlgrad never unpickles data; {_NUMERIC_ONLY}",
                "path",
            ) from None
        raise DataError(
            f"{where}: array {name!r} is damaged or not a .npy array ({_reason(e)}); "
            f"{_NUMERIC_ONLY}",
            "path",
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError) as e:
        raise DataError(
            f"{where}: array {name!r} is damaged ({_reason(e)}); write the file again with "
            "numpy.savez",
            "path",
        ) from None
    except MemoryError:
        raise DataError(
            f"{where}: array {name!r} does not fit in memory; use a smaller data set", "path"
        ) from None
    if not isinstance(a, np.ndarray):  # a member that is not a .npy file: numpy gives bytes
        raise DataError(
            f"{where}: member {name!r} of the archive is not a .npy array; {_NUMERIC_ONLY}",
            "path",
        )
    if a.dtype.kind not in "biuf":
        raise DataError(
            f"{where}: array {name!r} has dtype {a.dtype}; expected numbers (bool, integer or "
            f"float); {_NUMERIC_ONLY}",
            "path",
        )
    return a


def _reason(e: BaseException) -> str:
    """An exception's text for a message, without numpy's advice to unpickle."""
    text = " ".join(str(e).split()) or type(e).__name__
    if "pickle" in text.lower():
        return "its header does not describe a numeric array"
    return text if len(text) <= 200 else text[:197] + "..."


def _load_npz(
    path: Path, where: str, features: list[str] | None, target: str | None
) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    # Read the bytes first: np.load(path) leaks its open file when the archive is damaged.
    data = _read_bytes(path, where)
    if data.startswith(_NPY_MAGIC):
        raise DataError(
            f"{where}: holds a single .npy array, not an NPZ archive; save with "
            "numpy.savez(path, x=..., y=...)",
            "path",
        )
    if not data.startswith(_ZIP_MAGIC):
        raise DataError(
            f"{where}: not a valid NPZ file (an NPZ file is a zip archive of .npy arrays, "
            f"as numpy.savez(path, x=..., y=...) writes; this one starts with bytes "
            f"{data[:8].hex(' ')}); save the data again with numpy.savez, or as a CSV file",
            "path",
        )
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError) as e:
        raise DataError(
            f"{where}: not a valid NPZ file ({_reason(e)}); save the data again with "
            "numpy.savez(path, x=..., y=...)",
            "path",
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # pragma: no cover - caught by the magic
        raise DataError(f"{where}: not an NPZ archive; save with numpy.savez", "path")
    with npz:
        names = list(npz.files)
        if not names:
            raise DataError(f"{where}: the NPZ archive holds no arrays", "path")
        if features is None and "x" in names:
            if target is None and "y" not in names:
                raise DataError(
                    f"{where}: has an array 'x' but no 'y'; pass target=... (data."
                    f"target in a config) naming one of: {_listing(names)}",
                    "target",
                )
            target = "y" if target is None else target
            _pick(where, names, ["x"], target, None, None, data_key="path")
            x = _npz_array(npz, "x", where)
            if x.ndim == 1:
                x, feature_names = x[:, None], ["x"]
            elif x.ndim == 2:
                feature_names = [f"x[{j}]" for j in range(x.shape[1])]
            else:
                raise DataError(
                    f"{where}: array 'x' has shape {x.shape}; expected (examples,) "
                    "or (examples, features)",
                    "path",
                )
            columns, array_names = [x], ["x"]
        else:
            default_target = "y" if "y" in names else None
            feature_names, target = _pick(
                where, names, features, target, None, default_target, data_key="path"
            )
            columns, expanded, array_names = [], [], list(feature_names)
            for name in feature_names:
                a = _npz_array(npz, name, where)
                if a.ndim == 1:
                    columns.append(a[:, None])
                    expanded.append(name)
                elif a.ndim == 2:
                    columns.append(a)
                    expanded += [f"{name}[{j}]" for j in range(a.shape[1])]
                else:
                    raise DataError(
                        f"{where}: feature array {name!r} has shape {a.shape}; "
                        "expected (examples,) or (examples, k)",
                        "path",
                    )
            feature_names = expanded
        y = _npz_array(npz, target, where)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise DataError(
            f"{where}: target array {target!r} has shape {y.shape}; expected "
            "(examples,) or (examples, k)",
            "path",
        )
    lengths = {len(c) for c in columns} | {len(y)}
    if len(lengths) > 1:
        counts = ", ".join(
            f"{n!r}: {len(c)}" for n, c in zip([*array_names, target], [*columns, y], strict=True)
        )
        raise DataError(
            f"{where}: arrays have different numbers of rows ({counts}); every "
            "feature and the target need one row per example",
            "path",
        )
    x = np.concatenate([c.astype(np.float64) for c in columns], axis=1)
    y = y.astype(np.float64)
    for name, arr in (("features", x), ("target", y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            col = feature_names[idx[1]] if name == "features" else target
            raise DataError(
                f"{where}: non-finite value {arr[idx]} in {col!r} at row {idx[0]} "
                f"({int(bad.sum())} non-finite value(s) in the {name}); remove or "
                "fill in those rows",
                "path",
            )
    return x, y, feature_names, target


# ---------------------------------------------------------------------------------------------
# built-ins


def _ice_cream(features: list[str] | None, target: str | None):
    text = resources.files("mlgrad.datasets").joinpath("ice_cream.csv").read_text("utf-8")
    where = "built-in data set 'ice_cream' (mlgrad/datasets/ice_cream.csv)"
    x, y, f, t = _parse_csv(text, where, features, target, ["temp"], "cons", data_key="name")
    source = (
        "ice_cream: US ice-cream consumption per head, 30 four-week periods 1951-1953 "
        "(Hildreth and Lu 1960; Kadiyala 1970), shipped as mlgrad/datasets/ice_cream.csv"
    )
    return x, y, f, t, source, ICE_CREAM_LABELS


def _breast_cancer(features: list[str] | None, target: str | None):
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    columns = [str(c) for c in bunch.feature_names]
    where = "built-in data set 'breast_cancer'"
    features, target = _pick(
        where, [*columns, "benign"], features, target, columns, "benign", data_key="name"
    )
    x = bunch.data[:, [columns.index(f) for f in features]]
    source = (
        "breast_cancer: Wisconsin diagnostic breast-cancer data (569 x 30) from "
        "scikit-learn's bundled load_breast_cancer; target 1 = benign, 0 = malignant"
    )
    # "<target>=<class>" names a class of a 0/1 target (what plots call it)
    labels = {"benign": "class (1 = benign, 0 = malignant)", "benign=0": "malignant"}
    labels["benign=1"] = "benign"
    return x, bunch.target.astype(np.float64), features, target, source, labels


def _digits(features: list[str] | None, target: str | None):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    columns = [str(c) for c in bunch.feature_names]
    where = "built-in data set 'digits'"
    if target is not None and target != "pixels":
        raise DataError(
            f"{where}: the target is the image itself, 'pixels' (y = x, for an "
            f"autoencoder); got target {target!r}",
            "target",
        )
    features, _ = _pick(
        where, [*columns, "pixels"], features, "pixels", columns, "pixels", data_key="name"
    )
    x = bunch.data[:, [columns.index(f) for f in features]] / 16.0
    source = (
        "digits: 8x8 handwritten digits (1797 x 64) from scikit-learn's bundled "
        "load_digits, pixel intensities divided by 16 to lie in [0, 1]; target = the "
        "image itself"
    )
    labels = {"pixels": "pixel intensity (0 = white, 1 = black)"}
    return x, x, features, "pixels", source, labels


_BUILTINS = {"ice_cream": _ice_cream, "breast_cancer": _breast_cancer, "digits": _digits}


# ---------------------------------------------------------------------------------------------
# the public loader


def _split(n: int, val_split: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices, as sklearn's train_test_split(shuffle=True) draws them.

    ``ceil(val_split * n)`` is at least 1 for ``val_split > 0``, so only the training side can
    come out empty.
    """
    n_val = math.ceil(val_split * n)
    n_train = n - n_val
    if n_train == 0:
        raise DataError(
            f"{where}: val_split={val_split} of {n} rows leaves no training row; "
            "use a smaller val_split",
            "val_split",
        )
    perm = np.random.RandomState(seed).permutation(n)
    return perm[n_val:], perm[:n_val]


def _expand(path: Any) -> Path:
    """``path`` as a Path with ``~`` and ``~user`` expanded; a DataError (key ``path``) when it
    is not a path, is empty, or names a user without a home directory."""
    if not isinstance(path, str | os.PathLike):
        raise DataError(f"path must be a file name (a string); got {path!r}", "path")
    if not str(path).strip():
        raise DataError("path is empty; give the CSV or NPZ file to read", "path")
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~nosuchuser, or ~ without a home directory
        user = str(path).split("/", 1)[0].split(os.sep, 1)[0]
        who = f"there is no user {user[1:]!r}" if len(user) > 1 else "$HOME is not set"
        raise DataError(
            f"{path}: file not found: {user!r} has no home directory ({who}); check the "
            "spelling or give the full path",
            "path",
        ) from None


def check_source(
    name: Any = None,
    path: str | Path | None = None,
    features: Any = None,
    *,
    base: str | Path | None = None,
    label: Callable[[str], str] = lambda arg: f"{arg}=",
) -> Path | None:
    """Checks where a data set comes from, without reading it: exactly one of a known
    built-in ``name`` and an existing ``.csv``/``.npz`` ``path``, and the ``features`` list.

    Args:
        name, path, features: as for :func:`load`.
        base: the directory a relative ``path`` is resolved against (default: the current
            directory).
        label: how messages name an argument (``name=`` here; a config says ``data.name``).

    Returns:
        The absolute path of the file, or None for a built-in data set.

    Raises:
        DataError: with ``key`` the argument at fault.

    Example:
        >>> check_source("ice_cream") is None
        True
    """
    _as_names(features, "features")
    if (name is None) == (path is None):
        both = "both are set" if name is not None else "neither is set"
        raise DataError(
            f"give exactly one of {label('name')} (a built-in data set: "
            f"{', '.join(BUILTIN_DATASETS)}) and {label('path')} (a CSV or NPZ file); {both}",
            None,
        )
    if name is not None:
        if not isinstance(name, str) or name not in _BUILTINS:
            hint = _closest(str(name), BUILTIN_DATASETS)
            if isinstance(name, str) and name.lower().endswith((".csv", ".npz")):
                hint += f" (for a file, pass {label('path')} instead of {label('name')})"
            raise DataError(
                f"unknown data set {name!r}; built-in data sets: "
                f"{', '.join(BUILTIN_DATASETS)}{hint}",
                "name",
            )
        return None
    where = _expand(path)
    full = where if where.is_absolute() else Path(base or Path.cwd()) / where
    try:
        exists, is_file = full.exists(), full.is_file()
    except OSError as e:  # a name too long, a loop of links, ...
        raise DataError(f"{where}: cannot access the file ({e.strerror or e})", "path") from None
    if not exists:
        raise DataError(
            f"{where}: file not found (relative paths are resolved against "
            f"{'the current directory, ' if base is None else ''}{Path(base or Path.cwd())})",
            "path",
        )
    if not is_file:
        raise DataError(f"{where}: not a regular file", "path")
    if full.suffix.lower() not in (".csv", ".npz"):
        raise DataError(
            f"{where}: unsupported file type {full.suffix or '(no suffix)'!r}; "
            "use a .csv file with a header row or a .npz archive",
            "path",
        )
    return full.resolve()


def load(
    name: str | None = None,
    *,
    path: str | Path | None = None,
    features: Sequence[str] | None = None,
    target: str | None = None,
    val_split: float = 0.0,
    split_seed: int = 0,
    dtype: Any = np.float32,
) -> Dataset:
    """Loads a built-in data set or a user's CSV/NPZ file, with an optional validation split.

    Exactly one of ``name`` and ``path`` is given. The validation split draws the same rows as
    ``sklearn.model_selection.train_test_split(x, y, test_size=val_split,
    random_state=split_seed, shuffle=True)``: ``ceil(val_split * n)`` validation rows, the first
    of ``numpy.random.RandomState(split_seed).permutation(n)``; the training rows follow in that
    permutation's order. Without a split (``val_split=0``) the rows keep the file's order.

    Args:
        name: a built-in data set: ``"ice_cream"``, ``"breast_cancer"`` or ``"digits"``.
        path: a CSV file (header row of column names, one row per example) or an NPZ archive
            (``numpy.savez``: arrays named by ``features``/``target``, or ``x`` and ``y``). A
            relative path is resolved against the current directory.
        features: the feature columns (or NPZ arrays), in order. Default: the data set's default
            (``["temp"]`` for ice cream, all columns for the others); for a file, every column
            except the target, or the NPZ array ``x``.
        target: the target column. Default: ``cons`` (ice cream), ``benign`` (breast cancer),
            ``pixels`` (digits: the image itself); for an NPZ file ``y``; a CSV file needs it.
        val_split: the fraction of rows held out for validation, in [0, 1); 0 for no split.
        split_seed: the seed of the split's random permutation (an integer in [0, 2**32)).
        dtype: the floating-point dtype of the arrays (default float32).

    Returns:
        A :class:`Dataset`; ``x`` has shape ``(rows, len(features))``.

    Raises:
        DataError: naming the file (or data set) and the problem: missing or empty file, missing
            column (with the available columns and the closest match), non-numeric cell (with
            its line and column), NaN or infinite values, a single row, no feature column, rows
            with different numbers of cells, an NPZ member that is not a numeric array, or a
            split that leaves no training or no validation row. Its ``key`` is the name of the
            argument at fault (see :class:`DataError`).

    Example:
        >>> from mlgrad.data import load
        >>> data = load("breast_cancer", val_split=0.2, split_seed=0)
        >>> data.x_train.shape, data.x_val.shape, data.x_train.dtype
        ((455, 30), (114, 30), dtype('float32'))
    """
    features = _as_names(features, "features")
    if target is not None and not isinstance(target, str):
        raise DataError(f"target must be a column name (a string); got {target!r}", "target")
    val_split, split_seed = _check_split(val_split, split_seed)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise DataError(f"dtype must be a NumPy floating dtype; got {dtype!r}", "dtype") from None
    if dtype.kind != "f":
        raise DataError(f"dtype must be a floating dtype such as float32; got {dtype}", "dtype")

    labels: Mapping[str, str] = {}
    resolved = check_source(name, path)
    if name is not None:
        where, data_key = f"built-in data set {name!r}", "name"
        x, y, feature_names, target_name, source, labels = _BUILTINS[name](features, target)
    else:
        path = _expand(path)
        where, data_key = str(path), "path"
        assert resolved is not None  # check_source resolves a path when no name is given
        suffix = resolved.suffix.lower()
        try:
            size = resolved.stat().st_size
        except OSError as e:
            raise DataError(f"{where}: cannot read the file ({e.strerror or e})", "path") from None
        if size == 0:
            raise DataError(f"{where}: the file is empty", "path")
        if suffix == ".csv":
            x, y, feature_names, target_name = _parse_csv(
                _read_text(path, where), where, features, target, data_key="path"
            )
            kind = "CSV"
        else:
            x, y, feature_names, target_name = _load_npz(path, where, features, target)
            kind = "NPZ"
        source = f"{kind} file {path.resolve()}"

    n = len(x)
    if n < 2:
        raise DataError(
            f"{where}: has only {n} data row{'' if n == 1 else 's'}; at least 2 are needed to "
            "fit and evaluate a model",
            data_key,
        )
    if x.shape[1] == 0:
        raise DataError(
            f"{where}: has no feature columns (the features have shape {x.shape}); a model "
            f"needs at least one input column besides the target {target_name!r}",
            data_key,
        )
    if y.ndim == 2 and y.shape[1] == 0:
        raise DataError(
            f"{where}: the target {target_name!r} has no columns (shape {y.shape}); give a "
            "target with at least one value per row",
            data_key,
        )
    limit = np.finfo(dtype).max
    for arr, names in ((x, feature_names), (y, [target_name])):
        too_big = np.abs(arr) > limit  # checked before casting, which would only warn
        if too_big.any():
            idx = tuple(int(i) for i in np.argwhere(too_big)[0])
            column = names[idx[1]] if arr.ndim == 2 and len(names) > 1 else names[0]
            raise DataError(
                f"{where}: value {arr[idx]} in {column!r} (data row {idx[0] + 1}) does not fit "
                f"in {dtype}; rescale the column or use a wider dtype",
                data_key,
            )
    x_cast, y_cast = x.astype(dtype), y.astype(dtype)
    if val_split > 0:
        train, val = _split(n, val_split, split_seed, where)
        data = Dataset(
            x_cast[train],
            y_cast[train],
            x_cast[val],
            y_cast[val],
            tuple(feature_names),
            target_name,
            f"{source}; validation split {val_split:g} (seed {split_seed}): "
            f"{len(train)} training / {len(val)} validation rows",
            labels,
        )
    else:
        data = Dataset(
            x_cast,
            y_cast,
            None,
            None,
            tuple(feature_names),
            target_name,
            f"{source}; {n} rows, no validation split",
            labels,
        )
    return data
