"""Benchmark: simulated cycles per wall second of a whole network in Verilator under cocotb.

    .venv/bin/python benchmarks/sim_speed.py [--model M] [--count 20]

Runs the same inferences twice: with the event-driven stream models (Python wakes only at stream
transfers) and with per-cycle models (Python wakes at every clock edge, as a naive testbench does),
and prints both rates and their ratio as one JSON object. Without --model it uses a generated
binary network of the KWS shape (int8 first layer with pooling, 1-bit shortcuts) at small size.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--count", type=int, default=20)
    args = ap.parse_args()
    from kwsbnn.sim.network import simulate
    from kwsbnn.sw import deploy
    from kwsbnn.sw.export import deployable
    work = Path(tempfile.mkdtemp())
    if args.model:
        dep = deployable(args.model)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        import specgen
        dep = deploy.load(deploy.save(specgen.binary_kws(3, t=40, f=20, c=16), work / "model"))
    fast = simulate(dep, work, count=args.count, seed=1)
    # A vanishing stall probability forces the per-cycle code path without changing the timing much.
    slow = simulate(dep, work, count=args.count, seed=1, stall=1e-12)
    print(json.dumps({"model": dep.name, "inferences": args.count,
                      "cycles_per_inference": fast["cycles_steady"],
                      "event_driven_cycles_per_second": round(fast["sim_cycles_per_second"]),
                      "per_cycle_cycles_per_second": round(slow["sim_cycles_per_second"]),
                      "speedup": round(fast["sim_cycles_per_second"] / slow["sim_cycles_per_second"], 2),
                      "agreement": [fast["equal"], slow["equal"], args.count]}, indent=1))


if __name__ == "__main__":
    main()
