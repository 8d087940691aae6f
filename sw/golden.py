"""The NumPy golden model: bit-exact reference that reads only a deployable model.

Binary x binary convolutions run as XNOR-popcount on packed 64-bit words (``np.bitwise_count``);
everything else is integer arithmetic in int64. :meth:`GoldenModel.run` returns the integer scores,
the class and, when asked, every layer's output for localising a mismatch.
"""

from dataclasses import dataclass

import numpy as np

from . import packing
from .deploy import Deployable, load
from .shapes import infer_shapes


@dataclass
class GoldenResult:
    scores: np.ndarray          # [B, K] int64
    classes: np.ndarray         # [B] int64, argmax with the lowest index on ties
    layers: dict                # layer name -> [B, C, T, F] int64 (bits as 0/1), when dumped


def windows(x: np.ndarray, kernel, stride, dilation, padding, pad_value) -> np.ndarray:
    """Im2col: ``x [B, C, T, F]`` -> ``[B, T', F', K]`` with ``K`` in the order (a, b, channel).

    Element ``k = (a * kf + b) * C + i`` is input channel ``i`` at kernel row ``a`` (time) and
    column ``b`` (frequency): the window order of docs/deployable-model.md.
    """
    b, c, t, f = x.shape
    (kt, kf), (st, sf), (dt, df), (pt, pf) = kernel, stride, dilation, padding
    xp = np.full((b, c, t + 2 * pt, f + 2 * pf), pad_value, dtype=x.dtype)
    xp[:, :, pt:pt + t, pf:pf + f] = x
    to = (t + 2 * pt - dt * (kt - 1) - 1) // st + 1
    fo = (f + 2 * pf - df * (kf - 1) - 1) // sf + 1
    cols = []
    for a in range(kt):
        for bb in range(kf):
            sl = xp[:, :, a * dt: a * dt + st * (to - 1) + 1: st, bb * df: bb * df + sf * (fo - 1) + 1: sf]
            cols.append(sl.transpose(0, 2, 3, 1))       # [B, T', F', C]
    return np.concatenate(cols, axis=-1)


def xnor_popcount_acc(win_bits: np.ndarray, w_bits: np.ndarray) -> np.ndarray:
    """±1 dot products from bits: ``[..., K]`` x ``[C, K]`` -> ``[..., C]`` = ``K - 2 popcount(x ^ w)``."""
    k = win_bits.shape[-1]
    xw = packing.pack_words64(win_bits)                  # [..., W]
    ww = packing.pack_words64(w_bits)                    # [C, W]
    diff = np.bitwise_count(xw[..., None, :] ^ ww).sum(axis=-1, dtype=np.int64)
    return k - 2 * diff


def threshold_bits(acc: np.ndarray, direction: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Output bits ``[B, C, T, F]`` from accumulators; ``thr`` is already selected per position."""
    d = direction.astype(bool)[None, :, None, None]      # 1: >=, 0: <=
    return np.where(d, acc >= thr, acc <= thr).astype(np.int64)


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product through float64 BLAS: exact while every partial sum is below 2**53."""
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(b).sum(axis=0).max(initial=0))
    if bound >= 1 << 53:
        return a @ b
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


class GoldenModel:
    """Bit-exact integer inference of a deployable model (a folder path or a loaded Deployable)."""

    def __init__(self, model):
        self.model = model if isinstance(model, Deployable) else load(model)
        self.shapes = infer_shapes(self.model.input, self.model.layers, len(self.model.classes))

    def run(self, x: np.ndarray, dump: bool = False) -> GoldenResult:
        """Infer a batch ``x [B, C, T, F]`` (int8 values, or 0/1 bits for a binary input)."""
        x = np.asarray(x).astype(np.int64)
        want = tuple(self.model.input["shape"])
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != want:
            raise ValueError(f"input shape {list(x.shape[1:])} does not match the model's {list(want)}")
        prec = self.model.input["prec"]
        dumps = {}
        for layer in self.model.layers:
            op = layer["op"]
            if op == "conv":
                x = self._conv(layer, x, "bin" if layer.get("in_threshold") is not None else prec)
                prec = "bin" if layer["out"] == "bits" else "int8"
            elif op == "gap":
                vals = 2 * x - 1 if prec == "bin" else x
                x = vals.sum(axis=(2, 3), keepdims=True)
                prec = "int"
            elif op == "dense":
                g = x[:, :, 0, 0]
                w = layer["weights"].astype(np.int64)
                if layer["w_prec"] == "bin":
                    w = 2 * w - 1
                x = (g @ w.T + layer["bias"][None, :])[:, :, None, None]
            if dump:
                dumps[layer["name"]] = x.copy()
        scores = x[:, :, 0, 0]
        return GoldenResult(scores=scores, classes=np.argmax(scores, axis=1), layers=dumps)

    @staticmethod
    def _conv(layer, x, prec):
        kernel = tuple(layer["kernel"])
        stride = tuple(layer.get("stride", (1, 1)))
        dilation = tuple(layer.get("dilation", (1, 1)))
        padding = tuple(layer.get("padding", (0, 0)))
        w = layer["weights"]
        stream = x                                       # the int8 value a shortcut 'int8' adds
        if layer.get("in_threshold") is not None:        # an int8 stream read as bits: x >= t
            x = (x >= layer["in_threshold"][None, :, None, None]).astype(np.int64)
        if prec == "bin":
            pad = int(layer.get("pad_bit", 0))
            win = windows(x, kernel, stride, dilation, padding, pad)
            if layer["w_prec"] == "bin":
                acc = xnor_popcount_acc(win, w)
            else:
                acc = (2 * win - 1) @ w.T.astype(np.int64)
        else:
            win = windows(x, kernel, stride, dilation, padding, 0)
            wv = 2 * w.astype(np.int64) - 1 if layer["w_prec"] == "bin" else w.astype(np.int64)
            acc = _exact_matmul(win, wv.T)
        acc = acc.transpose(0, 3, 1, 2)                  # [B, C, T', F']
        pool = layer.get("pool")
        if pool:
            p0, p1 = pool
            b, c, t, f = acc.shape
            t2, f2 = t // p0, f // p1
            acc = acc[:, :, :t2 * p0, :f2 * p1].reshape(b, c, t2, p0, f2, p1).sum(axis=(3, 5))
        sc = layer.get("shortcut", "none")
        if layer["out"] == "bits":
            thr = layer["threshold"]
            if sc == "bit":
                sel = thr[:, 1][None, :, None, None] * x + thr[:, 0][None, :, None, None] * (1 - x)
            else:
                sel = thr[:, 0][None, :, None, None]
            return threshold_bits(acc, layer["direction"], sel)
        s = stream if sc == "int8" else 0
        m = layer["mul"][None, :, None, None]
        sm = layer["smul"][None, :, None, None]
        a = layer["add"][None, :, None, None]
        y = (acc * m + s * sm + a) >> int(layer["shift"])
        return np.clip(y, layer.get("lo", -128), layer.get("hi", 127))
