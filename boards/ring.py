"""The board's ring buffer of input frames for streaming (host protocol 2, STREAM frames).

:class:`FrameRing` keeps the last input frames in one block RAM and, on every decision frame of
the :class:`~kwsbnn.boards.protocol.StreamPlan`, replays the window (the last ``frames`` frames,
oldest first, ``frames * coeffs`` transfers) into the network's input stream.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol as proto


class FrameRing(wiring.Component):
    """Ring buffer of ``depth`` transfers (:func:`~kwsbnn.boards.protocol.ring_depth`: a power of
    two, at least one frame more than the window) of ``width`` bits, written by the frames being
    received and read by the replay of a window into the network.

    Computes: transfers of the STREAM frame being received arrive on ``i`` (always ready) and are
    written at the write pointer; ``commit`` (the frame's CRC was good) makes them part of the
    ring; ``abort`` (bad CRC, timeout) forgets them. ``start`` (STREAM_START) empties the ring and
    sets the stride to ``start_stride`` (0: the build's ``stride``). ``due`` is high when the next
    commit is a decision frame: then the window (the last ``frames * coeffs`` transfers written,
    oldest first) goes out on ``o``; a decision that comes while a replay runs waits for it (one
    at most: the host's flow control, :class:`~kwsbnn.boards.protocol.StreamPlan`, allows no more).
    ``busy``: a replay owns ``o``.

    Latency: the first transfer of a window is offered 2 cycles after the commit (or after the
    previous replay's last transfer). Throughput: one transfer per cycle on ``o`` (a synchronous
    block-RAM read port ahead of the output register); one write per cycle on ``i``.

    Members: ``i : In(stream.Signature(width))``, ``commit, abort, start : In(1)``,
    ``start_stride : In(8)``, ``due : Out(1)``, ``o : Out(stream.Signature(width))``,
    ``busy : Out(1)``, ``stride : Out(8)``.
    """

    def __init__(self, *, width: int, frames: int, coeffs: int, stride: int = 1):
        self._w = int(width)
        self._t = int(frames)
        self._f = int(coeffs)
        self._n = int(stride)
        if not 1 <= self._n <= 255:
            raise ValueError(f"stride {stride} must be 1 to 255")
        self._depth = proto.ring_depth(self._t, self._f)
        super().__init__({"i": In(stream.Signature(self._w)), "commit": In(1), "abort": In(1),
                          "start": In(1), "start_stride": In(8), "due": Out(1),
                          "o": Out(stream.Signature(self._w)), "busy": Out(1),
                          "stride": Out(8, init=self._n)})

    @property
    def depth(self) -> int:
        """Transfers the ring holds."""
        return self._depth

    @property
    def window(self) -> int:
        """Transfers of one window (replayed per decision)."""
        return self._t * self._f

    def elaborate(self, platform):
        m = Module()
        depth, window = self._depth, self.window
        aw = (depth - 1).bit_length()
        m.submodules.mem = mem = memory.Memory(shape=self._w, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        head = Signal(aw)               # one past the newest committed transfer
        wp = Signal(aw)                 # one past the last transfer written
        filled = Signal(range(self._t + 1))
        phase = Signal(8)               # commits left until the next decision, once full
        left = Signal(range(window + 1))
        raddr = Signal(aw)
        pending = Signal()
        pend_addr = Signal(aw)

        m.d.comb += [self.i.ready.eq(1), wr.addr.eq(wp), wr.data.eq(self.i.payload),
                     wr.en.eq(self.i.valid)]
        with m.If(self.i.valid):
            m.d.sync += wp.eq(wp + 1)

        m.d.comb += self.due.eq((filled >= self._t - 1) & (phase == 0))
        decide = Signal()
        m.d.comb += decide.eq(self.commit & self.due)
        with m.If(self.start):
            m.d.sync += [filled.eq(0), phase.eq(0),
                         self.stride.eq(Mux(self.start_stride == 0, self._n, self.start_stride))]
        with m.Elif(self.commit):
            m.d.sync += head.eq(wp)
            with m.If(filled != self._t):
                m.d.sync += filled.eq(filled + 1)
            with m.If(filled >= self._t - 1):
                m.d.sync += phase.eq(Mux(phase == 0, self.stride - 1, phase - 1))
        with m.Elif(self.abort):
            m.d.sync += wp.eq(head)

        # Replay: a synchronous read port ahead of the output register.
        m.d.comb += self.busy.eq((left != 0) | self.o.valid)
        can = ~self.o.valid | self.o.ready
        m.d.comb += [rd.addr.eq(raddr), rd.en.eq(can), self.o.payload.eq(rd.data)]
        with m.If(can):
            m.d.sync += self.o.valid.eq(left != 0)
            with m.If(left != 0):
                m.d.sync += [raddr.eq(raddr + 1), left.eq(left - 1)]
        first = (wp - window)[:aw]
        with m.If(pending & ~self.busy):
            m.d.sync += [raddr.eq(pend_addr), left.eq(window), pending.eq(decide)]
            with m.If(decide):
                m.d.sync += pend_addr.eq(first)
        with m.Elif(decide):
            with m.If(self.busy):
                m.d.sync += [pending.eq(1), pend_addr.eq(first)]
            with m.Else():
                m.d.sync += [raddr.eq(first), left.eq(window)]
        return m


class SpramRing(wiring.Component):
    """The ring buffer of :class:`FrameRing` kept in the free words of the layer engine's weight
    memory (the engine style on the iCE40 UP5K: its activation maps need the block RAMs, while the
    weights fill a tenth of the four SPRAMs), one transfer per 64-bit word from word ``base`` on.

    The weight memory has one port, and the engine owns it while an inference runs; the ring gets
    it only while ``sm_grant`` is high (an image is loaded and the engine is idle). So a STREAM
    frame's transfers go first into a staging block RAM of two frame slots (one block RAM for a
    40-byte frame), and a committed frame is copied into the ring when the port is free (one
    transfer per 2 cycles; copies before replay reads). A window is replayed (oldest first, one
    transfer per 2 cycles at most) once every committed frame has been copied; the engine is idle
    all through a replay, since it takes its input only after the previous inference and starts
    only once the whole input has arrived. With the protocol's flow control at most one frame
    arrives while an inference runs, so two slots never overflow.

    Members: as :class:`FrameRing` (``i``, ``commit``, ``abort``, ``start``, ``start_stride``,
    ``due``, ``o``, ``busy``, ``stride``), plus ``idle : Out(1)`` (no replay running or waiting, no
    copy pending) and the weight-memory port ``sm_grant : In(1)``, ``sm_addr : Out(range(words))``,
    ``sm_wdata : Out(64)``, ``sm_we : Out(1)``, ``sm_rdata : In(64)``.
    """

    def __init__(self, *, width: int, frames: int, coeffs: int, stride: int = 1, base: int,
                 words: int):
        self._w = int(width)
        self._t = int(frames)
        self._f = int(coeffs)
        self._n = int(stride)
        if not 1 <= self._n <= 255:
            raise ValueError(f"stride {stride} must be 1 to 255")
        if self._w > 64:
            raise ValueError(f"a ring of {width}-bit transfers does not fit 64-bit words")
        self._depth = proto.ring_depth(self._t, self._f)
        self._base = int(base)
        self._words = int(words)
        if self._base < 0 or self._base + self._depth > self._words:
            raise ValueError(f"a ring of {self._depth} words at {base} exceeds the {words} words")
        self._slot = 1 << max(1, (self._f - 1).bit_length())
        super().__init__({"i": In(stream.Signature(self._w)), "commit": In(1), "abort": In(1),
                          "start": In(1), "start_stride": In(8), "due": Out(1),
                          "o": Out(stream.Signature(self._w)), "busy": Out(1),
                          "stride": Out(8, init=self._n), "idle": Out(1),
                          "sm_grant": In(1), "sm_addr": Out(range(self._words)),
                          "sm_wdata": Out(64), "sm_we": Out(1), "sm_rdata": In(64)})

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def window(self) -> int:
        return self._t * self._f

    @property
    def staging_bits(self) -> int:
        return 2 * self._slot * self._w

    def elaborate(self, platform):
        m = Module()
        depth, window, f = self._depth, self.window, self._f
        aw = (depth - 1).bit_length()
        m.submodules.stage = stage = memory.Memory(shape=self._w, depth=2 * self._slot, init=[])
        sw = stage.write_port()
        sr = stage.read_port()

        # Staging: the frame being received goes into slot `wslot`.
        wslot = Signal()
        wn = Signal(range(self._slot))
        m.d.comb += [self.i.ready.eq(1), sw.addr.eq(Cat(wn, wslot)), sw.data.eq(self.i.payload),
                     sw.en.eq(self.i.valid)]
        with m.If(self.i.valid):
            m.d.sync += wn.eq(wn + 1)

        # Decisions (as FrameRing) and the committed end of the ring.
        tail = Signal(aw)               # one past the newest committed transfer
        filled = Signal(range(self._t + 1))
        phase = Signal(8)
        m.d.comb += self.due.eq((filled >= self._t - 1) & (phase == 0))
        decide = Signal()
        m.d.comb += decide.eq(self.commit & self.due)
        npend = Signal(range(3))        # committed frames not yet copied
        copy_last = Signal()
        with m.If(self.start):
            m.d.sync += [filled.eq(0), phase.eq(0),
                         self.stride.eq(Mux(self.start_stride == 0, self._n, self.start_stride))]
        with m.Elif(self.commit):
            m.d.sync += [tail.eq(tail + f), wslot.eq(~wslot), wn.eq(0)]
            with m.If(filled != self._t):
                m.d.sync += filled.eq(filled + 1)
            with m.If(filled >= self._t - 1):
                m.d.sync += phase.eq(Mux(phase == 0, self.stride - 1, phase - 1))
        with m.Elif(self.abort):
            m.d.sync += wn.eq(0)
        inc = self.commit & ~self.start
        with m.If(inc & ~copy_last & (npend != 2)):
            m.d.sync += npend.eq(npend + 1)
        with m.Elif(copy_last & ~inc):
            m.d.sync += npend.eq(npend - 1)

        # The one write register in front of the weight memory, and the copier that fills it.
        wvalid = Signal()
        wdata = Signal(self._w)
        waddr = Signal(aw)
        cdst = Signal(aw)
        cslot = Signal()
        ci = Signal(range(max(2, f)))
        crd = Signal()                  # a staging read issued last cycle
        wgo = wvalid & self.sm_grant
        copy = (npend != 0) & ~crd & (~wvalid | wgo)
        m.d.comb += [sr.addr.eq(Cat(ci, cslot)), sr.en.eq(copy), copy_last.eq(copy & (ci == f - 1))]
        m.d.sync += crd.eq(copy)
        with m.If(copy):
            with m.If(ci == f - 1):
                m.d.sync += [ci.eq(0), cslot.eq(~cslot)]
            with m.Else():
                m.d.sync += ci.eq(ci + 1)
        with m.If(crd):
            m.d.sync += [wvalid.eq(1), wdata.eq(sr.data), waddr.eq(cdst), cdst.eq(cdst + 1)]
        with m.Elif(wgo):
            m.d.sync += wvalid.eq(0)

        # Replay: one read in flight, into the output register.
        left = Signal(range(window + 1))
        raddr = Signal(aw)
        rinfl = Signal()
        pending = Signal()
        pend_first = Signal(aw)
        copied = (npend == 0) & ~crd & ~wvalid
        rgo = (left != 0) & self.sm_grant & ~wvalid & ~rinfl & (~self.o.valid | self.o.ready)
        m.d.sync += rinfl.eq(rgo)
        with m.If(rgo):
            m.d.sync += [raddr.eq(raddr + 1), left.eq(left - 1)]
        with m.If(rinfl):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(self.sm_rdata[:self._w])]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += [self.sm_we.eq(wgo),
                     self.sm_addr.eq(self._base + Mux(wgo, waddr, raddr)),
                     self.sm_wdata.eq(wdata),
                     self.busy.eq((left != 0) | rinfl | self.o.valid),
                     self.idle.eq(~self.busy & ~pending & copied & (npend == 0))]
        with m.If(pending & (left == 0) & ~rinfl & ~self.o.valid & copied):
            m.d.sync += [raddr.eq(pend_first), left.eq(window), pending.eq(0)]
        with m.If(decide):
            m.d.sync += [pending.eq(1), pend_first.eq((tail + f - window)[:aw])]
        return m
