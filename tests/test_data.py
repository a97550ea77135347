"""Data loading: built-in data sets, the validation split, user CSV/NPZ files, bad data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

import mlgrad.data as data_module
from mlgrad.data import DataError, Dataset, load


def test_ice_cream_ships_inside_the_package():
    data = load("ice_cream")
    assert data.x_train.shape == (30, 1) and data.y_train.shape == (30,)
    assert data.feature_names == ("temp",) and data.target_name == "cons"
    assert data.x_val is None
    assert data.x_train.dtype == np.float32
    # First row of the published table: period 1, cons 0.386, temp 41.
    np.testing.assert_allclose([data.x_train[0, 0], data.y_train[0]], [41, 0.386], rtol=1e-6)
    three = load("ice_cream", features=["temp", "price", "income"])
    assert three.x_train.shape == (30, 3)


def test_builtin_splits_reproduce_scikit_learn():
    bc = load_breast_cancer()
    data = load("breast_cancer", val_split=0.2, split_seed=0)
    x_tr, x_val, y_tr, y_val = train_test_split(
        bc.data, bc.target, test_size=0.2, random_state=0, shuffle=True
    )
    np.testing.assert_allclose(data.x_train, x_tr, rtol=1e-6)
    np.testing.assert_allclose(data.x_val, x_val, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, y_tr)
    np.testing.assert_array_equal(data.y_val, y_val)
    digits = load("digits", val_split=0.2, split_seed=0)
    d_tr, d_val = train_test_split(load_digits().data / 16.0, test_size=0.2, random_state=0)
    np.testing.assert_allclose(digits.x_train, d_tr, rtol=1e-6)
    np.testing.assert_allclose(digits.y_val, d_val, rtol=1e-6)  # autoencoder target = input
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0


def test_user_csv_and_npz(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9\n")
    data = load(path=csv, target="y")
    np.testing.assert_array_equal(data.x_train, [[1, 2], [4, 5], [7, 8]])
    np.testing.assert_array_equal(data.y_train, [3, 6, 9])
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.arange(8.0).reshape(4, 2), y=np.arange(4.0))
    data = load(path=npz)
    assert data.x_train.shape == (4, 2)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("a,y\n1,2\n", "row"),  # a single row
        ("a,y\n1,2\nx,3\n", "numeric"),
        ("a,y\n1,2\nnan,3\n", "NaN|finite"),
        ("a,y\n1,2\ninf,3\n", "NaN|finite|infinite"),
        ("a,y\n1,2\n3\n", "cells|columns"),
    ],
    ids=["empty", "single-row", "non-numeric", "nan", "inf", "ragged"],
)
def test_bad_csv_files_name_the_file_and_problem(tmp_path, text, problem):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        load(path=csv, target="y")
    assert "bad.csv" in str(info.value)


def test_missing_files_and_columns(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        load(path=tmp_path / "nope.csv", target="y")
    csv = tmp_path / "d.csv"
    csv.write_text("temp,cons\n1,2\n3,4\n")
    with pytest.raises(DataError, match="tmp.*temp") as info:
        load(path=csv, features=["tmp"], target="cons")
    assert "d.csv" in str(info.value)
    with pytest.raises(DataError, match="cost|cons"):
        load(path=csv, target="cost")
    with pytest.raises(DataError, match="did you mean 'ice_cream'"):
        load("icecream")
    with pytest.raises(DataError, match="validation|training"):
        load(path=csv, target="cons", val_split=0.99)


def test_digits_target_is_the_image_and_features_can_be_chosen():
    digits = load("digits")
    assert digits.x_train.shape == digits.y_train.shape == (1797, 64)
    np.testing.assert_array_equal(digits.x_train, digits.y_train)
    assert digits.x_train.max() == 1.0 and digits.target_name == "pixels"
    with pytest.raises(DataError, match="'pixels'"):
        load("digits", target="label")
    cancer = load("breast_cancer", features=["mean radius", "worst area"])
    bc = load_breast_cancer()
    np.testing.assert_allclose(cancer.x_train, bc.data[:, [0, 23]], rtol=1e-6)
    assert cancer.target_name == "benign" and set(np.unique(cancer.y_train)) == {0.0, 1.0}


@pytest.mark.parametrize(
    ("n", "val_split", "seed"), [(10, 0.3, 0), (30, 0.2, 7), (31, 0.5, 123), (5, 0.01, 1)]
)
def test_user_file_split_reproduces_train_test_split(tmp_path, n, val_split, seed):
    rng = np.random.default_rng(seed)
    table = np.c_[rng.normal(size=(n, 2)), np.arange(n)]
    csv = tmp_path / "t.csv"
    np.savetxt(csv, table, delimiter=",", header="a,b,y", comments="")
    data = load(path=csv, target="y", val_split=val_split, split_seed=seed, dtype=np.float64)
    x_tr, x_val, y_tr, y_val = train_test_split(
        table[:, :2], table[:, 2], test_size=val_split, random_state=seed, shuffle=True
    )
    np.testing.assert_array_equal(data.y_train, y_tr)  # same rows, in the same order
    np.testing.assert_array_equal(data.y_val, y_val)
    np.testing.assert_array_equal(data.x_train, x_tr)
    np.testing.assert_array_equal(data.x_val, x_val)
    assert data.x_train.dtype == np.float64


def test_csv_by_relative_path_with_default_features(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("\ufeffa, y ,b,note\n1,2,3,x\n\n4,5,6,y\n")
    monkeypatch.chdir(tmp_path)
    data = load(path="sub/d.csv", target="y", features=["b", "a"])
    np.testing.assert_array_equal(data.x_train, [[3, 1], [6, 4]])
    assert data.feature_names == ("b", "a") and "d.csv" in data.source
    # Default features: every other column; a text column that is not used is no error, but
    # it is one once it is a feature.
    with pytest.raises(DataError, match="non-numeric value 'x' in column 'note' at line 2"):
        load(path="sub/d.csv", target="y")


def test_npz_named_arrays(tmp_path):
    npz = tmp_path / "d.npz"
    np.savez(npz, temp=np.arange(5.0), price=np.ones(5), cons=np.arange(5.0) * 2, z=np.ones((5, 2)))
    data = load(path=npz, features=["temp", "z"], target="cons")
    assert data.feature_names == ("temp", "z[0]", "z[1]") and data.x_train.shape == (5, 3)
    np.testing.assert_array_equal(data.y_train, np.arange(5.0) * 2)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("   \n\n", "empty"),
        ("a,y\n", "no data rows"),
        ("a,y\n1,2\n,3\n", "empty cell in column 'a' at line 3"),
        ("a,a,y\n1,2,3\n4,5,6\n", "more than once"),
        ("a,y\n1,2\n1e39,3\n", "does not fit in float32"),
        ("a,y\n1,2\n3,4,5\n", "line 3 has 3 cells but the header has 2 columns"),
    ],
    ids=["blank", "header-only", "empty-cell", "duplicate-header", "overflow", "long-row"],
)
def test_more_bad_csv_files(tmp_path, text, problem):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        load(path=csv, target="y")
    assert str(info.value).startswith(str(csv))


def test_csv_errors_for_bytes_columns_and_targets(tmp_path):
    raw = tmp_path / "latin1.csv"
    raw.write_bytes("a,y\n1,2\n3,\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.csv: not a UTF-8 text file"):
        load(path=raw, target="y")
    csv = tmp_path / "ok.csv"
    csv.write_text("a,y\n1,2\n3,4\n")
    with pytest.raises(DataError, match="both a feature and the target"):
        load(path=csv, features=["a", "y"], target="y")
    with pytest.raises(DataError, match="no target column given; .* a, y"):
        load(path=csv)
    with pytest.raises(DataError, match="more than once"):
        load(path=csv, features=["a", "a"], target="y")


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "kwargs", "problem"),
    [
        (
            {"x": np.ones((4, 2)), "y": np.ones(3)},
            {},
            r"different numbers of rows \('x': 4, 'y': 3\)",
        ),
        ({"x": np.ones((4, 2)), "y": np.array([1, 2, np.nan, 4])}, {}, "non-finite value nan"),
        ({"x": np.ones((4, 2)), "y": np.array(["a", "b", "c", "d"])}, {}, "dtype <U1"),
        ({"x": np.ones((4, 2, 2)), "y": np.ones(4)}, {}, "shape"),
        ({"x": np.ones((4, 2))}, {}, "no 'y'"),
        ({"temp": np.ones(4), "y": np.ones(4)}, {"features": ["tmep"]}, "did you mean 'temp'"),
        ({"x": np.ones((1, 2)), "y": np.ones(1)}, {}, "only 1 data row"),
        ({"x": np.ones((4, 2)), "y": np.array([None] * 4, dtype=object)}, {}, "pickle"),
    ],
    ids=["lengths", "nan", "strings", "3d", "no-y", "misspelt", "one-row", "object"],
)
def test_bad_npz_files(tmp_path, arrays, kwargs, problem):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=problem) as info:
        load(path=path, **kwargs)
    assert "bad.npz" in str(info.value)


def test_files_that_are_not_npz_or_not_files(tmp_path):
    fake = tmp_path / "fake.npz"
    fake.write_text("not a zip archive")
    with pytest.raises(DataError, match="fake.npz: not a valid NPZ file"):
        load(path=fake)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.npz: the file is empty"):
        load(path=empty)
    with pytest.raises(DataError, match="not a regular file"):
        load(path=tmp_path)
    other = tmp_path / "d.xlsx"
    other.write_text("x")
    with pytest.raises(DataError, match="d.xlsx: unsupported file type '.xlsx'"):
        load(path=other)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"name": "ice_cream", "path": "d.csv"}, "exactly one of name"),
        ({}, "exactly one of name"),
        ({"name": "d.csv"}, "pass path="),
        ({"name": "ice_cream", "val_split": 1.0}, r"\[0, 1\)"),
        ({"name": "ice_cream", "val_split": -0.1}, r"\[0, 1\)"),
        ({"name": "ice_cream", "val_split": True}, "a number"),
        ({"name": "ice_cream", "val_split": 0.2, "split_seed": -1}, "split_seed"),
        ({"name": "ice_cream", "features": []}, "empty list"),
        ({"name": "ice_cream", "dtype": np.int32}, "floating dtype"),
    ],
)
def test_argument_errors(kwargs, problem):
    with pytest.raises(DataError, match=problem):
        load(**kwargs)


def test_dataset_checks_its_arrays():
    x, y = np.ones((3, 2), np.float32), np.ones(3, np.float32)
    Dataset(x, y, x[:1], y[:1], ("a", "b"), "y", "test")
    with pytest.raises(DataError, match="2 feature names for 3"):
        Dataset(np.ones((3, 3)), y, None, None, ("a", "b"), "y", "test")
    with pytest.raises(DataError, match="y_train has 2"):
        Dataset(x, y[:2], None, None, ("a", "b"), "y", "test")
    with pytest.raises(DataError, match="both be given"):
        Dataset(x, y, x, None, ("a", "b"), "y", "test")
    data = load("ice_cream", features=["temp", "price"], val_split=0.2)
    assert data.label("temp") == "mean temperature (°F)" and data.label("unknown") == "unknown"
    assert data.val is not None and data.n_features == 2


_CSV = "a,y\n1,2\n3,4\n5,6\n"


@pytest.mark.parametrize(
    ("file", "content", "kwargs", "problem", "key"),
    [
        # name= and path=
        (None, None, {"name": "icecream"}, "did you mean 'ice_cream'", "name"),
        (None, None, {"name": "d.csv"}, "pass path=", "name"),
        ("d.csv", None, {"name": "ice_cream"}, "exactly one of name", None),
        (None, None, {}, "exactly one of name", None),
        # the file itself
        ("nope.csv", None, {"target": "y"}, "file not found", "path"),
        (".", None, {"target": "y"}, "not a regular file", "path"),
        ("d.xlsx", "x", {"target": "y"}, "unsupported file type", "path"),
        ("d.csv", "", {"target": "y"}, "the file is empty", "path"),
        ("d.csv", "a,y\n", {"target": "y"}, "no data rows", "path"),
        ("d.csv", "a,y\n1,2\nx,3\n", {"target": "y"}, "non-numeric value 'x'", "path"),
        ("d.csv", "a,y\n1,2\nnan,3\n", {"target": "y"}, "non-finite value nan", "path"),
        ("d.csv", "a,y\n1,2\n3\n", {"target": "y"}, "1 cells but the header has 2", "path"),
        ("d.csv", "a,y\n1,2\n", {"target": "y"}, "only 1 data row", "path"),
        ("d.csv", "a,y\n1,2\n1e39,3\n", {"target": "y"}, "does not fit in float32", "path"),
        ("d.csv", "y\n1\n2\n", {"target": "y"}, "no feature column left", "path"),
        ("d.npz", {"x": np.ones((4, 2)), "y": np.ones(3)}, {}, "different numbers", "path"),
        # features= and target=
        ("d.csv", _CSV, {"features": ["b"], "target": "y"}, "feature column 'b'", "features"),
        ("d.csv", _CSV, {"features": ["a", "a"], "target": "y"}, "more than once", "features"),
        ("d.csv", _CSV, {"features": [1], "target": "y"}, "strings", "features"),
        ("d.csv", _CSV, {"features": ["a", "y"], "target": "y"}, "both a feature", "features"),
        (None, None, {"name": "ice_cream", "features": ["tmp"]}, "did you mean", "features"),
        ("d.npz", {"t": np.ones(4), "y": np.ones(4)}, {"features": ["x"]}, "'x'", "features"),
        ("d.csv", _CSV, {"target": "z"}, "target column 'z' not found", "target"),
        ("d.csv", _CSV, {}, "no target column given", "target"),
        ("d.csv", _CSV, {"target": 1}, "a column name", "target"),
        ("d.npz", {"x": np.ones((4, 2))}, {}, "no 'y'", "target"),
        (None, None, {"name": "digits", "target": "label"}, "'pixels'", "target"),
        # val_split=, split_seed=, dtype=
        ("d.csv", _CSV, {"target": "y", "val_split": 1.0}, r"\[0, 1\)", "val_split"),
        ("d.csv", _CSV, {"target": "y", "val_split": "0.2"}, "a number", "val_split"),
        ("d.csv", _CSV, {"target": "y", "val_split": 0.9}, "no training row", "val_split"),
        ("d.csv", _CSV, {"target": "y", "split_seed": -1}, "2\\*\\*32", "split_seed"),
        ("d.csv", _CSV, {"target": "y", "split_seed": 0.5}, "an integer", "split_seed"),
        ("d.csv", _CSV, {"target": "y", "dtype": np.int32}, "floating dtype", "dtype"),
        ("d.csv", _CSV, {"target": "y", "dtype": "nonsense"}, "floating dtype", "dtype"),
    ],
    ids=[
        "unknown-name",
        "file-as-name",
        "name-and-path",
        "neither",
        "not-found",
        "directory",
        "suffix",
        "empty",
        "header-only",
        "non-numeric",
        "nan",
        "ragged",
        "one-row",
        "overflow",
        "only-target",
        "npz-lengths",
        "missing-feature",
        "duplicate-feature",
        "feature-not-str",
        "feature-is-target",
        "builtin-missing-feature",
        "npz-missing-feature",
        "missing-target",
        "no-target",
        "target-not-str",
        "npz-no-y",
        "builtin-bad-target",
        "val-split-range",
        "val-split-type",
        "no-training-row",
        "split-seed-range",
        "split-seed-type",
        "int-dtype",
        "unknown-dtype",
    ],
)
def test_data_errors_name_the_argument_at_fault(tmp_path, file, content, kwargs, problem, key):
    kwargs = dict(kwargs)
    if file is not None:
        path = tmp_path / file
        if isinstance(content, dict):
            np.savez(path, **content)
        elif content is not None:
            path.write_text(content)
        kwargs["path"] = path
    with pytest.raises(DataError, match=problem) as info:
        load(**kwargs)
    e = info.value
    assert e.key == key
    assert isinstance(e, ValueError)
    assert str(e) == e.args[0] and not str(e).startswith("(")


def test_data_error_key_attribute(monkeypatch):
    e = DataError("x", "path")
    assert str(e) == "x" and e.key == "path" and e.args == ("x",)
    assert DataError("y").key is None
    copy = pickle.loads(pickle.dumps(e))
    assert str(copy) == "x" and copy.key == "path"
    # A Dataset built from inconsistent arrays is no load() argument's fault.
    with pytest.raises(DataError) as info:
        Dataset(np.ones((3, 2)), np.ones(2), None, None, ("a", "b"), "y", "test")
    assert info.value.key is None
    # A problem with a built-in data set's data (not a user's file) is about name=.
    one_row = (np.ones((1, 1)), np.ones(1), ["temp"], "cons", "one row", {})
    monkeypatch.setitem(data_module._BUILTINS, "ice_cream", lambda features, target: one_row)
    with pytest.raises(DataError, match="only 1 data row") as info:
        load("ice_cream")
    assert info.value.key == "name"
