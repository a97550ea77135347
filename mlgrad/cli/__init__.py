"""The ``mlgrad`` command line: parse the arguments, call :mod:`mlgrad.runs`, map its
exceptions to exit codes and one ``error:`` paragraph. Nothing else lives here.

::

    mlgrad train CONFIG [key=value ...] [--out DIR] [--resume] [--dry-run] [--quiet]
    mlgrad eval RUN_DIR [--json]
    mlgrad sweep CONFIG [key=v1,v2,... ...] [--out DIR] [--dry-run] [--quiet]
    mlgrad draw NAME [--function EXPR] [--at X[,Y]] [options] --out FILE
    mlgrad curvature RUN_DIR [--out DIR] [--flat-tol RTOL] [-k K] [--json] [--no-plots]

Exit codes: 0 success; 2 a usage, config or data error (reported before anything is written);
1 a failure during training (divergence, a disk error); 130 interrupted.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence

from mlgrad.cli import _startup
from mlgrad.cli._startup import started_up
from mlgrad.cli.parsers import parse

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_INTERRUPTED = {
    "train": "interrupted; continue with: mlgrad train CONFIG --out RUN_DIR --resume",
    "eval": "interrupted",
    "sweep": "interrupted before the sweep started training; nothing was written",
    "draw": "interrupted; nothing was written",
    "configs": "interrupted",
    "curvature": "interrupted; each file of curvature.json and its figures is whole or absent",
}


def _error(text: str) -> None:
    print(f"error: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``mlgrad`` command line; returns the exit code (the console script exits
    with it).

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 success; 1 failure during training; 2 usage, config or data error (nothing
        written); 130 interrupted.

    Example:
        >>> main(["train", "configs/linear_regression.yaml", "--dry-run"])  # doctest: +SKIP
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, args = parse(argv)
    except SystemExit as e:  # argparse: --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE

    from mlgrad.cli import commands
    from mlgrad.config import ConfigError
    from mlgrad.data import DataError
    from mlgrad.runs import Interrupted, RunError, UsageError

    if command != "train":  # train: once its imports are done (commands.train)
        started_up()
    try:
        return commands.COMMANDS[command](args)
    except (ConfigError, DataError, UsageError) as e:
        _error(str(e))
        return EXIT_USAGE
    except RunError as e:
        _error(str(e))
        return EXIT_FAILURE
    except Interrupted as e:  # stopped on request, progress saved: how to continue
        _error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _error(_INTERRUPTED.get(command, "interrupted"))
        return EXIT_INTERRUPTED
    except Exception as e:
        if os.environ.get("MLGRAD_DEBUG"):
            raise
        _error(
            f"{command} failed unexpectedly: {type(e).__name__}: {e}. This is likely a bug "
            "in mlgrad; rerun with MLGRAD_DEBUG=1 for the traceback and report it."
        )
        return EXIT_FAILURE


def console() -> None:
    """The ``mlgrad`` program (the console script, ``python -m mlgrad``): :func:`main`, then
    exit with its code.

    A short-lived process that imports JAX makes about a million long-lived objects; the
    cyclic garbage collector would walk them again and again for nothing. It is held off
    while the command starts up (until :func:`started_up`: imports, config, data, model),
    and before exit everything is frozen, so the interpreter's own teardown does not walk
    them either (0.3-0.5 s of a run otherwise). Only here: :func:`main` called from Python
    leaves the caller's collector alone.
    """
    if gc.isenabled():
        _startup.hold_collector()
    try:
        code = main()
    finally:
        started_up()
    gc.freeze()  # every file is closed and flushed: the teardown only frees memory
    sys.exit(code)


__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "console", "main"]
