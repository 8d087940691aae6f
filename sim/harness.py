"""The simulation harness of a generated network: a sim-only Verilog top ``kws_sim`` around
``kws_top`` that keeps Python off the clock.

Verilator re-evaluates, at every evaluation, all combinational logic that a top-level input (or a
signal VPI may write) reaches. So every signal Python writes is read only by registers here, and the
network's inputs (``rst`` included) come from registers of the harness: the network itself runs at
Verilator's full speed. What the harness holds:

- **A source memory** (``2**AW`` words of the input width) that feeds ``i`` on its own. Python
  writes a chunk of words into a hex file, pulses ``src_load`` (``$readmemh`` at ``src_load_addr``)
  and raises ``src_end``, the running count of words that may be sent. ``src_rd`` counts the words
  sent since reset; ``src_wake`` rises once ``src_rd >= src_wake_at`` (Python sleeps on it to
  refill). With ``src_gap = g``, the source idles before a word with probability ``g / 65536``.
- **A Python-driven source** (``src_bulk = 0``): ``py_valid``/``py_payload``/``py_ready`` into a
  2-entry FIFO in front of ``i`` (``py_ready`` is a register output, so the stream models of
  :mod:`kwsbnn.sim.streams` work unchanged).
- **A result FIFO** (2 entries) behind ``o``: ``res_valid``/``res_payload``/``res_ready`` for Python;
  with ``res_stall = s`` the network's ``o.ready`` is low on a random ``s / 65536`` of cycles.
  ``res_count`` counts results. With ``res_auto`` the FIFO drains itself and each result goes into a
  text file instead (``+kwsbnn_res=PATH``), one line ``<cycle> <payload hex>`` per result, where
  ``cycle`` counts clock cycles since reset: Python sleeps until ``res_wake`` (``res_count >=
  res_wake_at``) and reads them all at once.
- **The layer taps** of a ``taps=True`` network, passed through as ``tap_<layer>_valid/_payload``.
- **The weight loader** of an engine-style network (``load_words`` > 0): the words of the hex file
  ``+kwsbnn_wl=PATH`` (the generator's ``weights.hex``, written by the testbench's caller), sent on
  the network's loader port ``wl`` once, from the first cycle out of reset on; like the weight
  memory, the loader is not reset by ``rst_req``.

``rst_req`` resets the network and the harness one cycle later. Random choices come from one
xorshift32 register seeded from ``seed`` at reset.
"""

TOP = "kws_sim"
AW = 15     # source memory: 32768 words (8 res8 inferences)


def harness_verilog(i_width: int, o_width: int, taps: list[dict], core: str = "kws_top",
                    load_words: int = 0) -> str:
    """The Verilog text of ``kws_sim`` around ``core`` (with the weight loader when ``load_words``)."""
    iw, ow = int(i_width), int(o_width)
    nl = int(load_words)
    loader = "" if not nl else f"""
  // Weight image -> wl (once; not reset: the weight memory keeps its contents over a reset)
  reg [63:0] wl_mem [0:{nl - 1}];
  reg [31:0] wl_idx = 32'd0;
  string wl_file;
  initial begin
    if (!$value$plusargs("kwsbnn_wl=%s", wl_file)) wl_file = "weights.hex";
    $readmemh(wl_file, wl_mem);
  end
  wire dut_wl_ready;
  wire dut_wl_valid = !rst && wl_idx < {nl};
  always @(posedge clk) if (dut_wl_valid && dut_wl_ready) wl_idx <= wl_idx + 32'd1;
"""
    wl_conn = "" if not nl else (",\n    .wl__valid(dut_wl_valid), .wl__payload(wl_mem[wl_idx]), "
                                 ".wl__ready(dut_wl_ready)")
    tap_ports = "".join(f",\n  output wire tap_{t['layer']}_valid, output wire [{t['width'] - 1}:0] "
                        f"tap_{t['layer']}_payload" for t in taps)
    tap_conns = "".join(f",\n    .tap_{t['layer']}_valid(tap_{t['layer']}_valid), "
                        f".tap_{t['layer']}_payload(tap_{t['layer']}_payload)" for t in taps)
    return f"""// Simulation-only harness of {core} (kwsbnn.sim.harness); not for synthesis.
module {TOP}(
  input  wire clk,
  input  wire rst_req,
  input  wire [31:0] seed,
  input  wire src_bulk,
  input  wire src_load,
  input  wire [{AW - 1}:0] src_load_addr,
  input  wire [31:0] src_end,
  input  wire [31:0] src_wake_at,
  input  wire [15:0] src_gap,
  output reg  [31:0] src_rd,
  output reg  src_wake,
  input  wire py_valid,
  input  wire [{iw - 1}:0] py_payload,
  output wire py_ready,
  input  wire res_ready,
  input  wire [15:0] res_stall,
  input  wire res_auto,
  input  wire [31:0] res_wake_at,
  output wire res_valid,
  output wire [{ow - 1}:0] res_payload,
  output reg  [31:0] res_count,
  output reg  res_wake,
  output reg  [63:0] cycle{tap_ports}
);
  string src_file, res_file;
  integer res_fd = 0;
  initial begin
    if (!$value$plusargs("kwsbnn_src=%s", src_file)) src_file = "kwsbnn_src.hex";
    if ($value$plusargs("kwsbnn_res=%s", res_file)) res_fd = $fopen(res_file, "w");
  end

  reg rst = 1'b1;
  reg bulk = 1'b0;
  reg auto = 1'b0;
  reg [31:0] rng = 32'h1;
  wire [31:0] x1 = rng ^ (rng << 13);
  wire [31:0] x2 = x1 ^ (x1 >> 17);
  wire [31:0] rng_next = x2 ^ (x2 << 5);
  always @(posedge clk) begin
    rst <= rst_req;
    bulk <= src_bulk;
    auto <= res_auto;
    cycle <= rst ? 64'd0 : cycle + 64'd1;
    rng <= rst ? (seed | 32'h1) : rng_next;
  end

  wire dut_i_ready, dut_o_valid;
  wire [{ow - 1}:0] dut_o_payload;

  // Source memory -> i
  reg [{iw - 1}:0] mem [0:{(1 << AW) - 1}];
  reg b_valid = 1'b0;
  reg [{iw - 1}:0] b_payload;
  wire b_fire = bulk & b_valid & dut_i_ready;
  wire [31:0] rd_next = src_rd + {{31'b0, b_fire}};
  always @(posedge clk) begin
    if (src_load) $readmemh(src_file, mem, src_load_addr);
    if (rst) begin
      b_valid <= 1'b0;
      src_rd <= 32'b0;
    end else begin
      src_rd <= rd_next;
      if (!b_valid || b_fire) begin
        b_valid <= bulk && (rd_next < src_end) && (rng[31:16] >= src_gap);
        b_payload <= mem[rd_next[{AW - 1}:0]];
      end
    end
    src_wake <= rd_next >= src_wake_at;
  end

  // Python -> 2-entry FIFO -> i
  reg [{iw - 1}:0] pf0, pf1;
  reg [1:0] pcnt = 2'd0;
  assign py_ready = pcnt != 2'd2;
  wire p_push = py_valid && pcnt != 2'd2;
  wire p_pop = !bulk && pcnt != 2'd0 && dut_i_ready;
  always @(posedge clk) begin
    if (rst) pcnt <= 2'd0;
    else begin
      if (p_push && !p_pop) begin
        if (pcnt == 2'd0) pf0 <= py_payload; else pf1 <= py_payload;
        pcnt <= pcnt + 2'd1;
      end else if (!p_push && p_pop) begin
        pf0 <= pf1;
        pcnt <= pcnt - 2'd1;
      end else if (p_push && p_pop) begin
        if (pcnt == 2'd1) pf0 <= py_payload; else begin pf0 <= pf1; pf1 <= py_payload; end
      end
    end
  end
  wire dut_i_valid = bulk ? b_valid : pcnt != 2'd0;
  wire [{iw - 1}:0] dut_i_payload = bulk ? b_payload : pf0;

  // o -> 2-entry FIFO -> Python
  reg [{ow - 1}:0] rf0, rf1;
  reg [1:0] rcnt = 2'd0;
  reg stall = 1'b0;
  wire dut_o_ready = rcnt != 2'd2 && !stall;
  wire r_push = dut_o_valid && dut_o_ready;
  wire r_pop = (auto || res_ready) && rcnt != 2'd0;
  assign res_valid = rcnt != 2'd0;
  assign res_payload = rf0;
  always @(posedge clk) begin
    stall <= rng[15:0] < res_stall;
    if (rst) begin
      rcnt <= 2'd0;
      res_count <= 32'b0;
    end else begin
      if (r_push) res_count <= res_count + 32'd1;
      if (r_push && auto && res_fd != 0) begin
        $fwrite(res_fd, "%0d %h\\n", cycle, dut_o_payload);
        $fflush(res_fd);
      end
      if (r_push && !r_pop) begin
        if (rcnt == 2'd0) rf0 <= dut_o_payload; else rf1 <= dut_o_payload;
        rcnt <= rcnt + 2'd1;
      end else if (!r_push && r_pop) begin
        rf0 <= rf1;
        rcnt <= rcnt - 2'd1;
      end else if (r_push && r_pop) begin
        if (rcnt == 2'd1) rf0 <= dut_o_payload; else begin rf0 <= rf1; rf1 <= dut_o_payload; end
      end
    end
    res_wake <= res_count >= res_wake_at;
  end

{loader}
  {core} dut(
    .clk(clk), .rst(rst),
    .i__valid(dut_i_valid), .i__payload(dut_i_payload), .i__ready(dut_i_ready),
    .o__valid(dut_o_valid), .o__payload(dut_o_payload), .o__ready(dut_o_ready){wl_conn}{tap_conns});
endmodule
"""


# Signals Python writes (read only by registers above) and signals it reads.
WRITTEN = ["clk", "rst_req", "seed", "src_bulk", "src_load", "src_load_addr", "src_end", "src_wake_at",
           "src_gap", "py_valid", "py_payload", "res_ready", "res_stall", "res_auto", "res_wake_at"]
READ = ["src_rd", "src_wake", "py_ready", "res_valid", "res_payload", "res_count", "res_wake", "cycle"]


def harness_config(taps: list[dict]) -> str:
    """A Verilator configuration file that makes only the harness's ports visible to VPI (instead of
    ``--public-flat-rw``, which makes every signal of the design public and the simulation about five
    times slower)."""
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{TOP}" -var "{v}"' for v in WRITTEN]
    reads = READ + [f"tap_{t['layer']}_{k}" for t in taps for k in ("valid", "payload")]
    lines += [f'public_flat_rd -module "{TOP}" -var "{v}"' for v in reads]
    return "\n".join(lines) + "\n"
