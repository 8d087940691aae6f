"""The dense layer and argmax on channel sums that are already pooled: the tail of the block-RAM
engine (:class:`kwsbnn.hw.bram_engine.BramEngine` with ``pool=True`` sums the last layer over the
positions itself, ``lanes`` channels per cycle, instead of a tail with one adder per channel).

Per inference it takes ``C / lanes`` transfers, transfer ``n`` holding the sums ``g[c]`` of channels
``c = n * lanes + p`` (lane ``p``, ``sum_width`` bits, signed), and computes, as
:class:`~kwsbnn.hw.scores.GapDenseArgmax` does after its pooling, ``score[k] = sum_c w[k, c] * g[c] +
bias[k]`` class by class with one multiply-accumulate per cycle and the class of the largest score
(lowest index on a tie). The sums are kept in a small memory (``C / lanes`` words of ``lanes``
sums); the dense loop is GapDenseArgmax's five-stage pipeline (address; operands; product;
accumulate; argmax), the weights in a ROM read by a counter.

Throughput: one inference per ``C / lanes + C * K + 6`` cycles at most (while the result is taken
at once). Latency from the last input transfer: ``C * K + 6`` cycles.

Members: ``i : In(stream.Signature(lanes * sum_width))``; ``o : Out(stream.Signature(layout))`` with
the layout of :func:`kwsbnn.hw.scores.result_layout` (all scores held in registers).
"""

import numpy as np
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import signed_width
from .scores import DenseLoop, dense_score_width, result_layout


class DenseArgmax(wiring.Component):
    def __init__(self, weights, bias, *, lanes: int, sum_lo: int, sum_hi: int,
                 binary_weights: bool = False):
        w = np.asarray(weights, dtype=np.int64)
        if binary_weights:
            w = 2 * w - 1
        self._w = w
        self._k, self._c = w.shape
        self._l = int(lanes)
        if self._l < 1 or self._c % self._l:
            raise ValueError(f"dense tail: lanes={lanes} must divide the {self._c} channels")
        self._bias = np.asarray(bias, dtype=np.int64).reshape(self._k)
        self._glo, self._ghi = int(sum_lo), int(sum_hi)
        self._gw = signed_width(min(0, self._glo), max(0, self._ghi))
        self._ww = signed_width(int(w.min()), int(w.max()))
        self._sw = dense_score_width(w, self._bias, self._glo, self._ghi)
        self._layout = result_layout(self._k, self._sw)
        super().__init__({"i": In(stream.Signature(self._l * self._gw)),
                          "o": Out(stream.Signature(self._layout))})

    @property
    def sum_width(self) -> int:
        return self._gw

    @property
    def score_width(self) -> int:
        return self._sw

    @property
    def layout(self):
        return self._layout

    @property
    def cycles_per_inference(self) -> int:
        """At most ``C / lanes + C * K + 6`` (input without gaps, the result taken at once)."""
        return self._c // self._l + self._c * self._k + 6

    @property
    def constant_bits(self) -> int:
        return self._c * self._k * self._ww

    def elaborate(self, platform):
        m = Module()
        kn, cn, ln, gw, ww = self._k, self._c, self._l, self._gw, self._ww
        nw = cn // ln
        init = [int(self._w[k, c]) & ((1 << ww) - 1) for k in range(kn) for c in range(cn)]
        m.submodules.wrom = wrom = memory.Memory(shape=unsigned(ww), depth=cn * kn, init=init)
        wrp = wrom.read_port()
        m.submodules.gram = gram = memory.Memory(shape=unsigned(ln * gw), depth=max(2, nw), init=[])
        gwp = gram.write_port()
        grp = gram.read_port(transparent_for=())
        word = Signal(range(max(2, nw)))
        loop = DenseLoop(kn, cn, weight_width=ww, operand_width=gw, score_width=self._sw,
                         bias=self._bias)
        pow2 = ln & (ln - 1) == 0
        lane_of = (lambda c: c[:(ln - 1).bit_length()]) if pow2 else (lambda c: c % ln)
        word_of = (lambda c: c >> (ln - 1).bit_length()) if pow2 else (lambda c: c // ln)

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += [self.i.ready.eq(1), gwp.addr.eq(word), gwp.data.eq(self.i.payload),
                             gwp.en.eq(self.i.valid)]
                with m.If(self.i.valid):
                    m.d.sync += word.eq(word + 1)
                    with m.If(word == nw - 1):
                        m.d.sync += [word.eq(0), *loop.restart()]
                        m.next = "DENSE"
            with m.State("DENSE"):
                # The weight and the channel's sum are read on the same cycle (both memories
                # addressed by the loop's counters).
                m.d.comb += [wrp.addr.eq(loop.addr),
                             grp.addr.eq(word_of(loop.c_idx) if ln > 1 else loop.c_idx)]
                g = grp.data.word_select(lane_of(loop.d_c), gw) if ln > 1 else grp.data
                with m.If(loop.run(m, wrp.data, g.as_signed())):
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "LOAD"
        loop.drive(m, self.o.payload)
        return m
