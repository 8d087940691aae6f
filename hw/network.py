"""The accelerator generator: a whole network as one ``wiring.Component`` from a deployable model.

Today it builds networks of 1x1 binary convolutions (binary fully-connected layers applied at every
position) followed by global sum pooling, a dense layer and argmax: the walking skeleton's shape.
The sliding-window, first-layer and residual units of the keyword networks plug in here.

Stream interface of the generated top:
- ``i``: one transfer per input position ``(t, f)`` in time-major order, payload ``C`` bits
  (bit ``c`` = channel ``c``), ``T * F`` transfers per inference.
- ``o``: one transfer per inference, payload ``{"cls", "scores"}`` (see :func:`scores.result_layout`).
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from kwsbnn.errors import KwsError

from .cost import Folding, layer_costs
from .mvu import FoldingError, MatrixVectorUnit
from .scores import GapDenseArgmax


class UnsupportedNetwork(KwsError):
    """A network the generator cannot build; raised before any Verilog is written."""


def check_supported(dep) -> None:
    """Raise :class:`UnsupportedNetwork` naming the first layer the generator cannot build."""
    hint = "the generator builds binary 1x1 convolutions, gap and a final dense layer"
    if dep.input["prec"] != "bin":
        raise UnsupportedNetwork(f"model {dep.name}: input precision {dep.input['prec']!r} is not "
                                 "supported by this generator yet", hint)
    ops = [layer["op"] for layer in dep.layers]
    if len(ops) < 3 or ops[-2:] != ["gap", "dense"] or any(op != "conv" for op in ops[:-2]):
        raise UnsupportedNetwork(f"model {dep.name}: layer sequence {ops} is not supported", hint)
    for layer in dep.layers[:-2]:
        name = layer["name"]
        if tuple(layer["kernel"]) != (1, 1) or tuple(layer.get("stride", (1, 1))) != (1, 1):
            raise UnsupportedNetwork(f"layer {name}: kernel {layer['kernel']} / stride "
                                     f"{layer.get('stride')} is not supported yet", hint)
        if layer.get("pool") or layer.get("shortcut", "none") != "none":
            raise UnsupportedNetwork(f"layer {name}: pooling and shortcuts are not supported yet", hint)
        if layer["w_prec"] != "bin" or layer["out"] != "bits":
            raise UnsupportedNetwork(f"layer {name}: only binary weights with thresholded bit "
                                     "outputs are supported yet", hint)


class Network(wiring.Component):
    """The generated accelerator. ``folding`` maps layer names to ``{"pe": P, "simd": S}``."""

    def __init__(self, dep, folding: Folding | None = None):
        check_supported(dep)
        self._dep = dep
        self._folding = folding or Folding.default(dep)
        c, t, f = dep.input["shape"]
        self._positions = t * f
        self._units = []
        try:
            for layer in dep.layers[:-2]:
                fold = self._folding[layer["name"]]
                self._units.append(MatrixVectorUnit(
                    layer["weights"], in_prec="bin", out="bits", direction=2 * layer["direction"] - 1,
                    threshold=layer["threshold"], pe=fold["pe"], simd=fold["simd"], name=layer["name"]))
        except FoldingError as e:
            raise UnsupportedNetwork(str(e), "choose PE and SIMD values that divide the layer") from e
        dense = dep.layers[-1]
        self._tail = GapDenseArgmax(dense["weights"], dense["bias"], positions=self._positions,
                                    binary_weights=dense["w_prec"] == "bin")
        super().__init__({"i": In(stream.Signature(c)),
                          "o": Out(stream.Signature(self._tail.layout))})

    @property
    def folding(self) -> Folding:
        return self._folding

    @property
    def score_width(self) -> int:
        return self._tail.score_width

    @property
    def n_classes(self) -> int:
        return len(self._dep.classes)

    def costs(self):
        return layer_costs(self._dep, self._folding)

    def elaborate(self, platform):
        m = Module()
        prev = self.i
        for n, unit in enumerate(self._units):
            m.submodules[f"l{n}_{self._dep.layers[n]['name']}"] = unit
            wiring.connect(m, wiring.flipped(prev) if prev is self.i else prev, unit.i)
            prev = unit.o
        m.submodules.tail = self._tail
        wiring.connect(m, wiring.flipped(prev) if prev is self.i else prev, self._tail.i)
        wiring.connect(m, self._tail.o, wiring.flipped(self.o))
        return m
