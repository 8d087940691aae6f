"""The first layer with its sum pooling folded in (hw/boxsum.py): box sums of the int8 input, a
sliding window at the pooling's stride, a matrix-vector unit with the layer's own thresholds on
wider inputs: the golden model's pooled first layer, exactly, under gaps and backpressure."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

import specgen
from kwsbnn.hw.boxsum import BoxSum, applicable, geometry
from kwsbnn.hw.mvu import MatrixVectorUnit
from kwsbnn.hw.testing import run_stream
from kwsbnn.hw.window import SlidingWindow
from kwsbnn.sw.golden import GoldenModel


class PooledFirstLayer(wiring.Component):
    """BoxSum -> SlidingWindow (stride = pool, no padding) -> MatrixVectorUnit (bits)."""

    def __init__(self, layer, t, f, pe, simd):
        kernel, dil = tuple(layer["kernel"]), tuple(layer["dilation"])
        self.box = BoxSum(frames=t, coeffs=f, kernel=kernel, dilation=dil,
                          padding=tuple(layer["padding"]), pool=tuple(layer["pool"]))
        self.win = SlidingWindow(1, self.box.width, self.box.out_frames, self.box.out_coeffs, kernel,
                                 stride=tuple(layer["pool"]), dilation=dil, padding=(0, 0), pad_value=0)
        self.mvu = MatrixVectorUnit(layer["weights"], in_prec="int8", w_prec="bin", out="bits",
                                    direction=2 * layer["direction"] - 1, threshold=layer["threshold"],
                                    pe=pe, simd=simd, in_width=self.box.width)
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(layer["out_channels"]))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.box, m.submodules.win, m.submodules.mvu = self.box, self.win, self.mvu
        wiring.connect(m, wiring.flipped(self.i), self.box.i)
        wiring.connect(m, self.box.o, self.win.i)
        wiring.connect(m, self.win.o, self.mvu.i)
        wiring.connect(m, self.mvu.o, wiring.flipped(self.o))
        return m


@pytest.mark.parametrize("t,f,dil,pad,pe,simd", [(13, 10, 1, 1, 1, 9), (13, 10, 1, 1, 2, 3),
                                                  (18, 14, 2, 2, 1, 3), (101, 40, 1, 1, 8, 9)])
def test_pooled_first_layer_equals_golden(t, f, dil, pad, pe, simd):
    rng = np.random.default_rng(t + dil)
    layer = specgen.conv(rng, "conv0", 1, 8, in_prec="int8", pool=(4, 3), dilation=(dil, dil),
                         padding=(pad, pad))
    layer["direction"] = (layer["direction"] > 0).astype(np.int64)     # as a deployable stores it
    assert applicable(t, f, (3, 3), (dil, dil), (pad, pad), (4, 3))
    n = 2 if t < 50 else 1
    x = rng.integers(-127, 128, (n, 1, t, f))
    y = GoldenModel._conv(layer, x, "int8")                             # [n, C, T2, F2] bits
    g = geometry(t, f, (3, 3), (dil, dil), (pad, pad), (4, 3))
    assert y.shape[2:] == (g["t2"], g["f2"])
    exp = [int(sum(int(y[i, c, r, s]) << c for c in range(8)))
           for i in range(n) for r in range(y.shape[2]) for s in range(y.shape[3])]
    dut = PooledFirstLayer(layer, t, f, pe, simd)
    got = run_stream(dut, [int(v) & 0xFF for v in x.reshape(-1)], len(exp), gap=0.2, stall=0.2,
                     seed=t + pe)
    assert got == exp


def test_geometries_that_need_input_past_the_map_are_refused():
    # 16 x 10 with 2x2 pooling and padding 1: the last box row would need row 16.
    assert not applicable(16, 10, (3, 3), (1, 1), (1, 1), (2, 2))
    with pytest.raises(ValueError, match="needs input past its end"):
        BoxSum(frames=16, coeffs=10, kernel=(3, 3), dilation=(1, 1), padding=(1, 1), pool=(2, 2))


def test_shipped_binary_with_its_pooling_folded_in_equals_golden_and_is_on_time(tmp_path):
    """The iCEBreaker folding of the shipped `binary` folds the first layer's pooling in: RTL =
    golden model under gaps and backpressure, and the measured cycles per inference within 5% of
    the cost model's (about 2.7 times fewer than with the pooling unit)."""
    from kwsbnn.hw.cost import Folding, layer_costs
    from kwsbnn.hw.folding import for_budget
    from kwsbnn.sim.network import simulate
    from kwsbnn.sw.export import deployable
    dep = deployable("binary-ice40")
    folding = for_budget(dep, "icebreaker", clk_hz=24e6)
    assert folding["conv0"].get("boxsum")
    model = layer_costs(dep, folding)["cycles_per_inference"]
    unfolded = Folding({**folding.layers, "conv0": {"pe": folding["conv0"]["pe"],
                                                    "simd": folding["conv0"]["simd"]}})
    assert layer_costs(dep, unfolded)["cycles_per_inference"] > 2 * model
    x = specgen.random_inputs({"input": {"prec": "int8", "shape": [1, 101, 40]}}, 4, seed=4)
    res = simulate(dep, tmp_path / "sim", inputs=x, folding=folding, gap=0.2, stall=0.2, seed=3)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 4
    res = simulate(dep, tmp_path / "sim", inputs=x, folding=folding)
    assert res["equal"] == 4 and abs(res["cycles_steady"] - model) <= 0.05 * model
