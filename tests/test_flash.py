"""The SPI flash reader (:class:`kwsbnn.boards.flash.FlashBoot`) alone, in Amaranth's simulator
with a Python model of the flash (mode 0) and of the loader's byte port: the command sequence,
the wait after the wake-up, the SPI clock, every byte of the image in order under backpressure,
the early stop on a refused header, the verdict and the cycle count. (The whole board with a flash
that starts asleep runs in Verilator: ``tests/test_board_sim.py``.)"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from kwsbnn.boards import protocol as p
from kwsbnn.boards.flash import CMD_READ, CMD_WAKE, FLASH_OFFSET, WAKE_SECONDS, FlashBoot


def boot(clk_hz: float, image: bytes, *, header_status=p.LoadStatus.LOADED,
         final_status=p.LoadStatus.LOADED, ready_p: float = 1.0, seed: int = 0) -> dict:
    """Run the reader until it is done; the flash holds ``image`` at FLASH_OFFSET. The loader model
    takes a byte when ``ready`` (probability ``ready_p`` a cycle), says ``header_status`` once it
    has the 12 header bytes and ``final_status`` after the last one."""
    words = (len(image) - p.IMAGE_HEADER_BYTES) // 8
    dut = FlashBoot(words=words, clk_freq=clk_hz)
    rng = np.random.default_rng(seed)
    log = {"selects": [], "taken": [], "starts": [], "finishes": [], "cycles": 0, "rises": []}

    async def bench(ctx):
        cycle, prev_cs, prev_sck = 0, 1, 0
        bits_in, out_bits, command = [], [], None
        taken = log["taken"]
        while ctx.get(dut.busy) and cycle < 200_000:
            ready = int(rng.random() < ready_p)
            ctx.set(dut.o.ready, ready)
            if ctx.get(dut.start):
                log["starts"].append(cycle)
            if ctx.get(dut.finish):
                log["finishes"].append(cycle)
            if ready and ctx.get(dut.o.valid):
                taken.append(ctx.get(dut.o.payload))
            await ctx.tick()
            cycle += 1
            status = header_status if len(taken) >= p.IMAGE_HEADER_BYTES else p.LoadStatus.LOADED
            if len(taken) == len(image):
                status = final_status
            ctx.set(dut.status, status)
            cs, sck = ctx.get(dut.cs_n), ctx.get(dut.sck)
            if prev_cs and not cs:                       # selected
                log["selects"].append([cycle, []])
                bits_in, out_bits, command = [], [], None
            if not cs and sck and not prev_sck:          # rising edge: the flash samples copi
                log["rises"].append(cycle)
                bits_in.append(ctx.get(dut.copi))
                if len(bits_in) % 8 == 0:
                    byte = int("".join(map(str, bits_in[-8:])), 2)
                    log["selects"][-1][1].append(byte)
                    sent = log["selects"][-1][1]
                    if len(sent) == 4 and sent[0] == CMD_READ:
                        addr = (sent[1] << 16) | (sent[2] << 8) | sent[3]
                        command = addr
                        data = image[addr - FLASH_OFFSET:] if addr == FLASH_OFFSET else b""
                        out_bits = [(b >> (7 - k)) & 1 for b in data for k in range(8)]
            if not cs and prev_sck and not sck and command is not None and out_bits:
                ctx.set(dut.cipo, out_bits.pop(0))       # falling edge: the next data bit
            prev_cs, prev_sck = cs, sck
        log["cycles"] = cycle
        log["result"] = ctx.get(dut.result)
        log["cs_end"] = ctx.get(dut.cs_n)

    sim = Simulator(dut)
    sim.add_clock(1 / clk_hz)
    sim.add_testbench(bench)
    sim.run()
    log["dut"] = dut
    return log


def _image(words: int, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return p.WeightImage(0xC0FFEE, tuple(int(w) for w in rng.integers(0, 2**63, words))).encode()


@pytest.mark.parametrize("clk_hz", [8e6, 24e6, 48e6])
def test_reader_wakes_the_flash_then_reads_every_byte(clk_hz):
    """0xAB alone, chip select high for the wake time, then READ at 1 MiB and every byte of the
    image in order; one start before the first byte, one finish after the last; the verdict is
    the loader's; the SPI clock is the sync clock / (2 half); the cycle count is boot_cycles."""
    image = _image(5)
    log = boot(clk_hz, image)
    dut = log["dut"]
    (t_wake, wake), (t_read, read) = log["selects"]
    assert wake == [CMD_WAKE]
    assert read[:4] == [CMD_READ, FLASH_OFFSET >> 16, (FLASH_OFFSET >> 8) & 0xFF, FLASH_OFFSET & 0xFF]
    # The reader's wait, and the W25Q128JV's release time (tRES1, 3 us), after the wake command.
    assert t_read - t_wake >= WAKE_SECONDS * clk_hz > 3e-6 * clk_hz
    assert bytes(log["taken"]) == image and log["cs_end"] == 1
    assert len(log["starts"]) == 1 and len(log["finishes"]) == 1
    assert log["result"] == p.FlashStatus.LOADED
    gaps = set(np.diff(log["rises"][:8]))                    # within the wake command
    assert gaps == {dut.sck_divisor} and dut.sck_divisor == 2 * max(1, int(np.ceil(clk_hz / 24e6)))
    # From the first chip select to the last byte taken: the modelled count (and the few cycles
    # of the verdict after it).
    assert 0 <= log["cycles"] - t_wake - dut.boot_cycles <= 8


def test_reader_under_backpressure_and_a_bad_crc():
    """A loader that takes bytes one cycle in three: the same bytes in order; its BAD_CRC verdict
    at the end becomes the reader's."""
    image = _image(4, seed=2)
    log = boot(24e6, image, ready_p=0.35, final_status=p.LoadStatus.BAD_CRC, seed=3)
    assert bytes(log["taken"]) == image and log["result"] == p.FlashStatus.BAD_CRC


@pytest.mark.parametrize("status", [p.LoadStatus.WRONG_MODEL, p.LoadStatus.BAD_LENGTH,
                                    p.LoadStatus.BAD_FORMAT])
def test_reader_stops_after_a_refused_header(status):
    """A header the loader refuses: the read ends after its 12 bytes (chip select released, no
    finish), and INFO's verdict names it."""
    image = _image(6)
    log = boot(24e6, image, header_status=status)
    assert bytes(log["taken"]) == image[:p.IMAGE_HEADER_BYTES]
    assert log["finishes"] == [] and log["cs_end"] == 1
    assert log["result"] == p.FlashStatus.LOADED + status
