"""Whole-network simulation: generate the Verilog (with layer taps) and its simulation harness,
build them with Verilator and run the golden-model testbench (:mod:`kwsbnn.sim.tb_network`) on
given or random inputs.

Python wakes up only at source refills and when all results are in (the ``bulk`` driver), the
C++ main loop generates the clock, and only the harness's ports are visible to VPI: the whole network simulates at about a
million cycles per second or more. On a mismatch, the first mismatching clip is replayed with the
layer taps recorded, which names the first layer that differs; with ``waves_dir``, a second
(tracing) build writes an FST of that clip.
"""

import hashlib
from pathlib import Path

import numpy as np

from kwsbnn.hw.verilog import TOP, generate

from . import harness
from .runner import run_testbench
from .vmain import MAIN_CPP

CLOCK_NS = 10.0


def _prepare(dep, workdir: Path, folding):
    """Verilog with taps, the harness and its VPI configuration; the build key of all three."""
    vdir = workdir / "verilog"
    report = generate(dep, vdir, folding, taps=True)
    (vdir / f"{harness.TOP}.v").write_text(
        harness.harness_verilog(report["i_width"], report["o_width"], report["taps"], core=TOP,
                                load_words=report.get("load_words", 0)))
    (vdir / f"{harness.TOP}.vlt").write_text(harness.harness_config(report["taps"]))
    h = hashlib.sha256()
    for name in (f"{TOP}.v", f"{harness.TOP}.v", f"{harness.TOP}.vlt"):
        h.update((vdir / name).read_bytes())
    h.update(MAIN_CPP.encode() + b"OPT_FAST=-O2")
    return vdir, report, h.hexdigest()[:12]


def simulate(dep, workdir: str | Path, *, inputs: np.ndarray | None = None, count: int = 100,
             seed: int = 0, gap: float = 0.0, stall: float = 0.0, folding=None,
             golden_model: str | Path | None = None, waves: bool = False,
             reset_after: int = 0, driver: str = "bulk", localize: bool = True,
             waves_dir: str | Path | None = None, waves_always: bool = False) -> dict:
    """Run ``inputs`` (or ``count`` random ones) through the RTL of ``dep`` and compare with the
    golden model of ``golden_model`` (default: the same deployable model). With ``reset_after``,
    an abandoned partial inference of that many input transfers and a reset come first.

    ``driver``: ``bulk`` (fast), ``python`` or ``per_clock`` (see :mod:`kwsbnn.sim.tb_network`).
    ``localize``: on a mismatch, replay the first mismatching clip with the layer taps; the summary's
    ``first_difference`` names the clip, the first layer that differs and its first differing
    element. ``waves_dir``: write an FST of the first mismatching clip (of clip 0 when all agree and
    ``waves_always``) into that folder, simulated alone after a reset; ``waves`` is its path.
    ``waves=True`` instead traces the whole run (the file is ``dump.fst`` in the build folder).

    Returns the testbench summary: ``total``, ``equal``, ``mismatches`` (first ten),
    ``cycles``, ``cycles_per_inference``, ``cycles_steady``, ``sim_cycles_per_second``, ``tests``,
    ``failed``, plus the generator's ``report``.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    vdir, report, digest = _prepare(dep, workdir, folding)
    env = {"KWSBNN_TB_MODEL": str(golden_model or dep.path), "KWSBNN_TB_REPORT": str(vdir / "report.json"),
           "KWSBNN_TB_COUNT": str(count), "KWSBNN_TB_SEED": str(seed),
           "KWSBNN_TB_GAP": str(gap), "KWSBNN_TB_STALL": str(stall),
           "KWSBNN_TB_RESET_AFTER": str(reset_after), "KWSBNN_TB_DRIVER": driver,
           "KWSBNN_TB_LOCALIZE": "1" if localize else "0",
           "KWSBNN_TB_SRC_FILE": str(workdir / "src.hex"),
           "KWSBNN_TB_RES_FILE": str(workdir / "results.txt")}
    if inputs is not None:
        inputs = np.asarray(inputs)
        np.save(workdir / "inputs.npy", inputs)
        env["KWSBNN_TB_INPUTS"] = str(workdir / "inputs.npy")
    summary = _run(vdir, workdir / f"sim_build-{digest}{'-fst' if waves else ''}", env, waves=waves)
    summary["report"] = report
    if waves_dir is not None and (summary["mismatches"] or waves_always):
        k = summary["mismatches"][0]["index"] if summary["mismatches"] else 0
        summary["waves"] = write_waves(dep, workdir, vdir, digest, env, inputs, k, seed, count, waves_dir)
        summary["waves_clip"] = k
    return summary


def _run(vdir: Path, build_dir: Path, env: dict, *, waves: bool = False,
         trace_file: Path | None = None) -> dict:
    plusargs = [f"+kwsbnn_src={env['KWSBNN_TB_SRC_FILE']}", f"+kwsbnn_res={env['KWSBNN_TB_RES_FILE']}"]
    if (vdir / "weights.hex").is_file():              # an engine-style network: its loader image
        plusargs.append(f"+kwsbnn_wl={vdir / 'weights.hex'}")
    return run_testbench(vdir / f"{harness.TOP}.v", harness.TOP, "kwsbnn.sim.tb_network", build_dir, env,
                         sources=[vdir / f"{harness.TOP}.vlt", vdir / f"{TOP}.v"], fast=True,
                         clock_ns=CLOCK_NS, plusargs=plusargs, waves=waves, trace_file=trace_file)


def write_waves(dep, workdir: Path, vdir: Path, digest: str, env: dict, inputs, k: int, seed: int,
                count: int, waves_dir) -> str:
    """Simulate clip ``k`` alone, from a reset, in a tracing build; return the FST's path."""
    if inputs is None:                     # the testbench's own random inputs: make clip k again
        from kwsbnn.sw.golden import GoldenModel
        shape = (count,) + tuple(GoldenModel(env["KWSBNN_TB_MODEL"]).model.input["shape"])
        rng = np.random.default_rng(seed)
        inputs = rng.integers(0, 2, shape) if dep.input["prec"] == "bin" else rng.integers(-127, 128, shape)
    np.save(workdir / "waves_input.npy", np.asarray(inputs)[k:k + 1])
    wenv = {**env, "KWSBNN_TB_INPUTS": str(workdir / "waves_input.npy"), "KWSBNN_TB_RESET_AFTER": "0",
            "KWSBNN_TB_LOCALIZE": "0", "KWSBNN_TB_GAP": "0", "KWSBNN_TB_STALL": "0",
            "KWSBNN_TB_DRIVER": "bulk"}
    out = Path(waves_dir).resolve() / f"clip{k}.fst"
    res = _run(vdir, workdir / f"sim_build-{digest}-fst", wenv, waves=True, trace_file=out)
    from kwsbnn.errors import KwsError
    if not res.get("waves"):
        raise KwsError(f"the tracing simulation wrote no waveform at {out}",
                       f"see {workdir / f'sim_build-{digest}-fst' / 'test.log'}")
    return res["waves"]
