"""Whole-network simulation: generate the Verilog, build it with Verilator and run the golden-model
testbench (:mod:`kwsbnn.sim.tb_network`) on given or random inputs.
"""

import hashlib
from pathlib import Path

import numpy as np

from kwsbnn.hw.verilog import TOP, generate

from .runner import run_testbench


def simulate(dep, workdir: str | Path, *, inputs: np.ndarray | None = None, count: int = 100,
             seed: int = 0, gap: float = 0.0, stall: float = 0.0, folding=None,
             golden_model: str | Path | None = None, waves: bool = False,
             reset_after: int = 0) -> dict:
    """Run ``inputs`` (or ``count`` random ones) through the RTL of ``dep`` and compare with the
    golden model of ``golden_model`` (default: the same deployable model). With ``reset_after``,
    an abandoned partial inference of that many input transfers and a reset come first.

    Returns the testbench summary: ``total``, ``equal``, ``mismatches`` (first ten),
    ``cycles``, ``cycles_per_inference``, ``tests``, ``failed``, plus the generator's ``report``.
    """
    workdir = Path(workdir).resolve()
    vdir = workdir / "verilog"
    report = generate(dep, vdir, folding)
    # One Verilator build per distinct Verilog text: rebuilding an unchanged design is instant.
    digest = hashlib.sha256((vdir / f"{TOP}.v").read_bytes()).hexdigest()[:12]
    env = {"KWSBNN_TB_MODEL": str(golden_model or dep.path), "KWSBNN_TB_REPORT": str(vdir / "report.json"),
           "KWSBNN_TB_COUNT": str(count), "KWSBNN_TB_SEED": str(seed),
           "KWSBNN_TB_GAP": str(gap), "KWSBNN_TB_STALL": str(stall),
           "KWSBNN_TB_RESET_AFTER": str(reset_after)}
    if inputs is not None:
        np.save(workdir / "inputs.npy", np.asarray(inputs))
        env["KWSBNN_TB_INPUTS"] = str(workdir / "inputs.npy")
    summary = run_testbench(vdir / f"{TOP}.v", TOP, "kwsbnn.sim.tb_network",
                            workdir / f"sim_build-{digest}", env, waves=waves)
    summary["report"] = report
    return summary
