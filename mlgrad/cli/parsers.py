"""The ``mlgrad`` command line's arguments (argparse only: nothing here imports JAX, so
``--help`` and argument errors answer at once)."""

from __future__ import annotations

import argparse
import difflib
import math

COMMANDS = ("train", "eval", "sweep", "configs", "draw", "curvature")
#: The pictures of ``mlgrad draw`` (mlgrad.draw's functions of the same names).
DRAW_NAMES = ("secants", "taylor", "linearization", "surface", "graph")


def _version() -> str:
    try:
        import mlgrad

        return str(mlgrad.__version__)
    except (ImportError, AttributeError):  # pragma: no cover
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mlgrad")
        except PackageNotFoundError:
            return "unknown"


_DESCRIPTION = (
    "Train the lecture notes' example models with XLA-compiled gradient descent, from a "
    "config file. Exit codes: 0 success, 1 failure during training, 2 usage/config/data error."
)


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlgrad",
        description=_DESCRIPTION,
        epilog="Run 'mlgrad COMMAND --help' for a command's options. Example: "
        "mlgrad train configs/linear_regression.yaml train.steps=500",
    )
    parser.add_argument("--version", action="version", version=f"mlgrad {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train a model from a config into a run directory")
    sub.add_parser("eval", help="report the metrics of a saved run from its latest checkpoint")
    sub.add_parser(
        "sweep", help="train every combination of config values (seeds x learning rates vmapped)"
    )
    sub.add_parser("configs", help="list the built-in configs, or write one out to edit")
    sub.add_parser(
        "draw",
        help="draw a picture of the lecture notes from the real derivatives (secants, "
        "Taylor polynomials, a saddle, the backpropagation graph)",
    )
    sub.add_parser(
        "curvature",
        help="is the trained model at the bottom of a cup? The Hessian of a finished run's "
        "training loss: eigenvalues, verdict, condition number, stability limit, figures",
    )
    return parser


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlgrad train",
        description="Train the model of CONFIG (a YAML file) and write a run directory with the "
        "resolved config, metrics.jsonl, checkpoints, summary.json and PNG plots.",
        epilog="Examples:\n"
        "  mlgrad train configs/linear_regression.yaml\n"
        "  mlgrad train configs/linear_regression.yaml optimizer.learning_rate=0.05 "
        "train.steps=500\n"
        "  mlgrad train configs/linear_regression_multi.yaml data.features=[temp,price]\n"
        "  mlgrad train configs/logistic.yaml --out runs/lr --resume train.steps=6000\n"
        "  mlgrad train configs/autoencoder.yaml --out runs/ae --auto-resume   # preemptible",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        metavar="CONFIG",
        help="the run config: a YAML file, or a built-in config's name (see 'mlgrad configs')",
    )
    p.add_argument(
        "overrides",
        metavar="KEY=VALUE",
        nargs="*",
        help="dotted overrides applied to the config, e.g. train.steps=500 "
        "data.features=[temp,price] (values are YAML)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="the run directory (default: runs/<name>-<UTC timestamp> under the current "
        "directory); an existing non-empty DIR is refused unless --resume is given",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its latest checkpoint up to train.steps; "
        "any other change to the saved config is refused",
    )
    p.add_argument(
        "--auto-resume",
        action="store_true",
        help="start the run in --out DIR if DIR holds none, else continue it as --resume "
        "does: one command for preemptible machines, run again after every preemption",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config and the data, print the resolved config, write nothing",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info lines")
    p.add_argument("--no-plots", action="store_true", help="skip writing the PNG figures")
    group = p.add_argument_group(
        "several processes",
        "one process per host; each runs the same command with its own --process-id\n"
        "and the same --out, on a file system all hosts share",
    )
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="address of process 0's coordinator (default: $JAX_COORDINATOR_ADDRESS); "
        "given, the processes join with jax.distributed.initialize",
    )
    group.add_argument(
        "--num-processes",
        metavar="N",
        type=int,
        help="how many processes take part (default: $JAX_NUM_PROCESSES, or what JAX detects "
        "on a cluster such as SLURM)",
    )
    group.add_argument(
        "--process-id",
        metavar="I",
        type=int,
        help="this process's index, 0 to N-1 (default: $JAX_PROCESS_ID, or detected); "
        "process 0 writes the logs, plots and summary",
    )
    group.add_argument(
        "--join-timeout",
        metavar="SECONDS",
        type=float,
        help="how long to wait for the coordinator and every process to join; then exit 2 "
        "(default: $MLGRAD_JOIN_TIMEOUT_S, else 60)",
    )
    return p


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlgrad eval",
        description="Report the metrics of a saved run (its latest checkpoint) on the training "
        "and validation splits. Writes nothing.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by mlgrad train")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return p


def _positive_float(text: str) -> float:
    """A number > 0 (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number > 0")
    return value


def _positive_int(text: str) -> int:
    """An integer >= 1 (an argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give an integer >= 1")
    return value


def curvature_parser() -> argparse.ArgumentParser:
    """The options of ``mlgrad curvature``."""
    p = argparse.ArgumentParser(
        prog="mlgrad curvature",
        description="Is the trained model at the bottom of a cup? Loads a finished run's "
        "latest checkpoint and computes, in float64, the Hessian of the training loss over "
        "the parameters the model trains (for the regression models: the intercept and the "
        "weights of the standardised features, whose Hessian is 2 Z^T Z / n): its top and "
        "bottom eigenvalues (all of them up to 2000 parameters, else by Lanczos), the verdict "
        "(cup, upside-down cup, saddle, or flat within a tolerance relative to max|λ|), the "
        "condition number, the stability limit of the run's optimizer at the checkpoint's "
        "learning rate (2/η for gradient descent, 2(1+β)/η with momentum β, Nesterov's, and "
        "Adam's preconditioned sharpness against 2(1+β1)/((1-β1)η)) and where the run stands "
        "against it, the spectral density, and the loss landscape along the top eigenvectors "
        "and filter-normalised random directions. Writes curvature.json, "
        "curvature_spectrum.png and curvature_landscape.png into RUN_DIR (or --out DIR), each "
        "whole or not at all. Exit codes: 0 written, 2 a missing or unfinished run or another "
        "usage error (nothing written).",
        epilog="Examples:\n"
        "  mlgrad train configs/linear_regression.yaml --out runs/lr\n"
        "  mlgrad curvature runs/lr\n"
        "  mlgrad curvature runs/ae --out figures/ae --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory that mlgrad train finished")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write the files into DIR instead of RUN_DIR (created if missing)",
    )
    p.add_argument(
        "--flat-tol",
        metavar="RTOL",
        type=_positive_float,
        default=None,
        help="eigenvalues within RTOL x max|λ| of zero count as flat (default 1e-5)",
    )
    p.add_argument(
        "-k",
        metavar="K",
        type=_positive_int,
        default=5,
        help="how many of the largest and smallest eigenvalues to report (default 5; beyond "
        "2000 parameters Lanczos finds the smallest one)",
    )
    p.add_argument("--json", action="store_true", help="print curvature.json instead of a summary")
    p.add_argument("--no-plots", action="store_true", help="write curvature.json only")
    return p


def sweep_parser() -> argparse.ArgumentParser:
    """The options of ``mlgrad sweep``."""
    p = argparse.ArgumentParser(
        prog="mlgrad sweep",
        description="Train every combination of the given config values (the Cartesian "
        "product, in argument order). Runs that differ only in seed and "
        "optimizer.learning_rate train as one vmapped, compiled program; other swept keys "
        "(layer sizes, features, ...) make groups trained one after the other. Writes "
        "sweep.csv, sweep.json, config.yaml and loss_curves.png into one run directory and "
        "prints the table of runs (the best marked *). Ctrl-C or SIGTERM stops it within about a "
        "second, saving its progress for --resume. Exit codes: 0 done (diverged runs are "
        "reported, not fatal), 1 every run diverged or training failed, 2 usage/config/data "
        "error (nothing written), 130 or 143 interrupted (resumable).",
        epilog="Examples:\n"
        "  mlgrad sweep configs/linear_regression.yaml seed=0,1,2 "
        "optimizer.learning_rate=0.01,0.1,1.0\n"
        "  mlgrad sweep configs/linear_regression_multi.yaml "
        "data.features=[temp],[temp,price] optimizer.learning_rate=0.1,0.3 train.steps=300\n"
        "  mlgrad sweep configs/autoencoder.yaml model.latent=4,8,16 seed=0,1 --out runs/ae",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        metavar="CONFIG",
        help="the base run config: a YAML file, or a built-in config's name",
    )
    p.add_argument(
        "axes",
        metavar="KEY=V1,V2,...",
        nargs="*",
        help="a dotted key and its values, split on top-level commas (lists such as "
        "[temp,price] and quoted strings stay whole; each value is YAML, as in mlgrad train); "
        "one value is a plain override of every run",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="the run directory (default: runs/<name>-sweep-<UTC timestamp>); must be new or "
        "empty unless --resume is given",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep in --out DIR (stopped by Ctrl-C or SIGTERM, or "
        "killed): groups already done are kept, the group being trained continues from its "
        "last checkpoint; CONFIG and the KEY=V1,V2,... arguments must be the same",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every combination, print the runs and their groups, write nothing",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no info lines on stderr")
    p.add_argument("--no-plots", action="store_true", help="skip loss_curves.png")
    return p


def configs_parser() -> argparse.ArgumentParser:
    """The options of ``mlgrad configs``."""
    p = argparse.ArgumentParser(
        prog="mlgrad configs",
        description="The built-in run configs, shipped inside the package: without NAME, list "
        "them (one line each); with NAME, print that config; with --copy, write it to "
        "DIR/NAME.yaml to edit (an existing file is never overwritten).",
        epilog="Examples:\n"
        "  mlgrad configs\n"
        "  mlgrad configs logistic --copy      # writes ./logistic.yaml\n"
        "  mlgrad train logistic.yaml optimizer.learning_rate=0.5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="a built-in config's name")
    p.add_argument(
        "--copy",
        metavar="DIR",
        nargs="?",
        const=".",
        help="write NAME.yaml into DIR (default: the current directory)",
    )
    return p


def _numbers(text: str) -> tuple[float, ...]:
    """``"2,1,0.5"`` -> ``(2.0, 1.0, 0.5)`` (an argparse type: a bad value is a usage error)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: the numbers must be finite")
    return values


def _orders(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: integers >= 0."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: the orders must be >= 0")
    return values


def draw_parser() -> argparse.ArgumentParser:
    """The options of ``mlgrad draw``."""
    p = argparse.ArgumentParser(
        prog="mlgrad draw",
        description="Draw one picture of the lecture notes from the real derivatives (mlgrad.draw) "
        "and write it to --out FILE (PNG, PDF or SVG by its suffix; the graph also as .dot, "
        "Graphviz text). Without --function and --at each picture is the notes' own example: "
        "secants of t^2 at t = 1 for steps 2, 1, 0.5 (seed 003); Taylor polynomials of "
        "sin(x) + cos(x) at 0 (seed 004); the linearization of sqrt(x) at 4, error at 4.001 "
        "(seed 003); the saddle x^2 - y^2 at (0, 0) (seed 001); the backpropagation graph of "
        "sqrt(x^2 + exp(x^2)) + cos(x^2 + exp(x^2)) at 0.5 (seed 003). The file is written "
        "whole or not at all; an existing one is replaced. Exit codes: 0 written, 2 usage "
        "error (nothing written).",
        epilog="Examples:\n"
        "  mlgrad draw secants --out secants.png\n"
        "  mlgrad draw taylor --function 'exp(x)' --at 0 --orders 1,2,4 --out taylor.pdf\n"
        "  mlgrad draw surface --function 'x^2 + x*y + y^2' --at=-1,0.5 --out cup.png\n"
        "  mlgrad draw graph --function 'x*y + sin(x)' --at 1,2 --out graph.svg\n"
        "Formulas: + - * / ^ (or **), numbers, pi, e, and sin cos tan exp log sqrt abs tanh "
        "sinh cosh arctan arcsin sigmoid relu softplus. Write a negative first value as "
        "--at=-1,2.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "name",
        metavar="NAME",
        choices=DRAW_NAMES,
        help=f"the picture: {', '.join(DRAW_NAMES)}",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        required=True,
        help="the file to write: .png, .pdf or .svg (graph: also .dot)",
    )
    p.add_argument(
        "-f",
        "--function",
        metavar="EXPR",
        help="the function as a formula in its variables, e.g. 'sin(x) + cos(x)' (surface: "
        "x and y; graph: its variables in alphabetical order)",
    )
    p.add_argument(
        "--at",
        metavar="X[,Y...]",
        type=_numbers,
        help="the point: x0 (surface: x0,y0; graph: one value per variable)",
    )
    p.add_argument(
        "--steps", metavar="H,...", type=_numbers, help="secants: the steps (default 2,1,0.5)"
    )
    p.add_argument(
        "--orders",
        metavar="N,...",
        type=_orders,
        help="taylor: the polynomial orders (default 0,1,2,3,5)",
    )
    p.add_argument(
        "--x",
        metavar="X",
        type=float,
        help="linearization: the point to show the error at (the notes' example: 4.001)",
    )
    p.add_argument(
        "--xlim",
        metavar="LO,HI",
        type=_numbers,
        help="secants, taylor, linearization: the x window",
    )
    p.add_argument(
        "--extent", metavar="R", type=float, help="surface: the window's half-width (default 2)"
    )
    p.add_argument(
        "--view",
        choices=("both", "contour", "3d"),
        help="surface: contours beside the 3-D surface (both, the default), or one of them",
    )
    p.add_argument("--label", metavar="TEXT", help="the function's label (not for graph)")
    return p


def parse(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """Dispatches on the command, then parses its options (overrides may come anywhere)."""
    top = main_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv)  # --help / --version exit here; anything else is an error
        top.error(f"missing COMMAND ({', '.join(COMMANDS)})")
    command = argv[0]
    if command not in COMMANDS:
        match = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean '{match[0]}'?" if match else ""
        top.error(f"unknown command {command!r}{hint} (choose from {', '.join(COMMANDS)})")
    parser = {
        "train": train_parser,
        "eval": eval_parser,
        "sweep": sweep_parser,
        "configs": configs_parser,
        "draw": draw_parser,
        "curvature": curvature_parser,
    }[command]()
    return command, parser.parse_intermixed_args(argv[1:])
