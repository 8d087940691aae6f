"""The engine style (hw/network.py EngineNetwork: first layer as pipeline units, the layer engine with
its weights loaded through the loader port, requantization and tail) equals the golden model in
Verilator: on the small KWS network with every feature, under any stream timing and reset; on a
random 64-channel network of the shipped wide model's shape, within 5% of the cost model's cycles;
and on the shipped ``binary-wide`` model with real feature maps."""

import numpy as np
import pytest

import specgen
from kwsbnn.hw.cost import engine_folding, layer_costs
from kwsbnn.sim.network import simulate
from kwsbnn.sw import deploy


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    return deploy.load(deploy.save(specgen.binary_kws(3), tmp_path_factory.mktemp("kws") / "m"))


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    return tmp_path_factory.mktemp("sim")


@pytest.mark.parametrize("pe,simd", [(1, 4), (2, 8)])
def test_engine_style_equals_golden_under_gaps_and_backpressure(dep, simdir, pe, simd):
    res = simulate(dep, simdir, count=16, seed=11 + pe, gap=0.3, stall=0.3,
                   folding=engine_folding(dep, pe=pe, simd=simd))
    assert res["report"]["style"] == "engine"
    assert res["failed"] == 0 and res["equal"] == res["total"] == 16


def test_engine_style_with_python_stream_models_and_a_reset(dep, simdir):
    """Transfer by transfer from Python, after an abandoned half inference and a reset (the weights
    are loaded once, before it, and stay)."""
    res = simulate(dep, simdir, count=5, seed=14, gap=0.3, stall=0.3, reset_after=95, driver="python",
                   folding=engine_folding(dep, pe=1, simd=4))
    assert res["failed"] == 0 and res["equal"] == res["total"] == 5


def test_mismatch_in_an_engine_layer_is_localized(dep, simdir, tmp_path):
    """The engine layers' taps (their map writes) name the layer whose weight differs."""
    spec = specgen.binary_kws(3)
    next(layer for layer in spec["layers"] if layer["name"] == "conv2")["weights"][3, 5] ^= 1
    mutant = deploy.save(spec, tmp_path / "mutant")
    x = specgen.random_inputs(spec, 30, seed=21)
    res = simulate(dep, simdir, inputs=x, seed=21, golden_model=mutant,
                   folding=engine_folding(dep, pe=1, simd=4))
    assert res["failed"] == 1 and res["first_difference"]["layer"] == "conv2"


def test_wide_network_equals_golden_within_the_cycle_model(tmp_path):
    """64 channels, 1-bit shortcuts, pad bit 1 (random weights): exact, and the measured cycles per
    inference are within 5% of the cost model's, which is the engine's limit (binary MACs / lanes)
    plus the first layer."""
    spec = specgen.wide_kws(1, c=64, shortcut="bit", pad_bit=1)
    wide = deploy.load(deploy.save(spec, tmp_path / "wide"))
    folding = engine_folding(wide)
    costs = layer_costs(wide, folding)
    assert costs["engine_lanes"] == 64
    assert costs["engine_limit_cycles"] == 3 * 325 * 64 * 9            # 3 layers x 325 positions
    res = simulate(wide, tmp_path / "sim", inputs=specgen.random_inputs(spec, 3, seed=2), folding=folding)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 3
    model = costs["cycles_per_inference"]
    assert abs(res["cycles_steady"] - model) <= 0.05 * model, (res["cycles_steady"], model)


def _real_features(dep, n: int) -> np.ndarray:
    """Quantized feature maps ``[n, 1, T, F]`` of tone bursts and noise, through the features and
    quantizer of ``dep`` (what the host computes for a clip)."""
    import torch

    from fixtures import tone_clip
    from kwsbnn.sw.features import FeatureConfig, FeatureQuantizer, compute
    cfg = FeatureConfig(**dep.input["features"])
    quant = FeatureQuantizer.from_dict(dep.input["quantizer"])
    rng = np.random.default_rng(5)
    out = []
    for k in range(n):
        wave = tone_clip(300.0 * 1.3 ** k, rng, amp=0.3, noise=0.02 * (k + 1)).astype(np.float32)
        out.append(quant.quantize(compute(torch.from_numpy(wave), cfg)).numpy().astype(np.int64)[None])
    return np.stack(out)


def test_shipped_binary_wide_equals_golden_on_real_features(tmp_path):
    from kwsbnn.sw.export import deployable
    wide = deployable("binary-wide")
    x = _real_features(wide, 3)
    assert x.shape[1:] == tuple(wide.input["shape"]) and np.abs(x).max() > 20
    res = simulate(wide, tmp_path / "sim", inputs=x, seed=3, gap=0.1, stall=0.1,
                   folding=engine_folding(wide))
    assert res["failed"] == 0 and res["equal"] == res["total"] == 3


def test_generated_engine_verilog_passes_verilator_lint(dep, tmp_path):
    from kwsbnn.hw.verilog import TOP, generate
    from kwsbnn.sim.runner import lint
    report = generate(dep, tmp_path, engine_folding(dep, pe=2, simd=4))
    assert report["style"] == "engine" and (tmp_path / "weights.hex").is_file()
    lint(tmp_path / f"{TOP}.v", TOP)


def test_binary_input_network_runs_all_its_layers_on_the_engine(tmp_path):
    """No front layer: the input bits go straight into the engine's map; bit outputs into the bit
    tail (binary dense weights); exact under gaps and backpressure, and exactly on time."""
    rng = np.random.default_rng(0)
    layers = [specgen.conv(rng, "conv0", 8, 8, in_prec="bin", shortcut="bit", pad_bit=1),
              specgen.conv(rng, "conv1", 8, 8, in_prec="bin", dilation=(2, 1), padding=(2, 1))]
    layers += specgen.head(rng, 8, 4, w_prec="bin")
    spec = {"name": "binin", "classes": ["a", "b", "c", "d"], "input": {"prec": "bin", "shape": [8, 9, 7]},
            "layers": layers}
    d = deploy.load(deploy.save(spec, tmp_path / "binin"))
    folding = engine_folding(d)
    assert [e["unit"] for e in layer_costs(d, folding)["layers"][:2]] == ["engine", "engine"]
    res = simulate(d, tmp_path / "sim", count=20, seed=3, gap=0.3, stall=0.3, folding=folding)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 20
    res = simulate(d, tmp_path / "sim", count=10, seed=4, folding=folding)
    assert res["equal"] == 10 and res["cycles_steady"] == res["report"]["cycles_per_inference"]


def test_96_channels_fit_the_icebreaker_and_are_exact(tmp_path):
    """A random 96-channel network of the wide shape: the network alone fits the iCEBreaker in the
    engine style (48 lanes, the 30 block RAMs all used), exact in Verilator, within 5% of its cycle
    model. With the board's UART and streaming logic it is over the logic cells by the estimate."""
    from kwsbnn.errors import KwsError
    from kwsbnn.hw.folding import budget_check, for_budget
    spec = specgen.wide_kws(2, c=96)
    wide = deploy.load(deploy.save(spec, tmp_path / "w96"))
    folding = for_budget(wide, "icebreaker", clk_hz=24e6, link=False)
    assert folding.style == "engine"
    assert budget_check(wide, folding, "icebreaker", clk_hz=24e6, link=False)["fits"]
    with pytest.raises(KwsError, match="logic cells"):
        for_budget(wide, "icebreaker", clk_hz=24e6)
    model = layer_costs(wide, folding)["cycles_per_inference"]
    res = simulate(wide, tmp_path / "sim", inputs=specgen.random_inputs(spec, 2, seed=4), folding=folding)
    assert res["failed"] == 0 and res["equal"] == res["total"] == 2
    assert abs(res["cycles_steady"] - model) <= 0.05 * model
