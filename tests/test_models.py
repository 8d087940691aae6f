"""Model family: shapes at every precision, straight-through gradients, configurations as data."""

import pytest
import torch

from kwsbnn.sw.models import (ARCHS, BinaryOptions, ChainResNet, HonkResNet, ModelConfig,
                              binary_weight_bits, build_model, make_config, reestimate_bn)
from kwsbnn.sw.quant import Int8Activation, KernelQuantizer, round_ste, sign_ste

torch.set_num_threads(1)
VARIANTS = [("float", None), ("int8", None), ("binary", "naive"), ("binary", "redesign,width=8"),
            ("binary", "redesign,width=8,first_weights=bin,shortcut=false")]


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("precision,opts", VARIANTS)
def test_shapes(arch, precision, opts):
    torch.manual_seed(0)
    cfg = make_config(arch, precision, BinaryOptions.parse(opts) if opts else None, dropout=0.1)
    if arch != "res8-narrow" and precision != "binary":
        cfg.channels = 8                       # keep the test fast; the layout is what matters
    model = build_model(cfg)
    q = torch.randint(-127, 128, (2, 48, 20)).float()
    out = model(q)
    assert out.shape == (2, 12)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    assert model(q).shape == (2, 12)
    expected = HonkResNet if cfg.layout == "honk" else ChainResNet
    assert isinstance(model, expected)


def test_layouts_by_precision():
    assert make_config("res8", "float").layout == "honk"
    assert make_config("res8", "int8").layout == "chain"
    assert make_config("res8", "binary").layout == "chain"
    assert make_config("res8", "binary", BinaryOptions.parse("naive")).layout == "honk"
    assert make_config("res8", "binary", BinaryOptions.parse("width=32")).channels == 32
    with pytest.raises(ValueError):
        make_config("res9", "float")


def test_config_round_trip():
    cfg = make_config("res15", "binary", BinaryOptions.parse("redesign,width=24,pad_bit=0"))
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.options.pad_bit == 0 and again.options.width == 24


def test_binary_options_parse():
    o = BinaryOptions.parse("naive,lr=0.01,bn=true")
    assert o.layout == "honk" and o.lr == 0.01 and o.bn is True
    assert BinaryOptions.parse(None) == BinaryOptions()
    with pytest.raises(ValueError):
        BinaryOptions.parse("redesign,colour=blue")
    with pytest.raises(ValueError):
        BinaryOptions.parse("clever")


def test_sign_ste_gradient():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]       # hardtanh gradient
    x.grad = None
    sign_ste(x, clipped=False).sum().backward()
    assert x.grad.tolist() == [1] * 7
    x.grad = None
    sign_ste(x, window=2.0).sum().backward()              # the 1-bit shortcut widens z
    assert x.grad.tolist() == [1] * 7
    x.grad = None
    sign_ste(x, window=0.5).sum().backward()
    assert x.grad.tolist() == [0, 0, 1, 1, 1, 0, 0]


def test_round_and_kernel_quantizer_gradients():
    x = torch.tensor([0.4, 1.5, 2.5, -0.6], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [0, 2, 2, -1]                     # half to even
    y.sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 1]
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    w_int, scale = KernelQuantizer("int8")(w)
    assert w_int.abs().max() == 127 and torch.equal(w_int, w_int.round())
    assert torch.allclose(w_int * scale.view(-1, 1, 1, 1), w, atol=float(scale.max()) / 2 + 1e-6)
    w_int.sum().backward()
    assert torch.all(w.grad != 0)
    wb, sb = KernelQuantizer("bin")(w)
    assert set(wb.unique().tolist()) <= {-1.0, 1.0} and torch.equal(sb, torch.ones(4))


def test_int8_activation_range_and_gradient():
    act = Int8Activation()
    z = torch.linspace(-3, 3, 61, requires_grad=True)
    y, s = act(z)
    assert y.min() == 0 and y.max() == 127 and torch.equal(y, y.round())
    y.sum().backward()
    assert torch.all(z.grad[z.detach() < -0.1] == 0) and torch.all(z.grad[(z.detach() > 0.1)] > 0)
    act.eval()
    y2, s2 = act(z * 10)
    assert s2 == s                                         # frozen in evaluation


def test_naive_binary_first_binary_conv_sees_constant_input():
    """Honk's layout puts conv1 after a ReLU: the sign of its input is always +1 (documented failure)."""
    torch.manual_seed(0)
    model = build_model(make_config("res8-narrow", "binary", BinaryOptions.parse("naive")))
    seen = {}
    conv1 = model.convs[0]
    conv1.register_forward_hook(lambda m, inp, out: seen.setdefault("x", m.input_quantizer(inp[0])))
    model(torch.randint(-127, 128, (3, 40, 20)).float())
    assert torch.all(seen["x"] == 1)


def test_binary_weight_budget_res8_width32():
    model = build_model(make_config("res8", "binary", BinaryOptions.parse("width=32,first_weights=bin")))
    assert binary_weight_bits(model) == 32 * 9 + 6 * 32 * 32 * 9      # fits 120 kbit of block RAM
    assert binary_weight_bits(model) < 120 * 1024


def test_reestimate_bn_replaces_running_stats():
    torch.manual_seed(0)
    model = build_model(make_config("res8-narrow", "binary", BinaryOptions.parse("width=8")))
    bn = model.blocks[1].bn
    bn.running_mean.fill_(1e6)
    batches = [torch.randint(-127, 128, (4, 40, 20)).float() for _ in range(3)]
    reestimate_bn(model.eval(), batches)
    assert bn.running_mean.abs().max() < 1e3
    assert not model.training and bn.momentum == 0.1
