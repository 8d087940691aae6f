"""System-level simulation of the board top: :class:`~kwsbnn.boards.top.KwsTop` (network, UART,
host protocol 2) in Verilator, driven through its ``rx`` pin and read on ``tx`` by the
:mod:`kwsbnn.sim.tb_board` testbench with the host-side protocol code of
:mod:`kwsbnn.boards.protocol`, and checked against the golden model.
"""

import hashlib
import json
from pathlib import Path

from amaranth.back import verilog

from kwsbnn.paths import write_atomic

from .runner import run_testbench

TOP = "kws_board"


def board_verilog(dep, out, *, clk_freq: float = 8e6, baud: int = 1_000_000, timeout: float = 3e-4,
                  folding=None, name: str = TOP, stride: int | None = None):
    """Write the Verilog of ``KwsTop(dep, platform=None, ...)`` to ``out/<name>.v``; return
    ``(path, top)``. The defaults (8 clocks per UART bit, a timeout of 24 byte times) keep
    simulation fast; the design is the one a board runs, except for those two numbers."""
    from kwsbnn.boards.top import KwsTop
    top = KwsTop(dep, folding, clk_freq=clk_freq, baud=baud, timeout=timeout, stride=stride)
    text = verilog.convert(top, name=name, emit_src=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.v"
    write_atomic(path, text)
    return path, top


def _pins_config(vdir: Path, flash: bool = False) -> Path:
    """A Verilator configuration that makes only the board's pins (UART, reset, LEDs, clock; with
    ``flash``, the SPI flash's) visible to VPI: with the C++ main loop driving the clock (``fast=True`` of
    :func:`~kwsbnn.sim.runner.run_testbench`), Verilator runs the design at nearly its own speed
    between the UART bits Python handles (about 20 times faster than a cocotb clock)."""
    vlt = vdir / f"{TOP}.vlt"
    rw, rd = ["rx", "rst"], ["tx", "leds", "clk"]
    if flash:
        rw, rd = rw + ["flash_cipo"], rd + ["flash_cs_n", "flash_sck", "flash_copi"]
    write_atomic(vlt, "`verilator_config\n"
                 + "".join(f'public_flat_rw -module "{TOP}" -var "{v}"\n' for v in rw)
                 + "".join(f'public_flat_rd -module "{TOP}" -var "{v}"\n' for v in rd))
    return vlt


def _run(top, path, vdir, module: str, workdir: Path, extra: dict, waves: bool, clk_ns: int = 10) -> dict:
    """Run testbench ``module`` on the written board top with the environment every board
    testbench reads (model, link geometry, INFO, clock, UART divisor, timeout) plus ``extra``
    (the model's path, the testbench's own settings); the compiled model is cached per Verilog text."""
    env = {"KWSBNN_TB_GEOMETRY": json.dumps(top.geometry.to_dict()),
           "KWSBNN_TB_INFO": top.info.encode().hex(),
           "KWSBNN_TB_CLK_NS": str(clk_ns),
           "KWSBNN_TB_DIVISOR": str(top.divisor),
           "KWSBNN_TB_TIMEOUT_CYCLES": str(top.timeout_cycles[1]), **extra}
    vlt = _pins_config(vdir, flash=top.engine_style)
    digest = hashlib.sha256(path.read_bytes() + vlt.read_bytes()).hexdigest()[:12]
    summary = run_testbench(path, TOP, module, workdir / f"sim_build-{digest}", env,
                            waves=waves, sources=[vlt], fast=True, clock_ns=clk_ns)
    summary["info"] = top.info.__dict__
    return summary


def simulate_board(dep, workdir, *, count: int = 20, seed: int = 0, clk_freq: float = 8e6,
                   baud: int = 1_000_000, timeout: float = 3e-4, folding=None,
                   waves: bool = False) -> dict:
    """Run the board testbench on ``dep``: INFO, ``count`` random inferences against the golden
    model, then every error case (bad checksum, version, type, length, a host that stops
    mid-frame, garbage between frames, a reset mid-frame), each followed by a correct inference.

    Returns the testbench summary (``checks``, ``failures``, ``inferences``, ``errors_seen``,
    ``sim_cycles``, ``wall_seconds``, ``tests``, ``failed``) plus ``info`` (the board's INFO).
    """
    workdir = Path(workdir).resolve()
    vdir = workdir / "verilog"
    path, top = board_verilog(dep, vdir, clk_freq=clk_freq, baud=baud, timeout=timeout,
                              folding=folding)
    return _run(top, path, vdir, "kwsbnn.sim.tb_board", workdir, {
        "KWSBNN_TB_MODEL": str(dep.path),
        "KWSBNN_TB_LATENCY": str(top.network.costs()["latency"]),
        "KWSBNN_TB_COUNT": str(count), "KWSBNN_TB_SEED": str(seed)}, waves)


def simulate_stream(dep, workdir, *, frames: int | None = None, stride: int = 0, seed: int = 0,
                    clk_freq: float = 8e6, baud: int = 1_000_000, timeout: float = 3e-4,
                    folding=None, build_stride: int | None = None, hop_s: float = 0.0,
                    waves: bool = False) -> dict:
    """Run the streaming testbench (:mod:`kwsbnn.sim.tb_stream`) on ``dep``'s board top at
    ``clk_freq`` and ``baud`` (cycle for cycle: the simulated time is counted in clock cycles):
    STREAM_START with ``stride`` (0: the build's, ``build_stride`` or the default), ``frames``
    random frames (default: a window and 4 strides more) streamed as fast as the UART and the
    flow control allow (with ``hop_s``, one frame per ``hop_s`` seconds instead: real time at 0.01),
    each decision checked against the golden model on its window, then the stream error cases,
    an INFER and a restart.

    Returns the testbench summary (``checks``, ``failures``, ``decisions``,
    ``decisions_per_second`` over the whole run, ``steady_decisions_per_second`` from the first
    decision to the last, ``tests``, ``failed``) plus ``figures``
    (:meth:`~kwsbnn.boards.top.KwsTop.stream_figures`: ring, link limit, the network's rate).
    """
    workdir = Path(workdir).resolve()
    vdir = workdir / "verilog"
    path, top = board_verilog(dep, vdir, clk_freq=clk_freq, baud=baud, timeout=timeout,
                              folding=folding, stride=build_stride)
    n = stride or top.stride
    if frames is None:
        frames = top.geometry.frames + 4 * n
    summary = _run(top, path, vdir, "kwsbnn.sim.tb_stream", workdir, {
        "KWSBNN_TB_MODEL": str(dep.path), "KWSBNN_TB_CLK_HZ": repr(float(clk_freq)),
        "KWSBNN_TB_LATENCY": str(top.network.costs()["latency"]),
        "KWSBNN_TB_FRAMES": str(frames), "KWSBNN_TB_STRIDE": str(stride),
        "KWSBNN_TB_PACE_CYCLES": str(int(round(hop_s * clk_freq))),
        "KWSBNN_TB_SEED": str(seed)}, waves)
    summary["figures"] = top.stream_figures()
    return summary


def _engine_top(dep, workdir, folding, clk_freq, baud, timeout, who: str):
    """The engine-style board top's Verilog in ``workdir/verilog``: ``(workdir, vdir, path, top)``."""
    workdir = Path(workdir).resolve()
    vdir = workdir / "verilog"
    path, top = board_verilog(dep, vdir, clk_freq=clk_freq, baud=baud, timeout=timeout,
                              folding=folding)
    if not top.engine_style:
        raise ValueError(f"{who} needs a folding of the engine style (weights in SPRAM)")
    return workdir, vdir, path, top


def simulate_load(dep, workdir, *, folding, count: int = 4, frames: int = 0, stride: int = 1,
                  seed: int = 0, clk_freq: float = 8e6, baud: int = 1_000_000,
                  timeout: float = 3e-4, errors: bool = True, waves: bool = False) -> dict:
    """Run the weight-loading testbench (:mod:`kwsbnn.sim.tb_load`) on ``dep``'s engine-style
    board top (``folding`` of the ``engine`` style) at ``clk_freq`` and ``baud``, cycle for cycle:
    the refused and corrupted images and the requests before a good one (each with its status),
    the image over the UART (its time measured), ``count`` INFERs and a stream of ``frames``
    frames at ``stride`` (decisions per second measured) against the golden model, a reload and
    a reset. With ``errors=False`` only the image, the INFERs, the stream and the reset (for a
    real-size network: each image takes millions of cycles on the wire).

    Returns the testbench summary (``checks``, ``failures``, ``statuses``, ``load_cycles``,
    ``load_seconds``, ``decisions``, ``decisions_per_second``, ``steady_decisions_per_second``,
    ``tests``, ``failed``) plus ``figures`` (:meth:`~kwsbnn.boards.top.KwsTop.stream_figures`)
    and ``info``.
    """
    workdir, vdir, path, top = _engine_top(dep, workdir, folding, clk_freq, baud, timeout,
                                           "simulate_load")
    summary = _run(top, path, vdir, "kwsbnn.sim.tb_load", workdir, {
        "KWSBNN_TB_MODEL": str(dep.path), "KWSBNN_TB_CLK_HZ": repr(float(clk_freq)),
        "KWSBNN_TB_IMAGE": top.weight_image().encode().hex(),
        "KWSBNN_TB_CYCLES": str(top.network.costs()["cycles_per_inference"]),
        "KWSBNN_TB_COUNT": str(count), "KWSBNN_TB_FRAMES": str(frames),
        "KWSBNN_TB_STRIDE": str(stride), "KWSBNN_TB_SEED": str(seed),
        "KWSBNN_TB_ERRORS": "1" if errors else "0"}, waves)
    summary["figures"] = top.stream_figures()
    return summary


def simulate_flash(dep, workdir, *, folding, flash: bytes | None, expect: str, count: int = 2,
                   seed: int = 0, clk_freq: float = 8e6, baud: int = 1_000_000,
                   timeout: float = 3e-4, waves: bool = False) -> dict:
    """Run the flash-boot testbench (:mod:`kwsbnn.sim.tb_flash`) on ``dep``'s engine-style board
    top: a model of the SPI flash, asleep at power-up, holds ``flash`` (bytes, or None for an
    erased flash) at :data:`~kwsbnn.boards.flash.FLASH_OFFSET`; the board must wake it, read the
    image and end with INFO's flash status ``expect`` (a :class:`~kwsbnn.boards.protocol.FlashStatus`
    name); then ``count`` INFERs against the golden model (after a LOAD over the UART when the
    flash's image was refused), and a reset that keeps the weights without a second read.

    Returns the testbench summary (``checks``, ``failures``, ``flash``, ``transactions``,
    ``violations``, ``boot_cycles``: from the first chip select to the last byte read) plus
    ``tests``, ``failed`` and ``info``."""
    workdir, vdir, path, top = _engine_top(dep, workdir, folding, clk_freq, baud, timeout,
                                           "simulate_flash")
    return _run(top, path, vdir, "kwsbnn.sim.tb_flash", workdir, {
        "KWSBNN_TB_MODEL": str(dep.path), "KWSBNN_TB_CLK_HZ": repr(float(clk_freq)),
        "KWSBNN_TB_IMAGE": top.weight_image().encode().hex(),
        "KWSBNN_TB_FLASH": (flash or b"").hex(), "KWSBNN_TB_EXPECT": expect,
        "KWSBNN_TB_CYCLES": str(top.network.costs()["cycles_per_inference"]),
        "KWSBNN_TB_COUNT": str(count), "KWSBNN_TB_SEED": str(seed)}, waves)
