"""`kwsbnn data download`: the Speech Commands data set from its official archives."""

HELP = "download Speech Commands v0.02 (or rebuild the subset the project's figures use)"
DESCRIPTION = """\
kwsbnn data download [--version 0.02|0.02-test] [--out DIR]
  Download the official archive (URL and SHA-256 pinned in kwsbnn/sw/download.py), with a progress
  bar; an interrupted download resumes (HTTP Range) when run again; the checksum is verified, then
  the archive is extracted into the layout --data reads:
    0.02       DIR/speech_commands_v0.02            (2.4 GB: every word, _background_noise_, lists)
    0.02-test  DIR/speech_commands_test_set_v0.02   (113 MB: the canonical test set)
kwsbnn data download --subset [--out DIR]
  Rebuild DIR/speech_commands_subset, the folder every figure in the README is measured on (3,719
  clips of 187 speakers with its own validation and testing lists): its clips come from the
  canonical test set (downloaded and extracted), its _background_noise_/ from the full archive
  (downloaded, 2.4 GB, but only those six files are extracted). The result is checked against the
  shipped checksums (kwsbnn/sw/data-lists/speech_commands_subset).
Default DIR: data (from the repository root this is data/, which git ignores).

Examples:
  kwsbnn data download --subset
  kwsbnn eval --model binary --data data/speech_commands_subset --split test
"""


def add_arguments(parser):
    parser.add_argument("action", choices=["download"], help="what to do")
    parser.add_argument("--version", default="0.02", choices=["0.02", "0.02-test"],
                        help="0.02: the full archive (default); 0.02-test: the canonical test set")
    parser.add_argument("--subset", action="store_true",
                        help="rebuild the speaker subset the README's figures use (see above)")
    parser.add_argument("--out", default="data", help="folder for archives and data (default: data)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import sys
    from pathlib import Path

    from kwsbnn.cli import emit_json
    from kwsbnn.sw import download as dl

    out = Path(args.out)
    progress = sys.stderr.isatty()
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.subset:
        say("the subset's clips come from the canonical v0.02 test set:")
        test_set = dl.download("0.02-test", out, progress)
        say("its _background_noise_/ comes from the full v0.02 archive (only those files are extracted):")
        noise = dl.fetch(dl.ARCHIVES["0.02"], out, progress)
        say(f"building {out / dl.SUBSET} and checking it against the shipped checksums")
        result = dl.build_subset(test_set, noise, out / dl.SUBSET)
        folder = Path(result["folder"])
    else:
        folder = dl.download(args.version, out, progress)
        result = {"folder": str(folder), "version": args.version}
    if args.json:
        emit_json(result)
    else:
        print(f"{folder}: ready; e.g. kwsbnn eval --model binary --data {folder}"
              + (" --split test" if args.subset else ""))
    return 0
