"""Benchmark: the binary-accuracy study (docs/studies/binary-accuracy.md): named training rows, each a
full ``kwsbnn train`` run, scored on the testing list with confidence intervals and paired tests.

    .venv/bin/python benchmarks/binary_study.py --data SUBSET,EXTRA,SYNTH --out STUDY [--rows a,b] [--seeds 0]
        [--epochs N] [--threads 1] [--report]

A row is a base recipe plus overrides (:data:`ROWS`); ``--rows`` picks them (default: all), ``--seeds``
trains each row once per seed. Every run goes to ``STUDY/<row>-s<seed>/`` and is resumable (run the
same command again after an interruption: finished runs are skipped, an interrupted one resumes from
its last epoch). Several processes may share one study folder with disjoint ``--rows``.

A row may start from, or distil from, another row's model of the same seed (``"@row"`` in its
settings): that row trains first. Step-one rows (``real=true``, ``real_weights=true``) have no integer
form and are not scored.

``--report`` trains nothing: it scores every finished run on the testing list of the first data
folder (torch integer mode, which the golden model equals) and writes ``STUDY/study.json`` and
``STUDY/study.md``: per row the mean test accuracy over its seeds, a 95% interval (bootstrap over
clips, 2,000 resamples, of the seed-averaged per-clip correctness), best validation accuracy, final
training accuracy, seconds per epoch, optimizer steps, and an exact McNemar test (two-sided) against
the reference row (``--reference``, default ``int``) on the same clips (first seed of each).
"""

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

# The screening recipe: binary-wide's (search trial 20 at 64 channels, distilled from `float`).
WIDE = ("redesign,stages=64x1-64x2,pool=4x3,dilation=on,first_weights=bin,bn=true,clipped_ste=true,"
        "ste_window=0.5,pad_bit=0,optimizer=adam,schedule=cosine,lr=0.00628,distill=0.7,last=int8")
BASE = dict(arch="res8", precision="binary", teacher="float", dropout=0.0, label_smoothing=0.0,
            spec_aug=dict(time_masks=1, time_width=8, freq_masks=1, freq_width=4))

# name -> (binary options appended to WIDE, extra TrainConfig fields, the --data folders it trains on
# by position: 0 = the first, which every row is scored on)
ROWS = {
    "none": ("shortcut=none", {}, (0,)),                      # binary-wide as shipped
    "bit": ("shortcut=bit", {}, (0,)),                        # the 1-bit shortcut
    "int": ("shortcut=int", {}, (0,)),                        # Bi-Real integer residual stream
    "int-linear": ("shortcut=int,last=bin", {}, (0,)),        # the head pools the signed stream
    "int-norsign": ("shortcut=int,rsign=false", {}, (0,)),
    "int-ste1": ("shortcut=int,ste_window=1.0", {}, (0,)),
    "int-extra": ("shortcut=int", {}, (0, 1)),                # + speech_commands_extra
    "int-synth": ("shortcut=int", {}, (0, 2)),                # + kwsbnn synth's corpus
    "int-synth-unk3": ("shortcut=int", {"unknown": 0.3}, (0, 2)),  # + synth, 3x the unknown clips
    "int-speed": ("shortcut=int", {"augment": {"speed": 0.1}}, (0,)),
    "int-reverb": ("shortcut=int", {"augment": {"reverb": 0.3}}, (0,)),
    "int-mixup": ("shortcut=int", {"augment": {"mixup": 0.2}}, (0,)),
    "int-nodistill": ("shortcut=int,distill=0", {}, (0,)),
    "int-vtlp": ("shortcut=int", {"augment": {"vtlp": 0.1}}, (0,)),   # mel filters warped 0.9-1.1
    "int-w96": ("shortcut=int,stages=96x1-96x2", {}, (0,)),       # widths inside the 1 Mbit budget
    "int-w128": ("shortcut=int,stages=128x1-128x2", {}, (0,)),
    "int-rprelu": ("shortcut=int,rprelu=true", {}, (0,)),         # ReActNet's RPReLU (scored in float)
    "int-synth-ft": ("shortcut=int", {"init": "@int-synth"}, (0,)),   # synth as pretraining: then real only
    "int-ens": ("shortcut=int", {"teacher": "float,int8"}, (0,)),   # an ensemble teacher
    "int-nodil": ("shortcut=int,dilation=off", {}, (0,)),         # receptive field: no dilation
    "int-deep": ("shortcut=int,stages=64x2-64x3", {}, (0,)),       # depth: five binary layers, not three
    "int-pool2": ("shortcut=int,pool=2x3/2x1", {}, (0,)),          # pool time in two steps (finer early)
    # ReActNet's two steps: sign activations on latent weights (not deployable, not scored), then
    # the binary network from its weights; "-fd" distils from step one block by block and by logits
    # (Real-to-Binary: a teacher of the same architecture). "@row" is that row's model, same seed.
    "int-e30": ("shortcut=int", {"epochs": 30}, (0,)),         # the two steps' epochs in one run
    "int-e30-t48": ("shortcut=int", {"epochs": 30, "teacher": "int8-w48"}, (0,)),  # a stronger teacher
    "int-realw": ("shortcut=int,real_weights=true", {}, (0,)),
    "int-twostep": ("shortcut=int", {"init": "@int-realw"}, (0,)),
    "int-twostep-fd": ("shortcut=int,feat_distill=10", {"init": "@int-realw", "teacher": "@int-realw"},
                       (0,)),
}
STEP_ONE = ("real=true", "real_weights=true")     # rows whose models have no integer form


def row_config(name: str, data: list[str], out: Path, seed: int, epochs: int, threads: int):
    from kwsbnn.sw.train import TrainConfig
    opts, extra, which = ROWS[name]
    if max(which) >= len(data):
        sys.exit(f"row {name} trains on --data folder {max(which) + 1}; give that many folders")
    folders = [data[i] for i in which]
    extra = {k: str(out / f"{v[1:]}-s{seed}" / "model.pt") if isinstance(v, str) and v.startswith("@")
             else v for k, v in extra.items()}
    cfg = TrainConfig(data=",".join(folders), binary=f"{WIDE},{opts}", epochs=epochs, seed=seed,
                      out=str(out / f"{name}-s{seed}"), threads=threads, **BASE)
    return replace(cfg, **extra)


def needs(name: str) -> list[str]:
    """The rows whose models ``name`` starts from or distils from ("@row"), in training order."""
    refs = [v[1:] for v in ROWS[name][1].values() if isinstance(v, str) and v.startswith("@")]
    return [r for ref in dict.fromkeys(refs) for r in needs(ref) + [ref]]


def train_rows(args, data):
    from kwsbnn.sw.train import train
    for seed in args.seeds:
        for name in dict.fromkeys(r for row in args.rows for r in needs(row) + [row]):
            cfg = row_config(name, data, args.out, seed, args.epochs, args.threads)
            if (Path(cfg.out) / "metrics.json").exists():
                print(f"{name} seed {seed}: done", file=sys.stderr)
                continue
            print(f"{name} seed {seed}: training into {cfg.out}", file=sys.stderr, flush=True)
            train(cfg, resume=True)


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value for paired correctness vectors ``a`` and ``b``."""
    n01 = int(np.sum(a & ~b))
    n10 = int(np.sum(~a & b))
    n = n01 + n10
    if n == 0:
        return 1.0
    k = min(n01, n10)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * p)


def bootstrap(correct: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct), (n, len(correct)))
    means = correct[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def report(args, data):
    from kwsbnn.sw.checkpoint import load_model
    from kwsbnn.sw.evaluate import evaluate
    rows = {}
    for run in sorted(args.out.glob("*-s*/metrics.json")):
        name, _, seed = run.parent.name.rpartition("-s")
        if name not in ROWS or any(o in ROWS[name][0].split(",") for o in STEP_ONE):
            continue
        metrics = json.loads(run.read_text())
        engine = "float" if "rprelu=true" in ROWS[name][0] else "torch"     # no integer form yet
        res = evaluate(load_model(run.parent / "model.pt"), data[0], "test", engine)
        correct = np.array([p == t for p, t in zip(res["predictions"], res["labels"])])
        r = rows.setdefault(name, {"seeds": [], "correct": [], "val": [], "train": [], "spe": [],
                                   "steps": 0, "clips": res["clips"]})
        assert r["clips"] == res["clips"], "every run must be scored on the same clips"
        r["seeds"].append(int(seed))
        r["correct"].append(correct)
        r["val"].append(metrics["best_val_accuracy"])
        r["train"].append(metrics["final_train_accuracy"])
        r["spe"].append(metrics["seconds_per_epoch"])
        r["epochs"] = metrics["epochs"]
        r["steps"] = metrics["epochs"] * int(metrics.get("steps_per_epoch") or 0)
    ref = rows.get(args.reference)
    table = []
    for name, r in rows.items():
        mean_correct = np.mean(r["correct"], axis=0)
        lo, hi = bootstrap(mean_correct)
        p = mcnemar(r["correct"][0], ref["correct"][0]) if ref and name != args.reference else None
        table.append({"row": name, "options": ROWS[name][0], "extra": ROWS[name][1],
                      "data": [Path(data[i]).name for i in ROWS[name][2] if i < len(data)],
                      "seeds": r["seeds"],
                      "test_accuracy": float(mean_correct.mean()), "ci95": [lo, hi],
                      "best_val_accuracy": float(np.mean(r["val"])),
                      "final_train_accuracy": float(np.mean(r["train"])),
                      "seconds_per_epoch": float(np.mean(r["spe"])), "epochs": r["epochs"],
                      "mcnemar_p_vs_reference": p, "n_test": len(mean_correct)})
    out = {"reference": args.reference, "data": [Path(d).name for d in data], "recipe": WIDE,
           "rows": table}
    (args.out / "study.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"| row | options | test (95% CI) | best val | final train | s/epoch | epochs | seeds | "
             f"McNemar p vs {args.reference} |", "|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        extra = ", ".join(f"{k}={v}" for k, v in t["extra"].items()) + "".join(f" + {d}" for d in t["data"][1:])
        p = "" if t["mcnemar_p_vs_reference"] is None else f"{t['mcnemar_p_vs_reference']:.3f}"
        lines.append(f"| {t['row']} | `{t['options']}` {extra} | {100 * t['test_accuracy']:.1f}% "
                     f"({100 * t['ci95'][0]:.1f}-{100 * t['ci95'][1]:.1f}) | "
                     f"{100 * t['best_val_accuracy']:.1f}% | {100 * t['final_train_accuracy']:.1f}% | "
                     f"{t['seconds_per_epoch']:.0f} | {t['epochs']} | {len(t['seeds'])} | {p} |")
    (args.out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="data folder(s), comma-separated; the first is scored")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference", default="int")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    data = [d for d in args.data.split(",") if d]
    args.rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(args, data)
    else:
        train_rows(args, data)


if __name__ == "__main__":
    main()
