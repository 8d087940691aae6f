"""Stream helpers for Amaranth simulator testbenches: put and get with random gaps and stalls."""

import random


async def stream_put(ctx, stream, payloads, *, rng: random.Random | None = None, gap: float = 0.0):
    """Send each payload in turn; with probability ``gap`` wait a cycle with valid low first."""
    for payload in payloads:
        while rng is not None and rng.random() < gap:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, count: int, *, rng: random.Random | None = None, stall: float = 0.0):
    """Receive ``count`` payloads; with probability ``stall`` hold ready low for a cycle first."""
    out = []
    for _ in range(count):
        while rng is not None and rng.random() < stall:
            ctx.set(stream.ready, 0)
            await ctx.tick()
        ctx.set(stream.ready, 1)
        payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
        out.append(payload)
    ctx.set(stream.ready, 0)
    return out


def run_stream(dut, inputs, n_out: int, *, gap: float, stall: float, seed: int,
               load=None, load_gap: float = 0.0) -> list:
    """Simulate ``dut`` (members ``i`` and ``o``): send ``inputs`` with random gaps, take ``n_out``
    outputs under random backpressure, and return them. ``load``: words sent at the same time on
    the loader port ``dut.wl`` (the layer engine's weights), with gaps ``load_gap``."""
    from amaranth.sim import Simulator

    got = []

    async def put_load(ctx):
        await stream_put(ctx, dut.wl, load, rng=random.Random(seed + 2), gap=load_gap)

    async def put(ctx):
        await stream_put(ctx, dut.i, inputs, rng=random.Random(seed), gap=gap)

    async def get(ctx):
        got.extend(await stream_get(ctx, dut.o, n_out, rng=random.Random(seed + 1), stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    if load is not None:
        sim.add_testbench(put_load)
    sim.add_testbench(put)
    sim.add_testbench(get)
    sim.run()
    return got


class StreamMonitor:
    """Records the cycles of every transfer on ``dut.i`` and ``dut.o`` and checks the output's stream
    rule: a payload offered while ``o.ready`` is low stays valid and unchanged until taken (not
    checked in cycles where ``rst`` is high). Run as a background testbench; ``limit`` cycles
    without the others finishing is an error (no progress)."""

    def __init__(self, dut, rst=None, limit=30000):
        self.dut, self.rst, self.limit = dut, rst, limit
        self.cycle = 0
        self.in_cycles, self.out_cycles = [], []
        self.errors = []

    async def run(self, ctx):
        held = None
        i, o = self.dut.i, self.dut.o
        sig = [i.valid, i.ready, o.valid, o.ready, o.payload] + ([self.rst] if self.rst is not None else [])
        async for _, _, iv, ir, ov, orr, op, *r in ctx.tick().sample(*sig):
            if r and r[0]:
                held = None
            else:
                if held is not None and (not ov or op != held):
                    self.errors.append(f"cycle {self.cycle}: output dropped or changed while stalled")
                held = op if (ov and not orr) else None
                if iv and ir:
                    self.in_cycles.append(self.cycle)
                if ov and orr:
                    self.out_cycles.append(self.cycle)
            self.cycle += 1
            if self.cycle > self.limit:
                raise AssertionError(f"no progress: still running after {self.limit} cycles")


def run_monitored(dut, inputs, n_out: int, *, gap: float, stall: float, seed: int,
                  limit: int = 30000) -> tuple[list, StreamMonitor]:
    """:func:`run_stream` with a :class:`StreamMonitor` watching: the outputs and the monitor (its
    transfer cycles), after asserting that the stream rule held."""
    from amaranth.sim import Simulator

    got = []
    mon = StreamMonitor(dut, limit=limit)

    async def put(ctx):
        await stream_put(ctx, dut.i, inputs, rng=random.Random(seed), gap=gap)

    async def get(ctx):
        got.extend(await stream_get(ctx, dut.o, n_out, rng=random.Random(seed + 1), stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(put)
    sim.add_testbench(get)
    sim.add_testbench(mon.run, background=True)
    sim.run()
    assert not mon.errors, mon.errors[:3]
    return got, mon


def inference_stamps(dut, inputs, n: int, per: int) -> list[int]:
    """Load ``dut.image()`` on ``dut.wl`` (a unit with a weight-load port; one whose weights are in
    the bitstream has none), send ``inputs`` back to back on ``dut.i`` and take every output at
    once: the cycle of each ``per``-th output (the end of each of ``n`` inferences), for checking a
    period against the cost model."""
    from amaranth.sim import Simulator

    stamps = []

    async def load(ctx):
        await stream_put(ctx, dut.wl, dut.image())

    async def put(ctx):
        await stream_put(ctx, dut.i, inputs)

    async def get(ctx):
        ctx.set(dut.o.ready, 1)
        seen = cycle = 0
        while seen < n * per:
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.o.valid):
                seen += 1
                if seen % per == 0:
                    stamps.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in ((load, put, get) if hasattr(dut, "wl") else (put, get)):
        sim.add_testbench(tb)
    sim.run()
    return stamps
