"""Board clocks from a PLL: pure-Python parameter calculators and the primitive instances.

- iCE40 (``SB_PLL40_PAD``, SIMPLE feedback), the search of IceStorm's ``icepll``:
  ``f_pfd = f_in / (DIVR + 1)`` in [10, 133] MHz, ``f_vco = f_pfd * (DIVF + 1)`` in [533, 1066] MHz,
  ``f_out = f_vco / 2**DIVQ`` (DIVQ 1..6) in [16, 275] MHz; DIVR 0..15, DIVF 0..127; the closest
  ``f_out`` wins (first found on a tie); ``FILTER_RANGE`` from ``f_pfd`` (1: < 17, 2: < 26, 3: < 44,
  4: < 66, 5: < 101, else 6).
- ECP5 (``EHXPLLL``, feedback from CLKOP), the search of Project Trellis' ``ecppll``:
  ``f_pfd = f_in / CLKI_DIV`` (1..128) >= 3.125 MHz, ``f_vco = f_pfd * CLKFB_DIV * CLKOP_DIV``
  (CLKFB_DIV 1..80, CLKOP_DIV 1..128) in [400, 800] MHz, ``f_out = f_vco / CLKOP_DIV`` in
  [10, 400] MHz; the closest ``f_out`` wins, a tie goes to the VCO closer to 600 MHz;
  ``CLKOP_CPHASE = CLKOP_DIV // 2`` (the 180 degree primary phase ecppll and Lattice's tools use).

:func:`plan` picks the calculator by FPGA family; a frequency outside the PLL's output range is a
:class:`PllError`. :func:`clock_instance` builds the primitive for an amaranth-boards platform.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from kwsbnn.errors import KwsError


class PllError(KwsError):
    """A frequency the PLL cannot make."""


@dataclass(frozen=True)
class Ice40Pll:
    f_in: float      # Hz
    f_out: float     # Hz, achieved
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_pfd: float
    f_vco: float
    family: str = "ice40"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"SB_PLL40_PAD DIVR={self.divr} DIVF={self.divf} DIVQ={self.divq} "
                f"FILTER_RANGE={self.filter_range} (VCO {self.f_vco / 1e6:g} MHz)")


@dataclass(frozen=True)
class Ecp5Pll:
    f_in: float
    f_out: float
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int
    f_pfd: float
    f_vco: float
    family: str = "ecp5"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"EHXPLLL CLKI_DIV={self.clki_div} CLKFB_DIV={self.clkfb_div} "
                f"CLKOP_DIV={self.clkop_div} (VCO {self.f_vco / 1e6:g} MHz)")


ICE40_LIMITS = {"in": (10.0, 133.0), "pfd": (10.0, 133.0), "vco": (533.0, 1066.0), "out": (16.0, 275.0)}
ECP5_LIMITS = {"in": (8.0, 400.0), "pfd": (3.125, 400.0), "vco": (400.0, 800.0), "out": (10.0, 400.0)}


def _check(name: str, limits: dict, f_in: float, f_out: float) -> None:
    lo, hi = limits["in"]
    if not lo <= f_in <= hi:
        raise PllError(f"the {name} PLL takes {lo:g}-{hi:g} MHz in, not {f_in:g} MHz")
    lo, hi = limits["out"]
    if not lo <= f_out <= hi:
        raise PllError(f"the {name} PLL makes {lo:g}-{hi:g} MHz, not {f_out:g} MHz",
                       f"choose --freq between {lo:g} and {hi:g}, or leave it out for the oscillator")


def ice40_pll(f_in_hz: float, f_out_hz: float) -> Ice40Pll:
    """``SB_PLL40_PAD`` parameters for the output closest to ``f_out_hz`` (what icepll chooses)."""
    f_in, f_out = f_in_hz / 1e6, f_out_hz / 1e6
    _check("iCE40", ICE40_LIMITS, f_in, f_out)
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not ICE40_LIMITS["pfd"][0] <= f_pfd <= ICE40_LIMITS["pfd"][1]:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not ICE40_LIMITS["vco"][0] <= f_vco <= ICE40_LIMITS["vco"][1]:
                continue
            for divq in range(1, 7):
                fo = f_vco / 2 ** divq
                if best is None or abs(fo - f_out) < abs(best[0] - f_out):
                    best = (fo, divr, divf, divq, f_pfd, f_vco)
    if best is None:
        raise PllError(f"no iCE40 PLL setting makes {f_out:g} MHz from {f_in:g} MHz")
    fo, divr, divf, divq, f_pfd, f_vco = best
    fr = 1 if f_pfd < 17 else 2 if f_pfd < 26 else 3 if f_pfd < 44 else 4 if f_pfd < 66 else \
        5 if f_pfd < 101 else 6
    return Ice40Pll(f_in_hz, fo * 1e6, divr, divf, divq, fr, f_pfd * 1e6, f_vco * 1e6)


def ecp5_pll(f_in_hz: float, f_out_hz: float) -> Ecp5Pll:
    """``EHXPLLL`` parameters for the output closest to ``f_out_hz`` (what ecppll chooses)."""
    f_in, f_out = f_in_hz / 1e6, f_out_hz / 1e6
    _check("ECP5", ECP5_LIMITS, f_in, f_out)
    best = None
    vlo, vhi = ECP5_LIMITS["vco"]
    for clki in range(1, 129):
        f_pfd = f_in / clki
        if not ECP5_LIMITS["pfd"][0] <= f_pfd <= ECP5_LIMITS["pfd"][1]:
            continue
        for fb in range(1, 81):
            # Only the CLKOP_DIV values that put the VCO in range.
            for op in range(max(1, math.ceil(vlo / (f_pfd * fb) - 1e-9)),
                            min(128, math.floor(vhi / (f_pfd * fb) + 1e-9)) + 1):
                f_vco = f_pfd * fb * op
                fo = f_vco / op
                # Rounded so that float noise does not decide between equal settings.
                key = (round(abs(fo - f_out), 9), round(abs(f_vco - 600), 6))
                if best is None or key < best[0]:
                    best = (key, fo, clki, fb, op, f_vco, f_pfd)
    if best is None:
        raise PllError(f"no ECP5 PLL setting makes {f_out:g} MHz from {f_in:g} MHz")
    _, fo, clki, fb, op, f_vco, f_pfd = best
    return Ecp5Pll(f_in_hz, fo * 1e6, clki, fb, op, op // 2, f_pfd * 1e6, f_vco * 1e6)


def plan(family: str, f_in_hz: float, f_out_hz: float):
    """The PLL of an FPGA family (``ice40`` or ``ecp5``) for the output closest to ``f_out_hz``."""
    if family == "ice40":
        return ice40_pll(f_in_hz, f_out_hz)
    if family == "ecp5":
        return ecp5_pll(f_in_hz, f_out_hz)
    raise PllError(f"no PLL support for FPGA family {family!r}")


def ice40_instance(p: Ice40Pll, pad, clk_out, lock):
    """``SB_PLL40_PAD`` fed from the clock pin ``pad`` (an IO port: the PLL's dedicated input pad),
    driving ``clk_out`` through the global buffer; ``lock`` high when locked."""
    from amaranth.hdl import Const, Instance
    return Instance("SB_PLL40_PAD",
                    p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                    p_DIVR=Const(p.divr, 4), p_DIVF=Const(p.divf, 7), p_DIVQ=Const(p.divq, 3),
                    p_FILTER_RANGE=Const(p.filter_range, 3),
                    i_PACKAGEPIN=pad, i_RESETB=Const(1), i_BYPASS=Const(0),
                    o_PLLOUTGLOBAL=clk_out, o_LOCK=lock)


def ecp5_instance(p: Ecp5Pll, clk_in, clk_out, lock):
    """``EHXPLLL`` from ``clk_in`` (fabric clock signal) to ``clk_out`` (CLKOP, fed back);
    ``lock`` high when locked."""
    from amaranth.hdl import Const, Instance
    return Instance("EHXPLLL",
                    a_FREQUENCY_PIN_CLKI=f"{p.f_in / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{p.f_out / 1e6:g}",
                    a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                    a_MFG_GMCREF_SEL="2",
                    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                    p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                    p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                    p_CLKI_DIV=p.clki_div, p_CLKFB_DIV=p.clkfb_div, p_CLKOP_DIV=p.clkop_div,
                    p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=p.clkop_cphase, p_CLKOP_FPHASE=0,
                    p_FEEDBK_PATH="CLKOP",
                    i_CLKI=clk_in, i_CLKFB=clk_out, o_CLKOP=clk_out, o_LOCK=lock,
                    i_RST=Const(0), i_STDBY=Const(0), i_PHASESEL0=Const(0), i_PHASESEL1=Const(0),
                    i_PHASEDIR=Const(1), i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1),
                    i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0))
