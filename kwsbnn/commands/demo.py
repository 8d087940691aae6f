"""`kwsbnn demo`: the main job on built-in defaults, through every stage of the flow."""

HELP = "run the whole flow on built-in defaults: model -> Verilog -> simulation -> bitstream"
DESCRIPTION = """\
The main job: export the model, generate its Verilog, simulate it in Verilator on a set of inputs with
random stream gaps and backpressure, check every score and class against the NumPy golden model and
the PyTorch integer inference mode, build the iCEBreaker bitstream, and print a summary.
Today the default model is the walking skeleton's network (`tiny`); the keyword-spotting model
takes its place as the generator grows.
"""


def add_arguments(parser):
    parser.add_argument("--model", default="tiny", help="model (default: tiny)")
    parser.add_argument("--count", type=int, default=1000, help="inferences to simulate (default 1000)")
    parser.add_argument("--board", default="icebreaker", help="board to build for (default icebreaker)")
    parser.add_argument("--no-build", action="store_true", help="skip the bitstream")
    parser.add_argument("--out", default="build/demo", help="work folder (default build/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.sim.network import simulate
    from kwsbnn.sw.export import deployable
    from kwsbnn.sw.golden import GoldenModel

    def say(msg):
        print(f"[demo] {msg}", file=sys.stderr, flush=True)

    out = Path(args.out)
    t0 = time.monotonic()
    dep = deployable(args.model, seed=args.seed)
    say(f"model {dep.name}: {len(dep.layers)} layers, deployable folder {dep.path}")
    shape = tuple(dep.input["shape"])
    rng = np.random.default_rng(args.seed)
    if dep.input["prec"] == "bin":
        xs = rng.integers(0, 2, (args.count,) + shape)
    else:
        xs = rng.integers(-127, 128, (args.count,) + shape)
    golden = GoldenModel(dep).run(xs)
    torch_equal = None
    if args.model == "tiny":
        import torch

        from kwsbnn.sw.tiny import make_tiny
        scores = make_tiny(args.seed).integer_forward(torch.from_numpy(xs[:, :, 0, 0])).numpy()
        torch_equal = int((scores == golden.scores).all(axis=1).sum())
        say(f"PyTorch integer mode = golden model on {torch_equal}/{args.count} inputs")
    say(f"simulating {args.count} inferences in Verilator (random input gaps and output stalls)")
    t_sim = time.monotonic()
    sim = simulate(dep, out / "sim", inputs=xs, gap=0.2, stall=0.2, seed=args.seed)
    t_sim = time.monotonic() - t_sim
    say(f"RTL = golden model on {sim.get('equal')}/{sim.get('total')} inferences, "
        f"{sim.get('cycles_per_inference', 0):.1f} cycles per inference with stalls ({t_sim:.1f} s)")
    summary = {"model": dep.name, "inferences": args.count,
               "agreement": {"equal": sim.get("equal", 0), "total": sim.get("total", args.count)},
               "torch_agreement": torch_equal,
               "cycles_per_inference_model": sim["report"]["cycles_per_inference"],
               "cycles_per_inference_simulated": sim.get("cycles_per_inference"),
               "memory_bits": sim["report"]["memory_bits"], "sim_seconds": round(t_sim, 1)}
    if not args.no_build:
        from kwsbnn.boards.build import build
        b = build(dep, args.board, out / args.board, progress=say)
        summary["build"] = b
        say(f"{args.board}: {b['resources'].get('logic_cells', {}).get('used')} logic cells, "
            f"Fmax {b['fmax_mhz']:.1f} MHz at {b['clock_mhz']} MHz, "
            f"{b['inferences_per_second']:.0f} inferences/s, bitstream {b['bitstream']}")
    summary["seconds"] = round(time.monotonic() - t0, 1)
    ok = summary["agreement"]["equal"] == summary["agreement"]["total"] and sim.get("failed", 1) == 0
    if args.json:
        emit_json(summary)
    else:
        print(f"demo: {summary['agreement']['equal']}/{summary['agreement']['total']} inferences "
              f"bit-exact (RTL vs golden), {summary['seconds']} s total")
    if not ok:
        raise KwsError("the RTL and the golden model disagree", f"see {out / 'sim'} for the testbench logs")
    return 0
