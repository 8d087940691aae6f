"""`kwsbnn build`: a bitstream for a board with the YoWASP toolchain."""

from kwsbnn.units import kibit

HELP = "build a bitstream for a board (icebreaker, ulx3s-85f)"
DESCRIPTION = """\
Build the board top (network behind a UART link, LEDs showing the last class) for an FPGA board with
YoWASP yosys and nextpnr, and report logic cells, block RAM, SPRAM and DSP use, the achieved Fmax
against the clock, and inferences per second at that clock. A design that does not fit or misses
timing fails with the numbers. --model takes a deployable folder, a model file, a shipped model's
name or `tiny`.

On the iCEBreaker a model on the integer residual stream (the default, binary-w64) or one whose
layer-per-unit pipeline does not fit (binary-wide: 64 channels) is built in the engine style: its
binary layers' weights live in the UP5K's SPRAM, which the bitstream cannot initialise, so the
build also writes the weight image (kws.weights.bin next to the bitstream) and a flash image
(kws.flash.bin: the bitstream, then the weight image at 1 MiB, which the board reads at power-up),
and prints the iceprog command that programs it and the `kwsbnn run --load` command that sends the
weights over the UART instead (`kwsbnn run` sends build/<board>/kws.weights.bin by itself when the
board has no weights).
"""


def add_arguments(parser):
    from kwsbnn.boards.build import BOARDS
    parser.add_argument("--board", required=True, choices=sorted(BOARDS))
    defaults = ", ".join(f"{b.default_model} on the {n}" for n, b in sorted(BOARDS.items()))
    parser.add_argument("--model", default=None, help="deployable folder, model file, shipped name "
                        f"or tiny (default: the model the board runs: {defaults})")
    parser.add_argument("--out", default=None, help="build folder (default: build/<board>)")
    parser.add_argument("--freq", type=float, default=None, metavar="MHZ",
                        help="clock in MHz (default: a clock the default model meets timing at: "
                        + ", ".join(f"{b.default_mhz:g} MHz on the {n}" for n, b in sorted(BOARDS.items()))
                        + "; a value other than the oscillator's (12 MHz on the icebreaker, 25 MHz on "
                        "the ulx3s-85f) uses the FPGA's PLL at the closest frequency it can make)")
    parser.add_argument("--baud", type=int, default=None,
                        help="UART baud rate (default: the board's, "
                        + ", ".join(f"{b.name} {b.default_baud}" for b in BOARDS.values())
                        + "; the report gives the divider's error)")
    parser.add_argument("--stride", type=int, default=None, metavar="N",
                        help="streaming: the board decides every N frames unless the host asks "
                        "otherwise (1 to 255; default: the smallest N at which the network keeps "
                        "up with a frame per 10 ms)")
    parser.add_argument("--fold", default="auto", help="folding: auto (the fastest whose resource estimate fits the board) or a JSON file")
    parser.add_argument("--rate", type=float, default=None, metavar="N",
                        help="with --fold auto: inferences per second wanted; the folding search stops "
                             "at the first folding that reaches N at the clock (a smaller design that "
                             "places and routes sooner) instead of the fastest that fits")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import sys

    from kwsbnn.boards.build import build, check_rate
    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.hw.cost import Folding
    from kwsbnn.sw.export import deployable

    check_rate(args.rate)
    if args.rate is not None and args.fold != "auto":
        raise KwsError("--rate chooses the folding; it does not go with --fold FILE", "drop one of them")
    from kwsbnn.boards.build import get_board
    dep = deployable(args.model or get_board(args.board).default_model)
    folding = None if args.fold == "auto" else Folding.load(args.fold, dep)
    out = args.out or f"build/{args.board}"
    report = build(dep, args.board, out, folding=folding, freq_mhz=args.freq, baud=args.baud,
                   progress=lambda msg: print(msg, file=sys.stderr), rate=args.rate,
                   stride=args.stride)
    if args.json:
        emit_json(report)
    else:
        print(f"bitstream: {report['bitstream']} ({report['seconds']} s)")
        if report["pll"]:
            print(f"clock from the PLL: {report['clock_mhz']:.4g} MHz (requested "
                  f"{report['requested_mhz']:g}, oscillator {report['oscillator_mhz']:g} MHz)")
        print(f"clock {report['clock_mhz']:.4g} MHz, Fmax {report['fmax_mhz']:.1f} MHz, "
              f"{report['inferences_per_second']:.0f} inferences/s "
              f"({report['cycles_per_inference']} cycles each)")
        st = report["streaming"]
        print(f"UART {report['baud']} baud ({report['uart_divisor']} clocks per bit, "
              f"{report['baud_error_percent']:+.2f}%); streaming: a decision every {st['stride']} "
              f"frames, ring buffer {kibit(st['ring_bits'], 'g')} ("
              + ("in SPRAM, 1 staging block RAM" if report.get("style") == "engine"
                 and report.get("memory") != "bram" else
                 f"{st['ring_block_ram']} block RAMs")
              + f"), link limit {st['link_frames_per_second']:.0f} frames/s, network "
              f"{st['network_per_second']:.0f}/s, {'keeps up' if st['keeps_up'] else 'does NOT keep up'}"
              " with a frame per 10 ms")
        for name, r in report["resources"].items():
            print(f"  {name:12s} {r['used']:6d} / {r['available']}")
        img = report.get("weight_image")
        if img:
            model = args.model or get_board(args.board).default_model
            print(f"engine style: the weights are not in the bitstream; weight image {img['path']} "
                  f"({img['words']} words, {img['seconds_at_baud']:.2f} s at {report['baud']} baud, "
                  f"model id {img['model_id']})")
            fl = img.get("flash")
            if fl:
                print(f"program the flash once (bitstream, and the weight image at "
                      f"{fl['offset'] // 1024} KiB, read at power-up): {fl['program'][0]}")
                print(f"  (a new image for the same bitstream: {fl['program'][1]})")
            print(f"or load it over the UART (`kwsbnn run` loads it when the board has none): "
                  f"kwsbnn run --board {args.board} --port PORT --model {model} "
                  f"--load {img['path']} CLIP.wav")
    return 0
