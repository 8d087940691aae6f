"""cocotb stream models for valid/ready interfaces: a source with random gaps, a sink with
random backpressure. Both sample the handshake in the ReadOnly phase before each rising edge, so
they are free of races with the design's registers.

Without gaps or stalls, both sleep until the handshake signal they wait for changes (``ready`` for
the source, ``valid`` for the sink) rather than waking on every clock edge: Python then runs only
at stream transfers, which is what makes whole-network simulation fast.

A stream named ``i`` of an Amaranth top appears in its Verilog as ``i__valid``, ``i__ready`` and
``i__payload``; pass the prefix (``"i"``) and the DUT handle (``sep="_"`` for ``py_valid`` etc., the
simulation harness's names).

``poll=True`` makes either model wake at every clock edge instead (what a naive testbench does):
the reference of the simulation-speed benchmark.
"""

import random

from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time


class StreamSource:
    """Drives ``<prefix>__valid/__payload``; ``gap`` is the chance of an idle cycle before each item."""

    def __init__(self, dut, prefix: str, clk, *, gap: float = 0.0, seed: int = 0, sep: str = "__",
                 poll: bool = False):
        self.valid = getattr(dut, f"{prefix}{sep}valid")
        self.ready = getattr(dut, f"{prefix}{sep}ready")
        self.payload = getattr(dut, f"{prefix}{sep}payload")
        self.clk = clk
        self.gap = gap
        self.poll = poll
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
            if self.ready.value:
                break
            # Sleep until ready rises instead of waking up on every clock edge.
            await (RisingEdge(self.clk) if self.poll else RisingEdge(self.ready))
        await RisingEdge(self.clk)
        self.valid.value = 0
        self.sent += 1

    async def send_all(self, payloads) -> None:
        for p in payloads:
            await self.send(p)


class StreamSink:
    """Takes items from ``<prefix>__valid/__payload`` with ready low on a ``stall`` fraction of cycles."""

    def __init__(self, dut, prefix: str, clk, *, stall: float = 0.0, seed: int = 1, sep: str = "__",
                 poll: bool = False):
        self.valid = getattr(dut, f"{prefix}{sep}valid")
        self.ready = getattr(dut, f"{prefix}{sep}ready")
        self.payload = getattr(dut, f"{prefix}{sep}payload")
        self.clk = clk
        self.stall = stall
        self.poll = poll
        self.rng = random.Random(seed)
        self.ready.value = 0
        self._last = get_sim_time("step")
        self.period = None

    def _elapsed(self) -> int:
        """Clock cycles since the previous call (simulation time / clock period)."""
        now = get_sim_time("step")
        cycles = round((now - self._last) / self.period) if self.period else 0
        self._last = now
        return cycles

    async def recv(self) -> tuple[int, int]:
        """Wait for the next item; returns ``(payload, cycles_waited)`` (cycles counted from the
        previous item's transfer, through a free-running counter, not by waking on every edge)."""
        if not self.stall and not self.poll:
            self.ready.value = 1
            while True:
                await ReadOnly()
                if self.valid.value:
                    break
                await RisingEdge(self.valid)
            payload = self.payload.value.to_unsigned()
            await RisingEdge(self.clk)
            return payload, self._elapsed()
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
                self._elapsed()
                return payload, cycles
