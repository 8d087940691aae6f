"""Benchmark: the fronts at equal memory (issue 15, "the study"): float, int8, direct binary and the
redesigned binary network, each at four or five widths, same data and seeds, scored on the testing list.

    .venv/bin/python benchmarks/fronts.py --data SUBSET[,EXTRA,...] --out FRONTS [--runs a,b] [--seeds 0]
        [--epochs-float 40] [--epochs-binary 50] [--threads 1] [--report]
    kwsbnn report tradeoff --fronts FRONTS          # the plot and the equal-memory table

Families (:data:`FAMILIES`) and their recipes:

- ``float`` and ``int8``: the chain network (the deployable layout; float as well, so that the four
  fronts are one network at four precisions) at widths 16, 24, 32, 48 (``kwsbnn train --width``):
  int8 weights 117.3, 258.7, 455.3 and 1,014.6 kbit, i.e. ~100 kbit to ~1 Mbit. The float/int8
  recipe of ``kwsbnn train`` (SGD 0.1 with a cosine schedule, label smoothing 0.1, dropout 0.2,
  SpecAugment 2,12,2,5), ``--epochs-float`` epochs.
- ``direct``: the float network binarized the textbook way (``--binary-options direct``, shipped as
  ``binary-direct``) at widths 16, 32, 64, 96, 128, with the float recipe and the same epochs (the
  paper's "direct binarization" figure).
- ``redesign``: the shipped ``binary``'s recipe (``stages=Wx1-Wx2``, integer residual stream, ±1
  first layer, ``last=int8``, Adam 6.28e-3 cosine, distilled from ``--teacher`` with weight 0.7, no
  dropout or label smoothing, SpecAugment 1,8,1,4, no speed perturbation: it bought nothing, see
  docs/studies/binary-accuracy.md) at widths 16, 32, 64, 96, 128, ``--epochs-binary`` epochs (the
  shipped model: 120 on subset + extra + the ``kwsbnn synth`` corpus). At 128 channels the weights
  (456 kbit) and the integer stream's map (333 kbit) still fit the 1 Mbit budget.
- ``deep``: the redesign with five binary layers instead of three (``stages=Wx2-Wx3``; the
  screening's largest lever, docs/studies/binary-accuracy.md) at widths 32, 64, 96
  (``--widths-deep``), the redesign's recipe and epochs. At 96 channels weights (425 kbit) and map
  (250 kbit) fit the 1 Mbit budget; at 128 they would not (755 + 333 kbit).

Every family trains on all ``--data`` folders (the union of their training splits) with seed
``--seeds``. A run is ``<family>-w<width>-s<seed>`` and goes to ``FRONTS/<run>/`` (a ``kwsbnn train``
run folder). Resumable: run the same command again after an interruption; finished runs (with
``metrics.json``) are skipped, an interrupted one resumes from its last epoch. Several processes may
share one folder with disjoint ``--runs`` (a family name, or single runs such as ``int8-w16``).

``--adopt run=model,...`` (e.g. ``redesign-w96=binary,int8-w48=int8-w48``) takes a shipped model as a
finished run of the study instead of training it again: it checks that the settings the record
keeps (``config``) are the family's recipe at that width on the same ``--data`` and epochs (the seed
is the record's), then writes
``FRONTS/<run>-s<seed>/`` with a copy of ``models/<model>.pt`` and a ``metrics.json`` made from the
record (``adopted_from`` names it).

``--report`` trains nothing: it scores every finished run on the testing list of the first data
folder (torch integer mode, which the golden model equals) and writes ``FRONTS/fronts.json`` and
``FRONTS/fronts.md``: per run the test accuracy with a 95% bootstrap interval over clips (of the
seed-averaged per-clip correctness), best validation accuracy, final training accuracy, weight and
peak activation bits, median seconds per epoch, optimizer steps; then each family's best accuracy
within equal weight budgets (100 kbit, 200 kbit, 500 kbit, and the SPRAM's 1 Mbit = 2**20 bits);
then each other run against int8's best at the same weight memory and, inside 1 Mbit, against
int8's best there (the issue's two targets; :func:`paired`): the difference of seed-mean
accuracies, its 95% bootstrap interval over clips, and exact McNemar tests on the same clips.
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from binary_study import WIDE, bootstrap, mcnemar  # noqa: E402  (the shipped `binary`'s recipe at 64 channels)

FLOAT_WIDTHS = (16, 24, 32, 48)
BINARY_WIDTHS = (16, 32, 64, 96, 128)
# The redesign: `binary`'s options at width W (stages=Wx1-Wx2: the first layer and three binary layers).
REDESIGN = WIDE.replace("stages=64x1-64x2", "stages={w}x1-{w}x2") + ",shortcut=int"
# The deep redesign: two more binary layers (stages=Wx2-Wx3: the first layer and five binary layers).
DEEP = REDESIGN.replace("stages={w}x1-{w}x2", "stages={w}x2-{w}x3")
DEEP_WIDTHS = (32, 64, 96)
REDESIGN_TRAIN = dict(dropout=0.0, label_smoothing=0.0,
                      spec_aug=dict(time_masks=1, time_width=8, freq_masks=1, freq_width=4))

# family -> (precision, binary options (W = width) or None, epochs family, widths, extra TrainConfig fields)
FAMILIES = {
    "float": ("float", None, "float", FLOAT_WIDTHS, {"layout": "chain"}),
    "int8": ("int8", None, "float", FLOAT_WIDTHS, {}),
    "direct": ("binary", "direct", "float", BINARY_WIDTHS, {}),
    "redesign": ("binary", REDESIGN, "binary", BINARY_WIDTHS, REDESIGN_TRAIN),
    "deep": ("binary", DEEP, "binary", DEEP_WIDTHS, REDESIGN_TRAIN),
}


def all_runs(widths_float=FLOAT_WIDTHS, widths_binary=BINARY_WIDTHS,
             widths_deep=DEEP_WIDTHS) -> list[tuple[str, int]]:
    """Every ``(family, width)`` of the study, families in :data:`FAMILIES` order."""
    out = []
    chosen = ((FLOAT_WIDTHS, widths_float), (BINARY_WIDTHS, widths_binary), (DEEP_WIDTHS, widths_deep))
    for fam, (_, _, _, default, _) in FAMILIES.items():
        out += [(fam, w) for w in next(given for group, given in chosen if group is default)]
    return out


def select(spec: str, runs: list[tuple[str, int]], option: str = "--runs",
           families: bool = True) -> list[tuple[str, int]]:
    """``--runs`` (families or ``family-wN`` names, comma-separated) -> the chosen ``(family, width)``;
    ``families=False``: single runs only."""
    chosen = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part in FAMILIES and not families:
            raise SystemExit(f"fronts.py: {option} {part!r}: name one run ({part}-wN), not a family")
        if part in FAMILIES:
            hit = [r for r in runs if r[0] == part]
        else:
            fam, _, w = part.partition("-w")
            hit = [r for r in runs if r[0] == fam and w.isdigit() and r[1] == int(w)]
        if not hit:
            raise SystemExit(f"fronts.py: {option} {part!r}: not a family ({', '.join(FAMILIES)}) or a "
                             f"run of this study ({', '.join(f'{f}-w{w}' for f, w in runs)})")
        chosen += [r for r in hit if r not in chosen]
    return chosen


def run_name(family: str, width: int, seed: int) -> str:
    return f"{family}-w{width}-s{seed}"


def run_config(family: str, width: int, data: str, out: Path, seed: int, epochs: dict, threads: int,
               teacher: str | None):
    """The ``TrainConfig`` of one run."""
    from kwsbnn.sw.train import TrainConfig
    precision, opts, kind, _, extra = FAMILIES[family]
    cfg = TrainConfig(data=data, arch="res8", precision=precision, epochs=epochs[kind], seed=seed,
                      out=str(out / run_name(family, width, seed)), threads=threads)
    if opts is None:
        cfg = replace(cfg, width=width)
    elif opts == "direct":
        cfg = replace(cfg, binary="direct", width=width)
    else:
        cfg = replace(cfg, binary=opts.format(w=width), teacher=teacher)
        if not teacher:
            cfg = replace(cfg, binary=cfg.binary.replace("distill=0.7", "distill=0"))
    return replace(cfg, **extra)


def train_runs(args):
    from kwsbnn.sw.train import train
    for seed in args.seeds:
        for fam, width in args.runs:
            cfg = run_config(fam, width, args.data, args.out, seed, args.epochs, args.threads, args.teacher)
            name = run_name(fam, width, seed)
            done = Path(cfg.out) / "metrics.json"
            if done.exists():
                had = json.loads(done.read_text()).get("epochs")
                if had != cfg.epochs:
                    raise SystemExit(f"fronts.py: {name} finished with {had} epochs, not {cfg.epochs}: "
                                     "use another --out for another schedule")
                print(f"{name}: done", file=sys.stderr)
                continue
            print(f"{name}: training into {cfg.out} ({cfg.epochs} epochs)", file=sys.stderr, flush=True)
            train(cfg, resume=True, progress=args.progress)


# TrainConfig fields that do not change what a run learns: where it writes and how many threads it used.
_INCIDENTAL = ("out", "threads")


def _recipe_differences(fam: str, width: int, args, got: dict) -> list[str]:
    """How a shipped model's recorded ``config`` differs from the run's recipe (empty: it is the
    run). A field the record lacks was added to ``TrainConfig`` after it was trained: its default."""
    from dataclasses import asdict

    from kwsbnn.sw.train import TrainConfig
    defaults = asdict(TrainConfig())
    want = asdict(run_config(fam, width, args.data, args.out, int(got.get("seed", 0)), args.epochs,
                             args.threads, args.teacher))
    out = []
    for k, v in want.items():
        have = got.get(k, defaults[k])
        if k == "data":
            have, v = ([str(Path(d).resolve()) for d in x.split(",") if d] for x in (have, v))
        if k not in _INCIDENTAL and have != v:
            out.append(f"{k}: {have!r} (recipe: {v!r})")
    return out


def adopt(args, pairs: list[tuple[tuple[str, int], str]]):
    """Write each shipped model as a finished run (see the module docstring). Every pair is checked
    before anything is written: a model whose recorded settings differ from the run's recipe, or a
    run folder that already holds another finished run, is refused."""
    import shutil

    from ship_model import RUN_FIELDS

    from kwsbnn.paths import MODELS, write_atomic
    plans = []
    for (fam, width), name in pairs:
        what = f"--adopt {fam}-w{width}={name}"
        rec_path = MODELS / f"{name}.json"
        if not rec_path.is_file() or not (MODELS / f"{name}.pt").is_file():
            raise SystemExit(f"fronts.py: {what}: no shipped model {name} (models/{name}.json and .pt)")
        rec = json.loads(rec_path.read_text())
        got = rec.get("config")
        if not got:
            raise SystemExit(f"fronts.py: {what}: models/{name}.json records no training settings "
                             "(`config`): train the run instead")
        diff = _recipe_differences(fam, width, args, got)
        if diff:
            raise SystemExit(f"fronts.py: {what}: the model was not trained with the run's recipe: "
                             + "; ".join(diff))
        run = args.out / run_name(fam, width, int(got.get("seed", 0)))
        done = run / "metrics.json"
        if done.exists() and json.loads(done.read_text()).get("adopted_from") != f"models/{name}.pt":
            raise SystemExit(f"fronts.py: {what}: {run} already holds a finished run; move it away first")
        plans.append((run, name, rec))
    for run, name, rec in plans:
        run.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MODELS / f"{name}.pt", run / "model.pt.tmp")
        (run / "model.pt.tmp").replace(run / "model.pt")
        metrics = {k: rec.get(k) for k in RUN_FIELDS}
        metrics.update(complete=True, adopted_from=f"models/{name}.pt", command=rec.get("command"))
        write_atomic(run / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        print(f"{run.name}: adopted models/{name}.pt", file=sys.stderr)


def report(args) -> dict:
    """Score every finished run (see the module docstring); returns the written JSON."""
    from kwsbnn.paths import write_atomic
    from kwsbnn.sw.checkpoint import load_model
    from kwsbnn.sw.evaluate import evaluate
    from kwsbnn.sw.footprint import footprint
    from kwsbnn.sw.train import epoch_seconds
    from kwsbnn.sw.tradeoff import EQUAL_MEMORY_BITS, _kind, budget_label, equal_memory
    from kwsbnn.units import kbit

    first = args.data.split(",")[0]
    groups = {}
    for metrics_path in sorted(args.out.glob("*-w*-s*/metrics.json")):
        name = metrics_path.parent.name
        base, _, seed = name.rpartition("-s")
        fam, _, width = base.partition("-w")
        if fam not in FAMILIES or not width.isdigit() or not seed.isdigit():
            continue
        metrics = json.loads(metrics_path.read_text())
        model = load_model(metrics_path.parent / "model.pt")
        res = evaluate(model, first, "test", "torch")
        correct = np.array([p == t for p, t in zip(res["predictions"], res["labels"])])
        fp = footprint(model)
        g = groups.setdefault((fam, int(width)), {"seeds": [], "correct": [], "val": [], "train": [],
                                                  "spe": [], "clips": res["clips"], "fp": fp,
                                                  "kind": _kind(model),
                                                  "epochs": metrics["epochs"],
                                                  "steps": metrics.get("optimizer_steps")})
        if g["clips"] != res["clips"]:
            raise SystemExit(f"fronts.py: {name} was scored on other clips than the other runs")
        g["seeds"].append(int(seed))
        g["correct"].append(correct)
        g["val"].append(metrics["best_val_accuracy"])
        g["train"].append(metrics["final_train_accuracy"])
        # Median epoch time where the run kept its history (an adopted shipped model's card has only the mean).
        g["spe"].append(epoch_seconds(metrics["history"]) if "history" in metrics
                        else metrics["seconds_per_epoch"])
    rows = []
    order = {f: i for i, f in enumerate(FAMILIES)}
    for (fam, width), g in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        mean_correct = np.mean(g["correct"], axis=0)
        lo, hi = bootstrap(mean_correct)
        rows.append({"run": f"{fam}-w{width}", "family": fam, "kind": g["kind"], "width": width,
                     "seeds": g["seeds"], "test_accuracy": float(mean_correct.mean()), "ci95": [lo, hi],
                     "accuracy": float(mean_correct.mean()),
                     "best_val_accuracy": float(np.mean(g["val"])),
                     "final_train_accuracy": float(np.mean(g["train"])),
                     "weight_bits": int(g["fp"]["weight_bits"]),
                     "activation_peak_bits": int(g["fp"]["activation_peak_bits"]),
                     "seconds_per_epoch": float(np.mean(g["spe"])), "epochs": g["epochs"],
                     "optimizer_steps": g["steps"], "n_test": len(mean_correct)})
    eq = equal_memory(rows)
    pairs = paired(rows, {f"{fam}-w{w}": g["correct"] for (fam, w), g in groups.items()})
    out = {"data": args.data, "scored_on": f"testing list of {Path(first).name}", "rows": rows,
           "equal_memory": {k: {str(b): a for b, a in v.items()} for k, v in eq.items()},
           "paired": pairs}
    write_atomic(args.out / "fronts.json", json.dumps(out, indent=1) + "\n")
    lines = ["| run | kind | test (95% CI) | best val | final train | weights kbit | act. peak kbit | "
             "s/epoch | epochs | seeds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['kind']} | {100 * r['test_accuracy']:.1f}% "
                     f"({100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}) | "
                     f"{100 * r['best_val_accuracy']:.1f}% | {100 * r['final_train_accuracy']:.1f}% | "
                     f"{kbit(r['weight_bits'], unit=False)} | {kbit(r['activation_peak_bits'], unit=False)} | "
                     f"{r['seconds_per_epoch']:.0f} | {r['epochs']} | {len(r['seeds'])} |")
    lines += ["", "| best accuracy within | " + " | ".join(budget_label(b) for b in EQUAL_MEMORY_BITS)
              + " |", "|---|" + "---|" * len(EQUAL_MEMORY_BITS)]
    for kind, accs in eq.items():
        lines.append(f"| {kind} | " + " | ".join("-" if a is None else f"{100 * a:.1f}%" for a in accs.values())
                     + " |")
    lines += ["", "| run | seeds | against int8 | difference (95% CI) | McNemar p per seed |",
              "|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['run']} | {len(p['p_per_seed'])} | {p['against']} ({p['versus']}) | "
                     f"{100 * p['difference']:+.1f} ({100 * p['ci95'][0]:+.1f} to {100 * p['ci95'][1]:+.1f}) | "
                     + ", ".join(f"{q:.2g}" for q in p["p_per_seed"]) + " |")
    write_atomic(args.out / "fronts.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def paired(rows: list[dict], correct: dict, reference: str = "int8") -> list[dict]:
    """Each run of the other families against ``reference``'s best run at the same weight memory
    (at or below the run's bits: the issue's target 2, the fronts) and, for a run inside the SPRAM's
    1 Mbit, against ``reference``'s best inside it (target 1). Per pair: difference of seed-mean
    accuracies, 95% bootstrap interval of the difference over clips (2,000 resamples of the
    seed-averaged per-clip correctness), exact McNemar p of each of the run's seeds against the
    reference's first seed. ``correct``: run -> list of per-seed correctness vectors."""
    from kwsbnn.sw.tradeoff import ICEBREAKER_SPRAM_BITS, best_within
    refs = [r for r in rows if r["family"] == reference]
    out = []
    for run in (r for r in rows if r["family"] != reference):
        pairs = [("same memory", best_within(refs, run["weight_bits"]))]
        if run["weight_bits"] <= ICEBREAKER_SPRAM_BITS:
            pairs.append(("1 Mbit", best_within(refs, ICEBREAKER_SPRAM_BITS)))
        for versus, ref in pairs:
            if ref is None:
                continue
            diff = np.mean(correct[run["run"]], axis=0) - np.mean(correct[ref["run"]], axis=0)
            out.append({"run": run["run"], "versus": versus, "against": ref["run"],
                        "difference": float(diff.mean()), "ci95": list(bootstrap(diff)),
                        "p_per_seed": [mcnemar(c, correct[ref["run"]][0]) for c in correct[run["run"]]]})
    return out


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or any(v < 1 for v in vals):
        raise SystemExit(f"fronts.py: {what} {text!r}: expected positive integers, comma-separated")
    return vals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="data folder(s), comma-separated; the first is scored")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", default=",".join(FAMILIES),
                    help="families (float,int8,direct,redesign,deep) or runs (int8-w16); default: all")
    ap.add_argument("--widths-float", default=",".join(map(str, FLOAT_WIDTHS)), help="float and int8 widths")
    ap.add_argument("--widths-binary", default=",".join(map(str, BINARY_WIDTHS)),
                    help="direct and redesign widths")
    ap.add_argument("--widths-deep", default=",".join(map(str, DEEP_WIDTHS)), help="deep redesign widths")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs-float", type=int, default=40, help="epochs of float, int8 and direct")
    ap.add_argument("--epochs-binary", type=int, default=50, help="epochs of the redesign and the deep redesign")
    ap.add_argument("--teacher", default="float", help="the redesign's teacher (`none`: no distillation)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true", help="progress bars on stderr")
    ap.add_argument("--adopt", default="",
                    help="run=shipped model pairs taken as finished runs, e.g. redesign-w96=binary "
                         "(the seed is the model's)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args(argv)
    for d in args.data.split(","):
        if d and not Path(d).is_dir():
            raise SystemExit(f"fronts.py: --data {d}: no such folder")
    runs = all_runs(_ints(args.widths_float, "--widths-float"), _ints(args.widths_binary, "--widths-binary"),
                    _ints(args.widths_deep, "--widths-deep"))
    args.runs = select(args.runs, runs)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        args.seeds = []
    if not args.seeds or min(args.seeds) < 0:
        raise SystemExit(f"fronts.py: --seeds {args.seeds!r}: expected integers >= 0, comma-separated")
    args.epochs = {"float": _ints(str(args.epochs_float), "--epochs-float")[0],
                   "binary": _ints(str(args.epochs_binary), "--epochs-binary")[0]}
    args.teacher = None if args.teacher.lower() == "none" else args.teacher
    args.out.mkdir(parents=True, exist_ok=True)
    if args.adopt:
        if args.report:
            raise SystemExit("fronts.py: --adopt and --report are two steps: adopt first, then --report")
        pairs = []
        for part in (p.strip() for p in args.adopt.split(",") if p.strip()):
            run, eq, name = part.partition("=")
            if not eq or not name:
                raise SystemExit(f"fronts.py: --adopt {part!r}: expected run=model, e.g. redesign-w96=binary")
            pairs += [(r, name) for r in select(run, runs, "--adopt", families=False)]
        return adopt(args, pairs)
    if args.report:
        return report(args)
    train_runs(args)


if __name__ == "__main__":
    from kwsbnn.errors import KwsError
    try:
        main()
    except KwsError as e:           # a resumed run with other settings, a missing teacher, ...
        sys.exit(f"fronts.py: {e.message}" + (f" ({e.hint})" if getattr(e, "hint", None) else ""))
