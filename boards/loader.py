"""The board's weight loader (host protocol 3, LOAD): the bytes of a weight image, checked, into the
layer engine's loader port.

:class:`WeightLoader` takes a LOAD frame's payload bytes from the frame parser (the image of
:class:`kwsbnn.boards.protocol.WeightImage`: a 12-byte header, then 64-bit words, little-endian),
checks the header against the bitstream's constants as it arrives, and only when the header is
right starts a new image in the engine (``reload``) and passes it the words. The words' CRC-32 is
computed as they go by and compared with the header's at the end of the frame: the weights count
as loaded (``loaded``) only after that check and a good frame CRC. A wrong header (format, word
count, model id) leaves the image that was there, and its ``loaded``, as they were.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol as proto

CRC32_POLY = 0xEDB88320        # reflected IEEE 802.3 polynomial


class WeightLoader(wiring.Component):
    """Checks a weight image and feeds its words to the layer engine.

    Computes: for the bytes of one LOAD payload on ``i`` (``start`` pulses before the first):
    header byte 0 must be :data:`~kwsbnn.boards.protocol.IMAGE_FORMAT` (else status BAD_FORMAT),
    bytes 2-3 ``words`` (BAD_LENGTH), bytes 4-7 ``model_id`` (WRONG_MODEL); the first failing check
    sets ``status``. Bytes 8-11 are the expected CRC-32. When the last header byte is taken and
    the header is good, ``reload`` pulses (the engine forgets its image) and ``loaded`` clears;
    that byte is taken only while ``idle`` (no inference in flight). Then every 8 bytes make a word
    on ``wl``. ``finish`` (the frame's CRC byte) with ``frame_ok`` and a good header sets
    ``loaded`` when the words' CRC-32 equals the header's; ``status`` then reads BAD_CRC
    otherwise. ``loaded`` is not reset by ``rst`` (the engine's weight memory keeps the image).

    Latency and throughput: a byte is taken, then its 8 CRC bits take 8 cycles (one bit a cycle,
    a 32-bit register and a few LUTs instead of a byte-wide XOR network); a UART byte takes 10 bit
    times of at least 4 cycles each, so the loader never holds up the link. ``start`` and
    ``finish`` (with ``frame_ok``) act one cycle late, registered (they come from the frame
    parser's decoding, whose paths would otherwise run on into the loader's registers); the loader
    takes no byte in the cycle after ``start``, and ``loaded`` is set the cycle after ``finish``.

    Members: ``i : In(stream.Signature(8))``, ``start, finish, frame_ok, idle : In(1)``,
    ``status : Out(3)`` (a :class:`~kwsbnn.boards.protocol.LoadStatus`), ``wl :
    Out(stream.Signature(64))``, ``reload : Out(1)``, ``loaded : Out(1)``.
    """

    def __init__(self, *, words: int, model_id: int):
        self._words = int(words)
        self._id = int(model_id) & 0xFFFFFFFF
        if not 1 <= self._words <= proto.MAX_IMAGE_WORDS:
            raise ValueError(f"a weight image of {words} words: one LOAD frame carries 1 to "
                             f"{proto.MAX_IMAGE_WORDS}")
        super().__init__({"i": In(stream.Signature(8)), "start": In(1), "finish": In(1),
                          "frame_ok": In(1), "idle": In(1), "status": Out(3),
                          "wl": Out(stream.Signature(64)), "reload": Out(1), "loaded": Out(1)})

    def elaborate(self, platform):
        m = Module()
        hb = proto.IMAGE_HEADER_BYTES
        byte = self.i.payload
        loaded = Signal(reset_less=True)
        m.d.comb += self.loaded.eq(loaded)
        pos = Signal(range(hb + 1))             # header byte index, saturating at hb
        hstat = Signal(3)                       # the header's verdict (0: good so far)
        expect = Signal(32)
        crc = Signal(32)
        word = Signal(64)
        nbyte = Signal(3)                       # bytes of the current word, mod 8
        bitn = Signal(4)                        # CRC bits left of the last byte taken
        sbyte = Signal(8)                       # those bits, next one at bit 0
        active = Signal()                       # a good header: the words go to the engine
        wvalid = Signal()
        m.d.comb += [self.wl.valid.eq(wvalid), self.wl.payload.eq(word)]
        with m.If(self.wl.ready):
            m.d.sync += wvalid.eq(0)

        start, finish = Signal(), Signal()      # start, and finish with frame_ok, registered
        m.d.sync += [start.eq(self.start), finish.eq(self.finish & self.frame_ok)]
        last_header = pos == hb - 1
        m.d.comb += self.i.ready.eq((bitn == 0) & ~wvalid & (~last_header | self.idle) & ~start)
        take = self.i.valid & self.i.ready
        crc_ok = (crc ^ 0xFFFFFFFF) == expect
        m.d.comb += self.status.eq(Mux(hstat != 0, hstat,
                                       Mux(crc_ok, proto.LoadStatus.LOADED, proto.LoadStatus.BAD_CRC)))

        # The header: each byte against the bitstream's constant as it arrives.
        expected = {0: (proto.IMAGE_FORMAT, proto.LoadStatus.BAD_FORMAT)}
        for k in range(2):
            expected[2 + k] = ((self._words >> (8 * k)) & 0xFF, proto.LoadStatus.BAD_LENGTH)
        for k in range(4):
            expected[4 + k] = ((self._id >> (8 * k)) & 0xFF, proto.LoadStatus.WRONG_MODEL)
        with m.If(start):
            m.d.sync += [pos.eq(0), hstat.eq(0), active.eq(0), nbyte.eq(0), bitn.eq(0),
                         crc.eq(0xFFFFFFFF)]
        with m.Elif(take & (pos != hb)):
            m.d.sync += pos.eq(pos + 1)
            with m.Switch(pos):
                for j, (value, code) in expected.items():
                    with m.Case(j):
                        with m.If((byte != value) & (hstat == 0)):
                            m.d.sync += hstat.eq(code)
                for j in range(8, 12):
                    with m.Case(j):
                        m.d.sync += expect.eq(Cat(expect[8:], byte))
            with m.If(last_header & (hstat == 0)):
                m.d.comb += self.reload.eq(1)
                m.d.sync += [active.eq(1), loaded.eq(0)]
        with m.Elif(take):
            # A word byte: into the word (little-endian), then its CRC bits, one a cycle.
            m.d.sync += [word.eq(Cat(word[8:], byte)), nbyte.eq(nbyte + 1), bitn.eq(8),
                         sbyte.eq(byte)]
            with m.If((nbyte == 7) & active):
                m.d.sync += wvalid.eq(1)
        with m.If(bitn != 0):
            fb = crc[0] ^ sbyte[0]
            m.d.sync += [crc.eq((crc >> 1) ^ Mux(fb, CRC32_POLY, 0)), bitn.eq(bitn - 1),
                         sbyte.eq(sbyte >> 1)]
        with m.If(finish & active & (hstat == 0) & crc_ok):
            m.d.sync += loaded.eq(1)
        return m
