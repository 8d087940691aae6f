"""Resource estimate and the board-budget folding, without synthesis (but one small unit, checked
against Yosys + nextpnr --pack-only when the YoWASP tools are installed)."""

import json

import pytest

import specgen
from kwsbnn.cli import main
from kwsbnn.errors import KwsError
from kwsbnn.hw import resources as res
from kwsbnn.hw.cost import Folding, layer_costs
from kwsbnn.hw.folding import budget_check, for_budget, resolve_budget
from kwsbnn.hw.plan import plan
from kwsbnn.sw import deploy

KINDS = {"mvu_bin_bin", "mvu_int8_bin", "mvu_int8_int8", "conv", "window", "pool", "pool_parallel", "tail",
         "broadcast", "fifo", "gather", "link"}


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    return deploy.load(deploy.save(specgen.binary_kws(3), tmp_path_factory.mktemp("r") / "m"))


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A KWS-shaped network with 24 channels on a 25 x 13 map: iCE40-sized."""
    spec = specgen.binary_kws(4, t=50, f=26, c=24)
    return deploy.load(deploy.save(spec, tmp_path_factory.mktemp("w") / "m"))


@pytest.mark.parametrize("family", res.FAMILIES)
def test_calibration_files_load_and_cover_every_unit(family):
    coefs = res.load_coefficients(family)
    assert KINDS <= set(coefs["units"])
    for kind in KINDS:
        assert coefs["units"][kind]["logic_cells"], kind
        assert all(v >= 0 for v in coefs["units"][kind]["logic_cells"].values())
    assert coefs["memory"]["logic_cells"]
    assert coefs["residuals"]


def _elaborated_memories(net):
    from amaranth.hdl import Fragment
    from amaranth.hdl._mem import MemoryInstance
    from amaranth.lib.data import Layout

    out = []

    def walk(f):
        if isinstance(f, MemoryInstance):
            shape = f._data.shape
            width = shape.size if isinstance(shape, Layout) else getattr(shape, "width", shape)
            read = "comb" if any(p._domain == "comb" for p in f._read_ports) else "sync"
            out.append((width, int(f._data.depth), not f._write_ports, read))
        for sub, *_ in f.subfragments:
            walk(sub)

    walk(Fragment.get(net, None))
    return sorted(out)


@pytest.mark.parametrize("fold", ["default", "fast"])
def test_memory_lists_match_the_elaborated_network(dep, fold):
    """The estimate's memories (block RAM comes from their shapes) are the generator's."""
    from kwsbnn.hw.network import Network
    from kwsbnn.hw.resources import layer_units, tail_unit, unit_memories

    convs, tail = plan(dep)
    folding = Folding.default(dep) if fold == "default" else \
        Folding({p.name: {"pe": p.conv_shape[0], "simd": p.k} for p in convs})
    listed = []
    for p in convs:
        for unit in layer_units(p, folding[p.name]).values():
            listed += [(m.width, m.depth, m.rom, m.read) for m in unit_memories(unit)]
    listed += [(m.width, m.depth, m.rom, m.read) for m in unit_memories(tail_unit(tail))]
    assert sorted(listed) == _elaborated_memories(Network(dep, folding))


def test_block_ram_tiling_rules():
    assert res.bram_tiles(24, 216, "ice40") == 2          # 256 x 16 twice
    assert res.bram_tiles(96, 512, "ice40") == 12
    assert res.bram_tiles(36, 512, "ecp5") == 1
    assert res.bram_tiles(24, 2048, "ecp5") == 3          # 2048 x 9
    rom = res.MemShape("w", 48, 36, rom=True)             # 1,728 bits: cheaper in logic
    assert res.map_memory(rom, "ice40")["kind"] == "logic"
    assert res.map_memory(res.MemShape("w", 48, 72, rom=True), "ice40")["block_ram"] == 3
    fifo = res.MemShape("q", 38, 4, rom=False, read="comb")
    assert res.map_memory(fifo, "ice40")["kind"] == "logic"
    assert res.map_memory(fifo, "ecp5")["kind"] == "lutram"


def _layer_lc(dep, name, fold, family="ice40"):
    est = res.LayerEstimator(dep, family)
    p = next(p for p in plan(dep)[0] if p.name == name)
    return est.layer(p, fold)["logic_cells"]


@pytest.mark.parametrize("family", res.FAMILIES)
def test_estimate_grows_with_pe_and_simd(wide, family):
    convs, _ = plan(wide)
    binary = convs[1]                                       # binary 3x3, 24 channels, shortcut
    c = binary.in_shape[0]
    # StreamedConv foldings (SIMD within the channels) and the window+MVU ones (SIMD beyond them).
    for simd in (6, 24, 72, 216):
        lcs = [_layer_lc(wide, binary.name, {"pe": pe, "simd": simd}, family) for pe in (1, 2, 4, 8, 24)]
        assert lcs == sorted(lcs), (simd, lcs)
    # In SIMD the XNOR lanes grow and the chunk multiplexer shrinks: growth, give or take 3%.
    for pe in (1, 2, 8):
        lcs = [_layer_lc(wide, binary.name, {"pe": pe, "simd": simd}, family) for simd in (1, 3, 6, 12, 24)]
        assert all(b >= 0.97 * a for a, b in zip(lcs, lcs[1:])), lcs
        assert lcs[-1] > lcs[0]
        lcs = [_layer_lc(wide, binary.name, {"pe": pe, "simd": simd}, family) for simd in (c * 3, c * 9)]
        assert lcs == sorted(lcs), lcs
    first = convs[0]                                        # int8 input, pooling
    lcs = [_layer_lc(wide, first.name, {"pe": pe, "simd": 9}, family) for pe in (1, 2, 4, 8, 24)]
    assert lcs == sorted(lcs), lcs
    lcs = [_layer_lc(wide, first.name, {"pe": 2, "simd": simd}, family) for simd in (1, 3, 9)]
    assert lcs == sorted(lcs), lcs


def test_estimate_report_shape(wide):
    est = res.estimate(wide, None, "ice40")
    names = [p.name for p in plan(wide)[0]] + [plan(wide)[1].name]
    assert [e["name"] for e in est["per_layer"]] == names
    for key in ("logic_cells", "block_ram", "dsp"):
        assert est[key] == sum(e[key] for e in est["per_layer"])
    with_link = res.estimate(wide, None, "ice40", link=True)
    assert [e["name"] for e in with_link["per_layer"][-2:]] == ["link", "ring"]
    assert with_link["logic_cells"] > est["logic_cells"]
    ring = with_link["per_layer"][-1]
    c, t, f = wide.input["shape"]
    depth = res.RingUnit.for_model(wide).depth
    assert depth >= (t + 1) * f and depth & (depth - 1) == 0
    # int8 frames: 512 x 8 per EBR.
    assert ring["block_ram"] == -(-depth // 512) and with_link["block_ram"] == est["block_ram"] + ring["block_ram"]
    e5 = res.estimate(wide, None, "ecp5")
    assert {"flip_flops", "lutram"} <= set(e5)


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_for_budget_fits_and_beats_the_default_when_there_is_room(dep, board):
    folding = for_budget(dep, board)
    check = budget_check(dep, folding, board)
    assert check["fits"], check
    b = resolve_budget(board)
    for key, limit in b["limits"].items():
        assert check["estimate"][key] <= limit
    fast = layer_costs(dep, folding)["cycles_per_inference"]
    default = layer_costs(dep, Folding.default(dep))["cycles_per_inference"]
    assert budget_check(dep, Folding.default(dep), board)["fits"]
    assert fast < default / (4 if board == "ulx3s-85f" else 1)


def test_a_larger_budget_never_gives_a_slower_folding(dep):
    need = res.estimate(dep, Folding.default(dep), "ice40", link=True)
    small = {"family": "ice40", "logic_cells": need["logic_cells"] * 1.2 / 0.9, "block_ram": 30, "dsp": 8,
             "name": "small"}
    big = dict(small, logic_cells=small["logic_cells"] * 4, name="big")
    folds = [for_budget(dep, b) for b in (small, big)]
    cyc = [layer_costs(dep, f)["cycles_per_inference"] for f in folds]
    assert cyc[1] <= cyc[0] < layer_costs(dep, Folding.default(dep))["cycles_per_inference"] * 1.01
    assert all(budget_check(dep, f, b)["fits"] for f, b in zip(folds, (small, big)))


def test_a_rate_target_stops_at_a_smaller_folding_that_reaches_it(dep):
    """for_budget(rate=R): cycles within the clock's budget for R inferences/s, fewer resources than
    the fastest folding; a rate no folding reaches gives the fastest one."""
    clk = 60e6
    fastest = for_budget(dep, "ulx3s-85f", clk_hz=clk)
    fast_cyc = layer_costs(dep, fastest)["cycles_per_inference"]
    default_cyc = layer_costs(dep, Folding.default(dep))["cycles_per_inference"]
    assert fast_cyc < default_cyc / 4
    rate = clk / (fast_cyc * 3)                 # a third of the fastest folding's throughput
    slow = for_budget(dep, "ulx3s-85f", clk_hz=clk, rate=rate)
    cyc = layer_costs(dep, slow)["cycles_per_inference"]
    assert fast_cyc < cyc <= clk / rate
    est = [res.estimate(dep, f, "ecp5", link=True)["logic_cells"] for f in (slow, fastest)]
    assert est[0] < est[1]
    assert budget_check(dep, slow, "ulx3s-85f", clk_hz=clk)["fits"]
    assert for_budget(dep, "ulx3s-85f", clk_hz=clk, rate=clk / fast_cyc * 10).to_dict() == fastest.to_dict()


def test_a_network_too_big_for_the_budget_raises(dep):
    tiny_board = {"name": "tiny-board", "family": "ice40", "logic_cells": 100, "block_ram": 4, "dsp": 0}
    with pytest.raises(KwsError, match=r"does not fit tiny-board .* even at its smallest folding: "
                                       r"estimated [\d,]+ logic cells of 97 allowed"):
        for_budget(dep, tiny_board)
    with pytest.raises(KwsError, match="unknown board"):
        for_budget(dep, "nexys")


def test_verilog_command_reports_resources_and_fits_a_board(dep, tmp_path, capsys):
    assert main(["verilog", "--model", str(dep.path), "--out", str(tmp_path / "v"), "--board",
                 "icebreaker", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"ice40", "ecp5", "budget"} <= set(report["resources"])
    assert report["resources"]["budget"]["fits"]
    assert report["folding"] == for_budget(dep, "icebreaker").to_dict()
    assert all("resources" in e and "ice40" in e["resources"] for e in report["layers"])
    on_disk = json.loads((tmp_path / "v" / "report.json").read_text())
    assert on_disk["resources"] == report["resources"]
    assert main(["verilog", "--model", str(dep.path), "--out", str(tmp_path / "x"), "--board",
                 "icebreaker", "--margin", "0.05"]) == 2
    assert "even at its smallest folding" in capsys.readouterr().err
    assert not (tmp_path / "x" / "kws_top.v").exists()


@pytest.mark.skipif(not res.tools_available(), reason="YoWASP tools not installed")
def test_one_small_unit_synthesized_matches_the_estimate():
    """Yosys + nextpnr --pack-only on a channel-serial pooling unit (a few seconds): the estimate
    is within 25% of the packed logic cells, and the block RAMs are equal."""
    import numpy as np

    from kwsbnn.hw.pool import SumPoolThreshold

    rng = np.random.default_rng(1)
    unit = SumPoolThreshold(channels=8, acc_width=12, frames=16, coeffs=10, pool=(2, 2),
                            direction=rng.choice([-1, 1], 8), threshold=rng.integers(-50, 50, 8), lanes=2)
    got = res.synthesize(unit, "ice40")
    est = res.unit_estimate(unit, "ice40")
    assert est["block_ram"] == got["block_ram"]
    assert abs(est["logic_cells"] - got["logic_cells"]) <= 0.25 * got["logic_cells"], (est, got)


def test_ring_buffer_cost_and_a_build_that_does_not_fit(tmp_path):
    """The streaming ring of a 101 x 40 int8 input is 4096 x 8 bits: 8 iCE40 EBRs, 2 ECP5 DP16KD; a
    ring that does not fit with the network stops the build before synthesis, with the numbers."""
    import specgen
    from kwsbnn.boards.build import BOARDS, stream_budget
    from kwsbnn.errors import KwsError
    ring = res.RingUnit(width=8, depth=4096, window=4040)
    assert res.ring_estimate(ring, "ice40")["block_ram"] == 8
    assert res.ring_estimate(ring, "ecp5")["block_ram"] == 2
    assert 250 < res.ring_estimate(ring, "ice40")["logic_cells"] < 350      # 271 + 36 measured + mux
    long = deploy.load(deploy.save(specgen.binary_kws(0, t=400, f=40), tmp_path / "m"))
    with pytest.raises(KwsError, match=r"needs \d+ block RAMs, icebreaker has 30: .*ring buffer 32 "
                       r"\(16384 x 8 bits = 128 Kibit\)"):
        stream_budget(long, Folding.default(long), BOARDS["icebreaker"], 12e6)
    ok = stream_budget(long, Folding.default(long), BOARDS["ulx3s-85f"], 60e6)
    assert ok["ring"]["block_ram"] == 8 and ok["block_ram"]["used"] <= 208
    # The build command's folding search says it too, before any synthesis.
    from kwsbnn.boards.build import build
    with pytest.raises(KwsError, match=r"37 block ram of 30 .*the streaming ring buffer takes 32 "
                       r"block RAMs \(16384 x 8 bits = 128 Kibit\)"):
        build(long, "icebreaker", tmp_path / "b")
    assert not (tmp_path / "b").exists()
