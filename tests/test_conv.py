# amaranth: UnusedElaboratable=no
"""The fused streamed binary convolution in Amaranth's simulator against the NumPy golden functions
(``windows``, ``xnor_popcount_acc``, ``threshold_bits``): paddings with pad bit 0 and 1, shortcut,
dilation, stride, 1x1, several PE x SIMD foldings, thresholds in logic or in a ROM, random geometries,
random input gaps and output stalls, inferences back to back, a reset in the middle of an inference,
exact cycle counts, Verilog conversion."""

import random

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from kwsbnn.hw.conv import StreamedConv
from kwsbnn.hw.testing import run_stream
from kwsbnn.sw import packing
from kwsbnn.sw.golden import threshold_bits, windows, xnor_popcount_acc


def make_case(c, co, t, f, kernel, stride, dilation, padding, pad, shortcut, pe, simd, n_inf, seed, **kw):
    """Random layer and inferences; returns the unit, the input transfers and the expected outputs."""
    rng = np.random.default_rng(seed)
    kt, kf = kernel
    k = c * kt * kf
    w = rng.integers(0, 2, (co, k))
    d = rng.choice([-1, 1], co)
    s = 2 if shortcut else 1
    thr = rng.integers(-k // 3, k // 3 + 1, (co, s))
    thr[0] = -k - 1                                   # constant channels (always 1 / always 0)
    if co > 1:
        thr[1] = k + 3
    x = rng.integers(0, 2, (n_inf, c, t, f))
    dut = StreamedConv(w, d, thr, channels=c, frames=t, coeffs=f, kernel=kernel, stride=stride,
                       dilation=dilation, padding=padding, pad_bit=pad, shortcut=shortcut,
                       pe=pe, simd=simd, **kw)
    win = windows(x, kernel, stride, dilation, padding, pad)            # [B, T', F', K]
    assert win.shape[1:3] == (dut.out_frames, dut.out_coeffs)
    acc = xnor_popcount_acc(win, w).transpose(0, 3, 1, 2)               # [B, C, T', F']
    if shortcut:
        sel = thr[:, 1][None, :, None, None] * x + thr[:, 0][None, :, None, None] * (1 - x)
    else:
        sel = thr[:, 0][None, :, None, None]
    y = threshold_bits(acc, (d > 0).astype(np.int64), sel)              # [B, C, T', F']
    inputs = packing.pack_rows(x.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.uint8))
    want = packing.pack_rows(y.transpose(0, 2, 3, 1).reshape(-1, co).astype(np.uint8))
    return dut, inputs, want


CASES = [
    # c, co, t, f, kernel, stride, dilation, padding, pad, shortcut, pe, simd, gap, stall
    (4, 4, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), 0, False, 1, 4, 0.0, 0.0),
    (4, 4, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, False, 2, 2, 0.3, 0.3),
    (4, 4, 7, 4, (3, 3), (1, 1), (1, 1), (1, 1), 0, True, 1, 4, 0.3, 0.3),
    (8, 8, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, 8, 2, 0.3, 0.3),
    (6, 6, 6, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, 3, 3, 0.2, 0.4),
    (4, 4, 8, 5, (3, 3), (1, 1), (2, 2), (2, 2), 1, True, 4, 4, 0.3, 0.3),     # dilation 2
    (4, 6, 8, 5, (3, 3), (1, 1), (2, 2), (2, 2), 0, False, 2, 4, 0.3, 0.3),
    (4, 4, 8, 5, (3, 3), (2, 1), (1, 1), (1, 0), 1, False, 1, 2, 0.3, 0.3),     # stride (2, 1)
    (4, 8, 8, 5, (3, 3), (2, 1), (1, 1), (1, 0), 0, False, 8, 4, 0.0, 0.5),
    (4, 4, 6, 5, (1, 1), (1, 1), (1, 1), (0, 0), 0, True, 4, 4, 0.3, 0.3),      # 1x1, one cycle folds
    (8, 4, 6, 5, (1, 1), (1, 1), (1, 1), (0, 0), 1, False, 1, 2, 0.3, 0.3),
    (4, 4, 6, 5, (3, 3), (1, 1), (1, 1), (0, 0), 0, False, 1, 4, 0.3, 0.3),     # "valid"
    (4, 4, 7, 5, (2, 3), (3, 2), (1, 2), (0, 1), 1, False, 2, 1, 0.3, 0.3),     # trailing rows unused
    (4, 4, 6, 5, (1, 1), (1, 1), (1, 1), (2, 1), 1, False, 4, 4, 0.3, 0.3),     # windows all padding
    (4, 4, 6, 1, (3, 1), (1, 1), (1, 1), (1, 0), 1, True, 1, 4, 0.3, 0.3),      # one column
    (8, 8, 6, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, 2, 8, 0.3, 0.3),
]


@pytest.mark.parametrize("c,co,t,f,kernel,stride,dilation,padding,pad,shortcut,pe,simd,gap,stall", CASES)
def test_conv_matches_golden(c, co, t, f, kernel, stride, dilation, padding, pad, shortcut, pe, simd,
                             gap, stall):
    seed = hash((c, co, t, f, kernel, stride, dilation, padding, pad, shortcut, pe, simd)) % 10_000
    dut, inputs, want = make_case(c, co, t, f, kernel, stride, dilation, padding, pad, shortcut,
                                  pe, simd, 3, seed)
    got = run_stream(dut, inputs, len(want), gap=gap, stall=stall, seed=seed)
    assert got == want


@pytest.mark.parametrize("c,co,t,f,kernel,padding,shortcut,pe,simd", [
    (4, 4, 6, 5, (3, 3), (1, 1), True, 1, 4),
    (4, 4, 6, 5, (3, 3), (1, 1), True, 1, 2),
    (4, 4, 6, 5, (1, 1), (0, 0), True, 1, 4),        # the shortcut bit captured on the bound's read
    (4, 4, 6, 5, (1, 1), (0, 0), True, 1, 1),
    (4, 4, 6, 5, (3, 3), (1, 1), True, 2, 4),
    (4, 8, 6, 5, (3, 3), (1, 1), False, 2, 2),
    (4, 4, 6, 5, (3, 3), (1, 1), False, 1, 4),
])
def test_threshold_rom(c, co, t, f, kernel, padding, shortcut, pe, simd):
    dut, inputs, want = make_case(c, co, t, f, kernel, (1, 1), (1, 1), padding, 1, shortcut, pe, simd, 2,
                                  pe * 10 + simd, threshold_rom=True)
    assert run_stream(dut, inputs, len(want), gap=0.2, stall=0.2, seed=simd) == want


def drive(dut, inputs, *, gap=0.0, stall=0.0, seed=0, reset_at=None, reset_len=2, max_cycles=20000):
    """Cycle-level driver: ``[(cycle, payload)]`` of output transfers and the input transfer cycles.
    With ``reset_at``, the sync reset is held for ``reset_len`` cycles once ``reset_at[0]`` inputs
    have been transferred, and the input then restarts from ``inputs[reset_at[1]]``."""
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    rng = random.Random(seed)
    outs, ins = [], []
    drain = 2 + len(inputs) // (dut._t * dut._f)

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
            # (The ring may hold several small inferences: the input can finish well ahead.)
            if inputs_done is not None and cyc > inputs_done + drain * dut.cycles_per_inference:
                break

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outs, ins


@pytest.mark.parametrize("c,co,t,f,kernel,stride,dilation,padding,shortcut,pe,simd", [
    (4, 4, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), True, 1, 4),       # P = 36
    (8, 8, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), False, 2, 4),      # P = 72
    (4, 4, 8, 5, (3, 3), (1, 1), (2, 2), (2, 2), False, 4, 4),      # P = 9
    (4, 4, 8, 5, (3, 3), (2, 1), (1, 1), (1, 0), False, 1, 2),      # P = 72
    (4, 4, 6, 5, (3, 3), (1, 1), (1, 1), (0, 0), False, 2, 4),      # P = 18, "valid"
    (4, 4, 6, 5, (1, 1), (1, 1), (1, 1), (0, 0), True, 1, 4),       # P = 4 * 1 + 3
    (8, 4, 6, 5, (1, 1), (1, 1), (1, 1), (0, 0), False, 2, 4),      # P = 2 * 2 + 2
])
def test_cycles_per_inference_is_exact(c, co, t, f, kernel, stride, dilation, padding, shortcut, pe, simd):
    dut, inputs, want = make_case(c, co, t, f, kernel, stride, dilation, padding, 0, shortcut, pe, simd, 3, 5)
    assert dut.compute_bound
    outs, ins = drive(dut, inputs)
    assert [p for _, p in outs] == want
    n = dut.out_frames * dut.out_coeffs
    cyc = [cy for cy, _ in outs]
    # Never stalled: inferences exactly one period apart, and one position every P cycles after the
    # first inference's first rows (within an inference and across the boundaries).
    last = [cyc[(j + 1) * n - 1] for j in range(3)]
    assert np.diff(last).tolist() == [dut.cycles_per_inference] * 2
    assert set(np.diff(cyc[n:]).tolist()) == {dut.cycles_per_position}


def test_cycles_with_short_folds():
    """1x1 kernel, pe = C_out, simd = C: one cycle of work per position, P = 4 (output handshake)."""
    dut, inputs, want = make_case(4, 4, 6, 5, (1, 1), (1, 1), (1, 1), (0, 0), 0, True, 4, 4, 3, 1)
    assert dut.cycles_per_position == 4 and dut.compute_bound
    outs, ins = drive(dut, inputs)
    assert [p for _, p in outs] == want
    n = dut.out_frames * dut.out_coeffs
    last = [outs[(j + 1) * n - 1][0] for j in range(3)]
    assert np.diff(last).tolist() == [dut.cycles_per_inference] * 2 == [4 * n] * 2
    assert set(np.diff([cy for cy, _ in outs]).tolist()) == {4}


def test_input_bound_is_a_lower_bound():
    """1x1, one fold per position but a wide input plane: the input (one position per cycle) and the
    row hand-over limit; cycles_per_inference is then a lower bound."""
    dut, inputs, want = make_case(4, 4, 6, 5, (3, 1), (3, 1), (1, 1), (0, 0), 0, False, 4, 4, 4, 2)
    assert not dut.compute_bound
    outs, ins = drive(dut, inputs)
    assert [p for _, p in outs] == want
    n = dut.out_frames * dut.out_coeffs
    last = [outs[(j + 1) * n - 1][0] for j in range(4)]
    period = np.diff(last).tolist()
    assert all(dd >= max(dut.cycles_per_inference, 6 * 5) for dd in period)
    assert all(dd <= 2 * max(dut.cycles_per_inference, 6 * 5) for dd in period)


@pytest.mark.parametrize("gap,stall,pe,simd", [(0.3, 0.3, 1, 4), (0.0, 0.0, 4, 2)])
def test_reset_mid_inference(gap, stall, pe, simd):
    c, t, f = 4, 6, 5
    dut, inputs, want = make_case(c, c, t, f, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, pe, simd, 3, 11)
    # Reset after 1 inference and 17 inputs of the second, then send inferences 2 and 3 again.
    outs, _ = drive(dut, inputs, gap=gap, stall=stall, seed=3, reset_at=(t * f + 17, t * f))
    n = dut.out_frames * dut.out_coeffs
    assert [p for _, p in outs] == want[n:]


def test_figures():
    w = np.zeros((32, 288), int)
    dut = StreamedConv(w, np.ones(32), np.zeros((32, 2)), channels=32, frames=25, coeffs=13,
                       kernel=(3, 3), padding=(1, 1), pad_bit=1, shortcut=True, pe=1, simd=32)
    assert (dut.out_frames, dut.out_coeffs, dut.window_elems) == (25, 13, 288)
    assert dut.ring_rows == 4
    assert dut.buffer_bits == (3 * 16 + 13) * 32
    assert dut.weight_bits == 32 * 288
    assert dut.threshold_bits == 32 * (1 + 2 * 9)
    assert dut.cycles_per_position == 32 * 9
    assert dut.cycles_per_inference == 25 * 13 * 32 * 9
    assert dut.compute_bound
    # A "valid" 3x3 keeps the next inference's first three rows too; stride 2 two rows ahead.
    dut = StreamedConv(np.zeros((4, 36), int), np.ones(4), np.zeros(4), channels=4, frames=8,
                       coeffs=5, kernel=(3, 3))
    assert dut.ring_rows == 6
    dut = StreamedConv(np.zeros((4, 36), int), np.ones(4), np.zeros(4), channels=4, frames=8,
                       coeffs=5, kernel=(3, 3), stride=(2, 1), padding=(1, 0))
    assert dut.ring_rows == 5


def _conv(**kw):
    args = dict(channels=4, frames=6, coeffs=5, kernel=(3, 3), padding=(1, 1))
    args.update(kw)
    c, (kt, kf) = args["channels"], args["kernel"]
    co = kw.pop("co", c)
    args.pop("co", None)
    s = 2 if args.get("shortcut") else 1
    return StreamedConv(np.zeros((co, c * kt * kf), int), np.ones(co), np.zeros((co, s)), **args)


@pytest.mark.parametrize("kwargs,match", [
    ({"simd": 3}, "simd=3 must divide the 4 input channels"),
    ({"pe": 3}, "pe=3 must divide the 4 output channels"),
    ({"shortcut": True, "stride": (2, 1)}, "needs stride 1"),
    ({"shortcut": True, "padding": (0, 0)}, "'same' output size"),
    ({"shortcut": True, "co": 8}, "as many output as input channels"),
    ({"shortcut": True, "kernel": (2, 3), "dilation": (2, 1), "padding": (1, 1)}, "kernel tap"),
    ({"kernel": (5, 3), "padding": (0, 1), "frames": 4}, "spans 5 in time"),
    ({"pad_bit": 2}, "pad_bit must be 0 or 1"),
])
def test_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _conv(**kwargs)


@pytest.mark.parametrize("kw", [
    dict(channels=32, frames=25, coeffs=13, kernel=(3, 3), padding=(1, 1), shortcut=True, pe=1, simd=32),
    dict(channels=8, frames=6, coeffs=5, kernel=(3, 3), stride=(2, 1), padding=(1, 0), pe=2, simd=4),
    dict(channels=4, frames=6, coeffs=5, kernel=(1, 1), pe=4, simd=4),
    dict(channels=8, frames=6, coeffs=5, kernel=(3, 3), padding=(1, 1), shortcut=True, pe=1, simd=4,
         threshold_rom=True),
])
def test_converts_to_verilog(kw):
    from amaranth.back import verilog
    text = verilog.convert(_conv(**kw), name="sconv")
    assert "module sconv" in text


def test_random_geometries():
    """Random shapes, kernels, strides, dilations, paddings and foldings: outputs with gaps and stalls,
    and, never stalled, the period of back-to-back inferences (exact when compute-bound)."""
    rng = random.Random(7)
    n = 0
    while n < 10:
        c = rng.choice([2, 4, 6])
        co = c if rng.random() < 0.5 else rng.choice([2, 4, 6])
        t, f = rng.randint(1, 7), rng.randint(1, 6)
        k, st = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 2), rng.randint(1, 2))
        d, p = (rng.randint(1, 2), rng.randint(1, 2)), (rng.randint(0, 2), rng.randint(0, 2))
        sc = co == c and st == (1, 1) and rng.random() < 0.7
        if sc:                                    # a "same" geometry
            k = (rng.choice([1, 3]), rng.choice([1, 3]))
            p = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        pe = rng.choice([q for q in range(1, co + 1) if co % q == 0])
        simd = rng.choice([q for q in range(1, c + 1) if c % q == 0])
        try:
            dut, inputs, want = make_case(c, co, t, f, k, st, d, p, rng.randint(0, 1), sc, pe, simd, 3, n)
        except ValueError:
            continue
        args = (c, co, t, f, k, st, d, p, sc, pe, simd)
        assert run_stream(dut, inputs, len(want), gap=0.3, stall=0.3, seed=n) == want, args
        outs, _ = drive(dut, inputs)
        # (With padding wider than the kernel reach, the next inference's all-padding windows follow.)
        assert [q for _, q in outs[:len(want)]] == want, args
        m = dut.out_frames * dut.out_coeffs
        period = np.diff([outs[(j + 1) * m - 1][0] for j in range(3)]).tolist()
        if dut.compute_bound:
            assert period == [dut.cycles_per_inference] * 2, args
        else:
            assert min(period) >= max(dut.cycles_per_inference, t * f), args
        n += 1
