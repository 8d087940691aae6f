"""`kwsbnn demo`: the main job on built-in defaults, through every stage of the flow."""

HELP = "run the whole flow on built-in defaults: model -> Verilog -> simulation -> bitstream"
DESCRIPTION = """\
The main job. With the default model (the shipped binary keyword-spotting model):
  1. make the demo clips: the ten keywords spoken by four synthesized voices (eSpeak NG), unknown
     words and silence (or use --data DIR, a Speech Commands folder, and its test split);
  2. export the model, generate the accelerator's Verilog, simulate it in Verilator on every clip,
     and check every score and class against the NumPy golden model;
  3. check the golden model's classes against PyTorch's integer inference mode;
  4. build the iCEBreaker bitstream (skip with --no-build);
  5. print a summary: accuracy on the clips, agreement, cycles, resources, inferences per second.
With --model tiny the walking-skeleton network runs on --count random inputs instead of clips.
"""


def add_arguments(parser):
    parser.add_argument("--model", default="binary-ice40", help="model (default: binary-ice40, the 20-channel binary model in the pipeline style: its whole-network simulation takes seconds)")
    parser.add_argument("--data", default=None,
                        help="Speech Commands folder to take the clips from (default: synthesized clips)")
    parser.add_argument("--limit", type=int, default=None, help="use N clips spread over the split")
    parser.add_argument("--count", type=int, default=1000,
                        help="random inputs to simulate with --model tiny (default 1000)")
    parser.add_argument("--board", default="icebreaker", help="board to build for (default icebreaker)")
    parser.add_argument("--freq", type=float, default=None,
                        help="board clock in MHz (default: the board's, see `kwsbnn build --help`: "
                             "24 on the iCEBreaker, from its PLL)")
    parser.add_argument("--rate", type=float, default=None, metavar="N",
                        help="inferences per second wanted: the smallest folding found that reaches "
                             "N (default: the fastest that fits the board)")
    parser.add_argument("--no-build", action="store_true", help="skip the bitstream")
    parser.add_argument("--out", default="build/demo", help="work folder (default build/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _say(msg):
    import sys
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def _freq(args):
    """The clock the demo builds at: --freq, else the board's default (boards.build.Board.default_mhz)."""
    return args.freq


def _tiny(args, out):
    """The walking skeleton: random inputs through RTL, golden model and PyTorch."""
    import numpy as np
    import torch

    from kwsbnn.sim.network import simulate
    from kwsbnn.sw.export import deployable
    from kwsbnn.sw.golden import GoldenModel
    from kwsbnn.sw.tiny import make_tiny

    dep = deployable("tiny", seed=args.seed)
    _say(f"model {dep.name}: {len(dep.layers)} layers, deployable folder {dep.path}")
    rng = np.random.default_rng(args.seed)
    xs = rng.integers(0, 2, (args.count,) + tuple(dep.input["shape"]))
    golden = GoldenModel(dep).run(xs)
    scores = make_tiny(args.seed).integer_forward(torch.from_numpy(xs[:, :, 0, 0])).numpy()
    torch_equal = int((scores == golden.scores).all(axis=1).sum())
    _say(f"PyTorch integer mode = golden model on {torch_equal}/{args.count} inputs")
    _say(f"simulating {args.count} inferences in Verilator (random input gaps and output stalls)")
    sim = simulate(dep, out / "sim", inputs=xs, gap=0.2, stall=0.2, seed=args.seed)
    _say(f"RTL = golden model on {sim.get('equal')}/{sim.get('total')} inferences")
    return dep, None, {"model": dep.name, "inferences": args.count,
                 "agreement": {"equal": sim.get("equal", 0), "total": sim.get("total", args.count)},
                 "torch_agreement": {"equal": torch_equal, "total": args.count},
                 "cycles_per_inference_model": sim["report"]["cycles_per_inference"],
                 "cycles_per_inference_simulated": sim.get("cycles_per_inference"),
                 "memory_bits": sim["report"]["memory_bits"]}


def _kws(args, out):
    """A keyword-spotting model on real or synthesized clips through RTL, golden model and PyTorch."""
    import time

    from kwsbnn.hw.cost import layer_costs
    from kwsbnn.sw.checkpoint import load_model
    from kwsbnn.sw.evaluate import evaluate
    from kwsbnn.sw.export import deployable

    from kwsbnn.sim.engine import RTL_OPTIONS     # registers the rtl engine

    model = load_model(args.model)
    dep = deployable(args.model)
    folding = None
    if not args.no_build:
        # Simulate the folding the bitstream will have (the fastest that fits the board).
        from kwsbnn.boards.build import board_folding
        folding = board_folding(dep, args.board, _freq(args), progress=_say, rate=args.rate)
        _say(f"design for the {args.board}: the fastest accelerator that fits the board, "
             f"{layer_costs(dep, folding)['cycles_per_inference']:,} clock cycles per keyword decision "
             "(per-layer parallelism in the summary file)")
    RTL_OPTIONS["folding"] = folding
    data = args.data
    if data is None:
        from kwsbnn.sw.tts import VOICES, make_clip_folder
        data = make_clip_folder(out / "clips", seed=args.seed)
        _say(f"demo clips: the ten keywords and a few other words spoken by {len(VOICES)} synthesized "
             f"voices (eSpeak NG), plus silence, in {data}")
    t = time.monotonic()
    try:
        rtl = evaluate(model, data, split="test", engine="rtl", limit=args.limit,
                       strict=False if args.data is not None else None)   # warn about skipped files
    finally:
        RTL_OPTIONS["folding"] = None
    t = time.monotonic() - t
    _say(f"RTL: accuracy {rtl['accuracy']:.3f} on {rtl['n']} clips; RTL = golden model on "
         f"{rtl['agreement']['equal']}/{rtl['agreement']['total']} clips (scores and class); "
         f"{rtl.get('cycles_per_inference') or 0:.0f} cycles per inference; {t:.0f} s")
    ref = evaluate(model, data, split="test", engine="torch", limit=args.limit)
    torch_equal = sum(a == b for a, b in zip(ref["predictions"], rtl["predictions"]))
    _say(f"PyTorch integer mode = RTL class on {torch_equal}/{rtl['n']} clips")
    costs = layer_costs(dep, folding)
    return dep, folding, {"model": str(args.model), "data": str(data), "synthesized": args.data is None,
                 "clips": rtl["n"],
                 "accuracy": rtl["accuracy"], "per_class": rtl["per_class"],
                 "agreement": rtl["agreement"],
                 "torch_agreement": {"equal": torch_equal, "total": rtl["n"]},
                 "cycles_per_inference_model": costs["cycles_per_inference"],
                 "cycles_per_inference_simulated": (round(rtl["cycles_per_inference"])
                                                    if rtl.get("cycles_per_inference") else None),
                 "sim_cycles_per_second": rtl.get("sim_cycles_per_second"),
                 "memory_bits": costs["memory_bits"], "sim_seconds": round(t, 1),
                 "real_speech_accuracy": _recorded_accuracy(args.model),
                 "folding": folding.to_dict() if folding else None}


def run(args) -> int:
    import time
    from pathlib import Path

    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError

    out = Path(args.out)
    t0 = time.monotonic()
    dep, folding, summary = (_tiny if args.model == "tiny" else _kws)(args, out)
    if not args.no_build:
        from kwsbnn.boards.build import build
        b = build(dep, args.board, out / args.board, folding=folding, freq_mhz=_freq(args), progress=_say)
        summary["build"] = b
        _say(f"{args.board}: {b['resources'].get('logic_cells', {}).get('used')} logic cells, "
             f"{b['resources'].get('block_ram', {}).get('used')} block RAMs, Fmax {b['fmax_mhz']:.1f} MHz "
             f"at {b['clock_mhz']:g} MHz, {b['inferences_per_second']:.0f} inferences/s, "
             f"bitstream {b['bitstream']}")
    summary["seconds"] = round(time.monotonic() - t0, 1)
    agree = summary["agreement"]
    ok = agree["equal"] == agree["total"] and summary["torch_agreement"]["equal"] == \
        summary["torch_agreement"]["total"]
    summary["next"] = _next_command(args, summary)
    lines = summary_lines(summary)
    _write_summary(out, summary, lines)
    if args.json:
        emit_json(summary)
    else:
        print("\n".join(lines))
    if not ok:
        raise KwsError("the engines disagree (RTL, golden model, PyTorch)",
                       f"see {out} for the testbench logs")
    return 0


def _recorded_accuracy(model_ref):
    """The model's accuracy on recorded speech, from its model file (None when it records none)."""
    from kwsbnn.sw.checkpoint import load_model
    try:
        return (load_model(model_ref).metrics or {}).get("test_accuracy")
    except Exception:
        return None


def _next_command(args, summary) -> str:
    if "accuracy" not in summary:
        return "kwsbnn demo    # the keyword-spotting model on synthesized speech"
    if summary.get("synthesized"):
        return ("kwsbnn data download --subset && kwsbnn eval --model binary "
                "--data data/speech_commands_subset --split test    # recorded speech")
    return f"kwsbnn build --board {args.board} --model {args.model}    # the bitstream alone, with its report"


def summary_lines(summary: dict) -> list[str]:
    """The demo's summary as plain text lines (also written to summary.md)."""
    agree, tagree = summary["agreement"], summary["torch_agreement"]
    lines = [f"demo summary ({summary['model']})"]
    if "accuracy" in summary:
        what = "clips of synthesized voices (eSpeak NG)" if summary.get("synthesized") else "clips"
        lines.append(f"  accuracy on {summary['clips']} {what}: {summary['accuracy']:.1%}  ({summary['data']})")
        if summary.get("synthesized"):
            real = summary.get("real_speech_accuracy")
            lines.append("    synthetic voices are not the recorded speech the model learned from: this"
                         " says how it transfers to new voices" + (f"; on recorded speech (the subset's "
                         f"testing list) it scores {real:.1%}" if real is not None else ""))
    lines.append(f"  the hardware computes exactly what the software does: RTL = golden model on "
                 f"{agree['equal']}/{agree['total']}, PyTorch = golden on {tagree['equal']}/{tagree['total']}")
    lines.append(f"  clock cycles per decision: {summary['cycles_per_inference_simulated']} simulated, "
                 f"{summary['cycles_per_inference_model']} from the cost model")
    if "build" in summary:
        b = summary["build"]
        res = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in b["resources"].items())
        lines.append(f"  {b['board']}: {res}; Fmax {b['fmax_mhz']:.1f} MHz at {b['clock_mhz']:g} MHz; "
                     f"{b['inferences_per_second']:.0f} decisions/s; {b['bitstream']}")
    lines.append(f"  {summary['seconds']} s in all; summary in {summary.get('summary_files', '')}")
    lines.append(f"  next: {summary['next']}")
    return lines


def _write_summary(out, summary: dict, lines: list[str]) -> None:
    """summary.json and summary.md in the demo's folder (atomically)."""
    import json

    from kwsbnn.paths import write_atomic
    summary["summary_files"] = f"{out / 'summary.md'}, {out / 'summary.json'}"
    lines[-2] = lines[-2].rsplit("summary in", 1)[0] + f"summary in {summary['summary_files']}"
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    md = ["# kwsbnn demo", "", *[("- " + ln.strip()) if ln.startswith("  ") else ln for ln in lines[1:]]]
    write_atomic(out / "summary.md", "\n".join(md) + "\n")
