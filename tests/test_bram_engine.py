"""The block-RAM layer engine (ECP5): the integer residual stream at up to a window per cycle. The
engine alone equals the golden model in Amaranth's simulator under stream gaps and backpressure at
narrow and wide foldings (its last layer's values, or their sums over the positions with
``pool``), on exactly its modelled cycles; the dense tail on the sums equals the golden scores;
the whole engine network (first layer, engine, DenseArgmax) equals the golden model in Verilator
at a wide folding, within 5% of the cost model; the folding search for an ECP5 budget picks a
wider engine than the SPRAM one; a network a board cannot hold is an error naming that board's
memory."""

import numpy as np
import pytest

import specgen
from kwsbnn.errors import KwsError
from kwsbnn.hw.bram_engine import BramEngine
from kwsbnn.hw.engine import STREAM_LANES
from kwsbnn.hw.testing import inference_stamps, run_stream
from kwsbnn.sw import deploy

C, T, F = 8, 5, 4


def _positions(r):
    """The engine's output: per position (t-major), channel ``c`` at bits 8c."""
    n, c, t, f = r.shape
    return [sum((int(r[i, ch, tt, ff]) & 0xFF) << (8 * ch) for ch in range(c))
            for i in range(n) for tt in range(t) for ff in range(f)]


@pytest.mark.parametrize("pe,simd,lo", [(1, 8, 0), (2, 24, -128), (8, 72, 0), (4, 36, 0)])
def test_bram_engine_matches_golden_under_gaps_and_backpressure(pe, simd, lo):
    """Narrow (8 lanes, a chunk per tap) to wide (PE 8 x a whole 72-bit window: 576 lanes, nine
    map copies so that a window is read in one cycle)."""
    layers = specgen.stream_layers(1, C, lo=lo)
    dut = BramEngine(layers, channels=C, frames=T, coeffs=F, pe=pe, simd=simd)
    assert dut.lanes == pe * simd and dut.load_words == 0
    r = np.random.default_rng(2).integers(-128, 128, (3, C, T, F))
    want = specgen.stream_golden(layers, r)
    assert len(np.unique(want)) > 30 and (want.min() >= 0) == (lo == 0)     # the stream moves
    exp = _positions(want)
    got = run_stream(dut, specgen.stream_words(r), len(exp), gap=0.3, stall=0.4, seed=pe + simd)
    assert got == exp


@pytest.mark.parametrize("pe,simd,lo", [(1, 72, 0), (8, 72, -128), (2, 24, 0)])
def test_pooling_engine_sums_the_last_layer_exactly(pe, simd, lo):
    """``pool=True``: per inference ``C / pe`` transfers of ``pe`` sums over the positions."""
    layers = specgen.stream_layers(1, C, lo=lo)
    dut = BramEngine(layers, channels=C, frames=T, coeffs=F, pe=pe, simd=simd, pool=True)
    r = np.random.default_rng(2).integers(-128, 128, (3, C, T, F))
    sums = specgen.stream_golden(layers, r).sum(axis=(2, 3))
    gw = dut.sum_width
    assert dut.sum_range == (lo * T * F, 127 * T * F) and (sums < 0).any() == (lo < 0)
    exp = [sum((int(sums[i, nf * pe + p]) & ((1 << gw) - 1)) << (gw * p) for p in range(pe))
           for i in range(3) for nf in range(C // pe)]
    got = run_stream(dut, specgen.stream_words(r), len(exp), gap=0.3, stall=0.5, seed=pe)
    assert got == exp


def test_dense_tail_on_pooled_sums_gives_the_golden_scores():
    """DenseArgmax: scores ``w g + bias`` and the first largest, under gaps and backpressure."""
    from kwsbnn.hw.dense import DenseArgmax
    rng = np.random.default_rng(7)
    c, k, lanes = 16, 5, 4
    w, bias = rng.integers(-127, 128, (k, c)), rng.integers(-1000, 1000, k)
    bias[1] = bias[3] = bias.max() + 1
    dut = DenseArgmax(w, bias, lanes=lanes, sum_lo=-128 * 20, sum_hi=127 * 20)
    g = rng.integers(-128 * 20, 127 * 20, (4, c))
    g[3] = 0                                         # scores = bias: classes 1 and 3 tie, 1 wins
    gw = dut.sum_width
    words = [sum((int(g[i, n * lanes + p]) & ((1 << gw) - 1)) << (gw * p) for p in range(lanes))
             for i in range(4) for n in range(c // lanes)]
    got = run_stream(dut, words, 4, gap=0.3, stall=0.5, seed=1)
    for i, res in enumerate(got):
        scores = w @ g[i] + bias
        assert [res.scores[j] for j in range(k)] == list(scores)
        assert res.cls == int(np.argmax(scores)) and (i != 3 or res.cls == 1)


@pytest.mark.parametrize("pe,simd,pool", [(1, 72, False), (2, 24, True), (8, 72, False), (8, 72, True),
                                           (8, 8, True)])
def test_bram_engine_cycles_are_exact(pe, simd, pool):
    """Back to back, output taken at once: the period is the computation's ``sum_l (T F P_l +
    ceil(9 / copies) + drain) + 1`` (``+ 0`` with ``pool``), with ``P_l = max(NF SF, ceil(9 /
    copies))`` (the input of the next inference arrives meanwhile)."""
    layers = specgen.stream_layers(5, C)
    dut = BramEngine(layers, channels=C, frames=T, coeffs=F, pe=pe, simd=simd, pool=pool)
    n = 4
    per = C // pe if pool else T * F
    stamps = inference_stamps(dut, specgen.stream_words(np.random.default_rng(6).integers(-128, 128, (n, C, T, F))), n, per)
    nf, sf = C // pe, 9 * C // simd
    rd = -(-9 // dut.map_copies)
    per_pos = max(nf * sf, rd)
    assert dut.map_copies == -(-9 // (nf * sf))
    assert dut.compute_cycles == 3 * (T * F * per_pos + rd + dut.drain) + (0 if pool else 1)
    assert dut.cycles_per_inference == max(dut.compute_cycles, T * F * C // STREAM_LANES)
    assert list(np.diff(stamps)) == [dut.cycles_per_inference] * (n - 1)


@pytest.mark.parametrize("kw,match", [
    (dict(pe=3), "must divide 8"),
    (dict(pe=1, simd=5), "must divide every layer's window"),
])
def test_bram_engine_refuses_foldings_it_cannot_run(kw, match):
    with pytest.raises(ValueError, match=match):
        BramEngine(specgen.stream_layers(3, C), channels=C, frames=T, coeffs=F, **kw)


def test_bram_engine_refuses_bit_networks():
    rng = np.random.default_rng(0)
    layer = specgen.conv(rng, "c1", C, C, in_prec="bin", padding=(1, 1))
    with pytest.raises(ValueError, match="integer residual stream only"):
        BramEngine([layer], channels=C, frames=T, coeffs=F)


def test_stream_network_with_a_wide_bram_engine_equals_golden_in_verilator(tmp_path):
    """The whole network of a random 8-channel stream model (first layer with its pooling folded
    in, the engine at PE 8 x SIMD 72 = 576 lanes pooling its last layer, DenseArgmax), random gaps
    and backpressure, then back to back against the cost model."""
    from kwsbnn.hw.cost import engine_folding, layer_costs
    from kwsbnn.sim.network import simulate
    dep = deploy.load(deploy.save(specgen.stream_kws(6), tmp_path / "s"))
    folding = engine_folding(dep, pe=8, simd=72, memory="bram")
    assert folding.memory == "bram" and folding.to_dict()["memory"] == "bram"
    res = simulate(dep, tmp_path / "sim", count=6, seed=3, gap=0.3, stall=0.3, folding=folding)
    assert res["report"]["style"] == "engine" and res["report"]["load_words"] == 0
    assert not (tmp_path / "sim" / "verilog" / "weights.hex").exists()
    assert res["failed"] == 0 and res["equal"] == res["total"] == 6
    res = simulate(dep, tmp_path / "sim", count=4, seed=4, folding=folding)
    model = layer_costs(dep, folding)["cycles_per_inference"]
    assert res["equal"] == 4 and abs(res["cycles_steady"] - model) <= 0.05 * model


@pytest.fixture(scope="module")
def wide64(tmp_path_factory):
    """A random 64-channel stream network of the shipped ``binary``'s shape (101 x 40 input)."""
    path = tmp_path_factory.mktemp("w64") / "s"
    return deploy.load(deploy.save(specgen.stream_kws(0, c=64, t=101, f=40), path))


def test_folding_search_for_the_ulx3s_picks_a_wide_block_ram_engine(wide64):
    """An ECP5 budget gets the block-RAM engine at far more than the SPRAM engine's 64 lanes, and
    its estimate fits the board with the UART and the ring; the iCEBreaker's stays at 64 lanes."""
    from kwsbnn.hw.cost import layer_costs
    from kwsbnn.hw.folding import engine_for_budget, for_budget, resolve_budget
    from kwsbnn.hw.resources import estimate
    ulx = for_budget(wide64, "ulx3s-85f", clk_hz=60e6)
    assert ulx.style == "engine" and ulx.memory == "bram"
    costs = layer_costs(wide64, ulx)
    assert costs["engine_lanes"] >= 8 * 64
    ice = engine_for_budget(wide64, resolve_budget("icebreaker"), clk_hz=24e6, closest=True)
    assert ice.memory == "spram" and layer_costs(wide64, ice)["engine_lanes"] <= 64
    assert costs["cycles_per_inference"] * 20 < layer_costs(wide64, ice)["cycles_per_inference"]
    est = estimate(wide64, ulx, "ecp5", link=True, clk_hz=60e6)
    limits = resolve_budget("ulx3s-85f")["limits"]
    assert all(est[k] <= limits[k] for k in ("logic_cells", "flip_flops", "block_ram", "dsp"))
    assert "spram" not in est and not any(e["name"] == "loader" for e in est["per_layer"])


def test_a_network_the_board_cannot_hold_names_its_memory(tmp_path):
    """256 channels: the ULX3S's block RAM (EBR, DP16KD) cannot hold weights, stream maps and bit
    maps; 160 channels: the iCEBreaker's SPRAM cannot hold weights and stream map. Both errors
    give the numbers."""
    from kwsbnn.hw.folding import engine_for_budget, resolve_budget
    big = deploy.load(deploy.save(specgen.stream_kws(0, c=256, t=101, f=40), tmp_path / "s256"))
    with pytest.raises(KwsError) as e:
        engine_for_budget(big, resolve_budget("ulx3s-85f"))
    msg = e.value.args[0]
    assert "block RAM of ulx3s-85f" in msg and "EBR (DP16KD of 18 Kibit" in msg and "has 208" in msg
    assert "1,728.0 Kibit" in msg and "SPRAM" not in msg and "\n" not in msg
    mid = deploy.load(deploy.save(specgen.stream_kws(0, c=160, t=101, f=40), tmp_path / "s160"))
    with pytest.raises(KwsError, match=r"the weight memory holds 1,024 Kibit \(4 SB_SPRAM256KA"):
        engine_for_budget(mid, resolve_budget("icebreaker"))
