"""The tail of the engine style after an int8 last layer, one channel at a time: requantization of the
layer engine's mismatch counts, global sum pooling, the dense layer and argmax.

Per inference it takes ``positions * C / lanes`` transfers: the last layer's counts in the engine's
order (per output position, per fold ``nf``, ``lanes`` counts of ``count_width`` bits, lane ``p`` =
channel ``nf * lanes + p``; :class:`kwsbnn.hw.engine.LayerEngine` with an int8 last layer). For every
count ``d`` of channel ``c`` it computes (docs/integer-network.md, ``out: int8`` without shortcut;
``acc = K - 2 d`` folded into the constants as the pipeline style's count path does)::

    y = clamp((d * mul[c] + add[c]) >> shift, lo, hi),      g[c] += y

with ``mul[c] = -2 mul_layer[c]`` and ``add[c] = K mul_layer[c] + add_layer[c]``, then, as
:class:`~kwsbnn.hw.scores.GapDenseArgmax`, ``score[k] = sum_c w[k, c] * g[c] + bias[k]`` and the
class of the largest score (lowest index on a tie). Unlike that unit it keeps ``g`` in a ``C``-word
memory (unsigned when ``lo >= 0``) and the constants in a block-RAM ROM, and has one multiplier for the requantization and one
for the dense layer: its size does not grow with the channels' parallel sums (at 64 channels the
parallel tail and its requantization unit take about 3,000 iCE40 logic cells).

Datapath: pooling, one channel per cycle in a three-stage pipeline (read the channel's constants
and running sum, and take its count from the input register; the product; add, shift, clamp, add
to the sum and write it back); a channel's sum is read again only ``C`` steps later, so ``C >= 4``.
Then the dense loop (the running sums read from the memory) and argmax, a five-stage pipeline as in
GapDenseArgmax.

Throughput: one input transfer per ``lanes`` cycles (``i.ready`` is low while the input register
holds a transfer); an inference takes at most ``positions * C + C * K + 9`` cycles when its input
has no gaps. Latency from the last input transfer: ``lanes + C * K + 9`` cycles at most.

With ``identity=True`` (after the integer residual stream, whose last values the layer engine
computes itself) the transfers hold ``lanes`` int8 values (``count_width = 8``, two's complement)
and ``y`` is the value itself: no constants, no multiplier (``mul``, ``add``, ``shift`` unused).

Members: ``i : In(stream.Signature(lanes * count_width))``; ``o : Out(stream.Signature(layout))``
with the layout of :func:`kwsbnn.hw.scores.result_layout`; ``rot : In(1)``: while ``o.valid`` (and
not ``o.ready``), each cycle with ``rot`` high rotates the scores by one (``scores[k]`` takes
``scores[k + 1]``, the last takes ``scores[0]``), so that a consumer reads them one by one from
``scores[0]`` with no copy of its own (:class:`kwsbnn.boards.top.FrameWriter`); ``K`` rotations
restore the order. With ``serial_out=True`` the scores are not held in registers at all: the dense
loop writes them into the sums' memory (words ``C`` to ``C + K - 1``; the memory is as wide as the
wider of a sum and a score) and ``scores[0]`` shows the memory's read data, score ``r`` (from 0,
``r`` advanced by ``rot``; valid from the second cycle after ``o.valid`` rises or a ``rot``);
the other scores read 0. Tie ``rot`` to 0 for a plain stream (the scores already form a shift chain: the
rotation costs one multiplexer bit per score bit on the last score only).
"""

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import bits_for, signed_width
from .scores import dense_score_width, result_layout


class SerialRequantTail(wiring.Component):
    def __init__(self, mul, add, shift: int, *, lo: int, hi: int, count_width: int, lanes: int,
                 positions: int, weights, bias, binary_weights: bool = False, identity: bool = False,
                 serial_out: bool = False):
        self._identity = bool(identity)
        self._serial_out = bool(serial_out)
        self._mul = np.asarray(mul, dtype=np.int64).reshape(-1)
        self._add = np.asarray(add, dtype=np.int64).reshape(-1)
        self._c = len(self._mul)
        self._shift, self._lo, self._hi = int(shift), int(lo), int(hi)
        self._cw, self._l, self._p = int(count_width), int(lanes), int(positions)
        if self._c < 4:
            raise ValueError(f"serial tail: {self._c} channels; it needs at least 4")
        if self._l < 1 or self._c % self._l:
            raise ValueError(f"serial tail: lanes={self._l} must divide the {self._c} channels")
        if not (-128 <= self._lo <= self._hi <= 127) or self._shift < 0:
            raise ValueError(f"serial tail: clamp [{lo}, {hi}] or shift {shift} out of range")
        w = np.asarray(weights, dtype=np.int64)
        if binary_weights:
            w = 2 * w - 1
        self._w = w
        self._k = w.shape[0]
        if w.shape[1] != self._c:
            raise ValueError(f"serial tail: dense weights of shape {list(w.shape)} for {self._c} channels")
        self._bias = np.asarray(bias, dtype=np.int64).reshape(self._k)
        self._mw = signed_width(int(self._mul.min()), int(self._mul.max()))
        self._adw = signed_width(int(self._add.min()), int(self._add.max()))
        self._ww = signed_width(int(w.min()), int(w.max()))
        self._glo, self._ghi = self._lo * self._p, self._hi * self._p
        self._gw = signed_width(self._glo, self._ghi)
        # The sums' memory: unsigned when they cannot be negative (a bit narrower: 16 bits hold
        # 127 x 325, one block RAM instead of two).
        self._gmw = bits_for(self._ghi) if self._glo >= 0 else self._gw
        self._sw = dense_score_width(w, self._bias, self._glo, self._ghi)
        self._layout = result_layout(self._k, self._sw)
        super().__init__({"i": In(stream.Signature(self._l * self._cw)),
                          "o": Out(stream.Signature(self._layout)), "rot": In(1)})

    @property
    def score_width(self) -> int:
        return self._sw

    @property
    def layout(self):
        return self._layout

    @property
    def sum_width(self) -> int:
        return self._gw

    @property
    def cycles_per_inference(self) -> int:
        """At most ``positions * C + C * K + 9`` (input without gaps)."""
        return self._p * self._c + self._c * self._k + 9

    @property
    def constant_bits(self) -> int:
        """The requantization constants (ROM) and the dense weights (ROM)."""
        if self._identity:
            return self._c * self._k * self._ww
        return self._c * (self._mw + self._adw) + self._c * self._k * self._ww

    @property
    def identity(self) -> bool:
        return self._identity

    def elaborate(self, platform):
        m = Module()
        cn, kn, ln, cw = self._c, self._k, self._l, self._cw
        mw, adw, gw, ww, sw = self._mw, self._adw, self._gw, self._ww, self._sw

        cinit = [(int(a) & ((1 << adw) - 1)) << mw | (int(mu) & ((1 << mw) - 1))
                 for mu, a in zip(self._mul, self._add)]
        if not self._identity:
            m.submodules.crom = crom = memory.Memory(shape=unsigned(mw + adw), depth=cn, init=cinit,
                                                     attrs={"ram_style": "block"})
            crp = crom.read_port()
        gshape = unsigned(self._gmw) if self._glo >= 0 else signed(gw)
        so = self._serial_out
        if so:
            # The scores go into the sums' memory after the sums (words C .. C + K - 1), as wide
            # as the wider of the two; the sums are read back from its low bits.
            gram = memory.Memory(shape=unsigned(max(self._gmw, sw)), depth=cn + kn, init=[])
        else:
            gram = memory.Memory(shape=gshape, depth=cn, init=[])
        m.submodules.gram = gram
        gwp = gram.write_port()
        grp = gram.read_port(transparent_for=())
        g_rd = Value.cast(grp.data[:self._gmw])
        g_rd = g_rd.as_signed() if self._glo < 0 else g_rd.as_unsigned()
        winit = [int(self._w[k, c]) & ((1 << ww) - 1) for k in range(kn) for c in range(cn)]
        m.submodules.wrom = wrom = memory.Memory(shape=unsigned(ww), depth=cn * kn, init=winit)
        wrp = wrom.read_port()
        bias = Array(Const(int(b), signed(sw)) for b in self._bias)

        # Pooling: input register, one lane per cycle.
        xin = Signal(ln * cw)
        have = Signal()
        lane = Signal(range(ln))
        ch = Signal(range(cn))
        pos = Signal(range(self._p))
        pooling = Signal(init=1)
        m.d.comb += self.i.ready.eq(pooling & ~have)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [xin.eq(self.i.payload), have.eq(1)]
        step = pooling & have
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_ch = Signal(range(cn))
        s1_d = Signal(cw)
        m.d.sync += [s1_valid.eq(step), s1_ch.eq(ch), s1_first.eq(pos == 0),
                     s1_last.eq((pos == self._p - 1) & (ch == cn - 1)),
                     s1_d.eq(xin[:cw])]
        with m.If(step):
            if ln > 1:
                # The next lane to the bottom: a shift (one LUT per bit, packed with its
                # flip-flop) instead of a lane multiplexer.
                m.d.sync += xin.eq(xin >> cw)
            with m.If(lane == ln - 1):
                m.d.sync += [lane.eq(0), have.eq(0)]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
            with m.If(ch == cn - 1):
                m.d.sync += [ch.eq(0), pos.eq(Mux(pos == self._p - 1, 0, pos + 1))]
                with m.If(pos == self._p - 1):
                    m.d.sync += pooling.eq(0)
            with m.Else():
                m.d.sync += ch.eq(ch + 1)
        # Stage 2: product, the offset and the running sum (0 at the first position).
        s2_valid, s2_last = Signal(), Signal()
        s2_ch = Signal(range(cn))
        s2_prod = Signal(signed(cw + 1 + mw))
        s2_add = Signal(signed(adw))
        s2_g = Signal(signed(gw))
        m.d.sync += [s2_valid.eq(s1_valid), s2_last.eq(s1_valid & s1_last), s2_ch.eq(s1_ch),
                     s2_g.eq(Mux(s1_first, 0, g_rd))]
        y = Signal(signed(9))
        if self._identity:
            s2_x = Signal(signed(cw))
            m.d.sync += s2_x.eq(s1_d.as_signed())
            v = s2_x
        else:
            m.d.sync += [s2_prod.eq(s1_d * crp.data[:mw].as_signed()),
                         s2_add.eq(crp.data[mw:].as_signed())]
            # Stage 3: add, shift, clamp, accumulate, write back.
            v = Signal(signed(max(cw + 1 + mw, adw) + 1))
            m.d.comb += v.eq((s2_prod + s2_add) >> self._shift)
        m.d.comb += y.eq(Mux(v < self._lo, self._lo, Mux(v > self._hi, self._hi, v)))
        score_we = Signal()            # serial_out: a score to the memory (dense loop only)
        score_k = Signal(range(kn))
        total = Signal(signed(sw))
        m.d.comb += [gwp.addr.eq(Mux(score_we, cn + score_k, s2_ch)),
                     gwp.data.eq(Mux(score_we, total, s2_g + y)), gwp.en.eq(s2_valid | score_we)]

        # Dense loop and argmax (as GapDenseArgmax, the sums read from the memory).
        dense = Signal()
        c_idx, k_idx = Signal(range(cn)), Signal(range(kn))
        addr = Signal(range(cn * kn))
        issue_done = Signal()
        d_valid, d_c, d_k = Signal(), Signal(range(cn)), Signal(range(kn))
        e_valid, e_c, e_k = Signal(), Signal(range(cn)), Signal(range(kn))
        e_w, e_g = Signal(signed(ww)), Signal(signed(gw))
        f_valid, f_c, f_k = Signal(), Signal(range(cn)), Signal(range(kn))
        f_p = Signal(signed(ww + gw))
        h_valid, h_k, h_val = Signal(), Signal(range(kn)), Signal(signed(sw))
        acc = Signal(signed(sw))
        scores = [Signal(signed(sw), name=f"score{k}") for k in range(kn)]
        best, best_val = Signal(range(kn)), Signal(signed(sw))
        out_valid = Signal()
        shift = Signal()
        rix = Signal(range(kn))        # serial_out: the score on o.payload.scores[0]

        if not self._identity:
            m.d.comb += crp.addr.eq(ch)
        if so:
            m.d.comb += grp.addr.eq(Mux(dense, c_idx, Mux(out_valid, cn + rix, ch)))
        else:
            m.d.comb += grp.addr.eq(Mux(dense, c_idx, ch))
        m.d.comb += wrp.addr.eq(addr)
        with m.If(s2_last):
            m.d.sync += [dense.eq(1), c_idx.eq(0), k_idx.eq(0), addr.eq(0), issue_done.eq(0)]
        with m.If(dense):
            m.d.sync += [d_valid.eq(~issue_done), d_c.eq(c_idx), d_k.eq(k_idx)]
            with m.If(~issue_done):
                with m.If(c_idx == cn - 1):
                    m.d.sync += c_idx.eq(0)
                    with m.If(k_idx == kn - 1):
                        m.d.sync += issue_done.eq(1)
                    with m.Else():
                        m.d.sync += [k_idx.eq(k_idx + 1), addr.eq(addr + 1)]
                with m.Else():
                    m.d.sync += [c_idx.eq(c_idx + 1), addr.eq(addr + 1)]
            m.d.sync += [e_valid.eq(d_valid), e_c.eq(d_c), e_k.eq(d_k), e_w.eq(wrp.data.as_signed()),
                         e_g.eq(g_rd)]
            m.d.sync += [f_valid.eq(e_valid), f_c.eq(e_c), f_k.eq(e_k), f_p.eq(e_w * e_g)]
            m.d.sync += h_valid.eq(0)
            with m.If(f_valid):
                m.d.comb += total.eq(Mux(f_c == 0, bias[f_k], acc) + f_p)
                m.d.sync += acc.eq(total)
                with m.If(f_c == cn - 1):
                    m.d.comb += [shift.eq(1), score_we.eq(so), score_k.eq(f_k)]
                    m.d.sync += [h_valid.eq(1), h_k.eq(f_k), h_val.eq(total)]
            with m.If(h_valid):
                with m.If((h_k == 0) | (h_val > best_val)):
                    m.d.sync += [best.eq(h_k), best_val.eq(h_val)]
                with m.If(h_k == kn - 1):
                    m.d.sync += [d_valid.eq(0), e_valid.eq(0), f_valid.eq(0), h_valid.eq(0),
                                 dense.eq(0), out_valid.eq(1)]
        with m.If(out_valid & self.o.ready):
            m.d.sync += [out_valid.eq(0), pooling.eq(1)]
        with m.If(s2_last):
            m.d.sync += rix.eq(0)
        with m.Elif(out_valid & self.rot & so):
            m.d.sync += rix.eq(Mux(rix == kn - 1, 0, rix + 1))
        with m.Elif(out_valid & self.rot):
            # The consumer reads the scores one at a time from ``scores[0]``: rotate them (the
            # shift chain's input from the last total becomes scores[0]; K rotations restore the
            # order).
            m.d.comb += shift.eq(1)
        # One shift chain for both: a clock enable per score, a multiplexer on the last only.
        if not so:
            with m.If(shift):
                m.d.sync += [scores[k].eq(scores[k + 1]) for k in range(kn - 1)]
                m.d.sync += scores[kn - 1].eq(Mux(dense, total, scores[0]))
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.cls.eq(best)]
        if so:
            m.d.comb += self.o.payload.scores[0].eq(grp.data[:sw].as_signed())
        else:
            for k in range(kn):
                m.d.comb += self.o.payload.scores[k].eq(scores[k])
        return m
