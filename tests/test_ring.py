"""The board's ring buffer of input frames (kwsbnn.boards.ring.FrameRing) in Amaranth's simulator:
frames written with gaps, committed or aborted, decisions on the StreamPlan's schedule, each
replayed window equal to the last T committed frames, under random backpressure."""

import random

import pytest
from amaranth.sim import Simulator

from kwsbnn.boards import protocol as p
from kwsbnn.boards.ring import FrameRing
from kwsbnn.hw.testing import stream_get

T, F = 4, 3


@pytest.mark.parametrize("stride,stall", [(1, 0.0), (2, 0.5), (3, 0.8)])
def test_ring_replays_the_last_frames(stride, stall):
    dut = FrameRing(width=8, frames=T, coeffs=F, stride=stride)
    assert dut.depth == p.ring_depth(T, F) == 16 and dut.window == T * F
    rng = random.Random(stride)
    plan = p.StreamPlan(T, stride, 1)
    n_frames = 14
    frames = [[rng.randrange(256) for _ in range(F)] for _ in range(n_frames)]
    drops = {3, 9}          # frames sent twice: first aborted (a bad CRC), then committed
    windows, dues = [], []

    async def host(ctx):
        committed = []
        for j, fr in enumerate(frames):
            for attempt in ((0, 1) if j in drops else (1,)):
                for v in (fr if attempt else [x ^ 0xFF for x in fr]):
                    while rng.random() < 0.5:
                        await ctx.tick()
                    ctx.set(dut.i.valid, 1)
                    ctx.set(dut.i.payload, v)
                    await ctx.tick()
                    ctx.set(dut.i.valid, 0)
                for _ in range(3):
                    await ctx.tick()
                # Flow control as the protocol's: wait until the previous window is replayed.
                while ctx.get(dut.busy):
                    await ctx.tick()
                if attempt:
                    dues.append(ctx.get(dut.due))
                    ctx.set(dut.commit, 1)
                    committed.append(fr)
                    if plan.decides(len(committed)):
                        windows.append(sum(committed[-T:], []))
                else:
                    ctx.set(dut.abort, 1)
                await ctx.tick()
                ctx.set(dut.commit, 0)
                ctx.set(dut.abort, 0)

    got = []

    async def network(ctx):
        n = len(plan.decisions(n_frames))
        got.extend(await stream_get(ctx, dut.o, n * T * F, rng=random.Random(7), stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(network)
    sim.run()
    assert dues == [plan.decides(k) for k in range(1, n_frames + 1)]
    assert got == sum(windows, [])
    assert len(windows) == len(plan.decisions(n_frames))


def test_ring_start_empties_and_sets_the_stride():
    dut = FrameRing(width=8, frames=2, coeffs=1, stride=1)
    seen = []

    async def tb(ctx):
        async def frame(v):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, v)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            seen.append(ctx.get(dut.due))
            ctx.set(dut.commit, 1)
            await ctx.tick()
            ctx.set(dut.commit, 0)
            while ctx.get(dut.busy):
                await ctx.tick()
        ctx.set(dut.o.ready, 1)
        for v in (1, 2, 3):
            await frame(v)
        ctx.set(dut.start, 1)
        ctx.set(dut.start_stride, 2)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.stride) == 2
        for v in (4, 5, 6, 7):
            await frame(v)
        ctx.set(dut.start, 1)
        ctx.set(dut.start_stride, 0)            # 0: the build's stride
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.stride) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [False, True, True, False, True, False, True]
