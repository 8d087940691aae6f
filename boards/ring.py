"""The board's ring buffer of input frames for streaming (host protocol 2, STREAM frames).

:class:`FrameRing` keeps the last input frames in one block RAM and, on every decision frame of
the :class:`~kwsbnn.boards.protocol.StreamPlan`, replays the window (the last ``frames`` frames,
oldest first, ``frames * coeffs`` transfers) into the network's input stream.
"""

from amaranth.hdl import Module, Mux, Signal
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
