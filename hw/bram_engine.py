"""The layer engine with its memories in block RAM (ECP5): the integer residual stream's binary
layers at a whole window per cycle. The ECP5 counterpart of :class:`kwsbnn.hw.engine.LayerEngine`,
which keeps its weights and stream map in the iCE40 UP5K's SPRAM (64 bits per cycle, loaded at run
time); here the weights are a block-RAM ROM in the bitstream, read ``pe x simd`` bits per cycle.

It computes, for each of its layers in turn, exactly what :class:`~kwsbnn.hw.engine.LayerEngine`
computes on the integer stream (docs/integer-network.md; every layer has ``in_threshold``, ``out:
int8`` and ``shortcut: int8`` or ``none``): it reads the bits ``r >= in_threshold`` of the int8
stream ``r``, convolves them with the layer's binary weights (padding with the layer's
``pad_bit``, stride 1, dilation, window order ``k = (a * kf + b) * C + i``) and adds
``clamp((acc * mul + add) >> shift, -255, 255)`` to ``r`` (0 instead of ``r`` without shortcut),
clamped to the layer's ``[lo, hi]``. The last layer's clamped ``r`` (the ReLU with ``last=int8``)
goes out, one position at a time (for :class:`~kwsbnn.hw.scores.GapDenseArgmax`), or with
``pool=True`` summed per channel over the positions (for :class:`~kwsbnn.hw.dense.DenseArgmax`).

Streams:
- ``i : In(stream.Signature(64))``: stream words, 8 int8 values (element ``j`` at bits ``8j``:
  channel ``8 g + j``), ``C / 8`` per position, positions t-major: ``T F C / 8`` per inference;
- ``o : Out(stream.Signature(8 C))``: the last layer's values, one transfer per position
  (t-major), channel ``c`` at bits ``8c``; with ``pool``, ``o : Out(stream.Signature(pe *
  sum_width))``: ``NF = C / pe`` transfers per inference, lane ``p`` of transfer ``nf`` the sum over
  the positions of channel ``nf pe + p`` (signed, :attr:`sum_width` bits).

Memories (all block RAM on ECP5, Yosys ``DP16KD``):
- **Weight ROM**, in the bitstream: word ``wbase_l + nf * SF_l + sf``, lane ``p`` bits ``p * simd +
  j`` = ``w_l[nf * pe + p, sf * simd + j]`` (the same layout as the SPRAM engine's weight words,
  :attr:`pe` x :attr:`simd` bits wide); ``pe * simd`` up to ``pe * 9C``: 4,608 bits = 128 DP16KD
  of 36 bits at 64 channels, PE 8, SIMD 576.
- **Stream maps**: two (one per input buffer), ``T F C / 8`` words of 64 bits, written by byte
  (a fold updates its ``pe`` lanes in place).
- **Bit maps**: ``C``-bit words per position: two input maps (one per input buffer, the bits
  ``r >= t`` of the first layer) and two layer regions (layer ``l`` reads region ``l mod 2`` of
  them, from the second layer on, and writes ``(l + 1) mod 2``), each :attr:`map_copies` times
  (one read port per copy: a window's taps are read ``map_copies`` at a time).
- **Constant ROM**: per layer and fold, ``pe`` lanes of ``M = -2 mul << (S - shift)``, ``A = (K
  mul + add) << (S - shift)`` (one shift ``S`` for all layers) and the next layer's
  ``in_threshold``.

Datapath: a window register holds the ``K = kt kf C`` bits of one output position; the next
position's window is read into a second register meanwhile (``map_copies`` taps per cycle, pad
bits outside the map). Per position, for each fold ``nf < NF = C / pe`` and chunk ``sf < SF = K /
simd``, one cycle: the chunk and one weight word -> (register) -> XOR and popcounts of 16-bit
groups -> an adder tree, four inputs per stage -> the mismatch count ``d`` (accumulated over the
chunks) -> ``pe`` update lanes in parallel (constants and ``r`` read and registered; ``d M``; ``+ A``; ``>> S``
saturated to +-255; ``r + delta`` clamped, the next layer's bit) -> ``r`` back into the stream
map (byte lanes), the bits into the next bit map (once per position), or for the last layer the
values into a small output FIFO (with ``pool``: added to the channels' sums, a memory of ``NF``
words of ``pe`` sums). Nothing after the issue stage stalls: the last layer issues a position
only when the FIFO has room for it and every position still in flight (with ``pool``: once the
previous inference's sums are sent).

Input and computation overlap: the input fills one buffer (stream map and input bits, one word per
cycle: ``r >= in_threshold`` of the first layer computed as it arrives) while the layers run on
the other.

Cycles (exact; ``tests/test_bram_engine.py``): per layer ``l`` with ``P_l = max(NF SF_l,
ceil(kt kf / map_copies))`` cycles per position, :meth:`layer_cycles` = ``T F P_l + fill_l +
drain``: the first window's taps (``fill_l = ceil(kt kf / map_copies)``) and the pipeline
(:attr:`drain`: ``12 + tree stages``, from the last issue to the last write); an inference's
computation :attr:`compute_cycles` = ``sum_l layer_cycles + 1`` (``+ 0`` with ``pool``); its input
:attr:`input_cycles`
= ``T F C / 8`` (plus 3 to the last bits' write). Back to back the period is ``max(compute_cycles, input_cycles)``
(:attr:`cycles_per_inference`): the input of the next inference arrives during the computation.
Latency of an inference: its input, then ``compute_cycles`` (plus the FIFO's 2 cycles).

Resources (ECP5, 64 channels, 25 x 13 positions, three layers): see docs/engine-style.md.

Members: ``i``, ``o`` as above.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import bits_for, popcount, signed_width
from .engine import STREAM_LANES, WORD_BITS, _table, engine_layers, stream_update_constants

#: Bits of one popcount group (registered), and the adder tree's inputs per pipeline stage.
POP_GROUP = 16
TREE_FANIN = 4


def tree_stages(simd: int) -> int:
    """Registered adder-tree stages after the popcounts of ``simd`` bits (16-bit groups, four
    inputs per stage)."""
    n, s = -(-simd // POP_GROUP), 0
    while n > 1:
        n, s = -(-n // TREE_FANIN), s + 1
    return s


class BramEngine(wiring.Component):
    def __init__(self, layers, *, channels: int, frames: int, coeffs: int, pe: int = 1,
                 simd: int | None = None, pool: bool = False, name: str = "engine"):
        self._MustUse__silence = True        # a refused configuration is not an unused unit
        self._name = name
        self._c = c = int(channels)
        self._geo = engine_layers(layers, c, frames, coeffs)
        if not all(g.stream for g in self._geo):
            raise ValueError(f"{name}: the block-RAM engine runs the integer residual stream only "
                             "(every layer with in_threshold, out: int8)")
        if c % STREAM_LANES:
            raise ValueError(f"{name}: the integer stream needs a multiple of {STREAM_LANES} channels "
                             f"(one stream word holds {STREAM_LANES}), got {c}")
        self._pe = pe = int(pe)
        if pe < 1 or c % pe or STREAM_LANES % pe:
            raise ValueError(f"{name}: pe={pe} must divide {STREAM_LANES} and the {c} channels")
        ks = [g.kt * g.kf * c for g in self._geo]
        self._simd = simd = int(simd or c)
        if simd < 1 or any(k % simd for k in ks):
            raise ValueError(f"{name}: simd={simd} must divide every layer's window of "
                             f"{', '.join(str(k) for k in sorted(set(ks)))} bits")
        self._kmax = max(ks)
        self._nf = c // pe
        self._sfs = [k // simd for k in ks]
        self._taps = [g.kt * g.kf for g in self._geo]
        per_pos = min(self._nf * s for s in self._sfs)
        self._r = max(1, max(-(-t // per_pos) for t in self._taps))
        self._nrd = [-(-t // self._r) for t in self._taps]
        self._n = self._geo[0].t * self._geo[0].f
        self._groups = c // STREAM_LANES
        self._aw = bits_for(self._kmax)
        # Weight words (the SPRAM engine's layout, pe x simd bits per word).
        self._wwords, self._wbase = [], []
        for g, sfn in zip(self._geo, self._sfs):
            self._wbase.append(len(self._wwords))
            # [NF, pe, SF, simd] -> word (nf, sf), bit p * simd + j.
            w = np.asarray(g.weights, dtype=np.uint8).reshape(self._nf, pe, sfn, simd)
            bits = w.transpose(0, 2, 1, 3).reshape(self._nf * sfn, pe * simd)
            packed = np.packbits(bits, axis=1, bitorder="little")
            self._wwords += [int.from_bytes(row.tobytes(), "little") for row in packed]
        self._constants()
        # Room for every position in flight from its first issue to its last value's read out.
        self._fifo_depth = -(-(self.latency + 2) // self.position_cycles_min) + 2
        self._pool = bool(pool)
        last = self._geo[-1]
        self._glo, self._ghi = last.lo * self._n, last.hi * self._n
        self._gw = signed_width(min(0, self._glo), max(0, self._ghi))
        out_width = pe * self._gw if self._pool else c * 8
        super().__init__({"i": In(stream.Signature(WORD_BITS)),
                          "o": Out(stream.Signature(out_width))})
        self._MustUse__silence = False

    def _constants(self):
        """The constant ROM (see the module docstring): per layer ``l`` and fold ``nf``, lane ``p``
        (channel ``nf pe + p``) holds ``M``, ``A`` and the next layer's threshold."""
        geo, c, pe = self._geo, self._c, self._pe
        self._sshift, m_all, a_all, t_all = stream_update_constants(geo, c)
        self._smw = signed_width(min(0, int(m_all.min())), max(0, int(m_all.max())))
        self._saw = signed_width(min(0, int(a_all.min())), max(0, int(a_all.max())))
        lw = self._smw + self._saw + 9
        self._clane = lw
        words = []
        for n in range(len(geo)):
            for nfi in range(self._nf):
                word = 0
                for p in range(pe):
                    ch = n * c + nfi * pe + p
                    v = ((int(m_all[ch]) & ((1 << self._smw) - 1))
                         | ((int(a_all[ch]) & ((1 << self._saw) - 1)) << self._smw)
                         | ((int(t_all[ch]) & 0x1FF) << (self._smw + self._saw)))
                    word |= v << (p * lw)
                words.append(word)
        self._cwords = words
        self._tin0 = [int(v) for v in np.clip(geo[0].tin, -128, 128)]

    # Figures.
    @property
    def stream(self) -> bool:
        return True

    @property
    def layers(self):
        return list(self._geo)

    @property
    def pe(self) -> int:
        return self._pe

    @property
    def simd(self) -> int:
        return self._simd

    @property
    def lanes(self) -> int:
        """XNOR-popcount lanes: ``pe x simd``."""
        return self._pe * self._simd

    @property
    def map_copies(self) -> int:
        """Copies of each bit map (read ports): enough that a window's taps are read within a
        position's ``NF SF`` cycles."""
        return self._r

    @property
    def tree_stages(self) -> int:
        return tree_stages(self._simd)

    @property
    def latency(self) -> int:
        """Cycles from a fold's last issue to its values at the end of the update pipeline."""
        return 11 + self.tree_stages

    @property
    def drain(self) -> int:
        """Cycles from a layer's last issue to the first read of the next layer."""
        return self.latency + 1

    @property
    def position_cycles_min(self) -> int:
        return min(self.position_cycles(n) for n in range(len(self._geo)))

    def position_cycles(self, n: int) -> int:
        """Cycles per output position of layer ``n``: ``max(NF SF, ceil(taps / map_copies))``."""
        return max(self._nf * self._sfs[n], self._nrd[n])

    def layer_cycles(self, g) -> int:
        """Cycles of layer ``g`` (an :class:`~kwsbnn.hw.engine.EngineLayer` of :attr:`layers`):
        ``T F P + fill + drain`` (see the module docstring)."""
        n = self._geo.index(g)
        return g.positions * self.position_cycles(n) + self._nrd[n] + self.drain

    @property
    def layer_overhead(self) -> int:
        """Cycles of a layer beyond its positions' (the first window and the drain), the most of
        any layer."""
        return max(self._nrd) + self.drain

    @property
    def compute_cycles(self) -> int:
        """Cycles of one inference's computation, from its start to the start of the next (one more
        without ``pool``: the FIFO's write)."""
        return sum(self.layer_cycles(g) for g in self._geo) + (0 if self._pool else 1)

    @property
    def input_positions(self) -> int:
        return self._n

    @property
    def input_cycles(self) -> int:
        """Cycles the input takes at one stream word per cycle: ``T F C / 8`` (its last bits are
        written 3 cycles after its last word)."""
        return self._n * self._groups

    @property
    def cycles_per_inference(self) -> int:
        """Back to back with the input as fast as the engine takes it: ``max(compute_cycles,
        input_cycles)`` (the next input arrives during the computation)."""
        return max(self.compute_cycles, self.input_cycles)

    @property
    def weight_words(self) -> int:
        return len(self._wwords)

    @property
    def weight_bits(self) -> int:
        """Bits of the weight ROM: ``weight_words x pe x simd``."""
        return len(self._wwords) * self.lanes

    @property
    def stream_words(self) -> int:
        """Words of one stream map: ``T F C / 8`` (two maps: one per input buffer)."""
        return self._n * self._groups

    @property
    def stream_map_bits(self) -> int:
        """Both stream maps: ``2 T F C 8`` bits."""
        return 2 * self.stream_words * WORD_BITS

    @property
    def map_bits(self) -> int:
        """The bit maps: four regions of ``T F C`` bits, :attr:`map_copies` times."""
        return 4 * self._n * self._c * self._r

    @property
    def stream_constant_bits(self) -> int:
        return len(self._cwords) * self._pe * self._clane

    @property
    def fifo_depth(self) -> int:
        return self._fifo_depth

    @property
    def pool(self) -> bool:
        """Whether the engine sums the last layer over the positions (``o``: the sums)."""
        return self._pool

    @property
    def sum_range(self) -> tuple[int, int]:
        """The range of a channel's sum with ``pool``: ``(lo T F, hi T F)`` of the last layer."""
        return self._glo, self._ghi

    @property
    def sum_width(self) -> int:
        return self._gw

    @property
    def load_words(self) -> int:
        """Words to load after power-up: none (the weights are in the bitstream)."""
        return 0

    def image(self) -> list[int]:
        return []

    def memories(self) -> list[tuple[str, int, int, bool]]:
        """``(name, width, depth, rom)`` of every memory it elaborates (for the resource
        estimate): the weight ROM, the constant ROM, the two stream maps and the bit maps."""
        c, n, r = self._c, self._n, self._r
        out = [("wrom", self.lanes, max(2, len(self._wwords)), True),
               ("crom", self._pe * self._clane, max(2, len(self._cwords)), True)]
        out += [(f"smap{k}", WORD_BITS, max(2, self.stream_words), False) for k in range(2)]
        out += [(f"amap{k}_{j}", c, max(2, n), False) for k in range(2) for j in range(r)]
        out += [(f"lmap_{j}", c, 2 * n, False) for j in range(r)]
        if self._pool:
            out.append(("sums", self._pe * self._gw, max(2, self._nf), False))
        return out

    def elaborate(self, platform):
        m = Module()
        geo, nl, c, pe, simd = self._geo, len(self._geo), self._c, self._pe, self._simd
        nf_n, n_map, ng, rc = self._nf, self._n, self._groups, self._r
        gf = STREAM_LANES // pe
        t_n, f_n = geo[0].t, geo[0].f
        aw, smw, saw, lw, sh = self._aw, self._smw, self._saw, self._clane, self._sshift
        n_sw = max(2, self.stream_words)

        # Memories.
        m.submodules.wrom = wrom = memory.Memory(shape=unsigned(self.lanes), depth=max(2, len(self._wwords)),
                                                 init=self._wwords, attrs={"ram_style": "block"})
        wrp = wrom.read_port()
        m.submodules.crom = crom = memory.Memory(shape=unsigned(pe * lw), depth=max(2, len(self._cwords)),
                                                 init=self._cwords)
        crp = crom.read_port()
        swp, srp = [], []
        for k in range(2):
            sm = memory.Memory(shape=unsigned(WORD_BITS), depth=n_sw, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"smap{k}"] = sm
            swp.append(sm.write_port(granularity=8))
            srp.append(sm.read_port(transparent_for=()))
        awp, arp, lwp, lrp = [[], []], [[], []], [], []
        for k in range(2):
            for j in range(rc):
                am = memory.Memory(shape=unsigned(c), depth=max(2, n_map), init=[], attrs={"no_rw_check": 1})
                m.submodules[f"amap{k}_{j}"] = am
                awp[k].append(am.write_port())
                arp[k].append(am.read_port(transparent_for=()))
        for j in range(rc):
            lm = memory.Memory(shape=unsigned(c), depth=2 * n_map, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"lmap_{j}"] = lm
            lwp.append(lm.write_port())
            lrp.append(lm.read_port(transparent_for=()))

        # Buffers: the input fills ``ibuf`` while the layers run on ``cbuf``.
        full = Signal(2)
        ibuf, cbuf = Signal(), Signal()
        running = Signal()
        li = Signal(range(max(2, nl)))
        is_last = li == nl - 1
        odd = li[0]                              # layer l >= 1 reads lmap region l mod 2

        def tab(fn, index=li):
            return _table([fn(n, g) for n, g in enumerate(geo)], index)

        # ---- Input: stream words into the stream map, the first layer's bits into the input map.
        ig = Signal(range(max(2, ng)))
        ipos = Signal(range(n_map))
        iword = Signal(range(n_sw))
        m.d.comb += self.i.ready.eq(~full.bit_select(ibuf, 1))
        in_fire = self.i.valid & self.i.ready
        for k in range(2):
            with m.If(in_fire & (ibuf == k)):
                m.d.comb += [swp[k].addr.eq(iword), swp[k].data.eq(self.i.payload), swp[k].en.eq(0xFF)]
        i1_v, i1_last_g, i1_buf, i1_end = Signal(), Signal(), Signal(), Signal()
        i1_g = Signal(range(max(2, ng)))
        i1_pos = Signal(range(n_map))
        i1_word = Signal(WORD_BITS)
        m.d.sync += [i1_v.eq(in_fire), i1_g.eq(ig), i1_pos.eq(ipos), i1_word.eq(self.i.payload),
                     i1_buf.eq(ibuf), i1_last_g.eq(ig == ng - 1),
                     i1_end.eq((ig == ng - 1) & (ipos == n_map - 1))]
        with m.If(in_fire):
            m.d.sync += iword.eq(Mux(iword == self.stream_words - 1, 0, iword + 1))
            with m.If(ig == ng - 1):
                m.d.sync += [ig.eq(0), ipos.eq(Mux(ipos == n_map - 1, 0, ipos + 1))]
                with m.If(ipos == n_map - 1):
                    m.d.sync += ibuf.eq(~ibuf)
            with m.Else():
                m.d.sync += ig.eq(ig + 1)
        new_bits = []
        for j in range(STREAM_LANES):
            t = (Array(Const(self._tin0[g * STREAM_LANES + j], signed(9)) for g in range(ng))[i1_g]
                 if ng > 1 else Const(self._tin0[j], signed(9)))
            new_bits.append(i1_word[8 * j:8 * j + 8].as_signed() >= t)
        ibits = Signal(c)
        i2_v, i2_buf, i2_end = Signal(), Signal(), Signal()
        i2_pos = Signal(range(n_map))
        with m.If(i1_v):
            m.d.sync += ibits.eq(Cat(ibits[STREAM_LANES:], *new_bits) if ng > 1 else Cat(*new_bits))
        m.d.sync += [i2_v.eq(i1_v & i1_last_g), i2_pos.eq(i1_pos), i2_buf.eq(i1_buf),
                     i2_end.eq(i1_v & i1_end)]
        for k in range(2):
            for wp in awp[k]:
                m.d.comb += [wp.addr.eq(i2_pos), wp.data.eq(ibits), wp.en.eq(i2_v & (i2_buf == k))]
        set_full = Signal(2)
        with m.If(i2_end):
            m.d.comb += set_full.bit_select(i2_buf, 1).eq(1)

        # ---- Fetch: the taps of the next position's window into ``wnext``, map_copies per cycle.
        kmax, nrd_max = self._kmax, max(self._nrd)
        wcur, wnext = Signal(kmax), Signal(kmax)
        fpos = Signal(range(n_map + 1))          # the position fetched next: fot * F + fof
        fot, fof = Signal(range(max(2, t_n))), Signal(range(max(2, f_n)))
        f_active = Signal()
        fk = Signal(range(max(2, nrd_max)))
        fetch_more = Signal()                    # the layer has positions not yet fetched
        nx_alloc, nx_full = Signal(), Signal()
        transfer = Signal()
        start = ~f_active & fetch_more & (~nx_alloc | transfer)
        go = f_active | start
        kk = fk                                  # 0 while idle: the read address needs no ``start``
        nrd = tab(lambda n, g: self._nrd[n])
        sel_li = li if nl > 1 else Const(0, 1)

        def tap_table(j, fn, width):
            """Per layer and read group: ``fn(a, b, layer)`` of copy ``j``'s tap (0 for none)."""
            rows = []
            for n, g in enumerate(geo):
                vals = []
                for k in range(max(2, nrd_max)):
                    t = k * rc + j
                    vals.append(fn(t // g.kf, t % g.kf, g) if t < self._taps[n] else 0)
                rows.append(Array(Const(v, signed(width)) for v in vals))
            return Array(rows)[sel_li][kk]

        dr_w = signed_width(min(-g.pt for g in geo) - 1, max(g.kt * g.dt for g in geo) + 1)
        dc_w = signed_width(min(-g.pf for g in geo) - 1, max(g.kf * g.df for g in geo) + 1)
        off_lo = min((-g.pt) * g.f - g.pf for g in geo) - 1
        off_hi = max((g.kt * g.dt) * g.f + g.kf * g.df for g in geo) + 1
        off_w = signed_width(off_lo, off_hi)
        cap_v, cap_last = Signal(), Signal()
        cap_k = Signal(range(max(2, nrd_max)))
        cap_in = Signal(rc)
        rbase = Mux(odd, n_map, 0) if nl > 1 else 0
        for j in range(rc):
            drow = tap_table(j, lambda a, b, g: a * g.dt - g.pt, dr_w)
            dcol = tap_table(j, lambda a, b, g: b * g.df - g.pf, dc_w)
            off = tap_table(j, lambda a, b, g: (a * g.dt - g.pt) * g.f + b * g.df - g.pf, off_w)
            row = Signal(signed(max(dr_w, bits_for(t_n)) + 2), name=f"frow{j}")
            col = Signal(signed(max(dc_w, bits_for(f_n)) + 2), name=f"fcol{j}")
            addr = Signal(range(n_map), name=f"faddr{j}")
            m.d.comb += [row.eq(fot + drow), col.eq(fof + dcol), addr.eq(fpos + off)]
            for k in range(2):
                m.d.comb += arp[k][j].addr.eq(addr)
            m.d.comb += lrp[j].addr.eq(rbase + addr)
            m.d.sync += cap_in[j].eq((row >= 0) & (row < t_n) & (col >= 0) & (col < f_n))
        m.d.sync += [cap_v.eq(go), cap_k.eq(kk), cap_last.eq(go & (kk == nrd - 1))]
        pad = tab(lambda n, g: g.pad)
        src0 = Signal()                          # the capture reads the input map
        m.d.sync += src0.eq(li == 0)
        wnext_nx = Signal(kmax)
        m.d.comb += wnext_nx.eq(wnext)
        for n_t in range(max(self._taps)):
            k, j = divmod(n_t, rc)
            data = Mux(src0, Mux(cbuf, arp[1][j].data, arp[0][j].data), lrp[j].data)
            with m.If(cap_v & (cap_k == k)):
                m.d.comb += wnext_nx[n_t * c:(n_t + 1) * c].eq(Mux(cap_in[j], data, pad.replicate(c)))
        m.d.sync += wnext.eq(wnext_nx)
        with m.If(go):
            with m.If(kk == nrd - 1):
                m.d.sync += [f_active.eq(0), fk.eq(0), fpos.eq(fpos + 1)]
                with m.If(fof == f_n - 1):
                    m.d.sync += [fof.eq(0), fot.eq(fot + 1)]
                with m.Else():
                    m.d.sync += fof.eq(fof + 1)
                with m.If(fpos == n_map - 1):
                    m.d.sync += fetch_more.eq(0)
            with m.Else():
                m.d.sync += [f_active.eq(1), fk.eq(kk + 1)]
        nx_ready = nx_full | (cap_v & cap_last)
        with m.If(start):
            m.d.sync += nx_alloc.eq(1)
        with m.Elif(transfer):
            m.d.sync += nx_alloc.eq(0)
        with m.If(transfer):
            m.d.sync += nx_full.eq(0)
        with m.Elif(cap_v & cap_last):
            m.d.sync += nx_full.eq(1)

        # ---- Issue: per position, NF folds of SF chunks, one per cycle.
        maxsf = max(self._sfs)
        cur_v = Signal()
        nf, sf = Signal(range(max(2, nf_n))), Signal(range(max(2, maxsf)))
        cpos = Signal(range(n_map))               # the position of the current window
        cword = Signal(range(n_sw))               # its first stream word: cpos * C / 8
        tpos = Signal(range(n_map + 1))           # positions transferred in this layer
        tword = Signal(range(n_sw + ng))
        sfn = tab(lambda n, g: self._sfs[n])
        last_sf = sf == sfn - 1
        last_nf = nf == nf_n - 1
        issue_last = cur_v & last_sf & last_nf
        waddr = Signal(range(max(2, len(self._wwords))))
        credit = Signal()                         # the last layer may issue a position (below)
        m.d.comb += transfer.eq(running & nx_ready & (~cur_v | issue_last) & credit)
        with m.If(transfer):
            m.d.sync += [wcur.eq(wnext_nx), cur_v.eq(1), cpos.eq(tpos), tpos.eq(tpos + 1),
                         cword.eq(tword), tword.eq(tword + ng)]
        with m.Elif(issue_last):
            m.d.sync += cur_v.eq(0)
        m.d.comb += wrp.addr.eq(waddr)
        with m.If(cur_v):
            with m.If(last_sf):
                m.d.sync += sf.eq(0)
                with m.If(last_nf):
                    m.d.sync += [nf.eq(0), waddr.eq(_table(self._wbase, li))]
                with m.Else():
                    m.d.sync += [nf.eq(nf + 1), waddr.eq(waddr + 1)]
            with m.Else():
                m.d.sync += [sf.eq(sf + 1), waddr.eq(waddr + 1)]

        valids = []

        def meta(prefix):
            st = dict(v=Signal(name=f"{prefix}_v"), first=Signal(name=f"{prefix}_first"),
                      last=Signal(name=f"{prefix}_last"), lnf=Signal(name=f"{prefix}_lnf"),
                      nf=Signal(range(max(2, nf_n)), name=f"{prefix}_nf"),
                      pos=Signal(range(n_map), name=f"{prefix}_pos"),
                      sw=Signal(range(n_sw), name=f"{prefix}_sw"))
            valids.append(st["v"])
            return st

        def advance(dst, src, valid=None):
            m.d.sync += [dst[k].eq(src[k]) for k in dst if k != "v"]
            m.d.sync += dst["v"].eq(src["v"] if valid is None else valid)

        fold_word = cword + (nf // gf if gf > 1 else nf)
        st_i = dict(v=cur_v, first=sf == 0, last=last_sf, lnf=last_nf, nf=nf, pos=cpos, sw=fold_word)
        # Stage A: the chunk (the weight word is read meanwhile); stage B: both registered.
        a = meta("a")
        advance(a, st_i)
        a_x = Signal(simd)
        m.d.sync += a_x.eq(wcur.word_select(sf, simd) if maxsf > 1 else wcur[:simd])
        b = meta("b")
        advance(b, a)
        b_x, b_w = Signal(simd), Signal(self.lanes)
        m.d.sync += [b_x.eq(a_x), b_w.eq(wrp.data)]
        # Stage C: XOR and popcounts of 16-bit groups; then the adder tree, TREE_FANIN per stage.
        cst = meta("c")
        advance(cst, b)
        groups = [(g0, min(g0 + POP_GROUP, simd)) for g0 in range(0, simd, POP_GROUP)]
        vals = []
        for p in range(pe):
            xw = b_x ^ b_w[p * simd:(p + 1) * simd]
            lane = []
            for n_g, (g0, g1) in enumerate(groups):
                s = Signal(bits_for(g1 - g0), name=f"pop{p}_{n_g}")
                m.d.sync += s.eq(popcount(xw[g0:g1]))
                lane.append((s, g1 - g0))
            vals.append(lane)
        prev = cst
        for lvl in range(self.tree_stages):
            nxt = meta(f"t{lvl}")
            advance(nxt, prev)
            for p in range(pe):
                out = []
                for q in range(0, len(vals[p]), TREE_FANIN):
                    part = vals[p][q:q + TREE_FANIN]
                    top = sum(w for _, w in part)
                    s = Signal(bits_for(top), name=f"sum{p}_{lvl}_{q // TREE_FANIN}")
                    m.d.sync += s.eq(sum((v for v, _ in part[1:]), part[0][0]))
                    out.append((s, top))
                vals[p] = out
            prev = nxt
        # Stage D: the count accumulated over the chunks; the constants and r are read for it.
        d = meta("d")
        advance(d, prev)
        acc = [Signal(aw, name=f"acc{p}") for p in range(pe)]
        with m.If(prev["v"]):
            for p in range(pe):
                m.d.sync += acc[p].eq(Mux(prev["first"], vals[p][0][0], acc[p] + vals[p][0][0]))
        m.d.comb += crp.addr.eq(_table([n * nf_n for n in range(nl)], li) + prev["nf"])
        for k in range(2):
            m.d.comb += srp[k].addr.eq(prev["sw"])
        # U0: the operands registered (the block RAMs' outputs cross the chip); U1: the products;
        # U2: the offsets; U3: the shift, saturated; U4: add, clamp, bit.
        u0 = meta("u0")
        advance(u0, d, d["v"] & d["last"])
        u1, u2, u3, u4 = meta("u1"), meta("u2"), meta("u3"), meta("u4")
        advance(u1, u0)
        advance(u2, u1)
        advance(u3, u2)
        advance(u4, u3)
        sword = Mux(cbuf, srp[1].data, srp[0].data)
        lane0 = d["nf"] % gf if gf > 1 else 0
        rshort = tab(lambda n, g: int(g.rshort))
        pw = aw + 1 + smw
        ssw = max(pw, saw) + 1
        lo_, hi_ = tab(lambda n, g: g.lo), tab(lambda n, g: g.hi)
        rn, bits = [], []
        for p in range(pe):
            fld = crp.data[p * lw:(p + 1) * lw]
            rv = (sword.word_select(lane0 * pe + p, 8) if gf > 1 else sword[8 * p:8 * p + 8]).as_signed()
            u1_p, u1_a = Signal(signed(pw), name=f"u1_p{p}"), Signal(signed(saw), name=f"u1_a{p}")
            u2_s = Signal(signed(ssw), name=f"u2_s{p}")
            u3_dl, u4_dl = Signal(signed(10), name=f"u3_dl{p}"), Signal(signed(10), name=f"u4_dl{p}")
            ts = [Signal(signed(9), name=f"u{s}_t{p}") for s in range(1, 5)]
            rs = [Signal(signed(8), name=f"u{s}_r{p}") for s in range(1, 5)]
            u0_d, u0_m = Signal(aw, name=f"u0_d{p}"), Signal(signed(smw), name=f"u0_m{p}")
            u0_a, u0_t = Signal(signed(saw), name=f"u0_a{p}"), Signal(signed(9), name=f"u0_t{p}")
            u0_r = Signal(signed(8), name=f"u0_r{p}")
            m.d.sync += [u0_d.eq(acc[p]), u0_m.eq(fld[:smw].as_signed()), u0_a.eq(fld[smw:smw + saw].as_signed()),
                         u0_t.eq(fld[smw + saw:].as_signed()), u0_r.eq(Mux(rshort, rv, 0))]
            m.d.sync += [u1_p.eq(u0_d.as_unsigned() * u0_m), u1_a.eq(u0_a), ts[0].eq(u0_t), rs[0].eq(u0_r)]
            shifted = u2_s >> sh
            m.d.sync += [u2_s.eq(u1_p + u1_a),
                         u3_dl.eq(Mux(shifted > 255, 255, Mux(shifted < -255, -255, shifted))),
                         u4_dl.eq(u3_dl)]
            m.d.sync += [ts[s + 1].eq(ts[s]) for s in range(3)] + [rs[s + 1].eq(rs[s]) for s in range(3)]
            rsum = Signal(signed(11), name=f"rsum{p}")
            r_new = Signal(signed(9), name=f"rnew{p}")
            m.d.comb += [rsum.eq(rs[3] + u4_dl),
                         r_new.eq(Mux(rsum < lo_, lo_, Mux(rsum > hi_, hi_, rsum)))]
            rn.append(r_new[:8])
            bits.append(r_new >= ts[3])
        # The stream map: the fold's byte lanes, in place (not in the last layer).
        lane4 = u4["nf"] % gf if gf > 1 else 0
        lanes_en = Signal(STREAM_LANES)
        m.d.comb += lanes_en.eq(Const((1 << pe) - 1, STREAM_LANES) << (lane4 * pe) if gf > 1
                                else Const(0xFF, STREAM_LANES))
        for k in range(2):
            with m.If(running & (cbuf == k) & u4["v"] & ~is_last):
                m.d.comb += [swp[k].addr.eq(u4["sw"]), swp[k].data.eq(Cat(*(rn * gf))),
                             swp[k].en.eq(lanes_en)]
        # The next layer's bits, collected over the folds and written once per position.
        obits = Signal(c)
        wpend = Signal()
        wpos = Signal(range(n_map))
        with m.If(u4["v"]):
            m.d.sync += obits.eq(Cat(obits[pe:], *bits) if nf_n > 1 else Cat(*bits))
        m.d.sync += [wpend.eq(u4["v"] & u4["lnf"] & ~is_last), wpos.eq(u4["pos"])]
        wbase = Mux(odd, 0, n_map) if nl > 1 else n_map     # layer l writes region (l + 1) mod 2
        for wp in lwp:
            m.d.comb += [wp.addr.eq(wbase + wpos), wp.data.eq(obits), wp.en.eq(wpend)]
        if self._pool:
            opush = Const(0, 1)
            m.d.comb += credit.eq(self._pool_sums(m, dict(u3=u3, u4=u4, rn=rn, is_last=is_last)))
        else:
            # The last layer's values, a position at a time, into the output FIFO; a position is
            # issued only when the FIFO has room for it and for every position in flight.
            ocol = Signal(c * 8)
            opush = Signal()
            with m.If(u4["v"]):
                m.d.sync += ocol.eq(Cat(ocol[pe * 8:], *rn) if nf_n > 1 else Cat(*rn))
            m.d.sync += opush.eq(u4["v"] & u4["lnf"] & is_last)
            m.submodules.ofifo = ofifo = fifo.SyncFIFOBuffered(width=c * 8, depth=self._fifo_depth)
            infl = Signal(range(self._fifo_depth + 2))
            m.d.comb += credit.eq(~is_last | ((infl + ofifo.level) < self._fifo_depth))
            m.d.comb += [ofifo.w_data.eq(ocol), ofifo.w_en.eq(opush),
                         self.o.valid.eq(ofifo.r_rdy), self.o.payload.eq(ofifo.r_data),
                         ofifo.r_en.eq(self.o.ready)]
            with m.If(transfer & is_last & ~opush):
                m.d.sync += infl.eq(infl + 1)
            with m.Elif(opush & ~(transfer & is_last)):
                m.d.sync += infl.eq(infl - 1)

        # ---- Sequence: an inference starts on a full buffer; after a layer's last position and
        # its drain, the next layer (or the end of the inference).
        busy = Cat(*valids, wpend, opush).any()
        layer_done = running & (tpos == n_map) & ~cur_v & ~busy

        def restart(index):
            return [fpos.eq(0), fot.eq(0), fof.eq(0), fetch_more.eq(1), tpos.eq(0), tword.eq(0),
                    nf.eq(0), sf.eq(0), waddr.eq(_table(self._wbase, index))]
        clear_full = Signal(2)
        with m.If(~running & full.bit_select(cbuf, 1)):
            m.d.sync += [running.eq(1), li.eq(0), *restart(Const(0, 1))]
        with m.If(layer_done):
            with m.If(is_last):
                m.d.sync += [running.eq(0), cbuf.eq(~cbuf)]
                m.d.comb += clear_full.bit_select(cbuf, 1).eq(1)
            with m.Else():
                m.d.sync += [li.eq(li + 1), *restart(li + 1)]
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        return m

    def _pool_sums(self, m, v):
        """``pool``: the last layer's values summed per channel over the positions (a memory of
        ``NF`` words of ``pe`` sums, read at U3 and written at U4, transparent for the folds of
        one position), then sent as ``NF`` transfers. The next inference's last layer waits until
        they are sent. Returns the issue's ``credit`` (its complement: sums not yet sent)."""
        pe, gw, nf_n, n_map = self._pe, self._gw, self._nf, self._n
        u3, u4, rn, is_last = v["u3"], v["u4"], v["rn"], v["is_last"]
        m.submodules.sums = sums = memory.Memory(shape=unsigned(pe * gw), depth=max(2, nf_n), init=[])
        swp = sums.write_port()
        urp = sums.read_port(transparent_for=(swp,))
        orp = sums.read_port(transparent_for=())
        m.d.comb += urp.addr.eq(u3["nf"])
        new = [Signal(signed(gw), name=f"gsum{p}") for p in range(pe)]
        first = u4["pos"] == 0
        for p in range(pe):
            old = urp.data[p * gw:(p + 1) * gw].as_signed()
            m.d.comb += new[p].eq(Mux(first, 0, old) + rn[p].as_signed())
        m.d.comb += [swp.addr.eq(u4["nf"]), swp.data.eq(Cat(*new)), swp.en.eq(u4["v"] & is_last)]
        busy = Signal()                  # the sums are final and not all sent
        rd = Signal(range(nf_n + 1))     # the next word to read out
        shown = Signal()                 # orp.data holds a word for o
        adv = ~shown | self.o.ready
        m.d.comb += [orp.addr.eq(rd), orp.en.eq(adv), self.o.valid.eq(shown), self.o.payload.eq(orp.data)]
        with m.If(u4["v"] & is_last & u4["lnf"] & (u4["pos"] == n_map - 1)):
            m.d.sync += [busy.eq(1), rd.eq(0)]
        with m.Elif(adv & busy):
            with m.If(rd == nf_n):
                m.d.sync += [shown.eq(0), busy.eq(0)]
            with m.Else():
                m.d.sync += [shown.eq(1), rd.eq(rd + 1)]
        with m.Elif(adv):
            m.d.sync += shown.eq(0)
        return ~(is_last & busy)
