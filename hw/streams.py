"""Small ``lib.stream`` utilities for the network generator: broadcast, FIFO and join (zip).

All follow the Amaranth stream rules: a producer asserts ``valid`` without waiting for ``ready`` and
holds ``payload`` while ``valid`` and not ``ready``; ``ready`` may depend on ``valid``.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out


class Broadcast(wiring.Component):
    """One input stream copied to ``n`` output streams; every output sees every transfer, in order.

    Each output has its own ``valid`` flag over one shared payload register, so a slow consumer
    only delays the next input transfer, never the other outputs' current one: the input is accepted
    when every output is empty or being drained this cycle
    (``i.ready = AND_k (~o[k].valid | o[k].ready)``, a combinational path from the ``o[k].ready``).

    Throughput: one transfer per cycle while all consumers are ready. Latency: 1 cycle from the input
    transfer to the outputs being valid. Storage: ``width + n`` flip-flops.

    Members: ``i : In(stream.Signature(width))``; ``o : Out(stream.Signature(width)).array(n)``
    (``o[k]`` is output ``k``).
    """

    def __init__(self, width: int, n: int):
        if n < 1:
            raise ValueError("Broadcast needs at least one output")
        self._width, self._n = int(width), int(n)
        super().__init__({"i": In(stream.Signature(self._width)),
                          "o": Out(stream.Signature(self._width)).array(self._n)})

    @property
    def latency(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()
        data = Signal(self._width)
        free = [~o.valid | o.ready for o in self.o]
        m.d.comb += self.i.ready.eq(Cat(*free).all())
        take = self.i.valid & self.i.ready
        with m.If(take):
            m.d.sync += data.eq(self.i.payload)
        for o in self.o:
            m.d.comb += o.payload.eq(data)
            with m.If(take):
                m.d.sync += o.valid.eq(1)
            with m.Elif(o.ready):
                m.d.sync += o.valid.eq(0)
        return m


class StreamFIFO(wiring.Component):
    """A first-in first-out queue of ``width``-bit transfers: ``depth`` = how many it can hold.

    Wraps ``amaranth.lib.fifo.SyncFIFOBuffered`` (block-RAM friendly: synchronous read, a registered
    output). Used to delay the shortcut stream of a residual join until the matching window arrives.

    Throughput: one transfer per cycle for ``depth >= 3``; ``depth == 2`` sustains one transfer every
    other cycle when the queue runs with one entry in it and ``depth == 1`` one every other cycle.
    Latency: 1 cycle (``depth == 1``) or 2 cycles (``depth >= 2``) from the input transfer to the
    output being valid when the queue is empty.

    Members: ``i : In(stream.Signature(width))``; ``o : Out(stream.Signature(width))``;
    ``level : Out(range(depth + 1))`` the number of transfers held.
    """

    def __init__(self, width: int, depth: int):
        if depth < 1:
            raise ValueError("StreamFIFO depth must be at least 1")
        self._width, self._depth = int(width), int(depth)
        super().__init__({"i": In(stream.Signature(self._width)),
                          "o": Out(stream.Signature(self._width)),
                          "level": Out(range(self._depth + 1))})

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def latency(self) -> int:
        return 1 if self._depth == 1 else 2

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=self._width, depth=self._depth)
        wiring.connect(m, wiring.flipped(self.i), q.w_stream)
        wiring.connect(m, q.r_stream, wiring.flipped(self.o))
        m.d.comb += self.level.eq(q.level)
        return m


class Join2(wiring.Component):
    """Zip two streams: one output transfer ``Cat(a.payload, b.payload)`` per pair of input transfers.

    The output is valid when both inputs are valid and then takes one transfer from each
    (``a.ready = o.ready & b.valid``, ``b.ready = o.ready & a.valid``). Combinational: zero latency, no
    storage; throughput one pair per cycle. Used to pair each window with the shortcut bits of the same
    position; ``a``'s payload is the low ``w1`` bits of the output.

    Members: ``a : In(stream.Signature(w1))``; ``b : In(stream.Signature(w2))``;
    ``o : Out(stream.Signature(w1 + w2))``.
    """

    def __init__(self, w1: int, w2: int):
        self._w1, self._w2 = int(w1), int(w2)
        super().__init__({"a": In(stream.Signature(self._w1)),
                          "b": In(stream.Signature(self._w2)),
                          "o": Out(stream.Signature(self._w1 + self._w2))})

    @property
    def latency(self) -> int:
        return 0

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.o.payload.eq(Cat(self.a.payload, self.b.payload)),
            self.o.valid.eq(self.a.valid & self.b.valid),
            self.a.ready.eq(self.o.ready & self.b.valid),
            self.b.ready.eq(self.o.ready & self.a.valid),
        ]
        return m


Zip = Join2


class Gather(wiring.Component):
    """Collect ``n`` consecutive transfers of ``width`` bits into one of ``n * width`` bits (the first
    transfer in the low bits). Used to turn the matrix-vector unit's per-fold accumulators into
    whole vectors for the all-channel pooling unit.

    Throughput: one input transfer per cycle; the output holds while not ready (the input then
    waits). Latency: 1 cycle after the ``n``-th input transfer.

    Members: ``i : In(stream.Signature(width))``; ``o : Out(stream.Signature(n * width))``.
    """

    def __init__(self, width: int, n: int):
        self._width, self._n = int(width), int(n)
        if self._width < 1 or self._n < 1:
            raise ValueError("Gather needs a positive width and count")
        super().__init__({"i": In(stream.Signature(self._width)),
                          "o": Out(stream.Signature(self._width * self._n))})

    def elaborate(self, platform):
        m = Module()
        if self._n == 1:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
        count = Signal(range(self._n))
        buf = Signal(self._width * self._n)
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready), self.o.payload.eq(buf)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += buf.word_select(count, self._width).eq(self.i.payload)
            with m.If(count == self._n - 1):
                m.d.sync += [count.eq(0), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m
