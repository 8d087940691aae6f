# amaranth: UnusedElaboratable=no
"""Gateware units in Amaranth's simulator against NumPy: random data, random input gaps, random
output backpressure, several transfers back to back."""

import random

import numpy as np
import pytest

from kwsbnn.boards.uart import UARTRx, UARTTx
from kwsbnn.hw.mvu import FoldingError, MatrixVectorUnit
from kwsbnn.hw.scores import GapDenseArgmax
from kwsbnn.hw.testing import run_stream
from kwsbnn.sw import packing
from kwsbnn.sw.fold import apply_step


@pytest.mark.parametrize("c,k,pe,simd,gap,stall", [
    (8, 24, 1, 24, 0.0, 0.0), (8, 24, 2, 8, 0.3, 0.3), (6, 18, 3, 3, 0.5, 0.0), (4, 16, 4, 16, 0.0, 0.6)])
def test_mvu_matches_numpy(c, k, pe, simd, gap, stall):
    rng = np.random.default_rng(c * 100 + k + pe)
    w = rng.integers(0, 2, (c, k))
    d = rng.choice([-1, 1], c)
    t = rng.integers(-k // 2, k // 2 + 1, c)
    t[0] = -k - 1                                # a constant channel
    xs = rng.integers(0, 2, (25, k))
    acc = k - 2 * (xs[:, None, :] ^ w[None]).sum(-1)
    want = packing.pack_rows(apply_step(acc, d, t).astype(np.uint8))
    dut = MatrixVectorUnit(w, direction=d, threshold=t, pe=pe, simd=simd)
    assert run_stream(dut, packing.pack_rows(xs), len(xs), gap=gap, stall=stall, seed=k) == want


@pytest.mark.parametrize("pe,simd,hold", [(1, 9, False), (2, 3, False), (4, 18, False), (2, 3, True)])
def test_mvu_shortcut_selects_threshold_by_input_bit(pe, simd, hold):
    rng = np.random.default_rng(pe * 10 + simd)
    c, k = 4, 18
    w = rng.integers(0, 2, (c, k))
    d = rng.choice([-1, 1], c)
    t = rng.integers(-6, 7, (c, 2))
    xs = rng.integers(0, 2, (20, k))
    scs = rng.integers(0, 2, (20, c))
    acc = k - 2 * (xs[:, None, :] ^ w[None]).sum(-1)
    thr = np.where(scs == 1, t[:, 1], t[:, 0])
    want = packing.pack_rows(np.where(d > 0, acc >= thr, acc <= thr).astype(np.uint8))
    words = packing.pack_rows(np.concatenate([xs, scs], axis=1))
    dut = MatrixVectorUnit(w, direction=d, threshold=t, shortcut=True, pe=pe, simd=simd, hold=hold)
    assert run_stream(dut, words, len(xs), gap=0.3, stall=0.3, seed=pe) == want


@pytest.mark.parametrize("pe,simd,w_prec,hold", [(1, 9, "bin", False), (3, 3, "bin", False),
                                                   (2, 3, "int8", False), (1, 9, "int8", False),
                                                   (6, 9, "int8", False), (1, 1, "bin", True),
                                                   (3, 3, "bin", True)])
def test_mvu_int8_input_accumulators(pe, simd, w_prec, hold):
    """Accumulators of int8 inputs; with ``hold`` the unit works on the producer's held vector
    (no copy), which the stream rules keep still until the unit takes it with its last fold."""
    rng = np.random.default_rng(simd)
    c, k = 6, 9
    w = rng.integers(0, 2, (c, k)) if w_prec == "bin" else rng.integers(-128, 128, (c, k))
    xs = rng.integers(-128, 128, (15, k))
    xs[0] = 127
    xs[1] = -128
    acc = xs @ ((2 * w - 1) if w_prec == "bin" else w).T
    dut = MatrixVectorUnit(w, in_prec="int8", w_prec=w_prec, out="acc", pe=pe, simd=simd, hold=hold)
    assert dut.holds_input == hold
    aw = dut.acc_width
    words = [sum((int(v) & 0xff) << (8 * j) for j, v in enumerate(x)) for x in xs]
    nf = c // pe
    got = run_stream(dut, words, len(xs) * nf, gap=0.3, stall=0.3, seed=simd)
    mask = (1 << aw) - 1
    for n in range(len(xs)):
        vals = [(got[n * nf + ch // pe] >> (aw * (ch % pe))) & mask for ch in range(c)]
        vals = [v - (1 << aw) if v >> (aw - 1) else v for v in vals]
        assert vals == acc[n].tolist()


def test_mvu_rejects_folding_that_does_not_divide():
    with pytest.raises(FoldingError, match="PE=3 must divide 8 channels"):
        MatrixVectorUnit(np.zeros((8, 16), int), direction=np.ones(8), threshold=np.zeros(8), pe=3, simd=16)


@pytest.mark.parametrize("binary", [True, False])
def test_gap_dense_argmax_matches_numpy(binary):
    rng = np.random.default_rng(7)
    c, p, k = 6, 5, 4
    w = rng.integers(0, 2, (k, c)) if binary else rng.integers(-127, 128, (k, c))
    b = rng.integers(-50, 50, k)
    dut = GapDenseArgmax(w, b, positions=p, binary_weights=binary)
    n = 12
    bits = rng.integers(0, 2, (n, p, c))
    bits[0] = 1                                  # all-ones and all-zeros extremes
    bits[1] = 0
    wv = 2 * w - 1 if binary else w
    scores = (2 * bits - 1).sum(axis=1) @ wv.T + b
    got = run_stream(dut, packing.pack_rows(bits.reshape(n * p, c)), n, gap=0.3, stall=0.3, seed=3)
    for m in range(n):
        assert int(got[m].cls) == int(np.argmax(scores[m]))
        assert [int(got[m].scores[j]) for j in range(k)] == scores[m].tolist()


@pytest.mark.parametrize("lo,hi", [(0, 127), (-128, 127)])
def test_gap_dense_argmax_int8_inputs(lo, hi):
    """A last layer with 8-bit outputs: the pool sums the values, the dense layer reads the sums."""
    rng = np.random.default_rng(lo + 200)
    c, p, k = 5, 7, 3
    w = rng.integers(-127, 128, (k, c))
    b = rng.integers(-500, 500, k)
    dut = GapDenseArgmax(w, b, positions=p, binary_weights=False, in_prec="int8", lo=lo, hi=hi)
    n = 10
    y = rng.integers(lo, hi + 1, (n, p, c))
    y[0], y[1] = hi, lo                          # the extremes of every sum
    scores = y.sum(axis=1) @ w.T + b
    words = [sum((int(v) & 0xFF) << (8 * ch) for ch, v in enumerate(row)) for row in y.reshape(n * p, c)]
    got = run_stream(dut, words, n, gap=0.3, stall=0.3, seed=4)
    for m in range(n):
        assert int(got[m].cls) == int(np.argmax(scores[m]))
        assert [int(got[m].scores[j]) for j in range(k)] == scores[m].tolist()


def test_argmax_ties_take_the_lowest_index():
    w = np.zeros((4, 2), int)
    b = np.array([1, 5, 5, 2])
    dut = GapDenseArgmax(w, b, positions=1, binary_weights=False)
    got = run_stream(dut, [0, 3], 2, gap=0, stall=0, seed=0)
    assert [int(g.cls) for g in got] == [1, 1]


def test_uart_loopback():
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring

    class Loop(wiring.Component):
        def __init__(self):
            self.tx_ = UARTTx(8)
            self.rx_ = UARTRx(8)
            super().__init__({"i": wiring.In(stream.Signature(8)), "o": wiring.Out(stream.Signature(8))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.tx, m.submodules.rx = self.tx_, self.rx_
            wiring.connect(m, wiring.flipped(self.i), self.tx_.i)
            wiring.connect(m, self.rx_.o, wiring.flipped(self.o))
            m.d.comb += self.rx_.rx.eq(self.tx_.tx)
            return m

    data = [0x00, 0xff, 0x55, 0xa5, 0x01, 0x80]
    got = run_stream(Loop(), data, len(data), gap=0.3, stall=0.0, seed=4)
    assert got == data


@pytest.mark.parametrize("c,lanes,par,gap,stall,regc", [
    (6, 1, 1, 0.0, 0.0, False), (6, 3, 1, 0.3, 0.3, False), (6, 6, 2, 0.2, 0.5, False),
    (4, 4, 4, 0.0, 0.6, False), (8, 2, 2, 0.5, 0.0, False), (8, 4, 2, 0.3, 0.5, True),
    (4, 4, 4, 0.0, 0.6, True)])
def test_requantize_matches_numpy(c, lanes, par, gap, stall, regc):
    """``y = clamp((acc * mul + add) >> shift, lo, hi)`` per channel, C/lanes transfers in, one
    transfer of C int8 values out per position, under gaps and backpressure (``regc``: the
    constants registered before the multipliers, as an ECP5 engine's front builds it)."""
    from kwsbnn.hw.requant import Requantize
    rng = np.random.default_rng(c * 10 + lanes + par)
    aw, positions = 10, 23
    mul = rng.integers(-3000, 30000, c)
    add = rng.integers(-(1 << 20), 1 << 20, c)
    shift = 14
    acc = rng.integers(-(1 << (aw - 1)), 1 << (aw - 1), (positions, c))
    acc[0] = (1 << (aw - 1)) - 1
    acc[1] = -(1 << (aw - 1))
    y = np.clip((acc * mul + add) >> shift, 0, 127)
    assert 0 < (y == 0).mean() < 1 and (y == 127).any() and ((y > 0) & (y < 127)).any()
    words = []
    for row in acc:
        for g in range(c // lanes):
            words.append(sum((int(v) & ((1 << aw) - 1)) << (p * aw)
                             for p, v in enumerate(row[g * lanes:(g + 1) * lanes])))
    want = [sum(int(v) << (8 * ch) for ch, v in enumerate(row)) for row in y]
    dut = Requantize(mul, add, shift, lo=0, hi=127, acc_width=aw, lanes=lanes, par=par,
                     register_constants=regc)
    assert dut.cycles_per_position == c // par
    assert run_stream(dut, words, positions, gap=gap, stall=stall, seed=c + lanes) == want


def test_requantize_signed_range_and_refusals():
    from kwsbnn.hw.requant import Requantize
    rng = np.random.default_rng(3)
    acc = rng.integers(-200, 200, (9, 2))
    mul, add = np.array([70, -45]), np.array([5, -9])
    y = np.clip((acc * mul + add) >> 6, -100, 90)
    words = [sum((int(v) & 0x3FF) << (p * 10) for p, v in enumerate(row)) for row in acc]
    want = [sum((int(v) & 0xFF) << (8 * ch) for ch, v in enumerate(row)) for row in y]
    dut = Requantize(mul, add, 6, lo=-100, hi=90, acc_width=10, lanes=2, par=1)
    assert run_stream(dut, words, len(acc), gap=0.2, stall=0.2, seed=1) == want
    with pytest.raises(ValueError, match="par=3 must divide lanes=2"):
        Requantize(mul, add, 6, lo=0, hi=127, acc_width=10, lanes=2, par=3)
    with pytest.raises(ValueError, match="lanes=3 must divide"):
        Requantize(mul, add, 6, lo=0, hi=127, acc_width=10, lanes=3)


def test_requantize_registers_its_constants_in_front_of_the_block_ram_engine():
    """The integer stream's first layer registers its ROM's output before the multipliers when it
    feeds the ECP5's block-RAM engine, with one multiplier too (that path held the 96-channel
    ULX3S design to 58 MHz), and with several; into the iCEBreaker's SPRAM engine at one
    multiplier it stays as it was; layers off the stream never do."""
    from types import SimpleNamespace

    from kwsbnn.hw.network import _register_constants
    stream, plain = SimpleNamespace(stream_out=True), SimpleNamespace(stream_out=False)
    assert _register_constants(stream, 1, "bram") and _register_constants(stream, 3, "bram")
    assert _register_constants(stream, 2, "spram") and not _register_constants(stream, 1, "spram")
    assert not any(_register_constants(plain, par, mem) for par in (1, 2) for mem in ("bram", "spram"))
