"""Memory footprint of a model at its precision: weight bits and peak activation bits.

This is the model-level accounting of the trade-off study (the paper's x-axis); the hardware's own
memory (ROM widths, thresholds, line buffers, FIFOs) is the cost model's (:mod:`kwsbnn.hw.cost`).

- Weight memory: every convolution and dense weight at the precision the layer computes with
  (float 32 bits, int8 8 bits, binary 1 bit), plus 32 bits per per-channel scale or bias the
  integer forms need (int8 weight scales, the dense layer's bias). Batch-norm parameters are not
  weights: in integer inference they fold into thresholds (binary) or requantization (int8), which
  the hardware report counts.
- Peak activation memory: the largest ``input + output`` activation of one layer, at the precision
  it is stored in (the int8 feature map is 8 bits; a float model's activations 32 bits; a naive
  binary model keeps float activations between its signs, 32 bits; the redesign 1 bit).
"""

import torch
from torch import nn

from .models import Block, ChainResNet, HonkResNet

BITS = {"float": 32, "int8": 8, "bin": 1, "stream": 8}   # stream: the int8 residual stream


def footprint(model: nn.Module) -> dict:
    """``{"weight_bits", "activation_peak_bits", "layers": [{name, weight_bits, in_bits, out_bits}]}``."""
    t, f = model.meta.get("input_shape", [101, 40]) if hasattr(model, "meta") else (101, 40)
    x = torch.zeros(1, int(t), int(f))
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: shapes.__setitem__(
        n, (inp[0].numel(), (out[0] if isinstance(out, tuple) else out).numel())))
        for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, Block))]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(x)
    model.train(was)
    for h in hooks:
        h.remove()

    layers = []
    if isinstance(model, ChainResNet):
        for i, b in enumerate(model.blocks):
            n_in, n_out = shapes[f"blocks.{i}"]
            wb = b.conv.weight.numel() * BITS[b.w_prec] + (32 * b.cout if b.w_prec == "int8" else 0)
            layers.append(dict(name=f"conv{i}", weight_bits=wb, in_bits=n_in * BITS[b.in_prec],
                               out_bits=n_out * BITS[b.out_prec]))
        h = model.head
        hb = BITS[h.prec]
        n_in, n_out = h.linear.in_features, h.linear.out_features
        layers.append(dict(name="dense", weight_bits=h.linear.weight.numel() * hb
                           + (32 if h.prec == "int8" else 0) + 32 * h.linear.out_features,
                           in_bits=n_in * 32, out_bits=n_out * 32))
    elif isinstance(model, HonkResNet):
        binary = model.config.precision == "binary"
        n_in, n_out = shapes["conv0"]
        layers.append(dict(name="conv0", weight_bits=model.conv0.weight.numel() * 32,
                           in_bits=n_in * 8, out_bits=n_out * 32))
        for i, c in enumerate(model.convs, start=1):
            n_in, n_out = shapes[f"convs.{i - 1}"]
            layers.append(dict(name=f"conv{i}", weight_bits=c.weight.numel() * (1 if binary else 32),
                               in_bits=n_in * 32, out_bits=n_out * 32))
        n_in, n_out = shapes["output"]
        layers.append(dict(name="dense", weight_bits=model.output.weight.numel() * 32
                           + 32 * model.output.out_features, in_bits=n_in * 32, out_bits=n_out * 32))
    else:
        raise TypeError(f"no footprint for {type(model).__name__}")
    return {"weight_bits": sum(l["weight_bits"] for l in layers),
            "activation_peak_bits": max(l["in_bits"] + l["out_bits"] for l in layers),
            "layers": layers}
