"""The walking skeleton end to end: PyTorch integer mode = golden model = RTL in Verilator,
through the deployable-model files, on random inputs with random stream gaps and backpressure."""

import json
import shutil

import numpy as np
import pytest
import torch

from kwsbnn.hw.cost import Folding
from kwsbnn.sim.network import simulate
from kwsbnn.sw import deploy
from kwsbnn.sw.golden import GoldenModel
from kwsbnn.sw.tiny import make_tiny


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    """One work folder for the module, so tests of the same Verilog share one Verilator build."""
    return tmp_path_factory.mktemp("sim")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = make_tiny(0)
    folder = deploy.save(model.integer_spec(), tmp_path_factory.mktemp("tiny") / "model")
    return model, deploy.load(folder)


def test_torch_integer_mode_equals_golden(tiny):
    model, dep = tiny
    x = np.random.default_rng(0).integers(0, 2, (2000, 64))
    torch_scores = model.integer_forward(torch.from_numpy(x)).numpy()
    g = GoldenModel(dep).run(x[:, :, None, None])
    assert np.array_equal(torch_scores, g.scores)
    # The float model in eval mode agrees too (the thresholds are exact by construction).
    with torch.no_grad():
        assert np.array_equal(model(torch.from_numpy(x).float() * 2 - 1).numpy(), torch_scores)
    assert len(set(g.classes.tolist())) == 4


def test_rtl_equals_golden_with_gaps_and_backpressure(tiny, simdir):
    _, dep = tiny
    res = simulate(dep, simdir, count=1000, seed=3, gap=0.3, stall=0.3)
    assert res["failed"] == 0
    assert res["equal"] == res["total"] == 1000


def test_folding_changes_speed_not_results(tiny, tmp_path):
    _, dep = tiny
    folding = Folding({"fc1": {"pe": 4, "simd": 16}})
    res = simulate(dep, tmp_path, count=300, seed=4, folding=folding)
    assert res["equal"] == res["total"] == 300
    # Without gaps or stalls, measured cycles per inference are what the cost model says (within 5%).
    model_cycles = res["report"]["cycles_per_inference"]
    assert abs(res["cycles_per_inference"] - model_cycles) <= 0.05 * model_cycles


def test_one_flipped_bit_is_caught(tiny, simdir, tmp_path):
    """The same RTL against a golden model whose weights differ in one bit must fail."""
    _, dep = tiny
    spec = {"name": "tiny-mutant", "classes": dep.classes, "input": dep.input,
            "layers": [dict(l) for l in dep.layers]}
    w = spec["layers"][0]["weights"].copy()
    w[10, 7] ^= 1
    spec["layers"][0]["weights"] = w
    spec["layers"][0]["direction"] = np.where(spec["layers"][0]["direction"] > 0, 1, -1)
    mutant = deploy.save(spec, tmp_path / "mutant")
    x = np.random.default_rng(5).integers(0, 2, (400, 64, 1, 1))
    assert not np.array_equal(GoldenModel(dep).run(x).scores, GoldenModel(mutant).run(x).scores)
    res = simulate(dep, simdir, inputs=x, seed=5, golden_model=mutant)
    assert res["failed"] == 1
    assert 0 < res["total"] - res["equal"]
