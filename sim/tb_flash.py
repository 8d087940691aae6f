"""cocotb testbench of an engine-style board top that reads its weight image from the SPI flash at
power-up (:class:`kwsbnn.boards.flash.FlashBoot`), with a model of the flash on its four pins.

The flash model (:class:`SpiFlash`, SPI mode 0) starts in deep power-down, as the iCE40 leaves it
after configuration: until it gets the release command (0xAB) and then ``tRES1`` (3 us) with chip
select high, it ignores every command and its data pin reads 1. It answers READ (0x03) with its
contents: 0xFF everywhere except ``KWSBNN_TB_FLASH`` (hex) at :data:`~kwsbnn.boards.flash.FLASH_OFFSET`.
Any command before the flash is awake is counted as a violation.

Checks: INFO says READING or the final verdict, which must be ``KWSBNN_TB_EXPECT`` (a
:class:`~kwsbnn.boards.protocol.FlashStatus` name); with LOADED, INFO says the weights are loaded
and ``KWSBNN_TB_COUNT`` random INFERs equal the golden model; otherwise INFER is answered
NO_WEIGHTS, then the good image ``KWSBNN_TB_IMAGE`` goes over the UART (LOADED) and the INFERs
equal the golden model. Then a reset: the weights stay and the flash is not read again. Writes a
JSON summary (checks, failures, the flash's transactions and violations, the boot time in cycles)
to ``KWSBNN_TB_RESULT``.
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import Edge, First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from kwsbnn.boards import protocol as p
from kwsbnn.boards.flash import CMD_READ, CMD_WAKE, FLASH_OFFSET
from kwsbnn.sim.tb_board import EngineBoardEnv, connect

#: The model's release time from deep power-down (tRES1 of the W25Q128JV), in seconds of the
#: design's clock (the simulation's clock period stands for ``1 / KWSBNN_TB_CLK_HZ``).
T_RES1 = 3e-6


class SpiFlash:
    """An SPI NOR flash in mode 0 on ``cs_n``, ``sck``, ``copi`` (in) and ``cipo`` (out), asleep at
    power-up. ``contents``: ``{address: bytes}``; every other byte reads 0xFF."""

    def __init__(self, dut, contents: dict, t_res1_ns: float):
        self.cs_n, self.sck, self.copi, self.cipo = (dut.flash_cs_n, dut.flash_sck,
                                                     dut.flash_copi, dut.flash_cipo)
        self.mem = {}
        for base, data in contents.items():
            for i, b in enumerate(data):
                self.mem[base + i] = b
        self.t_res1_ns = t_res1_ns
        self.asleep = True
        self.awake_at = None            # ns: when the release command ended
        self.transactions = []          # (command, address or None, bytes read)
        self.violations = []
        self.first_select_ns = None
        self.last_read_ns = None

    async def run(self):
        self.cipo.value = 1
        while True:
            while int(self.cs_n.value) == 1:
                await Edge(self.cs_n)
            now = get_sim_time("ns")
            if self.first_select_ns is None:
                self.first_select_ns = now
            await self._select(now)

    async def _select(self, now):
        awake = not self.asleep and now >= self.awake_at + self.t_res1_ns
        if not self.asleep and not awake:
            self.violations.append(f"selected {now - self.awake_at:.0f} ns after the release "
                                   f"command (tRES1 is {self.t_res1_ns:.0f} ns)")
        done = cocotb.start_soon(self._until_deselect())
        cmd = await self._byte_in_watch(done)
        if cmd is None:
            return None
        if cmd == CMD_WAKE:
            await done
            self.asleep = False
            self.awake_at = get_sim_time("ns")
            self.transactions.append(("wake", None, 0))
            return cmd
        if not awake:
            self.violations.append(f"command 0x{cmd:02x} while in deep power-down")
            self.transactions.append((f"0x{cmd:02x} (asleep)", None, 0))
            await done
            return cmd
        if cmd != CMD_READ:
            self.violations.append(f"unexpected command 0x{cmd:02x}")
            await done
            return cmd
        addr = 0
        for _ in range(3):
            b = await self._byte_in_watch(done)
            if b is None:
                return cmd
            addr = (addr << 8) | b
        n = 0
        while True:
            byte = self.mem.get(addr + n, 0xFF)
            for k in range(8):
                # Each data bit goes out after a falling edge of sck (the first after the last
                # address bit's): the reader samples it before the next one.
                edge = await self._edge_or_deselect(done, falling=True)
                if not edge:
                    self.transactions.append(("read", addr, n))
                    self.cipo.value = 1
                    return cmd
                self.cipo.value = (byte >> (7 - k)) & 1
            n += 1
            self.last_read_ns = get_sim_time("ns")

    async def _until_deselect(self):
        while int(self.cs_n.value) == 0:
            await Edge(self.cs_n)

    async def _edge_or_deselect(self, done, falling: bool):
        while True:
            if done.done():
                return False
            trig = await First(Edge(self.sck), Edge(self.cs_n))
            if int(self.cs_n.value) == 1:
                return False
            if trig is not None and int(self.sck.value) == (0 if falling else 1):
                return True

    async def _byte_in_watch(self, done):
        v = 0
        for _ in range(8):
            if not await self._edge_or_deselect(done, falling=False):
                return None
            v = (v << 1) | int(self.copi.value)
        return v


@cocotb.test()
async def board_flash(dut):
    env = os.environ
    e = EngineBoardEnv(env)
    g, image, golden, rng = e.g, e.image, e.golden, e.rng
    clk_ns, clk_hz, bit_ns, byte_ns, answer_ns = e.clk_ns, e.clk_hz, e.bit_ns, e.byte_ns, e.answer_ns
    count = int(env.get("KWSBNN_TB_COUNT", "2"))
    expect = p.FlashStatus[env["KWSBNN_TB_EXPECT"]]
    flash = SpiFlash(dut, {FLASH_OFFSET: bytes.fromhex(env.get("KWSBNN_TB_FLASH", ""))},
                     t_res1_ns=T_RES1 * clk_hz * clk_ns)
    cocotb.start_soon(flash.run())
    host = await connect(dut, clk_ns, bit_ns, types=(p.FrameType.INFO, p.FrameType.RESULT,
                                                    p.FrameType.ERROR, p.FrameType.LOADED))
    drv = host.drv
    failures, checks = [], {}
    wall0 = time.monotonic()

    def check(name, ok, detail=""):
        checks[name] = checks.get(name, 0) + 1
        if not ok:
            failures.append(f"{name}: {detail}")

    async def info(name):
        await drv.send(p.encode_frame(p.FrameType.PING))
        item = await host.recv(answer_ns)
        ok = isinstance(item, p.Frame) and item.type == p.FrameType.INFO
        check(name, ok, f"expected INFO, got {item}")
        return p.BoardInfo.parse(item.payload) if ok else None

    async def infer(name):
        shape = (g.channels, g.frames, g.coeffs)
        x = rng.integers(0, 2, shape) if g.elem_bits == 1 else rng.integers(-127, 128, shape)
        await drv.send(p.infer_request(x, g))
        item = await host.recv(answer_ns)
        if not (isinstance(item, p.Frame) and item.type == p.FrameType.RESULT):
            check(name, False, f"expected RESULT, got {item}")
            return
        want = golden.run(x[None])
        r = p.parse_result(item, g.n_classes, g.score_bytes)
        check(name, r.cls == int(want.classes[0]) and r.scores == want.scores[0].tolist(),
              f"board {r}, golden cls {int(want.classes[0])} scores {want.scores[0].tolist()}")

    # Wait for the boot's verdict (INFO's flash byte leaves READING).
    verdict, polls = None, 0
    while polls < 1000:
        got = await info("info while booting")
        polls += 1
        if got is None or got.flash != p.FlashStatus.READING:
            verdict = got
            break
    boot_ns = get_sim_time("ns")
    check("flash verdict", verdict is not None and verdict.flash == expect,
          f"INFO flash {verdict.flash if verdict else None}, expected {expect.name}")
    loaded_from_flash = expect == p.FlashStatus.LOADED
    if verdict is not None:
        want = p.Weights.LOADED if loaded_from_flash else p.Weights.NONE
        check("weights after boot", verdict.weights == want, f"weights {verdict.weights}, want {want}")
    if not loaded_from_flash:
        await drv.send(p.infer_request(np.zeros((g.channels, g.frames, g.coeffs), int), g))
        item = await host.recv(answer_ns)
        check("infer without weights", isinstance(item, p.Frame) and item.type == p.FrameType.ERROR
              and item.payload == bytes([p.ErrorCode.NO_WEIGHTS]), f"{item}")
        await drv.send(p.encode_frame(p.FrameType.LOAD, image.encode()))
        item = await host.recv(answer_ns + len(image.encode()) * byte_ns)
        check("load over the uart", isinstance(item, p.Frame) and item.type == p.FrameType.LOADED
              and item.payload == bytes([p.LoadStatus.LOADED]), f"{item}")
    for _ in range(count):
        await infer("inference")

    # A reset keeps the weights and does not read the flash again.
    reads = len(flash.transactions)
    await RisingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await Timer(2 * byte_ns, "ns")
    after = await info("info after reset")
    if after is not None:
        check("weights after reset", after.weights == p.Weights.LOADED, f"{after.weights}")
        check("flash verdict after reset", after.flash == expect, f"{after.flash}")
    await infer("inference after reset")
    check("no flash access after reset", len(flash.transactions) == reads, f"{flash.transactions[reads:]}")
    check("flash woken before use", not flash.violations, "; ".join(flash.violations[:3]))

    first = flash.first_select_ns or 0
    summary = {"checks": checks, "failures": failures[:20], "expect": expect.name,
               "flash": verdict.flash if verdict else None,
               "transactions": [list(t) for t in flash.transactions], "violations": flash.violations,
               "boot_cycles": ((flash.last_read_ns or first) - first) / clk_ns,
               "verdict_cycles": boot_ns / clk_ns, "polls": polls,
               "wall_seconds": time.monotonic() - wall0}
    if env.get("KWSBNN_TB_RESULT"):
        with open(env["KWSBNN_TB_RESULT"], "w") as f:
            json.dump(summary, f)
    assert not failures, f"{len(failures)} checks failed; first: {failures[0]}"
