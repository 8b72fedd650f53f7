"""The `lossguard` command: its implementation is `lossguard_cli`, beside the
package, so that `--help`, `--version`, `explain`, `plot` and user errors
answer without importing Keras; this module keeps `lossguard.cli.main`."""

from __future__ import annotations

from lossguard_cli import build_parser, load_npz, main

__all__ = ["build_parser", "load_npz", "main"]
