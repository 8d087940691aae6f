"""Verilog generation: deployable model + folding -> ``<top>.v``, memory images and a cost report.

The Verilog is plain enough for any event-driven simulator. Amaranth's own ``verilog.convert`` runs
Yosys' ``proc -nomux``, which leaves each process as an ``always @*`` block that Yosys marks with a
dummy trigger (``reg T = 0;``); Verilator evaluates every block at time 0, Icarus Verilog does not
(a declaration initializer is no event), so the block's outputs stay X until an input changes, and
registers loaded from them latch X for good. :func:`to_verilog` runs the full ``proc`` instead:
processes become multiplexer cells, written as continuous assignments, which every simulator
evaluates at time 0. Tested simulators: Verilator (every RTL test) and Icarus Verilog 11
(tests/test_icarus.py, when ``iverilog`` is installed).
"""

import json
import shutil
from pathlib import Path

from amaranth._toolchain.yosys import find_yosys
from amaranth.back import rtlil

from kwsbnn.paths import write_atomic

from .cost import Folding
from .network import build

TOP = "kws_top"


def generate(dep, out: str | Path, folding: Folding | None = None, name: str = TOP, *,
             taps: bool = False) -> dict:
    """Write ``<name>.v``, the model's memory images and ``report.json`` into ``out``; return the report.

    The network is checked (and its folding validated) before anything is written. ``taps=True``
    (simulation) adds the per-layer tap outputs of :class:`Network`; the report then lists them.
    In the ``engine`` style (:class:`~kwsbnn.hw.network.EngineNetwork`) the top has the loader port
    ``wl`` too, and ``weights.hex`` holds the words to send on it after power-up (one 64-bit word
    per line, hexadecimal; ``load_words`` in the report), except for the block-RAM engine
    (``memory: bram``), whose weights are in the bitstream (``load_words`` 0, no ``wl``).
    """
    top = build(dep, folding, taps=taps)
    text = to_verilog(top, name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{name}.v", text)
    images = out / "images"
    images.mkdir(exist_ok=True)
    for meta in dep.manifest["images"].values():
        shutil.copyfile(Path(dep.path) / meta["hex"], images / meta["hex"])
    report = {"top": name, "verilog": str(out / f"{name}.v"), "model": dep.name,
              "folding": top.folding.to_dict(), "score_width": top.score_width,
              "n_classes": top.n_classes, "input_bits": int(dep.input["shape"][0]),
              "i_width": len(top.i.payload), "o_width": len(top.o.payload.as_value()),
              "taps": top.taps(), **top.costs()}
    if report["folding"].get("style") == "engine" and top.load_words:
        write_atomic(out / "weights.hex", "".join(f"{w:016x}\n" for w in top.load_image()))
        report.update(style="engine", load_words=top.load_words, load_width=64,
                      load_image=str(out / "weights.hex"))
    elif report["folding"].get("style") == "engine":     # the block-RAM engine: weights in the ROM
        (out / "weights.hex").unlink(missing_ok=True)
        report.update(style="engine", load_words=0)
    else:
        (out / "weights.hex").unlink(missing_ok=True)
        report["style"] = "pipeline"
    write_atomic(out / "report.json", json.dumps(report, indent=1) + "\n")
    return report


def to_verilog(top, name: str = TOP) -> str:
    """Verilog of an Amaranth component, processes turned into multiplexers (see the module docstring)."""
    il = rtlil.convert(top, name=name, emit_src=False)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = [f"read_rtlil <<rtlil\n{il}\nrtlil", "proc", "memory_collect",
              "write_verilog"]       # internal $-names renamed: Icarus reads $name( as a system call
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)
