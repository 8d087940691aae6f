"""Benchmark: simulated cycles per wall second of a whole network in Verilator under cocotb.

    .venv/bin/python benchmarks/sim_speed.py [--model tiny|res8|M ...] [--count N] [--slow-count N]

For each model it runs the same kind of inferences with three testbench drivers
(:mod:`kwsbnn.sim.tb_network`) on one build:
- ``bulk``: the fast testbench (Python touches only results and source refills);
- ``python``: stream models that wake up at every input transfer;
- ``per_clock``: stream models that wake up at every clock edge (a naive testbench);
and prints one JSON object: cycles per wall second and per CPU second of each, and the ratio of the
fast testbench to the per-clock one. Models: ``tiny`` (the walking skeleton), ``res8`` (a binary
res8 of width 24 with the real geometry, 101x40 input, random weights and batch-norm statistics;
the design that fits the iCEBreaker), or any ``--model`` that ``kwsbnn`` accepts (``binary``: the
shipped 32-channel res8). The machine's load changes wall-clock figures; CPU-second figures are
steadier.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def res8_binary(width: int = 24, seed: int = 0):
    """A deployable binary res8 of the real geometry with random weights and batch-norm statistics."""
    import torch

    from kwsbnn.sw import deploy
    from kwsbnn.sw.data import CLASSES
    from kwsbnn.sw.features import FeatureConfig, FeatureQuantizer
    from kwsbnn.sw.integer import integer_spec
    from kwsbnn.sw.models import BinaryOptions, build_model, make_config

    torch.manual_seed(seed)
    model = build_model(make_config("res8", "binary", BinaryOptions(width=width), n_classes=len(CLASSES)))
    fcfg = FeatureConfig()
    quant = FeatureQuantizer([0.0] * fcfg.n_features, [1.0] * fcfg.n_features)
    model.meta = {"classes": list(CLASSES), "features": fcfg.to_dict(), "quantizer": quant.to_dict(),
                  "input_shape": [fcfg.frames, fcfg.n_features]}
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-3, 3)
            mod.running_var.uniform_(0.5, 20)
            mod.weight.data.uniform_(-1, 1)
    model.eval()
    folder = Path(tempfile.mkdtemp(prefix="kwsbnn-res8-")) / f"res8-binary-w{width}"
    return deploy.load(deploy.save(integer_spec(model, name=folder.name), folder))


def load(ref: str):
    if ref == "res8":
        return res8_binary()
    from kwsbnn.sw.export import deployable
    return deployable(ref)


def measure(dep, work: Path, driver: str, count: int, seed: int = 1) -> dict:
    from kwsbnn.sim.network import simulate
    t0 = time.monotonic()
    res = simulate(dep, work, count=count, seed=seed, driver=driver)
    return {"inferences": count, "equal": res["equal"], "sim_cycles": int(res["sim_cycles"]),
            "wall_seconds": round(res["wall_seconds"], 3), "cpu_seconds": round(res["cpu_seconds"], 3),
            "cycles_per_second": round(res["sim_cycles_per_second"]),
            "cycles_per_cpu_second": round(res["sim_cycles"] / max(res["cpu_seconds"], 1e-9)),
            "cycles_per_inference": res["cycles_steady"] if count > 1 else res["cycles_first"],
            "command_seconds": round(time.monotonic() - t0, 1),
            "model_cycles_per_inference": res["report"]["cycles_per_inference"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=None,
                    help="tiny, res8, or a model kwsbnn accepts (repeatable; default: tiny and res8)")
    ap.add_argument("--count", type=int, default=None, help="inferences of the fast testbench")
    ap.add_argument("--slow-count", type=int, default=None, help="inferences of the slow testbenches")
    args = ap.parse_args()
    out = {}
    for ref in args.model or ["tiny", "res8"]:
        dep = load(ref)
        work = Path(tempfile.mkdtemp(prefix=f"kwsbnn-simspeed-{ref}-"))
        small = ref == "tiny"
        fast_n = args.count or (20000 if small else 12)
        slow_n = args.slow_count or (2000 if small else 2)
        print(f"{ref}: building and simulating (a res8 build takes minutes)", file=sys.stderr)
        fast = measure(dep, work, "bulk", fast_n)
        per_transfer = measure(dep, work, "python", slow_n)
        per_clock = measure(dep, work, "per_clock", slow_n)
        out[ref] = {"model": dep.name, "fast": fast, "per_transfer": per_transfer, "per_clock": per_clock,
                    "speedup_vs_per_clock": round(fast["cycles_per_second"] / per_clock["cycles_per_second"], 1),
                    "speedup_vs_per_clock_cpu": round(fast["cycles_per_cpu_second"]
                                                      / per_clock["cycles_per_cpu_second"], 1)}
        print(json.dumps({ref: out[ref]}), file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
