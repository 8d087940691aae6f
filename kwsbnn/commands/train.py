"""`kwsbnn train`: train a keyword-spotting model at float, int8 or binary precision."""

import json

HELP = "train a float, int8 or binary keyword-spotting model"
DESCRIPTION = """\
Train a ResNet keyword-spotting model (res8, res8-narrow, res15, res15-narrow, res26) on a Speech
Commands folder. Writes OUT/state.pt every epoch (resume with --resume), OUT/model.pt (best
validation accuracy) and OUT/metrics.json.

Width: --width N sets the channels of every layer at any precision (float, int8 and binary alike:
the fronts of `kwsbnn report tradeoff`); for a binary network it is the option width=N. The binary
option stages=W1xD1-W2xD2 sets per-stage widths and depths instead (not together with --width).

Binary options: a preset (redesign | naive) then key=value overrides, e.g.
  --binary-options redesign,width=32,first_weights=bin,distill=0.5
keys: layout first_weights last bn shortcut (none|bit|int) width clipped_ste ste_window head_gain real pad_bit
      optimizer schedule lr distill temperature bn_reestimate clip_latent rsign stream_frac stages pool dilation
presets: redesign (default), naive (a documented pitfall), direct (textbook binarization of the chain
network: the baseline). docs/binary-guidelines.md gives each option's measured effect.

Several data folders: --data DIR1,DIR2 trains on the union of their training splits and validates and
tests on each folder's own lists (a folder without _background_noise_/ uses the first folder's noise).
"""


def add_arguments(parser):
    parser.add_argument("--data", required=True,
                        help="Speech Commands folder(s), read in place; several joined by commas")
    parser.add_argument("--arch", default="res8", help="res8 | res8-narrow | res15 | res15-narrow | res26")
    parser.add_argument("--precision", default="float", choices=["float", "int8", "binary"])
    parser.add_argument("--binary-options", default="redesign", metavar="OPTS",
                        help="binary design flags (see above; default: redesign)")
    parser.add_argument("--width", type=int, default=None, metavar="N",
                        help="channels of every layer instead of the arch's, at any precision (binary: "
                             "the same as the option width=N; stages= sets per-stage widths instead)")
    parser.add_argument("--layout", choices=["honk", "chain"], default=None,
                        help="float models only: Honk's layout (default) or the deployable chain")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default runs/<arch>-<precision>-s<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--teacher", default=None, metavar="MODEL",
                        help="model to distill from (a path or a shipped model's name); several "
                             "joined by commas are an ensemble (mean of their logits)")
    parser.add_argument("--init", default=None, metavar="MODEL",
                        help="start from this model's weights (two-step binary training: step one "
                             "with real=true, step two with --init STEP_ONE_MODEL)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (float/int8; binary: lr=)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument("--label-smoothing", type=float, default=None)
    parser.add_argument("--spec-aug", default=None, metavar="T,TW,F,FW",
                        help="SpecAugment: time masks, max time width, frequency masks, max frequency "
                             "width (default 2,12,2,5; 0 = off)")
    parser.add_argument("--augment", default=None, metavar="K=V,...",
                        help="extra training augmentation: speed=0.1 (resample 0.9-1.1), reverb=0.3 "
                             "(share of clips through a synthetic room), vtlp=0.1 (warp each clip's "
                             "mel filters by 0.9-1.1: vocal-tract length), mixup=0.2 (Beta alpha; the "
                             "teacher sees the mixed input)")
    parser.add_argument("--unknown-fraction", type=float, default=None, metavar="F",
                        help="training unknown clips per keyword clip (default 0.1, the standard share; "
                             "validation and testing keep 0.1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--strict", action="store_true",
                        help="an unusable WAV file in --data is an error (default: skip it, count and "
                             "name it on stderr and in the JSON's `skipped`)")
    parser.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")


def run(args) -> int:
    from kwsbnn.cli import emit_json
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.models import ARCHS, BinaryOptions
    from kwsbnn.sw.train import TrainConfig, train

    if args.arch not in ARCHS:
        raise KwsError(f"unknown architecture {args.arch!r}", f"use one of {', '.join(ARCHS)}")
    try:
        BinaryOptions.parse(args.binary_options)
    except ValueError as e:
        raise KwsError(f"--binary-options: {e}") from None
    if args.epochs < 1:
        raise KwsError("--epochs must be at least 1")
    if args.width is not None:
        if args.width < 1:
            raise KwsError(f"--width {args.width}: expected a positive number of channels")
        from kwsbnn.sw.models import make_config
        try:
            make_config(args.arch, args.precision, BinaryOptions.parse(args.binary_options)
                        if args.precision == "binary" else None, width=args.width,
                        layout=args.layout if args.precision == "float" else None)
        except ValueError as e:
            raise KwsError(f"--width: {e}") from None
    name = f"{args.arch}" + (f"-w{args.width}" if args.width else "")
    cfg = TrainConfig(data=args.data, arch=args.arch, precision=args.precision,
                      binary=args.binary_options if args.precision == "binary" else "redesign",
                      layout=args.layout, width=args.width, epochs=args.epochs, seed=args.seed,
                      out=args.out or f"runs/{name}-{args.precision}-s{args.seed}",
                      batch_size=args.batch_size, teacher=args.teacher, init=args.init, threads=args.threads)
    if args.spec_aug is not None:
        try:
            parts = [int(v) for v in args.spec_aug.split(",")] if args.spec_aug != "0" else []
        except ValueError:
            parts = None
        if parts is None or len(parts) not in (0, 4) or any(v < 0 for v in parts):
            raise KwsError(f"--spec-aug {args.spec_aug!r}: expected four counts T,TW,F,FW or 0")
        cfg.spec_aug = dict(zip(("time_masks", "time_width", "freq_masks", "freq_width"), parts)) \
            if parts else None
    if args.augment:
        cfg.augment = parse_augment(args.augment)
    for key in ("lr", "weight_decay", "dropout", "label_smoothing"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.unknown_fraction is not None:
        if not 0 <= args.unknown_fraction <= 10:
            raise KwsError(f"--unknown-fraction {args.unknown_fraction:g}: expected a share between 0 and 10",
                           "e.g. --unknown-fraction 0.2 (two unknown clips per ten keyword clips)")
        cfg.unknown = args.unknown_fraction
    from kwsbnn.sw.skipped import scan
    skipped = scan(args.data, args.strict, "kwsbnn train", seed=args.seed)
    metrics = train(cfg, resume=args.resume)
    if args.json:
        emit_json({k: v for k, v in metrics.items() if k != "history"} | {"skipped": skipped}
                  | {"history": metrics["history"]})
    else:
        keys = ("best_val_accuracy", "test_accuracy", "seconds_per_epoch", "total_seconds", "model")
        print(json.dumps({k: metrics.get(k) for k in keys} | {"skipped": skipped["count"]}))
    return 0


def parse_augment(text: str) -> dict:
    """``speed=0.1,reverb=0.3,mixup=0.2`` -> a dict of floats (a KwsError names a bad entry)."""
    from kwsbnn.errors import KwsError
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, val = part.partition("=")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise KwsError(f"--augment {part!r}: expected key=number",
                           "e.g. --augment speed=0.1,reverb=0.3,vtlp=0.1,mixup=0.2") from None
        if not sep or out[key.strip()] < 0:
            raise KwsError(f"--augment {part!r}: expected key=number >= 0")
    return out
