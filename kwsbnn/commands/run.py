"""`kwsbnn run`: classify WAV clips on a board over its UART (host protocol v1)."""

HELP = "classify WAV clips on a board running a kwsbnn bitstream (UART, host protocol v1)"
DESCRIPTION = """\
Send WAV clips to a board built with `kwsbnn build` and print the keyword it finds in each.

The host computes each clip's int8 feature map with the model's own feature settings and quantizer
(exactly what training and `kwsbnn eval` use), sends it in one INFER frame and reads the RESULT
frame (docs/host-protocol.md). First the board is asked for its INFO: its model id must be the
id of --model (the board's manifest digest), else the command stops and says which model the
board runs. --golden also runs the NumPy golden model on every clip and reports agreement (the
board must give exactly the same class and scores; exit code 1 when it does not). CLIP is a
16 kHz mono 16-bit WAV file or a folder searched for *.wav.

Examples:
  kwsbnn run --port /dev/ttyUSB1 --model binary clip.wav
  kwsbnn run --port /dev/ttyUSB1 --model runs/bin/best.pt --golden --json speech_commands/yes
(the iCEBreaker's UART is the FTDI's second interface, usually /dev/ttyUSB1).
"""


def add_arguments(parser):
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="WAV file or folder of WAV files")
    parser.add_argument("--port", required=True, metavar="DEVICE",
                        help="serial device of the board (e.g. /dev/ttyUSB1, COM3) or a pyserial URL")
    parser.add_argument("--baud", type=int, default=115200,
                        help="UART baud rate the bitstream was built with (default 115200)")
    parser.add_argument("--model", default="binary", help="the model the board runs: deployable "
                        "folder, model file or shipped name (default: binary)")
    parser.add_argument("--golden", action="store_true",
                        help="also run the golden model and report agreement")
    parser.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                        help="seconds to wait for each answer (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def find_clips(paths) -> list:
    """WAV files named or found (recursively, sorted) in folders; a KwsError for a missing path or
    a folder without WAV files."""
    from pathlib import Path

    from kwsbnn.errors import KwsError
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() == ".wav" and q.is_file())
            if not found:
                raise KwsError(f"{p}: no .wav files in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise KwsError(f"{p}: no such file or folder", "give a WAV file or a folder of WAV files")
    return out


def open_port(name: str, baud: int):
    """The serial port ``name`` (a device or a pyserial URL such as ``socket://host:port``)."""
    from kwsbnn.errors import KwsError
    try:
        import serial
    except ImportError:
        raise KwsError("pyserial is not installed", "pip install 'pyserial>=3.5,<4'") from None
    try:
        return serial.serial_for_url(name, baudrate=baud, timeout=0.05, write_timeout=5)
    except (serial.SerialException, OSError, ValueError) as e:
        raise KwsError(f"cannot open serial port {name}: {e}",
                       "check the device name (ls /dev/ttyUSB* /dev/ttyACM*), that the board is "
                       "plugged in, and that you may use it (group dialout)") from None


def _feature_pipeline(dep, model_ref: str):
    """``(FeatureConfig, FeatureQuantizer)`` of a deployable model; a KwsError if it has none."""
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.features import FeatureConfig, FeatureQuantizer
    inp = dep.input
    if inp.get("prec") != "int8" or not inp.get("features") or not inp.get("quantizer"):
        raise KwsError(f"model {model_ref} ({dep.name}) takes no audio features (its input is "
                       f"{inp.get('prec')} of shape {inp.get('shape')}): `kwsbnn run` needs a "
                       "keyword-spotting model", "pass --model with the trained model the board "
                       "was built from (binary, int8 or a model file)")
    cfg = FeatureConfig.from_dict(inp["features"])
    q = FeatureQuantizer.from_dict(inp["quantizer"])
    c, t, f = (int(v) for v in inp["shape"])
    if (c, t, f) != (1, cfg.frames, cfg.n_features):
        raise KwsError(f"model {model_ref}: input shape {[c, t, f]} does not match its feature "
                       f"settings ({cfg.frames} frames of {cfg.n_features})")
    return cfg, q


def clip_features(path, cfg, quantizer):
    """The int8 input ``[1, T, F]`` of a WAV clip: padded or cut to one second, features, quantized
    (the pipeline of kwsbnn.sw.data and kwsbnn.sw.features that training and eval use)."""
    import numpy as np
    import torch

    from kwsbnn.sw.data import fit_clip, read_wav
    from kwsbnn.sw.features import compute
    wave = fit_clip(read_wav(path), cfg.sample_rate)
    feats = compute(torch.from_numpy(wave), cfg)
    return quantizer.quantize(feats).numpy().astype(np.int64)[None]


def check_clips(clips, cfg, quantizer) -> list:
    """The int8 inputs of all clips; a KwsError counting and naming the unusable ones (a text file,
    8 kHz, stereo, ...) before anything is sent to the board."""
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.data import WavError
    inputs, bad = [], []
    for path in clips:
        try:
            inputs.append(clip_features(path, cfg, quantizer))
        except WavError as e:
            bad.append(f"{path}: {e.reason}")
    if bad:
        raise KwsError(f"{len(bad)} of {len(clips)} clips cannot be used: " + "; ".join(bad[:3])
                       + (f"; ... and {len(bad) - 3} more" if len(bad) > 3 else ""),
                       "give 16 kHz mono 16-bit PCM WAV files (sox in.wav -r 16000 -c 1 -b 16 out.wav)")
    return inputs


def _known_models(exclude_id: int) -> dict:
    """{model id: name} of the models kwsbnn knows by name (tiny and the shipped ones)."""
    from kwsbnn.boards.protocol import model_id
    from kwsbnn.paths import MODELS
    from kwsbnn.sw.export import deployable
    names = ["tiny"] + (sorted(p.stem for p in MODELS.glob("*.pt")) if MODELS.is_dir() else [])
    out = {}
    for name in names:
        try:
            out[model_id(deployable(name))] = name
        except Exception:       # a shipped model that does not export (e.g. float): not a board model
            continue
    out.pop(exclude_id, None)
    return out


def check_board(info, dep, model_ref: str, port: str) -> None:
    """The board's INFO against the host's model: same model id and input size, else a KwsError
    naming the model the board runs when it is one kwsbnn knows."""
    from kwsbnn.boards.protocol import model_id
    from kwsbnn.errors import KwsError
    want = model_id(dep)
    if info.model_id != want:
        known = _known_models(want)
        board = known.get(info.model_id)
        what = f"model {board!r}" if board else "a model kwsbnn does not know by name"
        raise KwsError(f"the board on {port} runs {what} (id {info.model_id:08x}); --model "
                       f"{model_ref} is {dep.name} (id {want:08x})",
                       f"pass --model {board}" if board else
                       "pass the --model the bitstream was built from, or rebuild and program it "
                       "with `kwsbnn build --model M`")
    c, t, f = (int(v) for v in dep.input["shape"])
    if info.input_bytes != c * t * f:
        raise KwsError(f"the board on {port} expects {info.input_bytes} input bytes; {dep.name} "
                       f"has {c * t * f}")
    if info.n_classes != len(dep.classes):
        raise KwsError(f"the board on {port} has {info.n_classes} classes; {dep.name} has "
                       f"{len(dep.classes)}")


def run(args) -> int:
    import sys
    import time

    from kwsbnn.boards.protocol import BoardLink, LinkGeometry
    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError

    if args.timeout <= 0:
        raise KwsError(f"--timeout {args.timeout} must be positive")
    from kwsbnn.sw.export import deployable
    clips = find_clips(args.clips)
    dep = deployable(args.model)
    cfg, quantizer = _feature_pipeline(dep, args.model)
    inputs = check_clips(clips, cfg, quantizer)      # every clip, before the port is opened
    port = open_port(args.port, args.baud)
    try:
        link = BoardLink(port, timeout=args.timeout, name=f"the board on {args.port}")
        info = link.info()
        check_board(info, dep, args.model, args.port)
        c, t, f = (int(v) for v in dep.input["shape"])
        geom = LinkGeometry(c, t, f, 8, info.n_classes, info.score_width, info.model_id)
        golden = None
        if args.golden:
            from kwsbnn.sw.golden import GoldenModel
            golden = GoldenModel(dep)
        if not args.json:
            print(f"board on {args.port}: model {dep.name} (id {info.model_id:08x}), "
                  f"{info.n_classes} classes, clock {info.clock_khz / 1000:g} MHz", file=sys.stderr)
        rows, seconds = [], 0.0
        agree_cls = agree_all = 0
        for path, x in zip(clips, inputs):
            t0 = time.monotonic()
            r = link.infer(x, geom)
            seconds += time.monotonic() - t0
            if not 0 <= r.cls < len(dep.classes):
                raise KwsError(f"the board answered class {r.cls}; the model has {len(dep.classes)}")
            row = {"clip": str(path), "class": r.cls, "keyword": dep.classes[r.cls], "scores": r.scores}
            if golden is not None:
                g = golden.run(x[None])
                gc, gs = int(g.classes[0]), [int(v) for v in g.scores[0]]
                row["golden"] = {"class": gc, "keyword": dep.classes[gc], "scores": gs}
                row["agree"] = gc == r.cls and gs == r.scores
                agree_cls += gc == r.cls
                agree_all += row["agree"]
            rows.append(row)
            if not args.json:
                line = f"{path}: {row['keyword']}"
                if golden is not None:
                    line += "" if row["agree"] else (f"   (golden: {row['golden']['keyword']}, scores "
                                                     f"{'equal' if gs == r.scores else 'differ'})")
                print(line)
    finally:
        close = getattr(port, "close", None)
        if close:
            close()
    out = {"port": args.port, "baud": args.baud, "model": dep.name, "model_id": f"{info.model_id:08x}",
           "board": {"clock_mhz": info.clock_khz / 1000, "n_classes": info.n_classes,
                     "score_width": info.score_width, "input_bytes": info.input_bytes},
           "clips": rows, "seconds_per_clip": seconds / len(rows)}
    if golden is not None:
        out["agreement"] = {"equal": agree_all, "same_class": agree_cls, "total": len(rows)}
    if args.json:
        emit_json(out)
    else:
        print(f"{len(rows)} clips, {1000 * out['seconds_per_clip']:.0f} ms each on the link", file=sys.stderr)
        if golden is not None:
            print(f"golden model: {agree_all} of {len(rows)} equal (class and scores), "
                  f"{agree_cls} same class")
    if golden is not None and agree_all != len(rows):
        return 1
    return 0
