"""Overriding the data's source replaces the config's (H, item 6): data.path on a config that
names a built-in data set, and data.name on one that names a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlgrad.config import ConfigError, load_config, validate_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "my.csv"
    path.write_text("temp,price,cons\n1,2,3\n2,3,4\n3,4,6\n4,5,7\n5,5,9\n", encoding="utf-8")
    return path


def test_a_path_override_replaces_a_built_in_data_set(csv):
    cfg = load_config(CONFIGS / "linear_regression.yaml", [f"data.path={csv}"])[0]
    assert cfg.data.name is None and Path(cfg.data.path) == csv


def test_a_name_override_replaces_a_file(csv, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(
        f"model: {{name: linear_regression}}\ndata: {{path: {csv}, features: [temp], "
        "target: cons}\noptimizer: {name: sgd, learning_rate: 0.1}\n",
        encoding="utf-8",
    )
    cfg = load_config(config, ["data.name=ice_cream"])[0]
    assert cfg.data.name == "ice_cream" and cfg.data.path is None
    assert validate_config(cfg, [f"data.path={csv}"])[0].data.name is None


def test_overriding_both_is_still_an_error(csv):
    with pytest.raises(ConfigError, match="give exactly one of `data.name`"):
        load_config(CONFIGS / "linear_regression.yaml", [f"data.path={csv}", "data.name=digits"])


def test_a_run_folder_named_like_a_built_in_config_does_not_hide_it(tmp_path, monkeypatch):
    """`mlgrad train linear_regression --out linear_regression`, then the same command again
    from that directory: the name still means the built-in config (it used to be taken for
    the folder: "config file linear_regression is not a regular file")."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "linear_regression").mkdir()
    cfg = load_config("linear_regression")[0]
    assert cfg.name == "linear_regression" and cfg.data.name == "ice_cream"
    (tmp_path / "mine").mkdir()  # a folder that is no built-in config stays an error
    with pytest.raises(ConfigError, match="mine is not a regular file"):
        load_config("mine")
