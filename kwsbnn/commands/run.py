"""`kwsbnn run`: classify WAV clips on a board over its UART (host protocol 2)."""

HELP = "classify WAV clips on a board running a kwsbnn bitstream (UART, host protocol 2)"
DESCRIPTION = """\
Send WAV clips to a board built with `kwsbnn build` and print the keyword it finds in each.

The host computes each clip's int8 feature map with the model's own feature settings and quantizer
(exactly what training and `kwsbnn eval` use), sends it in one INFER frame and reads the RESULT
frame (docs/host-protocol.md). First the board is asked for its INFO: its model id must be the
id of --model (the board's manifest digest), else the command stops and says which model the
board runs. --golden also runs the NumPy golden model on every clip and reports agreement (the
board must give exactly the same class and scores; exit code 1 when it does not). CLIP is a
16 kHz mono 16-bit WAV file or a folder searched for *.wav; every clip is read and checked
before the port is opened.

--stream sends each clip as a stream instead: one feature frame (40 bytes) per 10 ms hop,
computed hop by hop as the samples come (equal bit for bit to the whole clip's map: the command
checks it on every window the board decides on); the board keeps the last 101 frames and answers
every N-th frame (--every N; default: the N the bitstream was built with) with the keyword of
that window. A clip shorter than one second is padded to one second, a longer one is streamed
whole (a decision every N frames from its 101st frame). Frames go out as fast as the link and
the board allow; the command reports the decisions per second it measured end to end.

The UART rate must be the bitstream's: --baud, or the default of --board (icebreaker: 1000000,
ulx3s-85f: 3000000, the defaults of `kwsbnn build`).

Without --model, the model is the board's default, the one `kwsbnn build --board B` builds
without --model (icebreaker: binary-w64, ulx3s-85f: binary).

An engine-style bitstream (the iCEBreaker's default `binary-w64`, or a model whose pipeline does not
fit, such as binary-wide) has no weights after power-up: --load FILE sends the weight image that
the build wrote next to the bitstream (kws.weights.bin) before the clips; without --load, when the
board reports no weights, the command loads build/<board>/kws.weights.bin (where `kwsbnn build
--board <board>` writes it) if that image is --model's. The board checks the image's model id and
CRC-32 and refuses a wrong one; the weights stay loaded until the board is powered off or
reprogrammed.

Examples:
  kwsbnn run --port /dev/ttyUSB1 clip.wav                   (after `kwsbnn build --board icebreaker`)
  kwsbnn run --port /dev/ttyUSB1 --stream --golden recording.wav
  kwsbnn run --port /dev/ttyUSB1 --model runs/bin/best.pt --golden --json speech_commands/yes
  kwsbnn run --port /dev/ttyUSB1 --model binary-wide --load build/icebreaker-wide/kws.weights.bin clip.wav
  kwsbnn run --board ulx3s-85f --port /dev/ttyUSB0 clip.wav  (binary-ice40, weights in the bitstream)
(the iCEBreaker's UART is the FTDI's second interface, usually /dev/ttyUSB1).
"""


def add_arguments(parser):
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="WAV file or folder of WAV files")
    parser.add_argument("--port", required=True, metavar="DEVICE",
                        help="serial device of the board (e.g. /dev/ttyUSB1, COM3) or a pyserial URL")
    from kwsbnn.boards.build import BOARDS
    parser.add_argument("--board", default="icebreaker", choices=sorted(BOARDS),
                        help="the board, for the default --baud and --model (default icebreaker)")
    parser.add_argument("--baud", type=int, default=None,
                        help="UART baud rate the bitstream was built with (default: the board's, "
                        + ", ".join(f"{b.name} {b.default_baud}" for b in BOARDS.values()) + ")")
    parser.add_argument("--stream", action="store_true",
                        help="stream each clip frame by frame (host protocol 2) instead of one "
                        "whole map per clip")
    parser.add_argument("--every", type=int, default=0, metavar="N",
                        help="with --stream: a decision every N frames (1 to 255; default: the "
                        "bitstream's)")
    defaults = ", ".join(f"{b.default_model} on the {n}" for n, b in sorted(BOARDS.items()))
    parser.add_argument("--model", default=None, help="the model the board runs: deployable "
                        f"folder, model file or shipped name (default: the board's, {defaults})")
    parser.add_argument("--load", default=None, metavar="FILE",
                        help="send this weight image (kws.weights.bin from `kwsbnn build`) to an "
                        "engine-style board first (default: build/<board>/kws.weights.bin when the "
                        "board has no weights)")
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
        return serial.serial_for_url(name, baudrate=baud, timeout=0.05, write_timeout=30)
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
    from kwsbnn.sw.data import fit_clip, read_wav
    return wave_features(fit_clip(read_wav(path), cfg.sample_rate), cfg, quantizer)[None]


def wave_features(wave, cfg, quantizer):
    """The int8 feature map ``[T, F]`` of a whole waveform (T = 1 + samples // hop)."""
    import numpy as np
    import torch

    from kwsbnn.sw.features import compute
    return quantizer.quantize(compute(torch.from_numpy(wave), cfg)).numpy().astype(np.int64)


def stream_wave(wave, cfg):
    """A clip as ``kwsbnn run --stream`` sends it: padded to one second if shorter, else whole."""
    from kwsbnn.sw.data import fit_clip
    return fit_clip(wave, cfg.sample_rate) if len(wave) < cfg.sample_rate else wave


def stream_frames(wave, cfg, quantizer, sent: list):
    """The int8 frames ``[F]`` of ``wave``, computed hop by hop (:class:`StreamFeatures`) as a
    live input would be; each is also appended to ``sent``."""
    import numpy as np

    from kwsbnn.sw.features import StreamFeatures
    sf = StreamFeatures(cfg)
    hop = cfg.hop_length
    for i in range(0, len(wave) + hop, hop):
        chunk = sf.push(wave[i:i + hop]) if i < len(wave) else sf.end()
        for f in chunk:
            q = quantizer.quantize(f).numpy().astype(np.int64)
            sent.append(q)
            yield q


def read_clips(clips) -> list:
    """The waveforms of all clips; a KwsError counting and naming the unusable ones (a text file,
    8 kHz, stereo, ...) before anything is sent to the board."""
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.data import WavError, read_wav
    waves, bad = [], []
    for path in clips:
        try:
            waves.append(read_wav(path))
        except WavError as e:
            bad.append(f"{path}: {e.reason}")
    if bad:
        raise KwsError(f"{len(bad)} of {len(clips)} clips cannot be used: " + "; ".join(bad[:3])
                       + (f"; ... and {len(bad) - 3} more" if len(bad) > 3 else ""),
                       "give 16 kHz mono 16-bit PCM WAV files (sox in.wav -r 16000 -c 1 -b 16 out.wav)")
    return waves


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


def read_image(path, dep, model_ref: str):
    """The weight image in file ``path``, checked (format, length, CRC-32) and for ``dep``; a
    KwsError saying what is wrong."""
    from pathlib import Path

    from kwsbnn.boards.protocol import WeightImage, model_id
    from kwsbnn.errors import KwsError
    path = Path(path)
    if not path.is_file():
        raise KwsError(f"{path}: no such weight image", "`kwsbnn build` writes kws.weights.bin next "
                       "to an engine-style bitstream: pass that file to --load")
    image = WeightImage.parse(path.read_bytes(), name=str(path))
    want = model_id(dep)
    if image.model_id != want:
        raise KwsError(f"{path} is the weight image of model id {image.model_id:08x}; --model "
                       f"{model_ref} is {dep.name} (id {want:08x})",
                       "pass the kws.weights.bin built with this model's bitstream")
    return image


def load_weights(link, info, dep, args, out_of_json: bool) -> dict | None:
    """Send a weight image to an engine-style board when --load asks for it or the board has
    none (after its flash reader's verdict: INFO byte 23); ``{"source": "uart", "path", "words",
    "seconds"}`` of what was sent, ``{"source": "flash"}`` when the board loaded its weights from
    its flash, or None."""
    import sys
    import time
    from pathlib import Path

    from kwsbnn.errors import KwsError
    if not info.needs_image:
        if args.load:
            raise KwsError(f"the board on {args.port} runs a bitstream with its weights in it: it "
                           "takes no weight image", "drop --load")
        return None
    from kwsbnn.boards.protocol import FLASH_TEXT, FlashStatus
    # Just after configuration the board may still be reading its flash (about 10 ms): wait for
    # its verdict rather than send a LOAD it would hold back.
    deadline = time.monotonic() + 1.0
    while info.flash == FlashStatus.READING and time.monotonic() < deadline:
        time.sleep(0.02)
        info = link.info()
    flash = FlashStatus(info.flash) if info.flash in iter(FlashStatus) else None
    path = args.load
    if path is None:
        if info.loaded:
            if flash == FlashStatus.LOADED and not out_of_json:
                print("weights: loaded from the board's flash at power-up", file=sys.stderr)
            return {"source": "flash"} if flash == FlashStatus.LOADED else None
        if flash is not None and flash > FlashStatus.LOADED and not out_of_json:
            print(f"the board's flash image was refused: {FLASH_TEXT[flash]} (program it with "
                  "the iceprog command `kwsbnn build` printed); loading over the UART instead",
                  file=sys.stderr)
        path = Path("build") / args.board / "kws.weights.bin"
        if not path.is_file():
            raise KwsError(f"the board on {args.port} has no weights loaded (engine style) and "
                           f"there is no {path}",
                           "pass --load with the kws.weights.bin that `kwsbnn build` wrote")
    image = read_image(path, dep, args.model)
    if len(image.words) != info.load_words:
        raise KwsError(f"{path} has {len(image.words)} words; the board on {args.port} takes "
                       f"{info.load_words}", "pass the kws.weights.bin built with this bitstream")
    t0 = time.monotonic()
    link.load(image, timeout=args.timeout + len(image.words) * 8 * 10 / args.baud_used)
    seconds = time.monotonic() - t0
    if not out_of_json:
        print(f"loaded weight image {path} ({len(image.words)} words) in {seconds:.2f} s",
              file=sys.stderr)
    return {"source": "uart", "path": str(path), "words": len(image.words), "seconds": seconds}


def run(args) -> int:
    import sys

    from kwsbnn.boards.build import get_board
    from kwsbnn.boards.protocol import BoardLink, LinkGeometry
    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.data import fit_clip

    if args.timeout <= 0:
        raise KwsError(f"--timeout {args.timeout} must be positive")
    if args.every and not args.stream:
        raise KwsError("--every goes with --stream", "add --stream, or drop --every")
    if not 0 <= args.every <= 255:
        raise KwsError(f"--every {args.every}: the board decides every 1 to 255 frames")
    baud = args.baud or get_board(args.board).default_baud
    args.model = args.model or get_board(args.board).default_model
    if baud <= 0:
        raise KwsError(f"--baud {baud} must be positive")
    from kwsbnn.sw.export import deployable
    clips = find_clips(args.clips)
    dep = deployable(args.model)
    cfg, quantizer = _feature_pipeline(dep, args.model)
    waves = read_clips(clips)                           # every clip checked before the port opens
    if not args.stream:
        waves = [fit_clip(w, cfg.sample_rate) for w in waves]
    if args.load:
        read_image(args.load, dep, args.model)          # checked before the port opens
    args.baud_used = baud
    port = open_port(args.port, baud)
    golden = None
    if args.golden:
        from kwsbnn.sw.golden import GoldenModel
        golden = GoldenModel(dep)
    try:
        link = BoardLink(port, timeout=args.timeout, name=f"the board on {args.port}")
        info = link.info()
        check_board(info, dep, args.model, args.port)
        loaded = load_weights(link, info, dep, args, args.json)
        c, t, f = (int(v) for v in dep.input["shape"])
        geom = LinkGeometry(c, t, f, 8, info.n_classes, info.score_width, info.model_id)
        if not args.json:
            print(f"board on {args.port}: model {dep.name} (id {info.model_id:08x}), "
                  f"{info.n_classes} classes, clock {info.clock_khz / 1000:g} MHz, {baud} baud",
                  file=sys.stderr)
        tally = {"agree_cls": 0, "agree_all": 0}
        if args.stream:
            rows, seconds, extra = _run_stream(args, link, geom, dep, cfg, quantizer, clips, waves,
                                               golden, tally, baud)
        else:
            rows, seconds, extra = _run_whole(args, link, geom, dep, cfg, quantizer, clips, waves,
                                              golden, tally)
    finally:
        close = getattr(port, "close", None)
        if close:
            close()
    out = {"port": args.port, "baud": baud, "model": dep.name, "model_id": f"{info.model_id:08x}",
           "board": {"clock_mhz": info.clock_khz / 1000, "n_classes": info.n_classes,
                     "score_width": info.score_width, "input_bytes": info.input_bytes,
                     "protocol": info.version},
           "mode": "stream" if args.stream else "whole", "clips": rows, "weight_image": loaded,
           **extra}
    n = sum(len(r["decisions"]) for r in rows) if args.stream else len(rows)
    out["decisions"] = n
    out["seconds"] = seconds
    out["decisions_per_second"] = n / seconds if seconds > 0 else None
    if not args.stream:
        out["seconds_per_clip"] = seconds / len(rows)
    if golden is not None:
        out["agreement"] = {"equal": tally["agree_all"], "same_class": tally["agree_cls"], "total": n}
    if args.json:
        emit_json(out)
    else:
        print(f"{n} decisions in {seconds:.3f} s: {out['decisions_per_second']:.1f} decisions/s end to "
              f"end ({'streaming, every ' + str(extra['stride']) + ' frames' if args.stream else 'one map per clip'})",
              file=sys.stderr)
        if args.stream:
            print(f"{extra['frames_per_second']:.0f} frames/s sent; the link's limit at {baud} baud: "
                  f"{extra['link_limit']['frames_per_second']:.0f} frames/s, "
                  f"{extra['link_limit']['decisions_per_second']:.0f} decisions/s", file=sys.stderr)
        if golden is not None:
            print(f"golden model: {tally['agree_all']} of {n} equal (class and scores), "
                  f"{tally['agree_cls']} same class")
    if golden is not None and tally["agree_all"] != n:
        return 1
    return 0


def _judge(golden, x, cls, scores, dep, row, tally):
    """Golden model on ``x [1, T, F]`` against the board's answer: fills ``row``, counts."""
    g = golden.run(x[None])
    gc, gs = int(g.classes[0]), [int(v) for v in g.scores[0]]
    row["golden"] = {"class": gc, "keyword": dep.classes[gc], "scores": gs}
    row["agree"] = gc == cls and gs == scores
    tally["agree_cls"] += gc == cls
    tally["agree_all"] += row["agree"]


def _check_class(cls, dep):
    from kwsbnn.errors import KwsError
    if not 0 <= cls < len(dep.classes):
        raise KwsError(f"the board answered class {cls}; the model has {len(dep.classes)}")


def _run_whole(args, link, geom, dep, cfg, quantizer, clips, waves, golden, tally):
    """One INFER per clip (stop-and-wait); ``(rows, seconds on the link, extra)``."""
    import time
    rows, seconds = [], 0.0
    for path, wave in zip(clips, waves):
        x = wave_features(wave, cfg, quantizer)[None]
        t0 = time.monotonic()
        r = link.infer(x, geom)
        seconds += time.monotonic() - t0
        _check_class(r.cls, dep)
        row = {"clip": str(path), "class": r.cls, "keyword": dep.classes[r.cls], "scores": r.scores}
        if golden is not None:
            _judge(golden, x, r.cls, r.scores, dep, row, tally)
        rows.append(row)
        if not args.json:
            line = f"{path}: {row['keyword']}"
            if golden is not None and not row["agree"]:
                line += f"   (golden: {row['golden']['keyword']})"
            print(line)
    return rows, seconds, {}


def _run_stream(args, link, geom, dep, cfg, quantizer, clips, waves, golden, tally, baud):
    """Each clip as a stream of frames (STREAM_START, then STREAM frames with the flow control of
    :class:`~kwsbnn.boards.protocol.StreamPlan`): ``(rows, seconds end to end, extra)``; every
    decided window is checked against the whole clip's feature map."""
    import time

    import numpy as np

    from kwsbnn.boards.protocol import pack_frame
    from kwsbnn.errors import KwsError
    rows, seconds, frames_sent = [], 0.0, 0
    windows_equal = windows = 0
    plan = None
    for path, wave in zip(clips, waves):
        wave = stream_wave(wave, cfg)
        sent = []
        t0 = time.monotonic()
        plan = link.stream_start(args.every)
        decisions = []
        payloads = (pack_frame(q, geom) for q in stream_frames(wave, cfg, quantizer, sent))
        for k, r in link.stream(payloads, plan):
            _check_class(r.cls, dep)
            decisions.append((k, r))
        seconds += time.monotonic() - t0
        frames_sent += len(sent)
        whole = wave_features(wave, cfg, quantizer)
        if len(sent) != len(whole):
            raise KwsError(f"{path}: streamed {len(sent)} frames, the whole clip has {len(whole)}")
        row = {"clip": str(path), "frames": len(sent), "decisions": []}
        for k, r in decisions:
            x = np.stack(sent[k - plan.frames:k])[None]
            equal = bool(np.array_equal(x[0], whole[k - plan.frames:k]))
            windows += 1
            windows_equal += equal
            d = {"frame": k, "end_s": round((k - 1) * cfg.hop_ms / 1000, 3), "class": r.cls,
                 "keyword": dep.classes[r.cls], "scores": r.scores, "features_equal": equal}
            if golden is not None:
                _judge(golden, x, r.cls, r.scores, dep, d, tally)
            row["decisions"].append(d)
        rows.append(row)
        if not args.json:
            words = [d["keyword"] for d in row["decisions"]]
            line = f"{path}: {words[0] if len(words) == 1 else ' '.join(words)}"
            if golden is not None and not all(d["agree"] for d in row["decisions"]):
                line += "   (golden: " + " ".join(d["golden"]["keyword"] for d in row["decisions"]) + ")"
            print(line)
    if windows_equal != windows:
        raise KwsError(f"the streamed features of {windows - windows_equal} of {windows} decided "
                       "windows differ from the whole clips' feature maps",
                       "a bug in kwsbnn.sw.features.StreamFeatures: please report it")
    from dataclasses import replace
    limit = replace(geom, stride=plan.stride).link_limit(baud)
    return rows, seconds, {"stride": plan.stride, "frames": frames_sent,
                           "frames_per_second": frames_sent / seconds if seconds > 0 else None,
                           "windows_equal": windows_equal,
                           "link_limit": {"frames_per_second": limit["frames_per_second"],
                                          "decisions_per_second": limit["decisions_per_second"]}}
