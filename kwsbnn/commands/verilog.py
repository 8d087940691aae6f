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
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from kwsbnn.cli import emit_json
    from kwsbnn.hw.cost import Folding
    from kwsbnn.hw.verilog import generate
    from kwsbnn.sw.export import deployable

    dep = deployable(args.model)
    folding = None if args.fold == "auto" else Folding.load(args.fold, dep)
    report = generate(dep, args.out, folding)
    if args.json:
        emit_json(report)
    else:
        print(f"wrote {report['verilog']}: {report['cycles_per_inference']} cycles per inference, "
              f"{report['memory_bits']} memory bits, {report['lanes']} XNOR lanes")
        for e in report["layers"]:
            print(f"  {e['name']:8s} {e['op']:18s} cycles {e['cycles']:6d}  lanes {e['lanes']:4d}  "
                  f"memory {e['memory_bits']} bits")
    return 0
