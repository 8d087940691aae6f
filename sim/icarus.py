"""Icarus Verilog: run the Verilog that `kwsbnn verilog` writes, as it is, on whole inferences.

A plain Verilog testbench (no VPI, no cocotb) streams the input words of ``inputs`` from a hex file
into ``kws_top`` (one transfer per cycle while ``i.ready``), takes every result (``o.ready`` high)
and writes its payload, one hex line each. :func:`run` compiles it with ``iverilog -g2012``, runs
``vvp`` and returns the decoded classes and scores, for comparison with the golden model
(tests/test_icarus.py). It needs ``iverilog`` on PATH (Debian: ``apt-get install iverilog``).
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np

from kwsbnn.errors import KwsError

from .tb_network import decode_result, input_words

TB = """`timescale 1ns/1ps
module tb;
  reg clk = 1'b0;
  reg rst = 1'b1;
  always #5 clk = ~clk;
  reg [{iw1}:0] mem [0:{nwords1}];
  integer rd = 0;
  integer nres = 0;
  integer cycles = 0;
  integer fd;
  wire i_ready, o_valid;
  wire [{ow1}:0] o_payload;
  wire i_valid = !rst && (rd < {nwords});
  wire [{iw1}:0] i_payload = mem[rd < {nwords} ? rd : 0];
  kws_top dut(.clk(clk), .rst(rst), .i__valid(i_valid), .i__payload(i_payload), .i__ready(i_ready),
              .o__valid(o_valid), .o__payload(o_payload), .o__ready(1'b1));
  initial begin
    $readmemh("{inputs}", mem);
    fd = $fopen("{results}", "w");
    repeat (4) @(posedge clk);
    rst <= 1'b0;
  end
  always @(posedge clk) begin
    cycles <= cycles + 1;
    if (!rst && i_valid && i_ready) rd <= rd + 1;
    if (!rst && o_valid) begin
      $fwrite(fd, "%h\\n", o_payload);
      nres = nres + 1;
      if (nres == {nres}) begin $fclose(fd); $finish; end
    end
    if (cycles > {limit}) begin
      $display("TIMEOUT after %0d cycles: %0d input words taken, %0d results", cycles, rd, nres);
      $fclose(fd);
      $finish;
    end
  end
endmodule
"""


def available() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def run(verilog: Path, report: dict, inputs: np.ndarray, workdir: Path, max_cycles: int) -> dict:
    """Simulate ``inputs`` ``[N, C, T, F]`` through ``verilog`` (``kws_top``, as generated) in Icarus."""
    if not available():
        raise KwsError("Icarus Verilog (iverilog, vvp) is not installed", "apt-get install iverilog")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ew = report["i_width"] // int(np.asarray(inputs).shape[1])
    words = [int(w) for w in input_words(inputs, ew)]
    digits = (report["i_width"] + 3) // 4
    (workdir / "inputs.hex").write_text("".join(f"{w:0{digits}x}\n" for w in words))
    tb = TB.format(iw1=report["i_width"] - 1, ow1=report["o_width"] - 1, nwords=len(words),
                   nwords1=len(words) - 1, nres=len(inputs), limit=int(max_cycles),
                   inputs=(workdir / "inputs.hex").as_posix(), results=(workdir / "results.hex").as_posix())
    (workdir / "tb.v").write_text(tb)
    exe = workdir / "tb.vvp"
    subprocess.run(["iverilog", "-g2012", "-o", str(exe), "-s", "tb", str(workdir / "tb.v"), str(verilog)],
                   check=True, capture_output=True, text=True, cwd=workdir)
    r = subprocess.run(["vvp", "-n", str(exe)], capture_output=True, text=True, cwd=workdir, timeout=1800)
    lines = (workdir / "results.hex").read_text().split() if (workdir / "results.hex").exists() else []
    out = [decode_result(int(x, 16) if "x" not in x.lower() else -1, report["n_classes"], report["score_width"])
           if "x" not in x.lower() else (None, None) for x in lines]
    return {"classes": [c for c, _ in out], "scores": [s for _, s in out],
            "timeout": "TIMEOUT" in r.stdout, "log": r.stdout[-2000:]}
