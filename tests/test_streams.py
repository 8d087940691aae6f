# amaranth: UnusedElaboratable=no
"""Stream utilities in Amaranth's simulator: Broadcast, StreamFIFO, Join2 with random input gaps and
output stalls; order kept, nothing lost or duplicated, outputs held while stalled, reset, Verilog."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from kwsbnn.hw.streams import Broadcast, Join2, StreamFIFO, Zip
from kwsbnn.hw.testing import stream_get, stream_put


class Watch:
    """Per cycle: records the transfers of the given streams, checks that every stream the unit drives
    keeps ``valid`` and ``payload`` while not ready, and stops a run that makes no progress."""

    def __init__(self, ins, outs, limit=20000):
        self.ins, self.outs, self.limit = list(ins), list(outs), limit
        self.cycle = 0
        self.in_cycles = [[] for _ in self.ins]
        self.out_cycles = [[] for _ in self.outs]
        self.errors = []

    async def run(self, ctx):
        sig = []
        for s in self.ins + self.outs:
            sig += [s.valid, s.ready, s.payload]
        held = [None] * len(self.outs)
        async for _, _, *v in ctx.tick().sample(*sig):
            for k in range(len(self.ins)):
                if v[3 * k] and v[3 * k + 1]:
                    self.in_cycles[k].append(self.cycle)
            for k in range(len(self.outs)):
                valid, ready, payload = v[3 * (len(self.ins) + k): 3 * (len(self.ins) + k) + 3]
                if held[k] is not None and (not valid or payload != held[k]):
                    self.errors.append(f"cycle {self.cycle}: output {k} dropped or changed while stalled")
                held[k] = payload if (valid and not ready) else None
                if valid and ready:
                    self.out_cycles[k].append(self.cycle)
            self.cycle += 1
            if self.cycle > self.limit:
                raise AssertionError(f"no progress after {self.limit} cycles")


def simulate(dut, puts, gets, ins, outs, top=None):
    """``puts``: [(stream, payloads, gap, seed)]; ``gets``: [(stream, count, stall, seed)]."""
    results = [[] for _ in gets]
    watch = Watch(ins, outs)
    if top is None:                       # an explicit sync domain: Join2 alone has no clocked logic
        top = Module()
        top.domains.sync = ClockDomain("sync")
        top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    for s, payloads, gap, seed in puts:
        async def put(ctx, s=s, payloads=payloads, gap=gap, seed=seed):
            await stream_put(ctx, s, payloads, rng=random.Random(seed), gap=gap)
        sim.add_testbench(put)
    for k, (s, count, stall, seed) in enumerate(gets):
        async def get(ctx, k=k, s=s, count=count, stall=stall, seed=seed):
            results[k].extend(await stream_get(ctx, s, count, rng=random.Random(seed), stall=stall))
        sim.add_testbench(get)
    sim.add_testbench(watch.run, background=True)
    sim.run()
    assert not watch.errors, watch.errors[:3]
    return results, watch


# Broadcast

@pytest.mark.parametrize("n,gap,stalls", [
    (1, 0.0, [0.0]), (2, 0.3, [0.0, 0.7]), (3, 0.4, [0.3, 0.5, 0.1]), (4, 0.0, [0.8, 0.0, 0.0, 0.2])])
def test_broadcast_every_output_gets_every_transfer(n, gap, stalls):
    data = [random.Random(n).getrandbits(12) for _ in range(150)]
    dut = Broadcast(12, n)
    got, _ = simulate(dut, [(dut.i, data, gap, 1)],
                      [(dut.o[k], len(data), stalls[k], 10 + k) for k in range(n)],
                      [dut.i], [dut.o[k] for k in range(n)])
    for k in range(n):
        assert got[k] == data


def test_broadcast_throughput_latency_and_no_wait_for_ready():
    data = list(range(1, 41))
    dut = Broadcast(8, 3)
    got, w = simulate(dut, [(dut.i, data, 0.0, 1)], [(dut.o[k], len(data), 0.0, 5) for k in range(3)],
                      [dut.i], [dut.o[k] for k in range(3)])
    assert all(g == data for g in got)
    ins = w.in_cycles[0]
    assert ins == list(range(ins[0], ins[0] + len(data)))              # one per cycle
    for k in range(3):
        assert [o - i for o, i in zip(w.out_cycles[k], ins)] == [dut.latency] * len(data)

    # With no consumer ready, the outputs still become valid after one input transfer, and the
    # input then stalls (the slowest consumer sets the pace) until every copy is taken.
    dut = Broadcast(8, 2)

    async def bench(ctx):
        ctx.set(dut.i.payload, 0x5a)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.payload, 0x33)
        await ctx.tick()
        assert ctx.get(dut.o[0].valid) and ctx.get(dut.o[1].valid)
        assert ctx.get(dut.o[0].payload) == 0x5a and not ctx.get(dut.i.ready)
        ctx.set(dut.o[0].ready, 1)
        await ctx.tick()
        assert not ctx.get(dut.o[0].valid) and ctx.get(dut.o[1].valid) and not ctx.get(dut.i.ready)
        ctx.set(dut.o[1].ready, 1)
        assert ctx.get(dut.i.ready)
        await ctx.tick()
        assert ctx.get(dut.o[0].payload) == 0x33 and ctx.get(dut.o[1].valid)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# StreamFIFO

@pytest.mark.parametrize("depth,gap,stall", [(1, 0.2, 0.2), (2, 0.3, 0.3), (3, 0.0, 0.6), (16, 0.5, 0.0),
                                             (40, 0.2, 0.8)])
def test_fifo_keeps_order(depth, gap, stall):
    data = [random.Random(depth).getrandbits(10) for _ in range(200)]
    dut = StreamFIFO(10, depth)
    got, _ = simulate(dut, [(dut.i, data, gap, 2)], [(dut.o, len(data), stall, 3)], [dut.i], [dut.o])
    assert got[0] == data


@pytest.mark.parametrize("depth,period", [(1, 2), (2, 2), (3, 1), (8, 1)])
def test_fifo_throughput_and_latency(depth, period):
    data = list(range(60))
    dut = StreamFIFO(8, depth)
    got, w = simulate(dut, [(dut.i, data, 0.0, 2)], [(dut.o, len(data), 0.0, 3)], [dut.i], [dut.o])
    assert got[0] == data
    ins, outs = w.in_cycles[0], w.out_cycles[0]
    assert outs[0] - ins[0] == dut.latency
    assert outs[-1] - outs[0] == period * (len(data) - 1)


def test_fifo_holds_depth_transfers_and_reports_level():
    depth = 5
    dut = StreamFIFO(8, depth)
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        accepted = 0
        for k in range(depth + 3):
            ctx.set(dut.i.payload, k)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            accepted += ready
        assert accepted == depth and ctx.get(dut.level) == depth
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        out = []
        for _ in range(depth + 2):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                out.append(payload)
        assert out == list(range(depth)) and ctx.get(dut.level) == 0
        # Reset empties it.
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.level) == 3
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        await ctx.tick()
        assert ctx.get(dut.level) == 0 and not ctx.get(dut.o.valid)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# Join2

@pytest.mark.parametrize("gap_a,gap_b,stall", [(0.0, 0.0, 0.0), (0.5, 0.1, 0.3), (0.1, 0.6, 0.0), (0.3, 0.3, 0.7)])
def test_join_pairs_in_order(gap_a, gap_b, stall):
    r = random.Random(int(gap_a * 10 + gap_b * 100))
    a = [r.getrandbits(7) for _ in range(150)]
    b = [r.getrandbits(3) for _ in range(150)]
    dut = Join2(7, 3)
    got, w = simulate(dut, [(dut.a, a, gap_a, 1), (dut.b, b, gap_b, 2)], [(dut.o, len(a), stall, 3)],
                      [dut.a, dut.b], [dut.o])
    assert got[0] == [x | (y << 7) for x, y in zip(a, b)]
    assert w.in_cycles[0] == w.in_cycles[1] == w.out_cycles[0]        # one pair per output, same cycle
    if gap_a == gap_b == stall == 0:
        assert w.out_cycles[0] == list(range(w.out_cycles[0][0], w.out_cycles[0][0] + len(a)))


def test_join_valid_does_not_wait_for_ready():
    dut = Join2(4, 4)

    async def bench(ctx):
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.a.payload, 3)
        assert not ctx.get(dut.o.valid) and not ctx.get(dut.a.ready)
        ctx.set(dut.b.valid, 1)
        ctx.set(dut.b.payload, 9)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 3 | (9 << 4)
        assert not ctx.get(dut.a.ready) and not ctx.get(dut.b.ready)
        ctx.set(dut.o.ready, 1)
        assert ctx.get(dut.a.ready) and ctx.get(dut.b.ready)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert Zip is Join2


def test_join_after_fifo_delays_a_stream():
    """The residual-join use: the shortcut stream goes through a FIFO, then meets the window stream."""
    from amaranth.lib import stream, wiring

    class Delay(wiring.Component):
        def __init__(self):
            self.q, self.j = StreamFIFO(4, 12), Join2(6, 4)
            super().__init__({"w": wiring.In(stream.Signature(6)), "s": wiring.In(stream.Signature(4)),
                              "o": wiring.Out(stream.Signature(10))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.q, m.submodules.j = self.q, self.j
            wiring.connect(m, wiring.flipped(self.s), self.q.i)
            wiring.connect(m, self.q.o, self.j.b)
            wiring.connect(m, wiring.flipped(self.w), self.j.a)
            wiring.connect(m, self.j.o, wiring.flipped(self.o))
            return m

    r = random.Random(4)
    w = [r.getrandbits(6) for _ in range(100)]
    s = [r.getrandbits(4) for _ in range(100)]
    dut = Delay()
    got, _ = simulate(dut, [(dut.w, w, 0.7, 1), (dut.s, s, 0.0, 2)], [(dut.o, len(w), 0.3, 3)],
                      [dut.w, dut.s], [dut.o])
    assert got[0] == [x | (y << 6) for x, y in zip(w, s)]


def test_streams_convert_to_verilog():
    for name, unit in [("bcast", Broadcast(9, 3)), ("sfifo", StreamFIFO(9, 20)), ("sfifo1", StreamFIFO(9, 1)),
                       ("join2", Join2(5, 3))]:
        assert f"module {name}" in verilog.convert(unit, name=name)


def test_streams_reject_bad_parameters():
    with pytest.raises(ValueError):
        Broadcast(4, 0)
    with pytest.raises(ValueError):
        StreamFIFO(4, 0)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_gather_collects_n_transfers(n):
    from kwsbnn.hw.streams import Gather
    dut = Gather(6, n)
    data = [random.Random(n).randrange(64) for _ in range(4 * n)]
    want = [sum(data[k * n + j] << (6 * j) for j in range(n)) for k in range(4)]
    got = []

    async def put(ctx):
        await stream_put(ctx, dut.i, data, rng=random.Random(1), gap=0.3)

    async def get(ctx):
        got.extend(await stream_get(ctx, dut.o, 4, rng=random.Random(2), stall=0.4))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(put)
    sim.add_testbench(get)
    sim.run()
    assert got == want
