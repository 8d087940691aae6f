"""cocotb stream models for valid/ready interfaces: a source with random gaps, a sink with
random backpressure. Both sample the handshake in the ReadOnly phase before each rising edge, so
they are free of races with the design's registers.

A stream named ``i`` of an Amaranth top appears in its Verilog as ``i__valid``, ``i__ready`` and
``i__payload``; pass the prefix (``"i"``) and the DUT handle.
"""

import random

from cocotb.triggers import ReadOnly, RisingEdge


class StreamSource:
    """Drives ``<prefix>__valid/__payload``; ``gap`` is the chance of an idle cycle before each item."""

    def __init__(self, dut, prefix: str, clk, *, gap: float = 0.0, seed: int = 0):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.gap = gap
        self.rng = random.Random(seed)
        self.sent = 0
        self.valid.value = 0

    async def send(self, payload: int) -> None:
        """Offer ``payload`` until it is taken; returns right after the accepting clock edge."""
        while self.gap and self.rng.random() < self.gap:
            self.valid.value = 0
            await RisingEdge(self.clk)
        self.valid.value = 1
        self.payload.value = payload
        while True:
            await ReadOnly()
            taken = bool(self.ready.value)
            await RisingEdge(self.clk)
            if taken:
                break
        self.valid.value = 0
        self.sent += 1

    async def send_all(self, payloads) -> None:
        for p in payloads:
            await self.send(p)


class StreamSink:
    """Takes items from ``<prefix>__valid/__payload`` with ready low on a ``stall`` fraction of cycles."""

    def __init__(self, dut, prefix: str, clk, *, stall: float = 0.0, seed: int = 1):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.stall = stall
        self.rng = random.Random(seed)
        self.ready.value = 0

    async def recv(self) -> tuple[int, int]:
        """Wait for the next item; returns ``(payload, cycle_count_waited)``."""
        cycles = 0
        while True:
            self.ready.value = 0 if (self.stall and self.rng.random() < self.stall) else 1
            await ReadOnly()
            fire = bool(self.valid.value) and bool(self.ready.value)
            payload = self.payload.value.to_unsigned() if fire else None
            await RisingEdge(self.clk)
            cycles += 1
            if fire:
                self.ready.value = 0
                return payload, cycles
