"""`kwsbnn synth`: a synthetic keyword corpus (eSpeak NG voices) in the Speech Commands layout."""

HELP = "write a synthetic keyword corpus (eSpeak NG voices) as extra training data"
DESCRIPTION = """\
Speak every Speech Commands word (35 by default) with many eSpeak NG voices (8 English variants x 16
voice qualities = 128 by default), each with its own rate, pitch and level drawn from --seed, and
write them in the full-archive layout with empty validation and testing lists. Train on it beside a
real folder: kwsbnn train --data REAL,SYNTH ...  Existing clips are kept (an interrupted run resumes).
"""


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="corpus folder")
    parser.add_argument("--words", default=None, help="comma-separated words (default: the 35 of v0.02)")
    parser.add_argument("--voices", default=None,
                        help="comma-separated eSpeak NG voices, e.g. en-us,en+f2 (default: 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import sys

    from tqdm import tqdm

    from kwsbnn.cli import emit_json
    from kwsbnn.sw.synth import WORDS, default_voices, make_corpus

    words = [w.strip() for w in args.words.split(",") if w.strip()] if args.words else list(WORDS)
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else default_voices()
    with tqdm(total=len(words) * len(voices), desc="synthesizing", unit="clip", file=sys.stderr) as bar:
        res = make_corpus(args.out, words, voices, seed=args.seed, progress=bar.update)
    if args.json:
        emit_json(res)
    else:
        print(f"{res['clips']} clips ({res['written']} written, {res['kept']} kept) of {res['words']} "
              f"words x {res['voices']} voices in {res['out']}")
    return 0
