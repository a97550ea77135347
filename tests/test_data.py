"""Data loading: built-in data sets, the validation split, user CSV/NPZ files, bad data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from mlgrad.data import DataError, load


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
