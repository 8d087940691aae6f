"""cocotb testbench of a generated accelerator against the NumPy golden model.

Configured through environment variables set by :mod:`kwsbnn.sim.runner`:
``KWSBNN_TB_MODEL`` (deployable model folder), ``KWSBNN_TB_REPORT`` (the generator's report.json),
``KWSBNN_TB_INPUTS`` (a .npy file of inputs ``[N, C, T, F]``; random if unset),
``KWSBNN_TB_COUNT``, ``KWSBNN_TB_SEED``, ``KWSBNN_TB_GAP``, ``KWSBNN_TB_STALL``,
``KWSBNN_TB_RESET_AFTER`` (reset the design after that many input transfers of an abandoned
inference, before the checked ones),
``KWSBNN_TB_RESULT`` (where to write a JSON summary).
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_steps, get_sim_time

from kwsbnn.sw.golden import GoldenModel

from .streams import StreamSink, StreamSource


def decode_result(word: int, n_classes: int, score_width: int) -> tuple[int, list[int]]:
    """Split the output payload into the class and the signed scores (layout of hw.scores)."""
    cls_w = max(1, (n_classes - 1).bit_length())
    cls = word & ((1 << cls_w) - 1)
    scores = []
    for k in range(n_classes):
        v = (word >> (cls_w + k * score_width)) & ((1 << score_width) - 1)
        scores.append(v - (1 << score_width) if v >> (score_width - 1) else v)
    return cls, scores


def frame_words(x: np.ndarray, ew: int) -> list[int]:
    """Input transfers of one inference ``[C, T, F]``: one word per position (t, f), t-major, with
    element c at bits [c*ew, (c+1)*ew) (two's complement for int8)."""
    c, t, f = x.shape
    mask = (1 << ew) - 1
    vals = (np.asarray(x, dtype=np.int64) & mask).transpose(1, 2, 0).reshape(t * f, c)
    return [int(sum(int(v) << (ch * ew) for ch, v in enumerate(row))) for row in vals]


@cocotb.test()
async def network_matches_golden(dut):
    env = os.environ
    golden = GoldenModel(env["KWSBNN_TB_MODEL"])
    with open(env["KWSBNN_TB_REPORT"]) as f:
        report = json.load(f)
    seed = int(env.get("KWSBNN_TB_SEED", "0"))
    if env.get("KWSBNN_TB_INPUTS"):
        xs = np.load(env["KWSBNN_TB_INPUTS"])
    else:
        shape = (int(env.get("KWSBNN_TB_COUNT", "100")),) + tuple(golden.model.input["shape"])
        rng = np.random.default_rng(seed)
        xs = rng.integers(0, 2, shape) if golden.model.input["prec"] == "bin" else rng.integers(-127, 128, shape)
    expected = golden.run(xs)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    src = StreamSource(dut, "i", dut.clk, gap=float(env.get("KWSBNN_TB_GAP", "0")), seed=seed + 1)
    sink = StreamSink(dut, "o", dut.clk, stall=float(env.get("KWSBNN_TB_STALL", "0")), seed=seed + 2)
    sink.period = get_sim_steps(10, "ns")
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    ew = 1 if golden.model.input["prec"] == "bin" else 8

    reset_after = int(env.get("KWSBNN_TB_RESET_AFTER", "0"))
    if reset_after:
        # Abandon an inference half-way: send part of one, let the pipeline work on it, reset,
        # then the real inferences must all come out right (nothing of the old one survives).
        junk = np.random.default_rng(seed + 3).integers(0, 2 if ew == 1 else 128, xs[0].shape)
        await src.send_all(frame_words(junk, ew)[:reset_after])
        for _ in range(int(report["latency"]) // 4 + 50):
            await RisingEdge(dut.clk)
        dut.rst.value = 1
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        dut.rst.value = 0

    async def feed():
        for x in xs:
            await src.send_all(frame_words(x, ew))

    wall0, sim0 = time.monotonic(), get_sim_time("step")
    cocotb.start_soon(feed())
    # A watchdog instead of a hang: no result within many initiation intervals is a failure.
    limit = 20 * int(report["initiation_interval"]) + 20 * int(report["latency"]) + 10_000
    mismatches = []
    rtl_classes = []
    cycles = 0
    first = 0
    for n in range(len(xs)):
        try:
            word, waited = await with_timeout(sink.recv(), limit * 10, "ns")
        except SimTimeoutError:
            raise AssertionError(f"no result for inference {n} within {limit} cycles "
                                 f"({n} of {len(xs)} done): the design stalled") from None
        cycles += waited
        if n == 0:
            first = waited
        cls, scores = decode_result(word, report["n_classes"], report["score_width"])
        rtl_classes.append(cls)
        want = expected.scores[n].tolist()
        if scores != want or cls != int(expected.classes[n]):
            mismatches.append({"index": n, "rtl": {"cls": cls, "scores": scores},
                               "golden": {"cls": int(expected.classes[n]), "scores": want}})
    wall = time.monotonic() - wall0
    sim_cycles = (get_sim_time("step") - sim0) / sink.period
    summary = {"total": len(xs), "sim_cycles": sim_cycles, "wall_seconds": wall,
               "classes": rtl_classes,
               "sim_cycles_per_second": sim_cycles / wall if wall > 0 else None, "equal": len(xs) - len(mismatches), "mismatches": mismatches[:10],
               "cycles": cycles, "cycles_per_inference": cycles / max(1, len(xs)),
               "cycles_first": first,
               "cycles_steady": (cycles - first) / max(1, len(xs) - 1)}
    if env.get("KWSBNN_TB_RESULT"):
        with open(env["KWSBNN_TB_RESULT"], "w") as f:
            json.dump(summary, f)
    assert not mismatches, f"{len(mismatches)} of {len(xs)} inferences differ; first: {mismatches[0]}"
