"""Binary matrix-vector-threshold unit: XNOR-popcount with PE x SIMD folding.

For each input vector ``x`` of ``K`` bits it computes, for every output channel ``c`` of ``C``,
``acc[c] = K - 2 * popcount(x ^ w[c])`` (the ±1 dot product) and the output bit
``acc[c] >= threshold[c]`` (direction +1) or ``acc[c] <= threshold[c]`` (direction -1).

Folding: ``pe`` channels in parallel, ``simd`` input bits per cycle, so ``pe * simd`` XNOR lanes and
``(C / pe) * (K / simd)`` cycles per vector. Weights and thresholds live in ROMs (``lib.memory``),
initialised from the deployable model.

Throughput: one vector per ``(C/pe)(K/simd)`` cycles when the input is ready and the output is not
stalled (vectors overlap in the pipeline). Latency: ``(C/pe)(K/simd) + 3`` cycles from the input
transfer to the output being valid.

Members: ``i : In(stream.Signature(K))`` input bits (bit ``k`` = window element ``k``);
``o : Out(stream.Signature(C))`` output bits (bit ``c`` = channel ``c``).
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import bits_for, popcount, signed_width


class FoldingError(ValueError):
    """A folding the unit cannot build (names the layer, the value and what divides)."""


class BinaryMVTU(wiring.Component):
    def __init__(self, weights: np.ndarray, direction: np.ndarray, threshold: np.ndarray,
                 *, pe: int = 1, simd: int | None = None, name: str = "mvtu"):
        weights = np.asarray(weights, dtype=np.int64)
        self._c, self._k = weights.shape
        self._pe = int(pe)
        self._simd = int(simd or self._k)
        if self._c % self._pe or self._k % self._simd:
            raise FoldingError(f"{name}: PE={self._pe} must divide {self._c} channels and "
                               f"SIMD={self._simd} must divide {self._k} input bits")
        self._nf, self._sf = self._c // self._pe, self._k // self._simd
        self._name = name
        direction = np.asarray(direction).astype(np.int64).ravel()
        threshold = np.asarray(threshold).astype(np.int64).reshape(self._c)
        lo, hi = int(min(threshold.min(), -self._k)), int(max(threshold.max(), self._k))
        self._tw = signed_width(lo, hi)
        # Weight ROM: word nf*SF + sf holds lanes p (bits p*SIMD .. p*SIMD+SIMD-1) = w[nf*PE+p, sf*SIMD ...].
        winit = []
        for nf in range(self._nf):
            for sf in range(self._sf):
                word = 0
                for p in range(self._pe):
                    row = weights[nf * self._pe + p, sf * self._simd:(sf + 1) * self._simd]
                    for j, b in enumerate(row):
                        word |= int(b) << (p * self._simd + j)
                winit.append(word)
        self._winit = winit
        # Threshold ROM: word nf holds lanes p = {direction bit, threshold (tw bits)}.
        lane = 1 + self._tw
        tinit = []
        for nf in range(self._nf):
            word = 0
            for p in range(self._pe):
                c = nf * self._pe + p
                field = (1 if direction[c] > 0 else 0) | ((int(threshold[c]) & ((1 << self._tw) - 1)) << 1)
                word |= field << (p * lane)
            tinit.append(word)
        self._tinit = tinit
        super().__init__({"i": In(stream.Signature(self._k)), "o": Out(stream.Signature(self._c))})

    @property
    def cycles_per_vector(self) -> int:
        return self._nf * self._sf

    @property
    def lanes(self) -> int:
        return self._pe * self._simd

    def elaborate(self, platform):
        m = Module()
        pe, simd, nf_n, sf_n, k = self._pe, self._simd, self._nf, self._sf, self._k
        lane_w = 1 + self._tw
        m.submodules.wrom = wrom = memory.Memory(shape=unsigned(pe * simd), depth=len(self._winit),
                                                  init=self._winit)
        m.submodules.trom = trom = memory.Memory(shape=unsigned(pe * lane_w), depth=nf_n, init=self._tinit)
        wrp, trp = wrom.read_port(), trom.read_port()
        m.submodules.out = out = fifo.SyncFIFO(width=self._c, depth=2)
        wiring.connect(m, out.r_stream, wiring.flipped(self.o))

        # Stage A: hold the input vector and issue ROM addresses.
        x = Signal(k)
        have_x = Signal()
        nf, sf = Signal(range(nf_n)), Signal(range(sf_n))
        inflight = Signal(range(3))
        starting = (nf == 0) & (sf == 0)
        credit = (out.level + inflight) < 2
        issue = have_x & (~starting | credit)
        last_issue = issue & (nf == nf_n - 1) & (sf == sf_n - 1)
        m.d.comb += [wrp.addr.eq(nf * sf_n + sf), trp.addr.eq(nf)]
        m.d.comb += self.i.ready.eq(~have_x | last_issue)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [x.eq(self.i.payload), have_x.eq(1)]
        with m.Elif(last_issue):
            m.d.sync += have_x.eq(0)
        with m.If(issue):
            with m.If(sf == sf_n - 1):
                m.d.sync += sf.eq(0)
                m.d.sync += nf.eq(Mux(nf == nf_n - 1, 0, nf + 1))
            with m.Else():
                m.d.sync += sf.eq(sf + 1)

        # Stage B: ROM data arrives; count differing bits per lane and accumulate.
        b_valid, b_first, b_last = Signal(), Signal(), Signal()
        b_nf = Signal(range(nf_n))
        b_x = Signal(simd)
        m.d.sync += [b_valid.eq(issue), b_first.eq(sf == 0), b_last.eq(sf == sf_n - 1), b_nf.eq(nf),
                     b_x.eq(x.word_select(sf, simd))]
        aw = bits_for(k)
        acc = [Signal(aw, name=f"acc{p}") for p in range(pe)]
        c_valid, c_nf = Signal(), Signal(range(nf_n))
        c_thr = Signal(pe * lane_w)
        m.d.sync += [c_valid.eq(b_valid & b_last), c_nf.eq(b_nf)]
        with m.If(b_valid & b_last):
            m.d.sync += c_thr.eq(trp.data)
        for p in range(pe):
            cnt = popcount(b_x ^ wrp.data[p * simd:(p + 1) * simd])
            with m.If(b_valid):
                m.d.sync += acc[p].eq(Mux(b_first, cnt, acc[p] + cnt))

        # Stage C: threshold the finished channels, collect the vector, push it to the output FIFO.
        res = Signal(self._c)
        full = Signal(self._c)
        bits = Signal(pe)
        dw = self._tw + 1
        for p in range(pe):
            field = c_thr[p * lane_w:(p + 1) * lane_w]
            d, t = field[0], field[1:].as_signed()
            dot = Signal(signed(dw), name=f"dot{p}")
            m.d.comb += dot.eq(k - (acc[p] << 1))
            m.d.comb += bits[p].eq(Mux(d, dot >= t, dot <= t))
        m.d.comb += full.eq(res)
        m.d.comb += full.word_select(c_nf, pe).eq(bits)
        push = c_valid & (c_nf == nf_n - 1)
        with m.If(c_valid):
            m.d.sync += res.eq(full)
        m.d.comb += [out.w_stream.payload.eq(full), out.w_stream.valid.eq(push)]
        started = issue & starting
        m.d.sync += inflight.eq(inflight + started - push)
        return m

