"""The integer residual stream (``shortcut=int``, Bi-Real Net) in the engine style: the layer engine
alone equals the golden model in Amaranth's simulator under stream gaps and backpressure at several
foldings, on exactly its modelled cycles; the whole engine network (first layer writing the
stream, engine, the serial tail after the ReLU clamp) equals the golden model in Verilator, within
5% of the cost model; the pipeline style refuses the stream in one line; the budget counts the
stream map in the weight memory."""

import numpy as np
import pytest

import specgen
from kwsbnn.errors import KwsError
from kwsbnn.hw.engine import STREAM_LANES, LayerEngine
from kwsbnn.hw.testing import inference_stamps, run_stream
from kwsbnn.sw import deploy

C, T, F = 8, 5, 4


def _values(r):
    """The engine's input: per position (t-major), the ``C`` values in channel order."""
    return [int(v) & 0xFF for v in np.asarray(r).transpose(0, 2, 3, 1).reshape(-1)]


@pytest.mark.parametrize("pe,simd,lo", [(1, 8, 0), (2, 4, -128), (8, 4, 0)])
def test_stream_engine_matches_golden_under_gaps_and_backpressure(pe, simd, lo):
    layers = specgen.stream_layers(1, C, lo=lo)
    dut = LayerEngine(layers, channels=C, frames=T, coeffs=F, pe=pe, simd=simd)
    r = np.random.default_rng(2).integers(-128, 128, (2, C, T, F))
    want = specgen.stream_golden(layers, r)
    assert len(np.unique(want)) > 30 and (want.min() >= 0) == (lo == 0)     # the stream moves
    exp = specgen.stream_words(want)
    got = run_stream(dut, _values(r), len(exp), gap=0.3, stall=0.3, seed=pe + simd, load=dut.image(),
                     load_gap=0.2)
    assert got == exp


@pytest.mark.parametrize("pe,simd", [(1, 8), (8, 4)])
def test_stream_engine_cycles_are_exact(pe, simd):
    """Back to back, output taken at once: the period is ``T F C + 7 + sum_l T F (C / 8) (2 + GF SF)
    + L (9 + pe)`` (input, the W and R slots of each group of 8 channels, the drain)."""
    layers = specgen.stream_layers(5, C)
    dut = LayerEngine(layers, channels=C, frames=T, coeffs=F, pe=pe, simd=simd)
    n, per = 3, T * F * C // STREAM_LANES
    inputs = _values(np.random.default_rng(6).integers(-128, 128, (n, C, T, F)))
    stamps = inference_stamps(dut, inputs, n, per)
    sf = 9 * C // simd
    gf = STREAM_LANES // pe
    assert dut.cycles_per_inference == T * F * C + 6 + 3 * (T * F * (2 + gf * sf) + 9 + pe)
    assert list(np.diff(stamps)) == [dut.cycles_per_inference] * (n - 1)
    assert dut.memory_words == dut.weight_words + T * F * C // STREAM_LANES
    assert dut.threshold_words == 0 and dut.load_words == dut.weight_words


@pytest.mark.parametrize("change,match", [
    (lambda ls: ls[1].update(smul=ls[1]["smul"] + 1), "2\\*\\*shift"),
    (lambda ls: ls[1].update(out="bits", direction=np.ones(C), threshold=np.zeros((C, 1))),
     "must write it"),
    (lambda ls: ls[2].update(in_threshold=None, shortcut="none", smul=np.zeros(C, np.int64)),
     "every engine layer carries the integer stream"),
    (lambda ls: ls[0].update(stride=[2, 1]), "stride 1"),
])
def test_stream_engine_refuses_what_it_cannot_run(change, match):
    layers = specgen.stream_layers(3, C)
    change(layers)
    with pytest.raises(ValueError, match=match):
        LayerEngine(layers, channels=C, frames=T, coeffs=F, pe=1, simd=8)._MustUse__silence = True


def test_stream_engine_refuses_foldings_that_would_stall():
    with pytest.raises(ValueError, match="fewer than its stream updates"):
        LayerEngine(specgen.stream_layers(3, C), channels=C, frames=T, coeffs=F, pe=8, simd=8)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="multiple of 8 channels"):
        LayerEngine([specgen.stream_conv(rng, "c1", 12)], channels=12, frames=T, coeffs=F)


def test_pipeline_style_refuses_the_stream_in_one_line(tmp_path):
    from kwsbnn.hw.network import Network
    from kwsbnn.hw.plan import UnsupportedNetwork
    dep = deploy.load(deploy.save(specgen.stream_kws(0), tmp_path / "s"))
    with pytest.raises(UnsupportedNetwork, match="pipeline style does not run the integer residual "
                                                  "stream") as e:
        Network(dep)
    assert "\n" not in str(e.value.args[0]) and "engine" in e.value.args[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained-like stream network of the shipped ``binary``'s options (8 channels,
    25 x 13 input, pooling folded into the first layer, last=int8)."""
    from kwsbnn.sw.integer import integer_spec
    model = specgen.trained_like("binary", "redesign,shortcut=int,last=int8,first_weights=bin,pool=4x3,"
                                 "stages=8x1-8x2,dilation=on", seed=1, width=8, t=25, f=13)
    return deploy.load(deploy.save(integer_spec(model), tmp_path_factory.mktemp("tl") / "m"))


def test_trained_like_stream_network_equals_golden_in_verilator(trained, tmp_path):
    from kwsbnn.hw.cost import engine_folding, layer_costs
    from kwsbnn.sim.network import simulate
    assert [layer.get("in_threshold") is not None for layer in trained.layers[:4]] == [False] + [True] * 3
    folding = engine_folding(trained)
    assert folding["conv0"].get("boxsum")
    res = simulate(trained, tmp_path / "sim", count=8, seed=3, gap=0.3, stall=0.3, folding=folding)
    assert res["report"]["style"] == "engine"
    assert res["failed"] == 0 and res["equal"] == res["total"] == 8
    res = simulate(trained, tmp_path / "sim", count=4, seed=4, folding=folding)
    model = layer_costs(trained, folding)["cycles_per_inference"]
    assert res["equal"] == 4 and abs(res["cycles_steady"] - model) <= 0.05 * model


def test_deep_stream_network_equals_golden_in_verilator(tmp_path):
    """The deep redesign (``stages=Wx2-Wx3``: five binary layers on the stream, the fronts' ``deep``
    family) through the same engine: more layers in the engine's schedule, exact, on the cost model's
    cycles."""
    from kwsbnn.hw.cost import engine_folding, layer_costs
    from kwsbnn.sim.network import simulate
    from kwsbnn.sw.integer import integer_spec
    model = specgen.trained_like("binary", "redesign,shortcut=int,last=int8,first_weights=bin,pool=4x3,"
                                 "stages=8x2-8x3,dilation=on", seed=2, width=8, t=25, f=13)
    dep = deploy.load(deploy.save(integer_spec(model), tmp_path / "m"))
    assert [layer.get("in_threshold") is not None for layer in dep.layers[:6]] == [False] + [True] * 5
    folding = engine_folding(dep)
    res = simulate(dep, tmp_path / "sim", count=4, seed=5, folding=folding)
    model_cycles = layer_costs(dep, folding)["cycles_per_inference"]
    assert res["report"]["style"] == "engine"
    assert res["failed"] == 0 and res["equal"] == res["total"] == 4
    assert abs(res["cycles_steady"] - model_cycles) <= 0.05 * model_cycles


def test_random_stream_network_with_python_stream_models_and_a_reset(tmp_path):
    """Another folding (the engine at 4 lanes, the first layer at one), random constants, the
    last layer without the ReLU; transfer by transfer from Python after an abandoned inference and
    a reset."""
    from kwsbnn.hw.cost import engine_folding
    from kwsbnn.sim.network import simulate
    spec = specgen.stream_kws(4, lo=-128)
    dep = deploy.load(deploy.save(spec, tmp_path / "s"))
    folding = engine_folding(dep, pe=1, simd=4, front={"conv0": {"pe": 1, "simd": 9}})
    folding.layers["conv0"]["boxsum"] = True
    res = simulate(dep, tmp_path / "sim", count=5, seed=14, gap=0.3, stall=0.3, reset_after=95,
                   driver="python", folding=folding)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 5


def test_stream_map_counts_against_the_weight_memory(tmp_path):
    """160 channels: 675 kbit of weights fit the four SPRAMs, but with the 406 kbit stream map
    (101 x 40 input, 25 x 13 positions x 160 x 8 bits) they do not: an error with the numbers."""
    from kwsbnn.hw.folding import engine_for_budget, resolve_budget
    dep = deploy.load(deploy.save(specgen.stream_kws(0, c=160, t=101, f=40), tmp_path / "s160"))
    with pytest.raises(KwsError, match=r"weights \(675.0 Kibit\) and the integer stream's map "
                                       r"\(406.2 Kibit\) are 1,081.2 Kibit; the weight memory holds "
                                       r"1,024 Kibit"):
        engine_for_budget(dep, resolve_budget("icebreaker"))


def test_verilog_for_the_shipped_binary_on_the_icebreaker_writes_the_engine_design(tmp_path, capsys):
    """`kwsbnn verilog --model binary-w64 --board icebreaker`: the engine design (64 lanes, the first
    layer with its pooling folded in, its MVU on the window's held vector), the loader image of its
    weights, the stream map counted in the SPRAM words; by the estimate it fits the board with the
    UART, the SPRAM ring and the weight loader."""
    import json

    from kwsbnn.cli import main
    assert main(["verilog", "--model", "binary-w64", "--board", "icebreaker", "--out", str(tmp_path / "v"),
                 "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["style"] == "engine" and report["engine_lanes"] == 64
    assert report["folding"]["layers"]["conv0"]["boxsum"] and report["folding"]["layers"]["conv0"]["hold"]
    assert report["stream_map_words"] == 25 * 13 * 64 // 8
    assert report["spram_words"] == report["weight_memory_words"] + report["stream_map_words"] <= 16384
    words = (tmp_path / "v" / "weights.hex").read_text().split()
    assert len(words) == report["load_words"] == report["weight_memory_words"]
    budget = report["resources"]["budget"]
    assert budget["estimate"]["spram"] == 4 and budget["estimate"]["block_ram"] <= 30
    assert budget["fits"] and "does not fit" not in out.err
