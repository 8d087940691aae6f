"""`kwsbnn eval`: accuracy, per-class accuracy and confusion matrix of a model on a split."""

HELP = "evaluate a trained model on a Speech Commands split"
DESCRIPTION = """\
Evaluate a model (a .pt file, a shipped model's name: float, int8, binary, or a deployable folder
written by `kwsbnn export`, which runs on the golden and rtl engines) on a split of a Speech
Commands folder. --engine torch runs int8 and binary models in the integer inference mode (the float
model runs in float). --json prints accuracy, per_class, confusion, predictions and clips (clips in
the split's stable order, the same for every engine).

--engine rtl simulates the generated accelerator in Verilator and checks every clip against the
golden model: agreement, cycles per inference (measured, and the cost model's), simulated cycles
per second. On a mismatch it names the first clip that differs and, replaying that clip with every
layer's output recorded, the first layer that differs and where. --waves DIR also writes an FST
waveform of that clip (of the first clip when all agree) into DIR. --board B simulates the design
that `kwsbnn build --board B` builds: the same style (pipeline or engine) and folding, chosen the same
way from the board's budget at --freq (default: the board's clock) and --rate; the JSON's `board`
gives the style, the clock and the inferences per second the cycles give there.
"""


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="model file, shipped model name or deployable folder")
    parser.add_argument("--data", required=True, help="Speech Commands folder")
    parser.add_argument("--split", default="test", choices=["test", "validation", "train", "all"],
                        help="split to score (default test); all: every clip in the folder, either layout")
    parser.add_argument("--engine", default="torch", choices=["torch", "float", "golden", "rtl"],
                        help="torch (default): PyTorch, int8/binary models in the integer inference "
                             "mode; float: the model's float evaluation mode; golden: the NumPy golden "
                             "model; rtl: the accelerator in Verilator, checked against golden")
    parser.add_argument("--limit", type=int, default=None, help="evaluate N clips spread over the split")
    parser.add_argument("--plot", default=None, metavar="PNG", help="write the confusion matrix as a PNG")
    parser.add_argument("--waves", default=None, metavar="DIR",
                        help="--engine rtl: write an FST of the first mismatching clip (or of the first "
                             "clip) into DIR")
    parser.add_argument("--board", default=None, metavar="B",
                        help="--engine rtl: simulate the design `kwsbnn build --board B` builds (its style "
                             "and folding; default: the fastest folding of the generator)")
    parser.add_argument("--freq", type=float, default=None, metavar="MHZ",
                        help="--board: the clock the folding is chosen for (default: the board's)")
    parser.add_argument("--rate", type=float, default=None, metavar="N",
                        help="--board: the smallest folding found that reaches N inferences per second "
                             "(as `kwsbnn build --rate`)")
    parser.add_argument("--strict", action="store_true",
                        help="an unusable WAV file in --data is an error (default: skip it, count and "
                             "name it on stderr and in the JSON's `skipped`)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from kwsbnn.cli import emit_json
    from kwsbnn.sw.checkpoint import load_model
    from kwsbnn.sw.evaluate import evaluate, plot_confusion

    from kwsbnn.errors import KwsError
    if args.waves is not None and args.engine != "rtl":
        raise KwsError("--waves needs --engine rtl", "add --engine rtl, or drop --waves")
    for opt in ("board", "freq", "rate"):
        if getattr(args, opt) is not None and args.engine != "rtl":
            raise KwsError(f"--{opt} needs --engine rtl", "add --engine rtl, or drop it")
    if (args.freq is not None or args.rate is not None) and args.board is None:
        raise KwsError("--freq and --rate choose the folding for a board", "add --board B")
    from kwsbnn.sw.engines import DeployedModel, is_deployable_folder
    if is_deployable_folder(args.model):
        if args.engine not in ("golden", "rtl"):
            raise KwsError(f"{args.model} is a deployable model folder: it has no PyTorch form",
                           "use --engine golden or --engine rtl, or give the model file it was exported from")
        from kwsbnn.sw import deploy
        model = DeployedModel(deploy.load(args.model))
    else:
        model = load_model(args.model)
    board = None
    if args.engine == "rtl":
        from kwsbnn.sim.engine import RTL_OPTIONS     # registers the rtl engine
        RTL_OPTIONS["waves_dir"] = _waves_dir(args.waves) if args.waves is not None else None
        RTL_OPTIONS["folding"], board = _board_design(model, args) if args.board else (None, None)
    res = evaluate(model, args.data, split=args.split, engine=args.engine, limit=args.limit,
                   strict=args.strict)
    res["model"] = str(args.model)
    res["precision"] = model.config.precision
    if board is not None:
        cycles = res.get("cycles_per_inference") or res.get("model_cycles_per_inference")
        board["inferences_per_second"] = board["clock_mhz"] * 1e6 / cycles if cycles else None
        res["board"] = board
    if args.plot:
        res["plot"] = str(plot_confusion(res, args.plot))
    if args.json:
        if res.get("waves"):
            import sys
            print(f"waveform of clip {res['waves']['clip']}: {res['waves']['path']}", file=sys.stderr)
        emit_json(res)
    else:
        print(f"{args.model} ({model.config.precision}, engine {args.engine}) on {args.split}: "
              f"accuracy {res['accuracy']:.4f} over {res['n']} clips")
        for c, a in res["per_class"].items():
            print(f"  {c:8s} {'-' if a is None else f'{a:.3f}'}  ({res['counts'][c]} clips)")
        if args.plot:
            print(f"confusion matrix: {res['plot']}")
        if args.engine == "rtl":
            for line in rtl_lines(res):
                print(line)
            if board is not None and board["inferences_per_second"]:
                print(f"design of `kwsbnn build --board {board['name']}`: {board['style']} style, "
                      f"{board['inferences_per_second']:.1f} inferences/s at {board['clock_mhz']:g} MHz")
    return 0


def _board_design(model, args):
    """The folding ``kwsbnn build --board`` would build for ``model`` (the same function picks it) and
    what the JSON says about it: board, style, clock."""
    from kwsbnn.boards.build import board_clock, board_folding
    from kwsbnn.sw.engines import golden_of
    dep = golden_of(model).model
    folding = board_folding(dep, args.board, args.freq, rate=args.rate)
    return folding, {"name": args.board, "style": getattr(folding, "style", None) or "pipeline",
                     "clock_mhz": board_clock(args.board, args.freq) / 1e6, "rate": args.rate}


def _waves_dir(path: str):
    from pathlib import Path

    from kwsbnn.errors import KwsError
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise KwsError(f"--waves {path}: not a folder", "give a folder for the waveform files")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KwsError(f"--waves {path}: cannot create the folder ({e.strerror})",
                       "give a folder you can write to") from None
    return p


def rtl_lines(res: dict) -> list[str]:
    """The RTL figures of an ``--engine rtl`` evaluation as text lines."""
    agree = res.get("agreement", {})
    lines = [f"RTL vs golden model: {agree.get('equal')}/{agree.get('total')} clips agree"]
    cyc, model = res.get("cycles_per_inference"), res.get("model_cycles_per_inference")
    if cyc:
        lines.append(f"cycles per inference: {cyc:.0f} measured, {model} from the cost model "
                     f"({100 * (cyc - model) / model:+.1f}%)" if model else
                     f"cycles per inference: {cyc:.0f}")
    if res.get("sim_cycles_per_second"):
        lines.append(f"simulation: {res['sim_cycles_per_second']:,.0f} cycles/s")
    first = res.get("first_mismatch")
    if first:
        clip = first["clip"]
        name = res["clips"][clip] if clip < len(res.get("clips", [])) else f"#{clip}"
        lines.append(f"first mismatch: clip {clip} ({name}): RTL class {first['rtl']['cls']}, "
                     f"golden class {first['golden']['cls']}")
        loc = first.get("first_difference")
        if loc and loc.get("layer"):
            where = (f" at position {loc['position']}, channel {loc['channel']}" if "channel" in loc
                     else f" at index {loc['index']}" if loc.get("index") is not None else "")
            lines.append(f"first layer that differs: {loc['layer']}{where}: expected {loc['expected']}, "
                         f"got {loc['got']}")
        elif loc:
            lines.append(f"first layer that differs: none ({loc.get('note')})")
    if res.get("waves"):
        w = res["waves"]
        lines.append(f"waveform of clip {w['clip']}: {w['path']}")
    return lines
