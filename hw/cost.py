"""The cost model: cycles, memory bits and lanes per layer for a deployable model and a folding.

One model serves the generator's reports, the folding choice and the architecture search. It reads
the plan (:mod:`kwsbnn.hw.plan`) and the units' own figures (the units are constructed, not
elaborated, which is cheap). Figures per conv layer and for the network:
- ``cycles``: cycles the layer's slowest unit is busy per inference (window unit, matrix-vector
  unit = output positions x neuron folds x synapse folds, pooling unit);
- ``initiation_interval`` = ``cycles_per_inference``: cycles between inferences in steady state,
  the slowest layer (the layers run concurrently), plus the stall of the last layer while the
  scores unit computes (zero when the last layer is slow, as in the keyword networks);
- ``latency``: an upper bound on the cycles from the first input to the result of one inference
  (with the register stages of int8 adder trees, ``pipeline_stages`` of a layer);
- ``memory_bits``: weights + thresholds (for an int8 layer its multipliers and offsets) + line
  buffer + shortcut FIFO + pooling buffer;
- ``lanes``: XNOR (or add/subtract) lanes, PE x SIMD;
- ``binary_ops``: multiply-accumulates per inference (for pipeline efficiency).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kwsbnn.errors import KwsError

from .arith import signed_width


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


#: The accelerator styles: the layer-per-unit pipeline (:class:`kwsbnn.hw.network.Network`) and the
#: layer engine with its weights in a loadable memory (:class:`kwsbnn.hw.network.EngineNetwork`).
STYLES = ("pipeline", "engine")


#: Where the ``engine`` style keeps its weights and stream map: ``spram`` (the loadable weight
#: memory of :class:`kwsbnn.hw.engine.LayerEngine`, the iCE40 UP5K's SPRAM, 64-bit words) or
#: ``bram`` (:class:`kwsbnn.hw.bram_engine.BramEngine`: block-RAM ROM in the bitstream, ECP5, up
#: to a window per cycle).
ENGINE_MEMORIES = ("spram", "bram")


@dataclass
class Folding:
    """Per-layer PE (output channels in parallel) and SIMD (input elements per cycle), and the
    style. In the ``engine`` style every engine layer has the same PE and SIMD (the engine's lanes),
    and ``memory`` says which engine (:data:`ENGINE_MEMORIES`)."""
    layers: dict = field(default_factory=dict)
    style: str = "pipeline"
    memory: str = "spram"

    def __getitem__(self, name: str) -> dict:
        return self.layers[name]

    @classmethod
    def default(cls, dep, max_simd: int = 32) -> "Folding":
        """The small folding: PE = 1; SIMD = the largest divisor of the input channels up to
        ``max_simd`` for a binary-input layer (so it builds as the line-buffer conv unit), of K for
        an int8-input layer with binary weights; at most 6 multipliers for int8 weights. A network
        on the integer residual stream, which only the engine style runs: :func:`engine_folding`."""
        from .plan import is_stream
        if is_stream(dep):
            return engine_folding(dep)
        return cls._pipeline(dep, max_simd)

    @classmethod
    def _pipeline(cls, dep, max_simd: int = 32) -> "Folding":
        layers = {}
        prec = dep.input["prec"]
        for layer in dep.layers:
            if layer["op"] == "conv":
                k = int(np.shape(layer["weights"])[1])
                if layer["w_prec"] == "int8":
                    # Multipliers: at most 6, so that they and the scores unit's one fit the 8 DSPs
                    # of an iCE40UP5K.
                    fold = max(((pe, simd) for pe in divisors(layer["out_channels"]) for simd in divisors(k)
                                if pe * simd <= 6), key=lambda f: (f[0] * f[1], f[1]))
                    layers[layer["name"]] = {"pe": fold[0], "simd": fold[1]}
                else:
                    n = layer["in_channels"] if prec == "bin" else k
                    layers[layer["name"]] = {"pe": 1, "simd": max(d for d in divisors(n) if d <= max_simd)}
                prec = "bin" if layer["out"] == "bits" else "int8"
        return cls(layers)

    @classmethod
    def load(cls, path: str | Path, dep) -> "Folding":
        """Read a folding file ``{"layers": {name: {"pe": P, "simd": S}}}``; unnamed layers get defaults."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise KwsError(f"{path}: cannot read the folding file ({e})",
                           'write it as {"layers": {"conv1": {"pe": 4, "simd": 32}}}') from None
        style = raw.get("style", "pipeline")
        if style not in STYLES:
            raise KwsError(f"{path}: style {style!r} is not one of {', '.join(STYLES)}")
        memory = raw.get("memory", "spram")
        if memory not in ENGINE_MEMORIES or (memory != "spram" and style != "engine"):
            raise KwsError(f"{path}: memory {memory!r}: the engine style's memory is one of "
                           f"{', '.join(ENGINE_MEMORIES)}", 'give "memory" only with "style": "engine"')
        folding = cls.default(dep) if style == "pipeline" else engine_folding(dep, memory=memory)
        names = set(folding.layers)
        for name, fold in raw.get("layers", {}).items():
            if name not in names:
                raise KwsError(f"{path}: layer {name!r} is not a convolution of this model",
                               f"its layers are {sorted(names)}")
            folding.layers[name] = {"pe": int(fold["pe"]), "simd": int(fold["simd"])}
            for key in ("boxsum", "hold"):
                if fold.get(key):
                    folding.layers[name][key] = True
        return folding

    def to_dict(self) -> dict:
        if self.style == "pipeline":
            return {"layers": self.layers}
        if self.memory != "spram":
            return {"style": self.style, "memory": self.memory, "layers": self.layers}
        return {"style": self.style, "layers": self.layers}


def _conv_entry(p, units, fold) -> dict:
    if "conv" in units:
        conv = units["conv"]
        entry = {"name": p.name, "op": "conv", "unit": "streamed", "pe": fold["pe"],
                 "simd": fold["simd"], "lanes": fold["pe"] * fold["simd"],
                 "cycles": conv.cycles_per_inference, "unit_cycles": {"conv": conv.cycles_per_inference},
                 "binary_ops": p.window_positions * p.conv_shape[0] * p.k,
                 "weight_bits": conv.weight_bits, "threshold_bits": conv.threshold_bits,
                 "line_buffer_bits": conv.buffer_bits, "shortcut_fifo_bits": 0, "pool_buffer_bits": 0,
                 "in_shape": list(p.in_shape), "out_shape": list(p.out_shape)}
        if "requant" in units:
            rq = units["requant"]
            entry["unit"] = "streamed+requant"
            entry["threshold_bits"] = rq.constant_bits
            entry["unit_cycles"]["requant"] = p.window_positions * rq.cycles_per_position
            entry["cycles"] = max(entry["unit_cycles"].values())
        entry["memory_bits"] = conv.weight_bits + entry["threshold_bits"] + conv.buffer_bits
        return entry
    mvu = units["mvu"]
    positions = p.window_positions
    if "box" in units:                      # the pooling folded in: the MVU runs on pooled positions
        positions = p.out_shape[1] * p.out_shape[2]
    c_out = p.conv_shape[0]
    cyc = {"mvu": positions * mvu.cycles_per_vector}
    if "window" in units:
        cyc["window"] = units["window"].cycles_per_inference
    if "box" in units:
        # Between two output rows the window takes the box sums of the rows the stride skips, one
        # per cycle, before its next window: (P - 1) rows and the next window's first columns.
        box = units["box"]
        kf, df = p.layer["kernel"][1], p.layer.get("dilation", (1, 1))[1]
        between = (p.pool[0] - 1) * box.out_coeffs + (kf - 1) * df + 1
        cyc["box"] = box.cycles_per_inference
        if mvu.holds_input:
            # The MVU works on the window's held vector: the window walks to its next vector only
            # after the last fold, one box sum a cycle, while the MVU waits (every walked position
            # but the one the last fold's cycle takes).
            cyc["mvu"] += units["window"].cycles_per_inference - positions
        else:
            cyc["mvu"] += p.out_shape[1] * max(0, between - mvu.cycles_per_vector)
    if "pool" in units:
        cyc["pool"] = units["pool"].cycles_per_inference
    if "requant" in units:
        cyc["requant"] = positions * units["requant"].cycles_per_position
    thr_bits = mvu.threshold_bits
    if "requant" in units:
        thr_bits = units["requant"].constant_bits
    pool_buf = 0
    if "pool" in units:
        thr_bits = units["pool"].threshold_bits
        pool_buf = units["pool"].buffer_bits
    window_buf = units["window"].buffer_bits if "window" in units else 0
    if "box" in units:
        window_buf += units["box"].buffer_bits
    fifo_bits = p.shortcut_depth * p.in_shape[0] if p.shortcut else 0
    entry = {"name": p.name, "op": "conv", "unit": "box+window+mvu" if "box" in units else "window+mvu",
             "pe": fold["pe"], "simd": fold["simd"],
             "lanes": mvu.lanes, "cycles": max(cyc.values()), "unit_cycles": cyc,
             "binary_ops": positions * c_out * p.k, "weight_bits": mvu.weight_bits,
             "threshold_bits": thr_bits, "line_buffer_bits": window_buf,
             "shortcut_fifo_bits": fifo_bits, "pool_buffer_bits": pool_buf,
             "pipeline_stages": mvu.pipeline_stages,
             "in_shape": list(p.in_shape), "out_shape": list(p.out_shape)}
    entry["memory_bits"] = thr_bits + mvu.weight_bits + window_buf + fifo_bits + pool_buf
    return entry


def _tail_entry(tail) -> dict:
    w = tail.layer["weights"]
    wv = 2 * w - 1 if tail.binary_weights else w
    ww = signed_width(int(np.min(wv)), int(np.max(wv)))
    tail_bits = int(tail.classes * tail.channels * ww)
    return {"name": tail.name, "op": "gap+dense+argmax", "pe": 1, "simd": 1, "lanes": 0,
            "cycles": tail.positions + tail.channels * tail.classes + 3,
            "binary_ops": tail.channels * tail.classes, "weight_bits": tail_bits,
            "threshold_bits": 0, "line_buffer_bits": 0, "shortcut_fifo_bits": 0,
            "pool_buffer_bits": 0, "memory_bits": tail_bits}


def engine_folding(dep, pe: int | None = None, simd: int | None = None,
                   front: dict | None = None, memory: str = "spram") -> Folding:
    """A folding of the ``engine`` style: the engine layers at ``pe`` x ``simd`` lanes (default: the
    most lanes up to the 64-bit weight word, the smallest PE among them; with ``pe`` given, SIMD =
    the largest divisor of the channels up to 64 / ``pe``), the layers before
    them (the int8 first layer) at ``front`` (name -> fold) or else the fewest lanes with which each
    takes at most 1/8 of the engine's cycles (int8 weights: at most 6 multipliers, as
    :meth:`Folding.default`), with its pooling folded in where it can be (``"boxsum": True``), its
    matrix-vector unit then working on the window's held vector in the SPRAM engine (``"hold":
    True``: no copy of it, a few cycles per vector more; there the logic is scarcer than the front's
    cycles).

    ``memory="bram"``: the block-RAM engine (:class:`kwsbnn.hw.bram_engine.BramEngine`, the
    integer stream only), default PE 1 x SIMD = a whole window (``9 C`` for 3x3 layers); its input
    overlaps its computation, so the front takes the fewest lanes with which it is no slower than
    the engine."""
    from .folding import BRAM_FRONT_MAX_SIMD, _choices
    from .network import Network, boxsum_fits
    from .plan import engine_split
    if memory not in ENGINE_MEMORIES:
        raise KwsError(f"engine memory {memory!r} is not one of {', '.join(ENGINE_MEMORIES)}")
    front_plans, eng, _ = engine_split(dep)
    c, t, f = eng[0].in_shape
    if memory == "bram":
        pe, simd = int(pe or 1), int(simd or min(p.k for p in eng))
    else:
        pe, simd = _engine_lanes(c, pe, simd)
    layers = {p.name: {"pe": int(pe), "simd": int(simd)} for p in eng}
    unit = engine_unit(dep, pe, simd, memory)
    share = 1 if memory == "bram" else 8
    default = Folding._pipeline(dep)
    for p in front_plans:
        if p.stream_out and p.pool and not boxsum_fits(p):
            from .plan import UnsupportedNetwork
            raise UnsupportedNetwork(f"layer {p.name}: the integer stream's first layer pools only with "
                                     "its pooling folded into it, which this geometry does not allow",
                                     "give the input a size whose last pooled rows and columns end "
                                     "inside the map (as 101 x 40 with 4 x 3 pooling does)")
        if front and p.name in front:
            layers[p.name] = {"pe": int(front[p.name]["pe"]), "simd": int(front[p.name]["simd"])}
            continue
        layers[p.name] = default[p.name]
        # With its pooling folded in, the MVU runs on the pooled positions only.
        positions = p.out_shape[1] * p.out_shape[2] if boxsum_fits(p) else p.window_positions
        best = None
        for lanes, fpe, fsimd in _choices(p):
            if p.layer["w_prec"] == "int8" and lanes > 6:
                break
            if memory == "bram" and p.in_prec == "int8" and fsimd > BRAM_FRONT_MAX_SIMD:
                continue
            if memory == "bram":
                # Its whole cycles (box sums, row waits, requantization), as the cost model counts.
                fold = dict(pe=fpe, simd=fsimd, **({"boxsum": True} if boxsum_fits(p) else {}))
                try:
                    units = Network._conv_units(p, fold, memory)
                except ValueError:
                    continue
                for u in units.values():
                    u._MustUse__silence = True
                cyc = _conv_entry(p, units, fold)["cycles"]
                if best is None or cyc < best[0]:
                    best = (cyc, {"pe": fpe, "simd": fsimd})
                if cyc <= unit.compute_cycles:
                    break
            elif positions * (p.conv_shape[0] // fpe) * (p.k // fsimd) * share <= unit.compute_cycles:
                layers[p.name] = {"pe": fpe, "simd": fsimd}
                break
        if best is not None:
            layers[p.name] = best[1]
        if boxsum_fits(p):
            layers[p.name] = dict(layers[p.name], boxsum=True,
                                  **({"hold": True} if memory == "spram" else {}))
    return Folding({p.name: layers[p.name] for p in front_plans + eng}, style="engine", memory=memory)


def engine_unit(dep, pe: int, simd: int, memory: str = "spram", pool: bool = True):
    """The engine of ``dep``'s engine layers at ``pe`` x ``simd``, built for its figures (not
    elaborated): :class:`~kwsbnn.hw.engine.LayerEngine` (``memory="spram"``) or
    :class:`~kwsbnn.hw.bram_engine.BramEngine` (``"bram"``, pooling its last layer as the network
    builds it unless ``pool`` is false). ``ValueError`` for a folding the engine refuses."""
    from .plan import engine_split
    _, eng, _ = engine_split(dep)
    c, t, f = eng[0].in_shape
    if memory == "bram":
        from .bram_engine import BramEngine
        unit = BramEngine([p.layer for p in eng], channels=c, frames=t, coeffs=f, pe=pe, simd=simd,
                          pool=pool)
    else:
        from .engine import LayerEngine
        unit = LayerEngine([p.layer for p in eng], channels=c, frames=t, coeffs=f, pe=pe, simd=simd)
    unit._MustUse__silence = True
    return unit


def _engine_lanes(c: int, pe: int | None = None, simd: int | None = None) -> tuple[int, int]:
    """The engine's ``pe`` x ``simd`` of :func:`engine_folding` for ``c`` channels."""
    from .engine import WORD_BITS
    if pe is None and simd is None:
        _, pe, simd = max((p_ * s_, -p_, s_) for p_ in divisors(c) for s_ in divisors(c)
                          if p_ * s_ <= WORD_BITS and p_ <= 2)   # thresholds: 2 lanes per word
        pe = -pe
    pe = 1 if pe is None else pe
    if simd is None:
        simd = max(d for d in divisors(c) if d * pe <= WORD_BITS)
    return int(pe), int(simd)


def engine_words(dep, pe: int | None = None, simd: int | None = None) -> dict:
    """The weight memory's word counts of the ``engine`` style, from the plan alone (without building
    the engine, which refuses a network that does not fit): ``weight_words`` at ``pe`` x ``simd``
    (default: :func:`engine_folding`'s), ``stream_words`` (the integer stream's map: ``T F C / 8``,
    0 without the stream), ``memory_words`` (their sum: :attr:`LayerEngine.memory_words`) and
    ``spram_words`` (:data:`kwsbnn.hw.engine.SPRAM_WORDS`)."""
    from .engine import SPRAM_WORDS, STREAM_LANES
    from .plan import engine_split
    _, eng, _ = engine_split(dep)
    c, t, f = eng[0].in_shape
    pe, simd = _engine_lanes(c, pe, simd)
    weights = sum(-(-p.conv_shape[0] // pe) * -(-p.k // simd) for p in eng)
    streamw = t * f * -(-c // STREAM_LANES) if eng[0].stream else 0
    return {"weight_words": int(weights), "stream_words": int(streamw),
            "memory_words": int(weights + streamw), "spram_words": SPRAM_WORDS}


def engine_costs(dep, folding: Folding) -> dict:
    """The cost figures (as :func:`layer_costs`) of the ``engine`` style: the front layers as in
    the pipeline, one entry per engine layer (``cycles``: ``T' F' P`` plus the drain, see
    :mod:`kwsbnn.hw.engine`), the tail. The engine takes its input only while idle, so an inference
    takes the front's cycles plus the engine's: ``cycles_per_inference = max(front layer cycles) +
    engine compute cycles`` (on the integer stream the front's cycles are at least the engine's
    ``T F C + 6`` input cycles). Memory: ``weight_memory_bits`` (the loaded image: weights in the
    weight memory, SPRAM on iCE40, and thresholds), ``stream_map_bits`` (the integer stream's map,
    in the weight memory after the weights: ``spram_words`` in all) and ``map_bits`` (block RAM)."""
    from .engine import LAYER_OVERHEAD, WORD_BITS, LayerEngine
    from .network import Network
    from .plan import engine_split
    front, eng, tail = engine_split(dep)
    entries = []
    for p in front:
        units = Network._conv_units(p, folding[p.name], folding.memory)
        for unit in units.values():
            unit._MustUse__silence = True
        entries.append(_conv_entry(p, units, folding[p.name]))
    fold = folding[eng[0].name]
    if any(folding[p.name] != fold for p in eng):
        raise KwsError("the engine layers must share one folding (the engine's lanes)",
                       f"give {', '.join(p.name for p in eng)} the same pe and simd")
    c, t, f = eng[0].in_shape
    if folding.memory == "bram":
        return _bram_engine_costs(dep, folding, entries, front, eng, tail)
    unit = LayerEngine([p.layer for p in eng], channels=c, frames=t, coeffs=f, pe=fold["pe"],
                       simd=fold["simd"])
    unit._MustUse__silence = True
    for n, (p, g) in enumerate(zip(eng, unit.layers)):
        cyc = unit.layer_cycles(g) + unit.layer_overhead
        entries.append({"name": p.name, "op": "conv", "unit": "engine", "pe": fold["pe"],
                        "simd": fold["simd"], "lanes": unit.lanes, "cycles": cyc,
                        "unit_cycles": {"engine": cyc}, "binary_ops": p.window_positions * c * p.k,
                        "weight_bits": c * p.k,
                        "threshold_bits": (unit.stream_constant_bits // (len(eng) + 1) if g.stream
                                           else 0 if g.count else c * (1 + 2 * unit._vw)),
                        "line_buffer_bits": unit.map_bits if n == 0 else 0, "shortcut_fifo_bits": 0,
                        "pool_buffer_bits": 0, "in_shape": list(p.in_shape), "out_shape": list(p.out_shape)})
        entries[-1]["memory_bits"] = (entries[-1]["weight_bits"] + entries[-1]["threshold_bits"]
                                      + entries[-1]["line_buffer_bits"])
    entries.append(_tail_entry(tail))
    front_cycles = max((e["cycles"] for e in entries[:len(front)]), default=unit.input_positions)
    if unit.stream:
        # The engine takes the stream's words at C cycles per position (their bits one per cycle).
        front_cycles = max(front_cycles, unit.input_cycles)
    ii = front_cycles + unit.compute_cycles
    engine_ops = sum(e["binary_ops"] for e in entries[len(front):len(front) + len(eng)])
    return {"style": "engine", "cycles_per_inference": ii, "initiation_interval": ii,
            "latency": ii + entries[-1]["cycles"] + 8,
            "memory_bits": sum(e["memory_bits"] for e in entries),
            "weight_bits": sum(e["weight_bits"] for e in entries),
            "lanes": sum(e["lanes"] for e in entries[:len(front)]) + unit.lanes,
            "bottleneck": "engine" if unit.compute_cycles >= front_cycles else entries[0]["name"],
            "engine_cycles": unit.compute_cycles, "engine_lanes": unit.lanes,
            "engine_binary_ops": engine_ops, "engine_limit_cycles": -(-engine_ops // unit.lanes),
            "weight_memory_bits": unit.load_words * WORD_BITS, "weight_memory_words": unit.load_words,
            "stream_map_bits": unit.stream_words * WORD_BITS, "stream_map_words": unit.stream_words,
            "spram_words": unit.memory_words, "map_bits": unit.map_bits, "layers": entries}


def _bram_engine_costs(dep, folding: Folding, entries: list, front, eng, tail) -> dict:
    """:func:`engine_costs` of the block-RAM engine (:class:`kwsbnn.hw.bram_engine.BramEngine`,
    which pools the last layer, then :class:`kwsbnn.hw.dense.DenseArgmax`): it takes the next
    inference's input while it computes, so ``cycles_per_inference = max(front layer cycles, the
    engine's input cycles, its compute cycles, the tail's cycles)``. Memory: the
    weight ROM (``weight_rom_bits``), both stream maps (``stream_map_bits``) and the bit maps
    (``map_bits``), all block RAM; nothing to load (``spram_words`` 0)."""
    fold = folding[eng[0].name]
    unit = engine_unit(dep, fold["pe"], fold["simd"], "bram", pool=True)
    c = eng[0].in_shape[0]
    n_l = len(eng)
    for n, (p, g) in enumerate(zip(eng, unit.layers)):
        cyc = unit.layer_cycles(g)
        entries.append({"name": p.name, "op": "conv", "unit": "bram_engine", "pe": fold["pe"],
                        "simd": fold["simd"], "lanes": unit.lanes, "cycles": cyc,
                        "unit_cycles": {"engine": cyc}, "binary_ops": p.window_positions * c * p.k,
                        "weight_bits": c * p.k, "threshold_bits": unit.stream_constant_bits // n_l,
                        "line_buffer_bits": (unit.map_bits + unit.stream_map_bits) if n == 0 else 0,
                        "shortcut_fifo_bits": 0, "pool_buffer_bits": 0,
                        "in_shape": list(p.in_shape), "out_shape": list(p.out_shape)})
        entries[-1]["memory_bits"] = (entries[-1]["weight_bits"] + entries[-1]["threshold_bits"]
                                      + entries[-1]["line_buffer_bits"])
    t = _tail_entry(tail)
    # DenseArgmax on the engine's sums (it pools the last layer itself, PE channels per cycle).
    t.update(op="dense+argmax", cycles=tail.channels // fold["pe"] + tail.channels * tail.classes + 6)
    entries.append(t)
    front_cycles = max((e["cycles"] for e in entries[:len(front)]), default=0)
    parts = {"front": front_cycles, "engine input": unit.input_cycles,
             "engine": unit.compute_cycles, "tail": t["cycles"]}
    ii = max(parts.values())
    engine_ops = sum(e["binary_ops"] for e in entries[len(front):len(front) + n_l])
    bottleneck = max(parts, key=parts.get)
    return {"style": "engine", "memory": "bram", "cycles_per_inference": ii, "initiation_interval": ii,
            "latency": unit.input_cycles + unit.compute_cycles + t["cycles"] + 8,
            "memory_bits": sum(e["memory_bits"] for e in entries),
            "weight_bits": sum(e["weight_bits"] for e in entries),
            "lanes": sum(e["lanes"] for e in entries[:len(front)]) + unit.lanes,
            "bottleneck": entries[0]["name"] if bottleneck == "front" else bottleneck,
            "engine_cycles": unit.compute_cycles, "engine_lanes": unit.lanes,
            "engine_input_cycles": unit.input_cycles, "map_copies": unit.map_copies,
            "engine_binary_ops": engine_ops, "engine_limit_cycles": -(-engine_ops // unit.lanes),
            "weight_rom_bits": unit.weight_bits, "weight_memory_bits": 0, "weight_memory_words": 0,
            "stream_map_bits": unit.stream_map_bits, "stream_map_words": 2 * unit.stream_words,
            "spram_words": 0, "map_bits": unit.map_bits, "layers": entries}


def layer_costs(dep, folding: Folding | None = None) -> dict:
    """Per-layer and whole-network cost figures (see the module docstring)."""
    from .network import Network
    from .plan import plan

    folding = folding or Folding.default(dep)
    if folding.style == "engine":
        return engine_costs(dep, folding)
    convs, tail = plan(dep)
    entries = []
    for p in convs:
        units = Network._conv_units(p, folding[p.name])
        for unit in units.values():
            unit._MustUse__silence = True      # built for their figures only, never elaborated
        entries.append(_conv_entry(p, units, folding[p.name]))
    entries.append(_tail_entry(tail))
    # The tail takes no input while it computes the scores (C*K + K + 5 cycles); the last conv layer
    # keeps producing into its 2-entry output FIFO meanwhile, and stalls if that fills first.
    tail_busy = tail.channels * tail.classes + 3
    last = entries[-2] if len(entries) > 1 else None
    stall = 0
    if last is not None:
        per_position = last["cycles"] / max(1, tail.positions)
        stall = max(0, int(tail_busy - 2 * per_position))
    ii = max(max(e["cycles"] for e in entries), (last["cycles"] + stall) if last else 0)
    bottleneck = max(entries, key=lambda e: e["cycles"])
    return {"cycles_per_inference": ii, "initiation_interval": ii,
            "latency": sum(e["cycles"] + 3 + e.get("pipeline_stages", 0) for e in entries),
            "memory_bits": sum(e["memory_bits"] for e in entries),
            "weight_bits": sum(e["weight_bits"] for e in entries),
            "lanes": sum(e["lanes"] for e in entries), "bottleneck": bottleneck["name"],
            "layers": entries}


def engine_memory(dep, folding: Folding) -> dict:
    """Word counts of the ``engine`` style at ``folding`` (:class:`kwsbnn.hw.engine.LayerEngine`):
    ``weight_words`` (64-bit words of the weight memory, SPRAM on iCE40), ``threshold_words`` (in
    block RAM after loading), ``map_bits`` (the two activation-map regions, block RAM),
    ``channels`` and ``positions`` (``T F`` of the engine's largest map)."""
    from .engine import LayerEngine
    from .plan import engine_split
    _, eng, _ = engine_split(dep)
    fold = folding[eng[0].name]
    c, t, f = eng[0].in_shape
    unit = LayerEngine([p.layer for p in eng], channels=c, frames=t, coeffs=f, pe=fold["pe"],
                       simd=fold["simd"])
    unit._MustUse__silence = True
    return {"weight_words": unit.weight_words, "threshold_words": unit.threshold_words,
            "map_bits": unit.map_bits, "channels": int(c), "positions": int(unit.map_bits // (2 * c))}
