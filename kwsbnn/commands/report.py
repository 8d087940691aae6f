"""`kwsbnn report`: the trade-off study (accuracy against memory) and the search's Pareto front."""

HELP = "trade-off table and plot (accuracy against memory); Pareto front of a search"
DESCRIPTION = """\
kwsbnn report tradeoff [--models M,M,...] [--data DIR] [--out DIR] [--json]
  Accuracy against weight memory and peak activation memory for models of the same task; default:
  the shipped float, int8, binary-naive and binary models. With --data the accuracy is measured on
  the split (torch engine); without, the test accuracy recorded in each model file is used.
  Writes OUT/tradeoff.json and OUT/tradeoff.png (default OUT: reports/).
kwsbnn report pareto ...
  The Pareto front of an architecture search (not built yet).
"""


def add_arguments(parser):
    parser.add_argument("what", choices=["tradeoff", "pareto"], help="which report")
    parser.add_argument("--models", default=None,
                        help="comma-separated model files or shipped names "
                             "(default float,int8,binary-naive,binary)")
    parser.add_argument("--data", default=None, help="Speech Commands folder to measure accuracy on")
    parser.add_argument("--split", default="test", choices=["test", "validation", "train", "all"])
    parser.add_argument("--out", default="reports", help="folder for the table and the plot")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.paths import write_atomic

    if args.what == "pareto":
        raise KwsError("`kwsbnn report pareto` is not built yet (the architecture-search issue)",
                       "use `kwsbnn report tradeoff`")
    from kwsbnn.sw.tradeoff import DEFAULT_MODELS, format_table, plot_tradeoff, tradeoff

    refs = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(DEFAULT_MODELS)
    rows = tradeoff(refs, data=args.data, split=args.split,
                    progress=lambda m: print(m, file=sys.stderr, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "table": str(out / "tradeoff.json"), "plot": str(out / "tradeoff.png")}
    write_atomic(out / "tradeoff.json", json.dumps(rows, indent=2) + "\n")
    plot_tradeoff(rows, out / "tradeoff.png")
    if args.json:
        emit_json(result)
    else:
        print(format_table(rows))
        print(f"\nwrote {result['table']} and {result['plot']}")
    return 0
