"""The hardware plan of a deployable model: per-layer geometry and the units each layer needs.

Shared by the generator (:mod:`kwsbnn.hw.network`) and the cost model (:mod:`kwsbnn.hw.cost`), so
both see the same structure. :func:`plan` raises :class:`UnsupportedNetwork` for a layer the
hardware cannot build, before anything is elaborated or written.

A conv layer becomes: [sliding window unit] -> matrix-vector unit -> [sum-pool + threshold unit],
with the shortcut bits of a ``shortcut: bit`` layer delayed in a FIFO and joined to each window.
The last conv layer may have 8-bit outputs (``out: int8``, no pooling, no shortcut: the binary
redesign's higher-precision last layer): matrix-vector unit -> requantization unit, and the tail
sums 8-bit values instead of bits.
"""

from dataclasses import dataclass

import numpy as np

from kwsbnn.errors import KwsError

from .arith import signed_width


class UnsupportedNetwork(KwsError):
    """A network the generator cannot build; raised before any Verilog is written."""


@dataclass
class ConvPlan:
    name: str
    layer: dict
    in_shape: tuple          # (C, T, F)
    conv_shape: tuple        # (C_out, T', F') before pooling
    out_shape: tuple         # (C_out, T'', F'') after pooling
    in_prec: str
    ew: int                  # input element width (1 or 8)
    k: int                   # window elements
    needs_window: bool       # False for a 1x1, stride-1, unpadded kernel
    pool: tuple | None
    shortcut: bool
    shortcut_depth: int      # FIFO entries for the shortcut stream (0 without shortcut)
    out_prec: str = "bin"    # "bin" (thresholded bits) or "int8" (requantized, last layer only)
    stream: bool = False     # reads the integer residual stream (``in_threshold``)
    stream_out: bool = False  # writes it (int8 values that the next layer reads)

    @property
    def window_positions(self) -> int:
        return self.conv_shape[1] * self.conv_shape[2]

    @property
    def reach(self) -> int:
        return self.k * (1 if self.in_prec == "bin" else 128) * (1 if self.layer["w_prec"] == "bin" else 128)

    @property
    def acc_width(self) -> int:
        return signed_width(-self.reach, self.reach)


@dataclass
class TailPlan:
    name: str
    layer: dict
    channels: int
    positions: int
    classes: int
    binary_weights: bool
    in_prec: str = "bits"    # "bits", or "int8" after a last layer with 8-bit outputs
    lo: int = 0              # the int8 inputs' range
    hi: int = 127


def _hint() -> str:
    return ("the generator builds int8 or binary inputs, binary weights (int8 in an int8-input layer), "
            "bit outputs (thresholds; int8 outputs in the last layer, without pooling or shortcut), "
            "sum pooling, 1-bit shortcuts, then gap and a dense layer")


def is_stream(dep) -> bool:
    """Whether ``dep`` carries the integer residual stream (a layer with ``in_threshold``)."""
    return any(layer.get("in_threshold") is not None for layer in dep.layers)


STREAM_REFUSAL = ("the pipeline style does not run the integer residual stream (shortcut=int); "
                  "build it in the engine style")
STREAM_HINT = ("kwsbnn verilog --board icebreaker (or ulx3s-85f) picks the engine style for it, or "
               "give a folding file with \"style\": \"engine\"")


def plan(dep, stream_ok: bool = False) -> tuple[list[ConvPlan], TailPlan]:
    """The per-layer plan of ``dep`` (a loaded deployable model). A network on the integer
    residual stream is planned only with ``stream_ok`` (the engine style runs it, the pipeline
    does not): its layers before the last write int8 values, the stream, which the next reads
    through ``in_threshold`` and adds to (``shortcut: int8``)."""
    if is_stream(dep) and not stream_ok:
        raise UnsupportedNetwork(f"model {dep.name}: {STREAM_REFUSAL}", STREAM_HINT)
    ops = [layer["op"] for layer in dep.layers]
    if len(ops) < 3 or ops[-2:] != ["gap", "dense"] or any(op != "conv" for op in ops[:-2]):
        raise UnsupportedNetwork(f"model {dep.name}: layer sequence {ops} is not supported", _hint())
    shape = tuple(dep.input["shape"])
    prec = dep.input["prec"]
    convs = []
    n_convs = len(dep.layers) - 2
    for index, layer in enumerate(dep.layers[:-2]):
        name = layer["name"]
        if layer["w_prec"] != "bin" and prec != "int8":
            raise UnsupportedNetwork(f"layer {name}: {layer['w_prec']} weights on a binary input are "
                                     "not supported in hardware (int8 weights only in an int8-input "
                                     "first layer)", _hint())
        stream_out = (index + 1 < n_convs and dep.layers[index + 1].get("in_threshold") is not None)
        stream_in = layer.get("in_threshold") is not None
        if layer["out"] == "int8" and index != n_convs - 1 and not stream_out:
            raise UnsupportedNetwork(f"layer {name}: output 'int8' is not supported before the last "
                                     "layer (thresholded bits only)", _hint())
        if stream_out and layer["out"] != "int8":
            raise UnsupportedNetwork(f"layer {name}: the next layer reads an integer stream, but this "
                                     "one writes bits", _hint())
        if layer["out"] == "int8" and not stream_in and (
                layer.get("shortcut", "none") != "none" or np.any(np.asarray(layer.get("smul", 0)) != 0)
                or (layer.get("pool") and not stream_out)):
            raise UnsupportedNetwork(f"layer {name}: an int8 output is supported without pooling and "
                                     "without shortcut only", _hint())
        if layer["out"] not in ("bits", "int8"):
            raise UnsupportedNetwork(f"layer {name}: output {layer['out']!r} is not supported", _hint())
        if prec not in ("bin", "int8"):
            raise UnsupportedNetwork(f"layer {name}: input precision {prec!r}", _hint())
        c, t, f = shape
        kt, kf = layer["kernel"]
        st, sf = layer.get("stride", (1, 1))
        dt, df = layer.get("dilation", (1, 1))
        pt, pf = layer.get("padding", (0, 0))
        to = (t + 2 * pt - dt * (kt - 1) - 1) // st + 1
        fo = (f + 2 * pf - df * (kf - 1) - 1) // sf + 1
        pool = tuple(layer["pool"]) if layer.get("pool") else None
        out_t, out_f = (to // pool[0], fo // pool[1]) if pool else (to, fo)
        co = layer["out_channels"]
        sc = layer.get("shortcut", "none")
        if sc not in ("none", "bit") and not (stream_in and sc == "int8"):
            raise UnsupportedNetwork(f"layer {name}: shortcut {sc!r} is not supported", _hint())
        needs_window = (kt, kf, st, sf, pt, pf) != (1, 1, 1, 1, 0, 0)
        # The window of output (t, f) needs input up to row t + (kt-1)dt - pt: the shortcut bits of
        # (t, f) wait while the window unit takes in those rows, plus one row of slack.
        rows_ahead = max(0, (kt - 1) * dt - pt) + 2
        depth = rows_ahead * f + 4 if sc == "bit" else 0
        convs.append(ConvPlan(name=name, layer=layer, in_shape=shape, conv_shape=(co, to, fo),
                              out_shape=(co, out_t, out_f), in_prec=prec, ew=1 if prec == "bin" else 8,
                              k=c * kt * kf, needs_window=needs_window, pool=pool,
                              shortcut=sc == "bit", shortcut_depth=depth,
                              out_prec="int8" if layer["out"] == "int8" else "bin", stream=stream_in,
                              stream_out=stream_out))
        shape, prec = (co, out_t, out_f), "bin"
    dense = dep.layers[-1]
    tail = TailPlan(name=dense["name"], layer=dense, channels=shape[0], positions=shape[1] * shape[2],
                    classes=int(np.shape(dense["weights"])[0]), binary_weights=dense["w_prec"] == "bin")
    last = convs[-1].layer
    if last["out"] == "int8":
        tail.in_prec, tail.lo, tail.hi = "int8", int(last["lo"]), int(last["hi"])
    return convs, tail


def _engine_ok(p: ConvPlan, channels: int, last: bool) -> bool:
    """Whether the layer engine (:mod:`kwsbnn.hw.engine`) can run conv layer ``p``."""
    return (p.in_prec == "bin" and p.layer["w_prec"] == "bin" and not p.pool
            and p.in_shape[0] == channels and p.conv_shape[0] == channels
            and (p.out_prec == "bin" or last or p.stream))


def engine_split(dep) -> tuple[list[ConvPlan], list[ConvPlan], TailPlan]:
    """``(front, engine, tail)`` of the engine style: the longest run of last conv layers that the
    layer engine runs (binary, ``C`` channels in and out, no pooling, an int8 output only in the
    last), the conv layers before them as pipeline units (the int8 first layer), and the tail."""
    convs, tail = plan(dep, stream_ok=True)
    channels = convs[-1].in_shape[0]
    start = len(convs)
    while start > 0 and _engine_ok(convs[start - 1], channels, start == len(convs)):
        start -= 1
    if is_stream(dep):
        # On the stream every engine layer reads it; the front writes it (int8 values).
        while start < len(convs) and not convs[start].stream:
            start += 1
        if start == 0 or start == len(convs) or convs[start - 1].out_prec != "int8" or any(
                not p.stream for p in convs[start:]):
            raise UnsupportedNetwork(f"model {dep.name}: the engine runs an integer stream from an "
                                     "int8 front layer through binary layers of equal width to the "
                                     "last", "keep the stream's width and size after the first layer")
        if any(p.stream or p.out_prec != "int8" for p in convs[:start - 1]) or len(convs[:start]) != 1:
            raise UnsupportedNetwork(f"model {dep.name}: the engine style runs one front layer before "
                                     "the stream", "start the stream at the first layer")
    if start == len(convs):
        raise UnsupportedNetwork(f"model {dep.name}: the last conv layer {convs[-1].name} cannot run on "
                                 "the layer engine", "the engine runs binary layers with as many output "
                                 "as input channels, without pooling")
    return convs[:start], convs[start:], tail
