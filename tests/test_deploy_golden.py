"""Deployable model files and the golden model: round trips, load errors, and bit-exact agreement
with the PyTorch integer inference mode on networks that use every feature of the contract."""

import json
import shutil

import numpy as np
import pytest
import torch

import specgen
from kwsbnn.sw import deploy
from kwsbnn.sw.golden import GoldenModel
from kwsbnn.sw.integer import integer_forward


@pytest.fixture(params=["binary", "int8"])
def spec(request):
    return specgen.binary_kws(3) if request.param == "binary" else specgen.int8_kws(4)


def test_save_load_round_trip(spec, tmp_path):
    dep = deploy.load(deploy.save(spec, tmp_path / "m"))
    assert dep.classes == spec["classes"]
    for mine, theirs in zip(dep.layers, spec["layers"]):
        for key, value in theirs.items():
            if isinstance(value, np.ndarray):
                want = (value > 0).astype(int) if key == "direction" else value
                assert np.array_equal(mine[key], want), (theirs["name"], key)


def test_golden_equals_torch_integer_mode(spec, tmp_path):
    dep = deploy.load(deploy.save(spec, tmp_path / "m"))
    x = specgen.random_inputs(spec, 64, seed=5)
    g = GoldenModel(dep).run(x, dump=True)
    scores, acts = integer_forward(spec, torch.from_numpy(x))
    assert np.array_equal(g.scores, scores.numpy())
    assert np.array_equal(g.classes, torch.argmax(scores, dim=1).numpy())
    for name, a in acts.items():
        assert np.array_equal(g.layers[name], a.numpy()), name
    # Not vacuous: binary layers produce both bit values and the classes vary.
    bits = [v for k, v in g.layers.items() if k.startswith("conv")]
    assert all(0 < b.mean() < 1 for b in bits if b.max() <= 1)
    assert len(set(g.classes.tolist())) > 1


def test_one_flipped_weight_bit_changes_golden_scores(tmp_path):
    spec = specgen.binary_kws(3)
    x = specgen.random_inputs(spec, 32, seed=1)
    ref = GoldenModel(deploy.load(deploy.save(spec, tmp_path / "a"))).run(x).scores
    spec["layers"][1]["weights"][2, 5] ^= 1
    changed = GoldenModel(deploy.load(deploy.save(spec, tmp_path / "b"))).run(x).scores
    assert not np.array_equal(ref, changed)


def _saved(tmp_path):
    return deploy.save(specgen.binary_kws(0), tmp_path / "m")


def test_wrong_version_is_named(tmp_path):
    folder = _saved(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    m["version"] = 99
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(deploy.DeployableError, match="version 99.*reads versions 1, 2"):
        deploy.load(folder)


def test_missing_image_is_named(tmp_path):
    folder = _saved(tmp_path)
    (folder / "conv1.weights.hex").unlink()
    with pytest.raises(deploy.DeployableError, match=r"conv1\.weights\.hex: memory image is missing"):
        deploy.load(folder)


def test_truncated_image_is_named(tmp_path):
    folder = _saved(tmp_path)
    p = folder / "conv2.threshold.bin"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(deploy.DeployableError, match=r"conv2\.threshold\.bin: truncated"):
        deploy.load(folder)


def test_corrupt_image_fails_checksum(tmp_path):
    folder = _saved(tmp_path)
    p = folder / "dense.weights.bin"
    data = bytearray(p.read_bytes())
    data[0] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(deploy.DeployableError, match="checksum"):
        deploy.load(folder)


def test_hex_and_bin_disagree(tmp_path):
    folder = _saved(tmp_path)
    p = folder / "conv0.weights.hex"
    lines = p.read_text().splitlines()
    lines[0] = format(int(lines[0], 16) ^ 1, f"0{len(lines[0])}x")
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(deploy.DeployableError, match="does not hold the same"):
        deploy.load(folder)


def test_disagreeing_shapes_are_named(tmp_path):
    folder = _saved(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    m["layers"][1]["in_channels"] = 3
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(deploy.DeployableError, match="conv1: in_channels 3"):
        deploy.load(folder)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(deploy.DeployableError, match="not a deployable model folder"):
        deploy.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(deploy.DeployableError, match="not valid JSON"):
        deploy.load(tmp_path)


@pytest.mark.parametrize("precision", ["binary", "int8"])
def test_golden_engine_equals_torch_engine_on_a_kws_model(precision):
    """`eval --engine golden` (deployable files + NumPy) predicts what `--engine torch` predicts."""
    from kwsbnn.sw.evaluate import predict
    from kwsbnn.sw.models import BinaryOptions, build_model, make_config

    torch.manual_seed(0)
    opts = BinaryOptions(width=8) if precision == "binary" else None
    model = build_model(make_config("res8-narrow", precision, opts))
    model.meta = {"input_shape": [20, 10], "classes": [f"c{k}" for k in range(12)]}
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-3, 3)
            mod.running_var.uniform_(0.5, 20)
            if precision == "binary":      # negative and near-zero scales fold into thresholds
                mod.weight.data.uniform_(-1, 1)
    q = torch.randint(-127, 128, (40, 20, 10)).float()
    with torch.no_grad():
        model.train()(q)            # calibrates the activation quantizers of the int8 model
    model.eval()
    torch_cls = predict(model, q, "torch")
    golden_cls = predict(model, q, "golden")
    assert np.array_equal(torch_cls, golden_cls)


def test_rtl_engine_reports_agreement(monkeypatch):
    """`--engine rtl`: classes from Verilator, with agreement counts and cycle figures."""
    import kwsbnn.sim.engine  # noqa: F401  (registers the rtl engine)
    from kwsbnn.sw import evaluate
    from kwsbnn.sw.models import BinaryOptions, build_model, make_config

    torch.manual_seed(1)
    model = build_model(make_config("res8-narrow", "binary", BinaryOptions(width=8)))
    model.meta = {"input_shape": [12, 8], "classes": [f"c{k}" for k in range(12)]}
    model.eval()
    q = torch.randint(-127, 128, (5, 12, 8)).float()
    evaluate.FIGURES.clear()
    rtl = evaluate.predict(model, q, "rtl")
    assert np.array_equal(rtl, evaluate.predict(model, q, "golden"))
    assert evaluate.FIGURES["agreement"] == {"equal": 5, "total": 5}
    assert evaluate.FIGURES["cycles_per_inference"] > 0
    model_cycles = evaluate.FIGURES["model_cycles_per_inference"]
    assert abs(evaluate.FIGURES["cycles_per_inference"] - model_cycles) <= 0.05 * model_cycles
    assert "first_mismatch" not in evaluate.FIGURES and "waves" not in evaluate.FIGURES


def test_rtl_engine_simulates_the_given_folding(monkeypatch):
    """With a folding in ``RTL_OPTIONS`` (as `kwsbnn demo` sets the board's) the rtl engine simulates
    that design: the measured cycles follow the cost model of that folding, not the default one."""
    from kwsbnn.hw.cost import Folding, layer_costs
    from kwsbnn.sw import evaluate
    from kwsbnn.sim.engine import RTL_OPTIONS
    from kwsbnn.sw.engines import golden_of
    from kwsbnn.sw.models import BinaryOptions, build_model, make_config

    torch.manual_seed(2)
    model = build_model(make_config("res8-narrow", "binary", BinaryOptions(width=8)))
    model.meta = {"input_shape": [12, 8], "classes": [f"c{k}" for k in range(12)]}
    model.eval()
    q = torch.randint(-127, 128, (4, 12, 8)).float()
    dep = golden_of(model).model
    slow = Folding(layers={name: {"pe": 1, "simd": 1} for name in Folding.default(dep).to_dict()["layers"]})
    assert layer_costs(dep, slow)["cycles_per_inference"] > layer_costs(dep)["cycles_per_inference"]
    monkeypatch.setitem(RTL_OPTIONS, "folding", slow)
    evaluate.FIGURES.clear()
    rtl = evaluate.predict(model, q, "rtl")
    assert np.array_equal(rtl, evaluate.predict(model, q, "golden"))
    want = layer_costs(dep, slow)["cycles_per_inference"]
    assert evaluate.FIGURES["model_cycles_per_inference"] == want
    assert abs(evaluate.FIGURES["cycles_per_inference"] - want) <= 0.05 * want
