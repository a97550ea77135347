"""What figures say agrees with the console (H, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlgrad.config import ConfigError, load_config
from mlgrad.data import load
from mlgrad.plots import TITLE_SIZE, fitted_title

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_a_run_title_stays_on_one_line_in_a_smaller_font():
    title = "Loss curve: autoencoder (adam, learning rate warmup_cosine_decay_schedule)"
    text, size = fitted_title(title)
    assert text == title and 0.75 * TITLE_SIZE <= size < TITLE_SIZE


def test_a_title_just_over_the_width_is_not_wrapped_by_rounding():
    """59 characters (the ice-cream fit's title): one line at 56/59 of the size, not two
    (an int() of the width in a smaller font used to fall one short)."""
    title = "Ice-cream consumption against mean temperature: fitted line"
    text, size = fitted_title(title)
    assert text == title and size == pytest.approx(TITLE_SIZE * 56 / 59)


def test_short_titles_keep_the_font_and_very_long_ones_wrap():
    assert fitted_title("Loss curve: ice_cream") == ("Loss curve: ice_cream", TITLE_SIZE)
    text, size = fitted_title("word " * 40)
    assert size == 0.75 * TITLE_SIZE and 2 <= len(text.splitlines()) <= 3


def test_the_breast_cancer_classes_are_named_as_the_console_names_them():
    data = load(name="breast_cancer")
    assert (data.labels["benign=0"], data.labels["benign=1"]) == ("malignant", "benign")


def test_a_warm_up_as_long_as_the_schedule_names_both_keys():
    with pytest.raises(ConfigError, match=r"decay_steps` \(100\) must be larger than"):
        load_config(CONFIGS / "autoencoder.yaml", ["train.steps=100"])


def test_a_figure_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A figure whose rendering fails part-way leaves no PNG, nor a temporary file (J: the
    figures are complete, atomically written, or absent)."""
    from matplotlib.figure import Figure

    from mlgrad.plots import loss_curve

    def half_then_fail(self, fname, **kwargs):
        fname.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        loss_curve(tmp_path / "loss.png", [1, 2], [1.0, 0.5])
    assert list(tmp_path.iterdir()) == []
