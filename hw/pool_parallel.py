"""Sum pooling and thresholds for all channels at once: the fast variant, for foldings whose
matrix-vector unit delivers a position every few cycles (large FPGAs). The channel-serial
:class:`kwsbnn.hw.pool.SumPoolThreshold` is the small one.

Sum pooling of accumulator vectors followed by a per-channel threshold to output bits.

The input is the accumulator tensor ``acc [C, T, F]`` of a convolution, streamed one position
``(t, f)`` per transfer (t-major, f-minor, ``T * F`` transfers per inference, inferences back to back
without separators); the payload holds ``C`` two's-complement values of ``acc_width`` bits, channel
``c`` at bits ``[c * acc_width, (c + 1) * acc_width)``.

It computes the non-overlapping sum pool with window ``(pt, pf)`` (stride = window, remainder rows
and columns dropped, docs/integer-network.md step 3)::

    s[c, i, j] = sum_{a < pt, b < pf} acc[c, i * pt + a, j * pf + b]      (i < T // pt, j < F // pf)

and the output bit ``y[c, i, j] = s >= threshold[c]`` (direction +1) or ``s <= threshold[c]``
(direction -1), one transfer of ``C`` bits (bit ``c`` = channel ``c``) per pooled position ``(i, j)``
in t-major order: ``(T // pt) * (F // pf)`` output transfers per inference. Input positions in the
dropped remainder rows (``t >= (T // pt) * pt``) and columns (``f >= (F // pf) * pf``) are accepted
and ignored. ``pool=(1, 1)`` is a plain per-position threshold of the accumulators.

Thresholds and directions are constants compiled into the comparators (no ROM): with ``C`` around 32
a compare against a constant is smaller than a compare against a ROM word, and it needs no read
cycle. A channel whose threshold lies outside the reachable range of ``s`` is a constant bit.

Storage: a running row sum of ``C`` values over the ``pf`` columns of the current window
(``pf > 1`` only), and for ``pt > 1`` a buffer of ``F // pf`` partial sums of ``C`` values (one word
per pooled column, in a ``lib.memory.Memory`` with a read port transparent to its write port); see
:attr:`buffer_bits`. The buffer is read ahead: its address is the pooled column of the position the
unit will accept next, so the partial sum is ready in the cycle the last column of a window arrives.

Throughput: one input position per cycle unless the input has a gap or the output is stalled
(:attr:`cycles_per_inference` ``= T * F`` when never stalled). Latency: the output transfer of a
pooled position is valid one cycle after the input transfer that completes its window. Outputs go
through a FIFO of ``out_depth`` entries (2 by default), so ``o.ready`` has no combinational path to
``i.ready``; the input stalls only when that FIFO is full and the current position would complete
a window. Pooled outputs come in bursts (a pooled row while the last input row of its windows goes
by); an ``out_depth`` above ``F // pf`` holds a whole pooled row, so a consumer that keeps up on
average never stalls the input.

Members: ``i : In(stream.Signature(C * acc_width))``; ``o : Out(stream.Signature(C))``.
"""

import numpy as np
from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import signed_width


class ParallelSumPoolThreshold(wiring.Component):
    def __init__(self, *, channels: int, acc_width: int, frames: int, coeffs: int, pool=(1, 1),
                 direction, threshold, out_depth: int = 2, name: str = "pool"):
        self._out_depth = max(2, int(out_depth))
        self._c, self._aw = int(channels), int(acc_width)
        self._t, self._f = int(frames), int(coeffs)
        self._pt, self._pf = (int(p) for p in (pool or (1, 1)))
        self._name = name
        if self._c < 1 or self._aw < 1 or self._pt < 1 or self._pf < 1:
            raise ValueError(f"{name}: channels, acc_width and pool must be positive")
        self._t2, self._f2 = self._t // self._pt, self._f // self._pf
        if self._t2 < 1 or self._f2 < 1:
            raise ValueError(f"{name}: pool {self._pt}x{self._pf} is larger than the "
                             f"{self._t}x{self._f} input")
        d = np.asarray(direction).astype(np.int64).ravel()
        thr = np.asarray(threshold).astype(np.int64).ravel()
        if d.shape != (self._c,) or thr.shape != (self._c,):
            raise ValueError(f"{name}: direction and threshold need {self._c} entries each")
        if not np.all(np.isin(d, (-1, 1))):
            raise ValueError(f"{name}: direction entries must be +1 or -1")
        self._dir = [int(x) for x in d]
        self._thr = [int(x) for x in thr]
        n = self._pt * self._pf
        self._lo = n * -(1 << (self._aw - 1))
        self._hi = n * ((1 << (self._aw - 1)) - 1)
        self._sw = signed_width(self._lo, self._hi)
        super().__init__({"i": In(stream.Signature(self._c * self._aw)),
                          "o": Out(stream.Signature(self._c))})

    @property
    def sum_width(self) -> int:
        """Width of a pooled sum (signed)."""
        return self._sw

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
    def cycles_per_inference(self) -> int:
        """Cycles per inference when the input never has a gap and the output is never stalled."""
        return self._t * self._f

    @property
    def latency(self) -> int:
        """Cycles from the input transfer completing a window to its output being valid."""
        return 1

    @property
    def threshold_bits(self) -> int:
        """Thresholds are compiled into constant comparators: no memory."""
        return 0

    @property
    def buffer_bits(self) -> int:
        """Bits of partial-sum state: the row buffer (memory) plus the running row-sum registers."""
        buf = self._f2 * self._c * self._sw if self._pt > 1 else 0
        run = self._c * self._sw if self._pf > 1 else 0
        return buf + run

    def elaborate(self, platform):
        m = Module()
        cn, aw, sw = self._c, self._aw, self._sw
        pt, pf, tn, fn, t2, f2 = self._pt, self._pf, self._t, self._f, self._t2, self._f2

        m.submodules.out = out = fifo.SyncFIFO(width=cn, depth=self._out_depth)
        wiring.connect(m, out.r_stream, wiring.flipped(self.o))

        # Position of the next input transfer: t, f; a = t % pt, i = t // pt (saturates at T2 in the
        # dropped rows); b = f % pf, j = f // pf (saturates at F2 in the dropped columns).
        t, f = Signal(range(tn)), Signal(range(fn))
        a, b = Signal(range(pt)), Signal(range(pf))
        i, j = Signal(range(t2 + 1)), Signal(range(f2 + 1))
        kept = (i < t2) & (j < f2)
        last_b = b == pf - 1
        last_a = a == pt - 1
        emits = kept & last_a & last_b

        m.d.comb += self.i.ready.eq(~emits | out.w_rdy)
        take = self.i.valid & self.i.ready

        # Next position (after this transfer).
        f_end, t_end = f == fn - 1, t == tn - 1
        j_next = Signal.like(j)
        with m.If(take):
            with m.If(f_end):
                m.d.sync += [f.eq(0), b.eq(0), j.eq(0)]
                m.d.comb += j_next.eq(0)
                with m.If(t_end):
                    m.d.sync += [t.eq(0), a.eq(0), i.eq(0)]
                with m.Else():
                    m.d.sync += t.eq(t + 1)
                    with m.If(last_a):
                        m.d.sync += [a.eq(0), i.eq(Mux(i == t2, t2, i + 1))]
                    with m.Else():
                        m.d.sync += a.eq(a + 1)
            with m.Else():
                m.d.sync += f.eq(f + 1)
                with m.If(last_b):
                    m.d.sync += b.eq(0)
                    m.d.comb += j_next.eq(Mux(j == f2, f2, j + 1))
                with m.Else():
                    m.d.sync += b.eq(b + 1)
                    m.d.comb += j_next.eq(j)
                m.d.sync += j.eq(j_next)
        with m.Else():
            m.d.comb += j_next.eq(j)

        acc_in = [self.i.payload[c * aw:(c + 1) * aw].as_signed() for c in range(cn)]

        # Sum over the columns of the window in this row: running registers for pf > 1.
        row = [Signal(signed(sw), name=f"row{c}") for c in range(cn)]
        if pf > 1:
            run = [Signal(signed(sw), name=f"run{c}") for c in range(cn)]
            for c in range(cn):
                m.d.comb += row[c].eq(Mux(b == 0, 0, run[c]) + acc_in[c])
            with m.If(take & ~last_b):
                m.d.sync += [run[c].eq(row[c]) for c in range(cn)]
        else:
            m.d.comb += [row[c].eq(acc_in[c]) for c in range(cn)]

        # Add the rows above (pt > 1): one partial-sum word per pooled column.
        full = [Signal(signed(sw), name=f"sum{c}") for c in range(cn)]
        if pt > 1:
            m.submodules.buf = buf = memory.Memory(shape=unsigned(cn * sw), depth=f2, init=[])
            wp = buf.write_port()
            rp = buf.read_port(domain="sync", transparent_for=(wp,))
            m.d.comb += rp.addr.eq(Mux(j_next >= f2, 0, j_next))
            for c in range(cn):
                above = rp.data[c * sw:(c + 1) * sw].as_signed()
                m.d.comb += full[c].eq(Mux(a == 0, 0, above) + row[c])
            m.d.comb += [wp.addr.eq(j), wp.data.eq(Cat(*full)),
                         wp.en.eq(take & kept & last_b & ~last_a)]
        else:
            m.d.comb += [full[c].eq(row[c]) for c in range(cn)]

        bits = []
        for c in range(cn):
            d, th = self._dir[c], self._thr[c]
            if d > 0:
                bits.append(full[c] >= th if self._lo < th <= self._hi else C(int(th <= self._lo), 1))
            else:
                bits.append(full[c] <= th if self._lo <= th < self._hi else C(int(th >= self._hi), 1))
        m.d.comb += [out.w_stream.payload.eq(Cat(*bits)), out.w_stream.valid.eq(self.i.valid & emits)]
        return m
