"""Folding choice and the cost model, without simulation: targets are met with the fewest lanes,
and folding files are checked."""

import json

import pytest

import specgen
from kwsbnn.errors import KwsError
from kwsbnn.hw.cost import Folding, layer_costs
from kwsbnn.hw.folding import floor_cycles, for_ips, for_target
from kwsbnn.hw.plan import plan
from kwsbnn.sw import deploy


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    return deploy.load(deploy.save(specgen.binary_kws(3), tmp_path_factory.mktemp("f") / "m"))


@pytest.mark.parametrize("target", [200, 700, 3000, 100_000])
def test_for_target_meets_the_target_with_the_fewest_lanes(dep, target):
    folding = for_target(dep, target)
    for p in plan(dep)[0]:
        fold = folding[p.name]
        pe, simd = fold["pe"], fold["simd"]
        cycles = p.window_positions * (p.conv_shape[0] // pe) * (p.k // simd)
        assert cycles <= max(target, p.window_positions)
        # No folding with fewer lanes meets the target.
        for pe2 in range(1, p.conv_shape[0] + 1):
            for simd2 in range(1, p.k + 1):
                if p.conv_shape[0] % pe2 or p.k % simd2 or pe2 * simd2 >= pe * simd:
                    continue
                assert p.window_positions * (p.conv_shape[0] // pe2) * (p.k // simd2) > target


def test_faster_targets_cost_more_lanes_and_fewer_cycles(dep):
    slow, fast = layer_costs(dep, for_target(dep, 3000)), layer_costs(dep, for_target(dep, 300))
    assert fast["lanes"] > slow["lanes"]
    assert fast["cycles_per_inference"] < slow["cycles_per_inference"]
    assert floor_cycles(dep) <= fast["cycles_per_inference"]


def test_for_ips_and_bad_targets(dep):
    f = for_ips(dep, 10_000, 12e6)
    assert layer_costs(dep, f)["layers"][0]["unit_cycles"]["mvu"] <= 1200
    with pytest.raises(KwsError, match="must be positive"):
        for_ips(dep, 0, 12e6)


def test_folding_file_errors(dep, tmp_path):
    bad = tmp_path / "f.json"
    bad.write_text(json.dumps({"layers": {"nope": {"pe": 1, "simd": 1}}}))
    with pytest.raises(KwsError, match="'nope' is not a convolution"):
        Folding.load(bad, dep)
    bad.write_text("{")
    with pytest.raises(KwsError, match="cannot read the folding file"):
        Folding.load(bad, dep)
