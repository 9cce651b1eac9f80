"""The ``adpdm`` command: a thin layer over the Python API, one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)``, which registers its parser and
sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit
code) as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..utils.resources import source_commit

# Subcommand modules, in the order `adpdm --help` lists them.
COMMANDS = (
    "demo", "train", "quantize", "sample", "evaluate", "analyze", "bench", "export", "bench_deploy", "fid_stats",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adpdm", description="Data-free post-training quantization of diffusion models (ADP-DM)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"adpdm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"adpdm.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"adpdm.cli.{name}":
                raise
            continue  # not implemented yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    source_commit()  # results name the commit the run started from, as their version is the one imported
    try:
        code = int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        logging.getLogger("adpdm").error("%s", err)
        return 2
    from ..distributed import finish_processes

    finish_processes()  # under `accelerate launch`: every process leaves together
    return code


if __name__ == "__main__":
    sys.exit(main())
