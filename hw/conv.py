"""Fused, memory-lean binary convolution: a line buffer in block RAM read straight by an XNOR-popcount
core (no window register, no shortcut FIFO). For the slow foldings, where a window is consumed over
many cycles anyway.

It computes exactly :meth:`kwsbnn.sw.golden.GoldenModel._conv` for a ``bin`` x ``bin`` layer with
``out: bits`` and no pooling (docs/integer-network.md): padding with ``pad_bit``, stride, dilation,
window order ``k = (a * kf + b) * C + i``, per-channel threshold and direction, and with
``shortcut=True`` the threshold chosen by the layer's input bit of the same channel at the same
position.

Streams: ``i : In(stream.Signature(C))``, one transfer per input position ``(t, f)``, t-major,
f-minor, ``T * F`` per inference, bit ``c`` = channel ``c``, inferences back to back with no separator;
``o : Out(stream.Signature(C_out))``, one transfer per output position ``(t', f')``, t'-major, bit ``c``
= output channel ``c``. With ``out="count"`` (a layer with 8-bit outputs, followed by
:class:`~kwsbnn.hw.requant.Requantize`) there are no thresholds: one output transfer per fold,
``C_out / pe`` per position, holding the ``pe`` channels' mismatch counts ``d`` (``acc = K - 2 d``),
lane ``p`` (channel ``nf * pe + p``) at bits ``[p * w, (p + 1) * w)`` with ``w`` =
:attr:`count_width`: the channel-group order of the matrix-vector unit's accumulators.

Line buffer: one ``lib.memory.Memory`` of ``C``-bit words, a ring of ``R`` rows (row ``g`` of the input
stream, counted across inferences, lives in slot ``g mod R``; address = (slot, column), the column
field rounded up to a power of two; one more word, never written, holds the pad bits, see
:attr:`buffer_bits`). The writer stores each input as it arrives; the reader walks the output
positions and, for each, reads the window one SIMD chunk per cycle from the ring (positions in the
padding are never read: they read the pad word instead). One signed counter ``D`` = rows completely
written minus the first row still needed by the reader's current output row keeps them apart: the
writer takes an input only while ``D < R`` (the slot it writes holds no row still needed), the reader
starts an output row only when every row it needs is complete (``D >= need - base + 1``; rows in the
bottom padding are clipped, so the last windows never wait for the next inference). ``R = max(span +
st, T - base_last + need_first + 1)`` with ``span = (kt - 1) dt + 1``: the rows of a window plus the
rows being written for the next output row (plus, for a "valid" convolution, the rows the next
inference's first windows need, so that back-to-back inferences never wait).

Core: per output position, for each neuron fold ``nf`` (``pe`` output channels in parallel) and each
SIMD fold ``sf = (a * kf + b) * (C / simd) + j`` (``simd`` divides ``C``, so a chunk lies within one
kernel position): read line-buffer word and weight-ROM word ``nf * SF + sf`` (``pe * simd`` bits,
lane ``p`` bit ``j`` = ``w[nf*pe + p, sf*simd + j]``, like :class:`kwsbnn.hw.mvu.MatrixVectorUnit`),
count mismatches ``d += popcount(x ^ w)`` per lane (``acc = K - 2 d``), then compare once per fold:
``y = (d < v) ^ inv`` with ``v``, ``inv`` derived from threshold and direction (direction +1:
``v = floor((K - thr) / 2) + 1``; -1: ``v = ceil((K - thr) / 2)``, inverted; clamped to ``0 .. K + 1``),
``v`` chosen by the shortcut bit. The thresholds are constants in logic (``C_out/pe`` words), or with
``threshold_rom=True`` a ROM read once per fold (one more block RAM, fewer LUTs; with ``pe = 1`` and a
shortcut it is addressed by (fold, shortcut bit), one ``1 + bits_for(K + 1)``-bit word each).
Each fold captures its ``pe`` shortcut bits (input channels ``nf*pe + p`` at ``(t, f)``, the kernel's
centre tap, which every fold reads anyway) into a ``pe``-bit register as the tap's chunk goes by.

Timing: 3-stage pipeline (issue addresses -> memory data, XNOR-popcount-accumulate -> threshold and
shift the ``pe`` bits into the output register, which collects the position). When never stalled and
never starved, one output position every ``P = NF * SF + max(0, 4 - SF)`` cycles (``NF = C_out / pe``,
``SF = K / simd``; the first fold's last read of a position may issue only when the output register is
free and no finished position is in flight, i.e. 4 cycles after the previous position's last read),
so ``cycles_per_inference = T' * F' * P`` exactly in steady state, provided the input keeps up
(:attr:`compute_bound`); otherwise it is a lower bound. Latency: the output is valid 3 cycles after
the last read of its window is issued. No combinational path from ``o.ready`` or ``i.valid`` to the
other handshake signals.

Resources (C = C_out = 32, 25 x 13, 3x3 pad 1, shortcut, pe = 1, simd = 32, Yosys ``synth_ice40``):
6 block RAMs (line buffer 2, weights 4), about 345 LUT4 and 130 flip-flops; with ``threshold_rom`` 7
block RAMs and about 290 LUT4.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import bits_for, int_pair, popcount, signed_width


def _pair(name: str, value, minimum: int) -> tuple[int, int]:
    return int_pair("StreamedConv", name, value, minimum)


class StreamedConv(wiring.Component):
    def __init__(self, weights, direction, threshold, *, channels: int, frames: int, coeffs: int,
                 kernel, stride=(1, 1), dilation=(1, 1), padding=(0, 0), pad_bit: int = 0,
                 shortcut: bool = False, pe: int = 1, simd: int | None = None,
                 threshold_rom: bool = False, out: str = "bits", name: str = "conv"):
        self._name = name
        if out not in ("bits", "count"):
            raise ValueError(f"{name}: out must be 'bits' or 'count', got {out!r}")
        self._out = out
        for key, v in (("channels", channels), ("frames", frames), ("coeffs", coeffs)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name}: {key} must be a positive integer, got {v!r}")
        self._c, self._t, self._f = int(channels), int(frames), int(coeffs)
        self._kt, self._kf = _pair("kernel", kernel, 1)
        self._st, self._sf = _pair("stride", stride, 1)
        self._dt, self._df = _pair("dilation", dilation, 1)
        self._pt, self._pf = _pair("padding", padding, 0)
        if pad_bit not in (0, 1):
            raise ValueError(f"{name}: pad_bit must be 0 or 1, got {pad_bit!r}")
        self._pad = int(pad_bit)
        for dim, n, k, d, p in (("time", self._t, self._kt, self._dt, self._pt),
                                ("frequency", self._f, self._kf, self._df, self._pf)):
            if (k - 1) * d + 1 > n + 2 * p:
                raise ValueError(f"{name}: the kernel spans {(k - 1) * d + 1} in {dim} (kernel {k}, "
                                 f"dilation {d}), larger than the padded input {n} + 2*{p} = {n + 2 * p}")
        self._k = self._c * self._kt * self._kf
        weights = np.asarray(weights, dtype=np.int64)
        if weights.ndim != 2 or weights.shape[1] != self._k:
            raise ValueError(f"{name}: weights must be [C_out, K] with K = C*kt*kf = {self._k}, "
                             f"got shape {list(weights.shape)}")
        if weights.size and (weights.min() < 0 or weights.max() > 1):
            raise ValueError(f"{name}: weights must be bits (0/1)")
        self._co = weights.shape[0]
        self._pe = int(pe)
        self._simd = int(simd or self._c)
        if self._pe < 1 or self._co % self._pe:
            raise ValueError(f"{name}: pe={pe} must divide the {self._co} output channels")
        if self._simd < 1 or self._c % self._simd:
            raise ValueError(f"{name}: simd={self._simd} must divide the {self._c} input channels "
                             f"(a SIMD chunk lies within one kernel position)")
        kt, kf, st, sf, dt, df, pt, pf = (self._kt, self._kf, self._st, self._sf,
                                          self._dt, self._df, self._pt, self._pf)
        self._to = (self._t + 2 * pt - dt * (kt - 1) - 1) // st + 1
        self._fo = (self._f + 2 * pf - df * (kf - 1) - 1) // sf + 1
        self._shortcut = bool(shortcut)
        if self._shortcut:
            if self._co != self._c:
                raise ValueError(f"{name}: a shortcut needs as many output as input channels "
                                 f"({self._co} != {self._c})")
            if (st, sf) != (1, 1):
                raise ValueError(f"{name}: a shortcut needs stride 1, got ({st}, {sf})")
            if (self._to, self._fo) != (self._t, self._f):
                raise ValueError(f"{name}: a shortcut needs the 'same' output size, got "
                                 f"({self._to}, {self._fo}) from ({self._t}, {self._f})")
            if pt % dt or pf % df:
                raise ValueError(f"{name}: a shortcut needs the input position on a kernel tap "
                                 f"(odd kernel), got kernel ({kt}, {kf})")
        self._s = 2 if self._shortcut else 1
        direction = np.asarray(direction).astype(np.int64).reshape(self._co)
        threshold = np.asarray(threshold).astype(np.int64).reshape(self._co, self._s)
        if not np.all(np.isin(direction, (-1, 1))):
            raise ValueError(f"{name}: direction must be +1 or -1 per channel")

        self._nf, self._cs = self._co // self._pe, self._c // self._simd
        self._sfn = kt * kf * self._cs
        # Ring of R rows.
        self._span = (kt - 1) * dt + 1
        base_last = min(max((self._to - 1) * st - pt, 0), self._t)
        need_first = min(-pt + self._span - 1, self._t - 1)
        self._r = max(self._span + st, self._t - base_last + need_first + 1)

        # Weight ROM: word nf*SF + sf, lane p bits p*SIMD + j = w[nf*PE + p, sf*SIMD + j].
        self._winit = []
        for nfi in range(self._nf):
            for sfi in range(self._sfn):
                word = 0
                for p in range(self._pe):
                    row = weights[nfi * self._pe + p, sfi * self._simd:(sfi + 1) * self._simd]
                    for j, b in enumerate(row):
                        word |= int(b) << (p * self._simd + j)
                self._winit.append(word)
        # Thresholds as mismatch-count bounds: y = (d < v[s]) ^ inv.
        k = self._k
        self._vw = bits_for(k + 1)
        self._lane = 1 + self._s * self._vw
        self._tinit = []
        for nfi in range(self._nf):
            word = 0
            for p in range(self._pe):
                c = nfi * self._pe + p
                inv = 0 if direction[c] > 0 else 1
                field = inv
                for s in range(self._s):
                    t = int(threshold[c, s])
                    v = (k - t) // 2 + 1 if not inv else -((t - k) // 2)
                    field |= min(max(v, 0), k + 1) << (1 + s * self._vw)
                word |= field << (p * self._lane)
            self._tinit.append(word)
        self._trom = bool(threshold_rom)
        # A ROM with one lane per fold and a shortcut is addressed by (fold, shortcut bit): one bound.
        self._trom_by_sc = self._trom and self._shortcut and self._pe == 1
        if self._trom_by_sc:
            self._trom_init = []
            for word in self._tinit:
                for s_ in range(2):
                    bound = (word >> (1 + s_ * self._vw)) & ((1 << self._vw) - 1)
                    self._trom_init.append((word & 1) | (bound << 1))
        if out == "count" and (self._shortcut or self._trom):
            raise ValueError(f"{name}: a count output has no thresholds (no shortcut, no threshold ROM)")
        #: Bits per output channel: 1, or for counts ``bits_for(K) + 1`` (a zero-extended count).
        self._ow = 1 if out == "bits" else bits_for(k) + 1
        out_width = self._co if out == "bits" else self._pe * self._ow
        super().__init__({"i": In(stream.Signature(self._c)), "o": Out(stream.Signature(out_width))})

    @property
    def count_width(self) -> int:
        """Width of one channel's count in the output (``out="count"``), zero-extended: it reads
        the same as a signed value."""
        return self._ow

    # Geometry.
    @property
    def out_frames(self) -> int:
        return self._to

    @property
    def out_coeffs(self) -> int:
        return self._fo

    @property
    def window_elems(self) -> int:
        return self._k

    @property
    def ring_rows(self) -> int:
        """``R``: rows in the line-buffer ring."""
        return self._r

    # Cost figures.
    @property
    def cycles_per_position(self) -> int:
        """``P = NF * SF + max(0, 4 - SF)`` cycles per output position when never stalled, with
        ``NF = C_out / pe``, ``SF = K / simd``; with count outputs (one per fold) ``NF * max(SF, 4)``,
        when each output is taken within ``SF - 3`` cycles."""
        if self._out == "count":
            return self._nf * max(self._sfn, 4)
        return self._nf * self._sfn + max(0, 4 - self._sfn)

    @property
    def cycles_per_inference(self) -> int:
        """``T' * F' * P``: exact in steady state (back to back, never stalled) when
        :attr:`compute_bound`; otherwise a lower bound (the input, one position per cycle, limits)."""
        return self._to * self._fo * self.cycles_per_position

    @property
    def compute_bound(self) -> bool:
        """The core, not the input, sets the pace: every output row's ``F' * P`` cycles cover the
        ``st * F`` input cycles of the rows it advances by, and an inference's cycles cover ``T * F``
        (then :attr:`cycles_per_inference` is exact)."""
        p = self.cycles_per_position
        return (self._fo * p >= self._st * self._f + self._f
                and self.cycles_per_inference >= self._t * self._f + self._r * self._f)

    def _layout(self):
        """Line-buffer address bits of the column, depth, address of the pad word."""
        fw = (self._f - 1).bit_length()
        if self._f < (1 << fw):
            return fw, (self._r - 1) * (1 << fw) + self._f, self._f     # pad word: slot 0, column F
        return fw, self._r * (1 << fw) + 1, self._r * (1 << fw)

    @property
    def buffer_bits(self) -> int:
        """Line-buffer memory bits: ``depth * C`` with the address = (ring slot, column), columns
        rounded up to a power of two, and one word of pad bits (slot 0, column ``F``):
        ``((R - 1) * 2^ceil(log2 F) + F) * C``, or ``(R * F + 1) * C`` when ``F`` is a power of two.
        Block RAM cost: ``ceil(C / 16)`` RAMs while the depth is at most 256."""
        return self._layout()[1] * self._c

    @property
    def weight_bits(self) -> int:
        return self._co * self._k

    @property
    def threshold_bits(self) -> int:
        """Threshold bits (constants in logic, or a ROM with ``threshold_rom``): per output channel
        an inversion bit and ``S`` bounds of ``bits_for(K + 1)`` bits (with ``pe = 1`` and a
        shortcut the ROM holds the inversion bit twice: ``2 * C_out * (1 + bits_for(K + 1))``)."""
        if self._trom_by_sc:
            return 2 * self._co * (1 + self._vw)
        return self._co * self._lane

    @property
    def register_bits(self) -> int:
        """Window register bits: none (the window is read from the line buffer)."""
        return 0

    def elaborate(self, platform):
        m = Module()
        c_n, t_n, f_n = self._c, self._t, self._f
        kt, kf, st, sf, dt, df, pt, pf = (self._kt, self._kf, self._st, self._sf,
                                          self._dt, self._df, self._pt, self._pf)
        pe, simd, nf_n, sf_n, cs = self._pe, self._simd, self._nf, self._sfn, self._cs
        rr, span, k = self._r, self._span, self._k
        fw, depth, pad_addr = self._layout()
        to_n, fo_n = self._to, self._fo

        def modadd(x, c):
            """``(x + c) mod R`` for ``x`` in ``range(R)``, constant ``c``."""
            c %= rr
            if c == 0:
                return x
            return Mux(x >= rr - c, x - (rr - c), x + c)

        # Line buffer.
        # Address = (slot, column) concatenated; one word (never written) holds the pad bits: padding
        # taps read it, so the datapath has no pad multiplexer.
        pad_word = (1 << c_n) - 1 if self._pad else 0
        init = [0] * depth
        init[pad_addr] = pad_word
        # A row is never read while it is written (and the pad word never written): no read-during-
        # write bypass is needed (``no_rw_check`` spares Yosys' emulation of one).
        m.submodules.lines = lines = memory.Memory(shape=unsigned(c_n), depth=depth, init=init,
                                                   attrs={"no_rw_check": 1})
        wp = lines.write_port()
        rp = lines.read_port()
        m.submodules.wrom = wrom = memory.Memory(shape=unsigned(pe * simd), depth=nf_n * sf_n,
                                                  init=self._winit)
        wrp = wrom.read_port()

        # Row bookkeeping: D = rows completely written - first row needed by the current output row.
        dmin = -(2 * t_n + 2 * rr + 4)
        d_rows = Signal(signed(signed_width(dmin, rr + 2)))
        row_done = Signal()
        rows_freed = Signal(range(t_n + rr + 1))

        # Writer.
        wslot = Signal(range(rr))
        wcol = Signal(range(f_n))
        m.d.comb += self.i.ready.eq(d_rows < rr)
        wfire = self.i.valid & self.i.ready
        m.d.comb += [wp.addr.eq(Cat(wcol[:fw], wslot)), wp.data.eq(self.i.payload), wp.en.eq(wfire)]
        with m.If(wfire):
            m.d.sync += wcol.eq(Mux(wcol == f_n - 1, 0, wcol + 1))
            with m.If(wcol == f_n - 1):
                m.d.sync += wslot.eq(Mux(wslot == rr - 1, 0, wslot + 1))
                m.d.comb += row_done.eq(1)
        m.d.sync += d_rows.eq(d_rows + row_done - rows_freed)

        # Reader position: output row lo = t' st - pt (signed), column fcol = f' sf - pf.
        lo_w = signed_width(-pt - 1, (to_n - 1) * st - pt + st + 1)
        lo = Signal(signed(lo_w), init=-pt)
        ot = Signal(range(to_n))
        of = Signal(range(fo_n))
        fcol = Signal(signed(signed_width(-pf - 1, (fo_n - 1) * sf - pf + sf + 1)), init=-pf)
        slot0 = Signal(range(rr))                     # ring slot of row 0 of the current inference
        rtop = Signal(range(rr), init=-pt % rr)       # ring slot of row lo
        # Window walk within a position.
        nf = Signal(range(nf_n))
        a = Signal(range(kt))
        b = Signal(range(kf))
        j = Signal(range(cs))
        row = Signal(signed(signed_width(-pt - 1, t_n + pt + st + 1)), init=-pt)
        col = Signal(signed(signed_width(-pf - 1, f_n + pf + sf + 1)), init=-pf)
        rslot = Signal(range(rr), init=-pt % rr)      # ring slot of row `row`
        waddr_rom = Signal(range(nf_n * sf_n))

        # Per output row t': rows it needs beyond its first (req) and rows released when it is done
        # (freed), as constant tables.
        def base_of(t):
            return min(max(t * st - pt, 0), t_n)
        req_tab = [min(t * st - pt + span - 1, t_n - 1) - base_of(t) + 1 for t in range(to_n)]
        freed_tab = [base_of(t + 1) - base_of(t) for t in range(to_n - 1)] + [t_n - base_of(to_n - 1)]

        def table(values, index):
            lo_, hi_ = min(values), max(values)
            shape = signed(signed_width(lo_, hi_)) if lo_ < 0 else unsigned(bits_for(hi_))
            if lo_ == hi_:
                return Const(lo_, shape)
            if list(values) == list(range(len(values))):
                return index
            return Array(Const(v, shape) for v in values)[index]
        row_ok = d_rows >= table(req_tab, ot)

        last_j, last_b, last_a = j == cs - 1, b == kf - 1, a == kt - 1
        last_sf = last_j & last_b & last_a
        first_sf = (j == 0) & (b == 0) & (a == 0)
        fin = last_sf & (nf == nf_n - 1)
        real = (row >= 0) & (row < t_n) & (col >= 0) & (col < f_n)

        # Pipeline stage flags.
        b_valid, b_first, b_last, b_fin = Signal(), Signal(), Signal(), Signal()
        b_j = Signal(range(cs))
        b_nf = Signal(range(nf_n))
        c_valid, c_fin = Signal(), Signal()
        c_nf = Signal(range(nf_n))

        # The output register collects the bits of a position: the first fold's last read may issue
        # only when it is free and no finished position is in flight.
        issue = Signal()
        if self._out == "count":
            # One output per fold: every fold's last read waits for a free output register.
            out_ok = ~self.o.valid & ~(b_valid & b_last) & ~c_valid
            m.d.comb += issue.eq(row_ok & (~last_sf | out_ok))
        else:
            out_ok = ~self.o.valid & ~(b_valid & b_fin) & ~(c_valid & c_fin)
            m.d.comb += issue.eq(row_ok & (~(last_sf & (nf == 0)) | out_ok))
        m.d.comb += [rp.addr.eq(Mux(real, Cat(col[:fw], rslot), pad_addr)), wrp.addr.eq(waddr_rom)]
        # Shortcut: lane p of fold nf needs channel ch = nf*pe + p of the input at (t, f), the centre
        # tap (a0, b0): chunk ch // simd, bit ch % simd, captured when this fold reads it.
        b_cap = Signal(pe)
        if self._shortcut:
            a0, b0 = pt // dt, pf // df
            at_tap = (a == a0) & (b == b0)
            for p in range(pe):
                jj = table([(n * pe + p) // simd for n in range(nf_n)], nf)
                m.d.sync += b_cap[p].eq(issue & at_tap & (j == jj))
        m.d.sync += [b_valid.eq(issue), b_first.eq(first_sf), b_last.eq(last_sf), b_fin.eq(fin),
                     b_j.eq(j), b_nf.eq(nf)]

        # Counter updates on issue.
        with m.If(issue):
            m.d.sync += waddr_rom.eq(Mux(fin, 0, waddr_rom + 1))
            with m.If(~last_j):
                m.d.sync += j.eq(j + 1)
            with m.Else():
                m.d.sync += j.eq(0)
                with m.If(~last_b):
                    m.d.sync += [b.eq(b + 1), col.eq(col + df)]
                with m.Else():
                    m.d.sync += [b.eq(0), col.eq(fcol)]
                    with m.If(~last_a):
                        m.d.sync += [a.eq(a + 1), row.eq(row + dt), rslot.eq(modadd(rslot, dt))]
                    with m.Else():
                        m.d.sync += [a.eq(0), row.eq(lo), rslot.eq(rtop)]
                        with m.If(nf != nf_n - 1):
                            m.d.sync += nf.eq(nf + 1)
                        with m.Else():
                            m.d.sync += nf.eq(0)
                            # Next output position.
                            with m.If(of != fo_n - 1):
                                m.d.sync += [of.eq(of + 1), fcol.eq(fcol + sf), col.eq(fcol + sf)]
                            with m.Else():
                                m.d.sync += [of.eq(0), fcol.eq(-pf), col.eq(-pf)]
                                with m.If(ot != to_n - 1):
                                    nlo = lo + st
                                    nrtop = modadd(rtop, st)
                                    m.d.sync += [ot.eq(ot + 1), lo.eq(nlo), row.eq(nlo),
                                                 rtop.eq(nrtop), rslot.eq(nrtop)]
                                with m.Else():
                                    ns0 = modadd(slot0, t_n)
                                    nrtop = modadd(slot0, t_n - pt)
                                    m.d.sync += [ot.eq(0), lo.eq(-pt), row.eq(-pt), slot0.eq(ns0),
                                                 rtop.eq(nrtop), rslot.eq(nrtop)]
                                m.d.comb += rows_freed.eq(table(freed_tab, ot))

        # Stage B: memory data -> chunk (pad substituted), mismatches per lane, accumulate.
        chunk = Signal(simd)
        m.d.comb += chunk.eq(rp.data.word_select(b_j, simd) if cs > 1 else rp.data)
        x = chunk
        aw = bits_for(k)
        acc = [Signal(aw, name=f"acc{p}") for p in range(pe)]
        for p in range(pe):
            wl = wrp.data[p * simd:(p + 1) * simd]
            part = popcount(x ^ wl)
            with m.If(b_valid):
                m.d.sync += acc[p].eq(Mux(b_first, part, acc[p] + part))
        scb = Signal(pe)
        if self._shortcut:
            for p in range(pe):
                ll = table([(n * pe + p) % simd for n in range(nf_n)], b_nf)
                with m.If(b_cap[p]):
                    m.d.sync += scb[p].eq(chunk.bit_select(ll, 1) if simd > 1 else chunk)
        m.d.sync += [c_valid.eq(b_valid & b_last), c_fin.eq(b_valid & b_fin), c_nf.eq(b_nf)]

        # Stage C: thresholds (constants in logic, or a ROM read in stage B), collect, output register.
        lane, vw = self._lane, self._vw
        twidth = pe * lane
        bits = Signal(pe)
        if self._trom_by_sc:
            m.submodules.trom = trom = memory.Memory(shape=unsigned(1 + vw), depth=2 * nf_n,
                                                      init=self._trom_init, attrs={"ram_style": "block"})
            trp = trom.read_port()
            # The fold's shortcut bit, straight from the chunk when it is captured this very cycle.
            ll = table([n % simd for n in range(nf_n)], b_nf)
            sc_now = Mux(b_cap[0], chunk.bit_select(ll, 1) if simd > 1 else chunk, scb[0])
            m.d.comb += [trp.addr.eq(Cat(sc_now, b_nf)),
                         bits[0].eq((acc[0] < trp.data[1:]) ^ trp.data[0])]
        else:
            if self._trom:
                m.submodules.trom = trom = memory.Memory(shape=unsigned(twidth), depth=nf_n,
                                                          init=self._tinit, attrs={"ram_style": "block"})
                trp = trom.read_port()
                m.d.comb += trp.addr.eq(b_nf)
                tword = trp.data
            elif nf_n > 1:
                tword = Array(Const(w, twidth) for w in self._tinit)[c_nf]
            else:
                tword = Const(self._tinit[0], twidth)
            for p in range(pe):
                fld = tword[p * lane:(p + 1) * lane]
                v = fld[1:1 + vw]
                if self._shortcut:
                    v = Mux(scb[p], fld[1 + vw:1 + 2 * vw], v)
                m.d.comb += bits[p].eq((acc[p] < v) ^ fld[0])
        # Collect in the output register itself (free from the first fold's result on): shift in.
        if self._out == "count":
            ow = self._ow
            with m.If(c_valid):
                m.d.sync += [self.o.payload.eq(Cat(*(Cat(acc[p], Const(0, ow - aw)) for p in range(pe)))),
                             self.o.valid.eq(1)]
            with m.Elif(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            return m
        with m.If(c_valid):
            m.d.sync += self.o.payload.eq(Cat(self.o.payload, bits)[pe:] if nf_n > 1 else bits)
        with m.If(c_fin):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
