"""The generated accelerator of a network that uses every hardware feature (int8 first layer with
sum pooling, binary convolutions with 1-bit shortcuts, dilation, stride, padding with both pad bits,
gap, int8 dense) equals the golden model in Verilator, under any stream timing and any folding."""

import numpy as np
import pytest
from amaranth.hdl import Fragment

import specgen
from kwsbnn.hw.cost import Folding, layer_costs
from kwsbnn.hw.plan import UnsupportedNetwork, plan
from kwsbnn.sim.network import simulate
from kwsbnn.sw import deploy


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    return deploy.load(deploy.save(specgen.binary_kws(3), tmp_path_factory.mktemp("kws") / "m"))


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    return tmp_path_factory.mktemp("sim")


def test_rtl_equals_golden_under_gaps_and_backpressure(dep, simdir):
    """Gaps and backpressure from the harness, at every cycle (the fast testbench)."""
    res = simulate(dep, simdir, count=40, seed=11, gap=0.3, stall=0.3)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 40


def test_rtl_equals_golden_with_python_stream_models(dep, simdir):
    """The same build driven transfer by transfer from Python, with its own gaps and stalls."""
    res = simulate(dep, simdir, count=12, seed=14, gap=0.3, stall=0.3, driver="python")
    assert res["failed"] == 0 and res["equal"] == res["total"] == 12


def test_source_memory_refills_across_many_inferences(dep, simdir):
    """More input words than the harness's source memory holds: refilled while the network runs."""
    from kwsbnn.sim.harness import AW
    n = (1 << AW) // (16 * 10) * 2 + 3          # input words: 16 x 10 per inference
    res = simulate(dep, simdir, count=n, seed=15)
    assert res["failed"] == 0 and res["equal"] == res["total"] == n


@pytest.mark.parametrize("reset_after", [37, 95])
def test_reset_in_the_middle_of_an_inference(dep, simdir, reset_after):
    """Half an inference, a reset, then back-to-back inferences: all equal the golden model."""
    driver = "bulk" if reset_after == 37 else "python"
    res = simulate(dep, simdir, count=6, seed=13 + reset_after, reset_after=reset_after, gap=0.2,
                   driver=driver)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 6


def _assert_on_time(res):
    """Steady-state cycles per inference within 5% of the cost model's (the first result also
    carries the pipeline latency, so the steady state excludes it)."""
    model = res["report"]["cycles_per_inference"]
    assert abs(res["cycles_steady"] - model) <= 0.05 * model, (res["cycles_steady"], model)


def _mutant(tmp_path, layer: str):
    """The golden model of ``dep`` with one weight bit flipped in ``layer``."""
    spec = specgen.binary_kws(3)
    lay = next(entry for entry in spec["layers"] if entry["name"] == layer)
    lay["weights"][3, 5] ^= 1
    return deploy.save(spec, tmp_path / f"mutant-{layer}")


@pytest.mark.parametrize("layer", ["conv0", "conv2"])
def test_mismatch_is_localized_to_the_flipped_layer(dep, simdir, tmp_path, layer):
    """RTL of the original network against a golden model with one flipped weight bit in one layer:
    the report names the first mismatching clip and that layer, with the first differing element."""
    from kwsbnn.sw.golden import GoldenModel
    mutant = _mutant(tmp_path, layer)
    x = specgen.random_inputs(specgen.binary_kws(3), 30, seed=21)
    ref, mut = GoldenModel(dep).run(x, dump=True), GoldenModel(mutant).run(x, dump=True)
    first = int(np.flatnonzero((ref.scores != mut.scores).any(axis=1))[0])
    res = simulate(dep, simdir, inputs=x, seed=21, golden_model=mutant)
    assert res["failed"] == 1 and res["mismatches"][0]["index"] == first
    loc = res["first_difference"]
    assert loc["clip"] == first and loc["layer"] == layer, loc
    # The element it names is where the two golden models part in that layer.
    c, t, f = loc["channel"], *loc["position"]
    assert loc["expected"] == mut.layers[layer][first, c, t, f] != ref.layers[layer][first, c, t, f]
    assert loc["got"] == ref.layers[layer][first, c, t, f]
    # Every layer before it agrees.
    names = [entry["name"] for entry in dep.layers]
    for before in names[:names.index(layer)]:
        assert np.array_equal(ref.layers[before][first], mut.layers[before][first])


def test_mismatch_in_the_dense_layer_is_localized_to_it(dep, simdir, tmp_path):
    spec = specgen.binary_kws(3)
    spec["layers"][-1]["bias"][2] += 1000
    mutant = deploy.save(spec, tmp_path / "mutant-dense")
    res = simulate(dep, simdir, count=3, seed=22, golden_model=mutant)
    assert res["failed"] == 1
    loc = res["first_difference"]
    assert loc["layer"] == "dense" and loc["index"] == 2 and loc["expected"] == loc["got"] + 1000


def test_measured_cycles_match_the_cost_model(dep, simdir):
    # One clear bottleneck (conv0's matrix-vector unit at SIMD 3). Where two units in series both
    # run at 100% (the default folding here: conv0's MVU and its pooling unit), the handshakes
    # lose about 5% more than the model says.
    folding = Folding({"conv0": {"pe": 1, "simd": 3}})
    folding = Folding({**Folding.default(dep).layers, **folding.layers})
    res = simulate(dep, simdir, count=30, seed=12, folding=folding)
    assert res["equal"] == 30
    _assert_on_time(res)


def test_another_folding_gives_identical_results(dep, simdir):
    folding = Folding({"conv0": {"pe": 2, "simd": 9}, "conv1": {"pe": 4, "simd": 8},
                       "conv2": {"pe": 8, "simd": 24}, "conv3": {"pe": 1, "simd": 72}})
    fast, default = layer_costs(dep, folding)["layers"], layer_costs(dep)["layers"]
    assert all(f["cycles"] <= d["cycles"] for f, d in zip(fast[:4], default[:4]))
    assert sum(f["cycles"] for f in fast[:4]) < sum(d["cycles"] for d in default[:4])
    # Both conv implementations are exercised: the window + MVU chain here, StreamedConv by default.
    assert {e["unit"] for e in fast[1:4]} == {"window+mvu", "streamed"} or \
        {e["unit"] for e in default[1:4]} == {"streamed"}
    res = simulate(dep, simdir, count=30, seed=11, folding=folding, gap=0.1, stall=0.1)
    assert res["equal"] == res["total"] == 30


def test_unsupported_layers_are_refused_before_generation(dep):
    spec = specgen.int8_kws(0)
    d = deploy.load(deploy.save(spec, dep.path.parent / "int8"))
    with pytest.raises(UnsupportedNetwork, match="output .int8. is not supported"):
        plan(d)


def test_generated_verilog_passes_verilator_lint(dep, tmp_path):
    from kwsbnn.hw.verilog import TOP, generate
    from kwsbnn.sim.runner import lint
    generate(dep, tmp_path)
    lint(tmp_path / f"{TOP}.v", TOP)


@pytest.mark.parametrize("pe", [2, 8])
def test_int8_weight_first_layer_is_exact_and_on_time(tmp_path, pe):
    """int8 x int8 first layer: multipliers with a pipelined adder tree (pe 2) and, fully parallel
    (pe 8 = all channels), constant weights as shift-adds; the golden model's results, and the cycles
    of the cost model (the extra register stages cost no throughput)."""
    spec = specgen.binary_kws(4)
    rng = np.random.default_rng(4)
    spec["layers"][0] = specgen.conv(rng, "conv0", 1, 8, in_prec="int8", w_prec="int8", pool=(2, 2))
    d = deploy.load(deploy.save(spec, tmp_path / "m"))
    folding = Folding({**Folding.default(d).layers, "conv0": {"pe": pe, "simd": 9}})
    res = simulate(d, tmp_path / "sim", count=20, seed=5, folding=folding, gap=0.2, stall=0.2)
    assert res["equal"] == res["total"] == 20
    res = simulate(d, tmp_path / "sim", count=20, seed=6, folding=folding)
    assert res["equal"] == 20
    _assert_on_time(res)


def _int8_last_spec(seed=6):
    """``binary_kws`` whose last conv layer has 8-bit outputs (the redesign's higher-precision last
    layer): no shortcut; the tail sums 8-bit values."""
    spec = specgen.binary_kws(seed)
    rng = np.random.default_rng(seed)
    spec["layers"][3] = specgen.conv(rng, "conv3", 8, 8, in_prec="bin", stride=(2, 1), padding=(1, 0),
                                     out="int8")
    spec["layers"][3]["shift"] = 6
    return spec


def _int8_last(tmp_path, seed=6):
    return deploy.load(deploy.save(_int8_last_spec(seed), tmp_path / "m"))


@pytest.mark.parametrize("pe,simd,par,unit", [(1, 72, 1, "mvu"), (8, 24, 4, "mvu"), (8, 72, 8, "mvu"),
                                               (1, 8, 1, "conv"), (8, 8, 2, "conv"), (4, 2, 1, "conv")])
def test_int8_last_layer_is_exact_and_on_time(tmp_path, pe, simd, par, unit):
    """The requantization unit at one, four and eight channels per cycle (the folding decides), after
    a matrix-vector unit's accumulators or the line-buffer conv unit's mismatch counts: the golden
    model's results under gaps and backpressure, and the cost model's cycles."""
    from kwsbnn.hw.network import Network
    from kwsbnn.sw.golden import GoldenModel
    d = _int8_last(tmp_path)
    x = specgen.random_inputs(_int8_last_spec(), 4, seed=1)
    y = GoldenModel(d).run(x, dump=True).layers["conv3"]
    assert 0.05 < (y == 0).mean() < 0.9 and (y > 1).any()        # the values vary: a real test
    folding = Folding({**Folding.default(d).layers, "conv3": {"pe": pe, "simd": simd}})
    net = Network(d, folding)
    Fragment.get(net, None)          # elaborated once: the test inspects its units, builds nothing from them
    assert net._stages[-1]["requant"]._par == par and unit in net._stages[-1]
    res = simulate(d, tmp_path / "sim", count=16, seed=5, folding=folding, gap=0.2, stall=0.2)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 16
    res = simulate(d, tmp_path / "sim", count=16, seed=6, folding=folding)
    assert res["equal"] == 16
    _assert_on_time(res)


def test_int8_last_layer_keeps_pace_when_it_is_the_bottleneck(tmp_path):
    """Every other layer fully parallel, the int8 layer at 12 cycles per position (144 per
    inference, within 30% of the first layer's 187) with its requantization unit taking 4 cycles
    per accumulator transfer: the measured cycles are the cost model's (the unit takes each transfer
    at once; holding the MVU's 2-entry FIFO for 4 cycles made the layer 18 cycles per position)."""
    d = _int8_last(tmp_path)
    folding = Folding({"conv0": {"pe": 8, "simd": 9}, "conv1": {"pe": 8, "simd": 72},
                       "conv2": {"pe": 8, "simd": 72}, "conv3": {"pe": 4, "simd": 12}})
    res = simulate(d, tmp_path / "sim", count=12, seed=7, folding=folding)
    assert res["equal"] == 12
    _assert_on_time(res)


def test_int8_last_layer_mismatch_is_localized(tmp_path):
    """A golden model with one flipped weight bit in the int8 layer: the RTL's difference is found
    at that layer, with the expected and the RTL's 8-bit values."""
    from kwsbnn.sw.golden import GoldenModel
    d = _int8_last(tmp_path)
    spec = _int8_last_spec()
    spec["layers"][3]["weights"][3, 5] ^= 1
    mutant = deploy.save(spec, tmp_path / "mutant")
    x = specgen.random_inputs(spec, 10, seed=3)
    ref, mut = GoldenModel(d).run(x, dump=True), GoldenModel(mutant).run(x, dump=True)
    res = simulate(d, tmp_path / "sim", inputs=x, seed=3, golden_model=mutant)
    assert res["failed"] >= 1
    loc = res["first_difference"]
    assert loc["layer"] == "conv3", loc
    k, c, (t, f) = loc["clip"], loc["channel"], loc["position"]
    assert loc["expected"] == (mut.layers["conv3"][k, c, t, f] & 0xFF)
    assert loc["got"] == (ref.layers["conv3"][k, c, t, f] & 0xFF) != loc["expected"]


def test_int8_output_needs_the_last_layer_without_pooling(tmp_path):
    spec = specgen.binary_kws(6)
    rng = np.random.default_rng(6)
    spec["layers"][2] = specgen.conv(rng, "conv2", 8, 8, in_prec="bin", out="int8")
    spec["layers"][3] = specgen.conv(rng, "conv3", 8, 8, in_prec="int8")
    d = deploy.load(deploy.save(spec, tmp_path / "a"))
    with pytest.raises(UnsupportedNetwork, match="before the last layer"):
        plan(d)
    spec = specgen.binary_kws(6)
    spec["layers"][3] = specgen.conv(rng, "conv3", 8, 8, in_prec="bin", out="int8", pool=(2, 2))
    d = deploy.load(deploy.save(spec, tmp_path / "b"))
    with pytest.raises(UnsupportedNetwork, match="without pooling"):
        plan(d)


def test_pooled_row_bursts_do_not_stall_the_input(tmp_path):
    """A fully parallel first layer with pooling emits a pooled row in a burst (one output every
    2 cycles during the last input row of its windows); the next layer takes 3 cycles per position,
    enough on average (60 of every 80 cycles) but not within the burst. The pooling unit's FIFO
    holds a pooled row, so the input never waits: the measured cycles are the cost model's (with a
    2-entry FIFO they were 10% more)."""
    spec = specgen.binary_kws(3, t=40, f=40)
    d = deploy.load(deploy.save(spec, tmp_path / "m"))
    folding = Folding({"conv0": {"pe": 8, "simd": 9}, "conv1": {"pe": 8, "simd": 24},
                       "conv2": {"pe": 8, "simd": 72}, "conv3": {"pe": 8, "simd": 72}})
    res = simulate(d, tmp_path / "sim", count=6, seed=3, folding=folding)
    assert res["equal"] == 6
    _assert_on_time(res)
