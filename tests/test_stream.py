"""The integer residual stream (``shortcut=int``, Bi-Real Net): the float model's evaluation mode, the
integer contract (torch) and the NumPy golden model give the same integers, layer by layer."""


import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import specgen
from kwsbnn.errors import KwsError
from kwsbnn.sw import deploy
from kwsbnn.sw.checkpoint import model_from_payload, model_payload
from kwsbnn.sw.golden import GoldenModel
from kwsbnn.sw.integer import integer_forward, integer_spec
from kwsbnn.sw.models import STREAM_RANGE, BinaryOptions, build_model, make_config

torch.set_num_threads(1)
T, F = 24, 12


def _stream_model(opts="redesign,shortcut=int", seed=0, width=8, spread=0.5):
    """A small stream model with random batch norms and shifts and settled statistics."""
    return specgen.trained_like("binary", opts, seed=seed, width=width, shift_spread=spread, t=T, f=F)


def _check_exact(model, q, tmp_path=None):
    spec = integer_spec(model)
    with torch.no_grad():
        logits, acts = model(q, return_activations=True)
    scores, iacts = integer_forward(spec, q)
    for i, a in enumerate(acts):
        assert torch.equal(a.long(), iacts[f"conv{i}"]), f"conv{i}"
    assert torch.equal(logits.argmax(1), scores.argmax(1))
    scale = spec["layers"][-1]["score_scale"]
    assert torch.allclose(logits.double(), scores.double() * scale, rtol=1e-5, atol=1e-6)
    if tmp_path is not None:
        deploy.save(spec, tmp_path)
        res = GoldenModel(tmp_path).run(q.numpy().astype(np.int64)[:, None], dump=True)
        assert np.array_equal(res.scores, scores.numpy())
        for name, arr in res.layers.items():
            assert np.array_equal(arr, iacts[name].numpy()), name
    return spec, iacts


@pytest.mark.parametrize("opts", ["redesign,shortcut=int", "redesign,shortcut=int,last=int8","redesign,shortcut=int,first_weights=bin,pad_bit=0",
                                  "redesign,shortcut=int,rsign=false,stream_frac=3",
                                  "redesign,shortcut=int,stages=8x2-12x2,pool=4x3",
                                  "redesign,shortcut=int,stages=8x1-8x2,pool=4x3/2x1,dilation=on"])
def test_stream_torch_integer_golden_agree(opts, tmp_path):
    model = _stream_model(opts)
    q = torch.randint(-127, 128, (16, T, F)).float()
    spec, acts = _check_exact(model, q, tmp_path / "dep")
    convs = [layer for layer in spec["layers"] if layer["op"] == "conv"]
    assert convs[0]["in_prec"] == "int8" and "in_threshold" not in convs[0]
    relu = "last=int8" in opts
    assert all(c["out"] == "int8" and (c["lo"], c["hi"]) == STREAM_RANGE for c in convs[:-1])
    assert (convs[-1]["lo"], convs[-1]["hi"]) == ((0, 127) if relu else STREAM_RANGE)
    for c in convs[1:]:
        assert c["in_prec"] == "bin" and c["in_threshold"].shape == (c["in_channels"],)
        same = c["in_channels"] == c["out_channels"] and not c["pool"]
        assert c["shortcut"] == ("int8" if same else "none")
    # the stream really moves: not stuck at the clamp, several values
    last = acts[f"conv{len(convs) - 1}"]
    assert len(torch.unique(last)) > 20 and (last.min() >= 0 if relu else last.min() < 0)
    assert deploy.load(tmp_path / "dep").manifest["version"] == 2


def test_stream_adds_the_residual_exactly(tmp_path):
    """With the conv's BN output forced to zero (gamma = beta = 0), each block passes its stream on."""
    model = _stream_model()
    with torch.no_grad():
        for blk in model.blocks[1:]:
            blk.bn.weight.zero_()
            blk.bn.bias.zero_()
    q = torch.randint(-127, 128, (4, T, F)).float()
    _, acts = _check_exact(model, q, tmp_path / "dep")
    for i in range(2, len(model.blocks)):
        assert torch.equal(acts[f"conv{i}"], acts["conv1"])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.floats(0.0, 4.0), frac=st.integers(2, 6))
def test_stream_exact_property(seed, spread, frac):
    model = _stream_model(f"redesign,shortcut=int,stream_frac={frac}", seed=seed, width=4, spread=spread)
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (4, T, F), generator=g).float()
    _check_exact(model, q)


def test_stream_trains_through_the_residual():
    model = _stream_model().train()
    out = model(torch.randint(-127, 128, (8, T, F)).float())
    out.logsumexp(1).sum().backward()
    for blk in model.blocks[1:]:
        assert blk.in_shift.grad is not None and blk.in_shift.grad.abs().sum() > 0
        assert blk.conv.weight.grad.abs().sum() > 0


def test_rsign_off_freezes_the_shift():
    model = _stream_model("redesign,shortcut=int,rsign=false")
    assert not any(b.in_shift.requires_grad for b in model.blocks[1:])


def test_shortcut_option_names_and_old_files():
    assert BinaryOptions.parse("redesign,shortcut=false").shortcut == "none"
    for text, has in (("shortcut=none", False), ("shortcut=false", False), ("shortcut=bit", True)):
        m = build_model(make_config("res8-narrow", "binary", BinaryOptions.parse(f"redesign,{text}")))
        assert any(b.shortcut_scale is not None for b in m.blocks) == has, text
    assert BinaryOptions.parse("redesign,shortcut=true").shortcut == "bit"
    assert BinaryOptions(shortcut=True).shortcut == "bit"          # a version-1 model file's bool
    with pytest.raises(ValueError, match="shortcut"):
        BinaryOptions.parse("redesign,shortcut=float")
    bit = build_model(make_config("res8-narrow", "binary", BinaryOptions(shortcut="bit")))
    payload = model_payload(bit)
    cfg = dict(payload["config"])
    cfg["binary"] = {k: v for k, v in cfg["binary"].items() if k not in ("rsign", "stream_frac")}
    cfg["binary"]["shortcut"] = True                             # as version 1 wrote it
    old = model_from_payload({**payload, "version": 1, "config": cfg})
    assert old.config.options.shortcut == "bit"
    with pytest.raises(KwsError, match="version"):
        model_from_payload({**payload, "version": 99})


def test_hardware_refuses_the_stream_until_it_builds_it(tmp_path):
    from kwsbnn.hw.plan import UnsupportedNetwork, plan
    model = _stream_model()
    deploy.save(integer_spec(model), tmp_path / "dep")
    with pytest.raises(UnsupportedNetwork):
        plan(deploy.load(tmp_path / "dep"))


def test_direct_preset_is_the_textbook_binarization():
    o = BinaryOptions.parse("direct")
    assert (o.layout, o.first_weights, o.bn, o.shortcut, o.last, o.distill) == \
        ("chain", "int8", True, "bit", "bin", 0.0)
