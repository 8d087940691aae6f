"""Benchmark: where a small binary chain network loses its accuracy (docs/binary-guidelines.md).

    .venv/bin/python benchmarks/binary_ablation.py --data DIR [--epochs 10] [--width 20] [VARIANT ...]

Trains the redesigned binary res8 (chain layout, ``--width`` channels) and variants of it that undo
one binarization at a time, with one plain loop for all: cached features without augmentation,
AdamW 2e-3 with a cosine schedule, batch 64, latent weights clipped to [-1, 1], batch-norm statistics
re-estimated before each validation pass. It prints training and validation accuracy per epoch and a
JSON summary. Variants (default: all):

- ``binary``       the network as shipped (±1 weights, sign activations, 1-bit shortcuts)
- ``last-real``    the dense layer reads the last layer's pre-activation instead of its signs
- ``first-real``   the first layer's output is ReLU (real) instead of signs
- ``real-residual`` the shortcut carries the previous layer's real pre-activation (Bi-Real style)
- ``real-weights`` sign activations, real weights
- ``relu``         ±1 weights, ReLU activations
- ``float``        the float chain network at the same width (ReLU, real weights, real shortcuts)

Guideline variants (deployable; docs/binary-guidelines.md): each switches one guideline off:
``no-bn`` (``bn=false``), ``no-shortcut``, ``bin-first`` (``first_weights=bin``), ``no-clip``
(``clipped_ste=false``, plain straight-through gradient), ``pad-minus`` (``pad_bit=0``).

Of the first group only ``binary`` is deployable; those variants say which binarization costs the
accuracy.
About 2 minutes per variant at width 20 on one core.
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from kwsbnn.sw.data import SpeechCommands
from kwsbnn.sw.features import FeatureCache, FeatureConfig, FeatureQuantizer
from kwsbnn.sw.models import INPUT_SCALE, BinaryOptions, Head, build_model, make_config, reestimate_bn
from kwsbnn.sw.quant import sign_ste


def _real_weights(m):
    for b in m.blocks:
        if b.w_prec == "bin":
            b.weights = (lambda blk: lambda: (blk.conv.weight, torch.ones(blk.cout)))(b)


def _relu(m):
    for b in m.blocks:
        b.activation = lambda z: (F.relu(z), 1.0)


def _first_real(m):
    m.blocks[0].activation = lambda z: (F.relu(z), 1.0)


def _last_real(m):
    b = m.blocks[-1]
    b.activation = lambda z: (z, 1.0)
    m.head = Head(b.cout, m.head.linear.out_features, "float")


def _real_residual(m):
    def forward(q, return_activations=False):
        x, s, res = q.unsqueeze(1), INPUT_SCALE, None
        for b in m.blocks:
            acc = b.accumulate(x)
            if b.shortcut_scale is None:
                z = b.pre_activation(acc, x, s)
            else:
                z = b.pre_activation(acc, torch.zeros_like(x), s) + b.shortcut_scale.view(1, -1, 1, 1) * res
            res = z
            x, s = sign_ste(z, b.clipped, b.ste_window), 1.0
        return m.head(x, s)
    m.forward = forward


def _float(m):
    _real_weights(m)
    _relu(m)
    for b in m.blocks[1:]:      # real inputs: zero padding, the shortcut adds the ReLU output itself
        b.in_prec = "float"


OPTIONS = {"no-bn": "bn=false", "no-shortcut": "shortcut=false", "bin-first": "first_weights=bin",
           "no-clip": "clipped_ste=false", "pad-minus": "pad_bit=0"}
VARIANTS = {"binary": None, "last-real": _last_real, "first-real": _first_real,
            "real-residual": _real_residual, "real-weights": _real_weights, "relu": _relu, "float": _float}


def run(variant, Q, y, VQ, vy, width, epochs, seed=0):
    torch.manual_seed(seed)
    extra = f",{OPTIONS[variant]}" if variant in OPTIONS else ""
    model = build_model(make_config("res8", "binary", BinaryOptions.parse(f"redesign,width={width}{extra}")))
    if VARIANTS.get(variant):
        VARIANTS[variant](model)
    latent = [b.conv.weight for b in model.blocks if b.w_prec == "bin"]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    per_epoch = len(Q) // 64
    total = epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / total)))
    history, t0 = [], time.time()
    for e in range(epochs):
        perm = torch.randperm(len(Q))
        model.train()
        right = 0
        for k in range(per_epoch):
            i = perm[k * 64:(k + 1) * 64]
            out = model(Q[i])
            loss = F.cross_entropy(out, y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for p in latent:
                    p.clamp_(-1, 1)
            right += int((out.argmax(1) == y[i]).sum())
        reestimate_bn(model, [Q[perm[k:k + 64]] for k in range(0, 64 * 20, 64)])
        model.eval()
        with torch.no_grad():
            val = float((model(VQ).argmax(1) == vy).float().mean())
        history.append({"epoch": e + 1, "train_accuracy": right / (per_epoch * 64), "val_accuracy": val})
        print(f"{variant:14s} epoch {e + 1:2d}: train {history[-1]['train_accuracy']:.3f} val {val:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    return {"variant": variant, "width": width, "epochs": epochs, "history": history,
            "final_train_accuracy": history[-1]["train_accuracy"], "final_val_accuracy": history[-1]["val_accuracy"],
            "seconds": time.time() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("variants", nargs="*", default=list(VARIANTS) + list(OPTIONS),
                    choices=list(VARIANTS) + list(OPTIONS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = SpeechCommands(args.data)
    cache = FeatureCache(FeatureConfig())
    train_ex, val_ex = ds.split("train"), ds.split("validation")
    X = cache.get(train_ex, ds)
    qz = FeatureQuantizer.fit(X)
    Q, y = qz.quantize(X), torch.tensor([e.label for e in train_ex])
    VQ, vy = qz.quantize(cache.get(val_ex, ds)), torch.tensor([e.label for e in val_ex])
    results = [run(v, Q, y, VQ, vy, args.width, args.epochs) for v in args.variants]
    print(json.dumps({"train_clips": len(Q), "validation_clips": len(VQ), "results": results}, indent=1))


if __name__ == "__main__":
    main()
