"""Global sum pooling of the last layer's channels, the final dense layer to integer scores, and argmax.

Per inference it takes ``positions`` transfers (one per output position of the last layer): with
``in_prec="bits"``, ``C`` bits; it counts the ones per channel and forms ``g[c] = 2 * ones[c] -
positions`` (the sum of the ±1 values). With ``in_prec="int8"`` (a last layer with 8-bit outputs,
:class:`~kwsbnn.hw.requant.Requantize`), ``C`` two's-complement 8-bit values (element ``c`` at bits
``[8c, 8c + 8)``, within ``[lo, hi]``), summed per channel into ``g[c]``. Then it computes ``score[k] = sum_c w[k, c] * g[c] + bias[k]`` class by class with one multiply-accumulate
per cycle (one multiplier: a DSP where there is one, and one running sum), keeping the class of the
largest score (lowest index on a tie). The dense loop is a five-stage pipeline (ROM read; operand
registers ``g`` and ``w``; product register; accumulate; argmax compare) so that no path holds more
than one of the channel multiplexer, the multiplier, the adder and the comparator: this unit was the
critical path of whole designs before (Fmax 46 MHz on ECP5, 24 MHz on iCE40). The weight ROM's
address is a counter, not ``k * C + c`` (that multiply before the ROM's logic was the critical path
of the ULX3S design at 52.6 MHz).

Throughput: one inference per ``positions + C*K + 7`` cycles at most (input transfers overlap
nothing else). Latency from the last input transfer: ``C*K + 7`` cycles.

Members: ``i : In(stream.Signature(C))`` (``C * 8`` for int8 inputs); ``o : Out(stream.Signature(layout))`` where
``layout = {"cls": unsigned, "scores": ArrayLayout(signed(score_width), K)}``.
"""

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .arith import bits_for, signed_width


def result_layout(n_classes: int, score_width: int) -> data.StructLayout:
    """The payload of the network's output stream: the class and every score."""
    return data.StructLayout({"cls": unsigned(max(1, ceil_log2(n_classes))),
                              "scores": data.ArrayLayout(signed(score_width), n_classes)})


class GapDenseArgmax(wiring.Component):
    def __init__(self, weights: np.ndarray, bias: np.ndarray, *, positions: int, binary_weights: bool,
                 in_prec: str = "bits", lo: int = 0, hi: int = 127):
        if in_prec not in ("bits", "int8"):
            raise ValueError(f"tail: input precision {in_prec!r} (bits or int8)")
        self._in = in_prec
        self._lo, self._hi = int(lo), int(hi)
        w = np.asarray(weights, dtype=np.int64)
        if binary_weights:
            w = 2 * w - 1
        self._w = w
        self._k, self._c = w.shape
        self._bias = np.asarray(bias, dtype=np.int64).reshape(self._k)
        self._p = int(positions)
        self._ww = signed_width(int(w.min()), int(w.max()))
        if in_prec == "bits":
            self._glo, self._ghi = -self._p, self._p
        else:
            self._glo, self._ghi = self._lo * self._p, self._hi * self._p
        gmax = max(abs(self._glo), abs(self._ghi))
        reach = int(np.abs(w).sum(axis=1).max()) * gmax + int(np.abs(self._bias).max())
        self._sw = signed_width(-reach, reach)
        self._layout = result_layout(self._k, self._sw)
        in_width = self._c * (8 if in_prec == "int8" else 1)
        super().__init__({"i": In(stream.Signature(in_width)), "o": Out(stream.Signature(self._layout))})

    @property
    def sum_width(self) -> int:
        """Width of one channel's running sum (the count of ones for bit inputs)."""
        if self._in == "bits":
            return bits_for(self._p)
        return signed_width(self._glo, self._ghi)

    @property
    def score_width(self) -> int:
        return self._sw

    @property
    def layout(self) -> data.StructLayout:
        return self._layout

    @property
    def cycles_per_inference(self) -> int:
        return self._p + self._c * self._k + 7

    def elaborate(self, platform):
        m = Module()
        kn, cn, pn, ww = self._k, self._c, self._p, self._ww
        mask = (1 << ww) - 1
        # Weight ROM in (class, channel) order: the dense layer runs class by class.
        init = [int(self._w[k, c]) & mask for k in range(kn) for c in range(cn)]
        m.submodules.wrom = wrom = memory.Memory(shape=unsigned(ww), depth=cn * kn, init=init)
        rp = wrom.read_port()
        bias = Array(Const(int(b), signed(self._sw)) for b in self._bias)

        int8_in = self._in == "int8"
        gw = self.sum_width
        ones = Array(Signal(signed(gw) if int8_in else gw, name=f"g{c}" if int8_in else f"ones{c}")
                     for c in range(cn))
        pos = Signal(range(pn + 1))
        c_idx, k_idx = Signal(range(cn)), Signal(range(kn))
        addr = Signal(range(cn * kn))       # k_idx * C + c_idx, counted (no multiplier)
        issue_done = Signal()
        d_valid, d_c, d_k = Signal(), Signal(range(cn)), Signal(range(kn))
        e_valid, e_c, e_k = Signal(), Signal(range(cn)), Signal(range(kn))
        egw = gw if int8_in else bits_for(pn) + 2
        e_w, e_g = Signal(signed(ww)), Signal(signed(egw))
        f_valid, f_c, f_k = Signal(), Signal(range(cn)), Signal(range(kn))
        f_p = Signal(signed(ww + egw))
        h_valid, h_k, h_val = Signal(), Signal(range(kn)), Signal(signed(self._sw))
        acc = Signal(signed(self._sw))
        scores = [Signal(signed(self._sw), name=f"score{k}") for k in range(kn)]
        best, best_val = Signal(range(kn)), Signal(signed(self._sw))

        with m.FSM():
            with m.State("POOL"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for c in range(cn):
                        if int8_in:
                            m.d.sync += ones[c].eq(ones[c] + self.i.payload[8 * c:8 * c + 8].as_signed())
                        else:
                            m.d.sync += ones[c].eq(ones[c] + self.i.payload[c])
                    m.d.sync += pos.eq(pos + 1)
                    with m.If(pos == pn - 1):
                        m.d.sync += [pos.eq(0), c_idx.eq(0), k_idx.eq(0), addr.eq(0), issue_done.eq(0)]
                        m.next = "DENSE"
            with m.State("DENSE"):
                # Address (k, c) now, multiply-accumulate it on the next cycle. One running sum;
                # each finished score shifts into the score registers and meets the argmax.
                m.d.comb += rp.addr.eq(addr)
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
                # Operands: the channel's ±1 sum and the weight just read.
                m.d.sync += [e_valid.eq(d_valid), e_c.eq(d_c), e_k.eq(d_k), e_w.eq(rp.data.as_signed()),
                             e_g.eq(ones[d_c] if int8_in else (ones[d_c] << 1) - pn)]
                # Product.
                m.d.sync += [f_valid.eq(e_valid), f_c.eq(e_c), f_k.eq(e_k), f_p.eq(e_w * e_g)]
                # Accumulate; a finished score shifts into the score registers.
                m.d.sync += h_valid.eq(0)
                with m.If(f_valid):
                    total = Signal(signed(self._sw))
                    m.d.comb += total.eq(Mux(f_c == 0, bias[f_k], acc) + f_p)
                    m.d.sync += acc.eq(total)
                    with m.If(f_c == cn - 1):
                        m.d.sync += [scores[k].eq(scores[k + 1]) for k in range(kn - 1)]
                        m.d.sync += [scores[kn - 1].eq(total), h_valid.eq(1), h_k.eq(f_k), h_val.eq(total)]
                # Argmax.
                with m.If(h_valid):
                    with m.If((h_k == 0) | (h_val > best_val)):
                        m.d.sync += [best.eq(h_k), best_val.eq(h_val)]
                    with m.If(h_k == kn - 1):
                        m.d.sync += [d_valid.eq(0), e_valid.eq(0), f_valid.eq(0), h_valid.eq(0),
                                     *[ones[c].eq(0) for c in range(cn)]]
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "POOL"
        m.d.comb += self.o.payload.cls.eq(best)
        for k in range(kn):
            m.d.comb += self.o.payload.scores[k].eq(scores[k])
        return m
