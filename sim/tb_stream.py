"""cocotb testbench of streaming (host protocol 2) on the board top, over its UART pins.

The UART models and the host side are those of :mod:`kwsbnn.sim.tb_board`; the schedule and flow
control are :class:`kwsbnn.boards.protocol.StreamPlan`'s, as :meth:`BoardLink.stream
<kwsbnn.boards.protocol.BoardLink.stream>` follows them. Checks, in order: INFO (stream fields);
STREAM_START with the stride; ``KWSBNN_TB_FRAMES`` random frames, streamed as fast as the UART
and the flow control allow, every decision equal to the golden model on the window it covers
(class and scores); then a STREAM frame with a bad CRC (ERROR checksum, the frame is not in the
ring: the next decision's window skips it), a host that stops inside a STREAM frame (ERROR
timeout, dropped too), an INFER between streams (the old whole-map message), and a STREAM_START
that empties the ring (the first decision comes after a whole window again); after the
measured run, frames come with random pauses between them.

Measures, on the first run of frames: decisions per second at the design's clock (from the
first byte of the first frame to the end of the last RESULT; from the first decision to the last
for the steady rate), against the network's own rate and the link's limit, and the time from
each decision frame to its RESULT. With ``KWSBNN_TB_PACE_CYCLES`` the first run is paced in real
time from its first decision frame on (a frame every that many cycles, as a live input gives
them; the window fills as fast as the link allows) and the summary says how late the flow
control made any frame (``max_lag_cycles``). Configured through ``KWSBNN_TB_*`` variables by
:func:`kwsbnn.sim.board.simulate_stream`; writes a JSON summary to ``KWSBNN_TB_RESULT``.
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

from kwsbnn.boards import protocol as p
from kwsbnn.sim.tb_board import connect
from kwsbnn.sw.golden import GoldenModel


@cocotb.test()
async def board_stream(dut):
    env = os.environ
    g = p.LinkGeometry(**json.loads(env["KWSBNN_TB_GEOMETRY"]))
    info_want = p.BoardInfo.parse(bytes.fromhex(env["KWSBNN_TB_INFO"]))
    golden = GoldenModel(env["KWSBNN_TB_MODEL"])
    clk_ns = int(env["KWSBNN_TB_CLK_NS"])
    clk_hz = float(env["KWSBNN_TB_CLK_HZ"])
    bit_ns = int(env["KWSBNN_TB_DIVISOR"]) * clk_ns
    timeout_ns = int(env["KWSBNN_TB_TIMEOUT_CYCLES"]) * clk_ns
    latency_ns = int(env["KWSBNN_TB_LATENCY"]) * clk_ns
    n_frames = int(env["KWSBNN_TB_FRAMES"])
    stride = int(env["KWSBNN_TB_STRIDE"])
    rng = np.random.default_rng(int(env.get("KWSBNN_TB_SEED", "0")))
    byte_ns = 10 * bit_ns
    # Longest wait for an answer: a window's replay and inference after the one before it, the
    # answer's bytes, a timeout, margin.
    answer_ns = 2 * latency_ns + (p.OVERHEAD + max(g.result_bytes, p.BoardInfo.SIZE) + 4) * byte_ns \
        + timeout_ns + 4 * g.transfers * clk_ns + 200 * clk_ns

    host = await connect(dut, clk_ns, bit_ns)
    drv, mon = host.drv, host.mon

    failures, checks = [], {}
    answered = []           # sim times (ns) at which the decisions of a run arrived
    waits = []              # from a decision frame's last bit to the end of its RESULT (ns)
    sent_at = {}
    lags = []               # real time: how late each frame went out (ns)
    pace_ns = int(env.get("KWSBNN_TB_PACE_CYCLES", "0")) * clk_ns
    wall0 = time.monotonic()

    def check(name, ok, detail=""):
        checks[name] = checks.get(name, 0) + 1
        if not ok:
            failures.append(f"{name}: {detail}")

    def random_frames(n):
        shape = (n, g.channels, g.coeffs)
        return rng.integers(0, 2, shape) if g.elem_bits == 1 else rng.integers(-127, 128, shape)

    def window_of(history, k):
        """The input [C, T, F] of the decision at accepted frame k (1-based)."""
        return np.stack(history[k - g.frames:k], axis=1)

    async def expect(name, ftype, payload=None):
        item = await host.recv(answer_ns)
        ok = isinstance(item, p.Frame) and item.type == ftype and (payload is None
                                                                     or item.payload == payload)
        check(name, ok, f"expected type 0x{ftype:02x} {payload!r}, got {item}")
        return item if ok else None

    async def check_result(name, item_or_none, x):
        want = golden.run(x[None])
        if item_or_none is None:
            return
        r = p.parse_result(item_or_none, g.n_classes, g.score_bytes)
        check(name, r.cls == int(want.classes[0]) and r.scores == want.scores[0].tolist(),
              f"board {r}, golden cls {int(want.classes[0])} scores {want.scores[0].tolist()}")

    async def stream(frames, plan, history, name, gaps=False, pace_ns=0):
        """Send ``frames`` with ``plan``'s flow control (with ``gaps``, a random pause of up to
        3 byte times before half of them); check every decision; return the decisions and the
        sim time from the first byte sent to the end of the last answer."""
        pending, decided = [], 0
        t0 = t_pace = get_sim_time("ns")
        answered.clear()
        waits.clear()
        for i, x in enumerate(frames):
            j = len(history) + 1
            paced = pace_ns and i >= g.frames - 1
            if paced:               # real time from the first decision frame on (the fill is fast)
                if i == g.frames - 1:
                    t_pace = get_sim_time("ns")
                due = t_pace + (i - g.frames + 1) * pace_ns
                if get_sim_time("ns") < due:
                    await Timer(due - get_sim_time("ns"), "ns")
            while pending and pending[0] <= plan.must_have(j):
                k = pending.pop(0)
                await check_result(name, await expect(name + " (RESULT)", p.FrameType.RESULT),
                                   window_of(history, k))
                answered.append(host.last_byte_ns)
                waits.append(answered[-1] - sent_at[k])
                decided += 1
            if gaps and rng.random() < 0.5:
                await Timer(int(rng.integers(1, 3 * byte_ns)), "ns")
            if paced:
                lags.append(get_sim_time("ns") - due)
            await drv.send(p.encode_frame(p.FrameType.STREAM, p.pack_frame(x, g)))
            history.append(x)
            if plan.decides(j):
                pending.append(j)
                sent_at[j] = get_sim_time("ns")
        while pending:
            k = pending.pop(0)
            await check_result(name, await expect(name + " (RESULT)", p.FrameType.RESULT),
                               window_of(history, k))
            answered.append(host.last_byte_ns)
            waits.append(answered[-1] - sent_at[k])
            decided += 1
        return decided, host.last_byte_ns - t0

    # INFO, with the stream fields.
    await drv.send(p.encode_frame(p.FrameType.PING))
    item = await expect("info", p.FrameType.INFO)
    if item is not None:
        info = p.BoardInfo.parse(item.payload)
        check("info fields", info == info_want, f"board {info}, expected {info_want}")

    await drv.send(p.encode_frame(p.FrameType.STREAM_START, bytes([stride])))
    await expect("started", p.FrameType.STARTED, bytes([stride or g.stride]))
    plan = p.StreamPlan(g.frames, stride or g.stride, g.ahead)

    # The measured run.
    history = []
    decided, span_ns = await stream(list(random_frames(n_frames)), plan, history, "decision",
                                    pace_ns=pace_ns)
    want_decisions = len(plan.decisions(n_frames))
    check("decision count", decided == want_decisions, f"{decided} of {want_decisions}")
    span_cycles = span_ns / clk_ns
    steady_cycles = (answered[-1] - answered[0]) / clk_ns if len(answered) > 1 else None
    answer_cycles = [w / clk_ns for w in waits]

    # A STREAM frame with a bad CRC: ERROR, and the frame does not enter the ring.
    bad = bytearray(p.encode_frame(p.FrameType.STREAM, p.pack_frame(random_frames(1)[0], g)))
    bad[-1] ^= 0x5A
    await drv.send(bytes(bad))
    await expect("stream bad checksum", p.FrameType.ERROR, bytes([p.ErrorCode.BAD_CHECKSUM]))
    # The host stops inside a STREAM frame: ERROR timeout, dropped as well.
    cut = p.encode_frame(p.FrameType.STREAM, p.pack_frame(random_frames(1)[0], g))
    await drv.send(cut[:p.HEADER_BYTES + max(1, g.frame_bytes // 2)])
    await expect("stream timeout", p.FrameType.ERROR, bytes([p.ErrorCode.TIMEOUT]))
    # The stream goes on as if neither frame had come.
    more, _ = await stream(list(random_frames(2 * plan.stride)), plan, history,
                           "decision after errors", gaps=True)
    check("decisions after errors", more == 2 or len(history) < g.frames, f"{more}")

    # The whole-map message still works between streams.
    x = rng.integers(0, 2, (g.channels, g.frames, g.coeffs)) if g.elem_bits == 1 else \
        rng.integers(-127, 128, (g.channels, g.frames, g.coeffs))
    await drv.send(p.infer_request(x, g))
    await check_result("infer between streams", await expect("infer (RESULT)", p.FrameType.RESULT), x)

    # STREAM_START empties the ring: no decision before a whole window of new frames.
    await drv.send(p.encode_frame(p.FrameType.STREAM_START, bytes([1])))
    await expect("restarted", p.FrameType.STARTED, bytes([1]))
    plan1 = p.StreamPlan(g.frames, 1, g.ahead)
    history = []
    n2 = g.frames + 1
    decided2, _ = await stream(list(random_frames(n2)), plan1, history, "decision after restart",
                               gaps=True)
    check("decisions after restart", decided2 == 2, f"{decided2}")
    check("uart framing", mon.framing_errors == 0, f"{mon.framing_errors} stop bits low")

    seconds = span_cycles / clk_hz
    summary = {"checks": checks, "failures": failures[:20], "frames": n_frames,
               "decisions": decided, "stride": plan.stride, "span_cycles": span_cycles,
               "decisions_per_second": decided / seconds if seconds > 0 else None,
               "frames_per_second": n_frames / seconds if seconds > 0 else None,
               "steady_cycles": steady_cycles,
               "paced_cycles": pace_ns // clk_ns,
               "max_lag_cycles": max(lags) / clk_ns if lags else None,
               "answer_cycles": {"mean": sum(answer_cycles) / len(answer_cycles),
                                 "max": max(answer_cycles)} if answer_cycles else None,
               "steady_decisions_per_second": (decided - 1) / (steady_cycles / clk_hz)
               if steady_cycles else None,
               "wall_seconds": time.monotonic() - wall0}
    if env.get("KWSBNN_TB_RESULT"):
        with open(env["KWSBNN_TB_RESULT"], "w") as f:
            json.dump(summary, f)
    assert not failures, f"{len(failures)} checks failed; first: {failures[0]}"
