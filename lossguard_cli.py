"""The `lossguard` console script: fast answers, clean errors, TensorFlow only
where a command needs it.

This module sits beside the `lossguard` package (like `lossguard_pytest`):
importing anything inside the package runs its `__init__`, which imports
Keras and TensorFlow (seconds). `--help`, `--version`, bad arguments, missing
or unreadable files, `explain` and `plot` are answered here without that
import; `demo` and `diagnose` import the package once their arguments and
files have been checked. Every user error is one line on stderr and exit
code 2; exit code 1 means `diagnose` found an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import zipfile
from pathlib import Path


class UserError(Exception):
    """A problem with what the user gave: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument said in one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def package_dir() -> Path:
    """The installed `lossguard` package's folder, found without importing it."""
    spec = importlib.util.find_spec("lossguard")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the lossguard package is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def version() -> str:
    """`lossguard.__version__`, read from `_version.py` without importing."""
    namespace: dict = {}
    exec((package_dir() / "_version.py").read_text(), namespace)  # noqa: S102
    return namespace["__version__"]


def _standalone(name: str):
    """A module of the package that imports nothing of it (`plot`,
    `catalogue`), loaded from its file: no package `__init__`, no Keras."""
    qualified = f"lossguard_cli.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(
        qualified, package_dir() / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lossguard",
        description="Make Keras training runs explain their loss.",
    )
    parser.add_argument("--version", action="version", version=f"lossguard {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo = sub.add_parser(
        "demo", help="train a broken and a fixed GloVe seq2seq and explain the loss"
    )
    demo.add_argument("--out", default="lossguard-demo", help="output folder")
    demo.add_argument("--epochs", type=int, default=4)
    diag = sub.add_parser(
        "diagnose",
        help="explain a saved model's loss on saved data (exit 1 on an error)",
        description="Load a saved Keras model and arrays from an .npz file, run "
        "lossguard.diagnose on a few batches and print the report. Arrays: "
        "'x' and 'y', or 'x0', 'x1', ... for several inputs (and 'y0', 'y1', "
        "... for several outputs); 'sample_weight' is optional. Exit code 1 "
        "when an error finding exists, 2 when the files cannot be used.",
    )
    diag.add_argument("model", help="a saved model (.keras)")
    diag.add_argument("data", help="an .npz file with the arrays")
    diag.add_argument("--batches", type=int, default=8)
    diag.add_argument("--batch-size", type=int, default=32)
    diag.add_argument("--json", action="store_true", help="print JSON instead")
    plot = sub.add_parser(
        "plot",
        help="plot a history CSV/Parquet: per-batch loss, findings, statistics",
    )
    plot.add_argument("history", nargs="+", help="LossSanityCallback log files")
    plot.add_argument("-o", "--output", default="loss.png", help="image path")
    plot.add_argument("--title", default="per-batch loss")
    explain = sub.add_parser(
        "explain",
        help="a fault code's mechanism, evidence and fix (no code: list them)",
        description="Print a fault code's section of the catalogue (mechanism, "
        "evidence, fix, reproduction), offline, from the installed package; "
        "with no code, list every code with its severity and summary.",
    )
    explain.add_argument("code", nargs="?", help="a fault code, e.g. NEGATIVE_LABELS")
    return parser


# ------------------------------------------------------------------ explain
def _explain(args) -> int:
    catalogue = _standalone("catalogue")
    if args.code is None:
        print(catalogue.listing())
        return 0
    section = catalogue.section(args.code)
    if section is None:
        codes = ", ".join(catalogue.codes())
        raise UserError(f"no fault code {args.code!r}; the codes are: {codes}")
    print(section)
    return 0


# --------------------------------------------------------------------- plot
def _writable_output(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {path}: the folder {folder} is not writable")


def _plot(args) -> int:
    plot = _standalone("plot")
    for path in args.history:
        if not os.path.exists(path):
            raise UserError(f"no such file: {path}")
    _writable_output(args.output)
    histories = {}
    for path in args.history:
        try:
            histories[os.path.basename(path)] = plot.read_log(path)
        except Exception as error:  # noqa: BLE001 - any reader's error
            raise UserError(f"cannot read {path}: {_one_line(error)}") from error
    try:
        plot.plot_history(histories, args.output, title=args.title)
    except (ValueError, ImportError, OSError) as error:
        raise UserError(_one_line(error)) from error
    print(f"wrote {args.output}")
    return 0


# ----------------------------------------------------------------- diagnose
def _numbered(arrays, prefix):
    """'x' itself, or 'x0', 'x1', ... as a list, or None."""
    if prefix in arrays:
        return arrays[prefix]
    names = sorted(
        (n for n in arrays if n[len(prefix) :].isdigit() and n.startswith(prefix)),
        key=lambda n: int(n[len(prefix) :]),
    )
    if not names:
        return None
    if [int(n[len(prefix) :]) for n in names] != list(range(len(names))):
        raise ValueError(
            f"Arrays {names} must be numbered from {prefix}0 without gaps."
        )
    found = [arrays[n] for n in names]
    return found[0] if len(found) == 1 else found


def load_npz(path):
    """(x, y, sample_weight) from an .npz file, with errors that name the fix."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not a readable .npz file ({_one_line(error)}); save the "
            "arrays with np.savez(path, x=x, y=y)"
        ) from error
    x, y = _numbered(arrays, "x"), _numbered(arrays, "y")
    if x is None or y is None:
        raise ValueError(
            f"{path} holds the arrays {sorted(arrays)}; it needs 'x' and 'y' "
            "(or 'x0', 'x1', ... and 'y0', 'y1', ...). Save them with "
            "np.savez(path, x=x, y=y)."
        )
    return x, y, arrays.get("sample_weight")


def _load_model(path):
    import keras

    import lossguard  # noqa: F401 - registers lossguard's losses for loading

    try:
        return keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 - reported, exit code 2
        detail = _one_line(error)
        if not zipfile.is_zipfile(path) or "File not found" in detail:
            detail = (
                "it is not a Keras model archive (a .keras file saved with "
                f"model.save(path)); Keras says: {detail}"
            )
        raise UserError(f"cannot load the model {path}: {detail}") from error


def _diagnose(args) -> int:
    for path in (args.model, args.data):
        if not os.path.exists(path):
            raise UserError(f"no such file: {path}")
    try:
        x, y, weights = load_npz(args.data)
    except ValueError as error:
        raise UserError(str(error)) from error
    quiet_tensorflow_start()
    model = _load_model(args.model)
    import lossguard

    try:
        report = lossguard.diagnose(
            model, x, y, weights, batches=args.batches, batch_size=args.batch_size
        )
    except ValueError as error:
        raise UserError(_one_line(error)) from error
    print(report.to_json() if args.json else report)
    return 1 if report.errors else 0


def _demo(args) -> int:
    quiet_tensorflow_start()
    from lossguard.demo import run

    result = run(out_dir=args.out, epochs=args.epochs)
    return 1 if result["fixed"].report.has("warning") else 0


def _one_line(error) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


# -------------------------------------------------------------------- start
def quiet_tensorflow_start():
    """Import TensorFlow without its start-up log lines, unless asked for them.

    TensorFlow's C++ logging writes oneDNN/CUDA/absl lines to the process's
    stderr while it is imported, before `TF_CPP_MIN_LOG_LEVEL` is read by
    every part of it (some are written whatever it says); so, unless the user
    set that variable below 3 to see them, the command sets it to 3 and holds
    stderr (file descriptor 2) while TensorFlow and Keras import. What was
    held is written out if the import fails.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if level != "3" or "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


COMMANDS = {"demo": _demo, "diagnose": _diagnose, "plot": _plot, "explain": _explain}


def main(argv: list[str] | None = None) -> int:
    """`lossguard ...`: 0 done, 1 an error finding, 2 a user error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"lossguard {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
