"""The `kwsbnn` command line: one subcommand per stage of the flow.

Each subcommand lives in ``kwsbnn/commands/<name>.py`` with ``HELP`` (one line), ``add_arguments
(parser)`` and ``run(args) -> int``. A :class:`KwsError` is printed without a traceback (exit 2).
With ``--json`` a command prints exactly one JSON object on stdout; progress goes to stderr.
"""

import argparse
import importlib
import json
import sys

from .errors import KwsError

COMMANDS = ["data", "train", "eval", "export", "verilog", "build", "run", "search", "report", "demo",
            "synth"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kwsbnn",
        description="Binary neural-network keyword spotting: train, export, generate Verilog, "
                    "simulate and build FPGA bitstreams.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"kwsbnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f".commands.{name}", __package__)
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def emit_json(obj) -> None:
    """Print one JSON object on stdout (the contract of every ``--json`` flag)."""
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=_json_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(o):
    import numpy as np
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KwsError as e:
        print(f"kwsbnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kwsbnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
