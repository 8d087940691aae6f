"""Bitstream builds with the YoWASP toolchain: board top -> Yosys -> nextpnr -> pack.

:func:`build` runs the flow in a build folder, reads nextpnr's JSON report and returns logic cells,
block RAM, DSP and SPRAM use against the board's budget, the achieved Fmax against the clock and the
inferences per second at that clock (from the cost model). A design that does not fit or misses
timing raises a :class:`KwsError` that gives the numbers.
"""

import importlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kwsbnn import toolchain
from kwsbnn.errors import KwsError

from .top import KwsTop


@dataclass(frozen=True)
class Board:
    name: str
    module: str
    platform: str
    bitstream_ext: str
    resources: dict      # nextpnr cell name -> what we call it


BOARDS = {
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", "bin",
                        {"ICESTORM_LC": "logic_cells", "ICESTORM_RAM": "block_ram",
                         "ICESTORM_SPRAM": "spram", "ICESTORM_DSP": "dsp"}),
    "ulx3s-85f": Board("ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", "bit",
                       {"TRELLIS_COMB": "logic_cells", "TRELLIS_FF": "flip_flops",
                        "DP16KD": "block_ram", "MULT18X18D": "dsp"}),
}


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise KwsError(f"unknown board {name!r}", f"choose one of: {', '.join(BOARDS)}")
    return BOARDS[name]


def _platform(board: Board):
    mod = importlib.import_module(board.module)
    return getattr(mod, board.platform)()


def parse_report(report: dict, board: Board) -> tuple[dict, dict]:
    """(resources {name: {used, available}}, fmax {clock: {achieved, constraint}}) from nextpnr JSON."""
    util = report.get("utilization", {})
    resources = {}
    for cell, name in board.resources.items():
        if cell in util:
            resources[name] = {"used": int(util[cell]["used"]), "available": int(util[cell]["available"])}
    return resources, report.get("fmax", {})


def build(dep, board_name: str, out: Path, *, folding=None, freq_mhz: float | None = None,
          progress=None) -> dict:
    """Build the bitstream of ``dep`` for ``board_name`` in ``out``; return the build report."""
    board = get_board(board_name)
    toolchain.activate()
    platform = _platform(board)
    clk_freq = platform.default_clk_frequency
    if freq_mhz is not None and abs(freq_mhz * 1e6 - clk_freq) > 1:
        raise KwsError(f"--freq {freq_mhz} MHz needs a PLL; the {board.name} top runs at its "
                       f"oscillator's {clk_freq / 1e6:g} MHz for now",
                       f"leave out --freq or pass {clk_freq / 1e6:g}")
    top = KwsTop(dep, folding, clk_freq=clk_freq)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = "kws"
    t0 = time.monotonic()
    if progress:
        progress(f"building {board.name} bitstream in {out} (yosys, nextpnr; the first YoWASP run "
                 "compiles its tools, 1-2 minutes)")
    try:
        opts = {"synth_opts": "-dsp"} if board.name == "icebreaker" else {}
        platform.build(top, name=name, build_dir=str(out), do_program=False,
                       nextpnr_opts=f"--report {name}.report.json", **opts)
    except subprocess.CalledProcessError as e:
        log = out / f"{name}.tim"
        tail = log.read_text().splitlines()[-15:] if log.exists() else []
        raise KwsError(f"the {board.name} build failed ({e.cmd[0] if e.cmd else 'toolchain'} exit "
                       f"{e.returncode})\n" + "\n".join(tail),
                       "a design that does not fit needs a smaller model or more folding (lower PE/SIMD)")
    seconds = time.monotonic() - t0
    rep_path = out / f"{name}.report.json"
    resources, fmax = parse_report(json.loads(rep_path.read_text()), board)
    clock_mhz = clk_freq / 1e6
    achieved = min((v["achieved"] for v in fmax.values()), default=None)
    costs = top.network.costs()
    ips = clk_freq / costs["cycles_per_inference"]
    report = {"board": board.name, "bitstream": str(out / f"{name}.{board.bitstream_ext}"),
              "clock_mhz": clock_mhz, "fmax_mhz": achieved, "timing_met": achieved is not None
              and achieved >= clock_mhz, "inferences_per_second": ips,
              "cycles_per_inference": costs["cycles_per_inference"], "resources": resources,
              "seconds": round(seconds, 1)}
    if not report["timing_met"]:
        raise KwsError(f"timing not met on {board.name}: Fmax {achieved} MHz < {clock_mhz} MHz",
                       "increase folding (fewer lanes per layer) or lower the clock")
    return report
