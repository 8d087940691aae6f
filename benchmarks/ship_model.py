"""Ship a finished training run as a named model: ``models/NAME.pt`` and its record ``models/NAME.json``.

    .venv/bin/python benchmarks/ship_model.py RUN_DIR NAME --command "kwsbnn train ..." [--note TEXT]

The record holds what every shipped record holds (tests/test_provenance.py, kwsbnn report figures):
the command that trained it and the one that scores it, with portable paths
(:mod:`kwsbnn.sw.provenance`), the test accuracy on the subset's testing list as its eval command
prints it (the torch integer engine, the golden model's equal; the training record's figure, from
the fake-quantized model, is kept beside it when it differs), best validation and
final training accuracy, seconds per epoch and in all, optimizer steps, the binary options, the run's
settings and its history. Files are written atomically; an existing NAME is replaced.
"""

import argparse
import json
import shutil
from pathlib import Path

from kwsbnn.paths import MODELS, write_atomic
from kwsbnn.sw.checkpoint import load_model
from kwsbnn.sw.evaluate import evaluate
from kwsbnn.sw.provenance import portable

# The fields of a run's metrics.json that its record keeps (benchmarks/fronts.py --adopt reads them back).
RUN_FIELDS = ("arch", "precision", "epochs", "best_val_accuracy", "final_train_accuracy",
              "final_val_accuracy", "seconds_per_epoch", "total_seconds", "steps_per_epoch",
              "optimizer_steps", "device", "binary_options", "config")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--command", required=True, help="the kwsbnn train command of the run")
    ap.add_argument("--note", default=None)
    args = ap.parse_args()
    m = json.loads((args.run / "metrics.json").read_text())
    if not m.get("complete"):
        raise SystemExit(f"{args.run}: the run is not complete (resume it first)")
    data = m["config"]["data"].split(",")[0]
    deployed = evaluate(load_model(args.run / "model.pt"), data, "test")["accuracy"]
    rec = {"name": args.name, "file": f"{args.name}.pt", "command": args.command,
           "eval_command": f"kwsbnn eval --model {args.name} --data {data} --split test --json",
           "test_accuracy_on_subset_testing_list": deployed,
           **({"training_test_accuracy": m["test_accuracy"]} if deployed != m["test_accuracy"] else {}),
           **{k: m.get(k) for k in RUN_FIELDS}}
    if args.note:
        rec["note"] = args.note
    rec["history"] = m["history"]
    rec = portable(rec)
    tmp = MODELS / f".{args.name}.pt.tmp"
    shutil.copyfile(args.run / "model.pt", tmp)
    tmp.replace(MODELS / f"{args.name}.pt")
    write_atomic(MODELS / f"{args.name}.json", json.dumps(rec, indent=2) + "\n")
    print(f"models/{args.name}.pt and .json: test {deployed:.4f}, best val {m['best_val_accuracy']:.4f}")


if __name__ == "__main__":
    main()
