"""Sum pooling of accumulators followed by a per-channel threshold to output bits: one channel per cycle.

Input: the accumulator tensor ``acc [C, T, F]`` of a convolution, as the matrix-vector unit emits it
with ``out="acc"``: for each position ``(t, f)`` (t-major, f-minor) ``C / lanes`` transfers in
channel-group order, transfer ``g`` holding ``lanes`` two's-complement values of ``acc_width`` bits,
lane ``p`` at bits ``[p * acc_width, (p + 1) * acc_width)`` = channel ``g * lanes + p``. That is
``T * F * C / lanes`` transfers per inference, inferences back to back without separators.

It computes the non-overlapping sum pool with window ``(pt, pf)`` (stride = window, remainder rows
and columns dropped, docs/integer-network.md step 3)::

    s[c, i, j] = sum_{a < pt, b < pf} acc[c, i * pt + a, j * pf + b]      (i < T // pt, j < F // pf)

and the output bit ``y[c, i, j] = s >= threshold[c]`` (direction +1) or ``s <= threshold[c]``
(direction -1): one transfer of ``C`` bits (bit ``c`` = channel ``c``) per pooled position ``(i, j)``
in t-major order, ``(T // pt) * (F // pf)`` per inference. Transfers of the dropped remainder rows
and columns are consumed and ignored.

Datapath (one adder, no comparator). The threshold test is turned into a sign test: with
``u[c] = threshold[c]`` (direction +1) or ``threshold[c] + 1`` (direction -1), clamped to
``[lo, hi + 1]`` (``lo, hi``: the reachable range of ``s``), the bit is ``(s - u[c] >= 0)`` XOR
``(direction[c] == -1)``. The running value of a window starts at the bias ``-u[c]`` and the
accumulators are added to it, so the bit is the inverted sign of the final value (XOR a constant
per channel, a few LUTs of logic). Each running value is one word of ``run_width`` bits
(:attr:`run_width`: the width of ``s - u``, usually :attr:`sum_width` + 1) in one ``lib.memory.Memory``,
narrow and deep so it maps to block RAM:

- word ``(row, c)``: the running value of channel ``c`` of the open window of pooled column ``row``;
  ``F // pf`` rows for ``pt > 1`` (a window spans ``pt`` input rows, all pooled columns are open),
  one row for ``pt == 1`` (one window open at a time), none for ``pool=(1, 1)``;
- the last row: the biases ``-u[c]`` (memory init, never written). This is the threshold "ROM":
  it costs no logic and, with ``C * run_width`` bits, usually no extra block RAM; a ROM of its own
  would take a block RAM (or ~3 LUTs per bit in logic) plus a comparator of ``sum_width`` bits.

Depth ``(rows + 1) * C`` (the address is ``row * C + c``; a concatenation when ``C`` is a power of
two, else one small adder). For C=32, 19-bit accumulators, pool (4, 3), F=40: 448 x 24 bits, three
iCE40 block RAMs (512 x 8).

Schedule: a two-stage pipeline, one channel (one lane of the held input transfer) per cycle. Stage 0
selects lane ``p`` of ``i.payload`` (one-hot lane register, AND-OR select: ~5 LUTs per accumulator bit
for 8 lanes, the largest part of the unit) (held by the producer while ``i.valid`` and not ``i.ready``, as
the stream rules require) and reads the word ``(row, c)``, or the bias when the position is the first
of its window. Stage 1 adds the lane to the word read and writes the sum back; at the window's last
position it takes the bit instead, shifted into a ``C``-bit collect register; at its last channel the
collected bits move to the ``C``-bit output register. ``i.ready`` rises with the last lane, so a
transfer is accepted in the cycle its last lane is processed. Consecutive accesses to one word happen
only with ``C == 1``; that case uses a read port transparent to the write port.

Throughput: ``lanes`` cycles per input transfer (``C`` cycles per input position), for every
transfer including dropped ones, when the input has no gap and the output is not stalled. This keeps
up with a matrix-vector unit with ``pe = lanes`` whenever ``lanes <= simd_folds`` (it delivers one
transfer per ``simd_folds`` cycles at most). :attr:`cycles_per_inference` ``= T * F * C`` exactly
for ``C >= 3``; for ``C <= 2`` windows can complete faster than the output register drains and the
figure includes those waits (computed by the same rule as the hardware).

Backpressure: the output register is a single ``C``-bit register; the last channel of a window's
last position waits in stage 0 (holding the input) until the register is free, so ``o.ready`` has no
combinational path to ``i.ready``. Latency (:attr:`latency`): the output is valid 2 cycles after the
input transfer that completes a window (when the output register is free).

Size (Yosys ``synth_ice40 -dsp``; C=32, acc_width=19, T=101, F=40, pool (4, 3), lanes=8): 208 LUT4,
31 carries, 181 flip-flops, 3 block RAMs (lanes=1: 108 LUT4).

Members: ``i : In(stream.Signature(lanes * acc_width))``; ``o : Out(stream.Signature(C))``.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import signed_width


def _positive_int(name, what, value):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {what} must be an integer, not {value!r}") from None
    if v != value or v < 1:
        raise ValueError(f"{name}: {what} must be a positive integer, not {value!r}")
    return v


class SumPoolThreshold(wiring.Component):
    def __init__(self, *, channels: int, acc_width: int, frames: int, coeffs: int, pool=(1, 1),
                 direction, threshold, lanes: int, name: str = "pool"):
        self._name = name
        self._c = _positive_int(name, "channels", channels)
        self._aw = _positive_int(name, "acc_width", acc_width)
        self._t = _positive_int(name, "frames", frames)
        self._f = _positive_int(name, "coeffs", coeffs)
        self._l = _positive_int(name, "lanes", lanes)
        if self._c % self._l:
            raise ValueError(f"{name}: lanes={self._l} must divide channels={self._c}")
        pool = (1, 1) if pool is None else tuple(pool)
        if len(pool) != 2:
            raise ValueError(f"{name}: pool must be (pt, pf), not {pool!r}")
        self._pt = _positive_int(name, "pool[0]", pool[0])
        self._pf = _positive_int(name, "pool[1]", pool[1])
        self._t2, self._f2 = self._t // self._pt, self._f // self._pf
        if self._t2 < 1 or self._f2 < 1:
            raise ValueError(f"{name}: pool {self._pt}x{self._pf} is larger than the "
                             f"{self._t}x{self._f} input")
        d = np.asarray(direction).ravel()
        thr = np.asarray(threshold).ravel()
        if d.shape != (self._c,) or thr.shape != (self._c,):
            raise ValueError(f"{name}: direction and threshold need {self._c} entries each "
                             f"(got {d.size} and {thr.size})")
        if not np.all(np.isin(d, (-1, 1))):
            raise ValueError(f"{name}: direction entries must be +1 or -1")
        if not np.all(np.asarray(thr, dtype=float) == np.round(np.asarray(thr, dtype=float))):
            raise ValueError(f"{name}: thresholds must be integers")
        self._dir = [int(x) for x in d]
        self._thr = [int(x) for x in thr]
        n = self._pt * self._pf
        self._lo = n * -(1 << (self._aw - 1))
        self._hi = n * ((1 << (self._aw - 1)) - 1)
        self._sw = signed_width(self._lo, self._hi)
        # Sign test: bit = (s - u >= 0) ^ neg, u clamped to [lo, hi + 1] (same bits for every s).
        self._neg = [int(x < 0) for x in self._dir]
        self._u = [min(max(th + (x < 0), self._lo), self._hi + 1) for th, x in zip(self._thr, self._dir)]
        self._rw = signed_width(self._lo - self._hi - 1, self._hi - self._lo)
        self._rows = 0 if n == 1 else (1 if self._pt == 1 else self._f2)
        super().__init__({"i": In(stream.Signature(self._l * self._aw)),
                          "o": Out(stream.Signature(self._c))})

    @property
    def sum_width(self) -> int:
        """Width of a pooled sum (signed)."""
        return self._sw

    @property
    def run_width(self) -> int:
        """Width of a stored running value ``s - u`` (signed): the memory word."""
        return self._rw

    @property
    def lanes(self) -> int:
        return self._l

    @property
    def out_shape(self) -> tuple:
        """``(C, T // pt, F // pf)``."""
        return (self._c, self._t2, self._f2)

    @property
    def positions_in(self) -> int:
        return self._t * self._f

    @property
    def positions_out(self) -> int:
        return self._t2 * self._f2

    @property
    def transfers_in(self) -> int:
        """Input transfers per inference: ``T * F * C / lanes``."""
        return self._t * self._f * (self._c // self._l)

    @property
    def memory_depth(self) -> int:
        """Words of the running-value memory: ``(rows + 1) * C`` (the last row holds the biases)."""
        return (self._rows + 1) * self._c

    @property
    def cycles_per_inference(self) -> int:
        """Cycles per inference, back to back, when the input never has a gap and the output is never
        stalled: ``T * F * C`` (``lanes`` cycles per transfer) for ``C >= 3``."""
        if self._c >= 3:
            return self._t * self._f * self._c
        s = self._schedule(3)
        per = self._t * self._f * self._c
        return s[2 * per] - s[per]

    def _schedule(self, inferences: int) -> list:
        """Issue cycle of every channel item (the hardware's rule, never stalled) for ``C <= 2``."""
        times, now, last_done = [], 0, None
        for _ in range(inferences):
            for t in range(self._t):
                for f in range(self._f):
                    done = (t < self._t2 * self._pt and f < self._f2 * self._pf
                            and t % self._pt == self._pt - 1 and f % self._pf == self._pf - 1)
                    for c in range(self._c):
                        if done and c == self._c - 1 and last_done is not None:
                            # Blocked while the previous window is in stage 1 (C == 1) or in the
                            # output register (the cycle after).
                            now = max(now, last_done + 3)
                        times.append(now)
                        if done and c == self._c - 1:
                            last_done = now
                        now += 1
        return times

    @property
    def latency(self) -> int:
        """Cycles from the input transfer completing a window to its output being valid."""
        return 2

    @property
    def buffer_bits(self) -> int:
        """Bits of running-sum state (memory rows, without the bias row) and the two C-bit registers."""
        return self._rows * self._c * self._rw + 2 * self._c

    @property
    def threshold_bits(self) -> int:
        """Bits of the bias row (the thresholds) in the memory."""
        return self._c * self._rw

    def elaborate(self, platform):
        m = Module()
        cn, aw, rw, ln = self._c, self._aw, self._rw, self._l
        pt, pf, tn, fn, t2, f2 = self._pt, self._pf, self._t, self._f, self._t2, self._f2
        rows = self._rows
        pow2 = cn & (cn - 1) == 0

        # ---- Stage 0: position of the transfer at the input (a, i: row in window, pooled row; b, j:
        # column in window, pooled column; i = T2 / j = F2 in the dropped remainder, where a / b count
        # the remainder rows / columns), lane p, channel c.
        rem_t, rem_f = tn - t2 * pt, fn - f2 * pf
        a, b = Signal(range(pt)), Signal(range(pf))
        i, j = Signal(range(t2 + (rem_t > 0))), Signal(range(f2 + (rem_f > 0)))
        row_end = ((i == t2) & (a == rem_t - 1)) if rem_t else ((i == t2 - 1) & (a == pt - 1))
        col_end = ((j == f2) & (b == rem_f - 1)) if rem_f else ((j == f2 - 1) & (b == pf - 1))
        c = Signal(range(cn))
        # One-hot lane (rotates by one per channel): the lane select is an AND-OR of the lanes, which
        # maps to fewer LUTs than a binary-select multiplexer.
        p = Signal(ln, init=1) if ln > 1 else None
        lane_last = p[-1] if ln > 1 else Const(1)
        ch_last = c == cn - 1
        kept = (i != t2 if rem_t else Const(1)) & (j != f2 if rem_f else Const(1))
        first = (a == 0) & (b == 0)
        closing = kept & (a == pt - 1) & (b == pf - 1)          # this position ends its window
        completing = closing & ch_last

        s1_we, s1_collect, s1_complete = Signal(), Signal(), Signal()
        ovalid = Signal()
        busy = ovalid | s1_complete if cn == 1 else ovalid
        block = completing & busy
        issue = self.i.valid & ~block
        m.d.comb += self.i.ready.eq(lane_last & ~block)

        with m.If(issue):
            m.d.sync += c.eq(c + 1 if pow2 else Mux(ch_last, 0, c + 1))
            if p is not None:
                m.d.sync += p.eq(p.rotate_left(1))
            with m.If(ch_last):
                with m.If(col_end):
                    m.d.sync += [b.eq(0), j.eq(0)]
                    with m.If(row_end):
                        m.d.sync += [a.eq(0), i.eq(0)]
                    with m.Elif(a == pt - 1):
                        m.d.sync += [a.eq(0), i.eq(i + 1)]
                    with m.Else():
                        m.d.sync += a.eq(a + 1)
                with m.Elif(b == pf - 1):
                    m.d.sync += [b.eq(0), j.eq(j + 1)]
                with m.Else():
                    m.d.sync += b.eq(b + 1)

        if ln == 1:
            lane = self.i.payload[:aw]
        else:
            lane = Const(0, aw)
            for k in range(ln):
                lane = lane | (self.i.payload[k * aw:(k + 1) * aw] & p[k].replicate(aw))
        neg = (Const(int(sum(x << k for k, x in enumerate(self._neg))), cn).bit_select(c, 1)
               if 0 < sum(self._neg) < cn else Const(self._neg[0], 1))

        # ---- The memory: rows of running values, then the bias row.
        bias = [(-u) & ((1 << rw) - 1) for u in self._u]
        init = [0] * (rows * cn) + [(v - (1 << rw)) if v >> (rw - 1) else v for v in bias]
        m.submodules.run = mem = memory.Memory(shape=signed(rw), depth=(rows + 1) * cn, init=init)

        def addr(row):
            if rows == 0:
                return c
            return Cat(c, row) if pow2 else row * cn + c

        wrow = j if rows > 1 else Const(0, 1)
        wp = mem.write_port() if rows else None
        rp = mem.read_port(transparent_for=(wp,) if (wp is not None and cn == 1) else ())
        m.d.comb += rp.addr.eq(addr(Mux(first, rows, wrow)) if rows else c)

        s1_acc = Signal(signed(aw), reset_less=True)
        s1_neg = Signal(reset_less=True)
        m.d.sync += [s1_we.eq(issue & kept & ~closing), s1_collect.eq(issue & closing),
                     s1_complete.eq(issue & completing), s1_acc.eq(lane.as_signed()), s1_neg.eq(neg)]

        # ---- Stage 1: add, write back or take the bit.
        r = Signal(signed(rw))
        m.d.comb += r.eq(rp.data + s1_acc)
        if wp is not None:
            s1_waddr = Signal.like(wp.addr, reset_less=True)
            m.d.sync += s1_waddr.eq(addr(wrow))
            m.d.comb += [wp.addr.eq(s1_waddr), wp.data.eq(r), wp.en.eq(s1_we)]
        bit = ~r[-1] ^ s1_neg
        col, obuf = Signal(cn, reset_less=True), Signal(cn, reset_less=True)
        shifted = Cat(col[1:], bit)
        with m.If(s1_collect):
            m.d.sync += col.eq(shifted)
        with m.If(s1_complete):
            m.d.sync += [obuf.eq(shifted), ovalid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += ovalid.eq(0)
        m.d.comb += [self.o.valid.eq(ovalid), self.o.payload.eq(obuf)]
        return m
