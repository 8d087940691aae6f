"""cocotb testbench of an engine-style board top (host protocol 3: LOAD) over its UART pins.

The UART models and the host side are those of :mod:`kwsbnn.sim.tb_board`. Checks, in order:
INFO says no weights; an INFER and a STREAM frame before any image are answered ERROR NO_WEIGHTS
(nothing runs); LOADs with a wrong model id, a wrong word count and a wrong format are answered
LOADED(WRONG_MODEL / BAD_LENGTH / BAD_FORMAT) and leave the board without weights; a LOAD whose
words were corrupted (CRC-32) is answered LOADED(BAD_CRC); the good image is answered
LOADED(LOADED) (its time on the wire measured) and INFO says loaded; ``KWSBNN_TB_COUNT`` random
INFERs equal the golden model; a stream of ``KWSBNN_TB_FRAMES`` frames at stride
``KWSBNN_TB_STRIDE``, as fast as the flow control allows, every decision equal to the golden
model on its window (decisions per second measured); a wrong-model LOAD after that keeps the
image (an INFER still equals the golden model); a LOAD with a damaged frame CRC-8 is answered
ERROR checksum and leaves no weights (INFER: NO_WEIGHTS); the good image again (a reload) and
an INFER; a reset keeps the weights. With ``KWSBNN_TB_ERRORS=0`` only the good image, the INFERs
and the stream (a real-size network, whose image takes millions of cycles on the wire).

Configured through ``KWSBNN_TB_*`` variables by :func:`kwsbnn.sim.board.simulate_load`; writes
a JSON summary to ``KWSBNN_TB_RESULT``.
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer
from cocotb.utils import get_sim_time

from kwsbnn.boards import protocol as p
from kwsbnn.sim.tb_board import EngineBoardEnv, connect


@cocotb.test()
async def board_load(dut):
    env = os.environ
    e = EngineBoardEnv(env)
    g, image, golden, rng = e.g, e.image, e.golden, e.rng
    clk_ns, clk_hz, bit_ns, byte_ns, answer_ns = e.clk_ns, e.clk_hz, e.bit_ns, e.byte_ns, e.answer_ns
    count = int(env.get("KWSBNN_TB_COUNT", "4"))
    n_frames = int(env.get("KWSBNN_TB_FRAMES", "0"))
    stride = int(env.get("KWSBNN_TB_STRIDE", "1"))
    errors = env.get("KWSBNN_TB_ERRORS", "1") != "0"

    host = await connect(dut, clk_ns, bit_ns, types=(p.FrameType.INFO, p.FrameType.RESULT, p.FrameType.ERROR,
                                                    p.FrameType.STARTED, p.FrameType.LOADED))
    drv, mon = host.drv, host.mon

    failures, checks, statuses = [], {}, []
    wall0 = time.monotonic()

    def check(name, ok, detail=""):
        checks[name] = checks.get(name, 0) + 1
        if not ok:
            failures.append(f"{name}: {detail}")

    async def expect(name, ftype, payload=None, wait_ns=None):
        item = await host.recv(wait_ns or answer_ns)
        ok = isinstance(item, p.Frame) and item.type == ftype and (payload is None
                                                                     or item.payload == payload)
        check(name, ok, f"expected type 0x{ftype:02x} {payload!r}, got {item}")
        return item if ok else None

    async def weights(name, want):
        await drv.send(p.encode_frame(p.FrameType.PING))
        item = await expect(name, p.FrameType.INFO)
        if item is not None:
            info = p.BoardInfo.parse(item.payload)
            check(name + " (weights)", info.weights == want, f"weights {info.weights}, want {want}")
            check(name + " (image words)", info.load_words == g.load_words and info.version == 3,
                  f"{info}")

    def random_input():
        shape = (g.channels, g.frames, g.coeffs)
        return rng.integers(0, 2, shape) if g.elem_bits == 1 else rng.integers(-127, 128, shape)

    async def check_result(name, item, x):
        want = golden.run(x[None])
        if item is None:
            return
        r = p.parse_result(item, g.n_classes, g.score_bytes)
        check(name, r.cls == int(want.classes[0]) and r.scores == want.scores[0].tolist(),
              f"board {r}, golden cls {int(want.classes[0])} scores {want.scores[0].tolist()}")

    async def infer(name):
        x = random_input()
        await drv.send(p.infer_request(x, g))
        await check_result(name, await expect(name + " (RESULT)", p.FrameType.RESULT), x)

    async def load(name, payload, status, frame=None):
        t0 = get_sim_time("ns")
        await drv.send(frame or p.encode_frame(p.FrameType.LOAD, payload))
        await expect(name, p.FrameType.LOADED, bytes([status]))
        statuses.append(p.LoadStatus(status).name)
        return (host.last_byte_ns - t0) / clk_ns

    def variant(model_id=None, words=None, fmt=None, flip=None) -> bytes:
        raw = bytearray(image.encode())
        if model_id is not None:
            raw[4:8] = model_id.to_bytes(4, "little")
        if words is not None:
            raw[2:4] = words.to_bytes(2, "little")
        if fmt is not None:
            raw[0] = fmt
        if flip is not None:
            raw[p.IMAGE_HEADER_BYTES + flip] ^= 0x08
        return bytes(raw)

    # No weights yet: INFO says so, INFER and STREAM are refused.
    await weights("info at power-up", p.Weights.NONE)
    await drv.send(p.infer_request(random_input(), g))
    await expect("infer before load", p.FrameType.ERROR, bytes([p.ErrorCode.NO_WEIGHTS]))
    await drv.send(p.encode_frame(p.FrameType.STREAM, bytes(g.frame_bytes)))
    await expect("stream before load", p.FrameType.ERROR, bytes([p.ErrorCode.NO_WEIGHTS]))

    if errors:
        # Images that do not fit the bitstream, then a corrupted one.
        await load("wrong model id", variant(model_id=g.model_id ^ 0x5A5A5A5A), p.LoadStatus.WRONG_MODEL)
        await load("wrong word count", variant(words=g.load_words - 1), p.LoadStatus.BAD_LENGTH)
        await load("wrong format", variant(fmt=2), p.LoadStatus.BAD_FORMAT)
        await weights("info after refused images", p.Weights.NONE)
        await load("corrupted words", variant(flip=8 * (len(image.words) // 2) + 3), p.LoadStatus.BAD_CRC)
        await weights("info after a bad CRC-32", p.Weights.NONE)
        await drv.send(p.infer_request(random_input(), g))
        await expect("infer after a bad CRC-32", p.FrameType.ERROR, bytes([p.ErrorCode.NO_WEIGHTS]))

    # The good image.
    load_cycles = await load("load", image.encode(), p.LoadStatus.LOADED)
    await weights("info after load", p.Weights.LOADED)
    for _ in range(count):
        await infer("inference")

    # A stream, as fast as the flow control allows.
    steady = span = None
    decided = 0
    if n_frames:
        await drv.send(p.encode_frame(p.FrameType.STREAM_START, bytes([stride])))
        await expect("started", p.FrameType.STARTED, bytes([stride]))
        plan = p.StreamPlan(g.frames, stride, g.ahead)
        history, pending, answered = [], [], []
        t0 = get_sim_time("ns")

        async def answer():
            nonlocal decided
            k = pending.pop(0)
            x = np.stack(history[k - g.frames:k], axis=1)
            await check_result("decision", await expect("decision (RESULT)", p.FrameType.RESULT), x)
            answered.append(host.last_byte_ns)
            decided += 1
        for j in range(1, n_frames + 1):
            x = (rng.integers(-127, 128, (g.channels, g.coeffs)) if g.elem_bits == 8
                 else rng.integers(0, 2, (g.channels, g.coeffs)))
            while pending and pending[0] <= plan.must_have(j):
                await answer()
            await drv.send(p.encode_frame(p.FrameType.STREAM, p.pack_frame(x, g)))
            history.append(x)
            if plan.decides(j):
                pending.append(j)
        while pending:
            await answer()
        check("decision count", decided == len(plan.decisions(n_frames)), f"{decided}")
        span = (host.last_byte_ns - t0) / clk_ns
        if len(answered) > 1:
            steady = (answered[-1] - answered[0]) / clk_ns / (len(answered) - 1)

    if errors:
        # A wrong model's image keeps the loaded one.
        await load("wrong model id after load", variant(model_id=1), p.LoadStatus.WRONG_MODEL)
        await weights("info after a refused image", p.Weights.LOADED)
        await infer("inference after a refused image")

        # A damaged frame (CRC-8): ERROR checksum; the image it started to overwrite is gone.
        bad = bytearray(p.encode_frame(p.FrameType.LOAD, image.encode()))
        bad[-1] ^= 0x21
        await drv.send(bytes(bad))
        await expect("damaged load frame", p.FrameType.ERROR, bytes([p.ErrorCode.BAD_CHECKSUM]))
        await weights("info after a damaged load", p.Weights.NONE)
        await drv.send(p.infer_request(random_input(), g))
        await expect("infer after a damaged load", p.FrameType.ERROR, bytes([p.ErrorCode.NO_WEIGHTS]))

        # Reload.
        await load("reload", image.encode(), p.LoadStatus.LOADED)
        await infer("inference after reload")
    # A reset keeps the weights (the SPRAM keeps them).
    await RisingEdge(dut.clk)
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await Timer(2 * byte_ns, "ns")
    await weights("info after reset", p.Weights.LOADED)
    await infer("inference after reset")
    check("uart framing", mon.framing_errors == 0, f"{mon.framing_errors} stop bits low")

    summary = {"checks": checks, "failures": failures[:20], "statuses": statuses,
               "load_cycles": load_cycles, "load_seconds": load_cycles / clk_hz,
               "load_bytes": len(p.encode_frame(p.FrameType.LOAD, image.encode())),
               "decisions": decided, "stride": stride, "span_cycles": span,
               "decisions_per_second": decided / (span / clk_hz) if span else None,
               "steady_cycles_per_decision": steady,
               "steady_decisions_per_second": clk_hz / steady if steady else None,
               "wall_seconds": time.monotonic() - wall0}
    if env.get("KWSBNN_TB_RESULT"):
        with open(env["KWSBNN_TB_RESULT"], "w") as f:
            json.dump(summary, f)
    assert not failures, f"{len(failures)} checks failed; first: {failures[0]}"
