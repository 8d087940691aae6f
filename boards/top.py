"""Board top: the generated network behind the host protocol 2 (docs/host-protocol.md) on a UART.

    rx -> UARTRx -> FrameParser --INFER transfers------------------> Network --result--> FrameWriter -> UARTTx -> tx
                         |------STREAM transfers--> FrameRing --replay--^                    ^
                         '--------- responses (INFO / ERROR / STARTED / verdict) -------------'

:class:`FrameParser` checks each frame's sync, version, type, length and CRC-8 as its bytes arrive
and feeds INFER payload bytes straight into the network's input stream (one transfer per
``transfer_bytes`` bytes; the map is never buffered), and STREAM payloads (one input frame each)
into the ring buffer (:class:`~kwsbnn.boards.ring.FrameRing`), which replays the last ``T``
frames into the network on every decision frame. :class:`FrameWriter` sends INFO, ERROR,
STARTED and RESULT frames. A corrupted INFER has already run when its CRC byte shows the damage,
so the CRC verdict travels to the writer, which *holds the network's result until the verdict is
known*: a good CRC sends RESULT, a bad one discards the result and sends ERROR(checksum). A
corrupted STREAM frame is dropped from the ring before anything runs. A host that stops in the
middle of an INFER payload (no byte for ``timeout`` seconds) has the rest of the map filled
with zeros, that result discarded and ERROR(timeout) sent, so the network never holds half a map.

:class:`KwsTop` joins them. With an amaranth-boards platform it requests ``uart``, the LEDs (the
last class in binary, as many bits as the board has LEDs) and the reset button, and makes the
``sync`` domain from the oscillator or from a PLL (:mod:`kwsbnn.boards.pll`), with reset held
until the PLL locks, 15 us after that (iCE40 block RAMs read zeros for a few us after
configuration), and while the button is pressed. With ``platform=None`` it exposes ``rx``, ``tx``
and ``leds`` ports for simulation and uses the default ``sync`` domain (``clk``, ``rst``).

Latency of one request: the UART delivers its last byte at the stop bit's middle; the answer's
first byte starts about 3 cycles after the later of that byte and (for INFER) the network's
result. Throughput, stop-and-wait: one inference per ``(input_bytes + 6) + (result_bytes + 6)``
byte times (10 bit times each) plus the network's latency after the last input transfer (the
network's initiation interval is far shorter than a UART byte per transfer). Streaming: one
decision per ``stride`` frames of ``frame_bytes + 6`` byte times each, or per inference of the
network, whichever is longer (the replay takes one transfer per cycle when the network does).
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, io, stream, wiring
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer
from amaranth.lib.wiring import In, Out

from kwsbnn.hw.network import EngineNetwork, Network

from . import protocol as proto
from .flash import FlashBoot
from .loader import WeightLoader
from .ring import FrameRing, SpramRing
from .uart import UARTRx, UARTTx, uart_divisor

HOP_S = 0.01        # a feature frame per 10 ms: real time


def default_stride(network, clk_freq: float, hop_s: float = HOP_S) -> int:
    """The smallest stride N (frames per decision) at which ``network`` keeps up with one frame
    per ``hop_s`` at ``clk_freq``: ``ceil(cycles per inference / cycles per hop)``, 1 to 255."""
    cycles = network.costs()["cycles_per_inference"]
    return max(1, min(255, -(-int(cycles) // max(1, int(clk_freq * hop_s)))))

# What the parser asks the writer to send (STARTED: ``code`` is the stride; LOADED: the status).
RESP_INFO, RESP_ERROR, RESP_VERDICT, RESP_STARTED, RESP_LOADED = 0, 1, 2, 3, 4
RESPONSE = data.StructLayout({"kind": 3, "code": 8})
# The frame types the parser takes, as it numbers them.
K_PING, K_INFER, K_START, K_STREAM, K_LOAD = 0, 1, 2, 3, 4


def crc8_next(crc, byte):
    """CRC-8 (polynomial 0x07, MSB first) of ``crc`` after one more ``byte``: an XOR of input bits
    per output bit (the bytewise CRC is linear in ``crc ^ byte``); one level of LUTs."""
    x = crc ^ byte
    taps = []
    for bit in range(8):
        taps.append([i for i in range(8) if (proto.crc8(bytes([1 << i])) >> bit) & 1])
    out = []
    for bit in range(8):
        v = Const(0, 1)
        for i in taps[bit]:
            v = v ^ x[i]
        out.append(v)
    return Cat(*out)


# Maximal-length LFSR taps (Xilinx XAPP052, XNOR feedback; bit numbers from 1).
LFSR_TAPS = {3: (3, 2), 4: (4, 3), 5: (5, 3), 6: (6, 5), 7: (7, 6), 8: (8, 6, 5, 4), 9: (9, 5),
             10: (10, 7), 11: (11, 9), 12: (12, 6, 4, 1), 13: (13, 4, 3, 1), 14: (14, 5, 3, 1),
             15: (15, 14), 16: (16, 15, 13, 4), 17: (17, 14), 18: (18, 11), 19: (19, 6, 2, 1),
             20: (20, 17), 21: (21, 19), 22: (22, 21), 23: (23, 18), 24: (24, 23, 22, 17)}


def lfsr_next(state, bits: int):
    """The next state of a ``bits``-bit XNOR LFSR (period ``2**bits - 1``; all ones never occurs
    from a reset to 0): a shift and one feedback LUT, no carry chain."""
    fb = Const(1, 1)
    for t in LFSR_TAPS[bits]:
        fb = fb ^ state[t - 1]
    return Cat(fb, state[:-1])


def timeout_plan(cycles: int) -> tuple[int, int]:
    """``(k, ticks)``: the idle timeout counts ``ticks`` of a free-running ``k``-bit LFSR prescaler
    (a tick every ``2**k - 1`` cycles), so it fires after between ``cycles`` and
    ``cycles + 2**k - 1`` idle cycles (at most about 1/8 late) with about ``k + 5`` flip-flops
    and no wide adder."""
    cycles = max(1, int(cycles))
    k = min(max(3, (cycles // 8 + 1).bit_length()), max(LFSR_TAPS))
    period = 2 ** k - 1
    return k, -(-cycles // period) + 1


class FrameParser(wiring.Component):
    """Host -> board frames: takes UART bytes on ``i``, emits the input transfers of INFER and
    STREAM payloads on ``o`` as they arrive (``stream`` high for a STREAM frame's: they go to the
    ring buffer, the others to the network), and one request per frame on ``resp`` (``kind``: INFO,
    ERROR with ``code``, VERDICT with ``code`` 0 for a good INFER or a decision frame and an error
    code otherwise, STARTED with the stride as ``code``).

    Checks: version at its byte, type at its byte, length at the second length byte (PING: 0,
    INFER: ``input_bytes``, STREAM_START: 1, STREAM: ``frame_bytes``), CRC at the last byte; a
    header error is answered at once and the parser hunts for SYNC from the next byte.
    ``timeout_cycles`` without a byte inside a frame: in the header, the frame is dropped
    silently; in an INFER payload the rest is filled with zero bytes and the verdict is TIMEOUT;
    in any other payload or at the CRC byte the answer is TIMEOUT.

    Streaming (the ring, :class:`~kwsbnn.boards.ring.FrameRing`): a STREAM frame's good CRC pulses
    ``commit`` and, when the ring says ``due``, posts a VERDICT (the window's result becomes the
    RESULT); a bad CRC or a timeout pulses ``abort`` and posts ERROR. A good STREAM_START pulses
    ``start`` with its byte on ``start_stride`` and posts STARTED with the stride in force.

    Weight images (host protocol 3, ``load_bytes`` > 0: an engine-style board): a LOAD frame's
    payload bytes go out on ``lo`` (to :class:`~kwsbnn.boards.loader.WeightLoader`), ``lstart``
    pulses before them and ``lfinish`` at its CRC byte (``lok``: the CRC was good), which posts
    LOADED with ``lstatus`` (or ERROR checksum). While ``weights`` is low, INFER and STREAM
    payloads are read and dropped (nothing reaches the network or the ring) and answered with
    ERROR NO_WEIGHTS.

    Throughput: one byte per cycle (the UART delivers one per 10 bit times). Bytes are not taken
    while a request waits for the writer or a full transfer waits for the network (the UART then
    drops what arrives: the host must keep to the protocol's flow control).
    """

    def __init__(self, *, transfer_bits: int, input_bytes: int, timeout_cycles: int,
                 frame_bytes: int = 0, stride: int = 1, load_bytes: int = 0):
        self._tb = (transfer_bits + 7) // 8
        self._bits = transfer_bits
        self._len = input_bytes
        self._flen = int(frame_bytes)
        self._stride = int(stride)
        self._timeout = max(1, int(timeout_cycles))
        self._lload = int(load_bytes)
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(transfer_bits)),
                          "resp": Out(stream.Signature(RESPONSE)), "stream": Out(1),
                          "due": In(1), "commit": Out(1), "abort": Out(1), "start": Out(1),
                          "start_stride": Out(8), "weights": In(1, init=1),
                          "lo": Out(stream.Signature(8)), "lstart": Out(1), "lfinish": Out(1),
                          "lok": Out(1), "lstatus": In(3)})

    @property
    def timeout_cycles_max(self) -> int:
        k, ticks = timeout_plan(self._timeout)
        return ticks * (2 ** k - 1)

    def elaborate(self, platform):
        m = Module()
        tb, n, fl = self._tb, self._len, self._flen
        byte = self.i.payload
        crc = Signal(8)
        crc_nx = crc8_next(crc, byte)
        kind = Signal(3)
        infer = kind == K_INFER
        discard = Signal()          # an INFER or STREAM without weights: read, drop, NO_WEIGHTS
        lengths = {K_PING: 0, K_INFER: n, K_START: 1, K_STREAM: fl}
        if self._lload:
            lengths[K_LOAD] = self._lload
        want = Signal(range(max(lengths.values()) + 1))
        with m.Switch(kind):
            for k, v in lengths.items():
                with m.Case(k):
                    m.d.comb += want.eq(v)
        lo_ok = Signal()            # the low length byte is what the type needs
        left = Signal(range(max(n, fl, self._lload, 1) + 1))
        word = Signal(tb * 8)
        nbyte = Signal(range(tb + 1))
        full = nbyte == tb
        arg = Signal(8)
        k, ticks = timeout_plan(self._timeout)
        prescale = Signal(k)
        m.d.sync += prescale.eq(lfsr_next(prescale, k))
        tick = prescale == 0
        idle = Signal(range(ticks + 1))
        timed_out = idle == ticks
        pending = self.resp.valid

        m.d.comb += [self.o.payload.eq(word[:self._bits]), self.o.valid.eq(full),
                     self.stream.eq(kind == K_STREAM), self.start_stride.eq(arg),
                     self.lo.payload.eq(byte)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += nbyte.eq(0)
        with m.If(self.resp.ready):
            m.d.sync += self.resp.valid.eq(0)

        def post(kind, code=0):
            m.d.sync += [self.resp.valid.eq(1), self.resp.payload.kind.eq(kind),
                         self.resp.payload.code.eq(code)]

        def shift_in(value):
            m.d.sync += [word.eq(Cat(word[8:], value)), nbyte.eq(nbyte + 1), left.eq(left - 1)]

        take = self.i.valid & self.i.ready
        waiting = Signal()      # inside a frame, ready for a byte that does not come
        with m.If(take | ~waiting):
            m.d.sync += idle.eq(0)
        with m.Elif(tick & ~timed_out):
            m.d.sync += idle.eq(idle + 1)

        with m.FSM(name="parser"):
            with m.State("HUNT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & (byte == proto.SYNC)):
                    m.d.sync += crc.eq(0)
                    m.next = "VERSION"
            for state in ("VERSION", "TYPE", "LEN0", "LEN1"):
                with m.State(state):
                    m.d.comb += [self.i.ready.eq(~pending), waiting.eq(~pending)]
                    with m.If(take):
                        m.d.sync += crc.eq(crc_nx)
                        if state == "VERSION":
                            with m.If(byte != proto.VERSION):
                                post(RESP_ERROR, proto.ErrorCode.BAD_VERSION)
                                m.next = "HUNT"
                            with m.Else():
                                m.next = "TYPE"
                        elif state == "TYPE":
                            types = {proto.FrameType.PING: K_PING, proto.FrameType.INFER: K_INFER}
                            if fl:
                                types.update({proto.FrameType.STREAM_START: K_START,
                                              proto.FrameType.STREAM: K_STREAM})
                            if self._lload:
                                types[proto.FrameType.LOAD] = K_LOAD
                            with m.Switch(byte):
                                for t, kk in types.items():
                                    with m.Case(t):
                                        m.d.sync += [kind.eq(kk), discard.eq(
                                            ~self.weights if kk in (K_INFER, K_STREAM) else 0)]
                                        m.next = "LEN0"
                                with m.Default():
                                    post(RESP_ERROR, proto.ErrorCode.UNKNOWN_TYPE)
                                    m.next = "HUNT"
                        elif state == "LEN0":
                            m.d.sync += lo_ok.eq(byte == want[:8])
                            m.next = "LEN1"
                        else:
                            with m.If(lo_ok & (byte == (want >> 8)) & (want != 0)):
                                m.d.sync += left.eq(want)
                                m.d.comb += self.lstart.eq(kind == K_LOAD)
                                m.next = "PAYLOAD"
                            with m.Elif(lo_ok & (byte == 0) & (want == 0)):
                                m.next = "CRC"
                            with m.Else():
                                post(RESP_ERROR, proto.ErrorCode.BAD_LENGTH)
                                m.next = "HUNT"
                    with m.Elif(timed_out):
                        m.next = "HUNT"
            with m.State("PAYLOAD"):
                with m.If(kind == K_LOAD):
                    m.d.comb += [self.i.ready.eq(self.lo.ready), waiting.eq(self.lo.ready),
                                 self.lo.valid.eq(self.i.valid)]
                with m.Elif(discard):
                    m.d.comb += [self.i.ready.eq(1), waiting.eq(1)]
                with m.Else():
                    m.d.comb += [self.i.ready.eq(~full), waiting.eq(~full)]
                with m.If(take):
                    m.d.sync += crc.eq(crc_nx)
                    with m.If(kind == K_START):
                        m.d.sync += [arg.eq(byte), left.eq(left - 1)]
                    with m.Elif((kind == K_LOAD) | discard):
                        m.d.sync += left.eq(left - 1)
                    with m.Else():
                        shift_in(byte)
                    with m.If(left == 1):
                        m.next = "CRC"
                with m.Elif(timed_out):
                    with m.If(infer & ~discard):
                        m.next = "FILL"
                    with m.Else():
                        m.next = "TIMEOUT"
            with m.State("FILL"):
                with m.If(~full):
                    shift_in(Const(0, 8))
                    with m.If(left == 1):
                        m.next = "TIMEOUT"
            with m.State("CRC"):
                m.d.comb += [self.i.ready.eq(~pending), waiting.eq(~pending)]
                with m.If(take):
                    ok = byte == crc
                    with m.Switch(Mux(discard, 7, kind)):
                        with m.Case(7):
                            post(RESP_ERROR, proto.ErrorCode.NO_WEIGHTS)
                        with m.Case(K_LOAD):
                            m.d.comb += [self.lfinish.eq(1), self.lok.eq(ok)]
                            post(Mux(ok, RESP_LOADED, RESP_ERROR),
                                 Mux(ok, self.lstatus, proto.ErrorCode.BAD_CHECKSUM))
                        with m.Case(K_INFER):
                            post(RESP_VERDICT, Mux(ok, 0, proto.ErrorCode.BAD_CHECKSUM))
                        with m.Case(K_STREAM):
                            with m.If(~ok):
                                m.d.comb += self.abort.eq(1)
                                post(RESP_ERROR, proto.ErrorCode.BAD_CHECKSUM)
                            with m.Else():
                                m.d.comb += self.commit.eq(1)
                                with m.If(self.due):
                                    post(RESP_VERDICT, 0)
                        with m.Default():
                            with m.If(~ok):
                                post(RESP_ERROR, proto.ErrorCode.BAD_CHECKSUM)
                            with m.Elif(kind == K_PING):
                                post(RESP_INFO)
                            with m.Else():
                                m.d.comb += self.start.eq(1)
                                post(RESP_STARTED, Mux(arg == 0, self._stride, arg))
                    m.next = "HUNT"
                with m.Elif(timed_out):
                    m.next = "TIMEOUT"
            with m.State("TIMEOUT"):
                m.d.comb += self.abort.eq(1)
                with m.If(~pending):
                    post(Mux(infer & ~discard, RESP_VERDICT, RESP_ERROR), proto.ErrorCode.TIMEOUT)
                    m.next = "HUNT"
        return m


class FrameWriter(wiring.Component):
    """Board -> host frames: for each request on ``req`` sends INFO (the constant ``info`` payload),
    ERROR (the request's code), STARTED (the code is the stride) or, for a VERDICT, waits for the
    network's result on ``res`` and sends RESULT (verdict 0) or discards the result and sends
    ERROR (verdict = error code).

    Every payload goes out of one shift register of ``max(1 + n_classes * score_bytes, 16)``
    bytes: the RESULT is copied into it when the result is taken (so the network is free again at
    once), the INFO payload and the ERROR code are loaded as constants. On iCE40 that costs one
    logic cell per bit, fewer than a byte multiplexer over the result. Header bytes are constants
    selected by the byte index; the CRC is computed as the bytes go out. ``cls`` is the class of
    the last RESULT.
    Latency: the first byte is offered 1 cycle after the request (or the result for a VERDICT).
    Throughput: one byte per UART byte time on ``o``; 1 idle cycle between frames.
    """

    def __init__(self, *, n_classes: int, score_width: int, info: bytes, serial: bool = False):
        """``info``: the INFO payload; its weights byte (22) is ORed with the ``weights`` input,
        its flash byte (23) with ``flash``.
        ``serial``: the network rotates its held scores on ``rot`` (a serial tail,
        :class:`kwsbnn.hw.serial_tail.SerialRequantTail`): no shift register (see the class doc)."""
        self._serial = bool(serial)
        self._k = n_classes
        self._sw = score_width
        self._sb = (score_width + 7) // 8
        self._info = bytes(info)
        from kwsbnn.hw.scores import result_layout
        self._layout = result_layout(n_classes, score_width)
        self._cls_w = Shape.cast(self._layout.members["cls"]).width
        super().__init__({"req": In(stream.Signature(RESPONSE)),
                          "res": In(stream.Signature(self._layout)),
                          "o": Out(stream.Signature(8)),
                          "cls": Out(self._cls_w), "weights": In(2), "flash": In(3),
                          "busy": Out(1),
                          **({"rot": Out(1)} if serial else {})})

    def elaborate(self, platform):
        m = Module()
        sb, sw = self._sb, self._sw
        hb = proto.HEADER_BYTES
        n_res = 1 + self._k * sb
        info_frame = proto.encode_frame(proto.FrameType.INFO, self._info)     # constant, CRC too
        headers = {RESP_INFO: info_frame[:hb],
                   RESP_ERROR: proto.encode_frame(proto.FrameType.ERROR, b"\0")[:hb],
                   RESP_VERDICT: proto.encode_frame(proto.FrameType.RESULT, bytes(n_res))[:hb],
                   RESP_STARTED: proto.encode_frame(proto.FrameType.STARTED, b"\0")[:hb],
                   RESP_LOADED: proto.encode_frame(proto.FrameType.LOADED, b"\0")[:hb]}
        last = {RESP_INFO: len(info_frame) - 1, RESP_ERROR: hb + 1, RESP_VERDICT: hb + n_res,
                RESP_STARTED: hb + 1, RESP_LOADED: hb + 1}
        kind = Signal(3)            # RESP_VERDICT here means RESULT
        code = Signal(8)
        idx = Signal(range(max(last.values()) + 1))
        crc = Signal(8)
        sreg = Signal(8 * max(n_res, len(self._info)))
        if self._serial:
            return self._elaborate_serial(m, kind, code, idx, crc, headers, last, n_res)

        # The result as bytes: class, then each score sign-extended, little-endian.
        payload = self.res.payload
        cls = Value.cast(payload.cls).as_unsigned()
        fields = [Cat(cls[:8], Const(0, max(0, 8 - len(cls))))]
        for k in range(self._k):
            s = Value.cast(payload.scores[k])
            fields.append(Cat(s, *([s[sw - 1]] * (8 * sb - sw))))

        is_last = Signal()
        with m.Switch(kind):
            for k, v in last.items():
                with m.Case(k):
                    m.d.comb += is_last.eq(idx == v)
        byte = Signal(8)
        with m.If(idx < hb):
            with m.Switch(Cat(idx[:3], kind)):
                for k, hdr in headers.items():
                    for i, b in enumerate(hdr):
                        with m.Case(i | (k << 3)):
                            m.d.comb += byte.eq(b)
        with m.Elif(is_last):
            m.d.comb += byte.eq(crc)
        with m.Else():
            m.d.comb += byte.eq(sreg[:8])

        # One load or shift of the shift register per cycle, from single select signals (one LUT
        # per bit on iCE40).
        load_res, load_info, load_err, shift = Signal(), Signal(), Signal(), Signal()
        err_code = Signal(8)
        with m.If(load_res):
            m.d.sync += sreg.eq(Cat(*fields))
        with m.Elif(load_info):
            info = int.from_bytes(self._info, "little")
            if len(self._info) > proto.BoardInfo.FLASH_BYTE:
                m.d.sync += sreg.eq(info | (self.weights << (8 * proto.BoardInfo.WEIGHTS_BYTE))
                                    | (self.flash << (8 * proto.BoardInfo.FLASH_BYTE)))
            else:
                m.d.sync += sreg.eq(info)
        with m.Elif(load_err):
            m.d.sync += sreg[:8].eq(err_code)      # ERROR and STARTED send one payload byte
        with m.Elif(shift):
            m.d.sync += sreg.eq(sreg >> 8)

        with m.FSM(name="writer") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                m.d.comb += [self.req.ready.eq(1), err_code.eq(self.req.payload.code)]
                with m.If(self.req.valid):
                    m.d.sync += [kind.eq(self.req.payload.kind), code.eq(self.req.payload.code),
                                 idx.eq(0), crc.eq(proto.SYNC)]    # crc8(SYNC, 0xA5) = 0
                    with m.Switch(self.req.payload.kind):
                        with m.Case(RESP_INFO):
                            m.d.comb += load_info.eq(1)
                            m.next = "SEND"
                        with m.Case(RESP_ERROR, RESP_STARTED, RESP_LOADED):
                            m.d.comb += load_err.eq(1)
                            m.next = "SEND"
                        with m.Default():
                            m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += [self.res.ready.eq(1), err_code.eq(code)]
                with m.If(self.res.valid):
                    with m.If(code != 0):
                        # A corrupted INFER: its result is dropped, ERROR(code) goes out instead.
                        m.d.comb += load_err.eq(1)
                        m.d.sync += kind.eq(RESP_ERROR)
                    with m.Else():
                        m.d.comb += load_res.eq(1)
                        m.d.sync += self.cls.eq(payload.cls)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(byte)]
                with m.If(self.o.ready):
                    m.d.comb += shift.eq(idx >= hb)
                    m.d.sync += [idx.eq(idx + 1), crc.eq(crc8_next(crc, byte))]
                    with m.If(is_last):
                        m.next = "IDLE"
        return m

    def _elaborate_serial(self, m, kind, code, idx, crc, headers, last, n_res):
        """The writer without a shift register: the RESULT's bytes come from the network's held
        result (the class, then ``scores[0]`` byte by byte, ``rot`` after each score's last byte,
        ``res.ready`` with the frame's last byte), the INFO bytes from a constant table by the
        payload byte index, the one byte of ERROR / STARTED / LOADED from ``code``."""
        sb, sw = self._sb, self._sw
        hb = proto.HEADER_BYTES
        payload = self.res.payload
        pidx = Signal(range(max(n_res, len(self._info)) + 1))     # payload byte index
        sbyte = Signal(range(max(2, sb)))                           # byte of the current score
        cls = Value.cast(payload.cls).as_unsigned()
        s0 = Value.cast(payload.scores[0])
        s0_bytes = Cat(s0, *([s0[sw - 1]] * (8 * sb - sw)))
        res_byte = Signal(8)
        with m.If(pidx == 0):
            m.d.comb += res_byte.eq(Cat(cls[:8], Const(0, max(0, 8 - len(cls)))))
        with m.Else():
            m.d.comb += res_byte.eq(s0_bytes.word_select(sbyte, 8) if sb > 1 else s0_bytes)
        info_byte = Signal(8)
        with m.Switch(pidx):
            for i, b in enumerate(self._info):
                with m.Case(i):
                    if i == proto.BoardInfo.WEIGHTS_BYTE:
                        m.d.comb += info_byte.eq(b | self.weights)
                    elif i == proto.BoardInfo.FLASH_BYTE:
                        m.d.comb += info_byte.eq(b | self.flash)
                    else:
                        m.d.comb += info_byte.eq(b)

        is_last = Signal()
        with m.Switch(kind):
            for k, v in last.items():
                with m.Case(k):
                    m.d.comb += is_last.eq(idx == v)
        byte = Signal(8)
        with m.If(idx < hb):
            with m.Switch(Cat(idx[:3], kind)):
                for k, hdr in headers.items():
                    for i, b in enumerate(hdr):
                        with m.Case(i | (k << 3)):
                            m.d.comb += byte.eq(b)
        with m.Elif(is_last):
            m.d.comb += byte.eq(crc)
        with m.Elif(kind == RESP_INFO):
            m.d.comb += byte.eq(info_byte)
        with m.Elif(kind == RESP_VERDICT):
            m.d.comb += byte.eq(res_byte)
        with m.Else():
            m.d.comb += byte.eq(code)      # ERROR, STARTED and LOADED send one payload byte

        with m.FSM(name="writer") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                m.d.comb += self.req.ready.eq(1)
                with m.If(self.req.valid):
                    m.d.sync += [kind.eq(self.req.payload.kind), code.eq(self.req.payload.code),
                                 idx.eq(0), pidx.eq(0), sbyte.eq(0),
                                 crc.eq(proto.SYNC)]    # crc8(SYNC, 0xA5) = 0
                    with m.Switch(self.req.payload.kind):
                        with m.Case(RESP_INFO, RESP_ERROR, RESP_STARTED, RESP_LOADED):
                            m.next = "SEND"
                        with m.Default():
                            m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.res.valid):
                    with m.If(code != 0):
                        # A corrupted INFER: its result is dropped, ERROR(code) goes out instead.
                        m.d.comb += self.res.ready.eq(1)
                        m.d.sync += kind.eq(RESP_ERROR)
                    with m.Else():
                        m.d.sync += self.cls.eq(payload.cls)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(byte)]
                with m.If(self.o.ready):
                    m.d.sync += [idx.eq(idx + 1), crc.eq(crc8_next(crc, byte))]
                    with m.If((idx >= hb) & ~is_last):
                        m.d.sync += pidx.eq(pidx + 1)
                        with m.If((kind == RESP_VERDICT) & (pidx != 0)):
                            with m.If(sbyte == sb - 1):
                                m.d.sync += sbyte.eq(0)
                                m.d.comb += self.rot.eq(1)
                            with m.Else():
                                m.d.sync += sbyte.eq(sbyte + 1)
                    with m.If(is_last):
                        # The RESULT is released only after its last byte (its scores rotated
                        # back into their order).
                        m.d.comb += self.res.ready.eq(kind == RESP_VERDICT)
                        m.next = "IDLE"
        return m


class KwsTop(wiring.Component):
    """The board design: network, UART, protocol 2 with its ring buffer, LEDs, reset button,
    clock (see module doc).

    ``clk_freq``: the ``sync`` clock in Hz (the PLL's achieved output when ``pll`` is given: a
    :mod:`kwsbnn.boards.pll` parameter set). ``baud``: the UART rate (divisor ``round(clk / baud)``,
    at most 2% off). ``timeout``: seconds without a byte inside a frame before the frame is
    abandoned. ``stride``: streaming decides every ``stride`` frames unless STREAM_START says
    otherwise (default: :func:`default_stride`, the smallest that keeps up with one frame per
    10 ms hop).
    """

    def __init__(self, dep, folding=None, *, clk_freq: float, baud: int = 115200, pll=None,
                 timeout: float = 0.1, stride: int | None = None):
        from kwsbnn.hw.engine import SPRAM_WORDS
        self._engine = (folding is not None and folding.style == "engine"
                        and folding.memory != "bram")
        if folding is not None and folding.style == "engine" and folding.memory == "bram":
            # The block-RAM engine (ECP5): weights in the bitstream, nothing to load, the ring in
            # block RAM, as the pipeline style.
            self._net = EngineNetwork(dep, folding)
        elif self._engine:
            self._net = EngineNetwork(dep, folding, shared_words=SPRAM_WORDS, serial_scores=True)
            if self._net.load_words > proto.MAX_IMAGE_WORDS:
                from kwsbnn.errors import KwsError
                raise KwsError(f"the weight image of {self._net.load_words} words is longer than one "
                               f"LOAD frame carries ({proto.MAX_IMAGE_WORDS})",
                               "use fewer channels or layers")
            ring = proto.ring_depth(*(int(v) for v in dep.input["shape"][1:]))
            eng = self._net.engine
            if eng.memory_words + ring > SPRAM_WORDS:
                from kwsbnn.errors import KwsError
                used = (f"{eng.weight_words:,} weight words, {eng.stream_words:,} stream-map words"
                        if eng.stream else f"{eng.weight_words:,} weight words")
                raise KwsError(f"{used} and the streaming ring's {ring:,} words take "
                               f"{eng.memory_words + ring:,} of the {SPRAM_WORDS:,} SPRAM words",
                               "use fewer channels or layers, or a shorter input")
        else:
            self._net = Network(dep, folding)
        self._dep = dep
        self._clk = float(clk_freq)
        self._divisor = uart_divisor(clk_freq, baud)
        self._baud = int(baud)
        self._pll = pll
        if stride is None:
            stride = default_stride(self._net, clk_freq)
        if not 1 <= int(stride) <= 255:
            from kwsbnn.errors import KwsError
            raise KwsError(f"stride {stride}: the board decides every 1 to 255 frames")
        self._geom = proto.LinkGeometry.from_network(self._net, dep, stride)
        self._timeout_cycles = max(1, int(round(timeout * clk_freq)))
        if self._geom.input_bytes > proto.MAX_PAYLOAD:
            raise ValueError(f"the input of {self._geom.input_bytes} bytes is longer than a frame "
                             f"payload ({proto.MAX_PAYLOAD})")
        ports = {"rx": In(1, init=1), "tx": Out(1, init=1), "leds": Out(8)}
        if self._engine:
            # The SPI flash the weight image is read from at power-up (boards/flash.py).
            ports.update({"flash_cs_n": Out(1, init=1), "flash_sck": Out(1), "flash_copi": Out(1),
                          "flash_cipo": In(1)})
        super().__init__(ports)

    @property
    def network(self) -> Network:
        return self._net

    @property
    def engine_style(self) -> bool:
        """Whether the network is the engine style with its weights in SPRAM (loaded over the
        link, LOAD); the block-RAM engine has them in the bitstream, like the pipeline."""
        return self._engine

    @property
    def style(self) -> str:
        """``pipeline``, ``engine`` (weights in SPRAM) or ``engine-bram`` (block-RAM engine)."""
        if self._engine:
            return "engine"
        return "engine-bram" if isinstance(self._net, EngineNetwork) else "pipeline"

    def weight_image(self) -> proto.WeightImage | None:
        """The image a LOAD must bring (None in the pipeline style: the weights are in the
        bitstream)."""
        if not self._engine:
            return None
        return proto.WeightImage(self._geom.model_id, tuple(self._net.load_image()))

    @property
    def ring_base(self) -> int:
        """Engine style: the weight-memory word where the streaming ring starts (its last
        ``ring_transfers`` words; the weights take the first ``weight_words``)."""
        from kwsbnn.hw.engine import SPRAM_WORDS
        return SPRAM_WORDS - self._geom.ring_transfers

    @property
    def geometry(self) -> proto.LinkGeometry:
        return self._geom

    @property
    def info(self) -> proto.BoardInfo:
        """The INFO this design answers."""
        return self._geom.info(self._clk)

    @property
    def clk_freq(self) -> float:
        return self._clk

    @property
    def timeout_cycles(self) -> tuple[int, int]:
        """(least, most) idle cycles inside a frame before the parser gives up on it."""
        k, ticks = timeout_plan(self._timeout_cycles)
        return self._timeout_cycles, ticks * (2 ** k - 1)

    @property
    def divisor(self) -> int:
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def baud_error(self) -> float:
        """The UART's rate ``clk / divisor`` relative to the requested baud, minus 1."""
        return self._clk / self._divisor / self._baud - 1

    @property
    def stride(self) -> int:
        """Frames per decision when streaming, unless STREAM_START sets another."""
        return self._geom.stride

    def stream_figures(self, hop_s: float = 0.01) -> dict:
        """What streaming costs and reaches: the ring buffer (transfers, bits), the link's limit at
        this baud (:meth:`~kwsbnn.boards.protocol.LinkGeometry.link_limit`), the network's own
        rate, and the decisions per second in real time (one frame per ``hop_s``) at the stride."""
        g = self._geom
        net_rate = self._clk / self._net.costs()["cycles_per_inference"]
        lim = g.link_limit(self._baud)
        return {"stride": g.stride, "ring_transfers": g.ring_transfers, "ring_bits": g.ring_bits,
                "frame_bytes": g.frame_bytes, "ahead": g.ahead, "baud": self._baud,
                "divisor": self._divisor, "baud_error": self.baud_error,
                "link_frames_per_second": lim["frames_per_second"],
                "link_decisions_per_second": lim["decisions_per_second"],
                "network_per_second": net_rate,
                "realtime_decisions_per_second": min(1 / hop_s / g.stride, net_rate),
                "keeps_up": net_rate >= 1 / hop_s / g.stride
                and lim["frames_per_second"] >= 1 / hop_s}

    def elaborate(self, platform):
        m = Module()
        g = self._geom
        m.submodules.net = net = self._net
        m.submodules.urx = urx = UARTRx(self._divisor)
        m.submodules.utx = utx = UARTTx(self._divisor)
        m.submodules.parser = parser = FrameParser(
            transfer_bits=g.channels * g.elem_bits, input_bytes=g.input_bytes,
            timeout_cycles=self._timeout_cycles, frame_bytes=g.frame_bytes, stride=g.stride,
            load_bytes=g.load_bytes)
        info = self._geom.info(self._clk, proto.Weights.IN_BITSTREAM).encode()  # weights ORed in
        serial = bool(getattr(self._net, "rotating_scores", False))
        m.submodules.writer = writer = FrameWriter(n_classes=g.n_classes, score_width=g.score_width,
                                                   info=info, serial=serial)
        if serial:
            m.d.comb += net.rot.eq(writer.rot)
        if self._engine:
            from kwsbnn.hw.engine import SPRAM_WORDS
            m.submodules.ring = ring = SpramRing(
                width=g.channels * g.elem_bits, frames=g.frames, coeffs=g.coeffs, stride=g.stride,
                base=self.ring_base, words=SPRAM_WORDS)
            m.submodules.loader = loader = WeightLoader(words=g.load_words, model_id=g.model_id)
            m.submodules.flash = flash = FlashBoot(words=g.load_words, clk_freq=self._clk)
            # The loader's bytes: the flash's image once after configuration, then LOAD frames.
            boot = flash.busy
            m.d.comb += [loader.i.valid.eq(Mux(boot, flash.o.valid, parser.lo.valid)),
                         loader.i.payload.eq(Mux(boot, flash.o.payload, parser.lo.payload)),
                         flash.o.ready.eq(boot & loader.i.ready),
                         parser.lo.ready.eq(~boot & loader.i.ready),
                         flash.status.eq(loader.status), writer.flash.eq(flash.result),
                         self.flash_cs_n.eq(flash.cs_n), self.flash_sck.eq(flash.sck),
                         self.flash_copi.eq(flash.copi), flash.cipo.eq(self.flash_cipo)]
            wiring.connect(m, loader.wl, net.wl)
            weights = Signal()
            idle = Signal()         # registered: it only gates a LOAD's last header byte
            m.d.sync += idle.eq(~writer.busy & ~parser.resp.valid & ring.idle)
            m.d.comb += [weights.eq(loader.loaded & net.wl_loaded),
                         loader.start.eq(Mux(boot, flash.start, parser.lstart)),
                         loader.finish.eq(Mux(boot, flash.finish, parser.lfinish)),
                         loader.frame_ok.eq(boot | parser.lok), parser.lstatus.eq(loader.status),
                         loader.idle.eq(idle),
                         net.wl_reload.eq(loader.reload),
                         parser.weights.eq(weights),
                         writer.weights.eq(Mux(weights, proto.Weights.LOADED, proto.Weights.NONE)),
                         ring.sm_grant.eq(net.sm_grant), net.sm_addr.eq(ring.sm_addr),
                         net.sm_wdata.eq(ring.sm_wdata), net.sm_we.eq(ring.sm_we),
                         ring.sm_rdata.eq(net.sm_rdata)]
        else:
            m.submodules.ring = ring = FrameRing(width=g.channels * g.elem_bits, frames=g.frames,
                                                 coeffs=g.coeffs, stride=g.stride)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o, parser.i)
        # The network's input: a window the ring replays, else an INFER's transfers. (The payload
        # follows the ring's registered valid, not its busy: the same whenever a transfer can
        # happen, and the ring's counters stay off the first layer's datapath.)
        m.d.comb += [ring.i.payload.eq(parser.o.payload),
                     ring.i.valid.eq(parser.o.valid & parser.stream),
                     net.i.payload.eq(Mux(ring.o.valid, ring.o.payload, parser.o.payload)),
                     net.i.valid.eq(Mux(ring.busy, ring.o.valid, parser.o.valid & ~parser.stream)),
                     ring.o.ready.eq(net.i.ready),
                     parser.o.ready.eq(parser.stream | (net.i.ready & ~ring.busy)),
                     parser.due.eq(ring.due), ring.commit.eq(parser.commit),
                     ring.abort.eq(parser.abort), ring.start.eq(parser.start),
                     ring.start_stride.eq(parser.start_stride)]
        wiring.connect(m, parser.resp, writer.req)
        wiring.connect(m, net.o, writer.res)
        wiring.connect(m, writer.o, utx.i)
        m.d.comb += self.leds.eq(writer.cls)
        if platform is not None:
            self._clock(m, platform)
            self._connect_platform(m, platform)
        return m

    def _clock(self, m, platform):
        from .pll import ecp5_instance, ice40_instance
        clk, lock = Signal(name="board_clk"), Signal(name="pll_lock")
        pad = platform.request(platform.default_clk, 0, dir="-")
        if self._pll is not None and self._pll.family == "ice40":
            # SB_PLL40_PAD takes the clock pin itself (its dedicated input pad).
            m.submodules.pll = ice40_instance(self._pll, pad.io, clk, lock)
        else:
            m.submodules.osc_buf = osc = io.Buffer("i", pad)
            if self._pll is None:
                m.d.comb += [clk.eq(osc.i), lock.eq(1)]
            else:
                m.submodules.pll = ecp5_instance(self._pll, osc.i, clk, lock)
        # nextpnr derives the PLL output's clock constraint from the oscillator's and the PLL's
        # parameters (its timing report checks the achieved frequency).
        # Power-on / lock reset: count 15 us of a locked clock, then release (reset-less domain).
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += ClockSignal("por").eq(clk)
        locked = Signal()
        m.submodules.lock_sync = FFSynchronizer(lock, locked, o_domain="por")
        delay = max(2, int(15e-6 * self._clk))
        timer = Signal(range(delay + 1))
        ready = Signal()
        with m.If(~locked):
            m.d.por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == delay):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        button = self._reset_button(m, platform)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        m.submodules.reset_sync = ResetSynchronizer(~ready | button, domain="sync")

    @staticmethod
    def _reset_button(m, platform):
        """The pressed state of the board's reset button (ULX3S: PWR, iCEBreaker: the user button)."""
        from amaranth.build import ResourceError
        for name in ("button_pwr", "button"):
            try:
                port = platform.request(name, 0, dir="-")
            except ResourceError:
                continue
            m.submodules.button_buf = buf = io.Buffer("i", port)
            return buf.i
        return Const(0)

    def _connect_platform(self, m, platform):
        from amaranth.build import ResourceError
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx = io.Buffer("o", uart.tx)
        m.d.comb += [self.rx.eq(rx.i), tx.o.eq(self.tx)]
        if self._engine:
            # The configuration flash (iCEBreaker: the W25Q128JV on pins 14-17); the resource's
            # chip select is active-high (inverted pin), wp and hold held inactive.
            spi = platform.request("spi_flash_1x", 0, dir="-")
            for name, port, value in (("cs", spi.cs, ~self.flash_cs_n), ("clk", spi.clk, self.flash_sck),
                                      ("copi", spi.copi, self.flash_copi)):
                m.submodules[f"flash_{name}_buf"] = buf = io.Buffer("o", port)
                m.d.comb += buf.o.eq(value)
            m.submodules.flash_cipo_buf = cipo = io.Buffer("i", spi.cipo)
            m.d.comb += self.flash_cipo.eq(cipo.i)
            for name in ("wp", "hold"):
                if hasattr(spi, name):
                    m.submodules[f"flash_{name}_buf"] = buf = io.Buffer("o", getattr(spi, name))
                    m.d.comb += buf.o.eq(0)
        for n in range(len(self.leds)):
            try:
                port = platform.request("led", n, dir="-")
            except ResourceError:
                break
            m.submodules[f"led{n}_buf"] = led = io.Buffer("o", port)
            m.d.comb += led.o.eq(self.leds[n])
