"""Box sums of an int8 feature map: what folds a first layer's sum pooling into its convolution.

For a conv layer with an int8 input, stride 1 and ``pool [P, Q]`` (docs/integer-network.md), the
pooled accumulator is, because nothing nonlinear lies between the convolution and the pooling::

    acc'[c, T2, F2] = sum_{a<P, b<Q} acc[c, P T2 + a, Q F2 + b]
                    = sum_{i<kt, j<kf} w[c, i, j] * B[P T2 + i dt - pt, Q F2 + j df - pf]
    B[r, s] = sum_{a<P, b<Q} x[r + a, s + b]       (x = 0 outside the map)

so the layer is this unit (the map ``B``), then a sliding window over ``B`` with the layer's kernel
and dilation at stride ``(P, Q)`` without padding, then a matrix-vector unit whose thresholds are
the layer's own, on ``T2 x F2`` positions instead of ``T' x F'``: about ``P Q`` times fewer products.

It emits ``B[r, s]`` for ``r`` in ``[-pt, (T2 - 1) P + (kt - 1) dt - pt]`` and ``s`` in ``[-pf, (F2 - 1) Q +
(kf - 1) df - pf]`` (the rows and columns those windows read), t-major, as signed :attr:`width`-bit
values. It sums each new input with the ``P - 1`` inputs above it (a line buffer of ``P - 1`` rows in
one memory word per column) and with the ``Q - 1`` column sums before it (registers), so ``B[r, s]``
is complete when ``x[r + P - 1, s + Q - 1]`` arrives; the unit accepts only geometries where that
input exists for every emitted ``B`` (the last rows and columns need no input past the map's end):
:func:`applicable`.

Streams: ``i : In(stream.Signature(8))``, one int8 per position ``(t, f)``, t-major, ``T * F`` per
inference, back to back; ``o : Out(stream.Signature(width))``, one per emitted ``(r, s)``. Throughput:
one input per cycle while the output is taken (a two-entry output buffer; no combinational path
from ``o.ready`` to ``i.ready``). Latency: 1 cycle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import signed_width


def geometry(frames, coeffs, kernel, dilation, padding, pool) -> dict:
    """The emitted range of ``B`` and the pooled output size of a first layer (stride 1)."""
    (kt, kf), (dt, df), (pt, pf), (pp, pq) = kernel, dilation, padding, pool
    to = frames + 2 * pt - dt * (kt - 1)
    fo = coeffs + 2 * pf - df * (kf - 1)
    t2, f2 = to // pp, fo // pq
    return {"t2": t2, "f2": f2, "r_lo": -pt, "r_hi": (t2 - 1) * pp + (kt - 1) * dt - pt,
            "s_lo": -pf, "s_hi": (f2 - 1) * pq + (kf - 1) * df - pf}


def applicable(frames, coeffs, kernel, dilation, padding, pool) -> bool:
    """Whether :class:`BoxSum` can feed this layer: every emitted ``B`` row and column completes on
    an input of the map (``r_hi <= T - P``, ``s_hi <= F - Q``), and the first ones are not before the
    line buffer's reach (``r_lo >= 1 - P``, ``s_lo >= 1 - Q``), and the map has at least two columns."""
    g = geometry(frames, coeffs, kernel, dilation, padding, pool)
    pp, pq = pool
    return (g["t2"] >= 1 and g["f2"] >= 1 and coeffs >= 2 and g["r_hi"] <= frames - pp
            and g["s_hi"] <= coeffs - pq and g["r_lo"] >= 1 - pp and g["s_lo"] >= 1 - pq)


class BoxSum(wiring.Component):
    def __init__(self, *, frames: int, coeffs: int, kernel, dilation, padding, pool):
        self._MustUse__silence = True        # a refused geometry is not an unused unit
        self._t, self._f = int(frames), int(coeffs)
        self._pp, self._pq = (int(v) for v in pool)
        if not applicable(self._t, self._f, kernel, dilation, padding, pool):
            raise ValueError(f"box sums: pooling {list(pool)} with kernel {list(kernel)}, padding "
                             f"{list(padding)} on a {frames} x {coeffs} map needs input past its end")
        self._g = geometry(self._t, self._f, kernel, dilation, padding, pool)
        n = self._pp * self._pq
        self._w = signed_width(-127 * n, 127 * n)
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(self._w))})
        self._MustUse__silence = False

    @property
    def width(self) -> int:
        """Bits of one box sum (signed): enough for ``P Q`` values in -127..127."""
        return self._w

    @property
    def out_frames(self) -> int:
        return self._g["r_hi"] - self._g["r_lo"] + 1

    @property
    def out_coeffs(self) -> int:
        return self._g["s_hi"] - self._g["s_lo"] + 1

    @property
    def cycles_per_inference(self) -> int:
        """``T F``: one input per cycle."""
        return self._t * self._f

    @property
    def buffer_bits(self) -> int:
        """The line buffer: ``F`` words of ``(P - 1) x 8`` bits."""
        return self._f * (self._pp - 1) * 8

    def elaborate(self, platform):
        m = Module()
        tn, fn, pp, pq, w = self._t, self._f, self._pp, self._pq, self._w
        g = self._g
        t = Signal(range(tn))
        f = Signal(range(fn))
        fire = self.i.valid & self.i.ready
        x = self.i.payload.as_signed()
        olds = []
        if pp > 1:
            m.submodules.lines = lines = memory.Memory(shape=(pp - 1) * 8, depth=fn, init=[])
            wp = lines.write_port()
            rp = lines.read_port(transparent_for=())
            # Read the column of the next input ahead: its word is on the port when it arrives.
            nxt = Mux(f == fn - 1, 0, f + 1)
            m.d.comb += [rp.addr.eq(Mux(fire, nxt, f)), wp.addr.eq(f), wp.en.eq(fire),
                         wp.data.eq(Cat(x, rp.data[:(pp - 2) * 8]) if pp > 2 else x)]
            # Row t - a (a = 1 .. P - 1) of this inference, or zero above the map.
            olds = [Mux(t >= a, rp.data[(a - 1) * 8:a * 8].as_signed(), 0) for a in range(1, pp)]
        v = Signal(signed(signed_width(-127 * pp, 127 * pp)))
        m.d.comb += v.eq(sum(olds, x))
        hs = [Signal(v.shape(), name=f"h{b}") for b in range(1, pq)]     # column sums f-1, f-2, ...
        box = Signal(signed(w))
        m.d.comb += box.eq(sum((Mux(f >= b, h, 0) for b, h in zip(range(1, pq), hs)), v))
        r, s = t - (pp - 1), f - (pq - 1)
        emit = (r >= g["r_lo"]) & (r <= g["r_hi"]) & (s >= g["s_lo"]) & (s <= g["s_hi"])
        # A two-entry output buffer: one input per cycle, and i.ready a register's function.
        bufs = [Signal(signed(w), name=f"buf{n}") for n in range(2)]
        count = Signal(range(3))
        push = fire & emit
        pop = self.o.valid & self.o.ready
        m.d.comb += [self.i.ready.eq(count != 2), self.o.valid.eq(count != 0), self.o.payload.eq(bufs[0])]
        with m.If(push & ~pop):
            m.d.sync += count.eq(count + 1)
            with m.If(count == 0):
                m.d.sync += bufs[0].eq(box)
            with m.Else():
                m.d.sync += bufs[1].eq(box)
        with m.Elif(pop & ~push):
            m.d.sync += [count.eq(count - 1), bufs[0].eq(bufs[1])]
        with m.Elif(pop & push):
            with m.If(count == 1):
                m.d.sync += bufs[0].eq(box)
            with m.Else():
                m.d.sync += [bufs[0].eq(bufs[1]), bufs[1].eq(box)]
        with m.If(fire):
            m.d.sync += [hs[0].eq(v)] if hs else []
            m.d.sync += [hs[b].eq(hs[b - 1]) for b in range(1, len(hs))]
            with m.If(f == fn - 1):
                m.d.sync += [f.eq(0), t.eq(Mux(t == tn - 1, 0, t + 1))]
            with m.Else():
                m.d.sync += f.eq(f + 1)
        return m
