"""`kwsbnn verilog`: generate the accelerator's Verilog, memory images and cost report."""

import sys

HELP = "generate the accelerator's Verilog for a model"
DESCRIPTION = """\
Generate the streaming XNOR-popcount accelerator of a model as Verilog (top module kws_top), copy the
memory images it is built from, and write report.json (cycles per inference, initiation interval,
memory bits, lanes, estimated logic cells, block RAMs and DSPs for iCE40 and ECP5, per-layer entries).
--model takes a deployable folder, a model file, a shipped model's name or `tiny`. With --board, --fold
auto chooses the fastest folding whose resource estimate fits that board (a network that does not fit
even at its smallest folding is an error; a network on the integer residual stream, which only the
engine style runs, gets the engine folding closest to fitting and a warning). A network the
generator cannot build is reported before anything is written.
"""


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="deployable folder, model file, shipped name or tiny")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--fold", default="auto", help="folding: auto or a JSON file "
                        '{"layers": {"NAME": {"pe": P, "simd": S}}}; auto is the default folding, '
                        "or with --board the fastest one that fits the board")
    parser.add_argument("--board", "--budget", dest="board", default=None, metavar="BOARD",
                        help="fit this board's logic cells, block RAMs and DSPs (icebreaker, ulx3s-85f), "
                             "counting its UART and protocol logic")
    parser.add_argument("--margin", type=float, default=None, metavar="F",
                        help="with --board: share of the board's logic cells the estimate may use "
                             "(default 0.97 on iCE40, 0.9 on ECP5; block RAMs and DSPs: all)")
    parser.add_argument("--target-ips", type=float, default=None, metavar="N",
                        help="choose the folding for N inferences per second (balanced layers)")
    parser.add_argument("--clock-mhz", type=float, default=24.0,
                        help="clock for --target-ips (default 24 MHz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import json
    from pathlib import Path

    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.hw.cost import Folding
    from kwsbnn.hw.folding import budget_check, for_budget, for_ips
    from kwsbnn.hw.resources import annotate_report
    from kwsbnn.hw.verilog import generate
    from kwsbnn.paths import write_atomic
    from kwsbnn.sw.export import deployable

    if args.margin is not None and args.board is None:
        raise KwsError("--margin needs --board", "add --board icebreaker or --board ulx3s-85f")
    margin = None if args.margin is None else {"logic_cells": args.margin, "flip_flops": args.margin}
    dep = deployable(args.model)
    if args.target_ips is not None:
        if args.fold != "auto":
            raise KwsError("give either --fold FILE or --target-ips, not both")
        folding = for_ips(dep, args.target_ips, args.clock_mhz * 1e6)
    elif args.fold == "auto" and args.board:
        try:
            folding = for_budget(dep, args.board, margin=margin)
        except KwsError:
            from kwsbnn.hw.plan import is_stream
            if not is_stream(dep):
                raise
            # Only the engine style runs the integer residual stream: its folding closest to
            # fitting, with the warning below (a weight memory too small is still an error).
            from kwsbnn.hw.folding import engine_for_budget, resolve_budget
            folding = engine_for_budget(dep, resolve_budget(args.board, margin), closest=True)
    elif args.fold == "auto":
        folding = Folding.default(dep)
    else:
        folding = Folding.load(args.fold, dep)
    check = budget_check(dep, folding, args.board, margin=margin) if args.board else None
    if check is not None and not check["fits"]:
        board_parts = (" (with the UART, the streaming ring in SPRAM and the weight loader)"
                       if folding.style == "engine" and folding.memory != "bram" else
                       " (with the UART and the streaming ring)")
        print(f"kwsbnn verilog: warning: this folding does not fit {check['board']} by the estimate"
              f"{board_parts}: {check['text']}", file=sys.stderr)
    report = generate(dep, args.out, folding)
    annotate_report(report, dep, folding, check)
    write_atomic(Path(args.out) / "report.json", json.dumps(report, indent=1) + "\n")
    if args.json:
        emit_json(report)
    else:
        if args.target_ips is not None:
            ips = args.clock_mhz * 1e6 / report["cycles_per_inference"]
            print(f"folding for {args.target_ips:g} inferences/s at {args.clock_mhz:g} MHz: "
                  f"{ips:.0f} inferences/s")
        print(f"wrote {report['verilog']}: {report['cycles_per_inference']} cycles per inference, "
              f"{report['memory_bits']} memory bits, {report['lanes']} XNOR lanes")
        r = report["resources"]
        print(f"estimated: iCE40 {r['ice40']['logic_cells']:,} logic cells, {r['ice40']['block_ram']} EBR, "
              f"{r['ice40']['dsp']} DSP; ECP5 {r['ecp5']['logic_cells']:,} LUT4, "
              f"{r['ecp5']['block_ram']} DP16KD, {r['ecp5']['dsp']} MULT18X18D (network only)")
        if check is not None:
            print(f"{check['board']} with its UART: {check['text']}"
                  + ("" if check["fits"] else " - does not fit"))
        for e in report["layers"]:
            lr = e.get("resources", {}).get("ice40", {})
            print(f"  {e['name']:8s} {e['op']:18s} cycles {e['cycles']:6d}  lanes {e['lanes']:4d}  "
                  f"memory {e['memory_bits']} bits  ~{lr.get('logic_cells', 0)} LC, "
                  f"{lr.get('block_ram', 0)} EBR")
    return 0
