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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from lossguard.demo import run

        result = run(out_dir=args.out, epochs=args.epochs)
        return 1 if result["fixed"].report.has("warning") else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
