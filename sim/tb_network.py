"""cocotb testbench of a generated accelerator, in its simulation harness (:mod:`kwsbnn.sim.harness`),
against the NumPy golden model.

Configured through environment variables set by :mod:`kwsbnn.sim.network`:
``KWSBNN_TB_MODEL`` (deployable model folder of the golden model), ``KWSBNN_TB_REPORT`` (the
generator's report.json), ``KWSBNN_TB_INPUTS`` (a .npy file of inputs ``[N, C, T, F]``; random if
unset), ``KWSBNN_TB_COUNT``, ``KWSBNN_TB_SEED``, ``KWSBNN_TB_GAP``, ``KWSBNN_TB_STALL``,
``KWSBNN_TB_RESET_AFTER`` (reset the design after that many input transfers of an abandoned
inference, before the checked ones), ``KWSBNN_TB_DRIVER``, ``KWSBNN_TB_LOCALIZE`` (``1``: on a
mismatch, replay the first mismatching clip with the layer taps and name the first layer that
differs), ``KWSBNN_TB_SRC_FILE`` (the hex file the harness's source memory loads), ``KWSBNN_TB_RES_FILE``
(the file the harness writes results into),
``KWSBNN_TB_CLOCK_NS`` (set by the runner when the C++ main loop drives the clock),
``KWSBNN_TB_RESULT`` (where to write a JSON summary).

Drivers of the input stream (``KWSBNN_TB_DRIVER``):
- ``bulk`` (default): the harness's source memory, filled by Python a chunk of thousands of words at
  a time, and the harness's results file; random gaps and backpressure come from the harness too.
  Python wakes up at each refill and when all results are in, never per transfer, per result or per
  clock: the fast path.
- ``python``: :class:`StreamSource` / :class:`StreamSink` through the harness's Python ports; Python
  wakes up at every transfer (and every cycle with gaps or stalls).
- ``per_clock``: the same models waking at every clock edge: a naive testbench, for comparison.
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_steps, get_sim_time

from kwsbnn.sw.golden import GoldenModel

from .harness import AW
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


def input_words(xs: np.ndarray, ew: int):
    """Input transfers of inferences ``[N, C, T, F]``, one after the other: per inference one word per
    position (t, f), t-major, with element c at bits [c*ew, (c+1)*ew) (two's complement for int8).
    A uint64 array when words fit in 64 bits (compact for thousands of inferences), else a list."""
    xs = np.asarray(xs, dtype=np.int64)
    n, c, t, f = xs.shape
    vals = (xs & ((1 << ew) - 1)).transpose(0, 2, 3, 1).reshape(n * t * f, c)
    if c * ew <= 64:
        shifts = np.arange(c, dtype=np.uint64) * np.uint64(ew)
        return (vals.astype(np.uint64) << shifts).sum(axis=1, dtype=np.uint64)
    return [int(sum(int(v) << (ch * ew) for ch, v in enumerate(row))) for row in vals]


def frame_words(x: np.ndarray, ew: int) -> list[int]:
    """Input transfers of one inference ``[C, T, F]`` as Python integers (see :func:`input_words`)."""
    return [int(w) for w in input_words(np.asarray(x)[None], ew)]


def layer_words(values: np.ndarray, ew: int = 1) -> list[int]:
    """The expected tap transfers of a layer output ``[C, T, F]`` (golden dump of one clip): one word
    per position, t-major, element ``c`` (a bit, or ``ew = 8`` bits two's complement) = channel ``c``."""
    v = np.asarray(values).astype(np.int64)
    return frame_words(v & ((1 << ew) - 1), ew)


class Harness:
    """Python's side of ``kws_sim``: reset, the bulk source and the results file."""

    def __init__(self, dut, env):
        self.dut = dut
        self.clk = dut.clk
        self.src_file = env.get("KWSBNN_TB_SRC_FILE", "kwsbnn_src.hex")
        self.res_file = env.get("KWSBNN_TB_RES_FILE")
        self.res_offset = 0
        self.depth = 1 << AW
        self.width = len(dut.py_payload)
        self.digits = (self.width + 3) // 4
        for sig, v in (("src_bulk", 0), ("src_load", 0), ("src_end", 0), ("src_wake_at", 0),
                       ("src_gap", 0), ("py_valid", 0), ("res_ready", 0), ("res_stall", 0),
                       ("res_auto", 0), ("res_wake_at", 0),
                       ("seed", 1), ("rst_req", 1)):
            getattr(dut, sig).value = v

    async def reset(self, cycles: int = 3) -> None:
        """Reset the network and the harness (the source forgets every loaded word)."""
        self.dut.src_end.value = 0
        self.dut.rst_req.value = 1
        await ClockCycles(self.clk, cycles + 1)
        self.dut.rst_req.value = 0
        await ClockCycles(self.clk, 2)

    async def _load(self, words, start: int) -> None:
        """Load ``words`` (at most the memory depth, not wrapping) at running index ``start``."""
        fmt = f"{{:0{self.digits}x}}"
        with open(self.src_file, "w") as f:
            f.write("\n".join(map(fmt.format, np.asarray(words, dtype=object).tolist())) + "\n")
        self.dut.src_load_addr.value = start % self.depth
        self.dut.src_load.value = 1
        await RisingEdge(self.clk)
        self.dut.src_load.value = 0
        await RisingEdge(self.clk)

    async def wait_sent(self, count: int) -> None:
        """Sleep until the source has sent ``count`` words since reset (one wake-up)."""
        self.dut.src_wake_at.value = count
        await ClockCycles(self.clk, 2)
        await ReadOnly()
        if not self.dut.src_wake.value:
            await RisingEdge(self.dut.src_wake)
        else:
            await RisingEdge(self.clk)

    async def results(self, n: int, timeout_ns: float) -> list[tuple[int, int]]:
        """Sleep until ``n`` results (since reset) are in the results file (``res_auto`` on); return
        them as ``(cycle, payload)``: one wake-up for a whole run. Raises :class:`SimTimeoutError`."""
        self.dut.res_wake_at.value = n
        await ClockCycles(self.clk, 2)
        await ReadOnly()
        if not self.dut.res_wake.value:
            await with_timeout(RisingEdge(self.dut.res_wake), timeout_ns, "ns")
        with open(self.res_file) as f:
            f.seek(self.res_offset)
            text = f.read()
            self.res_offset = f.tell()
        out = []
        for line in text.splitlines():
            stamp, word = line.split()
            out.append((int(stamp), int(word, 16)))
        return out

    async def send(self, words) -> None:
        """Stream ``words`` into the network from the source memory (from reset: running index 0),
        refilling half the memory at a time as the network consumes them."""
        half = self.depth // 2
        self.dut.src_bulk.value = 1
        total, wr = len(words), 0
        while wr < total:
            n = min(self.depth if wr == 0 else half, total - wr)
            if wr + n > self.depth:      # the words [wr - depth, wr - depth + n) are overwritten
                await self.wait_sent(wr + n - self.depth)
            await self._load(words[wr:wr + n], wr)
            wr += n
            self.dut.src_end.value = wr


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
    driver = env.get("KWSBNN_TB_DRIVER", "bulk")
    if driver not in ("bulk", "python", "per_clock"):
        raise ValueError(f"KWSBNN_TB_DRIVER={driver!r}: use bulk, python or per_clock")
    gap, stall = float(env.get("KWSBNN_TB_GAP", "0")), float(env.get("KWSBNN_TB_STALL", "0"))

    clock_ns = float(env.get("KWSBNN_TB_CLOCK_NS", "0"))
    if not clock_ns:                 # a build without the C++ clock: drive it from here
        clock_ns = 10.0
        cocotb.start_soon(Clock(dut.clk, clock_ns, unit="ns").start())
    period = get_sim_steps(clock_ns, "ns")
    h = Harness(dut, env)
    dut.seed.value = seed * 2654435761 % (1 << 32) | 1
    poll = driver == "per_clock"
    sink = StreamSink(dut, "res", dut.clk, sep="_", seed=seed + 2, poll=poll,
                      stall=0.0 if driver == "bulk" else stall)
    sink.period = period
    src = StreamSource(dut, "py", dut.clk, sep="_", seed=seed + 1, poll=poll,
                       gap=0.0 if driver == "bulk" else gap)
    if driver == "bulk":
        dut.src_gap.value = min(65535, round(gap * 65536))
        dut.res_stall.value = min(65535, round(stall * 65536))
        dut.res_auto.value = 1
    await h.reset()

    ew = 1 if golden.model.input["prec"] == "bin" else 8

    reset_after = int(env.get("KWSBNN_TB_RESET_AFTER", "0"))
    if reset_after:
        # Abandon an inference half-way: send part of one, let the pipeline work on it, reset,
        # then the real inferences must all come out right (nothing of the old one survives).
        junk = np.random.default_rng(seed + 3).integers(0, 2 if ew == 1 else 128, xs[0].shape)
        part = frame_words(junk, ew)[:reset_after]
        if driver == "bulk":
            await h.send(part)
            await h.wait_sent(reset_after)
        else:
            await src.send_all(part)
        await ClockCycles(dut.clk, int(report["latency"]) // 4 + 50)
        await h.reset()

    words = input_words(xs, ew)

    async def feed():
        if driver == "bulk":
            await h.send(words)
        else:
            await src.send_all(int(w) for w in words)

    # A watchdog instead of a hang: no result within many initiation intervals is a failure.
    limit = 20 * int(report["initiation_interval"]) + 20 * int(report["latency"]) + 10_000
    wall0, cpu0, sim0 = time.monotonic(), time.process_time(), get_sim_time("step")
    sink._last = sim0
    start_cycle = int(dut.cycle.value)
    feeder = cocotb.start_soon(feed())
    if driver == "bulk":
        total_limit = limit + 20 * int(report["initiation_interval"]) * len(xs)
        try:
            got = await h.results(len(xs), total_limit * clock_ns)
        except SimTimeoutError:
            raise AssertionError(f"only {int(dut.res_count.value)} of {len(xs)} results within "
                                 f"{total_limit} cycles: the design stalled") from None
        stamps = [start_cycle] + [c for c, _ in got]
        results = [(w, stamps[n + 1] - stamps[n]) for n, (_, w) in enumerate(got)]
    else:
        results = None
    mismatches = []
    rtl_classes = []
    cycles = 0
    first = 0
    for n in range(len(xs)):
        if results is not None:
            word, waited = results[n]
        else:
            try:
                word, waited = await with_timeout(sink.recv(), limit * clock_ns, "ns")
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
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    sim_cycles = (get_sim_time("step") - sim0) / period
    feeder.cancel()
    summary = {"total": len(xs), "sim_cycles": sim_cycles, "wall_seconds": wall, "cpu_seconds": cpu,
               "driver": driver,
               "classes": rtl_classes,
               "sim_cycles_per_second": sim_cycles / wall if wall > 0 else None,
               "equal": len(xs) - len(mismatches), "mismatches": mismatches[:10],
               "cycles": cycles, "cycles_per_inference": cycles / max(1, len(xs)),
               "cycles_first": first,
               "cycles_steady": (cycles - first) / max(1, len(xs) - 1)}
    if mismatches and env.get("KWSBNN_TB_LOCALIZE") == "1" and report.get("taps"):
        summary["first_difference"] = await localize(dut, h, golden, report, xs, mismatches[0]["index"],
                                                     ew, limit * clock_ns)
    if env.get("KWSBNN_TB_RESULT"):
        with open(env["KWSBNN_TB_RESULT"], "w") as f:
            json.dump(summary, f)
    assert not mismatches, f"{len(mismatches)} of {len(xs)} inferences differ; first: {mismatches[0]}"


async def _monitor(clk, valid, payload, out: list) -> None:
    """Record a tap's transfers: sleep until its valid rises, then sample every cycle while high."""
    while True:
        await RisingEdge(valid)
        while True:
            await ReadOnly()
            if not valid.value:
                break
            out.append(payload.value.to_unsigned())
            await RisingEdge(clk)


async def localize(dut, h: Harness, golden: GoldenModel, report: dict, xs, k: int, ew: int,
                   timeout_ns: float) -> dict:
    """Replay clip ``k`` alone after a reset, recording every layer tap, and compare each layer's
    transfers with the golden model's dump: the first layer (in network order) that differs, and its
    first differing element."""
    ref = golden.run(xs[k:k + 1], dump=True)
    dut.res_auto.value = 0
    await h.reset()
    dut.src_gap.value = 0
    dut.res_stall.value = 0
    taps = report["taps"]
    got = {t["layer"]: [] for t in taps}
    mons = [cocotb.start_soon(_monitor(dut.clk, getattr(dut, f"tap_{t['layer']}_valid"),
                                       getattr(dut, f"tap_{t['layer']}_payload"), got[t["layer"]]))
            for t in taps]
    feeder = cocotb.start_soon(h.send(frame_words(xs[k], ew)))
    sink = StreamSink(dut, "res", dut.clk, sep="_")
    result = None
    try:
        result, _ = await with_timeout(sink.recv(), timeout_ns, "ns")
    except SimTimeoutError:
        pass
    await ClockCycles(dut.clk, 4)
    for m in mons + [feeder]:
        m.cancel()
    out = {"clip": k}
    for t in taps:
        name = t["layer"]
        ew = int(t.get("ew", 1))
        want = layer_words(ref.layers[name][0], ew)
        have = got[name]
        bad = [j for j in range(max(len(want), len(have)))
               if j >= len(want) or j >= len(have) or want[j] != have[j]]
        if not bad:
            continue
        c_out, _, f = t["shape"]
        j = bad[0]
        pos = [j // f, j % f]
        entry = {"layer": name, "transfer": j, "position": pos, "transfers": [len(have), len(want)],
                 "differing_transfers": len(bad)}
        if j < len(want) and j < len(have):
            diff = want[j] ^ have[j]
            c = ((diff & -diff).bit_length() - 1) // ew
            mask = (1 << ew) - 1
            entry.update({"channel": c, "index": c * t["transfers"] + j,
                          "expected": (want[j] >> (c * ew)) & mask, "got": (have[j] >> (c * ew)) & mask,
                          "expected_word": f"{want[j]:0{(c_out * ew + 3) // 4}x}",
                          "got_word": f"{have[j]:0{(c_out * ew + 3) // 4}x}"})
        else:
            entry.update({"index": j, "expected": "a transfer" if j < len(want) else "none",
                          "got": "none" if j >= len(have) else "an extra transfer"})
        return {**out, **entry}
    tail = golden.model.layers[-1]["name"]
    if result is None:
        return {**out, "layer": tail, "index": None, "expected": "a result", "got": "none"}
    cls, scores = decode_result(result, report["n_classes"], report["score_width"])
    want = ref.scores[0].tolist()
    for i, (a, b) in enumerate(zip(want, scores)):
        if a != b:
            return {**out, "layer": tail, "index": i, "expected": a, "got": b}
    if cls != int(ref.classes[0]):
        return {**out, "layer": tail, "index": "class", "expected": int(ref.classes[0]), "got": cls}
    return {**out, "layer": None,
            "note": "replayed alone after a reset, the clip matches the golden model in every layer: "
                    "the mismatch depends on the clips before it"}
