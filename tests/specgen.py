"""Random networks in the integer contract, for testing the chain spec -> files -> golden/RTL."""

import numpy as np


def conv(rng, name, cin, cout, *, in_prec, w_prec="bin", out="bits", kernel=(3, 3), stride=(1, 1),
         dilation=(1, 1), padding=(1, 1), pool=None, shortcut="none", pad_bit=0):
    kt, kf = kernel
    k = cin * kt * kf
    layer = {"name": name, "op": "conv", "in_channels": cin, "out_channels": cout,
             "kernel": list(kernel), "stride": list(stride), "dilation": list(dilation),
             "padding": list(padding), "in_prec": in_prec, "w_prec": w_prec, "pad_bit": pad_bit,
             "pool": list(pool) if pool else None, "out": out, "shortcut": shortcut}
    if w_prec == "bin":
        layer["weights"] = rng.integers(0, 2, (cout, k))
        wmax = 1
    else:
        layer["weights"] = rng.integers(-127, 128, (cout, k))
        wmax = 127
    xmax = 1 if in_prec == "bin" else 127
    area = pool[0] * pool[1] if pool else 1
    reach = k * xmax * wmax * area
    if out == "bits":
        layer["direction"] = rng.choice([-1, 1], cout)
        n = 2 if shortcut == "bit" else 1
        # Mostly thresholds near the middle of the distribution; some constant channels.
        spread = max(1, int(np.sqrt(k) * xmax * wmax * area))
        thr = rng.integers(-spread, spread + 1, (cout, n))
        thr[0, :] = -reach - 1
        if cout > 1:
            thr[1, :] = reach + 1
        layer["threshold"] = thr
    else:
        layer["mul"] = rng.integers(1, 200, cout)
        layer["add"] = rng.integers(-5000, 5000, cout)
        layer["smul"] = rng.integers(0, 300, cout) if shortcut == "int8" else np.zeros(cout, np.int64)
        layer["shift"] = int(rng.integers(8, 14))
        layer["lo"], layer["hi"] = 0, 127
    return layer


def head(rng, cin, n_classes, w_prec="int8"):
    w = rng.integers(0, 2, (n_classes, cin)) if w_prec == "bin" else rng.integers(-127, 128, (n_classes, cin))
    return [{"name": "gap", "op": "gap"},
            {"name": "dense", "op": "dense", "in_features": cin, "out_features": n_classes,
             "w_prec": w_prec, "weights": w, "bias": rng.integers(-1000, 1000, n_classes)}]


def binary_kws(seed=0, t=16, f=10, c=8, n_classes=5):
    """A small binary KWS-shaped network: int8 first layer with pooling, binary convs with 1-bit
    shortcuts, a dilated and a strided conv, gap, int8 dense."""
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "conv0", 1, c, in_prec="int8", pool=(2, 2)),
              conv(rng, "conv1", c, c, in_prec="bin", shortcut="bit", pad_bit=1),
              conv(rng, "conv2", c, c, in_prec="bin", dilation=(2, 2), padding=(2, 2), shortcut="bit"),
              conv(rng, "conv3", c, c, in_prec="bin", stride=(2, 1), padding=(1, 0))]
    layers += head(rng, c, n_classes)
    return {"name": f"binary_kws{seed}", "classes": [f"k{i}" for i in range(n_classes)],
            "input": {"prec": "int8", "shape": [1, t, f]}, "layers": layers}


def int8_kws(seed=0, t=12, f=8, c=6, n_classes=4):
    """A small 8-bit network with an int8 shortcut."""
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "conv0", 1, c, in_prec="int8", w_prec="int8", out="int8"),
              conv(rng, "conv1", c, c, in_prec="int8", w_prec="int8", out="int8", shortcut="int8")]
    layers += head(rng, c, n_classes)
    return {"name": f"int8_kws{seed}", "classes": [f"k{i}" for i in range(n_classes)],
            "input": {"prec": "int8", "shape": [1, t, f]}, "layers": layers}


def random_inputs(spec, n, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(spec["input"]["shape"])
    if spec["input"]["prec"] == "bin":
        return rng.integers(0, 2, (n,) + shape)
    return rng.integers(-127, 128, (n,) + shape)


def wide_kws(seed=0, c=64, n_classes=12, shortcut="none", pad_bit=0):
    """A random network of the shape of the shipped ``binary-wide``: a 101x40 int8 input, a 3x3
    first layer with binary weights and 4x3 pooling, three binary 3x3 layers of ``c`` channels (the
    last dilated by 2, with int8 outputs), gap and an int8 dense layer."""
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "conv0", 1, c, in_prec="int8", pool=(4, 3)),
              conv(rng, "conv1", c, c, in_prec="bin", shortcut=shortcut, pad_bit=pad_bit),
              conv(rng, "conv2", c, c, in_prec="bin", shortcut=shortcut),
              conv(rng, "conv3", c, c, in_prec="bin", dilation=(2, 2), padding=(2, 2), out="int8")]
    layers[-1]["mul"] = rng.integers(1, 40, c)        # int8 outputs spread over 0..127
    layers[-1]["add"] = rng.integers(0, 1 << 13, c)
    layers[-1]["shift"] = 7
    layers += head(rng, c, n_classes)
    return {"name": f"wide_kws{seed}_{c}", "classes": [f"k{i}" for i in range(n_classes)],
            "input": {"prec": "int8", "shape": [1, 101, 40]}, "layers": layers}


def trained_like(precision, opts=None, *, seed=0, width=8, shift_spread=0.5, t=24, f=12):
    """A small PyTorch chain model (res8-narrow at ``width`` channels unless ``opts`` set stages) with
    random batch norms (one zero and one negative scale per layer), random shortcut scales and, for
    the integer residual stream, random RSign shifts (``shift_spread``), statistics settled on
    three random batches; in evaluation mode."""
    import torch

    from kwsbnn.sw.models import BinaryOptions, Block, build_model, make_config
    torch.manual_seed(seed)
    cfg = make_config("res8-narrow", precision, BinaryOptions.parse(opts) if opts else None)
    if not cfg.widths:
        cfg.channels = width
    model = build_model(cfg)
    model.meta = {"input_shape": [t, f], "classes": [f"c{k}" for k in range(12)]}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.normal_(0, 1)
                m.bias.normal_(0, 0.5)
                m.weight[0] = 0.0
                m.weight[1] = -m.weight[1].abs()
            if isinstance(m, Block) and m.shortcut_scale is not None:
                m.shortcut_scale.normal_(0, 1)
            if isinstance(m, Block) and m.in_shift is not None:
                m.in_shift.normal_(0, shift_spread)
        model.head.linear.weight.normal_(0, 1)
        model.train()
        for _ in range(3):
            model(torch.randint(-127, 128, (8, t, f)).float())
    return model.eval()


def stream_conv(rng, name, c, *, shortcut="int8", lo=-128, **kw):
    """A binary layer on the integer residual stream (docs/integer-network.md): it reads the bits
    ``r >= in_threshold`` and adds ``(acc * mul + add) >> shift`` to ``r`` (``smul = 2**shift``),
    clamped to ``[lo, 127]``; random constants that keep ``r`` moving."""
    layer = conv(rng, name, c, c, in_prec="bin", out="int8", shortcut=shortcut, **kw)
    shift = int(rng.integers(8, 14))
    layer.update(shift=shift, mul=rng.integers(-400, 400, c),
                 add=rng.integers(-(1 << (shift + 6)), 1 << (shift + 6), c),
                 smul=np.full(c, 1 << shift if shortcut == "int8" else 0),
                 in_threshold=rng.integers(-40, 40, c), lo=lo, hi=127)
    return layer


def stream_layers(seed: int, c: int = 8, lo: int = 0) -> list:
    """The layer engine's three binary layers on the integer stream, random: ``c`` channels, the
    first padded with ones, the last dilated by 2 and clamped at ``lo``."""
    rng = np.random.default_rng(seed)
    return [stream_conv(rng, "c1", c, pad_bit=1), stream_conv(rng, "c2", c),
            stream_conv(rng, "c3", c, dilation=(2, 2), padding=(2, 2), lo=lo)]


def stream_words(r, lanes: int = 8) -> list:
    """An int8 map ``r`` (n, c, t, f) as the engines' stream words: per position (t-major), per
    group of ``lanes`` channels, value ``j`` at bits 8j."""
    n, c, t, f = r.shape
    return [sum((int(r[i, g * lanes + j, tt, ff]) & 0xFF) << (8 * j) for j in range(lanes))
            for i in range(n) for tt in range(t) for ff in range(f) for g in range(c // lanes)]


def stream_golden(layers, r):
    """The golden model's output of the engine layers ``layers`` on the int8 map ``r``."""
    from kwsbnn.sw.golden import GoldenModel
    for layer in layers:
        r = GoldenModel._conv(layer, r, "bin")
    return r


def stream_kws(seed=0, c=8, t=25, f=13, n_classes=5, lo=0):
    """A random network on the integer residual stream, of the shipped ``binary``'s shape: an int8
    input, a 3x3 first layer with binary weights and 4x3 pooling writing the stream (int8 values),
    three binary 3x3 stream layers (the last dilated by 2, clamped at ``lo``: 0 is the ReLU of
    ``last=int8``), gap and an int8 dense layer. ``t`` x ``f`` = 25 x 13 (or 101 x 40) lets the
    first layer fold its pooling in."""
    rng = np.random.default_rng(seed)
    first = conv(rng, "conv0", 1, c, in_prec="int8", pool=(4, 3), out="int8")
    first.update(shift=int(rng.integers(9, 12)), lo=-128, hi=127)
    layers = [first, stream_conv(rng, "conv1", c, pad_bit=1), stream_conv(rng, "conv2", c),
              stream_conv(rng, "conv3", c, dilation=(2, 2), padding=(2, 2), lo=lo)]
    layers += head(rng, c, n_classes)
    return {"name": f"stream_kws{seed}_{c}", "classes": [f"k{i}" for i in range(n_classes)],
            "input": {"prec": "int8", "shape": [1, t, f]}, "layers": layers}
