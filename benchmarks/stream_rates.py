"""Benchmark: decisions per second of the board streaming over its UART (README, "Streaming").

    .venv/bin/python benchmarks/stream_rates.py [--model binary-w64] [--work DIR] [--json]

Runs the system-level simulation of the board top (:func:`kwsbnn.sim.board.simulate_stream`:
Verilator, UART included, cycle for cycle, every decision checked against the golden model) for
the rows of the README's table: the iCEBreaker's build folding at 24 MHz and 1 Mbaud, frames sent
as fast as the flow control allows (N = 1 and 3) and in real time (a frame per 10 ms, N = 1 and
4), and the default folding at 12 MHz. For each it prints the network's own rate, the decisions
per second from the first decision to the last, the link's limit at N, the time from a decision
frame to its answer and, in real time, how late the flow control made any frame. About 2 minutes
on 2 cores (two Verilator builds, then a few seconds per row).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path


def rows(dep):
    from kwsbnn.boards.build import board_folding
    board = board_folding(dep, "icebreaker", freq_mhz=24)
    return [("icebreaker folding, 24 MHz", board, 24e6, 1, 0.0),
            ("icebreaker folding, 24 MHz", board, 24e6, 3, 0.0),
            ("icebreaker folding, 24 MHz", board, 24e6, 1, 0.01),
            ("icebreaker folding, 24 MHz", board, 24e6, 4, 0.01),
            ("default folding, 12 MHz", None, 12e6, 1, 0.0)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="binary-w64")
    ap.add_argument("--work", default=None, help="simulation folder (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from kwsbnn.sim.board import simulate_stream
    from kwsbnn.sw.export import deployable
    dep = deployable(args.model)
    out = []
    with tempfile.TemporaryDirectory(prefix="kwsbnn-stream-") as tmp:
        work = Path(args.work or tmp)
        for i, (name, folding, clk, n, hop) in enumerate(rows(dep)):
            res = simulate_stream(dep, work / name.split(",")[0].replace(" ", "-"), clk_freq=clk,
                                  baud=1_000_000, timeout=0.005, folding=folding, stride=n,
                                  frames=dep.input["shape"][1] + 6 * n, hop_s=hop, seed=i)
            if res["failed"]:
                print(f"{name}: {res['failures'][:3]}", file=sys.stderr)
                return 1
            fig = res["figures"]
            row = {"design": name, "frames": "real time" if hop else "flat out", "stride": n,
                   "network_per_second": fig["network_per_second"],
                   "decisions_per_second": res["steady_decisions_per_second"],
                   "link_decisions_per_second": fig["link_frames_per_second"] / n,
                   "answer_ms": 1000 * res["answer_cycles"]["max"] / clk,
                   "max_lag_ms": 1000 * res["max_lag_cycles"] / clk if hop else None}
            out.append(row)
            if not args.json:
                print(f"{name:28s} {row['frames']:9s} N={n}  network {row['network_per_second']:6.1f}/s  "
                      f"decided {row['decisions_per_second']:6.1f}/s  link {row['link_decisions_per_second']:6.0f}/s  "
                      f"answer <= {row['answer_ms']:.1f} ms"
                      + (f"  latest frame {row['max_lag_ms']:.2f} ms late" if hop else ""), flush=True)
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
