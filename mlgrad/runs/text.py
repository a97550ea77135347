"""Plain text for people: metrics on one line, aligned tables, learning rates."""

from __future__ import annotations

from typing import Any

from mlgrad.config import is_number


def format_metrics(metrics: dict[str, float | None]) -> str:
    """``train_loss 0.00123, val_loss nan``: metrics for one line (None as nan)."""
    return ", ".join(f"{k} {'nan' if v is None else f'{v:.6g}'}" for k, v in metrics.items())


def lr_text(lr: Any) -> str:
    """A learning rate for the table: the number, a schedule's name, or 'default'."""
    if is_number(lr):
        return f"{lr:g}"
    if isinstance(lr, dict):
        return str(lr.get("name", "schedule"))
    return "default"


def table_text(rows: list[dict], best: int | None) -> str:
    """The rows as an aligned text table; the best run marked '*'; numbers right-aligned."""
    header = ["", *rows[0]]
    lines = [header]
    for i, row in enumerate(rows):
        cells = ["*" if i == best else ""]
        for v in row.values():
            if isinstance(v, bool):
                cells.append("yes" if v else "no")
            elif isinstance(v, float):
                cells.append(f"{v:.6g}")
            else:
                cells.append(str(v))
        lines.append(cells)
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    right = [c > 0 and all(_numeric(line[c]) for line in lines[1:]) for c in range(len(header))]
    return "".join(
        "  ".join(
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(line, widths, right, strict=True)
        ).rstrip()
        + "\n"
        for line in lines
    )


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
