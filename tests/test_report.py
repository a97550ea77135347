"""report.html (H, item 2): one self-contained page per run and per sweep, checked for its
content here and rendered in headless Chromium (the ``ci`` test)."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mlgrad.cli import main
from mlgrad.runs.metrics_log import MetricsLog
from mlgrad.runs.report import MAX_LOG_ROWS, write_report


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    """A finished logistic run and a two-run sweep, trained once for the module."""
    root = tmp_path_factory.mktemp("report")
    run, sweep = root / "run", root / "sweep"
    assert main(["train", "logistic", "train.steps=60", "--out", str(run), "-q"]) == 0
    args = ["sweep", "linear_regression", "seed=0,1", "train.steps=20", "--out", str(sweep)]
    assert main([*args, "-q"]) == 0
    return run, sweep


def _images(page: str) -> dict[str, bytes]:
    found = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([^']+)'>", page)
    return {name: base64.b64decode(data) for name, data in found}


def test_every_figure_is_embedded_byte_for_byte(runs):
    run, _ = runs
    page = write_report(run).read_text(encoding="utf-8")
    pngs = {p.name: p.read_bytes() for p in run.glob("*.png")}
    assert set(pngs) == {"loss.png", "probabilities.png"}
    assert _images(page) == pngs
    assert "src='http" not in page and "href='http" not in page  # readable offline


def test_the_metrics_table_and_config_are_the_runs(runs):
    run, _ = runs
    page = write_report(run).read_text(encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text())
    for name, value in summary["metrics"].items():
        assert f"<th class='text'>{name}</th>" in page and f"{value:.6g}" in page
    records = MetricsLog.read(run / "metrics.jsonl")
    assert len(records) <= MAX_LOG_ROWS
    for record in records:
        assert f"<td class=''>{record['step']}</td>" in page
    assert html.escape((run / "config.yaml").read_text(), quote=True) in page
    assert "jax" in page and "command line" in page  # provenance


def test_a_sweep_page_has_its_runs_and_marks_the_best(runs):
    _, sweep = runs
    page = write_report(sweep).read_text(encoding="utf-8")
    data = json.loads((sweep / "sweep.json").read_text())
    best = data["best_run"]
    rows = re.findall(r"<tr( class='best')?><td class=''>(\d+)</td>", page)
    assert [int(r) for _, r in rows] == [r["run"] for r in data["runs"]]
    assert [bool(b) for b, _ in rows] == [r["run"] == best for r in data["runs"]]
    assert set(_images(page)) == {p.name for p in sweep.glob("*.png")}


def test_findings_and_divergence_are_shown(tmp_path):
    summary = {"name": "<x>", "steps": 5, "diverged": {"message": "loss became inf at 3"}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    curvature = {
        "verdict": "a saddle",
        "eigenvalues": {"largest": [2.5, 1.0], "smallest": [-0.5], "all": [1.0] * 500},
        "stability": {"limit": 20.0, "text": "λ_max(H) = 2.5 is 12% of 2/η = 20: stable."},
    }
    (tmp_path / "curvature.json").write_text(json.dumps(curvature))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "mlgrad run: &lt;x&gt;" in page  # escaped
    assert "<b>Diverged.</b> loss became inf at 3" in page
    assert "<b>Is it a cup?</b> a saddle" in page
    assert "<td class='text'>2.5, 1</td>" in page and "<td class='text'>-0.5</td>" in page
    assert "12% of 2/η = 20: stable." in page and page.count("<tr>") == 4  # no list dumped


def test_mlgrad_curvature_puts_its_findings_in_the_report(runs):
    from mlgrad.runs import curvature

    run, _ = runs
    curvature(run)  # the logistic run: 31 parameters, dense
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<b>Is it a cup?</b> cup:" in page
    assert set(_images(page)) >= {"curvature_spectrum.png", "curvature_landscape.png"}


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is needed (.ci/run installs Debian's chromium)"
    return found


def render(page: Path, shot: Path) -> list[str]:
    """Renders ``page`` in headless Chromium into ``shot``; returns its console messages."""
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if "CONSOLE" in line]


@pytest.mark.slow
@pytest.mark.ci
def test_the_report_renders_in_a_browser(runs, tmp_path):
    import matplotlib.image as mpimg

    run, sweep = runs
    for directory in (run, sweep):
        shot = tmp_path / f"{directory.name}.png"
        console = render(write_report(directory), shot)
        assert console == [], console  # no errors, no missing images
        pixels = mpimg.imread(shot)[..., :3]
        assert pixels.shape[:2] == (1600, 1200)
        assert pixels.std() > 0.05  # not blank: text and figures drawn
        # the first figure (loss.png) was drawn: many colours in its part of the page
        assert len(np.unique((pixels[300:900] * 255).astype(int).reshape(-1, 3), axis=0)) > 50


@pytest.mark.slow
@pytest.mark.ci
def test_the_browser_check_sees_a_missing_image(tmp_path):
    """The check can fail: a report whose image data is broken logs a console error."""
    (tmp_path / "summary.json").write_text('{"name": "broken"}')
    (tmp_path / "loss.png").write_bytes(b"not a png")
    console = render(write_report(tmp_path), tmp_path / "shot.png")
    assert any("missing image: loss.png" in line for line in console), console
