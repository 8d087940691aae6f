"""Bitstream builds with the YoWASP toolchain: board top -> Yosys -> nextpnr -> pack.

:func:`build` runs the flow in a build folder, reads nextpnr's JSON report and returns logic cells,
block RAM, DSP and SPRAM use against the board's budget, the achieved Fmax against the clock and the
inferences per second at that clock (from the cost model). A design that does not fit or misses
timing raises a :class:`KwsError` that gives the numbers.

The clock is the board's default (:attr:`Board.default_mhz`: 24 MHz from the PLL on the iCEBreaker,
60 MHz from the PLL on the ULX3S, where the board's default model meets timing) when ``freq_mhz`` is None; the oscillator when ``freq_mhz``
equals it, and otherwise the output of the
FPGA's PLL closest to ``freq_mhz`` (:mod:`kwsbnn.boards.pll`); the report gives the requested and
the achieved clock, and the UART divisor is computed from the achieved one. A frequency outside the
PLL's output range is a :class:`KwsError`.
"""

import importlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kwsbnn import toolchain
from kwsbnn.errors import KwsError
from kwsbnn.units import kibit

from . import pll as pll_mod
from .progress import BuildTicker
from .top import KwsTop

#: The weight image ``build`` writes next to an engine-style bitstream (``kws.weights.bin``).
WEIGHTS_SUFFIX = "weights.bin"
#: The flash image ``build`` writes beside it: bitstream, then the weight image at 1 MiB.
FLASH_SUFFIX = "flash.bin"


@dataclass(frozen=True)
class Board:
    name: str
    module: str
    platform: str
    bitstream_ext: str
    resources: dict      # nextpnr cell name -> what we call it
    family: str          # FPGA family: which PLL (kwsbnn.boards.pll)
    default_mhz: float | None = None     # clock without --freq (None: the oscillator); one that
                                         # the default model meets timing at
    default_baud: int = 115200           # UART rate without --baud
    default_model: str = "binary-ice40"  # the model the board runs without --model (build, run)


# UART rates: the iCEBreaker's FT2232H makes 1,000,000 baud exactly (12 MHz / 12) and the design's
# 12 MHz (or 24 MHz) clock divides it exactly (12 or 24 clocks per bit); 3 Mbaud would leave 4
# clocks per bit at 12 MHz, too few for a safe mid-bit sample. The ULX3S's FT231X makes 3 Mbaud
# (3 MHz / 1), and 60 MHz divides it exactly (20 clocks per bit).
# Default models: the iCEBreaker runs `binary-w64` (64 channels, integer residual stream: the engine
# style, its weights in SPRAM from the SPI flash or the UART; 36 inferences/s at 24 MHz), the ULX3S
# the recommended `binary` (96 channels: 1 Mbit of weights and stream map, more logic than the UP5K
# has) in its block-RAM engine.
BOARDS = {
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", "bin",
                        {"ICESTORM_LC": "logic_cells", "ICESTORM_RAM": "block_ram",
                         "ICESTORM_SPRAM": "spram", "ICESTORM_DSP": "dsp"}, "ice40", default_mhz=24.0,
                        default_baud=1_000_000, default_model="binary-w64"),
    "ulx3s-85f": Board("ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", "bit",
                       {"TRELLIS_COMB": "logic_cells", "TRELLIS_FF": "flip_flops",
                        "DP16KD": "block_ram", "MULT18X18D": "dsp"}, "ecp5", default_mhz=60.0,
                       default_baud=3_000_000, default_model="binary"),
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


def clock_plan(board: Board, osc_hz: float, freq_mhz: float | None):
    """``(clock in Hz, PLL parameters or None)``: the oscillator when ``freq_mhz`` is None or equal
    to it, else the PLL output closest to ``freq_mhz``."""
    if freq_mhz is None or abs(freq_mhz * 1e6 - osc_hz) <= 1:
        return osc_hz, None
    if not freq_mhz > 0:
        raise KwsError(f"--freq {freq_mhz:g} MHz must be positive")
    try:
        pll = pll_mod.plan(board.family, osc_hz, freq_mhz * 1e6)
    except pll_mod.PllError as e:
        raise KwsError(f"--freq {freq_mhz:g} MHz on {board.name}: {e.message} (from its "
                       f"{osc_hz / 1e6:g} MHz oscillator)", e.hint) from None
    return pll.f_out, pll


def board_folding(dep, board_name: str, freq_mhz: float | None = None, progress=None,
                  rate: float | None = None):
    """The folding :func:`build` uses for ``dep`` on ``board_name`` at ``freq_mhz`` (default: the
    board's clock) and ``rate`` when it is given none, so that a simulation can run the design
    that is built."""
    return _board_folding(dep, get_board(board_name), board_clock(board_name, freq_mhz), progress, rate)


def board_clock(board_name: str, freq_mhz: float | None = None) -> float:
    """The clock in Hz that ``kwsbnn build --board board_name [--freq freq_mhz]`` runs the design at:
    the oscillator's, or what the PLL makes of the request (default: the board's clock)."""
    board = get_board(board_name)
    osc = _platform(board).default_clk_frequency
    clk_freq, _ = clock_plan(board, osc, freq_mhz if freq_mhz is not None else board.default_mhz)
    return clk_freq


def check_rate(rate: float | None) -> None:
    """A ``--rate`` must be a positive number of inferences per second (or None)."""
    if rate is not None and rate <= 0:
        raise KwsError(f"--rate {rate:g}: not a rate", "give the inferences per second wanted, e.g. --rate 10000")


class _EngineDoesNotFit(KwsError):
    """The engine style's refusal of a model that only it runs (its message says it all: the whole
    design's numbers, or that the board has no SPRAM for it)."""


def _board_folding(dep, board: Board, clk_freq: float, progress=None, rate: float | None = None):
    """The fastest folding whose calibrated estimate fits the board (an error before synthesis), or
    with ``rate`` (inferences/s) the smallest found that reaches it: a pipeline folding when one
    fits, else (a board with SPRAM) the engine style's (:func:`kwsbnn.hw.folding.engine_for_budget`:
    its weights are loaded over the UART, docs/engine-style.md); within the estimate's error of the
    device's size, the smallest pipeline folding on the whole device. A :class:`KwsError` with the
    numbers of both styles when neither fits."""
    from kwsbnn.hw.folding import engine_for_budget, for_budget, resolve_budget
    from kwsbnn.hw.plan import is_stream
    check_rate(rate)
    b = resolve_budget(board.name)
    if is_stream(dep):
        # Only the engine style runs the integer residual stream: its estimate decides, before
        # synthesis. On ECP5 the block-RAM engine (weights in the bitstream); on iCE40 the SPRAM
        # engine, with the ring in SPRAM and its staging block RAM, and the weight loader.
        beside = ("the UART and the streaming ring" if b["family"] == "ecp5"
                  else "the UART, the streaming ring in SPRAM and the weight loader")
        try:
            return engine_for_budget(dep, b, clk_hz=clk_freq, rate=rate)
        except KwsError as e:
            raise _EngineDoesNotFit(f"model {dep.name} (integer residual stream: engine style only) "
                                    f"does not fit {board.name} with {beside}: "
                                    f"{e.args[0]}", e.hint) from None
    try:
        return for_budget(dep, board.name, clk_hz=clk_freq, rate=rate, engine=False)
    except KwsError as e:
        pipeline_error = e
    engine_text = ""
    if b["available"].get("spram"):
        try:
            folding = engine_for_budget(dep, b, clk_hz=clk_freq, rate=rate)
            if progress:
                progress(f"no pipeline folding fits {board.name}: the engine style, its weights in "
                         "SPRAM loaded over the UART (kwsbnn run --load)")
            return folding
        except KwsError as e:
            engine_text = f"; in the engine style: {e.args[0]}"
    try:
        folding = for_budget(dep, board.name, margin=1.0, clk_hz=clk_freq, rate=rate, engine=False)
    except KwsError as e:
        raise KwsError(f"{e.args[0]}{engine_text}", e.hint) from None
    if progress:
        progress(f"warning: {pipeline_error.args[0]}{engine_text}; trying the smallest folding on "
                 "the whole device (place and route decides)")
    return folding


def stream_budget(dep, folding, board: Board, clk_freq: float) -> dict:
    """What the streaming ring buffer costs on ``board`` by the resource estimate
    (:class:`kwsbnn.hw.resources.RingUnit`): ``{"ring": {block_ram, logic_cells, bits},
    "block_ram": {used, available}}`` for the whole design; a :class:`KwsError` with the numbers
    when the design's block RAMs (network, link and ring) are more than the board has."""
    from kwsbnn.hw.folding import resolve_budget
    from kwsbnn.hw.resources import RingUnit, estimate
    b = resolve_budget(board.name)
    est = estimate(dep, folding, b["family"], link=True, clk_hz=clk_freq)
    ring = next(e for e in est["per_layer"] if e["name"] == "ring")
    ru = RingUnit.for_model(dep)
    have = b["available"]["block_ram"]
    out = {"ring": {"transfers": ru.depth, "bits": ru.depth * ru.width,
                    "block_ram": ring["block_ram"], "logic_cells": ring["logic_cells"]},
           "block_ram": {"used": est["block_ram"], "available": have}}
    if est["block_ram"] > have:
        raise KwsError(f"the design needs {est['block_ram']} block RAMs, {board.name} has {have}: the "
                       f"network and link {est['block_ram'] - ring['block_ram']}, the streaming ring "
                       f"buffer {ring['block_ram']} ({ru.depth} x {ru.width} bits = "
                       f"{kibit(ru.depth * ru.width, 'g')})",
                       "use a folding with smaller weight memories or a smaller model")
    return out


def build(dep, board_name: str, out: Path, *, folding=None, freq_mhz: float | None = None,
          baud: int | None = None, progress=None, rate: float | None = None,
          stride: int | None = None) -> dict:
    """Build the bitstream of ``dep`` for ``board_name`` in ``out``; return the build report.
    ``baud``: the UART rate (default: the board's, :attr:`Board.default_baud`); ``stride``:
    the streaming decision stride built in (default: the smallest that keeps up with a frame
    per 10 ms, :func:`kwsbnn.boards.top.default_stride`)."""
    board = get_board(board_name)
    if baud is None:
        baud = board.default_baud
    toolchain.activate()
    platform = _platform(board)
    osc = platform.default_clk_frequency
    if freq_mhz is None:
        freq_mhz = board.default_mhz
    clk_freq, pll = clock_plan(board, osc, freq_mhz)
    from kwsbnn.hw.folding import budget_check
    if folding is None:
        try:
            folding = _board_folding(dep, board, clk_freq, progress, rate)
        except _EngineDoesNotFit:
            raise
        except KwsError as e:
            from kwsbnn.hw.resources import RingUnit, ring_estimate
            ru = RingUnit.for_model(dep)
            ring = ring_estimate(ru, board.family)
            raise KwsError(f"{e.message}; of these, the streaming ring buffer takes "
                           f"{ring['block_ram']} block RAMs ({ru.depth} x {ru.width} bits = "
                           f"{kibit(ru.depth * ru.width, 'g')}) and about "
                           f"{ring['logic_cells']:.0f} logic cells", e.hint) from None
    else:
        check = budget_check(dep, folding, board.name, clk_hz=clk_freq)
        if not check["fits"] and progress:
            progress(f"warning: by the resource estimate this folding does not fit {board.name} "
                     f"({', '.join(check['over'])}); place and route will tell")
    top = KwsTop(dep, folding, clk_freq=clk_freq, baud=baud, pll=pll, stride=stride)
    memory = stream_budget(dep, folding, board, clk_freq)
    streaming = top.stream_figures()
    if progress:
        where = (f"in SPRAM beside the weights, {memory['ring']['block_ram']} staging block RAM"
                 if top.engine_style else f"= {memory['ring']['block_ram']} block RAMs")
        progress(f"UART {baud} baud: {top.divisor} clocks per bit at {clk_freq / 1e6:.4g} MHz, "
                 f"{100 * top.baud_error:+.2f}% off; streaming ring buffer "
                 f"{kibit(memory['ring']['bits'], 'g')} {where} "
                 f"({memory['block_ram']['used']} of {memory['block_ram']['available']} block RAMs "
                 f"in all), a decision every {top.stride} frames")
    if progress and pll is not None:
        progress(f"PLL: {osc / 1e6:g} MHz -> {clk_freq / 1e6:.4g} MHz (requested {freq_mhz:g}; "
                 f"{pll.describe()})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = "kws"
    t0 = time.monotonic()
    if progress:
        progress(f"building {board.name} bitstream in {out} (yosys, nextpnr; the first YoWASP run "
                 "compiles its tools, 1-2 minutes)")
    try:
        opts = {"synth_opts": "-dsp"} if board.name == "icebreaker" else {}
        with BuildTicker(out, name, progress or (lambda m: None)):
            platform.build(top, name=name, build_dir=str(out), do_program=False,
                           nextpnr_opts=f"--report {name}.report.json --timing-allow-fail", **opts)
    except subprocess.CalledProcessError as e:
        log = out / f"{name}.tim"
        tail = log.read_text().splitlines()[-15:] if log.exists() else []
        raise KwsError(f"the {board.name} build failed ({e.cmd[0] if e.cmd else 'toolchain'} exit "
                       f"{e.returncode})\n" + "\n".join(tail),
                       "a design that does not fit needs a smaller model or more folding (lower PE/SIMD)")
    seconds = time.monotonic() - t0
    image = top.weight_image()
    load = None
    if image is not None:
        # The engine style's weights are not in the bitstream: the image the host loads over the
        # UART (docs/host-protocol.md, LOAD), next to the bitstream.
        from kwsbnn.paths import write_atomic
        from . import protocol as proto
        data = image.encode()
        path = out / f"{name}.{WEIGHTS_SUFFIX}"
        write_atomic(path, data)
        frame = len(data) + proto.OVERHEAD
        load = {"path": str(path), "words": len(image.words), "bytes": len(data),
                "model_id": f"{image.model_id:08x}", "seconds_at_baud": frame * 10 / baud,
                "crc32": f"{proto.crc32(image.payload):08x}"}
        # The flash image: the bitstream, then the weight image at 1 MiB, read at power-up
        # (boards/flash.py).
        from .flash import FLASH_OFFSET, flash_image, program_commands
        bitstream = out / f"{name}.{board.bitstream_ext}"
        fpath = out / f"{name}.{FLASH_SUFFIX}"
        write_atomic(fpath, flash_image(bitstream.read_bytes(), data))
        load["flash"] = {"path": str(fpath), "offset": FLASH_OFFSET, "bytes": fpath.stat().st_size,
                         "program": program_commands(fpath, path)}
    rep_path = out / f"{name}.report.json"
    resources, fmax = parse_report(json.loads(rep_path.read_text()), board)
    clock_mhz = clk_freq / 1e6
    achieved = min((v["achieved"] for v in fmax.values()), default=None)
    costs = top.network.costs()
    ips = clk_freq / costs["cycles_per_inference"]
    report = {"board": board.name, "bitstream": str(out / f"{name}.{board.bitstream_ext}"),
              "clock_mhz": clock_mhz, "requested_mhz": freq_mhz if freq_mhz is not None else clock_mhz,
              "oscillator_mhz": osc / 1e6, "pll": pll.to_dict() if pll else None,
              "baud": baud, "uart_divisor": top.divisor,
              "baud_error_percent": round(100 * top.baud_error, 3),
              "streaming": {**streaming, "ring_block_ram": memory["ring"]["block_ram"],
                            "ring_logic_cells_estimate": memory["ring"]["logic_cells"]},
              "model_id": f"{top.geometry.model_id:08x}", "fmax_mhz": achieved, "timing_met": achieved is not None
              and achieved >= clock_mhz, "inferences_per_second": ips,
              "cycles_per_inference": costs["cycles_per_inference"], "resources": resources,
              "folding": folding.to_dict(), "rate": rate,
              "style": "engine" if top.style != "pipeline" else "pipeline",
              "memory": folding.memory if folding.style == "engine" else None, "weight_image": load,
              "seconds": round(seconds, 1)}
    if rate and ips < rate and progress:
        progress(f"warning: {ips:,.0f} inferences/s at {clock_mhz:.4g} MHz, short of --rate {rate:,.0f}: "
                 "no folding that fits the board is faster")
    if not report["timing_met"]:
        fmax_text = f"{achieved:.2f} MHz" if achieved is not None else "unknown"
        raise KwsError(f"timing not met on {board.name}: Fmax {fmax_text} < the {clock_mhz:.4g} MHz "
                       f"clock (bitstream not usable; report in {out / (name + '.tim')})",
                       f"lower --freq (below {achieved:.1f})" if achieved else
                       "increase folding (fewer lanes per layer) or lower the clock")
    return report
