"""The `lossguard` command."""

from __future__ import annotations

import argparse
import os
import sys

from lossguard._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossguard",
        description="Make Keras training runs explain their loss.",
    )
    parser.add_argument(
        "--version", action="version", version=f"lossguard {__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    return parser


def _plot(args) -> int:
    from lossguard.plot import plot_history, read_log

    histories = {}
    for path in args.history:
        if not os.path.exists(path):
            print(f"lossguard plot: no such file: {path}", file=sys.stderr)
            return 2
        histories[os.path.basename(path)] = read_log(path)
    try:
        plot_history(histories, args.output, title=args.title)
    except (ValueError, ImportError) as error:
        print(f"lossguard plot: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


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

    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    x, y = _numbered(arrays, "x"), _numbered(arrays, "y")
    if x is None or y is None:
        raise ValueError(
            f"{path} holds the arrays {sorted(arrays)}; it needs 'x' and 'y' "
            "(or 'x0', 'x1', ... and 'y0', 'y1', ...). Save them with "
            "np.savez(path, x=x, y=y)."
        )
    return x, y, arrays.get("sample_weight")


def _diagnose(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for path in (args.model, args.data):
        if not os.path.exists(path):
            print(f"lossguard diagnose: no such file: {path}", file=sys.stderr)
            return 2
    try:
        x, y, weights = load_npz(args.data)
    except (ValueError, OSError) as error:
        print(f"lossguard diagnose: {error}", file=sys.stderr)
        return 2
    import keras

    import lossguard

    try:
        model = keras.saving.load_model(args.model)
    except Exception as error:  # noqa: BLE001 - reported, exit code 2
        print(
            f"lossguard diagnose: cannot load the model {args.model}: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 2
    try:
        report = lossguard.diagnose(
            model, x, y, weights, batches=args.batches, batch_size=args.batch_size
        )
    except ValueError as error:
        print(f"lossguard diagnose: {error}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report)
    return 1 if report.errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from lossguard.demo import run

        result = run(out_dir=args.out, epochs=args.epochs)
        return 1 if result["fixed"].report.has("warning") else 0
    if args.command == "diagnose":
        return _diagnose(args)
    if args.command == "plot":
        return _plot(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
