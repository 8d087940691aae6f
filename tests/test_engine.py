"""The layer engine (hw/engine.py) equals the golden model layer by layer in Amaranth's simulator:
shortcuts, dilation, stride, both pad bits, bit and count outputs, every folding, under random
stream gaps and backpressure, with its weights loaded through the loader port; its cycles are those
of its cost model."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

import specgen
from kwsbnn.hw.engine import LayerEngine, engine_layers
from kwsbnn.hw.testing import inference_stamps, run_stream, stream_get, stream_put
from kwsbnn.sw.golden import GoldenModel, windows, xnor_popcount_acc

C, T, F = 8, 6, 5


def _layers(seed: int, last: str = "bits"):
    """Three engine layers as in a deployable model (direction as a bit: 1 means >=)."""
    rng = np.random.default_rng(seed)
    layers = [specgen.conv(rng, "c1", C, C, in_prec="bin", shortcut="bit", pad_bit=1),
              specgen.conv(rng, "c2", C, C, in_prec="bin", dilation=(2, 2), padding=(2, 2), shortcut="bit"),
              specgen.conv(rng, "c3", C, C, in_prec="bin", stride=(2, 1), padding=(1, 0), out=last)]
    for layer in layers:
        if "direction" in layer:
            layer["direction"] = (layer["direction"] > 0).astype(np.int64)
    return layers


def _words(y):
    """One word per position (t-major), bit c = channel c, of maps ``[N, C, T, F]``."""
    n, c, t, f = y.shape
    return [int(sum(int(y[i, ch, tt, ff]) << ch for ch in range(c)))
            for i in range(n) for tt in range(t) for ff in range(f)]


def _expected(layers, xs, dut):
    """The engine's output words: the last layer's bits, or its mismatch counts per fold."""
    x = xs
    for layer in layers[:-1]:
        x = GoldenModel._conv(layer, x, "bin")
    last = layers[-1]
    if last["out"] == "bits":
        return _words(GoldenModel._conv(last, x, "bin"))
    win = windows(x, tuple(last["kernel"]), tuple(last["stride"]), tuple(last["dilation"]),
                  tuple(last["padding"]), last["pad_bit"])
    k = win.shape[-1]
    d = (k - xnor_popcount_acc(win, last["weights"])) // 2            # [N, T', F', C]
    pe, w = dut._pe, dut.count_width
    return [int(sum(int(d[n, t, f, nf * pe + p]) << (p * w) for p in range(pe)))
            for n in range(d.shape[0]) for t in range(d.shape[1]) for f in range(d.shape[2])
            for nf in range(C // pe)]


def _run(dut, inputs, n_out, *, gap=0.0, stall=0.0, seed=0, load_gap=0.0):
    return run_stream(dut, inputs, n_out, gap=gap, stall=stall, seed=seed, load=dut.image(),
                      load_gap=load_gap)


@pytest.mark.parametrize("last,pe,simd", [("bits", 1, 4), ("bits", 2, 2), ("bits", 1, 8),
                                          ("int8", 1, 4), ("int8", 2, 4)])
def test_engine_matches_golden_under_gaps_and_backpressure(last, pe, simd):
    layers = _layers(3, last)
    dut = LayerEngine(layers, channels=C, frames=T, coeffs=F, pe=pe, simd=simd)
    xs = np.random.default_rng(4).integers(0, 2, (3, C, T, F))
    exp = _expected(layers, xs, dut)
    got = _run(dut, _words(xs), len(exp), gap=0.3, stall=0.3, seed=pe * 10 + simd, load_gap=0.3)
    assert got == exp


@pytest.mark.parametrize("last,pe,simd", [("bits", 1, 4), ("int8", 1, 8), ("bits", 2, 2)])
def test_cycles_per_inference_is_exact(last, pe, simd):
    """Back to back, input at one position per cycle, output taken at once: the period between
    inferences is the cost model's ``T F + sum_l T' F' P_l + 5 L`` exactly."""
    layers = _layers(5, last)
    dut = LayerEngine(layers, channels=C, frames=T, coeffs=F, pe=pe, simd=simd)
    n = 3
    inputs = [int(v) for v in np.random.default_rng(6).integers(0, 1 << C, n * T * F)]
    g = dut.layers[-1]
    per = g.positions * (C // pe if last == "int8" else 1)
    stamps = inference_stamps(dut, inputs, n, per)
    assert list(np.diff(stamps)) == [dut.cycles_per_inference] * (n - 1)
    assert dut.compute_cycles == sum(dut.layer_cycles(g) for g in dut.layers) + 5 * 3


def test_reset_keeps_the_weights():
    """Weights loaded, an inference abandoned half way (input taken, output not), a reset: no
    reload, and the next inferences are right."""
    from amaranth.hdl import ClockDomain, Module
    layers = _layers(7)
    dut = LayerEngine(layers, channels=C, frames=T, coeffs=F, pe=1, simd=4)
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.dut = dut
    xs = np.random.default_rng(8).integers(0, 2, (3, C, T, F))
    exp = _expected(layers, xs[1:], dut)
    got = []
    done = []

    async def tb(ctx):
        await stream_put(ctx, dut.wl, dut.image())
        await stream_put(ctx, dut.i, _words(xs[:1]))
        await ctx.tick().repeat(100)
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        done.append(1)
        await stream_put(ctx, dut.i, _words(xs[1:]), rng=random.Random(2), gap=0.2)

    async def get(ctx):
        while not done:
            await ctx.tick()
        got.extend(await stream_get(ctx, dut.o, len(exp), rng=random.Random(1), stall=0.2))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.add_testbench(get)
    sim.run()
    assert got == exp


def test_figures_and_image():
    layers = _layers(9, "int8")
    dut = LayerEngine(layers, channels=C, frames=T, coeffs=F, pe=2, simd=4)
    k = 9 * C
    assert dut.lanes == 8
    assert dut.weight_words == 3 * (C // 2) * (k // 4)
    assert dut.threshold_words == 2 * (C // 2)           # the int8 layer has none
    assert dut.load_words == len(dut.image()) == dut.weight_words + dut.threshold_words
    assert dut.map_bits == 2 * T * F * C
    # word nf*SF + sf, lane p bits p*simd + j = w[nf*pe + p, sf*simd + j]
    w = layers[1]["weights"]
    word = dut.image()[dut.weight_words // 3 + 2 * (k // 4) + 7]
    assert [(word >> (4 + j)) & 1 for j in range(4)] == list(w[5, 28:32])
    assert dut.count_width == 8                        # bits_for(72) + 1: reads as signed
    dut._MustUse__silence = True


@pytest.mark.parametrize("change,match", [
    (lambda ls: ls[0].update(out_channels=4), "input and output channels"),
    (lambda ls: ls[0].update(pool=[2, 2]), "pooling"),
    (lambda ls: ls[0].update(out="int8"), "int8 output only in the last"),
])
def test_rejects_layers_it_cannot_run(change, match):
    layers = _layers(1)
    change(layers)
    with pytest.raises(ValueError, match=match):
        engine_layers(layers, C, T, F)


def test_rejects_more_lanes_than_a_weight_word():
    rng = np.random.default_rng(0)
    layers = [specgen.conv(rng, "c1", 128, 128, in_prec="bin")]
    with pytest.raises(ValueError, match="64-bit weight word"):
        LayerEngine(layers, channels=128, frames=4, coeffs=4, pe=2, simd=64)._MustUse__silence = True


@pytest.mark.parametrize("lanes", [1, 2])
def test_serial_tail_matches_numpy_under_gaps_and_backpressure(lanes):
    """Counts in the engine's order -> requantization, global sums, dense layer, argmax."""
    from kwsbnn.hw.scores import result_layout  # noqa: F401  (the payload layout it emits)
    from kwsbnn.hw.serial_tail import SerialRequantTail
    from kwsbnn.hw.testing import run_stream
    rng = np.random.default_rng(lanes)
    c, k, positions, kk, n = 8, 5, 7, 72, 3
    mul, add, shift = rng.integers(1, 200, c), rng.integers(-5000, 5000, c), 6
    w, bias = rng.integers(-127, 128, (k, c)), rng.integers(-1000, 1000, k)
    dut = SerialRequantTail(-2 * mul, kk * mul + add, shift, lo=0, hi=127, count_width=8, lanes=lanes,
                            positions=positions, weights=w, bias=bias)
    d = rng.integers(0, kk + 1, (n, positions, c))
    acc = kk - 2 * d
    y = np.clip((acc * mul + add) >> shift, 0, 127)
    g = y.sum(axis=1)
    scores = g @ w.T + bias
    words = [int(sum(int(d[i, p, nf * lanes + q]) << (8 * q) for q in range(lanes)))
             for i in range(n) for p in range(positions) for nf in range(c // lanes)]
    got = run_stream(dut, words, n, gap=0.3, stall=0.3, seed=lanes)
    assert y.min() == 0 and y.max() == 127                      # the clamp is exercised
    for i, r in enumerate(got):
        assert [int(r.scores[j]) for j in range(k)] == list(scores[i])
        assert int(r.cls) == int(np.argmax(scores[i]))


def test_board_choice_falls_back_to_the_engine_for_the_wide_model(tmp_path, capsys):
    """binary-wide does not fit the iCEBreaker as a pipeline: `kwsbnn verilog --board icebreaker`
    picks the engine style (64 lanes, 4 SPRAMs), which fits by the estimate, and writes the
    loader's weight image."""
    import json

    from kwsbnn.cli import main
    from kwsbnn.hw.engine import LayerEngine  # noqa: F401
    assert main(["verilog", "--model", "binary-wide", "--board", "icebreaker", "--out",
                 str(tmp_path / "v"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["style"] == "engine" and report["folding"]["style"] == "engine"
    assert report["engine_lanes"] == 64
    budget = report["resources"]["budget"]
    assert budget["fits"] and budget["estimate"]["spram"] == 4
    words = (tmp_path / "v" / "weights.hex").read_text().split()
    assert len(words) == report["load_words"] == report["weight_memory_words"]
    assert report["cycles_per_inference"] == report["layers"][0]["cycles"] + report["engine_cycles"]


def test_weights_beyond_the_spram_fail_before_synthesis(tmp_path):
    """Three binary layers of 256 channels: 1,728 Kibit of weights, more than the 1,024 Kibit of the
    four SPRAMs: an error that gives both numbers."""
    from kwsbnn.errors import KwsError
    from kwsbnn.hw.folding import engine_for_budget, resolve_budget
    from kwsbnn.sw import deploy
    dep = deploy.load(deploy.save(specgen.wide_kws(0, c=256), tmp_path / "w256"))
    with pytest.raises(KwsError, match=r"weights are 1,728.0 Kibit; the weight memory holds 1,024 Kibit"):
        engine_for_budget(dep, resolve_budget("icebreaker"))
