"""Matrix-vector unit: XNOR-popcount (binary input and weights), add/subtract (int8 input, binary
weights) or multiply-accumulate (int8 input and weights, for a first layer), with PE x SIMD folding, and a per-channel threshold or raw accumulator output.

For each input vector ``x`` of ``K`` elements (a convolution window in window order) it computes, for
every output channel ``c`` of ``C``, ``acc[c] = sum_k x[k] * w[c, k]`` with ``w`` in ±1 or int8 and ``x`` in ±1
(binary input: ``K - 2 * popcount(x ^ w)``) or int8 (with binary weights, any signed width
``in_width``: the box sums of a first layer whose pooling is folded in, :mod:`kwsbnn.hw.boxsum`).
Then either
- ``out="bits"``: bit ``acc[c] >= threshold[c][s]`` (direction +1) or ``<=`` (direction -1), where ``s``
  is the shortcut bit of channel ``c`` when ``shortcut=True`` (else 0); or
- ``out="acc"``: the accumulators themselves (signed, ``acc_width`` bits each), for a pooling unit:
  one transfer per neuron fold, ``C / pe`` per vector, holding channels ``nf*pe .. nf*pe + pe - 1``.

Folding: ``pe`` channels in parallel, ``simd`` elements per cycle, ``(C / pe) * (K / simd)`` cycles per
vector. Weights and thresholds live in ROMs (``lib.memory``) initialised from the deployable model.

int8 x int8 products: with folding (more than one ROM word) each lane multiplies (``$mul``, a DSP
where the FPGA has them); fully parallel (``pe = C``, ``simd = K``) the weights are constants and
each product is a sum of shifted copies of the input, one per nonzero canonical signed digit of the
weight (no multiplier; :attr:`const_weights`). The adder tree of an int8 x int8 lane has a register
after every two adder levels (not after the last): :attr:`pipeline_stages` = ``(ceil(log2 n) - 1)
// 2`` for ``n`` terms (products, or shifted inputs), 0 for binary weights.

Throughput: one vector per ``(C/pe)(K/simd)`` cycles when the input is ready and the output is not
stalled (consecutive vectors overlap in the pipeline; the output FIFO holds ``4 +``
:attr:`pipeline_stages` results when results are short, so the extra stages cost no throughput).
Latency: ``(C/pe)(K/simd) + 3 +`` :attr:`pipeline_stages` cycles from the input transfer to the
output being valid.

Input register: the unit copies the input vector when it takes it (``K * ew`` flip-flops, plus the
shortcut bits), so the producer can prepare the next vector meanwhile. With ``hold=True``
(:attr:`holds_input`) it keeps no copy: it works on the producer's payload, which the stream
rules keep stable while ``i.valid`` is high and no transfer has happened, and takes the vector
(``i.ready``) with its last fold. The producer then prepares the next vector while the unit
waits: worth it where the logic is scarcer than the cycles (a first layer with its pooling folded
in, whose window refills in a few cycles of the hundreds a vector takes; see
:func:`kwsbnn.hw.cost.layer_costs`). Results are the same.

Members: ``i : In(stream.Signature(K * ew + (C if shortcut else 0)))``: the window (element ``k`` at
bits ``[k*ew, (k+1)*ew)``), then the shortcut bits (bit ``c`` = channel ``c``);
``o : Out(stream.Signature(C))`` for bits, ``Out(stream.Signature(pe * acc_width))`` for accumulators.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import bits_for, popcount, signed_width


class FoldingError(ValueError):
    """A folding the unit cannot build (names the layer, the value and what divides)."""


def _sum_tree(values):
    level = list(values)
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def tree_levels(n: int) -> int:
    """Adder levels of a balanced tree over ``n`` terms: ``ceil(log2 n)``."""
    return max(0, (n - 1).bit_length())


def tree_stages(n: int, every: int = 2) -> int:
    """Register stages :func:`_pipelined_sum` puts in a tree over ``n`` terms: one after every
    ``every`` adder levels, none after the last level (the accumulator register follows)."""
    return max(0, (tree_levels(n) - 1) // every)


def _pipelined_sum(m, values, every: int = 2, name: str = "t"):
    """Balanced adder tree over ``values`` with a register after every ``every`` levels (not after
    the last): ``tree_stages(len(values), every)`` cycles of latency."""
    level = list(values)
    depth = 0
    stage = 0
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        depth += 1
        if depth % every == 0 and len(level) > 1:
            regs = []
            for i, v in enumerate(level):
                r = Signal(v.shape(), name=f"{name}_s{stage}_{i}")
                m.d.sync += r.eq(v)
                regs.append(r)
            level = regs
            stage += 1
    return level[0]


def csd(w: int) -> list[tuple[int, int]]:
    """Canonical signed digits of ``w``: ``[(shift, +1 or -1)]`` with ``w = sum(d << shift)`` and no
    two adjacent nonzero digits (the fewest adders for a product by the constant ``w``)."""
    digits, i = [], 0
    while w:
        if w & 1:
            d = 2 - (w & 3)          # +1 when w = 1 (mod 4), -1 when w = 3 (mod 4)
            digits.append((i, d))
            w -= d
        w >>= 1
        i += 1
    return digits


def const_terms(weights) -> int:
    """Shifted copies of the input a fully parallel int8 x int8 unit adds (nonzero CSD digits of
    all weights, at least one per channel)."""
    w = np.asarray(weights, dtype=np.int64)
    return sum(max(1, sum(len(csd(int(v))) for v in row)) for row in w)


class MatrixVectorUnit(wiring.Component):
    def __init__(self, weights: np.ndarray, *, in_prec: str = "bin", w_prec: str = "bin", out: str = "bits",
                 direction=None, threshold=None, shortcut: bool = False,
                 pe: int = 1, simd: int | None = None, in_width: int = 8, hold: bool = False,
                 name: str = "mvu"):
        weights = np.asarray(weights, dtype=np.int64)
        self._c, self._k = weights.shape
        self._pe = int(pe)
        self._simd = int(simd or self._k)
        self._name = name
        self._hold = bool(hold)
        if self._pe < 1 or self._simd < 1 or self._c % self._pe or self._k % self._simd:
            raise FoldingError(f"{name}: PE={self._pe} must divide {self._c} channels and "
                               f"SIMD={self._simd} must divide {self._k} inputs")
        if in_prec not in ("bin", "int8") or w_prec not in ("bin", "int8") or out not in ("bits", "acc"):
            raise ValueError(f"{name}: in_prec and w_prec must be bin|int8 and out bits|acc")
        if w_prec == "int8" and in_prec != "int8":
            raise ValueError(f"{name}: int8 weights need an int8 input")
        if shortcut and (out != "bits" or in_prec != "bin"):
            raise ValueError(f"{name}: a shortcut bit needs binary input and bit output")
        self._in_prec, self._w_prec, self._out, self._shortcut = in_prec, w_prec, out, bool(shortcut)
        if in_width < 2 or (in_width != 8 and w_prec != "bin"):
            raise ValueError(f"{name}: in_width {in_width}: integer inputs wider or narrower than "
                             "8 bits only with binary weights")
        self._ew = 1 if in_prec == "bin" else int(in_width)
        self._ww = 1 if w_prec == "bin" else 8
        self._nf, self._sf = self._c // self._pe, self._k // self._simd
        xmax = 1 if in_prec == "bin" else 1 << (self._ew - 1)
        self._reach = self._k * xmax * (1 if w_prec == "bin" else 128)
        self._aw = signed_width(-self._reach, self._reach)
        # Fully parallel int8 x int8 (one ROM word): the weights are constants, each product a
        # shift-add of the input (canonical signed digits), no multiplier.
        self._const = w_prec == "int8" and self._nf * self._sf == 1
        self._wconst = weights if self._const else None
        if self._const:
            self._stages = max(tree_stages(self._lane_terms(p)) for p in range(self._pe))
        elif w_prec == "int8":
            self._stages = tree_stages(self._simd)
        else:
            self._stages = 0
        # Weight ROM: word nf*SF + sf holds lanes p (bits p*SIMD + j) = w[nf*PE + p, sf*SIMD + j].
        self._winit = []
        for nf in range(self._nf):
            for sf in range(self._sf):
                word = 0
                for p in range(self._pe):
                    row = weights[nf * self._pe + p, sf * self._simd:(sf + 1) * self._simd]
                    for j, b in enumerate(row):
                        word |= (int(b) & ((1 << self._ww) - 1)) << ((p * self._simd + j) * self._ww)
                self._winit.append(word)
        self._nstates = 2 if shortcut else 1
        if out == "bits":
            direction = np.asarray(direction).astype(np.int64).reshape(self._c)
            threshold = np.asarray(threshold).astype(np.int64).reshape(self._c, self._nstates)
            self._tw = signed_width(int(min(threshold.min(), -self._reach - 1)),
                                    int(max(threshold.max(), self._reach + 1)))
            lane = self.threshold_lane_bits
            mask = (1 << self._tw) - 1
            self._tinit = []
            for nf in range(self._nf):
                word = 0
                for p in range(self._pe):
                    c = nf * self._pe + p
                    field = 1 if direction[c] > 0 else 0
                    for s in range(self._nstates):
                        field |= (int(threshold[c, s]) & mask) << (1 + s * self._tw)
                    word |= field << (p * lane)
                self._tinit.append(word)
            o_width = self._c
        else:
            self._tw = 0
            o_width = self._pe * self._aw
        i_width = self._k * self._ew + (self._c if shortcut else 0)
        super().__init__({"i": In(stream.Signature(i_width)), "o": Out(stream.Signature(o_width))})

    def _lane_terms(self, p: int) -> int:
        """Terms of lane ``p``'s constant-weight tree: the nonzero digits and, with any negative
        digit, the constant that completes the one's-complement negations."""
        digits = [d for v in self._wconst[p] for _, d in csd(int(v))]
        return max(1, len(digits)) + (1 if any(d < 0 for d in digits) else 0)

    @property
    def cycles_per_vector(self) -> int:
        return self._nf * self._sf

    @property
    def holds_input(self) -> bool:
        """Whether the unit works on the producer's held vector instead of a copy (``hold``)."""
        return self._hold

    @property
    def pipeline_stages(self) -> int:
        """Register stages inside the int8 x int8 adder tree (one per two adder levels, see
        :func:`tree_stages`); 0 for binary weights. Latency is ``3 + pipeline_stages`` cycles
        after the last fold is issued."""
        return self._stages

    @property
    def const_weights(self) -> bool:
        """Fully parallel int8 x int8: constant weights, products as shift-adds, no multiplier."""
        return self._const

    @property
    def lanes(self) -> int:
        return self._pe * self._simd

    @property
    def acc_width(self) -> int:
        return self._aw

    @property
    def threshold_lane_bits(self) -> int:
        return 1 + self._nstates * self._tw

    @property
    def weight_bits(self) -> int:
        return self._c * self._k * self._ww

    @property
    def multipliers(self) -> int:
        """Multipliers (int8 x int8), 0 for binary weights and for constant weights."""
        return self.lanes if self._w_prec == "int8" and not self._const else 0

    @property
    def threshold_bits(self) -> int:
        return self._c * self.threshold_lane_bits if self._out == "bits" else 0

    @staticmethod
    def _delayed(m, value, n: int, name: str):
        """``value`` through ``n`` registers."""
        for i in range(n):
            r = Signal(value.shape(), name=f"{name}{i}")
            m.d.sync += r.eq(value)
            value = r
        return value

    def elaborate(self, platform):
        m = Module()
        pe, simd, nf_n, sf_n, k, ew = self._pe, self._simd, self._nf, self._sf, self._k, self._ew
        wwid = self._ww
        m.submodules.wrom = wrom = memory.Memory(shape=unsigned(pe * simd * wwid), depth=len(self._winit),
                                                  init=self._winit)
        wrp = wrom.read_port()
        out_w = len(self.o.payload)
        # Results in flight are bounded by the FIFO depth; results shorter than about twice the
        # pipeline latency need a deeper FIFO to keep the unit busy (measured: 3-cycle results
        # ran 17% slow with 2 entries, exactly on time with 4).
        # Each register stage of the adder tree adds one result in flight.
        stages = self._stages
        per_result = sf_n if self._out == "acc" else nf_n * sf_n
        depth = 2 if per_result >= 6 + 2 * stages else 4 + stages
        m.submodules.out = out = fifo.SyncFIFO(width=out_w, depth=depth)
        wiring.connect(m, out.r_stream, wiring.flipped(self.o))

        # Stage A: the input vector (a copy, or the producer's held payload) and the ROM addresses.
        if self._hold:
            x, sc, have_x = self.i.payload[:k * ew], self.i.payload[k * ew:], self.i.valid
        else:
            x = Signal(k * ew)
            sc = Signal(self._c if self._shortcut else 1)
            have_x = Signal()
        nf, sf = Signal(range(nf_n)), Signal(range(sf_n))
        inflight = Signal(range(depth + 1))
        # A result is a whole vector of bits, or PE accumulators (one neuron fold) in "acc" mode;
        # a result may start only when the output FIFO has room for it and those in flight.
        starting = ((nf == 0) if self._out == "bits" else 1) & (sf == 0)
        credit = (out.level + inflight) < depth
        issue = have_x & (~starting | credit)
        last_issue = issue & (nf == nf_n - 1) & (sf == sf_n - 1)
        m.d.comb += wrp.addr.eq(nf * sf_n + sf)
        if self._hold:
            m.d.comb += self.i.ready.eq(last_issue)
        else:
            m.d.comb += self.i.ready.eq(~have_x | last_issue)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [x.eq(self.i.payload[:k * ew]), have_x.eq(1)]
                if self._shortcut:
                    m.d.sync += sc.eq(self.i.payload[k * ew:])
            with m.Elif(last_issue):
                m.d.sync += have_x.eq(0)
        with m.If(issue):
            with m.If(sf == sf_n - 1):
                m.d.sync += [sf.eq(0), nf.eq(Mux(nf == nf_n - 1, 0, nf + 1))]
            with m.Else():
                m.d.sync += sf.eq(sf + 1)

        # Stage B: ROM data arrives; partial dot products per lane, accumulated.
        b_valid, b_first, b_last = Signal(), Signal(), Signal()
        b_nf = Signal(range(nf_n))
        b_x = Signal(simd * ew)
        b_sc = Signal(pe)
        m.d.sync += [b_valid.eq(issue), b_first.eq(sf == 0), b_last.eq(sf == sf_n - 1), b_nf.eq(nf),
                     b_x.eq(x.word_select(sf, simd * ew))]
        if self._shortcut:
            m.d.sync += b_sc.eq(sc.word_select(nf, pe))
        acc = [Signal(signed(self._aw), name=f"acc{p}") for p in range(pe)]
        parts = []
        for p in range(pe):
            wl = wrp.data[p * simd * wwid:(p + 1) * simd * wwid]
            if self._in_prec == "bin":
                part = simd - (popcount(b_x ^ wl) << 1)
            elif wwid == 1:
                elems = [b_x[j * ew:(j + 1) * ew].as_signed() for j in range(simd)]
                part = _sum_tree([Mux(wl[j], e, -e) for j, e in enumerate(elems)])
            elif self._const:
                # x * w = sum of d * (x << s) over w's signed digits; -v = ~v + 1, the ones summed
                # into one constant term.
                terms, neg = [], 0
                for j in range(simd):
                    e = b_x[j * 8:(j + 1) * 8].as_signed()
                    for sh, d in csd(int(self._wconst[p, j])):
                        v = e << sh if sh else e
                        if d > 0:
                            terms.append(v)
                        else:
                            terms.append(~v)
                            neg += 1
                if neg:
                    terms.append(Const(neg, unsigned(bits_for(neg))))
                if not terms:
                    terms = [Const(0, signed(2))]
                part = self._delayed(m, _pipelined_sum(m, terms, name=f"l{p}"),
                                     stages - tree_stages(len(terms)), f"l{p}")
            else:
                part = _pipelined_sum(m, [b_x[j * 8:(j + 1) * 8].as_signed() * wl[j * 8:(j + 1) * 8].as_signed()
                                          for j in range(simd)], name=f"l{p}")
            parts.append(part)
        # The fold's flags follow the adder tree's register stages.
        b_valid, b_first, b_last, b_nf, b_sc = (self._delayed(m, v, stages, f"{v.name}_d")
                                                for v in (b_valid, b_first, b_last, b_nf, b_sc))
        for p in range(pe):
            with m.If(b_valid):
                m.d.sync += acc[p].eq(Mux(b_first, parts[p], acc[p] + parts[p]))

        # Stage C: finished channels -> bits (or accumulators), collected, pushed to the output FIFO.
        c_valid, c_nf = Signal(), Signal(range(nf_n))
        c_sc = Signal(pe)
        m.d.sync += [c_valid.eq(b_valid & b_last), c_nf.eq(b_nf), c_sc.eq(b_sc)]
        res = Signal(out_w)
        full = Signal(out_w)
        m.d.comb += full.eq(res)
        if self._out == "bits":
            trom = memory.Memory(shape=unsigned(pe * self.threshold_lane_bits), depth=nf_n,
                                 init=self._tinit)
            m.submodules.trom = trom
            trp = trom.read_port()
            m.d.comb += trp.addr.eq(b_nf)       # read during stage B, data in stage C
            lane = self.threshold_lane_bits
            bits = Signal(pe)
            for p in range(pe):
                field = trp.data[p * lane:(p + 1) * lane]
                d = field[0]
                t0 = field[1:1 + self._tw].as_signed()
                if self._shortcut:
                    t1 = field[1 + self._tw:1 + 2 * self._tw].as_signed()
                    t = Mux(c_sc[p], t1, t0)
                else:
                    t = t0
                m.d.comb += bits[p].eq(Mux(d, acc[p] >= t, acc[p] <= t))
            m.d.comb += full.word_select(c_nf, pe).eq(bits)
        else:
            m.d.comb += full.eq(Cat(*acc))
        push = c_valid & ((c_nf == nf_n - 1) if self._out == "bits" else 1)
        with m.If(c_valid):
            m.d.sync += res.eq(full)
        m.d.comb += [out.w_stream.payload.eq(full), out.w_stream.valid.eq(push)]
        m.d.sync += inflight.eq(inflight + (issue & starting) - push)
        return m
