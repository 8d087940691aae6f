"""`kwsbnn verilog`: generate the accelerator's Verilog, memory images and cost report."""

HELP = "generate the accelerator's Verilog for a model"
DESCRIPTION = """\
Generate the streaming XNOR-popcount accelerator of a model as Verilog (top module kws_top), copy the
memory images it is built from, and write report.json (cycles per inference, initiation interval,
memory bits, lanes, per-layer entries). --model takes a deployable folder, a model file, a shipped
model's name or `tiny`. A network the generator cannot build is reported before anything is written.
"""


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="deployable folder, model file, shipped name or tiny")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--fold", default="auto", help="folding: auto or a JSON file "
                        '{"layers": {"NAME": {"pe": P, "simd": S}}}')
    parser.add_argument("--target-ips", type=float, default=None, metavar="N",
                        help="choose the folding for N inferences per second (balanced layers)")
    parser.add_argument("--clock-mhz", type=float, default=24.0,
                        help="clock for --target-ips (default 24 MHz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.hw.cost import Folding
    from kwsbnn.hw.folding import for_ips
    from kwsbnn.hw.verilog import generate
    from kwsbnn.sw.export import deployable

    dep = deployable(args.model)
    if args.target_ips is not None:
        if args.fold != "auto":
            raise KwsError("give either --fold FILE or --target-ips, not both")
        folding = for_ips(dep, args.target_ips, args.clock_mhz * 1e6)
    else:
        folding = None if args.fold == "auto" else Folding.load(args.fold, dep)
    report = generate(dep, args.out, folding)
    if args.json:
        emit_json(report)
    else:
        if args.target_ips is not None:
            ips = args.clock_mhz * 1e6 / report["cycles_per_inference"]
            print(f"folding for {args.target_ips:g} inferences/s at {args.clock_mhz:g} MHz: "
                  f"{ips:.0f} inferences/s")
        print(f"wrote {report['verilog']}: {report['cycles_per_inference']} cycles per inference, "
              f"{report['memory_bits']} memory bits, {report['lanes']} XNOR lanes")
        for e in report["layers"]:
            print(f"  {e['name']:8s} {e['op']:18s} cycles {e['cycles']:6d}  lanes {e['lanes']:4d}  "
                  f"memory {e['memory_bits']} bits")
    return 0
