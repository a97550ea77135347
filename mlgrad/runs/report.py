"""``report.html``: a run or a sweep on one self-contained page, readable offline.

The page is made from the files of a finished run directory and nothing else, so it can be
written (or written again: :func:`write_report`) whenever they change: the summary's final
metrics, every figure (embedded as PNG data, so the one file can be mailed or archived), the
metrics log as a table, the curvature findings (``curvature.json``) and the divergence when
there are any, the resolved config and the provenance (versions, devices, command line, git
commit). A sweep's page has its table of runs, its loss curves and its config.

No network, no JavaScript library: the only script logs a console error for an image that
did not load, which the browser test (``tests/test_report.py``) checks.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from mlgrad.runs import rundir
from mlgrad.runs.metrics_log import MetricsLog

#: The most rows of the metrics log the page shows (evenly spread, first and last kept).
MAX_LOG_ROWS = 200

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; font-size: 1.2em; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
tr.best td { background: #fff7d6; font-weight: 600; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.scroll { max-height: 28em; overflow-y: auto; display: inline-block; }
.alert { background: #fde8e8; border-left: 4px solid #c0392b; padding: 0.6em 1em; }
.finding { background: #e8f4fd; border-left: 4px solid #2c7fb8; padding: 0.6em 1em; }
"""

_CHECK_IMAGES = (
    "window.addEventListener('load', function () { for (const img of document.images) "
    "{ if (!img.complete || img.naturalWidth === 0) "
    "{ console.error('missing image: ' + img.alt); } } });"
)


def write_report(directory: Path, summary: dict | None = None) -> Path:
    """Writes ``report.html`` into a run or sweep directory (atomically) and returns its path;
    ``summary`` stands for the run's ``summary.json`` when given.

    Example:
      >>> import tempfile
      >>> with tempfile.TemporaryDirectory() as d:
      ...     _ = (Path(d) / "summary.json").write_text('{"name": "demo", "steps": 3}')
      ...     print(write_report(Path(d)).name)
      report.html
    """
    directory = Path(directory)
    is_sweep = (directory / "sweep.json").is_file()
    page = sweep_page(directory) if is_sweep else run_page(directory, summary)
    path = directory / "report.html"
    rundir.write_atomic(path, page)
    return path


def run_page(run_dir: Path, summary: dict | None = None) -> str:
    """The HTML of a run directory's report; ``summary`` instead of its ``summary.json``
    (a diverged run has none)."""
    summary = _json(run_dir / "summary.json") if summary is None else summary
    name = str(summary.get("name", run_dir.name))
    parts = [_heading(f"mlgrad run: {name}", _run_subtitle(summary))]
    diverged = summary.get("diverged")
    if isinstance(diverged, dict):
        parts.append(f'<p class="alert"><b>Diverged.</b> {_e(diverged.get("message", ""))}</p>')
    if summary.get("metrics"):
        parts.append("<h2>Final metrics</h2>" + _table([summary["metrics"]]))
    curvature = _json(run_dir / "curvature.json")
    if curvature:
        parts.append(_curvature_section(curvature))
    parts.append(_figures(run_dir))
    records = MetricsLog.read(run_dir / "metrics.jsonl")
    if records:
        shown = _spread(records, MAX_LOG_ROWS)
        note = "" if len(shown) == len(records) else f" ({len(shown)} of {len(records)} rows)"
        parts.append(f"<h2>Metrics log{note}</h2><div class='scroll'>{_table(shown)}</div>")
    parts.append(_text_file("Config (resolved)", run_dir / "config.yaml"))
    parts.append(_provenance(summary))
    return _page(f"mlgrad: {name}", parts)


def sweep_page(sweep_dir: Path, sweep: dict | None = None) -> str:
    """The HTML of a sweep directory's report: its runs, loss curves, config, provenance;
    ``sweep`` instead of its ``sweep.json`` (written after the report)."""
    sweep = _json(sweep_dir / "sweep.json") if sweep is None else sweep
    name = str(sweep.get("name", sweep_dir.name))
    best = sweep.get("best_run")
    rows = []
    for run in sweep.get("runs", []):
        row = {"run": run.get("run"), "group": run.get("group")}
        row.update({k: v[0] if len(v) == 1 else v for k, v in _swept(run, sweep).items()})
        row.update(run.get("metrics", {}))
        row.update({"min_loss": run.get("min_loss"), "diverged": run.get("diverged")})
        rows.append(row)
    subtitle = (
        f"{len(rows)} runs over {', '.join(sweep.get('swept', {})) or 'nothing'}; best by "
        f"{sweep.get('best_by', '?')}: run {best}"
    )
    parts = [_heading(f"mlgrad sweep: {name}", subtitle)]
    parts.append("<h2>Runs</h2>" + _table(rows, best=best))
    parts.append(_figures(sweep_dir))
    parts.append(_text_file("Base config", sweep_dir / "config.yaml"))
    parts.append(_provenance(sweep))
    return _page(f"mlgrad sweep: {name}", parts)


# -- pieces ------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _page(title: str, parts: list[str]) -> str:
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style>"
        f"<script>{_CHECK_IMAGES}</script></head>\n<body>\n{body}\n</body></html>\n"
    )


def _heading(title: str, subtitle: str) -> str:
    return f"<h1>{_e(title)}</h1><p class='sub'>{_e(subtitle)}</p>"


def _run_subtitle(summary: dict) -> str:
    bits = [f"{summary.get('steps', '?')} steps"]
    for key, label in (("architecture", "architecture"), ("parameters", "parameters")):
        if key in summary:
            bits.append(f"{label} {summary[key]}")
    if "wall_time_s" in summary:
        bits.append(f"{summary['wall_time_s']} s")
    if "finished_utc" in summary:
        bits.append(f"finished {summary['finished_utc']}")
    if summary.get("data"):
        bits.append(f"data: {summary['data']}")
    return "; ".join(bits)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "—"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _table(rows: list[dict], *, best: Any = None) -> str:
    """An HTML table of dict rows (the union of their keys as columns, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    head = "".join(f"<th class='text'>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            kind = "" if isinstance(value, int | float) and not isinstance(value, bool) else "text"
            cells.append(f"<td class='{kind}'>{_e(_format(value))}</td>")
        marked = " class='best'" if best is not None and row.get("run") == best else ""
        body.append(f"<tr{marked}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _spread(records: list[dict], most: int) -> list[dict]:
    """At most ``most`` of ``records``, evenly spread, the first and the last kept."""
    if len(records) <= most:
        return records
    last = len(records) - 1
    picks = sorted({round(i * last / (most - 1)) for i in range(most)})
    return [records[i] for i in picks]


def _figures(directory: Path) -> str:
    """Every PNG of the directory, embedded, with its file name as caption."""
    figures = []
    for path in sorted(directory.glob("*.png")):
        try:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            continue
        figures.append(
            f"<figure><img alt='{_e(path.name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(path.name)}</figcaption></figure>"
        )
    return "<h2>Figures</h2>" + "".join(figures) if figures else ""


def _text_file(title: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    return f"<h2>{_e(title)}</h2><pre>{_e(text)}</pre>"


def _swept(run: dict, sweep: dict) -> dict[str, list[str]]:
    """The swept keys' values of a sweep's run, from its overrides."""
    values: dict[str, list[str]] = {}
    for text in run.get("overrides", []):
        key, _, value = str(text).partition("=")
        if key in sweep.get("swept", {}):
            values.setdefault(key, []).append(value)
    return values


def _curvature_section(curvature: dict) -> str:
    """The findings of ``mlgrad curvature`` (its ``curvature.json``): the verdict, then one row
    each for what it measured; its figures are among the run's."""
    verdict = curvature.get("verdict")
    head = f"<p class='finding'><b>Is it a cup?</b> {_e(verdict)}</p>" if verdict else ""
    eig = curvature.get("eigenvalues") or {}
    found = {
        "parameters": _dig(curvature, "parameters", "what"),
        "method": _dig(curvature, "method", "text"),
        "largest eigenvalues": _numbers(eig.get("largest")),
        "smallest eigenvalues": _numbers(eig.get("smallest")),
        "condition number": curvature.get("condition_number_note"),
        "stability": _dig(curvature, "stability", "text"),
        "closed form": _dig(curvature, "closed_form", "formula"),
        "computed in": curvature.get("computed_in"),
    }
    rows = [{"finding": k, "value": v} for k, v in found.items() if v not in (None, "")]
    return "<h2>Curvature</h2>" + head + (_table(rows) if rows else "")


def _dig(tree: dict, *keys: str) -> Any:
    """``tree[k1][k2]...``, or None where a level is missing."""
    node: Any = tree
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _numbers(values: Any) -> str | None:
    if not isinstance(values, list):
        return None
    return ", ".join(_format(float(v)) for v in values if isinstance(v, int | float))


def _provenance(summary: dict) -> str:
    """Versions, platform, devices, command line and git commit, as a two-column table."""
    found = summary.get("provenance")
    if not isinstance(found, dict):
        return ""
    rows = []
    for key, value in found.items():
        if isinstance(value, dict):
            rows += [{"what": f"{key}: {k}", "value": v} for k, v in value.items()]
        elif key == "argv" and isinstance(value, list):
            rows.append({"what": "command line", "value": " ".join(map(str, value))})
        else:
            rows.append({"what": key, "value": value})
    return "<h2>Provenance</h2>" + _table(rows)
