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


def dense_score_width(w, bias, sum_lo: int, sum_hi: int) -> int:
    """Bits of a signed score ``sum_c w[k, c] g[c] + bias[k]`` for sums ``g`` in ``[sum_lo,
    sum_hi]``: enough for the largest magnitude any class can reach."""
    gmax = max(abs(int(sum_lo)), abs(int(sum_hi)))
    reach = int(np.abs(w).sum(axis=1).max()) * gmax + int(np.abs(bias).max())
    return signed_width(-reach, reach)


class DenseLoop:
    """The dense layer's multiply-accumulate loop and argmax, built into a unit's module: ``score[k]
    = sum_c w[k, c] * g[c] + bias[k]`` class by class, one product a cycle, in a five-stage pipeline
    (address the ROM and the operand; operand registers; product register; accumulate, a finished
    score shifting into the score registers; argmax compare: the largest score, the lowest index on a
    tie). The weight ROM's address is a counter, not ``k * C + c``. ``C*K + 5`` cycles from
    :meth:`restart` to ``done``. Shared by :class:`GapDenseArgmax` and
    :class:`kwsbnn.hw.dense.DenseArgmax`, which differ in where ``g[c]`` comes from."""

    def __init__(self, n_classes: int, channels: int, *, weight_width: int, operand_width: int,
                 score_width: int, bias):
        kn, cn, sw = n_classes, channels, score_width
        self._kn, self._cn, self._sw = kn, cn, sw
        self._bias = Array(Const(int(b), signed(sw)) for b in bias)
        self.c_idx, self.k_idx = Signal(range(max(2, cn))), Signal(range(max(2, kn)))
        self.addr = Signal(range(max(2, cn * kn)))       # k_idx * C + c_idx, counted
        self._issue_done = Signal()
        self.d_c = Signal(range(max(2, cn)))             # the channel whose operand is being read
        self._d_valid, self._d_k = Signal(), Signal(range(max(2, kn)))
        self._e_valid, self._e_c, self._e_k = Signal(), Signal(range(max(2, cn))), Signal(range(max(2, kn)))
        self._e_w, self._e_g = Signal(signed(weight_width)), Signal(signed(operand_width))
        self._f_valid, self._f_c, self._f_k = Signal(), Signal(range(max(2, cn))), Signal(range(max(2, kn)))
        self._f_p = Signal(signed(weight_width + operand_width))
        self._h_valid, self._h_k, self._h_val = Signal(), Signal(range(max(2, kn))), Signal(signed(sw))
        self._acc = Signal(signed(sw))
        self.scores = [Signal(signed(sw), name=f"score{k}") for k in range(kn)]
        self.best, self._best_val = Signal(range(max(2, kn))), Signal(signed(sw))

    def restart(self) -> list:
        """Synchronous assignments that start the loop from class 0, channel 0."""
        return [self.c_idx.eq(0), self.k_idx.eq(0), self.addr.eq(0), self._issue_done.eq(0)]

    def run(self, m, weight, operand) -> Signal:
        """The loop's logic, for the state that runs it: ``weight``, the ROM's data for the address
        :attr:`addr` of the cycle before; ``operand``, ``g`` of channel :attr:`d_c` (read on the
        same cycle as the weight). Returns ``done`` (combinational): the last class's score has met
        the argmax, and the pipeline is cleared."""
        kn, cn = self._kn, self._cn
        m.d.sync += [self._d_valid.eq(~self._issue_done), self.d_c.eq(self.c_idx), self._d_k.eq(self.k_idx)]
        with m.If(~self._issue_done):
            with m.If(self.c_idx == cn - 1):
                m.d.sync += self.c_idx.eq(0)
                with m.If(self.k_idx == kn - 1):
                    m.d.sync += self._issue_done.eq(1)
                with m.Else():
                    m.d.sync += [self.k_idx.eq(self.k_idx + 1), self.addr.eq(self.addr + 1)]
            with m.Else():
                m.d.sync += [self.c_idx.eq(self.c_idx + 1), self.addr.eq(self.addr + 1)]
        m.d.sync += [self._e_valid.eq(self._d_valid), self._e_c.eq(self.d_c), self._e_k.eq(self._d_k),
                     self._e_w.eq(weight.as_signed()), self._e_g.eq(operand)]
        m.d.sync += [self._f_valid.eq(self._e_valid), self._f_c.eq(self._e_c), self._f_k.eq(self._e_k),
                     self._f_p.eq(self._e_w * self._e_g)]
        m.d.sync += self._h_valid.eq(0)
        with m.If(self._f_valid):
            total = Signal(signed(self._sw))
            m.d.comb += total.eq(Mux(self._f_c == 0, self._bias[self._f_k], self._acc) + self._f_p)
            m.d.sync += self._acc.eq(total)
            with m.If(self._f_c == cn - 1):
                m.d.sync += [self.scores[k].eq(self.scores[k + 1]) for k in range(kn - 1)]
                m.d.sync += [self.scores[kn - 1].eq(total), self._h_valid.eq(1), self._h_k.eq(self._f_k),
                             self._h_val.eq(total)]
        done = Signal()
        with m.If(self._h_valid):
            with m.If((self._h_k == 0) | (self._h_val > self._best_val)):
                m.d.sync += [self.best.eq(self._h_k), self._best_val.eq(self._h_val)]
            m.d.comb += done.eq(self._h_k == kn - 1)
        with m.If(done):
            m.d.sync += [self._d_valid.eq(0), self._e_valid.eq(0), self._f_valid.eq(0), self._h_valid.eq(0)]
        return done

    def drive(self, m, payload) -> None:
        """The result payload: the class and every score."""
        m.d.comb += payload.cls.eq(self.best)
        for k in range(self._kn):
            m.d.comb += payload.scores[k].eq(self.scores[k])

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
        self._sw = dense_score_width(w, self._bias, self._glo, self._ghi)
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

        int8_in = self._in == "int8"
        gw = self.sum_width
        ones = Array(Signal(signed(gw) if int8_in else gw, name=f"g{c}" if int8_in else f"ones{c}")
                     for c in range(cn))
        pos = Signal(range(pn + 1))
        loop = DenseLoop(kn, cn, weight_width=ww, operand_width=gw if int8_in else bits_for(pn) + 2,
                         score_width=self._sw, bias=self._bias)

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
                        m.d.sync += [pos.eq(0), *loop.restart()]
                        m.next = "DENSE"
            with m.State("DENSE"):
                # The operand: the channel's sum (int8) or its ±1 sum 2 ones - positions (bits).
                m.d.comb += rp.addr.eq(loop.addr)
                g = ones[loop.d_c] if int8_in else (ones[loop.d_c] << 1) - pn
                with m.If(loop.run(m, rp.data, g)):
                    m.d.sync += [ones[c].eq(0) for c in range(cn)]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "POOL"
        loop.drive(m, self.o.payload)
        return m
