"""The layer engine: one XNOR-popcount datapath that steps through a network's binary 3x3 layers, with
the activation maps in block RAM and the weights in a loadable weight memory (SPRAM on the iCE40
UP5K). The second accelerator style, for wide networks that the layer-per-unit pipeline cannot hold.

It computes exactly :meth:`kwsbnn.sw.golden.GoldenModel._conv` for each of its layers in turn
(docs/integer-network.md): ``bin`` x ``bin`` convolutions without pooling, with padding by each
layer's ``pad_bit``, stride, dilation, window order ``k = (a * kf + b) * C + i``, and ``out: bits``
(direction and threshold per channel, the threshold chosen by the input bit of the same channel and
position with ``shortcut: bit``); the last layer may have ``out: int8`` instead: it then emits
mismatch counts, as :class:`~kwsbnn.hw.conv.StreamedConv` does with ``out="count"``, for
:class:`~kwsbnn.hw.serial_tail.SerialRequantTail`. Every layer has ``C`` input and ``C`` output
channels.

Streams:
- ``i : In(stream.Signature(C))``: the first engine layer's input, one transfer per position
  ``(t, f)``, t-major, ``T * F`` per inference, bit ``c`` = channel ``c``;
- ``o : Out(...)``: the last layer's output: one transfer per output position with its ``C`` bits,
  or (``out: int8``) one transfer per fold with ``pe`` counts of :attr:`count_width` bits (lane ``p``
  = channel ``nf * pe + p``, ``acc = K - 2 d``);
- ``wl : In(stream.Signature(64))``: the loader port. After power-up the engine takes nothing on
  ``i`` until it has received the :meth:`image` (:attr:`load_words` words of 64 bits, in order); the
  first :attr:`weight_words` go to the weight memory, the rest (thresholds) to a block RAM. The
  loader's address and its ``loaded`` flag are not reset by ``rst`` (the weight memory keeps its
  contents), so a reset needs no reload. With ``shared_words`` (a board top that loads the image
  over its link and keeps its own data in the weight memory's free words) the engine also has the
  ports of :func:`shared_signature`: ``wl_reload`` starts a new image (another model's, or the
  same again), ``wl_loaded`` says the image is complete, and ``sm_*`` give the board the weight
  memory while the engine does not use it (``sm_grant``: loaded and idle).

Memories:
- **Activation maps**: one block RAM of ``C``-bit words, two regions of ``N`` words (``N`` = the
  largest map of the engine's layers, ``T * F`` positions); layer ``l`` reads region ``l mod 2``
  and writes its output bits to region ``(l + 1) mod 2`` (the last layer to ``o``). The input goes
  into region 0, once the previous inference has finished with it. :attr:`map_bits` = ``2 N C``.
- **Weights**: word ``wbase_l + nf * SF + sf`` holds lane ``p`` bits ``p * simd + j`` =
  ``w_l[nf * pe + p, sf * simd + j]``; ``pe * simd <= 64`` lanes (the 64-bit port of four
  SB_SPRAM256KA side by side on iCE40, :class:`WeightMemory`).
- **Thresholds**: per bit-output layer and fold, ``pe`` lanes of ``1 + 2 * bits_for(K + 1)`` bits:
  an inversion bit and two mismatch-count bounds (for shortcut bit 0 and 1; the same twice without
  shortcut): ``y = (d < v[s]) ^ inv`` with ``d`` the mismatch count (see StreamedConv).

Datapath and timing: a 4-stage pipeline (issue the map and weight addresses -> XNOR and popcounts
of 16-bit groups -> their sum accumulated, ``pe`` lanes of ``simd`` bits -> threshold and collect
the position's bits). Per output position, for each neuron fold ``nf`` (``NF = C / pe``) and SIMD
fold ``sf`` (``SF = kt kf C / simd``), one map word (a ``simd``-bit chunk of a tap; the pad bits
where the tap is in the padding) and one weight word per cycle. Cycles per layer ``l``:
``T'_l F'_l P_l`` with ``P_l = NF * SF + max(0, 5 - SF)`` (bit outputs), ``NF * max(SF, 5)``
(counts, each taken at once); between layers the pipeline
drains (:data:`LAYER_OVERHEAD` cycles) because the next layer reads what this one wrote. So an
inference takes :attr:`compute_cycles` = ``sum_l T'_l F'_l P_l + L * LAYER_OVERHEAD`` cycles of
computation, i.e. ``positions x C_out x ceil(9C / lanes) + 5`` per 3x3 layer (``lanes = pe * simd``),
after its input has arrived; the input of the next inference is taken only after that, so back to
back at one input position per cycle an inference takes :attr:`cycles_per_inference` = ``T F +
compute_cycles`` cycles, exactly (:func:`kwsbnn.hw.cost.engine_costs` gives the whole network's).
Latency from the last read of a position to its output: 4 cycles. No combinational path from
``o.ready``, ``i.valid`` or ``wl.valid`` to a ready.

The integer residual stream (every layer with ``in_threshold``, ``out: int8``, ``shortcut: int8``
or ``none`` with ``smul = 2**shift``: the shipped ``binary``; docs/integer-network.md): each layer
reads the bits ``r >= in_threshold`` of the int8 stream ``r`` (from the bit maps, as above) and
adds ``clamp((acc * mul + add) >> shift)`` to ``r``, saturating to ``[lo, hi]``.
- Streams: ``i`` carries the first layer's values one per transfer (8 bits, two's complement),
  position by position (t-major), channel order within a position: ``T F C`` per inference; ``o``
  carries **stream words**, 64 bits of 8 int8 values (element ``j`` at bits ``8j``: channel ``8 g +
  j``), ``C / 8`` per position: the last layer's clamped ``r`` (the ReLU with ``last=int8``), for
  the serial tail.
- Memories: the **stream map**, ``T F C / 8`` words in the weight memory after the weights
  (:attr:`stream_words`; one map: a position's words are read and written back by the same
  step), so :attr:`memory_words` = weights + map must fit 16K words; the bit maps as above
  (``r >= t`` of the next layer); a **constant ROM** (block RAM, in the bitstream) of ``(L + 1) C``
  words: per layer and channel ``M = -2 mul``, ``A = K mul + add`` (scaled to one shift) and the
  next layer's ``in_threshold``; no threshold words (:attr:`load_words` = the weights).
- Datapath: per output position, per group of 8 channels (``GF = 8 / pe`` folds): a **W slot** (the
  group two before goes back to the map, or for the last layer out on ``o``) and an **R slot**
  (this group's stream word into one of two word registers), then its ``GF`` folds as above. The
  fold's ``pe`` counts go one per cycle through a five-stage **update pipeline** (constants;
  ``d M``; ``+ A``; ``>> S`` saturated to +-255; ``r + delta`` clamped, the next layer's bit into the
  output register, ``r`` into its word register lane). Input values go through the same pipeline
  (``r`` itself; bits for the first layer) into the lanes of a word register, which goes to the map
  when its eighth lane is in. Needs ``8 | C``,
  ``pe | 8`` and ``GF SF >= pe + 5`` (the group two back is then always done at its W slot).
- Cycles: per stream layer ``T F (C / 8) (2 + GF SF)`` plus a drain of ``9 + pe``; input ``T F C + 6``
  (a value per cycle); so an inference takes :attr:`cycles_per_inference` = ``T F C + 6 +
  sum_l (T F (C / 8) (2 + GF SF) + 9 + pe)``, exactly (``tests/test_engine_stream.py``): at 64
  channels and 64 lanes the slots add ``2 / 72``, 2.8%, to the layers' ``T F C SF``.
- Resources (the shipped ``binary``, 64 channels, 64 lanes, ``synth_ice40`` and ``--pack-only``):
  2,007 logic cells (of which about 860 the stream's), 17 block RAMs (bit maps 12, constants 5),
  2 DSPs (the update's product), 4 SPRAMs (1,728 words of weights, 2,600 of stream map).

Resources (iCE40, 25 x 13 maps, three layers, ``synth_ice40`` and nextpnr ``--pack-only``): 64
channels at 64 lanes 1,245 logic cells, 14 block RAMs (maps 12, thresholds 2) and 4 SPRAMs; 128
channels 1,674 and 26 block RAMs.

Members: ``i``, ``o``, ``wl`` as above; ``map_we``, ``map_layer``, ``map_data`` (outputs: the map
writes of the layers before the last, for simulation taps).
"""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from kwsbnn.units import kibit

from .arith import bits_for, int_pair, popcount, signed_width

#: Width of a weight-memory word (and of the loader port): four 16-bit SB_SPRAM256KA side by side.
WORD_BITS = 64
#: Words one weight memory holds: 16K words of 64 bits (4 x SB_SPRAM256KA, 1 Mbit).
SPRAM_WORDS = 16384
#: Cycles between the last read of a layer and the first read of the next (pipeline drain).
LAYER_OVERHEAD = 5
#: Channels of one stream word: 8 int8 values in a 64-bit word of the weight memory.
STREAM_LANES = 8
#: On the stream, a group boundary waits ``max(0, STREAM_WAIT + pe - GF SF)`` cycles for the
#: updates of the group two before it (their latency); a layer's drain is ``STREAM_OVERHEAD + pe``.
STREAM_WAIT = 5
STREAM_OVERHEAD = 9
#: On the stream, the input's last value through the update pipeline and the start after it.
STREAM_INPUT = 6


def shared_signature(words: int) -> wiring.Signature:
    """The ports of a weight memory shared with the board (``shared_words`` of :class:`LayerEngine`):
    ``wl_reload`` (a pulse: forget the loaded image, take the next one on ``wl`` from its first
    word), ``wl_loaded`` (the whole image has been taken), and a second user's access to the
    weight memory's words ``[weight_words, words)`` while ``sm_grant`` is high (an image is loaded
    and no inference runs): ``sm_addr``, ``sm_wdata``, ``sm_we`` in, ``sm_rdata`` (the word at the
    ``sm_addr`` of the previous granted cycle) out."""
    return wiring.Signature({"wl_reload": In(1), "wl_loaded": Out(1), "sm_grant": Out(1),
                             "sm_addr": In(range(max(2, words))), "sm_wdata": In(WORD_BITS),
                             "sm_we": In(1), "sm_rdata": Out(WORD_BITS)})


class WeightMemory(wiring.Component):
    """A single-port memory of ``depth`` words of ``width`` bits (at most 64 x 16384), read with one
    cycle of latency like a synchronous block RAM: ``rdata`` holds the word at the ``addr`` of the
    previous cycle; with ``we``, ``wdata`` is written at ``addr`` instead.

    With ``spram=True``, or by default on an iCE40 UP platform (``platform.device`` starting with
    ``iCE40UP``), it is ``ceil(width / 16)`` SB_SPRAM256KA instances side by side (16K x 16 bits each;
    not initialised by the bitstream); otherwise (simulation, ECP5) a ``lib.memory.Memory`` that
    starts with zeros.

    Members: ``addr : In(range(depth))``, ``wdata : In(width)``, ``we : In(1)``, ``rdata : Out(width)``.
    """

    def __init__(self, width: int = WORD_BITS, depth: int = SPRAM_WORDS, *, spram: bool | None = None):
        self._spram = spram
        if not 1 <= width <= WORD_BITS or not 1 <= depth <= SPRAM_WORDS:
            raise ValueError(f"weight memory: {width} x {depth} exceeds {WORD_BITS} x {SPRAM_WORDS}")
        self._width, self._depth = int(width), int(depth)
        super().__init__({"addr": In(range(self._depth)), "wdata": In(self._width), "we": In(1),
                          "rdata": Out(self._width)})

    @property
    def spram_blocks(self) -> int:
        """SB_SPRAM256KA instances on iCE40: one per 16 bits of width."""
        return (self._width + 15) // 16

    def elaborate(self, platform):
        m = Module()
        spram = self._spram
        if spram is None:
            spram = str(getattr(platform, "device", "")).startswith("iCE40UP")
        if spram:
            for n in range(self.spram_blocks):
                lo, hi = 16 * n, min(16 * n + 16, self._width)
                dout = Signal(16, name=f"spram{n}_dout")
                m.submodules[f"spram{n}"] = Instance(
                    "SB_SPRAM256KA", i_ADDRESS=self.addr.as_unsigned() if len(self.addr) == 14
                    else Cat(self.addr, Const(0, 14 - len(self.addr))),
                    i_DATAIN=Cat(self.wdata[lo:hi], Const(0, 16 - (hi - lo))), i_MASKWREN=Const(0xF, 4),
                    i_WREN=self.we, i_CHIPSELECT=Const(1, 1), i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1), o_DATAOUT=dout)
                m.d.comb += self.rdata[lo:hi].eq(dout[:hi - lo])
            return m
        m.submodules.mem = mem = memory.Memory(shape=unsigned(self._width), depth=self._depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=())
        m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.wdata), wp.en.eq(self.we),
                     rp.addr.eq(self.addr), self.rdata.eq(rp.data)]
        return m


@dataclass(frozen=True)
class EngineLayer:
    """The geometry and integers of one engine layer (see :func:`engine_layers`)."""
    name: str
    t: int
    f: int
    kt: int
    kf: int
    st: int
    sf: int
    dt: int
    df: int
    pt: int
    pf: int
    pad: int
    shortcut: bool
    count: bool                  # out: int8 (counts out, no thresholds)
    weights: np.ndarray          # [C, K] bits
    direction: np.ndarray | None
    threshold: np.ndarray | None  # [C, 1 or 2]
    # The integer residual stream (a layer with ``in_threshold``): it reads the bits r >= tin of
    # the stream r and adds clamp((acc * mul + add) >> shift) to it (``rshort``: shortcut int8;
    # without it, it starts the stream anew).
    stream: bool = False
    rshort: bool = False
    tin: np.ndarray | None = None     # [C] in_threshold
    mul: np.ndarray | None = None     # [C]
    add: np.ndarray | None = None     # [C]
    shift: int = 0
    lo: int = -128
    hi: int = 127

    @property
    def to(self) -> int:
        return (self.t + 2 * self.pt - self.dt * (self.kt - 1) - 1) // self.st + 1

    @property
    def fo(self) -> int:
        return (self.f + 2 * self.pf - self.df * (self.kf - 1) - 1) // self.sf + 1

    @property
    def positions(self) -> int:
        return self.to * self.fo


def engine_layers(layers, channels: int, frames: int, coeffs: int) -> list[EngineLayer]:
    """Engine layers from deployable conv layer dicts (binary, ``channels`` in and out, no pooling,
    bits out except the last, which may have ``out: int8`` without shortcut), the first reading a
    ``channels x frames x coeffs`` map. ``ValueError`` names what does not fit."""
    out = []
    t, f = int(frames), int(coeffs)
    for n, layer in enumerate(layers):
        name = layer["name"]
        if layer.get("in_prec", "bin") != "bin" or layer["w_prec"] != "bin":
            raise ValueError(f"{name}: the engine takes binary inputs and weights only")
        if layer["in_channels"] != channels or layer["out_channels"] != channels:
            raise ValueError(f"{name}: the engine needs {channels} input and output channels, got "
                             f"{layer['in_channels']} -> {layer['out_channels']}")
        if layer.get("pool"):
            raise ValueError(f"{name}: the engine has no pooling")
        count = layer["out"] == "int8"
        stream = layer.get("in_threshold") is not None
        sc = layer.get("shortcut", "none")
        if stream:
            if not count:
                raise ValueError(f"{name}: a layer that reads the integer stream must write it "
                                 "(out: int8)")
            if sc not in ("none", "int8"):
                raise ValueError(f"{name}: shortcut {sc!r} on the integer stream")
            shift = int(layer["shift"])
            smul = np.asarray(layer.get("smul", 0), dtype=np.int64).reshape(-1)
            want = (1 << shift) if sc == "int8" else 0
            if np.any(smul != want):
                raise ValueError(f"{name}: the stream's shortcut multiplier must be 2**shift "
                                 f"({want}), as the exporter writes it")
        elif count and n != len(layers) - 1:
            raise ValueError(f"{name}: an int8 output only in the last layer")
        elif sc not in ("none", "bit") or (count and sc != "none"):
            raise ValueError(f"{name}: shortcut {sc!r} is not supported here")
        kt, kf = int_pair("engine", "kernel", layer["kernel"], 1)
        st, sf = int_pair("engine", "stride", layer.get("stride", (1, 1)), 1)
        dt, df = int_pair("engine", "dilation", layer.get("dilation", (1, 1)), 1)
        pt, pf = int_pair("engine", "padding", layer.get("padding", (0, 0)), 0)
        w = np.asarray(layer["weights"], dtype=np.int64)
        if w.shape != (channels, channels * kt * kf):
            raise ValueError(f"{name}: weights of shape {list(w.shape)}")
        extra = {}
        if stream:
            extra = dict(stream=True, rshort=sc == "int8",
                         tin=np.asarray(layer["in_threshold"], dtype=np.int64).reshape(channels),
                         mul=np.asarray(layer["mul"], dtype=np.int64).reshape(channels),
                         add=np.asarray(layer["add"], dtype=np.int64).reshape(channels),
                         shift=int(layer["shift"]), lo=int(layer.get("lo", -128)),
                         hi=int(layer.get("hi", 127)))
            if not -128 <= extra["lo"] <= extra["hi"] <= 127:
                raise ValueError(f"{name}: clamp [{extra['lo']}, {extra['hi']}] is not within int8")
        el = EngineLayer(name=name, t=t, f=f, kt=kt, kf=kf, st=st, sf=sf, dt=dt, df=df, pt=pt, pf=pf,
                         pad=int(layer.get("pad_bit", 0)), shortcut=sc == "bit", count=count,
                         weights=w, direction=None if count else np.asarray(layer["direction"]),
                         threshold=None if count else np.asarray(layer["threshold"]), **extra)
        if el.to < 1 or el.fo < 1:
            raise ValueError(f"{name}: the kernel does not fit the padded {t} x {f} map")
        if stream and ((st, sf) != (1, 1) or (el.to, el.fo) != (t, f)):
            raise ValueError(f"{name}: a layer on the integer stream needs stride 1 and the 'same' "
                             "output size (the stream map is updated in place)")
        if el.shortcut and ((st, sf) != (1, 1) or (el.to, el.fo) != (t, f) or pt % dt or pf % df):
            raise ValueError(f"{name}: a shortcut needs stride 1, the 'same' output size and an odd kernel")
        out.append(el)
        t, f = el.to, el.fo
    if not out:
        raise ValueError("the engine needs at least one layer")
    if any(g.stream for g in out) and not all(g.stream for g in out):
        raise ValueError(f"{out[0].name}..{out[-1].name}: either every engine layer carries the "
                         "integer stream or none does")
    return out


def stream_update_constants(geo: list, c: int, first=None):
    """The integer stream's update constants of layers ``geo`` (:func:`engine_layers`), per channel
    in layer order, at one shift ``S`` = the largest layer shift: ``M = -2 mul << (S - shift)`` and
    ``A = (K mul + add) << (S - shift)`` (``d M + A`` is the layer's ``acc mul + add`` for a count
    ``d`` of mismatches among ``K = kt kf C`` products), and the next layer's threshold (0 after
    the last), clipped to ``[-128, 128]``; ``first``, an optional ``(M, A, t)`` row set before the
    layers. Returns ``(S, M, A, t)`` (arrays of ``c`` values a row)."""
    shift = max(g.shift for g in geo)
    ms, adds, tns = ([first[0]], [first[1]], [first[2]]) if first is not None else ([], [], [])
    for n, g in enumerate(geo):
        k = g.kt * g.kf * c
        sh = shift - g.shift
        ms.append((-2 * g.mul) << sh)
        adds.append((k * g.mul + g.add) << sh)
        tns.append(geo[n + 1].tin if n + 1 < len(geo) else np.zeros(c, np.int64))
    return shift, np.concatenate(ms), np.concatenate(adds), np.clip(np.concatenate(tns), -128, 128)


def _table(values, index):
    """``values[index]`` for a list of per-layer constants: a constant when they are all equal."""
    values = [int(v) for v in values]
    lo_, hi_ = min(values), max(values)
    shape = signed(signed_width(lo_, hi_)) if lo_ < 0 else unsigned(bits_for(hi_))
    if lo_ == hi_:
        return Const(lo_, shape)
    return Array(Const(v, shape) for v in values)[index]


class LayerEngine(wiring.Component):
    def __init__(self, layers, *, channels: int, frames: int, coeffs: int, pe: int = 1,
                 simd: int | None = None, spram: bool | None = None, name: str = "engine",
                 shared_words: int = 0):
        self._MustUse__silence = True        # a refused configuration is not an unused unit
        self._name = name
        self._spram = spram
        self._shared = int(shared_words)
        self._c = int(channels)
        self._geo = engine_layers(layers, self._c, frames, coeffs)
        self._pe = int(pe)
        self._simd = int(simd or min(self._c, WORD_BITS))
        if self._pe < 1 or self._c % self._pe:
            raise ValueError(f"{name}: pe={pe} must divide the {self._c} channels")
        if self._simd < 1 or self._c % self._simd:
            raise ValueError(f"{name}: simd={self._simd} must divide the {self._c} channels")
        if self._pe * self._simd > WORD_BITS:
            raise ValueError(f"{name}: pe x simd = {self._pe * self._simd} lanes exceed the "
                             f"{WORD_BITS}-bit weight word")
        pe, simd = self._pe, self._simd
        self._cs = self._c // simd
        self._nf = self._c // pe
        kmax = max(g.kt * g.kf * self._c for g in self._geo)
        self._vw = bits_for(kmax + 1)
        self._lane = 1 + 2 * self._vw
        if pe * self._lane > WORD_BITS and not self._geo[0].stream:
            raise ValueError(f"{name}: pe={pe} threshold lanes exceed a {WORD_BITS}-bit word")
        self._n = max(max(g.t * g.f, g.positions) for g in self._geo)
        # Weight and threshold images.
        self._wwords, self._twords, self._wbase, self._tbase = [], [], [], []
        for g in self._geo:
            k = g.kt * g.kf * self._c
            sfn = k // simd
            self._wbase.append(len(self._wwords))
            self._tbase.append(len(self._twords))
            for nfi in range(self._nf):
                for sfi in range(sfn):
                    word = 0
                    for p in range(pe):
                        row = g.weights[nfi * pe + p, sfi * simd:(sfi + 1) * simd]
                        for j, bit in enumerate(row):
                            word |= int(bit) << (p * simd + j)
                    self._wwords.append(word)
            if g.count:
                continue
            s = 2 if g.shortcut else 1
            direction = np.asarray(g.direction).astype(np.int64).reshape(self._c)
            threshold = np.asarray(g.threshold).astype(np.int64).reshape(self._c, s)
            for nfi in range(self._nf):
                word = 0
                for p in range(pe):
                    c = nfi * pe + p
                    inv = 0 if direction[c] > 0 else 1
                    field = inv
                    for sv in range(2):
                        t = int(threshold[c, min(sv, s - 1)])
                        v = (k - t) // 2 + 1 if not inv else -((t - k) // 2)
                        field |= min(max(v, 0), k + 1) << (1 + sv * self._vw)
                    word |= field << (p * self._lane)
                self._twords.append(word)
        if len(self._wwords) > SPRAM_WORDS:
            raise ValueError(f"{name}: {len(self._wwords)} weight words exceed the {SPRAM_WORDS} of "
                             f"the weight memory")
        last = self._geo[-1]
        self._count = last.count
        self._aw = bits_for(kmax)
        self._ow = bits_for(kmax) + 1
        self._stream = self._geo[0].stream
        self._rwords = 0
        if self._stream:
            self._stream_constants()
        out_width = pe * self._ow if self._count else self._c
        in_width = self._c
        if self._stream:
            out_width, in_width = WORD_BITS, 8
        if self._shared and not self.memory_words <= self._shared <= SPRAM_WORDS:
            what = (f"{len(self._wwords)} weight words and {self._rwords} stream-map words"
                    if self._stream else f"{len(self._wwords)} weight words")
            raise ValueError(f"{name}: a shared weight memory of {self._shared} words must hold the "
                             f"{what} and at most {SPRAM_WORDS}")
        ports = {"i": In(stream.Signature(in_width)), "o": Out(stream.Signature(out_width)),
                 "wl": In(stream.Signature(WORD_BITS)),
                 "map_we": Out(1), "map_layer": Out(range(len(self._geo))),
                 "map_data": Out(self._c)}
        if self._shared:
            ports.update(shared_signature(self._shared).members)
        super().__init__(ports)
        self._MustUse__silence = False

    def _stream_constants(self):
        """The integer stream's checks, its map in the weight memory and its constant ROM: slot 0
        (the input: the first layer's ``in_threshold``) and slot ``l + 1`` per layer ``l``:
        ``M = -2 mul << (S - shift)``, ``A = (K mul + add) << (S - shift)`` (counts ``d``, ``acc = K
        - 2 d``, all layers at the largest shift ``S``: exact) and the next layer's ``in_threshold``
        (clamped to [-128, 128]: the same bits for an int8 ``r``)."""
        name, c, pe = self._name, self._c, self._pe
        if c % STREAM_LANES:
            raise ValueError(f"{name}: the integer stream needs a multiple of {STREAM_LANES} channels "
                             f"(one stream word holds {STREAM_LANES}), got {c}")
        if STREAM_LANES % pe:
            raise ValueError(f"{name}: pe={pe} must divide {STREAM_LANES} on the integer stream")
        geo = self._geo
        gf = STREAM_LANES // pe
        for g in geo:
            sfn = g.kt * g.kf * self._cs
            if gf * sfn < STREAM_WAIT + pe:
                raise ValueError(f"{name}: pe={pe} x simd={self._simd}: a group of {STREAM_LANES} "
                                 f"channels takes {gf * sfn} cycles, fewer than its stream updates "
                                 f"({STREAM_WAIT + pe}); use a smaller pe or simd")
        self._groups = c // STREAM_LANES
        self._rwords = geo[0].t * geo[0].f * self._groups
        if len(self._wwords) + self._rwords > SPRAM_WORDS:
            raise ValueError(f"{name}: {len(self._wwords)} weight words and {self._rwords} stream-map "
                             f"words exceed the {SPRAM_WORDS} words of the weight memory "
                             f"({kibit((len(self._wwords) + self._rwords) * WORD_BITS, unit=False)} of "
                             f"{kibit(SPRAM_WORDS * WORD_BITS, ',.0f')})")
        zero = np.zeros(c, np.int64)
        self._sshift, m_all, a_all, t_all = stream_update_constants(geo, c, first=(zero, zero, geo[0].tin))
        self._smw = signed_width(min(0, int(m_all.min())), max(0, int(m_all.max())))
        self._saw = signed_width(min(0, int(a_all.min())), max(0, int(a_all.max())))
        self._sconst = [(int(mv) & ((1 << self._smw) - 1)) | ((int(av) & ((1 << self._saw) - 1)) << self._smw)
                        | ((int(tv) & 0x1FF) << (self._smw + self._saw))
                        for mv, av, tv in zip(m_all, a_all, t_all)]

    # Figures.
    @property
    def stream(self) -> bool:
        """Whether the engine carries the integer residual stream (see the module docstring)."""
        return self._stream

    @property
    def stream_words(self) -> int:
        """Words of the weight memory that hold the stream map (after the weights): ``T F C / 8``."""
        return self._rwords

    @property
    def memory_words(self) -> int:
        """Words of the weight memory in use: weights, then the stream map."""
        return len(self._wwords) + self._rwords

    @property
    def stream_constant_bits(self) -> int:
        """The stream's constant ROM: ``(L + 1) C`` words of multiplier, offset and threshold."""
        return len(self._sconst) * (self._smw + self._saw + 9) if self._stream else 0

    @property
    def layers(self) -> list[EngineLayer]:
        return list(self._geo)

    @property
    def lanes(self) -> int:
        return self._pe * self._simd

    @property
    def count_width(self) -> int:
        """Width of one channel's count in the output (``out: int8`` last layer), zero-extended."""
        return self._ow

    def layer_cycles(self, g: EngineLayer) -> int:
        """Cycles of layer ``g``: ``T' F' P`` (see the module docstring)."""
        sfn = g.kt * g.kf * self._cs
        if self._stream:
            gf = STREAM_LANES // self._pe
            return g.positions * self._groups * (2 + gf * sfn)
        p = self._nf * max(sfn, 5) if g.count else self._nf * sfn + max(0, 5 - sfn)
        return g.positions * p

    @property
    def layer_overhead(self) -> int:
        """Cycles between the last issue of a layer and the first of the next (the pipeline's
        drain; on the stream, the last two stream words' updates and writes too)."""
        return STREAM_OVERHEAD + self._pe if self._stream else LAYER_OVERHEAD

    @property
    def compute_cycles(self) -> int:
        """Cycles of computation per inference: ``sum_l T'_l F'_l P_l + L * overhead``."""
        return sum(self.layer_cycles(g) for g in self._geo) + self.layer_overhead * len(self._geo)

    @property
    def input_cycles(self) -> int:
        """Cycles the engine takes for its input: ``T F`` (one position per cycle), on the stream
        ``T F C + 6`` (one value per cycle, then the update pipeline's last stages)."""
        if self._stream:
            return self.input_positions * self._c + STREAM_INPUT
        return self.input_positions

    @property
    def cycles_per_inference(self) -> int:
        """``input_cycles + compute_cycles``: cycles per inference back to back when the input comes
        as fast as the engine takes it and the output is taken at once (exact); the input is taken
        only while the engine is idle."""
        return self.input_cycles + self.compute_cycles

    @property
    def input_positions(self) -> int:
        return self._geo[0].t * self._geo[0].f

    @property
    def weight_words(self) -> int:
        return len(self._wwords)

    @property
    def threshold_words(self) -> int:
        return len(self._twords)

    @property
    def load_words(self) -> int:
        return len(self._wwords) + len(self._twords)

    @property
    def weight_bits(self) -> int:
        """Bits of the weight memory in use: ``weight_words x 64``."""
        return self.weight_words * WORD_BITS

    @property
    def threshold_bits(self) -> int:
        return self.threshold_words * self._pe * self._lane

    @property
    def map_bits(self) -> int:
        """Activation-map block RAM: two regions of ``N`` words of ``C`` bits."""
        return 2 * self._n * self._c

    def image(self) -> list[int]:
        """The loader's words, in order: the weight words, then the threshold words."""
        return list(self._wwords) + list(self._twords)

    def elaborate(self, platform):
        m = Module()
        geo, nl = self._geo, len(self._geo)
        c_n, pe, simd, cs, nf_n, n_map = self._c, self._pe, self._simd, self._cs, self._nf, self._n
        n_w, n_t = len(self._wwords), len(self._twords)
        n_load = n_w + n_t

        # Memories.
        m.submodules.maps = maps = memory.Memory(shape=unsigned(c_n), depth=2 * n_map, init=[],
                                                 attrs={"no_rw_check": 1})
        mwp = maps.write_port()
        mrp = maps.read_port(transparent_for=())
        m.submodules.wmem = wmem = WeightMemory(WORD_BITS, max(2, n_w + self._rwords, self._shared),
                                                spram=self._spram)
        lane_w = self._lane
        if n_t:
            m.submodules.tmem = tmem = memory.Memory(shape=unsigned(pe * lane_w), depth=max(2, n_t),
                                                     init=[])
            twp = tmem.write_port()
            trp = tmem.read_port(transparent_for=())

        # Loader (survives reset, as the weight memory's contents do).
        laddr = Signal(range(n_load + 1), reset_less=True)
        loaded = Signal(reset_less=True)
        lfire = self.wl.valid & ~loaded
        m.d.comb += self.wl.ready.eq(~loaded)
        with m.If(lfire):
            m.d.sync += laddr.eq(laddr + 1)
            with m.If(laddr == n_load - 1):
                m.d.sync += loaded.eq(1)
        running = Signal()
        waddr = Signal(range(max(2, n_w)), init=self._wbase[0])
        if self._shared:
            # Another user of the weight memory (the board's ring buffer) while the engine is idle.
            with m.If(self.wl_reload):
                m.d.sync += [laddr.eq(0), loaded.eq(0)]
            m.d.comb += [self.wl_loaded.eq(loaded), self.sm_rdata.eq(wmem.rdata)]
            if not self._stream:    # the stream's port is shared in _elaborate_stream
                m.d.comb += self.sm_grant.eq(loaded & ~running)
                m.d.comb += [wmem.addr.eq(Mux(~loaded, laddr, Mux(running, waddr, self.sm_addr))),
                             wmem.wdata.eq(Mux(loaded, self.sm_wdata, self.wl.payload)),
                             wmem.we.eq(Mux(loaded, self.sm_we & ~running, lfire & (laddr < n_w)))]
        elif not self._stream:
            m.d.comb += [wmem.addr.eq(Mux(loaded, waddr, laddr)), wmem.wdata.eq(self.wl.payload),
                         wmem.we.eq(lfire & (laddr < n_w))]
        if n_t:
            m.d.comb += [twp.addr.eq(laddr - n_w), twp.data.eq(self.wl.payload),
                         twp.en.eq(lfire & (laddr >= n_w))]

        # Per-layer constants.
        li = Signal(range(nl))

        def tab(fn, index=li):
            return _table([fn(g) for g in geo], index)

        # Walk state of the issue stage.
        g0 = geo[0]
        tmax = max(g.t for g in geo)
        fmax = max(g.f for g in geo)
        lo_w = signed_width(-max(g.pt for g in geo) - 1, tmax + max(g.st for g in geo) + 1)
        rowa_lo = -max(g.pt * g.f for g in geo) - 1
        rowa_hi = max((g.t + g.st + g.kt * g.dt) * g.f for g in geo) + 1
        col_w = signed_width(-max(g.pf for g in geo) - 1, fmax + max(g.sf + g.kf * g.df for g in geo) + 1)
        draining = Signal()
        in_full = Signal()
        ot = Signal(range(max(g.to for g in geo)))
        of = Signal(range(max(g.fo for g in geo)))
        nf = Signal(range(nf_n))
        a = Signal(range(max(g.kt for g in geo)))
        b = Signal(range(max(g.kf for g in geo)))
        j = Signal(range(cs))
        lo = Signal(signed(lo_w), init=-g0.pt)
        row = Signal(signed(lo_w), init=-g0.pt)
        lo_a = Signal(signed(signed_width(rowa_lo, rowa_hi)), init=-g0.pt * g0.f)
        row_a = Signal(signed(signed_width(rowa_lo, rowa_hi)), init=-g0.pt * g0.f)
        fcol = Signal(signed(col_w), init=-g0.pf)
        col = Signal(signed(col_w), init=-g0.pf)

        is_count = tab(lambda g: g.count)
        is_last = li == nl - 1
        last_j = j == cs - 1
        last_b = b == tab(lambda g: g.kf - 1)
        last_a = a == tab(lambda g: g.kt - 1)
        last_sf = last_j & last_b & last_a
        first_sf = (j == 0) & (b == 0) & (a == 0)
        fin = last_sf & (nf == nf_n - 1)
        real = (row >= 0) & (row < tab(lambda g: g.t)) & (col >= 0) & (col < tab(lambda g: g.f))

        # Pipeline stage registers.
        b_valid, b_first, b_last, b_fin, b_real = Signal(), Signal(), Signal(), Signal(), Signal()
        b_j = Signal(range(cs))
        b_nf = Signal(range(nf_n))
        b2_valid, b2_first, b2_last, b2_fin = Signal(), Signal(), Signal(), Signal()
        b2_nf = Signal(range(nf_n))
        c_valid, c_fin = Signal(), Signal()
        oval = Signal()            # o.valid
        wpend = Signal()           # the output register holds a position to write into the map

        out_ok_bits = (~oval & ~wpend & ~(b_valid & b_fin) & ~(b2_valid & b2_fin)
                       & ~(c_valid & c_fin))
        out_ok_count = ~oval & ~(b_valid & b_last) & ~(b2_valid & b2_last) & ~c_valid
        issue = Signal()
        slot = Signal(range(3))           # stream: 0 the W slot, 1 the R slot, 2 issuing a group
        if self._stream:
            m.d.comb += issue.eq(running & ~draining & (slot == 2))
        else:
            m.d.comb += issue.eq(running & ~draining & Mux(is_count, ~last_sf | out_ok_count,
                                                             ~(last_sf & (nf == 0)) | out_ok_bits))

        m.d.comb += mrp.addr.eq(_table([(n % 2) * n_map for n in range(nl)], li) + row_a + col)
        # Shortcut: lane p of fold nf needs channel nf*pe + p at the centre tap.
        b_cap = Signal(pe)
        a0 = tab(lambda g: g.pt // g.dt if g.shortcut else 0)
        b0 = tab(lambda g: g.pf // g.df if g.shortcut else 0)
        for p in range(pe):
            jj = _table([(n * pe + p) // simd for n in range(nf_n)], nf)
            m.d.sync += b_cap[p].eq(issue & (a == a0) & (b == b0) & (j == jj))
        gp = Signal()                     # stream: the register of the next group read
        b_gp, b2_gp, c_gp = Signal(), Signal(), Signal()
        c_nf = Signal(range(nf_n))
        m.d.sync += [b_gp.eq(~gp), b2_gp.eq(b_gp), c_gp.eq(b2_gp), c_nf.eq(b2_nf)]
        m.d.sync += [b_valid.eq(issue), b_first.eq(first_sf), b_last.eq(last_sf), b_fin.eq(fin),
                     b_j.eq(j), b_nf.eq(nf), b_real.eq(real)]

        def init_walk(index):
            pt, pf, f = (tab(lambda g: g.pt, index), tab(lambda g: g.pf, index),
                         tab(lambda g: g.f, index))
            pta = tab(lambda g: g.pt * g.f, index)
            return [lo.eq(-pt), row.eq(-pt), lo_a.eq(-pta), row_a.eq(-pta), fcol.eq(-pf),
                    col.eq(-pf), waddr.eq(_table(self._wbase, index))]

        with m.If(issue):
            m.d.sync += waddr.eq(Mux(fin, _table(self._wbase, li), waddr + 1))
            with m.If(~last_j):
                m.d.sync += j.eq(j + 1)
            with m.Else():
                m.d.sync += j.eq(0)
                with m.If(~last_b):
                    m.d.sync += [b.eq(b + 1), col.eq(col + tab(lambda g: g.df))]
                with m.Else():
                    m.d.sync += [b.eq(0), col.eq(fcol)]
                    with m.If(~last_a):
                        m.d.sync += [a.eq(a + 1), row.eq(row + tab(lambda g: g.dt)),
                                     row_a.eq(row_a + tab(lambda g: g.dt * g.f))]
                    with m.Else():
                        m.d.sync += [a.eq(0), row.eq(lo), row_a.eq(lo_a)]
                        with m.If(nf != nf_n - 1):
                            m.d.sync += nf.eq(nf + 1)
                        with m.Else():
                            m.d.sync += nf.eq(0)
                            sfc = tab(lambda g: g.sf)
                            with m.If(of != tab(lambda g: g.fo - 1)):
                                m.d.sync += [of.eq(of + 1), fcol.eq(fcol + sfc), col.eq(fcol + sfc)]
                            with m.Else():
                                pf = tab(lambda g: g.pf)
                                m.d.sync += [of.eq(0), fcol.eq(-pf), col.eq(-pf)]
                                with m.If(ot != tab(lambda g: g.to - 1)):
                                    st, sta = tab(lambda g: g.st), tab(lambda g: g.st * g.f)
                                    m.d.sync += [ot.eq(ot + 1), lo.eq(lo + st), row.eq(lo + st),
                                                 lo_a.eq(lo_a + sta), row_a.eq(lo_a + sta)]
                                with m.Else():
                                    m.d.sync += [ot.eq(0), draining.eq(1)]

        # Stage B: map chunk (pad bits in the padding) XNOR weights, popcount, accumulate.
        word = mrp.data
        chunk = word.word_select(b_j, simd) if cs > 1 else word
        pad = tab(lambda g: g.pad)
        x = Signal(simd)
        m.d.comb += x.eq(Mux(b_real, chunk, pad.replicate(simd)))
        # Stage B: XOR and popcounts of 16-bit groups, registered; stage B2: their sum, accumulated
        # (one XNOR-popcount of 64 bits and its accumulation in one cycle held the iCE40 to 20 MHz).
        groups = [(g0, min(g0 + 16, simd)) for g0 in range(0, simd, 16)]
        part_w = bits_for(16)
        parts = [[Signal(part_w, name=f"part{p}_{n}") for n in range(len(groups))] for p in range(pe)]
        acc = [Signal(self._aw, name=f"acc{p}") for p in range(pe)]
        for p in range(pe):
            xw = x ^ wmem.rdata[p * simd:(p + 1) * simd]
            for (g0, g1), part in zip(groups, parts[p]):
                m.d.sync += part.eq(popcount(xw[g0:g1]))
            total = sum(parts[p][1:], parts[p][0]) if len(groups) > 1 else parts[p][0]
            with m.If(b2_valid):
                m.d.sync += acc[p].eq(Mux(b2_first, total, acc[p] + total))
        m.d.sync += [b2_valid.eq(b_valid), b2_first.eq(b_first), b2_last.eq(b_last), b2_fin.eq(b_fin),
                     b2_nf.eq(b_nf)]
        scb = Signal(pe)
        for p in range(pe):
            ll = _table([(n * pe + p) % simd for n in range(nf_n)], b_nf)
            with m.If(b_cap[p]):
                m.d.sync += scb[p].eq(x.bit_select(ll, 1) if simd > 1 else x)
        if n_t:
            m.d.comb += trp.addr.eq(_table(self._tbase, li) + b2_nf)
        m.d.sync += [c_valid.eq(b2_valid & b2_last), c_fin.eq(b2_valid & b2_fin)]

        # Stage C: thresholds, collect the position's bits (or a fold's counts) in the output register.
        obuf = Signal(c_n)
        bits = Signal(pe)
        if n_t:
            for p in range(pe):
                fld = trp.data[p * lane_w:(p + 1) * lane_w]
                v = Mux(scb[p], fld[1 + self._vw:1 + 2 * self._vw], fld[1:1 + self._vw])
                m.d.comb += bits[p].eq((acc[p] < v) ^ fld[0])
        with m.If(c_valid & ~is_count):
            m.d.sync += obuf.eq(Cat(obuf, bits)[pe:] if nf_n > 1 else bits)
        cnt = Signal(pe * self._ow)
        set_o = Signal()
        if self._count:
            with m.If(c_valid & is_count):
                m.d.sync += cnt.eq(Cat(*(Cat(acc[p], Const(0, self._ow - self._aw)) for p in range(pe))))
            if not self._stream:
                m.d.comb += set_o.eq(c_valid & is_count)
                m.d.comb += self.o.payload.eq(cnt)
        else:
            m.d.comb += set_o.eq(c_fin & is_last)
            m.d.comb += self.o.payload.eq(obuf)
        if self._stream:
            return self._elaborate_stream(m, locals())
        with m.If(set_o):
            m.d.sync += oval.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += oval.eq(0)
        m.d.comb += self.o.valid.eq(oval)
        with m.If(c_fin & ~is_last):
            m.d.sync += wpend.eq(1)
        with m.Elif(wpend):
            m.d.sync += wpend.eq(0)

        # Map writes: the output register (priority), else the input stream into region 0.
        wpos = Signal(range(n_map))
        in_pos = Signal(range(self.input_positions))
        m.d.comb += self.i.ready.eq(loaded & ~in_full & ~wpend)
        in_fire = self.i.valid & self.i.ready
        dst = _table([((n + 1) % 2) * n_map for n in range(nl)], li)
        m.d.comb += [mwp.addr.eq(Mux(wpend, dst + wpos, in_pos)),
                     mwp.data.eq(Mux(wpend, obuf, self.i.payload)), mwp.en.eq(wpend | in_fire),
                     self.map_we.eq(wpend), self.map_layer.eq(li), self.map_data.eq(obuf)]
        with m.If(wpend):
            m.d.sync += wpos.eq(wpos + 1)
        with m.If(in_fire):
            with m.If(in_pos == self.input_positions - 1):
                m.d.sync += [in_pos.eq(0), in_full.eq(1)]
            with m.Else():
                m.d.sync += in_pos.eq(in_pos + 1)

        # Start an inference; after a layer's last read, drain, then the next layer (or done).
        with m.If(~running & in_full & loaded):
            m.d.sync += running.eq(1)
        with m.If(draining & ~b_valid & ~b2_valid & ~c_valid & ~wpend):
            m.d.sync += [draining.eq(0), wpos.eq(0)]
            with m.If(is_last):
                m.d.sync += [li.eq(0), running.eq(0), in_full.eq(0), *init_walk(Const(0, 1))]
            with m.Else():
                m.d.sync += [li.eq(li + 1), *init_walk(li + 1)]
        return m

    def _elaborate_stream(self, m, v):
        """The integer stream's part of :meth:`elaborate` (``v``: its local signals): the input
        path, the W and R slots, the serial update pipeline, map writes and the layer sequence."""
        geo, nl, c_n, pe = self._geo, len(self._geo), self._c, self._pe
        n_w, n_map, ng = len(self._wwords), self._n, self._groups
        gf = STREAM_LANES // pe
        li, running, draining, loaded = v["li"], v["running"], v["draining"], v["loaded"]
        wmem, mwp, lfire, laddr, waddr = v["wmem"], v["mwp"], v["lfire"], v["laddr"], v["waddr"]
        issue, slot, gp, nf, last_sf = v["issue"], v["slot"], v["gp"], v["nf"], v["last_sf"]
        c_valid, c_nf, c_gp, cnt, in_full = v["c_valid"], v["c_nf"], v["c_gp"], v["cnt"], v["in_full"]
        b_valid, b2_valid, wpend, is_last = v["b_valid"], v["b2_valid"], v["wpend"], v["is_last"]
        init_walk, tab = v["init_walk"], v["tab"]
        lw, aw = STREAM_LANES * 8, self._aw
        n_pos = geo[0].t * geo[0].f
        mw, adw, sh = self._smw, self._saw, self._sshift

        # The constant ROM: slot 0 the input, slot l + 1 layer l (see _stream_constants).
        m.submodules.srom = srom = memory.Memory(shape=unsigned(mw + adw + 9), depth=len(self._sconst),
                                                 init=self._sconst, attrs={"ram_style": "block"})
        srp = srom.read_port()

        rreg = [Signal(lw, name=f"rreg{k}") for k in range(2)]
        wp = Signal(2)                   # the register holds a group not yet written back
        gdone = Signal(2)                # ... whose updates are all done
        raddr = [Signal(range(n_w + self._rwords + 1), name=f"raddr{k}") for k in range(2)]
        rword = Signal(range(n_w + self._rwords + 1), init=n_w)
        rcap, rcap_par = Signal(), Signal()

        # The W and R slots before each group of GF folds (8 channels) of an output position.
        m.d.sync += rcap.eq(0)
        with m.If(issue & last_sf & ((nf % gf) == gf - 1)):
            m.d.sync += slot.eq(0)
        wstate = (running & ~draining & (slot == 0)) | draining
        wcan = wstate & wp.bit_select(gp, 1) & gdone.bit_select(gp, 1)
        wdo = wcan & (~is_last | self.o.ready)
        iwr = Signal()                   # an input word complete in rreg0: write it to the map
        wreg = Mux(gp & ~iwr, rreg[1], rreg[0])
        m.d.comb += [self.o.valid.eq(wcan & is_last), self.o.payload.eq(wreg)]
        rslot = running & ~draining & (slot == 1)
        with m.If(wdo):
            m.d.sync += wp.bit_select(gp, 1).eq(0)
        with m.If(running & ~draining & (slot == 0) & (~wp.bit_select(gp, 1) | wdo)):
            m.d.sync += slot.eq(1)
        with m.If(rslot):
            m.d.sync += [slot.eq(2), rword.eq(rword + 1), rcap.eq(1), rcap_par.eq(gp), gp.eq(~gp),
                         wp.bit_select(gp, 1).eq(1), gdone.bit_select(gp, 1).eq(0)]
            with m.If(gp):
                m.d.sync += raddr[1].eq(rword)
            with m.Else():
                m.d.sync += raddr[0].eq(rword)
        with m.If(draining):
            with m.If(wp.bit_select(gp, 1)):
                with m.If(wdo):
                    m.d.sync += gp.eq(~gp)
            with m.Elif(wp.bit_select(~gp, 1)):
                m.d.sync += gp.eq(~gp)

        # Input: one value a cycle (while idle) into the update pipeline (slot 0: r = the value,
        # its bit for the first layer), and from its last stage into lane j of word register 0; a
        # word's last lane done, the word goes to the stream map (the port is free while idle).
        ich = Signal(range(c_n))                 # the channel of the next input value
        in_word = Signal(range(self._rwords + 1))    # input words taken whole
        in_done = Signal()
        m.d.comb += self.i.ready.eq(loaded & ~in_full & ~in_done)
        in_fire = self.i.valid & self.i.ready
        with m.If(in_fire):
            m.d.sync += ich.eq(Mux(ich == c_n - 1, 0, ich + 1))
            with m.If(ich[:3] == STREAM_LANES - 1):
                m.d.sync += in_word.eq(in_word + 1)
                with m.If(in_word == self._rwords - 1):
                    m.d.sync += in_done.eq(1)

        # The weight memory's one port: loader, input, W slot, R slot, weight reads, and with
        # shared_words the board's access (above the stream map) in every other idle cycle.
        if self._shared:
            grant = loaded & ~running & ~iwr
            m.d.comb += self.sm_grant.eq(grant)
            m.d.comb += wmem.wdata.eq(Mux(~loaded, self.wl.payload,
                                          Mux(grant, self.sm_wdata, wreg)))
        else:
            m.d.comb += wmem.wdata.eq(Mux(loaded, wreg, self.wl.payload))
        with m.If(~loaded):
            m.d.comb += [wmem.addr.eq(laddr), wmem.we.eq(lfire & (laddr < n_w))]
        with m.Elif(iwr):
            # The word taken last (in_word has counted it): n_w + in_word - 1.
            m.d.comb += [wmem.addr.eq(n_w - 1 + in_word), wmem.we.eq(1)]
        with m.Elif(wdo & ~is_last):
            m.d.comb += [wmem.addr.eq(Mux(gp, raddr[1], raddr[0])), wmem.we.eq(1)]
        with m.Elif(rslot):
            m.d.comb += wmem.addr.eq(rword)
        with m.Elif(running if self._shared else Const(1, 1)):
            m.d.comb += wmem.addr.eq(waddr)
        if self._shared:
            with m.Else():
                m.d.comb += [wmem.addr.eq(self.sm_addr), wmem.we.eq(self.sm_we)]
        with m.If(rcap):
            with m.If(rcap_par):
                m.d.sync += rreg[1].eq(wmem.rdata)
            with m.Else():
                m.d.sync += rreg[0].eq(wmem.rdata)

        # Counts of a fold, one lane per cycle into the update pipeline (slot li + 1).
        cbusy, cq = Signal(), Signal(range(pe))
        cap_nf, cap_gp = Signal(range(self._nf)), Signal()
        with m.If(c_valid):
            m.d.sync += [cbusy.eq(1), cq.eq(0), cap_nf.eq(c_nf), cap_gp.eq(c_gp)]
        with m.Elif(cbusy):
            m.d.sync += cq.eq(cq + 1)
            with m.If(cq == pe - 1):
                m.d.sync += [cbusy.eq(0), cq.eq(0)]

        # Stage T0: the item (channel, count, old stream value) and its constants' address.
        cw = self._ow
        t0_in = in_fire
        ch_c = cap_nf * pe + cq if pe > 1 else cap_nf
        ch = Signal(range(c_n))
        m.d.comb += ch.eq(Mux(t0_in, ich, ch_c))
        lane = Signal(range(STREAM_LANES))
        m.d.comb += lane.eq(ch[:3] if c_n > 1 else 0)
        d0 = Signal(cw)
        m.d.comb += d0.eq(Mux(t0_in, 0, cnt.word_select(cq, cw) if pe > 1 else cnt[:cw]))
        r0 = Signal(signed(8))
        rshort = tab(lambda g: int(g.rshort))
        m.d.comb += r0.eq(Mux(t0_in, self.i.payload,
                              Mux(rshort, Cat(rreg[0], rreg[1]).word_select(Cat(lane, cap_gp), 8), 0)))
        t0_v = t0_in | cbusy
        m.d.comb += srp.addr.eq(Mux(t0_in, 0, (li + 1) * c_n) + ch)
        # Pipeline registers: valid, input item, lane, group register, last of group / position.
        def stage(name):
            return dict(v=Signal(name=f"{name}_v"), i=Signal(name=f"{name}_in"),
                        j=Signal(range(STREAM_LANES), name=f"{name}_j"), g=Signal(name=f"{name}_g"),
                        lg=Signal(name=f"{name}_lg"), lp=Signal(name=f"{name}_lp"),
                        r=Signal(signed(8), name=f"{name}_r"))
        st = [stage(f"t{k}") for k in range(1, 5)]
        first = dict(v=t0_v, i=t0_in, j=lane, g=Mux(t0_in, 0, cap_gp), lg=(lane == STREAM_LANES - 1),
                     lp=(ch == c_n - 1), r=r0)
        for a, b in zip([first] + st[:-1], st):
            m.d.sync += [b[k].eq(a[k]) for k in b]
        s1_d = Signal(cw)
        m.d.sync += s1_d.eq(d0)
        # T1: the product; T2: the offset; T3: the shift, saturated to +-255; T4: add, clamp, bit.
        mul = srp.data[:mw].as_signed()
        s2_p = Signal(signed(cw + 1 + mw))
        s2_a = Signal(signed(adw))
        s2_t, s3_t, s4_t = (Signal(signed(9), name=f"t{k}_thr") for k in (2, 3, 4))
        m.d.sync += [s2_p.eq(s1_d.as_unsigned() * mul), s2_a.eq(srp.data[mw:mw + adw].as_signed()),
                     s2_t.eq(srp.data[mw + adw:].as_signed()), s3_t.eq(s2_t), s4_t.eq(s3_t)]
        s3_s = Signal(signed(max(cw + 1 + mw, adw) + 1))
        m.d.sync += s3_s.eq(s2_p + s2_a)
        shifted = Signal(signed(len(s3_s) - min(sh, len(s3_s) - 2)))
        m.d.comb += shifted.eq(s3_s >> sh)
        s4_dl = Signal(signed(10))
        m.d.sync += s4_dl.eq(Mux(shifted > 255, 255, Mux(shifted < -255, -255, shifted)))
        t4 = st[3]
        lo_ = Mux(t4["i"], -128, tab(lambda g: g.lo))
        hi_ = Mux(t4["i"], 127, tab(lambda g: g.hi))
        rsum = Signal(signed(11))
        rn = Signal(signed(9))
        m.d.comb += [rsum.eq(t4["r"] + s4_dl), rn.eq(Mux(rsum < lo_, lo_, Mux(rsum > hi_, hi_, rsum)))]
        bit = Signal()
        m.d.comb += bit.eq(rn >= s4_t)
        obuf = v["obuf"]
        wpos = Signal(range(n_map))
        ipos = Signal(range(n_pos))
        wdst = Signal(range(2 * n_map))
        dst = _table([((n + 1) % 2) * n_map for n in range(nl)], li)
        m.d.sync += iwr.eq(t4["v"] & t4["i"] & t4["lg"])
        with m.If(t4["v"]):
            m.d.sync += obuf.eq(Cat(obuf[1:], bit) if c_n > 1 else bit)
            for k in range(2):
                with m.If(t4["g"] == k):
                    m.d.sync += rreg[k].word_select(t4["j"], 8).eq(rn[:8])
            with m.If(~t4["i"] & t4["lg"]):
                m.d.sync += gdone.bit_select(t4["g"], 1).eq(1)
            with m.If(t4["lp"]):
                with m.If(t4["i"]):
                    m.d.sync += [wpend.eq(1), wdst.eq(ipos), ipos.eq(Mux(ipos == n_pos - 1, 0, ipos + 1))]
                    with m.If(ipos == n_pos - 1):
                        m.d.sync += in_full.eq(1)
                with m.Elif(~is_last):
                    m.d.sync += [wpend.eq(1), wdst.eq(dst + wpos), wpos.eq(wpos + 1)]
        with m.If(wpend & ~(t4["v"] & t4["lp"])):
            m.d.sync += wpend.eq(0)
        m.d.comb += [mwp.addr.eq(wdst), mwp.data.eq(obuf), mwp.en.eq(wpend),
                     self.map_we.eq(wpend), self.map_layer.eq(li), self.map_data.eq(obuf)]

        # Start an inference; after a layer's last issue: its updates and writes, then the next.
        busy = (b_valid | b2_valid | c_valid | cbusy | wpend | wp.any()
                | st[0]["v"] | st[1]["v"] | st[2]["v"] | st[3]["v"])
        with m.If(~running & in_full & loaded & ~wpend):
            m.d.sync += [running.eq(1), slot.eq(0), rword.eq(n_w)]
        with m.If(draining & ~busy):
            m.d.sync += [draining.eq(0), wpos.eq(0), slot.eq(0), rword.eq(n_w)]
            with m.If(is_last):
                m.d.sync += [li.eq(0), running.eq(0), in_full.eq(0), in_done.eq(0), in_word.eq(0),
                             *init_walk(Const(0, 1))]
            with m.Else():
                m.d.sync += [li.eq(li + 1), *init_walk(li + 1)]
        return m
