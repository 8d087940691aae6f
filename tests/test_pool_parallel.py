# amaranth: UnusedElaboratable=no
"""ParallelSumPoolThreshold in Amaranth's simulator against NumPy: random accumulators, several pool windows
with dropped remainder rows/columns, both directions and constant channels, random input gaps and
output stalls, inferences back to back, a reset mid-inference, exact throughput and latency."""

import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from kwsbnn.hw.pool_parallel import ParallelSumPoolThreshold
from kwsbnn.hw.testing import StreamMonitor, run_monitored, stream_put
from kwsbnn.sw.golden import threshold_bits

C, AW, T, F = 5, 6, 9, 7


def golden(acc, pool, direction, thr):
    """``acc [N, C, T, F]`` -> output bits ``[N, C, T // pt, F // pf]`` as in sw/golden.py."""
    p0, p1 = pool
    n, c, t, f = acc.shape
    t2, f2 = t // p0, f // p1
    s = acc[:, :, :t2 * p0, :f2 * p1].reshape(n, c, t2, p0, f2, p1).sum(axis=(3, 5))
    return threshold_bits(s, (np.asarray(direction) > 0).astype(np.int64), np.asarray(thr)[None, :, None, None])


def pack_in(acc, aw):
    """``[N, C, T, F]`` accumulators -> one payload per position (t-major), channel c at c*aw."""
    n, c, t, f = acc.shape
    mask = (1 << aw) - 1
    out = []
    for k in range(n):
        for tt in range(t):
            for ff in range(f):
                out.append(sum((int(acc[k, ch, tt, ff]) & mask) << (ch * aw) for ch in range(c)))
    return out


def pack_out(bits):
    """``[N, C, T2, F2]`` bits -> one C-bit payload per pooled position (t-major)."""
    n, c, t, f = bits.shape
    return [sum(int(bits[k, ch, tt, ff]) << ch for ch in range(c))
            for k in range(n) for tt in range(t) for ff in range(f)]


def make_params(rng, pool, aw=AW, c=C):
    n = pool[0] * pool[1]
    lo, hi = n * -(1 << (aw - 1)), n * ((1 << (aw - 1)) - 1)
    d = rng.choice([-1, 1], c)
    thr = rng.integers(lo // 2, hi // 2 + 1, c)
    # Constant channels (threshold beyond / at the edge of the reachable range), both directions.
    d[0], thr[0] = 1, lo - 3           # always 1
    d[1], thr[1] = -1, hi + 3          # always 1
    d[2], thr[2] = 1, hi + 1           # always 0
    d[3], thr[3] = -1, lo              # 1 only at the minimum
    return d, thr


def make_acc(rng, n, aw=AW, c=C, t=T, f=F):
    acc = rng.integers(-(1 << (aw - 1)), 1 << (aw - 1), (n, c, t, f))
    acc[0, :, :, :2] = -(1 << (aw - 1))      # extremes reach the pooled range's ends
    acc[-1, :, :2, :] = (1 << (aw - 1)) - 1
    return acc


def run(dut, inputs, n_out, *, gap, stall, seed):
    return run_monitored(dut, inputs, n_out, gap=gap, stall=stall, seed=seed, limit=20000)


@pytest.mark.parametrize("pool,gap,stall", [
    ((4, 3), 0.3, 0.3), ((2, 2), 0.0, 0.5), ((1, 1), 0.3, 0.3), ((2, 1), 0.5, 0.0),
    ((1, 3), 0.2, 0.2), ((9, 7), 0.2, 0.2), ((3, 7), 0.0, 0.0), ((1, 2), 0.0, 0.8)])
def test_pool_threshold_matches_numpy(pool, gap, stall):
    rng = np.random.default_rng(pool[0] * 10 + pool[1])
    d, thr = make_params(rng, pool)
    acc = make_acc(rng, 3)
    want = pack_out(golden(acc, pool, d, thr))
    dut = ParallelSumPoolThreshold(channels=C, acc_width=AW, frames=T, coeffs=F, pool=pool, direction=d, threshold=thr)
    assert dut.out_shape == (C, T // pool[0], F // pool[1])
    got, _ = run(dut, pack_in(acc, AW), len(want), gap=gap, stall=stall, seed=sum(pool))
    assert got == want


@pytest.mark.parametrize("pool", [(4, 3), (1, 1), (2, 2)])
def test_pool_throughput_and_latency(pool):
    """Never stalled: T*F input transfers per inference in consecutive cycles; output 1 cycle later."""
    rng = np.random.default_rng(5)
    d, thr = make_params(rng, pool)
    acc = make_acc(rng, 3)
    want = pack_out(golden(acc, pool, d, thr))
    dut = ParallelSumPoolThreshold(channels=C, acc_width=AW, frames=T, coeffs=F, pool=pool, direction=d, threshold=thr)
    got, mon = run(dut, pack_in(acc, AW), len(want), gap=0.0, stall=0.0, seed=1)
    assert got == want
    ins = mon.in_cycles
    assert len(ins) == 3 * T * F
    assert ins[-1] - ins[0] + 1 == 3 * dut.cycles_per_inference
    # The input transfer completing window (i, j) of inference k is position (i*pt + pt-1, j*pf + pf-1).
    pt, pf = pool
    t2, f2 = T // pt, F // pf
    done = [ins[k * T * F + (ii * pt + pt - 1) * F + jj * pf + pf - 1]
            for k in range(3) for ii in range(t2) for jj in range(f2)]
    # stream_get's ready is high from the first cycle, so a transfer happens as soon as valid rises.
    assert [o - c for o, c in zip(mon.out_cycles, done)] == [dut.latency] * len(done)


def test_pool_reset_mid_inference():
    pool = (2, 2)
    rng = np.random.default_rng(11)
    d, thr = make_params(rng, pool)
    acc = make_acc(rng, 3)
    junk = make_acc(rng, 1)
    want = pack_out(golden(acc, pool, d, thr))
    dut = ParallelSumPoolThreshold(channels=C, acc_width=AW, frames=T, coeffs=F, pool=pool, direction=d, threshold=thr)
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    mon = StreamMonitor(dut, cd.rst)
    got = []
    state = {"done": False}
    prng, grng = random.Random(1), random.Random(2)

    async def put(ctx):
        # 2.5 rows of pooled windows of a junk inference (some outputs produced), then reset.
        await stream_put(ctx, dut.i, pack_in(junk, AW)[:5 * F + 3], rng=prng, gap=0.3)
        for _ in range(3):
            await ctx.tick()
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        await stream_put(ctx, dut.i, pack_in(acc, AW), rng=prng, gap=0.3)
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


def test_pool_wide_accumulators_and_one_channel():
    """Single channel, 11-bit accumulators, pool covering the whole height but not the width."""
    rng = np.random.default_rng(3)
    aw, c, t, f, pool = 11, 1, 4, 5, (4, 2)
    acc = make_acc(rng, 2, aw=aw, c=c, t=t, f=f)
    d, thr = np.array([-1]), np.array([7])
    want = pack_out(golden(acc, pool, d, thr))
    dut = ParallelSumPoolThreshold(channels=c, acc_width=aw, frames=t, coeffs=f, pool=pool, direction=d, threshold=thr)
    got, _ = run(dut, pack_in(acc, aw), len(want), gap=0.2, stall=0.2, seed=9)
    assert got == want


@pytest.mark.parametrize("t,f,pool", [(7, 1, (3, 1)), (5, 1, (1, 1)), (2, 4, (2, 4))])
def test_pool_narrow_shapes(t, f, pool):
    """One coefficient (every position hits the same buffer word: needs the transparent read) and a
    single window per inference."""
    rng = np.random.default_rng(t * f)
    d, thr = make_params(rng, pool)
    acc = make_acc(rng, 3, t=t, f=f)
    want = pack_out(golden(acc, pool, d, thr))
    dut = ParallelSumPoolThreshold(channels=C, acc_width=AW, frames=t, coeffs=f, pool=pool, direction=d, threshold=thr)
    for gap, stall in [(0.0, 0.0), (0.3, 0.3)]:
        got, _ = run(dut, pack_in(acc, AW), len(want), gap=gap, stall=stall, seed=t)
        assert got == want


def test_pool_rejects_bad_parameters():
    with pytest.raises(ValueError, match="larger than"):
        ParallelSumPoolThreshold(channels=2, acc_width=4, frames=3, coeffs=3, pool=(4, 1),
                         direction=[1, 1], threshold=[0, 0])
    with pytest.raises(ValueError, match="2 entries"):
        ParallelSumPoolThreshold(channels=2, acc_width=4, frames=3, coeffs=3, pool=(1, 1),
                         direction=[1], threshold=[0, 0])
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        ParallelSumPoolThreshold(channels=2, acc_width=4, frames=3, coeffs=3, pool=(1, 1),
                         direction=[1, 0], threshold=[0, 0])


def test_pool_properties():
    dut = ParallelSumPoolThreshold(channels=32, acc_width=9, frames=49, coeffs=10, pool=(2, 2),
                           direction=np.ones(32), threshold=np.zeros(32))
    assert dut.sum_width == 11
    assert dut.out_shape == (32, 24, 5)
    assert dut.positions_in == 490 and dut.positions_out == 120
    assert dut.cycles_per_inference == 490
    assert dut.buffer_bits == 5 * 32 * 11 + 32 * 11
    flat = ParallelSumPoolThreshold(channels=32, acc_width=9, frames=49, coeffs=10, pool=(1, 1),
                            direction=np.ones(32), threshold=np.zeros(32))
    assert flat.buffer_bits == 0 and flat.sum_width == 9


@pytest.mark.parametrize("pool", [(4, 3), (1, 1), (1, 7), (9, 1)])
def test_pool_converts_to_verilog(pool):
    rng = np.random.default_rng(0)
    d, thr = make_params(rng, pool)
    dut = ParallelSumPoolThreshold(channels=C, acc_width=AW, frames=T, coeffs=F, pool=pool, direction=d, threshold=thr)
    text = verilog.convert(dut, name="pool_unit")
    assert "module pool_unit" in text
