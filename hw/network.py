"""The accelerator generator: a whole network as one ``wiring.Component`` from a deployable model.

Each conv layer of the plan (:mod:`kwsbnn.hw.plan`) becomes a chain of units joined by streams:

    StreamedConv ..................................................... binary layer, SIMD <= C

    [SlidingWindow] -> MatrixVectorUnit(out=bits) ..................... no pooling
    [SlidingWindow] -> MatrixVectorUnit(out=acc) -> SumPoolThreshold ... pooling (channel-serial)
    [SlidingWindow] -> MatrixVectorUnit(out=acc) -> Gather -> ParallelSumPoolThreshold
                                            ... pooling when the MVU is faster than C cycles/position
    BoxSum -> SlidingWindow(stride = pool) -> MatrixVectorUnit(out=bits)
                        ... an int8 first layer with its pooling folded in (folding "boxsum": true;
                            with "hold": true the MVU works on the window's held vector, no copy)
    StreamedConv(out=count) -> Requantize ............................ int8 outputs (last layer), SIMD <= C
    [SlidingWindow] -> MatrixVectorUnit(out=acc) -> Requantize ....... int8 outputs, faster foldings
    Broadcast -> SlidingWindow -> Join2 -> MatrixVectorUnit(shortcut) .. 1-bit shortcut
             '-> StreamFIFO (shortcut bits) --'

then :class:`GapDenseArgmax` turns the last layer's bits (or 8-bit values) into scores and the class.

Stream interface of the generated top:
- ``i``: one transfer per input position ``(t, f)``, t-major, f-minor, ``T * F`` per inference; payload
  ``C`` elements of ``ew`` bits (int8 features: ``C = 1``, 8 bits; bits: bit ``c`` = channel ``c``).
- ``o``: one transfer per inference, payload ``{"cls", "scores"}`` (see :func:`scores.result_layout`).

With ``taps=True`` (simulation builds), every conv layer ``L`` also drives two outputs that mirror its
output stream: ``tap_L_valid`` is high in each cycle whose clock edge transfers an item (valid and
ready), and ``tap_L_payload`` holds that item (``C_out`` bits, bit ``c`` = channel ``c``, or for an int8
layer ``C_out`` 8-bit values; one item per output position, t-major, as on the stream). They change
nothing else in the design.
"""

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .boxsum import BoxSum, applicable
from .conv import StreamedConv
from .cost import Folding, layer_costs
from .engine import STREAM_LANES
from .mvu import FoldingError, MatrixVectorUnit
from .plan import UnsupportedNetwork, plan
from .pool import SumPoolThreshold
from .pool_parallel import ParallelSumPoolThreshold
from .requant import Requantize
from .scores import GapDenseArgmax
from .streams import Broadcast, Gather, Join2, StreamFIFO
from .window import SlidingWindow

__all__ = ["EngineNetwork", "Network", "UnsupportedNetwork", "build", "check_supported"]


def StreamedConv_fits(p, fold, counts: bool = False) -> bool:
    """Whether a conv layer is built as one :class:`StreamedConv`: binary in and out (with
    ``counts``, an int8-output layer without shortcut: the unit emits counts), no pooling, SIMD
    within one kernel position (it divides the input channels)."""
    out_ok = p.out_prec == ("int8" if counts else "bin")
    return (p.in_prec == "bin" and out_ok and not p.pool and fold["simd"] <= p.in_shape[0]
            and p.in_shape[0] % fold["simd"] == 0)


def boxsum_fits(p) -> bool:
    """Whether conv layer plan ``p`` can be built with its pooling folded in (:mod:`.boxsum`): an
    int8 input of one channel, binary weights, stride 1, pooling, bit outputs without shortcut, and
    a geometry :func:`kwsbnn.hw.boxsum.applicable` accepts."""
    layer = p.layer
    out_ok = p.out_prec == "bin" or (p.out_prec == "int8" and p.stream_out)
    if (p.in_prec != "int8" or p.in_shape[0] != 1 or layer["w_prec"] != "bin" or not p.pool
            or not out_ok or p.shortcut or tuple(layer.get("stride", (1, 1))) != (1, 1)):
        return False
    _, t, f = p.in_shape
    return applicable(t, f, tuple(layer["kernel"]), tuple(layer.get("dilation", (1, 1))),
                      tuple(layer.get("padding", (0, 0))), p.pool)


def _tap_ew(p) -> int:
    """Bits per channel of a layer's output stream: 1, or 8 for an int8 layer."""
    return 8 if p.out_prec == "int8" else 1


def requant_par(p, mvu, pe: int, memory: str = "spram") -> int:
    """Channels the requantization unit of int8 layer ``p`` processes per cycle: the fewest (a
    divisor of ``pe``) with which it keeps up with the matrix-vector unit (C / par cycles per
    position at most the MVU's cycles per position). Into the SPRAM layer engine (``memory``
    ``"spram"``) one: it takes a value a cycle; into the block-RAM engine a divisor of the stream
    word's 8 values."""
    if p.stream_out and memory == "spram":
        return 1            # one value per transfer: the layer engine takes one a cycle
    c_out = p.conv_shape[0]
    ok = [d for d in range(1, pe + 1) if pe % d == 0 and (not p.stream_out or STREAM_LANES % d == 0)]
    for d in ok:
        if c_out // d <= mvu.cycles_per_vector:
            return d
    return ok[-1]


def _register_constants(p, par: int, memory: str = "spram") -> bool:
    """Whether the requantization of int8 layer ``p`` registers its constants before its ``par``
    multipliers: for the integer stream's first layer in front of the ECP5's block-RAM engine
    (``memory="bram"``: its block-RAM ROM -> DSP path held the 96-channel ULX3S design to 58 MHz
    with one multiplier) or with more than one multiplier; the iCEBreaker's (SPRAM engine, one
    multiplier) stays as it was."""
    return bool(p.stream_out) and (par > 1 or memory == "bram")


def stream_group(p, memory: str = "spram") -> int | None:
    """Channels per output transfer of an int8 layer: when it writes the integer stream, one into
    the SPRAM layer engine (``memory="spram"``: it takes a value a cycle and packs them into stream
    words itself) and a stream word (8) into the block-RAM engine (``"bram"``: a word a cycle);
    else all (one transfer per position)."""
    if not p.stream_out:
        return None
    return 1 if memory == "spram" else STREAM_LANES


def _streamed(p, fold, direction, threshold, **kw) -> StreamedConv:
    """The line-buffer conv unit of conv layer plan ``p`` at ``fold``."""
    layer = p.layer
    c, t, f = p.in_shape
    return StreamedConv(
        layer["weights"], direction, threshold, channels=c, frames=t, coeffs=f,
        kernel=tuple(layer["kernel"]), stride=tuple(layer.get("stride", (1, 1))),
        dilation=tuple(layer.get("dilation", (1, 1))), padding=tuple(layer.get("padding", (0, 0))),
        pad_bit=int(layer.get("pad_bit", 0)), pe=fold["pe"], simd=fold["simd"], name=p.name, **kw)


def check_supported(dep) -> None:
    """Raise :class:`UnsupportedNetwork` naming the first layer the generator cannot build."""
    plan(dep)


def _connect_layer(m, p, units, src):
    """Add the units of conv layer ``p`` to ``m``, fed by stream ``src``; return their output stream."""
    for role, unit in units.items():
        m.submodules[f"{p.name}_{role}"] = unit
    if "conv" in units:
        wiring.connect(m, src, units["conv"].i)
        src = units["conv"].o
        if "requant" in units:
            wiring.connect(m, src, units["requant"].i)
            src = units["requant"].o
        return src
    if p.shortcut:
        fork, delay, join = units["fork"], units["delay"], units["join"]
        wiring.connect(m, src, fork.i)
        wiring.connect(m, fork.o[0], units["window"].i)
        wiring.connect(m, fork.o[1], delay.i)
        wiring.connect(m, units["window"].o, join.a)
        wiring.connect(m, delay.o, join.b)
        src = join.o
    elif "window" in units:
        if "box" in units:
            wiring.connect(m, src, units["box"].i)
            src = units["box"].o
        wiring.connect(m, src, units["window"].i)
        src = units["window"].o
    wiring.connect(m, src, units["mvu"].i)
    src = units["mvu"].o
    if "gather" in units:
        wiring.connect(m, src, units["gather"].i)
        src = units["gather"].o
    for role in ("pool", "requant"):
        if role in units:
            wiring.connect(m, src, units[role].i)
            src = units[role].o
    return src


class Network(wiring.Component):
    """The generated accelerator. ``folding`` maps conv layer names to ``{"pe": P, "simd": S}``."""

    def __init__(self, dep, folding: Folding | None = None, *, taps: bool = False):
        self._dep = dep
        self._taps = bool(taps)
        self._convs, self._tail_plan = plan(dep)
        self._folding = folding or Folding.default(dep)
        if self._folding.style != "pipeline":
            raise UnsupportedNetwork(f"model {dep.name}: the folding is of the {self._folding.style} style",
                                     "build it with kwsbnn.hw.network.build (EngineNetwork); the board "
                                     "top does not load an engine's weights yet")
        self._stages = []            # per conv layer: dict of units
        try:
            for p in self._convs:
                self._stages.append(self._conv_units(p, self._folding[p.name]))
        except FoldingError as e:
            raise UnsupportedNetwork(str(e), "choose PE and SIMD values that divide the layer") from e
        except ValueError as e:       # a unit refusing its parameters (geometry, shortcut shape)
            raise UnsupportedNetwork(f"model {dep.name}: {e}", "change the layer or its folding") from e
        t = self._tail_plan
        self._tail = GapDenseArgmax(t.layer["weights"], t.layer["bias"], positions=t.positions,
                                    binary_weights=t.binary_weights, in_prec=t.in_prec, lo=t.lo, hi=t.hi)
        c, _, _ = dep.input["shape"]
        ew = 1 if dep.input["prec"] == "bin" else 8
        ports = {"i": In(stream.Signature(c * ew)), "o": Out(stream.Signature(self._tail.layout))}
        if self._taps:
            for p in self._convs:
                ports[f"tap_{p.name}_valid"] = Out(1)
                ports[f"tap_{p.name}_payload"] = Out(p.out_shape[0] * _tap_ew(p))
        super().__init__(ports)

    @staticmethod
    def _conv_units(p, fold, memory: str = "spram") -> dict:
        """The units of conv layer plan ``p`` at ``fold``; ``memory``: the engine the integer
        stream's first layer writes into (``"spram"`` or ``"bram"``, :func:`stream_group`)."""
        layer = p.layer
        c, t, f = p.in_shape
        units = {}
        if fold.get("boxsum"):
            # The pooling folded into the convolution (exact: nothing nonlinear between them):
            # box sums of the input, the kernel at the pooling's stride, thresholds at once.
            if not boxsum_fits(p):
                raise ValueError(f"layer {p.name}: its pooling cannot be folded into it (boxsum needs "
                                 "an int8 input, binary weights, stride 1, pooling and bit outputs, and "
                                 "a geometry whose box sums need no input past the map)")
            kernel, dil = tuple(layer["kernel"]), tuple(layer.get("dilation", (1, 1)))
            box = units["box"] = BoxSum(frames=t, coeffs=f, kernel=kernel, dilation=dil,
                                        padding=tuple(layer.get("padding", (0, 0))), pool=p.pool)
            units["window"] = SlidingWindow(1, box.width, box.out_frames, box.out_coeffs, kernel,
                                            stride=p.pool, dilation=dil, padding=(0, 0), pad_value=0)
            if p.out_prec == "int8":      # the integer stream's first layer: its values, 8 at a time
                mvu = units["mvu"] = MatrixVectorUnit(layer["weights"], in_prec="int8", w_prec="bin",
                                                      out="acc", pe=fold["pe"], simd=fold["simd"],
                                                      in_width=box.width, hold=bool(fold.get("hold")),
                                                      name=p.name)
                par = requant_par(p, mvu, fold["pe"], memory)
                units["requant"] = Requantize(
                    layer["mul"], layer["add"], layer["shift"], lo=layer["lo"], hi=layer["hi"],
                    acc_width=mvu.acc_width, lanes=fold["pe"], par=par,
                    group=stream_group(p, memory), name=f"{p.name}_requant",
                    register_constants=_register_constants(p, par, memory))
                return units
            units["mvu"] = MatrixVectorUnit(layer["weights"], in_prec="int8", w_prec="bin", out="bits",
                                            direction=2 * layer["direction"] - 1,
                                            threshold=layer["threshold"], pe=fold["pe"],
                                            simd=fold["simd"], in_width=box.width,
                                            hold=bool(fold.get("hold")), name=p.name)
            return units
        if StreamedConv_fits(p, fold):
            # Slow folding of a binary layer: the fused unit reads its windows straight from the
            # line buffer (no window register, no shortcut FIFO): far smaller.
            units["conv"] = _streamed(p, fold, 2 * layer["direction"] - 1, layer["threshold"],
                                      shortcut=p.shortcut)
            return units
        if p.out_prec == "int8" and StreamedConv_fits(p, fold, counts=True):
            # Slow folding: the fused unit emits every channel's mismatch count d per position
            # (acc = K - 2d, folded into the constants: acc*mul + add = d*(-2 mul) + (K mul + add)).
            co = p.conv_shape[0]
            conv = units["conv"] = _streamed(p, fold, np.ones(co, np.int64), np.zeros(co, np.int64),
                                             out="count")
            mul = np.asarray(layer["mul"], np.int64)
            pe, sf = fold["pe"], p.k // fold["simd"]
            # Fewest multipliers that take each fold's counts within SF - 3 cycles (then the
            # conv unit is never held up: see StreamedConv.cycles_per_position).
            par = next(d for d in range(1, pe + 1) if pe % d == 0 and (pe // d <= sf - 3 or d == pe))
            units["requant"] = Requantize(
                -2 * mul, p.k * mul + np.asarray(layer["add"], np.int64), layer["shift"], lo=layer["lo"],
                hi=layer["hi"], acc_width=conv.count_width, lanes=pe, par=par, name=f"{p.name}_requant")
            return units
        if p.needs_window:
            units["window"] = SlidingWindow(
                c, p.ew, t, f, tuple(layer["kernel"]), stride=tuple(layer.get("stride", (1, 1))),
                dilation=tuple(layer.get("dilation", (1, 1))), padding=tuple(layer.get("padding", (0, 0))),
                pad_value=int(layer.get("pad_bit", 0)) if p.ew == 1 else 0)
        if p.out_prec == "int8":
            if p.pool:
                raise ValueError(f"layer {p.name}: the integer stream's first layer pools only with its "
                                 "pooling folded in (\"boxsum\": true in its folding)")
            mvu = units["mvu"] = MatrixVectorUnit(
                layer["weights"], in_prec=p.in_prec, w_prec=layer["w_prec"], out="acc",
                pe=fold["pe"], simd=fold["simd"], name=p.name)
            par = requant_par(p, mvu, fold["pe"], memory)
            units["requant"] = Requantize(
                layer["mul"], layer["add"], layer["shift"], lo=layer["lo"], hi=layer["hi"],
                acc_width=mvu.acc_width, lanes=fold["pe"], par=par,
                group=stream_group(p, memory), name=f"{p.name}_requant",
                register_constants=_register_constants(p, par, memory))
            return units
        direction = 2 * layer["direction"] - 1
        if p.pool:
            mvu = units["mvu"] = MatrixVectorUnit(
                layer["weights"], in_prec=p.in_prec, w_prec=layer["w_prec"], out="acc",
                pe=fold["pe"], simd=fold["simd"], name=p.name)
            c_out = p.conv_shape[0]
            geometry = dict(channels=c_out, acc_width=mvu.acc_width, frames=p.conv_shape[1],
                            coeffs=p.conv_shape[2], pool=p.pool, direction=direction,
                            threshold=layer["threshold"][:, 0])
            if mvu.cycles_per_vector >= c_out:
                # The channel-serial pool (C cycles per position) keeps up: the small one.
                units["pool"] = SumPoolThreshold(**geometry, lanes=fold["pe"], name=f"{p.name}_pool")
            else:
                units["gather"] = Gather(fold["pe"] * mvu.acc_width, c_out // fold["pe"])
                # Its output FIFO holds a pooled row (rounded up to a power of two, whole ECP5
                # LUT-RAM blocks): the next layer takes the row's burst at its own pace while the
                # inputs of the next row arrive.
                units["pool"] = ParallelSumPoolThreshold(**geometry,
                                                         out_depth=1 << p.out_shape[2].bit_length(),
                                                         name=f"{p.name}_pool")
        else:
            units["mvu"] = MatrixVectorUnit(layer["weights"], in_prec=p.in_prec, w_prec=layer["w_prec"],
                                            out="bits",
                                            direction=direction, threshold=layer["threshold"],
                                            shortcut=p.shortcut, pe=fold["pe"], simd=fold["simd"],
                                            name=p.name)
        if p.shortcut:
            units["fork"] = Broadcast(c * p.ew, 2)
            units["delay"] = StreamFIFO(c, p.shortcut_depth)
            units["join"] = Join2(p.k * p.ew, c)
        return units

    @property
    def folding(self) -> Folding:
        return self._folding

    @property
    def score_width(self) -> int:
        return self._tail.score_width

    @property
    def n_classes(self) -> int:
        return len(self._dep.classes)

    def costs(self) -> dict:
        return layer_costs(self._dep, self._folding)

    def taps(self) -> list[dict]:
        """The layer taps of a ``taps=True`` network: name, payload width and transfers per
        inference of each conv layer's output stream (empty otherwise)."""
        if not self._taps:
            return []
        return [{"layer": p.name, "width": int(p.out_shape[0] * _tap_ew(p)), "ew": _tap_ew(p),
                 "shape": [int(v) for v in p.out_shape],
                 "transfers": int(p.out_shape[1] * p.out_shape[2])} for p in self._convs]

    def elaborate(self, platform):
        m = Module()
        src = wiring.flipped(self.i)       # the producer side of the current stream
        for p, units in zip(self._convs, self._stages):
            src = _connect_layer(m, p, units, src)
            self._tap(m, p, src)
        m.submodules.tail = self._tail
        wiring.connect(m, src, self._tail.i)
        wiring.connect(m, self._tail.o, wiring.flipped(self.o))
        return m

    def _tap(self, m, p, src):
        """Mirror a layer's output stream (its transfers) on the tap ports."""
        if self._taps:
            m.d.comb += [getattr(self, f"tap_{p.name}_valid").eq(src.valid & src.ready),
                         getattr(self, f"tap_{p.name}_payload").eq(src.payload)]


def _tail_unit(t) -> GapDenseArgmax:
    return GapDenseArgmax(t.layer["weights"], t.layer["bias"], positions=t.positions,
                          binary_weights=t.binary_weights, in_prec=t.in_prec, lo=t.lo, hi=t.hi)


class EngineNetwork(wiring.Component):
    """The generated accelerator in the ``engine`` style (for small FPGAs): the conv layers before
    the engine (the int8 first layer) as pipeline units, then :class:`~kwsbnn.hw.engine.LayerEngine`
    for the binary layers (with an int8 last layer: its counts into :class:`Requantize`), then
    :class:`GapDenseArgmax`. ``folding`` (style ``engine``, :func:`kwsbnn.hw.cost.engine_folding`)
    maps each conv layer to ``{"pe", "simd"}``; the engine layers share one.

    With an int8 last layer the tail is :class:`~kwsbnn.hw.serial_tail.SerialRequantTail`
    (requantization, pooling and the dense layer one channel at a time, the engine's counts in), else
    :class:`GapDenseArgmax` on the last layer's bits.

    With a folding whose ``memory`` is ``bram`` the engine is
    :class:`~kwsbnn.hw.bram_engine.BramEngine` (weights in block-RAM ROM, nothing to load, no
    ``wl`` port), which also pools the last layer, and the tail
    :class:`~kwsbnn.hw.dense.DenseArgmax` on its channel sums; its input goes through a 3-entry
    FIFO (registered: timing on ECP5).

    Ports: ``i`` and ``o`` as :class:`Network`; ``wl : In(stream.Signature(64))``, the engine's
    loader port: after power-up the network takes no input until it has received
    :meth:`load_image` (the weight-memory image, :attr:`load_words` words, in order). With
    ``shared_words`` (the board top), also the engine's reload strobe and shared weight-memory
    port (:func:`kwsbnn.hw.engine.shared_signature`). The first
    layer's and the tail's weights are in block RAM ROMs, initialised by the bitstream. With
    ``taps=True``, ``tap_<layer>_valid/_payload`` as :class:`Network`'s, for every conv layer but
    an int8 last one (an engine layer's tap shows its map writes).

    Cycles per inference: the front's cycles plus the engine's computation (the engine takes its
    input only while idle; :func:`kwsbnn.hw.cost.engine_costs`).
    """

    def __init__(self, dep, folding: Folding | None = None, *, taps: bool = False,
                 shared_words: int = 0, serial_scores: bool = False):
        from .cost import engine_folding
        from .engine import WORD_BITS, LayerEngine, shared_signature
        from .plan import engine_split
        self._dep = dep
        self._taps = bool(taps)
        self._front, self._eng, self._tail_plan = engine_split(dep)
        self._convs = self._front + self._eng
        self._folding = folding or engine_folding(dep)
        if self._folding.style != "engine":
            raise UnsupportedNetwork("EngineNetwork needs a folding of the engine style", "use Network")
        self._bram = self._folding.memory == "bram"
        if self._bram and shared_words:
            raise UnsupportedNetwork("the block-RAM engine has no weight memory to share (its weights "
                                     "are in the bitstream)", "build it without shared_words")
        try:
            self._stages = [Network._conv_units(p, self._folding[p.name], self._folding.memory)
                            for p in self._front]
            fold = self._folding[self._eng[0].name]
            c, t, f = self._eng[0].in_shape
            if self._bram:
                from .bram_engine import BramEngine
                self._engine = BramEngine([p.layer for p in self._eng], channels=c, frames=t, coeffs=f,
                                          pe=fold["pe"], simd=fold["simd"], pool=True)
            else:
                self._engine = LayerEngine([p.layer for p in self._eng], channels=c, frames=t,
                                           coeffs=f, pe=fold["pe"], simd=fold["simd"],
                                           shared_words=shared_words)
        except FoldingError as e:
            raise UnsupportedNetwork(str(e), "choose PE and SIMD values that divide the layer") from e
        except ValueError as e:
            raise UnsupportedNetwork(f"model {dep.name}: {e}", "change the layer or its folding") from e
        last = self._eng[-1]
        self._requant = None          # the int8 last layer's requantization is in the serial tail
        if self._bram:
            # The block-RAM engine pools the last layer itself (PE channels per cycle): the tail is
            # the dense layer and argmax on its sums.
            from .dense import DenseArgmax
            t = self._tail_plan
            lo, hi = self._engine.sum_range
            self._tail = DenseArgmax(t.layer["weights"], t.layer["bias"], lanes=fold["pe"], sum_lo=lo,
                                     sum_hi=hi, binary_weights=t.binary_weights)
        elif self._engine.stream:
            from .serial_tail import SerialRequantTail
            t = self._tail_plan
            self._tail = SerialRequantTail(
                np.ones(c, np.int64), np.zeros(c, np.int64), 0, lo=t.lo, hi=t.hi, count_width=8,
                lanes=STREAM_LANES, positions=t.positions, weights=t.layer["weights"],
                bias=t.layer["bias"], binary_weights=t.binary_weights, identity=True,
                serial_out=serial_scores)
        elif last.out_prec == "int8":
            from .serial_tail import SerialRequantTail
            layer, t = last.layer, self._tail_plan
            mul = np.asarray(layer["mul"], np.int64)
            self._tail = SerialRequantTail(
                -2 * mul, last.k * mul + np.asarray(layer["add"], np.int64), layer["shift"],
                lo=layer["lo"], hi=layer["hi"], count_width=self._engine.count_width, lanes=fold["pe"],
                positions=t.positions, weights=t.layer["weights"], bias=t.layer["bias"],
                binary_weights=t.binary_weights, serial_out=serial_scores)
        else:
            self._tail = _tail_unit(self._tail_plan)
        c0, _, _ = dep.input["shape"]
        ew = 1 if dep.input["prec"] == "bin" else 8
        ports = {"i": In(stream.Signature(c0 * ew)), "o": Out(stream.Signature(self._tail.layout))}
        if not self._bram:
            ports["wl"] = In(stream.Signature(WORD_BITS))
        if self.rotating_scores:
            ports["rot"] = In(1)            # the serial tail's score rotation (SerialRequantTail)
        self._shared = int(shared_words)
        if self._shared:
            ports.update(shared_signature(self._shared).members)
        if self._taps:
            for p in self._tapped:
                ports[f"tap_{p.name}_valid"] = Out(1)
                ports[f"tap_{p.name}_payload"] = Out(p.out_shape[0] * _tap_ew(p))
        super().__init__(ports)

    @property
    def _tapped(self) -> list:
        """The conv layers with taps: all but an int8 last layer (its values exist only one at a
        time, in the serial tail)."""
        if self._eng[0].stream:
            return []              # the stream's values exist 8 at a time, in the weight memory
        return self._convs[:-1] if self._eng[-1].out_prec == "int8" else self._convs

    @property
    def folding(self) -> Folding:
        return self._folding

    @property
    def style(self) -> str:
        return "engine"

    @property
    def score_width(self) -> int:
        return self._tail.score_width

    @property
    def n_classes(self) -> int:
        return len(self._dep.classes)

    @property
    def engine(self):
        return self._engine

    @property
    def load_words(self) -> int:
        return self._engine.load_words

    def load_image(self) -> list[int]:
        """The words to send on ``wl`` after power-up (64 bits each)."""
        return self._engine.image()

    def costs(self) -> dict:
        return layer_costs(self._dep, self._folding)

    def taps(self) -> list[dict]:
        if not self._taps:
            return []
        return [{"layer": p.name, "width": int(p.out_shape[0] * _tap_ew(p)), "ew": _tap_ew(p),
                 "shape": [int(v) for v in p.out_shape],
                 "transfers": int(p.out_shape[1] * p.out_shape[2])} for p in self._tapped]

    def elaborate(self, platform):
        m = Module()
        src = wiring.flipped(self.i)
        if self._bram:
            # A registered input: on ECP5 the board's ring (a block RAM, 5.8 ns clock to out) and
            # its input multiplexer fed the box sums' adders in one cycle (57.4 MHz).
            from amaranth.lib.fifo import SyncFIFOBuffered
            m.submodules.in_buf = ibuf = SyncFIFOBuffered(width=len(self.i.payload), depth=3)
            wiring.connect(m, src, ibuf.w_stream)
            src = ibuf.r_stream
        tapped = {p.name for p in self._tapped}
        for p, units in zip(self._front, self._stages):
            src = _connect_layer(m, p, units, src)
            if p.name in tapped:
                Network._tap(self, m, p, src)
        m.submodules.engine = eng = self._engine
        wiring.connect(m, src, eng.i)
        if not self._bram:
            wiring.connect(m, wiring.flipped(self.wl), eng.wl)
        if self._shared:
            m.d.comb += [eng.wl_reload.eq(self.wl_reload), self.wl_loaded.eq(eng.wl_loaded),
                         self.sm_grant.eq(eng.sm_grant), eng.sm_addr.eq(self.sm_addr),
                         eng.sm_wdata.eq(self.sm_wdata), eng.sm_we.eq(self.sm_we),
                         self.sm_rdata.eq(eng.sm_rdata)]
        if self._taps and tapped:
            for n, p in enumerate(self._eng[:-1]):
                m.d.comb += [getattr(self, f"tap_{p.name}_valid").eq(eng.map_we & (eng.map_layer == n)),
                             getattr(self, f"tap_{p.name}_payload").eq(eng.map_data)]
        src = eng.o
        if self._eng[-1].out_prec != "int8":
            Network._tap(self, m, self._eng[-1], src)
        m.submodules.tail = self._tail
        wiring.connect(m, src, self._tail.i)
        wiring.connect(m, self._tail.o, wiring.flipped(self.o))
        if self.rotating_scores:
            m.d.comb += self._tail.rot.eq(self.rot)
        return m

    @property
    def rotating_scores(self) -> bool:
        """Whether ``rot`` rotates the held result's scores (a serial tail): the board's writer then
        reads them from ``scores[0]`` instead of copying the result."""
        from .serial_tail import SerialRequantTail
        return isinstance(self._tail, SerialRequantTail)


def build(dep, folding: Folding | None = None, *, taps: bool = False):
    """The generated accelerator of ``folding``'s style: :class:`Network` or :class:`EngineNetwork`."""
    folding = folding or Folding.default(dep)      # the engine's for a network on the stream
    if folding.style == "engine":
        return EngineNetwork(dep, folding, taps=taps)
    return Network(dep, folding, taps=taps)
