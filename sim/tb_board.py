"""cocotb testbench of the board top (:class:`kwsbnn.boards.top.KwsTop`, ``platform=None``) over
its UART pins, speaking host protocol 2 (its version-1 part, PING and INFER; streaming is
:mod:`kwsbnn.sim.tb_stream`) with :mod:`kwsbnn.boards.protocol`'s encoder and decoder.

A UART model drives ``rx`` with one :class:`~cocotb.triggers.Timer` per bit, and another samples
``tx`` from each start bit's falling edge in the middle of every bit: Python wakes ten times per
byte, never on every clock. Checks, in order: INFO; ``KWSBNN_TB_COUNT`` random inferences equal to
the golden model (class, scores, LEDs); a corrupted CRC (ERROR checksum, no LED change); a bad
version; an unknown type; a bad length; a PING with a bad CRC; garbage before a frame; a host
that stops mid-payload (ERROR timeout); a reset in the middle of a frame; each error followed by a
correct inference.

Configured by :func:`kwsbnn.sim.board.simulate_board` through ``KWSBNN_TB_*`` variables; writes a
JSON summary to ``KWSBNN_TB_RESULT``.
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, Timer, with_timeout
from cocotb.utils import get_sim_time

from kwsbnn.boards import protocol as p
from kwsbnn.sw.golden import GoldenModel


class UartDriver:
    """Sends bytes on ``sig`` (8N1, LSB first) at ``bit_ns`` per bit."""

    def __init__(self, sig, bit_ns: int):
        self.sig = sig
        self.bit = bit_ns
        sig.value = 1

    async def send(self, data: bytes) -> None:
        for b in bytes(data):
            self.sig.value = 0
            await Timer(self.bit, "ns")
            for i in range(8):
                self.sig.value = (b >> i) & 1
                await Timer(self.bit, "ns")
            self.sig.value = 1
            await Timer(self.bit, "ns")


class UartMonitor:
    """Receives bytes from ``sig`` into :attr:`queue` as ``(byte, sim time in ns at its stop
    bit)``; counts framing errors (stop bit low)."""

    def __init__(self, sig, bit_ns: int):
        self.sig = sig
        self.bit = bit_ns
        self.queue = Queue()
        self.framing_errors = 0

    async def run(self) -> None:
        while True:
            await FallingEdge(self.sig)
            await Timer(self.bit * 3 // 2, "ns")        # middle of data bit 0
            byte = 0
            for i in range(8):
                byte |= int(self.sig.value) << i
                await Timer(self.bit, "ns")
            if not int(self.sig.value):
                self.framing_errors += 1
            self.queue.put_nowait((byte, get_sim_time("ns")))


class HostSide:
    """Frames in and out through the UART models, with the protocol module's decoder."""

    def __init__(self, driver: UartDriver, monitor: UartMonitor):
        self.drv, self.mon = driver, monitor
        self.dec = p.FrameDecoder(types=(p.FrameType.INFO, p.FrameType.RESULT, p.FrameType.ERROR,
                                             p.FrameType.STARTED))
        self.items = []
        self.last_byte_ns = 0       # when the last byte the decoder took arrived

    async def recv(self, timeout_ns: int):
        """The next frame (or decoder FrameError); None when nothing completes in ``timeout_ns``."""
        deadline = get_sim_time("ns") + timeout_ns
        while not self.items:
            left = deadline - get_sim_time("ns")
            if left <= 0:
                return None
            try:
                b, self.last_byte_ns = await with_timeout(self.mon.queue.get(), int(left), "ns")
            except SimTimeoutError:
                return None
            self.items += self.dec.feed(bytes([b]))
        return self.items.pop(0)


class EngineBoardEnv:
    """The settings an engine-style board testbench reads from the ``KWSBNN_TB_*`` variables of
    :func:`kwsbnn.sim.board._run` (link geometry, golden model, clock, UART bit time, timeout),
    the cost model's ``KWSBNN_TB_CYCLES``, ``KWSBNN_TB_IMAGE`` and ``KWSBNN_TB_SEED``; and
    :attr:`answer_ns`, the longest wait for an answer: two inferences and their replays, the
    answer's bytes, a timeout, margin."""

    def __init__(self, env):
        self.g = p.LinkGeometry(**json.loads(env["KWSBNN_TB_GEOMETRY"]))
        self.image = p.WeightImage.parse(bytes.fromhex(env["KWSBNN_TB_IMAGE"]))
        self.golden = GoldenModel(env["KWSBNN_TB_MODEL"])
        self.clk_ns = int(env["KWSBNN_TB_CLK_NS"])
        self.clk_hz = float(env["KWSBNN_TB_CLK_HZ"])
        self.bit_ns = int(env["KWSBNN_TB_DIVISOR"]) * self.clk_ns
        self.byte_ns = 10 * self.bit_ns
        self.timeout_ns = int(env["KWSBNN_TB_TIMEOUT_CYCLES"]) * self.clk_ns
        self.cycles = int(env["KWSBNN_TB_CYCLES"])          # of an inference, by the cost model
        self.rng = np.random.default_rng(int(env.get("KWSBNN_TB_SEED", "0")))
        g = self.g
        self.answer_ns = (2 * self.cycles + 8 * g.transfers) * self.clk_ns \
            + (p.OVERHEAD + max(g.result_bytes, p.BoardInfo.SIZE) + 4) * self.byte_ns \
            + self.timeout_ns + 200 * self.clk_ns


async def connect(dut, clk_ns: int, bit_ns: int, types=None) -> HostSide:
    """Start the board top: its clock (unless the C++ side drives it: ``KWSBNN_TB_CLOCK_NS``), the
    UART models on ``rx`` / ``tx``, four cycles of reset, then two byte times of idle line. The host
    side's decoder takes ``types`` (default: INFO, RESULT, ERROR, STARTED)."""
    if not float(os.environ.get("KWSBNN_TB_CLOCK_NS", "0")):   # no C++ clock: drive it from here
        cocotb.start_soon(Clock(dut.clk, clk_ns, unit="ns").start())
    mon = UartMonitor(dut.tx, bit_ns)
    cocotb.start_soon(mon.run())
    host = HostSide(UartDriver(dut.rx, bit_ns), mon)
    if types is not None:
        host.dec = p.FrameDecoder(types=types)
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await Timer(20 * bit_ns, "ns")
    return host


@cocotb.test()
async def board_protocol(dut):
    env = os.environ
    g = p.LinkGeometry(**json.loads(env["KWSBNN_TB_GEOMETRY"]))
    info_want = p.BoardInfo.parse(bytes.fromhex(env["KWSBNN_TB_INFO"]))
    golden = GoldenModel(env["KWSBNN_TB_MODEL"])
    clk_ns = int(env["KWSBNN_TB_CLK_NS"])
    bit_ns = int(env["KWSBNN_TB_DIVISOR"]) * clk_ns
    timeout_ns = int(env["KWSBNN_TB_TIMEOUT_CYCLES"]) * clk_ns
    latency_ns = int(env["KWSBNN_TB_LATENCY"]) * clk_ns
    count = int(env.get("KWSBNN_TB_COUNT", "20"))
    rng = np.random.default_rng(int(env.get("KWSBNN_TB_SEED", "0")))
    byte_ns = 10 * bit_ns
    # Longest wait for an answer: the answer's bytes, the network's latency, a timeout, margin.
    answer_ns = (p.OVERHEAD + max(g.result_bytes, p.BoardInfo.SIZE) + 4) * byte_ns + latency_ns \
        + timeout_ns + 200 * clk_ns

    host = await connect(dut, clk_ns, bit_ns)
    drv, mon = host.drv, host.mon

    failures, checks, errors_seen = [], {}, []
    cls_mask = (1 << len(dut.leds)) - 1

    def check(name, ok, detail=""):
        checks[name] = checks.get(name, 0) + 1
        if not ok:
            failures.append(f"{name}: {detail}")

    def random_input(clean=True):
        """A random input whose INFER frame has no SYNC byte after its first (so that the parts of
        a rejected frame the board hunts through cannot start a spurious frame)."""
        while True:
            shape = (g.channels, g.frames, g.coeffs)
            x = rng.integers(0, 2, shape) if g.elem_bits == 1 else rng.integers(-127, 128, shape)
            frame = p.infer_request(x, g)
            if not clean or p.SYNC not in frame[1:]:
                return x, frame

    async def expect_error(name, code):
        item = await host.recv(answer_ns)
        want = p.Frame(p.FrameType.ERROR, bytes([code]))
        check(name, item == want, f"expected {want}, got {item}")
        if item == want:
            errors_seen.append(p.ErrorCode(code).name)

    async def quiet(name):
        item = await host.recv(timeout_ns + 4 * byte_ns)
        check(name + " (nothing more)", item is None, f"unexpected {item}")

    inferences = 0
    last_cls = [0]

    async def infer_ok(name):
        nonlocal inferences
        x, frame = random_input()
        want = golden.run(x[None])
        await drv.send(frame)
        item = await host.recv(answer_ns)
        if not isinstance(item, p.Frame) or item.type != p.FrameType.RESULT:
            check(name, False, f"expected RESULT, got {item}")
            return
        r = p.parse_result(item, g.n_classes, g.score_bytes)
        ok = r.cls == int(want.classes[0]) and r.scores == want.scores[0].tolist()
        check(name, ok, f"board {r}, golden cls {int(want.classes[0])} scores {want.scores[0].tolist()}")
        await Timer(2 * clk_ns, "ns")
        check(name + " (LEDs)", int(dut.leds.value) == (r.cls & cls_mask),
              f"leds {int(dut.leds.value)} for class {r.cls}")
        last_cls[0] = r.cls
        inferences += 1

    wall0, sim0 = time.monotonic(), get_sim_time("ns")

    # INFO
    await drv.send(p.encode_frame(p.FrameType.PING))
    item = await host.recv(answer_ns)
    if isinstance(item, p.Frame) and item.type == p.FrameType.INFO:
        info = p.BoardInfo.parse(item.payload)
        check("info", info == info_want, f"board {info}, expected {info_want}")
    else:
        check("info", False, f"expected INFO, got {item}")

    for _ in range(count):
        await infer_ok("inference")

    # A corrupted checksum: the inference runs, its result is replaced by ERROR, LEDs keep the class.
    _, frame = random_input()
    bad = bytearray(frame)
    bad[-1] ^= 0x5A
    if bad[-1] == p.SYNC:
        bad[-1] ^= 0x01
    await drv.send(bytes(bad))
    await expect_error("bad checksum", p.ErrorCode.BAD_CHECKSUM)
    check("bad checksum (LEDs kept)", int(dut.leds.value) == (last_cls[0] & cls_mask))
    await quiet("bad checksum")
    await infer_ok("inference after bad checksum")

    # A corrupted payload byte (the CRC catches it too).
    _, frame = random_input()
    bad = bytearray(frame)
    bad[p.HEADER_BYTES] ^= 0x10
    if p.SYNC not in bad[1:]:
        await drv.send(bytes(bad))
        await expect_error("bad payload", p.ErrorCode.BAD_CHECKSUM)
        await infer_ok("inference after bad payload")

    # Wrong version.
    x, frame = random_input()
    await drv.send(p.encode_frame(p.FrameType.INFER, frame[p.HEADER_BYTES:-1], version=2))
    await expect_error("bad version", p.ErrorCode.BAD_VERSION)
    await quiet("bad version")
    await infer_ok("inference after bad version")

    # Unknown type.
    await drv.send(p.encode_frame(0x7E, b""))
    await expect_error("unknown type", p.ErrorCode.UNKNOWN_TYPE)
    await quiet("unknown type")
    await infer_ok("inference after unknown type")

    # Bad length (one byte short), and a PING with a payload.
    await drv.send(p.encode_frame(p.FrameType.INFER, frame[p.HEADER_BYTES:-2]))
    await expect_error("bad length", p.ErrorCode.BAD_LENGTH)
    await quiet("bad length")
    await drv.send(p.encode_frame(p.FrameType.PING, b"\x00"))
    await expect_error("ping with payload", p.ErrorCode.BAD_LENGTH)
    await quiet("ping with payload")

    # PING with a bad CRC.
    ping = bytearray(p.encode_frame(p.FrameType.PING))
    ping[-1] ^= 0x01
    await drv.send(bytes(ping))
    await expect_error("ping bad checksum", p.ErrorCode.BAD_CHECKSUM)
    await infer_ok("inference after ping errors")

    # Garbage (no SYNC byte) between frames is skipped silently.
    junk = bytes(b for b in rng.integers(0, 256, 40).tolist() if b != p.SYNC)
    await drv.send(junk)
    await infer_ok("inference after garbage")

    # The host stops in the middle of a payload: ERROR timeout, then the board works again.
    _, frame = random_input()
    cut = p.HEADER_BYTES + max(1, g.input_bytes // 2)
    await drv.send(frame[:cut])
    await expect_error("timeout mid-payload", p.ErrorCode.TIMEOUT)
    await quiet("timeout mid-payload")
    await infer_ok("inference after timeout")

    # The host stops in the header: dropped silently.
    await drv.send(frame[:3])
    await quiet("timeout in header")
    await infer_ok("inference after header timeout")

    # Reset (the board's button) in the middle of a frame.
    _, frame = random_input()
    await drv.send(frame[:cut])
    await RisingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    check("reset clears LEDs", int(dut.leds.value) == 0)
    await quiet("reset mid-frame")
    await infer_ok("inference after reset")

    await drv.send(p.encode_frame(p.FrameType.PING))
    item = await host.recv(answer_ns)
    check("info at the end", isinstance(item, p.Frame) and item.type == p.FrameType.INFO, f"got {item}")
    check("uart framing", mon.framing_errors == 0, f"{mon.framing_errors} stop bits low")

    wall = time.monotonic() - wall0
    sim_cycles = (get_sim_time("ns") - sim0) / clk_ns
    summary = {"checks": checks, "failures": failures[:20], "inferences": inferences,
               "errors_seen": errors_seen, "sim_cycles": sim_cycles, "wall_seconds": wall,
               "sim_cycles_per_second": sim_cycles / wall if wall > 0 else None,
               "decoder": {"skipped": host.dec.skipped, "errors": host.dec.errors}}
    if env.get("KWSBNN_TB_RESULT"):
        with open(env["KWSBNN_TB_RESULT"], "w") as f:
            json.dump(summary, f)
    assert not failures, f"{len(failures)} checks failed; first: {failures[0]}"
