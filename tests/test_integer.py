"""Integer inference mode: threshold folding by enumeration, and agreement with the float model."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import specgen
from kwsbnn.errors import KwsError
from kwsbnn.sw.integer import fold_thresholds, integer_forward, integer_spec
from kwsbnn.sw.models import Block, build_model, make_config

torch.set_num_threads(1)
T, F = 24, 12


def _block(cin, cout, shortcut, in_prec="bin", w_prec="bin"):
    b = Block(cin, cout, in_prec=in_prec, w_prec=w_prec, out_prec="bin", shortcut=shortcut)
    return b.eval()


def _reference_bits(block, values, s):
    acc = torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, block.cout, 1, 1)
    x = torch.full_like(acc, float(s))
    with torch.no_grad():
        return (block.pre_activation(acc, x, 1.0) >= 0)[:, :, 0, 0].numpy()


def _apply(direction, thr, values):
    v = np.asarray(values)[:, None]
    return np.where(direction[None, :] > 0, v >= thr[None, :], v <= thr[None, :])


def _set_bn(block, gamma, beta, mean, var, a=None):
    with torch.no_grad():
        block.bn.weight.copy_(torch.tensor(gamma, dtype=torch.float32))
        block.bn.bias.copy_(torch.tensor(beta, dtype=torch.float32))
        block.bn.running_mean.copy_(torch.tensor(mean, dtype=torch.float32))
        block.bn.running_var.copy_(torch.tensor(var, dtype=torch.float32))
        if a is not None:
            block.shortcut_scale.copy_(torch.tensor(a, dtype=torch.float32))


def test_fold_negative_zero_and_constant_channels():
    b = _block(1, 6, shortcut=False)          # K = 9: acc in [-9, 9]
    _set_bn(b, gamma=[1.0, -1.0, 0.0, 0.0, 2.0, -0.5], beta=[0.0, 0.0, 1.0, -1.0, 100.0, 0.25],
            mean=[2.5, -3.0, 0.0, 0.0, 0.0, 4.0], var=[1.0] * 6)
    direction, thr = fold_thresholds(b, 1.0, 9)
    assert direction.tolist() == [1, -1, 1, 1, 1, -1]
    assert thr[0, 0] == 3 and thr[1, 0] == -3           # x >= 2.5 ; x <= -3
    assert thr[2, 0] < -9 and thr[3, 0] > 9              # zero scale: always 1 / always 0
    assert thr[4, 0] < -9                                # saturated: always 1
    assert thr[5, 0] == 4                                # -0.5 (x - 4) + 0.25 >= 0  <=>  x <= 4.5
    values = np.arange(-9, 10)
    assert np.array_equal(_apply(direction, thr[:, 0], values), _reference_bits(b, values, 0))


def test_fold_one_bit_shortcut_two_thresholds():
    b = _block(3, 3, shortcut=True)           # K = 27
    _set_bn(b, gamma=[1.0, -1.0, 0.0], beta=[0.0, 0.0, 0.0], mean=[0.0, 0.0, 0.0], var=[1.0] * 3,
            a=[2.5, 2.5, -1.0])
    direction, thr = fold_thresholds(b, 1.0, 27)
    assert thr.shape == (3, 2)
    assert direction.tolist() == [1, -1, 1]
    assert thr[0].tolist() == [3, -2]         # x - 2.5 >= 0 ; x + 2.5 >= 0
    assert thr[1].tolist() == [-3, 2]         # -x - 2.5 >= 0 ; -x + 2.5 >= 0
    assert thr[2, 0] < -27 and thr[2, 1] > 27  # s = -1: +1 >= 0 always; s = +1: -1 never
    values = np.arange(-27, 28)
    for bit, s in ((0, -1), (1, 1)):
        assert np.array_equal(_apply(direction, thr[:, bit], values), _reference_bits(b, values, s))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(-20, 20), st.floats(-30, 30), st.floats(0.01, 50),
                          st.floats(-40, 40)), min_size=4, max_size=4),
       st.booleans())
def test_fold_reproduces_float_function(params, zero_first):
    """For random batch norms (any sign of scale, zero included) and shortcut scales, the thresholds
    give exactly the float32 function's bits on every reachable accumulator value."""
    b = _block(4, 4, shortcut=True)
    gamma, beta, mean, var, a = (list(v) for v in zip(*params))
    if zero_first:
        gamma[0] = 0.0
    _set_bn(b, gamma, beta, mean, var, a)
    bound = 36
    direction, thr = fold_thresholds(b, 1.0, bound)
    values = np.arange(-bound, bound + 1)
    for bit, s in ((0, -1), (1, 1)):
        assert np.array_equal(_apply(direction, thr[:, bit], values), _reference_bits(b, values, s))


def test_fold_rejects_non_monotonic_function(monkeypatch):
    b = _block(1, 2, shortcut=False)
    monkeypatch.setattr(b, "pre_activation", lambda acc, x, s: torch.cos(acc))
    with pytest.raises(KwsError, match="monotonic"):
        fold_thresholds(b, 1.0, 9)


def _trained_like(precision, opts=None, seed=0):
    return specgen.trained_like(precision, opts, seed=seed, t=T, f=F)


@pytest.mark.parametrize("opts", ["redesign", "redesign,first_weights=bin", "redesign,shortcut=false,pad_bit=0"])
def test_binary_integer_forward_is_exact(opts):
    model = _trained_like("binary", opts)
    spec = integer_spec(model)
    q = torch.randint(-127, 128, (32, T, F)).float()
    with torch.no_grad():
        logits, acts = model(q, return_activations=True)
    scores, iacts = integer_forward(spec, q)
    for i, a in enumerate(acts):
        assert torch.equal((a > 0).long(), iacts[f"conv{i}"]), f"conv{i}"
    # logits are the integer scores times one positive constant
    scale = spec["layers"][-1]["score_scale"]
    assert torch.allclose(logits.double(), scores.double() * scale, rtol=1e-5, atol=1e-6)
    assert torch.equal(logits.argmax(1), scores.argmax(1))


def test_int8_integer_forward_matches_fake_quant():
    model = _trained_like("int8")
    spec = integer_spec(model)
    q = torch.randint(-127, 128, (32, T, F)).float()
    with torch.no_grad():
        logits, acts = model(q, return_activations=True)
    scores, iacts = integer_forward(spec, q)
    for i, a in enumerate(acts):
        diff = (a.long() != iacts[f"conv{i}"]).float().mean().item()
        assert diff < 1e-3, f"conv{i}: {diff:.2e} of the activations differ"
    assert (logits.argmax(1) == scores.argmax(1)).float().mean() >= 0.95


def test_binary_int8_last_layer_forward():
    """``last=int8``: the last binary layer's output is ReLU + int8 (no shortcut); the integer scores
    follow the model's fake quantization as closely as the 8-bit network's do."""
    model = _trained_like("binary", "redesign,last=int8")
    spec = integer_spec(model)
    convs = [layer for layer in spec["layers"] if layer["op"] == "conv"]
    assert [c["out"] for c in convs] == ["bits"] * (len(convs) - 1) + ["int8"]
    assert convs[-1]["in_prec"] == "bin" and convs[-1]["shortcut"] == "none"
    assert convs[-2]["shortcut"] == "bit"
    q = torch.randint(-127, 128, (32, T, F)).float()
    with torch.no_grad():
        logits, acts = model(q, return_activations=True)
    scores, iacts = integer_forward(spec, q)
    for i, a in enumerate(acts[:-1]):
        assert torch.equal((a > 0).long(), iacts[f"conv{i}"]), f"conv{i}"
    last = iacts[f"conv{len(acts) - 1}"]
    assert last.min() >= 0 and last.max() <= 127 and last.max() > 0
    assert (acts[-1].long() != last).float().mean().item() < 1e-3
    assert (logits.argmax(1) == scores.argmax(1)).float().mean() >= 0.95


def test_spec_fields_and_json():
    model = _trained_like("binary", "redesign,width=8")
    spec = integer_spec(model, name="t")
    assert spec["input"] == {**spec["input"], "prec": "int8", "shape": [1, T, F]}
    ops = [layer["op"] for layer in spec["layers"]]
    assert ops == ["conv"] * 7 + ["gap", "dense"]
    c0, c1 = spec["layers"][0], spec["layers"][1]
    assert c0["in_prec"] == "int8" and c0["w_prec"] == "int8" and c0["pool"] == [4, 3]
    assert c1["in_prec"] == "bin" and c1["shortcut"] == "bit" and c1["threshold"].shape == (8, 2)
    assert c1["weights"].shape == (8, 72) and set(np.unique(c1["weights"])) <= {0, 1}
    assert set(np.unique(c1["direction"])) <= {-1, 1}
    text = json.dumps(spec, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else None)
    assert "null" not in text.replace('"pool": null', "")


def test_float_model_has_no_integer_form():
    model = build_model(make_config("res8-narrow", "float"))
    with pytest.raises(KwsError):
        integer_spec(model)


@pytest.mark.parametrize("precision,opts", [("binary", "redesign"), ("binary", "redesign,first_weights=bin,pad_bit=0"),
                                            ("binary", "redesign,last=int8,stages=8x1-8x2"),
                                            ("binary", "redesign,last=int8,bn=false"), ("int8", None)])
def test_spec_runs_bit_exact_in_the_golden_model(precision, opts, tmp_path):
    """The spec written as a deployable model gives the same integers in the NumPy golden model."""
    deploy = pytest.importorskip("kwsbnn.sw.deploy")
    golden = pytest.importorskip("kwsbnn.sw.golden")
    model = _trained_like(precision, opts)
    spec = integer_spec(model)
    deploy.save(spec, tmp_path / "dep")
    q = torch.randint(-127, 128, (4, T, F)).float()
    scores, acts = integer_forward(spec, q)
    res = golden.GoldenModel(tmp_path / "dep").run(q.numpy().astype(np.int64)[:, None], dump=True)
    assert np.array_equal(res.scores, scores.numpy())
    for name, arr in res.layers.items():
        assert np.array_equal(arr, acts[name].numpy()), name
