"""The type check of .ci/run (python .ci/typecheck.py, from the repository root).

1. mypy on the package (pyproject.toml's [tool.mypy] files: mlgrad, models, configs) and on
   each ```python block of README.md (written to a temporary file, checked as its own
   module): no errors.
2. mypy on tests/typecheck/wrong_usage.py: exactly the errors its ``# E: <code>`` comments
   mark (line and error code), so that a check that lets everything pass fails here.

Exit status 0 when both hold; 1 otherwise, with mypy's output.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRONG = Path("tests/typecheck/wrong_usage.py")


def mypy(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True
    )
    return proc.returncode, proc.stdout + proc.stderr


def readme_blocks() -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block of README.md."""
    blocks, start, lines = [], None, []
    for number, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        if start is None and line.strip() == "```python":
            start, lines = number + 1, []
        elif start is not None and line.strip() == "```":
            blocks.append((start, "\n".join(lines) + "\n"))
            start = None
        elif start is not None:
            lines.append(line)
    return blocks


def main() -> int:
    t0 = time.perf_counter()
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    blocks = readme_blocks()
    if not blocks:
        print("typecheck: README.md has no ```python block")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        samples = []
        for start, code in blocks:
            path = Path(tmp) / f"readme_line_{start}.py"  # README.md's line of the block
            path.write_text(code)
            samples.append(str(path))
        code, out = mypy(*files, *samples)
    # an error in block k at its line L is README.md's line (first line of the block) + L - 1
    out = re.sub(
        r"\S*readme_line_(\d+)\.py:(\d+):",
        lambda m: f"README.md:{int(m[1]) + int(m[2]) - 1}:",
        out,
    )
    if code != 0:
        print(f"typecheck: mypy found errors in the package or the README's code:\n{out}")
        return 1
    print(f"typecheck: {', '.join(files)} and {len(blocks)} README block(s): {out.strip()}")

    expected = {
        (number, m[1])
        for number, line in enumerate((ROOT / WRONG).read_text().splitlines(), 1)
        if (m := re.search(r"# E: ([a-z-]+)\s*$", line))
    }
    code, out = mypy(str(WRONG))
    found = {
        (int(m[1]), m[2])
        for m in re.finditer(rf"^{re.escape(str(WRONG))}:(\d+): error: .*\[([a-z-]+)\]$", out, re.M)
    }
    if code != 1 or found != expected:
        print(
            f"typecheck: {WRONG} must fail with exactly the errors it marks.\n"
            f"  marked but not reported: {sorted(expected - found)}\n"
            f"  reported but not marked: {sorted(found - expected)}\n{out}"
        )
        return 1
    print(f"typecheck: {WRONG}: the {len(expected)} marked errors, and only those")
    print(f"typecheck: done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
