"""The int8 output stage of a conv layer: accumulators to 8-bit activations, gathered per position.

Input: the accumulators of a matrix-vector unit with ``out="acc"``: per output position, ``C / lanes``
transfers in channel-group order, transfer ``g`` holding ``lanes`` two's-complement values of
``acc_width`` bits (lane ``p`` = channel ``g * lanes + p``). It computes, per channel
(docs/integer-network.md, ``out: int8`` without shortcut)::

    y[c] = clamp((acc[c] * mul[c] + add[c]) >> shift, lo, hi)         (>> an arithmetic shift)

and emits one transfer per position holding all ``C`` values: element ``c`` at bits ``[8c, 8c + 8)``,
two's complement; with ``group``, one transfer per ``group`` channels instead (``C / group`` per
position, element ``j`` = channel ``g * group + j``; the integer stream into the layer engine: one
value per transfer). The multipliers and offsets live in a ROM of ``C / par`` words, read once per
step, in block RAM (``ram_style``): as logic its multiplexers cost more than the rest of the unit.

Datapath: ``par`` channels per cycle (``par`` divides ``lanes``), each with one multiplier (a DSP
where the FPGA has them), in a three-stage pipeline: (0) select the ``par`` lanes of the input
transfer (taken into a register at once when it needs more than one step, so that the producer's
output FIFO never waits on this unit) and read the channels' constants; (1) the products; (2) add the offsets, shift and clamp,
and shift the ``par`` results into a ``C x 8``-bit collect register, which is the output register:
it is valid from a position's last channel until it is taken. The pipeline advances as a whole; it
holds only while stage 2 has a result and the collect register a position not yet taken
(``o.ready`` reaches ``i.ready`` through that hold, one gate).

With ``register_constants`` a register stage between stage 0 and the products holds the lanes and
the constants (on ECP5 the constant ROM's block RAM and the multipliers' DSPs sit far apart: that
path held a design to 58 MHz): one cycle more latency, the same throughput.

Throughput: ``C / par`` cycles per position when the input has no gaps (``lanes / par`` cycles per
input transfer) and each position is taken within ``C / par`` cycles (the tail takes one per cycle
while it pools). Latency: 3 cycles (4 with the input register) from the transfer with a position's
last channel to the output.

Members: ``i : In(stream.Signature(lanes * acc_width))``; ``o : Out(stream.Signature(C * 8))``.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import signed_width

ELEMENT_BITS = 8


class Requantize(wiring.Component):
    def __init__(self, mul, add, shift: int, *, lo: int, hi: int, acc_width: int, lanes: int = 1,
                 par: int = 1, group: int | None = None, name: str = "requant",
                 register_constants: bool = False):
        self._mul = np.asarray(mul, dtype=np.int64).reshape(-1)
        self._add = np.asarray(add, dtype=np.int64).reshape(-1)
        self._c = len(self._mul)
        self._shift, self._lo, self._hi = int(shift), int(lo), int(hi)
        self._aw, self._l, self._par = int(acc_width), int(lanes), int(par)
        if len(self._add) != self._c:
            raise ValueError(f"{name}: {len(self._add)} offsets for {self._c} channels")
        if self._l < 1 or self._c % self._l:
            raise ValueError(f"{name}: lanes={self._l} must divide the {self._c} channels")
        if self._par < 1 or self._l % self._par:
            raise ValueError(f"{name}: par={self._par} must divide lanes={self._l}")
        self._group = int(group or self._c)
        self._regc = bool(register_constants)
        if self._c % self._group or self._group % self._par:
            raise ValueError(f"{name}: group={self._group} must divide the {self._c} channels and be "
                             f"a multiple of par={self._par}")
        if not (-128 <= self._lo <= self._hi <= 127):
            raise ValueError(f"{name}: clamp range [{self._lo}, {self._hi}] is not within int8")
        if self._shift < 0:
            raise ValueError(f"{name}: shift {self._shift} is negative")
        self._mw = signed_width(int(self._mul.min()), int(self._mul.max()))
        self._adw = signed_width(int(self._add.min()), int(self._add.max()))
        super().__init__({"i": In(stream.Signature(self._l * self._aw)),
                          "o": Out(stream.Signature(self._group * ELEMENT_BITS))})

    @property
    def channels(self) -> int:
        return self._c

    @property
    def mul_width(self) -> int:
        return self._mw

    @property
    def cycles_per_position(self) -> int:
        return self._c // self._par

    @property
    def constant_bits(self) -> int:
        """Bits of the per-channel constants (multiplier and offset): the constant ROM."""
        return self._c * (self._mw + self._adw)

    def elaborate(self, platform):
        m = Module()
        c, lanes, par, aw = self._c, self._l, self._par, self._aw
        steps = c // par                     # pipeline steps per position
        subs = lanes // par                  # steps per input transfer
        pw = aw + self._mw                   # product width
        sw = max(pw, self._adw) + 1          # sum width

        # Per step: the par channels' constants, in a ROM read in stage 0 (word = step; lane j holds
        # mul then add), or constants when there is one step.
        cw = self._mw + self._adw
        if steps > 1:
            init = [sum(((int(self._mul[s * par + j]) & ((1 << self._mw) - 1))
                         | ((int(self._add[s * par + j]) & ((1 << self._adw) - 1)) << self._mw)) << (j * cw)
                        for j in range(par)) for s in range(steps)]
            m.submodules.crom = crom = memory.Memory(shape=unsigned(par * cw), depth=steps, init=init,
                                                      attrs={"ram_style": "block"})
            crp = crom.read_port()
            cword = crp.data
        else:
            cword = Const(sum(((int(self._mul[j]) & ((1 << self._mw) - 1))
                               | ((int(self._add[j]) & ((1 << self._adw) - 1)) << self._mw)) << (j * cw)
                              for j in range(par)), par * cw)
        mul1 = [cword[j * cw:j * cw + self._mw].as_signed() for j in range(par)]
        add1 = [cword[j * cw + self._mw:(j + 1) * cw].as_signed() for j in range(par)]
        # Per sub-step: the par lanes of the held transfer.
        # With more than one step per transfer, the transfer is taken into a register at once
        # (the producer's FIFO drains in one cycle) and its lanes are read from there.
        if subs > 1:
            held = Signal(lanes * aw)
            busy = Signal()
            src = held
        else:
            src = self.i.payload
        lane = [Array(src[(s * par + j) * aw:(s * par + j + 1) * aw].as_signed()
                      for s in range(subs)) for j in range(par)]

        step = Signal(range(steps))
        sub = Signal(range(subs))
        v1, last1, step1 = Signal(), Signal(), Signal(range(steps))
        a1 = [Signal(signed(aw), name=f"a1_{j}") for j in range(par)]
        v2, last2, step2 = Signal(), Signal(), Signal(range(steps))
        p2 = [Signal(signed(pw), name=f"p2_{j}") for j in range(par)]
        d2 = [Signal(signed(self._adw), name=f"d2_{j}") for j in range(par)]
        gsteps = self._group // par          # steps per output transfer
        collect = Signal(self._group * ELEMENT_BITS)
        full = Signal()                      # collect holds a whole position not yet taken

        hold = Signal()
        m.d.comb += hold.eq(v2 & full & ~self.o.ready)
        take = Signal()                      # stage 0 takes par lanes this cycle
        if subs > 1:
            done = take & (sub == subs - 1)      # the held transfer's last step
            m.d.comb += [take.eq(busy & ~hold), self.i.ready.eq(~busy | done)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [held.eq(self.i.payload), busy.eq(1)]
            with m.Elif(done):
                m.d.sync += busy.eq(0)
        else:
            m.d.comb += [take.eq(self.i.valid & ~hold), self.i.ready.eq(~hold)]
        if steps > 1:
            m.d.comb += [crp.addr.eq(step), crp.en.eq(~hold)]

        if self._regc:
            # The extra stage: lanes and constants registered (advancing with the pipeline).
            v0, last0, step0 = Signal(), Signal(), Signal(range(steps))
            a0 = [Signal(signed(aw), name=f"a0_{j}") for j in range(par)]
            m0 = [Signal(signed(self._mw), name=f"m0_{j}") for j in range(par)]
            d0 = [Signal(signed(self._adw), name=f"d0_{j}") for j in range(par)]
            with m.If(~hold):
                m.d.sync += [v0.eq(v1), last0.eq(last1), step0.eq(step1)]
                m.d.sync += [a0[j].eq(a1[j]) for j in range(par)]
                m.d.sync += [m0[j].eq(mul1[j]) for j in range(par)] + [d0[j].eq(add1[j]) for j in range(par)]
            prod_in = (v0, last0, step0, a0, m0, d0)
        else:
            prod_in = (v1, last1, step1, a1, mul1, add1)
        pv, plast, pstep, pa, pm, pd = prod_in
        # Stage 2: add, shift, clamp; collect.
        ys = []
        for j in range(par):
            s = Signal(signed(sw), name=f"s2_{j}")
            y = Signal(signed(ELEMENT_BITS), name=f"y2_{j}")
            m.d.comb += s.eq((p2[j] + d2[j]) >> self._shift)
            with m.If(s < self._lo):
                m.d.comb += y.eq(self._lo)
            with m.Elif(s > self._hi):
                m.d.comb += y.eq(self._hi)
            with m.Else():
                m.d.comb += y.eq(s)
            ys.append(y)
        shifted = Cat(collect[par * ELEMENT_BITS:], *ys) if par < self._group else Cat(*ys)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(~hold):
            with m.If(v2):
                m.d.sync += [collect.eq(shifted), full.eq(last2)]
            # Stage 1: products (the channels' multipliers selected by the registered step).
            m.d.sync += [v2.eq(pv), last2.eq(plast), step2.eq(pstep)]
            for j in range(par):
                m.d.sync += [p2[j].eq(pa[j] * pm[j]), d2[j].eq(pd[j])]
            # Stage 0: the lanes.
            if gsteps == steps:
                last = step == steps - 1
            elif gsteps & (gsteps - 1) == 0:
                last = step[:gsteps.bit_length() - 1] == gsteps - 1 if gsteps > 1 else 1
            else:
                last = (step % gsteps) == gsteps - 1
            m.d.sync += [v1.eq(take), last1.eq(last), step1.eq(step)]
            for j in range(par):
                m.d.sync += a1[j].eq(lane[j][sub])
            with m.If(take):
                m.d.sync += [step.eq(Mux(step == steps - 1, 0, step + 1)),
                             sub.eq(Mux(sub == subs - 1, 0, sub + 1))]
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(collect)]
        return m

