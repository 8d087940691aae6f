"""Benchmark: golden-model inferences per second against PyTorch float inference of the same network.

    .venv/bin/python benchmarks/golden_speed.py [--model M] [--batch 64] [--threads 1]

Without --model it uses a binary res8 of width 32 (the shipped binary model's shape) with random
weights: speed does not depend on the values. Prints one JSON object.
"""

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from kwsbnn.sw import deploy
from kwsbnn.sw.golden import GoldenModel
from kwsbnn.sw.integer import integer_forward, integer_spec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        from kwsbnn.sw.checkpoint import load_model
        model = load_model(args.model)
    else:
        from kwsbnn.sw.models import BinaryOptions, build_model, make_config
        model = build_model(make_config("res8", "binary", BinaryOptions(width=32)))
        model.meta = {"input_shape": [101, 40], "classes": [f"c{k}" for k in range(12)]}
    model.eval()
    t, f = model.meta["input_shape"]
    q = torch.randint(-127, 128, (args.batch, t, f)).float()
    spec = integer_spec(model)
    folder = tempfile.mkdtemp()
    golden = GoldenModel(deploy.load(deploy.save(spec, folder)))
    x = q.numpy().astype(np.int64)[:, None]

    def rate(fn):
        fn()                                   # warm-up
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return args.batch / best

    with torch.no_grad():
        float_ips = rate(lambda: model(q))
        torch_int_ips = rate(lambda: integer_forward(spec, q))
    golden_ips = rate(lambda: golden.run(x))
    print(json.dumps({"model": spec["name"], "batch": args.batch, "threads": args.threads,
                      "golden_inferences_per_second": round(golden_ips, 1),
                      "torch_float_inferences_per_second": round(float_ips, 1),
                      "torch_integer_inferences_per_second": round(torch_int_ips, 1),
                      "golden_over_float": round(golden_ips / float_ips, 3)}, indent=1))


if __name__ == "__main__":
    main()
