"""`kwsbnn report`: the trade-off study (accuracy against memory) and the search's Pareto front."""

HELP = "trade-off table and plot (accuracy against memory); Pareto front of a search"
DESCRIPTION = """\
kwsbnn report tradeoff [--models M,M,...|none] [--fronts DIR] [--data DIR] [--out DIR] [--json]
  Accuracy against weight memory and peak activation memory for models of the same task; default:
  the shipped float, int8, binary-w24, binary-sign-last, binary and binary-wide models (binary-naive,
  a documented pitfall, only when named). Each precision's models form a front (a line); the table
  below gives each precision's best accuracy within equal weight budgets. With --data the accuracy is measured on
  the split (torch engine); without, the test accuracy recorded for each model: a shipped model's
  record (models/NAME.json, as in the README's table), else the one in the model file.
  --fronts DIR adds every finished run of benchmarks/fronts.py's folder DIR (float, int8, direct,
  redesigned and deep redesigned binary at three to five widths each) to the models (`--models none`: the fronts alone); a run's
  seeds (RUN-s0, RUN-s1, ...) make one point, their mean accuracy. The plot then gets a third panel that
  zooms onto the fronts, each point labelled with its width.
  Writes OUT/tradeoff.json and OUT/tradeoff.png (default OUT: build/reports/, ignored by git).
kwsbnn report pareto (--dir DIR | --storage URL) [--study NAME] [--out DIR] [--json]
  The Pareto front of an architecture search (`kwsbnn search`): validation accuracy (max), weight
  memory bits and cycles per inference (min). A table, OUT/pareto.json and OUT/pareto.png (accuracy
  against weight memory and against cycles, every completed trial, the front, and the shipped
  float, int8, binary-naive and binary models where present). Default OUT: DIR/report, or build/reports/.
  With `kwsbnn search --refine K`, also the refined models (trained again, longer) and the
  recommended one.
kwsbnn report figures [--check]
  The README's table of current figures, generated from models/*.json (and models/*.pt) and the
  build reports in benchmarks/results/build-*.json; prints it and rewrites README.md's table, or
  with --check exits 1 when the README's table differs.
kwsbnn report pareto ... --export TRIAL --to DIR
  Writes the deployable model of trial TRIAL (any completed trial, e.g. a Pareto point) into DIR:
  its refined weights when the search refined it, else the trial's own.
"""

DEFAULT_OUT = "build/reports"       # build/ is ignored by git


def add_arguments(parser):
    parser.add_argument("what", choices=["tradeoff", "pareto", "figures"], help="which report")
    parser.add_argument("--check", action="store_true",
                        help="figures: do not write, exit 1 when the README's table differs")
    parser.add_argument("--models", default=None,
                        help="comma-separated model files or shipped names "
                             "(default float,int8,binary-w24,binary-sign-last,binary,binary-wide)")
    parser.add_argument("--fronts", default=None, metavar="DIR",
                        help="tradeoff: add the finished runs of benchmarks/fronts.py's folder DIR "
                             "(several joined by commas)")
    parser.add_argument("--data", default=None, help="Speech Commands folder to measure accuracy on")
    parser.add_argument("--split", default="test", choices=["test", "validation", "train", "all"],
                        help="split to score (default test); all: every clip in the folder, either layout")
    parser.add_argument("--out", default=None, help="folder for the table and the plot")
    parser.add_argument("--strict", action="store_true",
                        help="an unusable WAV file in --data (tradeoff) is an error (default: skip it, count and "
                             "name it on stderr and in the JSON's `skipped`)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    g = parser.add_argument_group("pareto")
    g.add_argument("--dir", default=None, help="a search folder (`kwsbnn search --out`)")
    g.add_argument("--storage", default=None, metavar="URL", help="the search's Optuna storage URL")
    g.add_argument("--study", default=None, help="study name (needed when the storage holds several)")
    g.add_argument("--accuracy", default="val", choices=["val", "test"],
                   help="accuracy on the plots' y axis (default val: the search's objective)")
    g.add_argument("--no-shipped", action="store_true", help="leave the shipped models out")
    g.add_argument("--export", type=int, default=None, metavar="TRIAL",
                   help="export this trial's model as a deployable model (with --to)")
    g.add_argument("--to", default=None, metavar="DIR", help="deployable folder for --export")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.paths import write_atomic

    if args.what == "pareto":
        return _pareto(args)
    if args.what == "figures":
        return _figures(args)
    from kwsbnn.sw.tradeoff import (DEFAULT_MODELS, equal_memory, format_equal_memory, format_table,
                                    front_runs, merge_seeds, plot_tradeoff, tradeoff)

    refs = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(DEFAULT_MODELS)
    if refs == ["none"]:
        refs = []
    labels = {}
    for folder in (f.strip() for f in (args.fronts or "").split(",") if f.strip()):
        for name, path in front_runs(folder).items():
            labels[path] = name
            refs.append(path)
    if not refs:
        raise KwsError("no models to report", "name some with --models, or give --fronts DIR")
    skipped = None
    if args.data is not None:
        from kwsbnn.sw.skipped import scan
        skipped = scan(args.data, args.strict, "kwsbnn report")
    rows = merge_seeds(tradeoff(refs, data=args.data, split=args.split,
                                progress=lambda m: print(m, file=sys.stderr, flush=True), labels=labels))
    out = Path(args.out or DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "equal_memory": {k: {str(b): a for b, a in v.items()}
                                             for k, v in equal_memory(rows).items()},
              "table": str(out / "tradeoff.json"), "plot": str(out / "tradeoff.png")}
    if skipped is not None:
        result["skipped"] = skipped
    write_atomic(out / "tradeoff.json", json.dumps(rows, indent=2) + "\n")
    plot_tradeoff(rows, out / "tradeoff.png")
    if args.json:
        emit_json(result)
    else:
        print(format_table(rows))
        print()
        print(format_equal_memory(rows))
        print(f"\nwrote {result['table']} and {result['plot']}")
    return 0


def _pareto(args) -> int:
    import sys
    from pathlib import Path

    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.pareto import export_trial, format_refined, format_table, open_search, report

    study, url = open_search(args.dir, args.storage, args.study)
    if args.export is not None:
        if not args.to:
            raise KwsError("--export needs --to DIR (the deployable model folder to write)")
        folder, model = export_trial(study, args.export, args.to)
        result = {"trial": args.export, "deployable": str(folder), "model": model}
        if args.json:
            emit_json(result)
        else:
            print(f"wrote the deployable model of trial {args.export} ({model}) to {folder}")
        return 0
    out = Path(args.out) if args.out else (Path(args.dir) / "report" if args.dir else Path(DEFAULT_OUT))
    result = report(study, url, out, accuracy=f"{args.accuracy}_accuracy", shipped=not args.no_shipped,
                    progress=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        emit_json(result)
    else:
        c = result["counts"]
        print(f"study {result['study']}: {c['complete']} complete, {c['pruned']} pruned, "
              f"{c['rejected']} rejected by the budget, {c['failed']} failed; "
              f"{len(result['pareto'])} on the Pareto front")
        print(format_table(result["pareto"], result["shipped"]))
        if result["refined"]:
            print("\nrefined (trained again, longer; the first is the recommended model):")
            print(format_refined(result["refined"]))
        print(f"\nwrote {result['table']} and {result['plot']}")
    return 0


def _figures(args) -> int:
    import sys

    from kwsbnn.sw import figures
    if args.check:
        ok = figures.check()
        print("README.md figures: up to date" if ok else
              "README.md figures: out of date (run `kwsbnn report figures`)", file=sys.stderr)
        return 0 if ok else 1
    print(figures.table())
    print("README.md: " + ("table rewritten" if figures.write() else "table already current"), file=sys.stderr)
    return 0
