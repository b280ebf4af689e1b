"""``devbox-node-shim``: the node-shim's command line."""

from __future__ import annotations

import argparse
import sys

from devbox_node_shim import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devbox-node-shim",
        description="Commit devbox containers to images and push them (one per node).",
    )
    parser.add_argument("--version", action="version", version=f"devbox-node-shim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
