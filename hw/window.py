"""Sliding-window unit (line buffer) of a 2-D convolution over streamed time frames.

It turns the stream of a ``[C, T, F]`` tensor (one transfer per position ``(t, f)``, t-major,
f-minor, ``C`` elements of ``ew`` bits) into the stream of its convolution windows (one transfer per
output position ``(t', f')``, t'-major, f'-minor, ``K = C * kt * kf`` elements in window order
``k = (a * kf + b) * C + i`` = channel ``i`` at time ``t' st + a dt - pt`` and frequency
``f' sf + b df - pf``; positions outside the input are ``pad_value``). This is exactly
:func:`kwsbnn.sw.golden.windows`, one inference after another with no separator.

How: the unit walks the padded input plane one position ``(tp, fp)`` per cycle, over the bounding box
of the positions that either take an input (the real ones) or complete a window (bottom-right
corner of a window on the stride grid); padding positions never wait for input, so the windows that
need right or bottom padding come out without waiting for the next inference. At each position it
builds the kernel column: the ``kt`` elements at rows ``tp - a dt`` of the current frequency, from
the input (bottom row) and from the line buffer (the rows above), masked to ``pad_value`` where the
row or column is padding. The column is shifted into a register window of ``(kf - 1) df + 1``
columns; when the position completes a window, that register window is the output payload.

Line buffer: one ``lib.memory.Memory`` (block RAM) of ``F`` words, word ``f`` holding frequency ``f``
of the previous ``R = (kt - 1) dt`` rows (``R * C * ew`` bits; slot ``j`` = row ``tp - 1 - j``); each
real column is read, and written back shifted by one row, one word per cycle. ``buffer_bits =
(kt - 1) dt * F * C * ew`` (none for ``kt = 1``). Registers: ``register_bits = ((kf - 1) df + 1) *
kt * C * ew`` for the window (it is also the output register).

Throughput: one padded position per cycle, so one window per cycle with stride 1 (one per
``st * sf`` positions otherwise) and at most one input per cycle. ``cycles_per_inference`` (never
stalled, inferences back to back) is exactly ``rows * cols`` of the walked bounding box, e.g.
``(T + 1) * (F + 1)`` for a 3x3 kernel, stride 1, padding 1. Latency: a window is valid on the
cycle after the transfer of its last real input (the output is registered); windows that end in
padding follow at one per cycle. While a window waits for ``o.ready`` the unit holds (it takes no
input). The next inference's input is not accepted until the bottom-padding windows of the current
one have been emitted; windows that lie wholly in top padding (padding wider than the kernel reach)
are emitted before the first input of their inference arrives.

Members: ``i : In(stream.Signature(C * ew))``; ``o : Out(stream.Signature(K * ew))``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import int_pair


def _pair(name: str, value, minimum: int) -> tuple[int, int]:
    return int_pair("SlidingWindow", name, value, minimum)


class SlidingWindow(wiring.Component):
    def __init__(self, channels: int, elem_width: int, frames: int, coeffs: int, kernel,
                 stride=(1, 1), dilation=(1, 1), padding=(0, 0), pad_value: int = 0):
        for name, v in (("channels", channels), ("elem_width", elem_width), ("frames", frames),
                        ("coeffs", coeffs)):
            if int(v) != v or v < 1:
                raise ValueError(f"SlidingWindow: {name} must be a positive integer, got {v!r}")
        self._c, self._ew, self._t, self._f = int(channels), int(elem_width), int(frames), int(coeffs)
        self._kt, self._kf = _pair("kernel", kernel, 1)
        self._st, self._sf = _pair("stride", stride, 1)
        self._dt, self._df = _pair("dilation", dilation, 1)
        self._pt, self._pf = _pair("padding", padding, 0)
        for dim, n, k, d, p in (("time", self._t, self._kt, self._dt, self._pt),
                                ("frequency", self._f, self._kf, self._df, self._pf)):
            if (k - 1) * d + 1 > n + 2 * p:
                raise ValueError(f"SlidingWindow: the kernel spans {(k - 1) * d + 1} in {dim} (kernel {k}, "
                                 f"dilation {d}), larger than the padded input {n} + 2*{p} = {n + 2 * p}")
        ew = self._ew
        lo = -(1 << (ew - 1)) if ew > 1 else 0
        if int(pad_value) != pad_value or not lo <= pad_value < (1 << ew):
            raise ValueError(f"SlidingWindow: pad_value {pad_value!r} does not fit {ew} bit(s) "
                             f"(allowed {lo} .. {(1 << ew) - 1})")
        self._pad = int(pad_value) & ((1 << ew) - 1)

        kt, kf, st, sf, dt, df, pt, pf = (self._kt, self._kf, self._st, self._sf,
                                          self._dt, self._df, self._pt, self._pf)
        self._to = (self._t + 2 * pt - dt * (kt - 1) - 1) // st + 1
        self._fo = (self._f + 2 * pf - df * (kf - 1) - 1) // sf + 1
        # Padded coordinates of window corners: the first/last window's bottom row and right column.
        self._r0, self._c0 = (kt - 1) * dt, (kf - 1) * df
        self._r1, self._c1 = self._r0 + (self._to - 1) * st, self._c0 + (self._fo - 1) * sf
        # Walked bounding box: every real position and every window corner.
        self._row_lo, self._row_hi = min(pt, self._r0), max(pt + self._t - 1, self._r1)
        self._col_lo, self._col_hi = min(pf, self._c0), max(pf + self._f - 1, self._c1)
        self._k = self._c * kt * kf
        super().__init__({"i": In(stream.Signature(self._c * ew)),
                          "o": Out(stream.Signature(self._k * ew))})

    # Geometry.
    @property
    def out_frames(self) -> int:
        """``T'``: output positions in time."""
        return self._to

    @property
    def out_coeffs(self) -> int:
        """``F'``: output positions in frequency."""
        return self._fo

    @property
    def window_elems(self) -> int:
        """``K = C * kt * kf``: elements per window (the output carries ``K * ew`` bits)."""
        return self._k

    @property
    def windows_per_inference(self) -> int:
        return self._to * self._fo

    # Cost figures.
    @property
    def buffer_bits(self) -> int:
        """Line-buffer memory bits: ``(kt - 1) * dt`` rows of ``F * C * ew`` bits."""
        return (self._kt - 1) * self._dt * self._f * self._c * self._ew

    @property
    def register_bits(self) -> int:
        """Flip-flops of the register window (which is also the output register)."""
        return ((self._kf - 1) * self._df + 1) * self._kt * self._c * self._ew

    @property
    def cycles_per_inference(self) -> int:
        """Cycles per inference when never stalled (exact): one per walked padded position."""
        return (self._row_hi - self._row_lo + 1) * (self._col_hi - self._col_lo + 1)

    def elaborate(self, platform):
        m = Module()
        c_n, ew, t_n, f_n = self._c, self._ew, self._t, self._f
        kt, kf, st, sf, dt, df, pt, pf = (self._kt, self._kf, self._st, self._sf,
                                          self._dt, self._df, self._pt, self._pf)
        ce = c_n * ew                                  # bits of one position (all channels)
        rr = (kt - 1) * dt                             # rows held in the line buffer
        ll = (kf - 1) * df + 1                         # columns held in the register window
        row_lo, col_lo = self._row_lo, self._col_lo
        nrows, ncols = self._row_hi - row_lo + 1, self._col_hi - col_lo + 1
        pad_chunk = Const(sum(self._pad << (j * ew) for j in range(c_n)), ce)
        pad_col_val = sum(pad_chunk.value << (a * ce) for a in range(kt))

        r = Signal(range(nrows))                       # padded row tp = row_lo + r
        c = Signal(range(ncols))                       # padded column fp = col_lo + c

        def between(sig, base, lo, hi, n):
            """``lo <= base + sig <= hi`` with ``sig`` in ``range(n)``; constant-folded where possible."""
            if lo > base + n - 1 or hi < base or lo > hi:
                return Const(0, 1)
            out = Const(1, 1)
            if lo > base:
                out = out & (sig >= lo - base)
            if hi < base + n - 1:
                out = out & (sig <= hi - base)
            return out

        def row_in(lo, hi):
            return between(r, row_lo, lo, hi, nrows)

        def col_in(lo, hi):
            return between(c, col_lo, lo, hi, ncols)

        # Stride phases: a window corner every st rows / sf columns from the first corner.
        rmod_init, cmod_init = (row_lo - self._r0) % st, (col_lo - self._c0) % sf
        rmod = Signal(range(st), init=rmod_init)
        cmod = Signal(range(sf), init=cmod_init)
        first_col, last_col, last_row = c == 0, c == ncols - 1, r == nrows - 1

        col_real = col_in(pf, pf + f_n - 1)
        real = col_real & row_in(pt, pt + t_n - 1)
        emit = (row_in(self._r0, self._r1) & (rmod == 0)) & (col_in(self._c0, self._c1) & (cmod == 0))

        out_free = ~self.o.valid | self.o.ready
        fire = Signal()
        m.d.comb += [fire.eq(out_free & (~real | self.i.valid)),
                     self.i.ready.eq(real & out_free)]

        # Line buffer: read the current column's word (re-read every cycle, so it is always fresh);
        # on a firing real column, write it back shifted by one row.
        old = []
        if rr:
            m.submodules.lines = lines = memory.Memory(shape=unsigned(rr * ce), depth=f_n, init=[])
            wp = lines.write_port()
            # Same-address read and write on consecutive cycles only when a row is one column long.
            rp = lines.read_port(transparent_for=(wp,) if ncols == 1 else ())
            col_addr = Signal(range(f_n))
            next_addr = Mux(last_col, 0, Mux(col_real & (col_addr != f_n - 1), col_addr + 1, col_addr))
            m.d.comb += rp.addr.eq(Mux(fire, next_addr, col_addr))
            with m.If(fire):
                m.d.sync += col_addr.eq(next_addr)
            old = [rp.data[j * ce:(j + 1) * ce] for j in range(rr)]

        # The kernel column at (tp, fp): element a = row tp - (kt - 1 - a) dt.
        newcol = []
        for a in range(kt):
            d = (kt - 1 - a) * dt
            if d == 0:
                newcol.append(Mux(real, self.i.payload, pad_chunk))
            else:
                newcol.append(Mux(col_real & row_in(pt + d, pt + t_n - 1 + d), old[d - 1], pad_chunk))
        if rr:
            m.d.comb += [wp.addr.eq(col_addr), wp.en.eq(fire & col_real),
                         wp.data.eq(Cat(newcol[kt - 1], *old[:rr - 1]))]

        # Register window: win[j] = column fp - j of the last firing position (padding before col_lo).
        win = [Signal(kt * ce, name=f"win{j}", init=pad_col_val) for j in range(ll)]
        with m.If(fire):
            m.d.sync += win[0].eq(Cat(*newcol))
            for j in range(1, ll):
                m.d.sync += win[j].eq(Mux(first_col, pad_col_val, win[j - 1]))
            m.d.sync += self.o.valid.eq(emit)
            with m.If(last_col):
                m.d.sync += [c.eq(0), cmod.eq(cmod_init)]
                with m.If(last_row):
                    m.d.sync += [r.eq(0), rmod.eq(rmod_init)]
                with m.Else():
                    m.d.sync += [r.eq(r + 1), rmod.eq(Mux(rmod == st - 1, 0, rmod + 1))]
            with m.Else():
                m.d.sync += [c.eq(c + 1), cmod.eq(Mux(cmod == sf - 1, 0, cmod + 1))]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        m.d.comb += self.o.payload.eq(Cat(*(win[(kf - 1 - b) * df][a * ce:(a + 1) * ce]
                                            for a in range(kt) for b in range(kf))))
        return m
