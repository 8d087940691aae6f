# amaranth: UnusedElaboratable=no
"""The sliding-window unit in Amaranth's simulator against the NumPy im2col (golden ``windows``):
binary and int8 elements, several kernels, strides, dilations and paddings, random input gaps and
output stalls, inferences back to back, a reset in the middle of an inference, exact cycle counts."""

import random

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from kwsbnn.hw.testing import run_stream
from kwsbnn.hw.window import SlidingWindow
from kwsbnn.sw.golden import windows


def pack(vals, ew):
    """Rows of elements -> integers, element j at bits [j*ew, (j+1)*ew) (two's complement)."""
    mask = (1 << ew) - 1
    return [sum((int(v) & mask) << (j * ew) for j, v in enumerate(row)) for row in vals]


def make_case(c, ew, t, f, kernel, stride, dilation, padding, pad, n_inf, seed):
    """Random inferences; returns the unit, the input transfers and the expected output transfers."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, (n_inf, c, t, f)) if ew == 1 else rng.integers(-128, 128, (n_inf, c, t, f))
    if ew == 8:
        x[0, 0, 0, 0], x[0, 0, -1, -1] = -128, 127         # extremes
    dut = SlidingWindow(c, ew, t, f, kernel, stride=stride, dilation=dilation, padding=padding,
                        pad_value=pad)
    inputs = pack(x.transpose(0, 2, 3, 1).reshape(-1, c), ew)          # t-major, f-minor
    win = windows(x, kernel, stride, dilation, padding, pad)            # [B, T', F', K]
    assert win.shape[1:3] == (dut.out_frames, dut.out_coeffs)
    want = pack(win.reshape(-1, win.shape[-1]), ew)
    return dut, inputs, want


CASES = [
    # c, ew, t, f, kernel, stride, dilation, padding, pad, gap, stall
    (2, 1, 7, 5, (3, 3), (1, 1), (1, 1), (1, 1), 0, 0.0, 0.0),
    (3, 1, 7, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0.3, 0.3),
    (2, 1, 7, 5, (3, 3), (1, 1), (1, 1), (0, 0), 0, 0.5, 0.0),
    (2, 1, 7, 5, (3, 3), (1, 1), (1, 1), (2, 2), 1, 0.0, 0.6),
    (3, 1, 7, 5, (1, 1), (1, 1), (1, 1), (0, 0), 0, 0.3, 0.3),
    (2, 1, 7, 5, (1, 1), (1, 1), (1, 1), (2, 1), 1, 0.3, 0.3),       # rows of windows all padding
    (2, 1, 7, 5, (3, 1), (1, 1), (1, 1), (1, 0), 1, 0.3, 0.3),
    (2, 1, 7, 5, (3, 3), (2, 1), (1, 1), (1, 1), 0, 0.3, 0.3),
    (3, 1, 7, 5, (3, 3), (1, 2), (1, 1), (1, 1), 1, 0.3, 0.3),
    (2, 1, 7, 5, (3, 3), (1, 1), (2, 2), (2, 2), 1, 0.3, 0.3),
    (2, 1, 8, 6, (3, 3), (2, 2), (2, 1), (1, 2), 0, 0.2, 0.4),
    (2, 1, 7, 5, (2, 3), (3, 2), (1, 2), (0, 1), 1, 0.3, 0.3),      # even kernel, trailing rows unused
    (2, 1, 7, 1, (3, 1), (1, 1), (1, 1), (0, 0), 0, 0.3, 0.3),      # one column: transparent buffer
    (2, 1, 5, 1, (3, 1), (1, 1), (2, 1), (1, 0), 1, 0.0, 0.0),
    (1, 8, 7, 5, (3, 3), (1, 1), (1, 1), (1, 1), 0, 0.3, 0.3),      # first-layer style int8
    (2, 8, 7, 5, (1, 1), (1, 1), (1, 1), (0, 0), 0, 0.3, 0.3),
    (2, 8, 7, 5, (3, 1), (2, 1), (1, 1), (1, 0), 0, 0.3, 0.3),
    (3, 8, 7, 5, (3, 3), (1, 2), (2, 1), (2, 1), 0, 0.3, 0.5),
]


@pytest.mark.parametrize("c,ew,t,f,kernel,stride,dilation,padding,pad,gap,stall", CASES)
def test_window_matches_golden(c, ew, t, f, kernel, stride, dilation, padding, pad, gap, stall):
    seed = hash((c, ew, t, f, kernel, stride, dilation, padding, pad)) % 10_000
    dut, inputs, want = make_case(c, ew, t, f, kernel, stride, dilation, padding, pad, 3, seed)
    got = run_stream(dut, inputs, len(want), gap=gap, stall=stall, seed=seed)
    assert got == want


def drive(dut, inputs, *, gap=0.0, stall=0.0, seed=0, reset_at=None, reset_len=2, max_cycles=5000):
    """Cycle-level driver: returns ``[(cycle, payload)]`` of output transfers and the input transfer
    cycles. With ``reset_at``, the sync reset is held for ``reset_len`` cycles once that many inputs
    have been transferred, and the input then restarts from ``inputs[reset_at[1]]``."""
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    rng = random.Random(seed)
    outs, ins = [], []

    async def bench(ctx):
        idx, pending, rst_left, did_reset = 0, False, 0, False
        inputs_done = None
        for cyc in range(max_cycles):
            if reset_at is not None and not did_reset and idx == reset_at[0]:
                rst_left, did_reset, idx, pending = reset_len, True, reset_at[1], False
            ctx.set(cd.rst, rst_left > 0)
            if not pending and idx < len(inputs) and rng.random() >= gap:
                pending = True
            ctx.set(dut.i.valid, pending)
            if pending:
                ctx.set(dut.i.payload, inputs[idx])
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            if rst_left == 0:
                if pending and ctx.get(dut.i.ready):
                    ins.append(cyc)
                    idx, pending = idx + 1, False
                if ready and ctx.get(dut.o.valid):
                    outs.append((cyc, ctx.get(dut.o.payload)))
            else:
                rst_left -= 1
                outs.clear()
                ins.clear()
                pending = False
            await ctx.tick()
            if idx >= len(inputs) and inputs_done is None:
                inputs_done = cyc
            if inputs_done is not None and cyc > inputs_done + 2 * dut.cycles_per_inference:
                break

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outs, ins


@pytest.mark.parametrize("c,ew,t,f,kernel,stride,dilation,padding", [
    (2, 1, 7, 5, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 1, 7, 5, (3, 3), (2, 2), (1, 2), (2, 0)),
    (1, 8, 6, 4, (1, 1), (1, 1), (1, 1), (1, 1)),
])
def test_cycles_per_inference_is_exact(c, ew, t, f, kernel, stride, dilation, padding):
    dut, inputs, want = make_case(c, ew, t, f, kernel, stride, dilation, padding, 0, 4, 5)
    outs, ins = drive(dut, inputs)
    # (With padding wider than the kernel reach, the next inference's all-padding windows follow.)
    assert [p for _, p in outs[:len(want)]] == want
    # Never stalled: one input per cycle within an inference, and inferences exactly one period apart.
    n = dut.out_frames * dut.out_coeffs
    last = [outs[(j + 1) * n - 1][0] for j in range(4)]
    first_in = [ins[j * t * f] for j in range(4)]
    assert np.diff(last).tolist() == [dut.cycles_per_inference] * 3
    assert np.diff(first_in).tolist() == [dut.cycles_per_inference] * 3


def test_one_window_per_cycle_with_stride_one():
    dut, inputs, want = make_case(4, 1, 9, 6, (3, 3), (1, 1), (1, 1), (1, 1), 0, 1, 2)
    outs, ins = drive(dut, inputs)
    assert [p for _, p in outs] == want
    assert dut.cycles_per_inference == (9 + 1) * (6 + 1)
    # Within a row of windows the outputs are on consecutive cycles; a window is valid on the cycle
    # after its last real input.
    cyc = [cy for cy, _ in outs]
    for row in range(dut.out_frames):
        seg = cyc[row * 6:(row + 1) * 6]
        assert np.diff(seg).tolist() == [1] * 5
    assert cyc[0] == ins[1 * 6 + 1] + 1          # window (0, 0) completes at input (1, 1)


@pytest.mark.parametrize("ew,pad,gap,stall", [(1, 1, 0.3, 0.3), (8, 0, 0.0, 0.0)])
def test_reset_mid_inference(ew, pad, gap, stall):
    c, t, f = 2, 7, 5
    dut, inputs, want = make_case(c, ew, t, f, (3, 3), (1, 1), (1, 1), (1, 1), pad, 3, 11)
    # Reset after 1 inference and 17 inputs of the second, then send inferences 2 and 3 again.
    outs, _ = drive(dut, inputs, gap=gap, stall=stall, seed=3, reset_at=(t * f + 17, t * f))
    n = dut.out_frames * dut.out_coeffs
    assert [p for _, p in outs] == want[n:]
    assert not outs or outs[0][0] > 0


def test_buffer_bits_and_geometry():
    dut = SlidingWindow(32, 1, 25, 13, (3, 3), padding=(1, 1))
    assert dut.buffer_bits == 2 * 13 * 32
    assert dut.register_bits == 3 * 3 * 32
    assert (dut.out_frames, dut.out_coeffs, dut.window_elems) == (25, 13, 288)
    assert dut.cycles_per_inference == 26 * 14
    assert SlidingWindow(1, 8, 25, 13, (1, 1)).buffer_bits == 0
    assert SlidingWindow(2, 1, 9, 5, (3, 3), dilation=(2, 1), padding=(2, 1)).buffer_bits == 4 * 5 * 2


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel": (5, 3)}, "spans 5 in time"),
    ({"kernel": (3, 3), "dilation": (1, 3)}, "spans 7 in frequency"),
    ({"kernel": (3, 3), "stride": (0, 1)}, "stride must be >= 1"),
    ({"kernel": (3, 3), "padding": (-1, 0)}, "padding must be >= 0"),
    ({"kernel": (3, 3), "pad_value": 2}, "pad_value 2 does not fit 1 bit"),
    ({"kernel": "x"}, "kernel must be an integer pair"),
])
def test_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlidingWindow(2, 1, 4, 4, **kwargs)
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        SlidingWindow(0, 1, 4, 4, (1, 1))


@pytest.mark.parametrize("args", [
    (32, 1, 25, 13, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (1, 8, 7, 1, (3, 1), (1, 1), (1, 1), (0, 0), 0),
    (2, 8, 5, 4, (1, 1), (2, 2), (1, 1), (0, 0), 0),
])
def test_converts_to_verilog(args):
    from amaranth.back import verilog
    text = verilog.convert(SlidingWindow(*args), name="swu")
    assert "module swu" in text


def test_random_geometries():
    """Random kernels, strides, dilations, paddings and sizes (including T or F of 1)."""
    rng = random.Random(2024)
    n = 0
    while n < 12:
        c, ew = rng.randint(1, 3), rng.choice([1, 8])
        t, f = rng.randint(1, 8), rng.randint(1, 6)
        k, s = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 3), rng.randint(1, 3))
        d, p = (rng.randint(1, 2), rng.randint(1, 2)), (rng.randint(0, 3), rng.randint(0, 3))
        pad = rng.randint(0, 1) if ew == 1 else rng.choice([0, -3])
        try:
            dut, inputs, want = make_case(c, ew, t, f, k, s, d, p, pad, 2, n)
        except ValueError:
            continue
        got = run_stream(dut, inputs, len(want), gap=0.3, stall=0.3, seed=n)
        assert got == want, (c, ew, t, f, k, s, d, p, pad)
        n += 1
