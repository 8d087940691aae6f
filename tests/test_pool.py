# amaranth: UnusedElaboratable=no
"""SumPoolThreshold in Amaranth's simulator against NumPy: accumulators arriving as C/lanes transfers per
position, several pool windows with dropped remainder rows/columns, 1/2/all lanes per transfer, both
directions and constant channels, random input gaps and output stalls, inferences back to back, a
reset mid-inference, exact cycle counts and latency, Verilog conversion."""

import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from kwsbnn.hw.pool import SumPoolThreshold
from kwsbnn.hw.testing import StreamMonitor, run_monitored, stream_put
from kwsbnn.sw.golden import threshold_bits

AW, T, F = 6, 9, 7


def golden(acc, pool, direction, thr):
    """``acc [N, C, T, F]`` -> output bits ``[N, C, T // pt, F // pf]`` as in sw/golden.py."""
    p0, p1 = pool
    n, c, t, f = acc.shape
    t2, f2 = t // p0, f // p1
    s = acc[:, :, :t2 * p0, :f2 * p1].reshape(n, c, t2, p0, f2, p1).sum(axis=(3, 5))
    return threshold_bits(s, (np.asarray(direction) > 0).astype(np.int64), np.asarray(thr)[None, :, None, None])


def pack_in(acc, aw, lanes):
    """``[N, C, T, F]`` -> per position (t-major) C/lanes transfers; lane p of group g = channel g*lanes+p."""
    n, c, t, f = acc.shape
    mask = (1 << aw) - 1
    out = []
    for k in range(n):
        for tt in range(t):
            for ff in range(f):
                for g in range(c // lanes):
                    out.append(sum((int(acc[k, g * lanes + p, tt, ff]) & mask) << (p * aw)
                                   for p in range(lanes)))
    return out


def pack_out(bits):
    """``[N, C, T2, F2]`` bits -> one C-bit payload per pooled position (t-major)."""
    n, c, t, f = bits.shape
    return [sum(int(bits[k, ch, tt, ff]) << ch for ch in range(c))
            for k in range(n) for tt in range(t) for ff in range(f)]


def make_params(rng, pool, c, aw=AW):
    n = pool[0] * pool[1]
    lo, hi = n * -(1 << (aw - 1)), n * ((1 << (aw - 1)) - 1)
    d = rng.choice([-1, 1], c)
    thr = rng.integers(lo // 3, hi // 3 + 1, c)
    # Constant channels (threshold beyond / at the edge of the reachable range), both directions.
    edge = [(1, lo - 1000), (-1, hi + 1000), (1, hi + 1), (-1, lo - 1), (-1, lo), (1, hi)]
    for k, (dd, tt) in enumerate(edge[:max(0, c - 2)]):
        d[k], thr[k] = dd, tt
    return d, thr


def make_acc(rng, n, c, aw=AW, t=T, f=F):
    acc = rng.integers(-(1 << (aw - 1)), 1 << (aw - 1), (n, c, t, f))
    acc[0, :, :, :3] = -(1 << (aw - 1))      # extremes reach the pooled range's ends
    acc[-1, :, :4, :] = (1 << (aw - 1)) - 1
    return acc


def run(dut, inputs, n_out, *, gap, stall, seed):
    return run_monitored(dut, inputs, n_out, gap=gap, stall=stall, seed=seed, limit=30000)


def build(pool, c, lanes, d, thr, aw=AW, t=T, f=F):
    return SumPoolThreshold(channels=c, acc_width=aw, frames=t, coeffs=f, pool=pool, direction=d,
                            threshold=thr, lanes=lanes)


@pytest.mark.parametrize("pool,c,lanes,gap,stall", [
    ((4, 3), 8, 2, 0.3, 0.3), ((4, 3), 6, 1, 0.0, 0.6), ((2, 2), 4, 4, 0.3, 0.3),
    ((2, 2), 6, 3, 0.5, 0.0), ((1, 1), 5, 5, 0.3, 0.3), ((1, 1), 4, 1, 0.0, 0.0),
    ((2, 1), 8, 8, 0.2, 0.5), ((2, 1), 5, 1, 0.3, 0.0), ((1, 3), 6, 2, 0.2, 0.2),
    ((1, 3), 4, 4, 0.0, 0.7), ((9, 7), 4, 2, 0.2, 0.2), ((3, 7), 7, 7, 0.0, 0.0)])
def test_pool_threshold_matches_numpy(pool, c, lanes, gap, stall):
    rng = np.random.default_rng(pool[0] * 100 + pool[1] * 10 + c + lanes)
    d, thr = make_params(rng, pool, c)
    acc = make_acc(rng, 3, c)
    want = pack_out(golden(acc, pool, d, thr))
    dut = build(pool, c, lanes, d, thr)
    assert dut.out_shape == (c, T // pool[0], F // pool[1])
    got, mon = run(dut, pack_in(acc, AW, lanes), len(want), gap=gap, stall=stall, seed=sum(pool) + c)
    assert got == want
    assert len(mon.in_cycles) == 3 * dut.transfers_in


@pytest.mark.parametrize("pool,c,lanes", [((4, 3), 8, 2), ((1, 1), 4, 4), ((2, 2), 6, 1), ((2, 1), 5, 5)])
def test_pool_cycles_and_latency(pool, c, lanes):
    """Never stalled: one transfer per `lanes` cycles, 3 * cycles_per_inference in all; output valid
    `latency` cycles after the transfer completing its window."""
    rng = np.random.default_rng(5 + c)
    d, thr = make_params(rng, pool, c)
    acc = make_acc(rng, 3, c)
    want = pack_out(golden(acc, pool, d, thr))
    dut = build(pool, c, lanes, d, thr)
    assert dut.cycles_per_inference == T * F * c
    got, mon = run(dut, pack_in(acc, AW, lanes), len(want), gap=0.0, stall=0.0, seed=1)
    assert got == want
    ins = mon.in_cycles
    assert ins == [ins[0] + k * lanes for k in range(3 * dut.transfers_in)]
    assert ins[-1] - ins[0] + lanes == 3 * dut.cycles_per_inference
    pt, pf = pool
    g = c // lanes
    done = [ins[((k * T + ii * pt + pt - 1) * F + jj * pf + pf - 1) * g + g - 1]
            for k in range(3) for ii in range(T // pt) for jj in range(F // pf)]
    # stream_get's ready is high from the first cycle, so a transfer happens as soon as valid rises.
    assert [o - x for o, x in zip(mon.out_cycles, done)] == [dut.latency] * len(done)


@pytest.mark.parametrize("c,t,f,pool", [(1, 5, 4, (1, 1)), (1, 6, 5, (2, 1)), (2, 5, 4, (1, 1)),
                                        (1, 4, 6, (1, 2)), (2, 4, 5, (2, 2))])
def test_pool_one_or_two_channels(c, t, f, pool):
    """C <= 2: windows may complete faster than the output register drains; the transfer times follow
    the documented schedule exactly, and the results stay right under gaps and stalls."""
    rng = np.random.default_rng(t * f + c)
    d = np.array([1, -1][:c])
    thr = np.array([3, -2][:c])
    acc = make_acc(rng, 3, c, t=t, f=f)
    want = pack_out(golden(acc, pool, d, thr))
    dut = build(pool, c, 1, d, thr, t=t, f=f)
    got, mon = run(dut, pack_in(acc, AW, 1), len(want), gap=0.0, stall=0.0, seed=2)
    assert got == want
    s = dut._schedule(3)
    ins = mon.in_cycles
    assert [x - ins[0] for x in ins] == [x - s[0] for x in s]
    per = t * f * c
    assert ins[2 * per] - ins[per] == dut.cycles_per_inference
    got, _ = run(dut, pack_in(acc, AW, 1), len(want), gap=0.3, stall=0.4, seed=3)
    assert got == want


@pytest.mark.parametrize("t,f,pool,c,lanes", [(7, 1, (3, 1), 4, 2), (5, 1, (1, 1), 4, 1), (2, 4, (2, 4), 6, 3)])
def test_pool_narrow_shapes(t, f, pool, c, lanes):
    """One coefficient, a single window per inference."""
    rng = np.random.default_rng(t * f)
    d, thr = make_params(rng, pool, c)
    acc = make_acc(rng, 3, c, t=t, f=f)
    want = pack_out(golden(acc, pool, d, thr))
    dut = build(pool, c, lanes, d, thr, t=t, f=f)
    for gap, stall in [(0.0, 0.0), (0.3, 0.3)]:
        got, _ = run(dut, pack_in(acc, AW, lanes), len(want), gap=gap, stall=stall, seed=t)
        assert got == want


def test_pool_wide_accumulators():
    """12-bit accumulators, a pool covering the whole height but not the width."""
    rng = np.random.default_rng(3)
    aw, c, t, f, pool = 12, 4, 4, 5, (4, 2)
    acc = make_acc(rng, 2, c, aw=aw, t=t, f=f)
    d, thr = make_params(rng, pool, c, aw=aw)
    want = pack_out(golden(acc, pool, d, thr))
    dut = build(pool, c, 2, d, thr, aw=aw, t=t, f=f)
    got, _ = run(dut, pack_in(acc, aw, 2), len(want), gap=0.2, stall=0.2, seed=9)
    assert got == want


@pytest.mark.parametrize("pool,c,lanes", [((2, 2), 5, 1), ((4, 3), 8, 4)])
def test_pool_reset_mid_inference(pool, c, lanes):
    rng = np.random.default_rng(11)
    d, thr = make_params(rng, pool, c)
    acc = make_acc(rng, 3, c)
    junk = make_acc(rng, 1, c)
    want = pack_out(golden(acc, pool, d, thr))
    dut = build(pool, c, lanes, d, thr)
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    mon = StreamMonitor(dut, cd.rst)
    got = []
    state = {"done": False}
    prng, grng = random.Random(1), random.Random(2)
    g = c // lanes

    async def put(ctx):
        # Several pooled rows of a junk inference (some outputs produced), stopped in the middle of a
        # position's channel groups, then a reset with the input still valid.
        words = pack_in(junk, AW, lanes)
        await stream_put(ctx, dut.i, words[:(pool[0] * F + pool[1] * 2 + 1) * g + g // 2], rng=prng, gap=0.3)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, words[-1])
        for _ in range(lanes // 2 + 1):
            await ctx.tick()
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        await stream_put(ctx, dut.i, pack_in(acc, AW, lanes), rng=prng, gap=0.3)
        state["done"] = True

    async def get(ctx):
        # Consume with random stalls; anything received up to the reset is discarded.
        while not (state["done"] and len(got) >= len(want)):
            ready = grng.random() >= 0.3
            ctx.set(dut.o.ready, ready)
            _, rst, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if rst:
                got.clear()
            elif valid and ready:
                got.append(payload)
            assert len(got) <= len(want)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(put)
    sim.add_testbench(get)
    sim.add_testbench(mon.run, background=True)
    sim.run()
    assert not mon.errors, mon.errors[:3]
    assert got == want


def test_pool_rejects_bad_parameters():
    ok = dict(channels=2, acc_width=4, frames=3, coeffs=3, pool=(1, 1), direction=[1, 1],
              threshold=[0, 0], lanes=1)
    for bad, match in [({"pool": (4, 1)}, "larger than"), ({"direction": [1]}, "2 entries"),
                       ({"direction": [1, 0]}, r"\+1 or -1"), ({"lanes": 3}, "lanes=3 must divide channels=2"),
                       ({"lanes": 0}, "lanes must be a positive"), ({"channels": 0}, "channels must be"),
                       ({"pool": (1, 0)}, r"pool\[1\] must be"), ({"pool": (2,)}, "pool must be"),
                       ({"acc_width": 2.5}, "acc_width must be"), ({"threshold": [0.5, 1]}, "integers")]:
        with pytest.raises(ValueError, match=match):
            SumPoolThreshold(**{**ok, **bad})


def test_pool_properties():
    dut = SumPoolThreshold(channels=32, acc_width=19, frames=101, coeffs=40, pool=(4, 3),
                           direction=np.ones(32), threshold=np.zeros(32), lanes=8)
    assert dut.sum_width == 23 and dut.run_width == 24
    assert dut.out_shape == (32, 25, 13)
    assert dut.positions_in == 4040 and dut.positions_out == 325
    assert dut.transfers_in == 4040 * 4
    assert dut.cycles_per_inference == 4040 * 32
    assert dut.memory_depth == 14 * 32
    assert dut.buffer_bits == 13 * 32 * 24 + 64
    assert dut.threshold_bits == 32 * 24
    assert dut.latency == 2
    flat = SumPoolThreshold(channels=32, acc_width=9, frames=49, coeffs=10, pool=(1, 1),
                            direction=np.ones(32), threshold=np.zeros(32), lanes=32)
    assert flat.sum_width == 9 and flat.memory_depth == 32 and flat.buffer_bits == 64
    row = SumPoolThreshold(channels=8, acc_width=9, frames=49, coeffs=10, pool=(1, 3),
                           direction=np.ones(8), threshold=np.zeros(8), lanes=2)
    assert row.memory_depth == 16


@pytest.mark.parametrize("pool,c,lanes", [((4, 3), 8, 2), ((1, 1), 5, 1), ((1, 7), 6, 3), ((9, 1), 1, 1)])
def test_pool_converts_to_verilog(pool, c, lanes):
    rng = np.random.default_rng(0)
    d, thr = make_params(rng, pool, c)
    text = verilog.convert(build(pool, c, lanes, d, thr), name="pool_unit")
    assert "module pool_unit" in text
