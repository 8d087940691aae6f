"""The integer inference mode: a trained chain model as the integer contract, and its exact forward pass.

:func:`integer_spec` derives the layer list of docs/integer-network.md from an int8 or binary model
(evaluation mode). Binary outputs become per-channel thresholds found by *enumeration*: every
accumulator value in the reachable range (and both shortcut bits) goes through the model's own
float32 post-accumulator function, and the result is checked to be a monotonic step. int8 outputs
become ``mul/add/smul/shift`` (``frac_bits`` of headroom), so they match the fake-quantized model up to
rounding ties.

Array conventions (those of :mod:`kwsbnn.sw.deploy` and the golden model): conv ``weights`` are
``[C_out, K]`` with ``K`` in window order ``k = (a * kf + b) * C_in + i``; binary weights and
activations are bits (1 = +1, 0 = -1); ``direction`` is ±1; ``threshold`` is ``[C, 1]`` or, with the
1-bit shortcut, ``[C, 2]`` indexed by the shortcut bit; int8 outputs clamp to ``[lo, hi]``.

:func:`integer_forward` runs a spec from the spec alone in exact integer arithmetic (float64
convolutions on small integers, int64 everywhere else) and returns the scores and every layer's output.
"""

import numpy as np
import torch
import torch.nn.functional as F

from kwsbnn.errors import KwsError
from .models import INPUT_SCALE, Block, ChainResNet

FORMAT = "kwsbnn-integer-spec"
VERSION = 1
ENUM_CHUNK = 1 << 16


def block_name(block) -> str:
    return getattr(block, "_spec_name", "layer")


def _np(t):
    return t.detach().cpu().numpy()


def _window_order(w: torch.Tensor) -> np.ndarray:
    """``[C_out, C_in, kt, kf]`` -> ``[C_out, kt * kf * C_in]`` in window order (a, b, i)."""
    return _np(w.permute(0, 2, 3, 1).reshape(w.shape[0], -1))


@torch.no_grad()
def fold_thresholds(block: Block, in_scale: float, bound: int):
    """Enumerate ``acc`` in ``[-bound, bound]`` (and the shortcut bit) through the block's float
    function; return ``direction [C]`` (±1) and ``threshold [C, S]`` (int64), S = 2 with a shortcut.

    Raises :class:`KwsError` if a channel's output is not a monotonic step in ``acc``.
    """
    c = block.cout
    shortcut_vals = [-1.0, 1.0] if block.shortcut_scale is not None else [None]
    lo = -bound
    dirs = np.zeros((c, len(shortcut_vals)), dtype=np.int64)
    thr = np.zeros((c, len(shortcut_vals)), dtype=np.int64)
    for si, sv in enumerate(shortcut_vals):
        never = lo - 1
        first_one = np.full(c, never, np.int64)
        last_one = np.full(c, never, np.int64)
        changes = np.zeros(c, np.int64)
        start_bit, prev = None, None
        for start in range(lo, bound + 1, ENUM_CHUNK):
            v = torch.arange(start, min(start + ENUM_CHUNK, bound + 1), dtype=torch.float32)
            acc = v.view(-1, 1, 1, 1).expand(-1, c, 1, 1)
            x = torch.full_like(acc, sv if sv is not None else 0.0)
            b = (block.pre_activation(acc, x, in_scale) >= 0)[:, :, 0, 0].numpy()     # [V, C]
            idx = np.arange(start, start + b.shape[0], dtype=np.int64)
            any1 = b.any(axis=0)
            first_one = np.where((first_one == never) & any1, idx[np.argmax(b, axis=0)], first_one)
            last_one = np.where(any1, idx[b.shape[0] - 1 - np.argmax(b[::-1], axis=0)], last_one)
            changes += (np.diff(b.astype(np.int8), axis=0) != 0).sum(axis=0)
            if prev is not None:
                changes += prev != b[0]
            else:
                start_bit = b[0]
            prev = b[-1]
        for ch in range(c):
            if changes[ch] > 1:
                raise KwsError(f"{block_name(block)} channel {ch}: the binary output is not a "
                               "monotonic step in the accumulator; it cannot be one threshold")
            if first_one[ch] == never:                   # always 0
                dirs[ch, si], thr[ch, si] = 0, bound + 1
            elif changes[ch] == 0:                       # always 1
                dirs[ch, si], thr[ch, si] = 0, lo - 1
            elif not start_bit[ch]:                      # 0..0 1..1
                dirs[ch, si], thr[ch, si] = 1, first_one[ch]
            else:                                        # 1..1 0..0
                dirs[ch, si], thr[ch, si] = -1, last_one[ch]
    direction = np.ones(c, dtype=np.int64)
    for ch in range(c):
        ds = set(dirs[ch][dirs[ch] != 0].tolist())
        if len(ds) > 1:
            raise KwsError(f"channel {ch}: the shortcut bit flips the comparison direction; "
                           "the contract has one direction per channel")
        d = ds.pop() if ds else 1
        direction[ch] = d
        if d == -1:                                      # constants expressed for `acc <= thr`
            for si in range(len(shortcut_vals)):
                if dirs[ch, si] == 0:
                    thr[ch, si] = bound + 1 if thr[ch, si] == lo - 1 else lo - 1
    return direction, thr


def _requant(block: Block, in_scale, bound: int, frac_bits: int):
    """``mul, add, smul, shift`` reproducing ``clamp(round(z / s_out), 0, 127)`` of an int8 block.

    ``shift`` is chosen so that the multipliers' rounding moves ``z / s_out`` by less than
    ``2**-frac_bits`` for any accumulator up to ``bound``.
    """
    bn = block.bn
    _, ws = block.weights()
    in_scale = float(in_scale)
    if bn is None:                        # no batch norm (bn=false): z = acc * scale
        alpha = torch.ones_like(ws, dtype=torch.float64)
        b = torch.zeros_like(alpha)
    else:
        alpha = (bn.weight * torch.rsqrt(bn.running_var + bn.eps)).double()
        b = bn.bias.double() - bn.running_mean.double() * alpha
    k = ws.double() * in_scale * alpha
    s_out = float(block.act.scale())
    a = (block.shortcut_scale.double() * in_scale if block.shortcut_scale is not None
         else torch.zeros_like(k))
    shift = int(np.ceil(np.log2(bound + 130))) + frac_bits
    scale = 2.0 ** shift
    mul = torch.round(k / s_out * scale).to(torch.int64)
    smul = torch.round(a / s_out * scale).to(torch.int64)
    add = torch.round(b / s_out * scale).to(torch.int64) + (1 << shift >> 1)
    worst = bound * int(mul.abs().max()) + 127 * int(smul.abs().max()) + int(add.abs().max())
    if worst >= 1 << 62:
        raise KwsError(f"{block_name(block)}: requantization does not fit in int64 (scale too large)")
    return _np(mul), _np(add), _np(smul), int(shift)


@torch.no_grad()
def integer_spec(model, name: str = "model", frac_bits: int = 16) -> dict:
    """The integer network of an int8 or binary chain model, per docs/integer-network.md.

    Fields: ``format``, ``version``, ``name``, ``classes``, ``input`` (``prec``, ``shape [1, T, F]``,
    ``features`` and ``quantizer`` dicts as plain JSON), ``pad_bit``, ``layers``. Numpy integer arrays
    hold weights, thresholds and multipliers; everything else is JSON.
    """
    if not isinstance(model, ChainResNet) or model.config.precision == "float":
        cfg = model.config
        raise KwsError(f"a {cfg.precision} model in the {cfg.layout} layout has no integer form",
                       "train with --precision int8, or binary with the redesign options")
    opts = model.config.options if model.config.precision == "binary" else None
    if opts is not None and (opts.real or opts.real_weights):
        what = "real=true: latent weights, hardtanh activations" if opts.real else \
            "real_weights=true: latent weights, sign activations"
        raise KwsError(f"this binary model is step one of two-step training ({what}) and has no "
                       "integer form", "train step two: --binary-options ...,real=false,"
                       "real_weights=false --init THIS_MODEL")
    if opts is not None and opts.rprelu:
        raise KwsError("this binary model uses rprelu=true (a training study option) and has no integer "
                       "form yet", "train without rprelu to deploy it")
    model.eval()
    meta = getattr(model, "meta", {}) or {}
    cfg = model.config
    if not meta.get("input_shape"):
        raise KwsError("the model has no input shape (meta['input_shape'] = [frames, coeffs])",
                       "load it with kwsbnn.sw.checkpoint.load_model")
    t, f = (int(v) for v in meta["input_shape"])
    _, acts = model(torch.zeros(1, t, f), return_activations=True)
    n_pos = acts[-1].shape[2] * acts[-1].shape[3]
    pad_bit = int(cfg.options.pad_bit)
    layers = []
    in_scale = INPUT_SCALE
    for i, blk in enumerate(model.blocks):
        blk._spec_name = f"conv{i}"
        w_int, _ = blk.weights()
        d = blk.dilation
        layer = {"name": f"conv{i}", "op": "conv", "in_channels": blk.cin, "out_channels": blk.cout,
                 "kernel": [3, 3], "stride": [1, 1], "dilation": [d, d], "padding": [d, d],
                 "in_prec": "bin" if blk.in_prec == "stream" else blk.in_prec, "w_prec": blk.w_prec,
                 "pad_bit": pad_bit, "pool": list(blk.pool) if blk.pool else None,
                 "out": "bits" if blk.out_prec == "bin" else "int8"}
        wo = _window_order(w_int)
        layer["weights"] = (wo >= 0).astype(np.int64) if blk.w_prec == "bin" else wo.astype(np.int64)
        has_sc = blk.shortcut_scale is not None
        if blk.in_prec == "stream":
            layer["in_threshold"] = _np(blk.in_threshold())
            in_scale = 1.0
        if blk.out_prec == "stream":
            mul, add, shift = blk.stream_requant(in_scale, blk.acc_bound())
            lo, hi = blk.stream_range
            layer.update(shortcut="int8" if blk.stream_add else "none", mul=_np(mul), add=_np(add),
                         smul=np.full(blk.cout, (1 << shift) if blk.stream_add else 0, np.int64),
                         shift=int(shift), lo=lo, hi=hi)
            in_scale = blk.stream_scale
        elif blk.out_prec == "bin":
            layer["shortcut"] = "bit" if has_sc else "none"
            direction, thr = fold_thresholds(blk, in_scale, blk.acc_bound())
            layer["direction"], layer["threshold"] = direction, thr
            in_scale = 1.0
        elif blk.out_prec == "int8":
            layer["shortcut"] = "int8" if has_sc else "none"
            mul, add, smul, shift = _requant(blk, in_scale, blk.acc_bound(), frac_bits)
            layer.update(mul=mul, add=add, smul=smul, shift=shift, lo=0, hi=127)
            in_scale = blk.act.scale()
        else:
            raise KwsError(f"block {i} has float outputs; it has no integer form")
        layers.append(layer)
    head = model.head
    w, ws = head.kernel_quantizer(head.linear.weight)
    c = ws[0] * in_scale / n_pos
    bias = torch.round(head.linear.bias / c)
    layers.append({"name": "gap", "op": "gap"})
    layers.append({"name": "dense", "op": "dense", "in_features": head.linear.in_features,
                   "out_features": head.linear.out_features, "w_prec": "int8",
                   "weights": _np(w).astype(np.int64), "bias": _np(bias).astype(np.int64),
                   "score_scale": float(c) * float(getattr(head, "gain", 1.0))})
    return {"format": FORMAT, "version": VERSION, "name": name,
            "classes": list(meta.get("classes") or [f"class{k}" for k in range(cfg.n_classes)]),
            "input": {"prec": "int8", "shape": [1, t, f], "features": meta.get("features") or {},
                      "quantizer": meta.get("quantizer") or {}},
            "pad_bit": pad_bit, "layers": layers}


def _conv(layer: dict, x: torch.Tensor, in_prec: str) -> torch.Tensor:
    """Accumulator ``[B, C_out, T', F']`` (int64) of one contract conv, pooling included."""
    kt, kf = layer["kernel"]
    cin, cout = layer["in_channels"], layer["out_channels"]
    w = torch.as_tensor(np.asarray(layer["weights"]), dtype=torch.int64)
    if layer["w_prec"] == "bin":
        w = 2 * w - 1
    w = w.reshape(cout, kt, kf, cin).permute(0, 3, 1, 2).to(torch.float64)
    if in_prec == "bin":
        xv, pad = 2 * x - 1, float(2 * int(layer.get("pad_bit", 0)) - 1)
    else:
        xv, pad = x, 0.0
    pt, pf = layer["padding"]
    xp = F.pad(xv.to(torch.float64), (pf, pf, pt, pt), value=pad)
    acc = F.conv2d(xp, w, stride=tuple(layer["stride"]), dilation=tuple(layer["dilation"]))
    acc = torch.round(acc).to(torch.int64)
    if layer.get("pool"):
        p0, p1 = layer["pool"]
        b, c, t, f = acc.shape
        t2, f2 = t // p0, f // p1
        acc = acc[:, :, :t2 * p0, :f2 * p1].reshape(b, c, t2, p0, f2, p1).sum(dim=(3, 5))
    return acc


def _col(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.int64).view(1, -1, 1, 1)


@torch.no_grad()
def integer_forward(spec: dict, q) -> tuple[torch.Tensor, dict]:
    """Run ``spec`` on ``q [B, T, F]`` (int8 values): ``(scores int64 [B, K], activations)``.

    ``activations[name]`` is the layer's output as int64 ``[B, C, T, F]`` (bits as 0/1; ``gap``
    ``[B, C, 1, 1]``; ``dense`` ``[B, K, 1, 1]``), the layout of the golden model's dumps.
    """
    x = torch.as_tensor(np.asarray(q) if not torch.is_tensor(q) else q)
    x = torch.round(x.to(torch.float64)).to(torch.int64)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    prec = spec["input"]["prec"]
    acts = {}
    for layer in spec["layers"]:
        op = layer["op"]
        if op == "conv":
            if layer.get("in_threshold") is not None:      # an int8 stream read as bits
                xs, x, prec = x, (x >= _col(layer["in_threshold"])).to(torch.int64), "bin"
            acc = _conv(layer, x, prec)
            sc = layer.get("shortcut", "none")
            if layer.get("in_threshold") is not None:
                x = xs
            if layer["out"] == "bits":
                thr = np.asarray(layer["threshold"])
                t = _col(thr[:, 0])
                if sc == "bit":
                    t = torch.where(x == 1, _col(thr[:, 1]), t)
                d = _col(layer["direction"])
                x = torch.where(d > 0, acc >= t, acc <= t).to(torch.int64)
                prec = "bin"
            else:
                s = x if sc == "int8" else torch.zeros((), dtype=torch.int64)
                y = acc * _col(layer["mul"]) + s * _col(layer["smul"]) + _col(layer["add"])
                y = torch.div(y, 1 << int(layer["shift"]), rounding_mode="floor")
                x = torch.clamp(y, int(layer.get("lo", -128)), int(layer.get("hi", 127)))
                prec = "int8"
        elif op == "gap":
            v = 2 * x - 1 if prec == "bin" else x
            x = v.sum(dim=(2, 3), keepdim=True)
            prec = "int"
        elif op == "dense":
            w = torch.as_tensor(np.asarray(layer["weights"]), dtype=torch.int64)
            if layer["w_prec"] == "bin":
                w = 2 * w - 1
            g = x[:, :, 0, 0]
            x = (g @ w.t() + torch.as_tensor(np.asarray(layer["bias"]), dtype=torch.int64))[:, :, None, None]
        else:
            raise KwsError(f"layer {layer.get('name')}: unknown op {op!r}")
        acts[layer["name"]] = x
    return x[:, :, 0, 0], acts


def predict_classes(scores: torch.Tensor) -> torch.Tensor:
    """Argmax with the lowest index on ties."""
    return torch.argmax(scores, dim=1)
