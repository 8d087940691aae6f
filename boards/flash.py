"""The weight image from the board's SPI flash at power-up (engine style, iCEBreaker), and the
flash image that holds it.

SPRAM is not initialised by the bitstream. ``kwsbnn build`` writes ``kws.flash.bin``: the
bitstream, erased bytes (0xFF) up to :data:`FLASH_OFFSET` (1 MiB, 64 KiB-aligned, far past the
UP5K's 104 kB bitstream), then the weight image of :class:`kwsbnn.boards.protocol.WeightImage`
(the file ``kws.weights.bin``: a 12-byte header with format, word count, model id and CRC-32,
then the words). After configuration :class:`FlashBoot` reads that image once into the same
:class:`~kwsbnn.boards.loader.WeightLoader` a LOAD frame feeds, so the header and the CRC are
checked the same way: an image for another model, of another length or format, or a corrupted
one is refused (the board then waits for a LOAD over the UART) and its verdict is in INFO
(:class:`~kwsbnn.boards.protocol.FlashStatus`).
"""

from math import ceil

from amaranth.hdl import Array, Cat, ClockDomain, ClockSignal, Const, Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from kwsbnn.errors import KwsError

from . import protocol as proto

#: Byte address of the weight image in the flash: 1 MiB (64 KiB-aligned).
FLASH_OFFSET = 0x100000
#: The flash's commands: release from deep power-down, and read (3 address bytes, any clock up to
#: 33 MHz on the iCEBreaker's W25Q128JV and its kin).
CMD_WAKE = 0xAB
CMD_READ = 0x03
#: Time after the release command before the flash takes another (tRES1: 3 us on the W25Q128JV;
#: 20 us leaves room for slower parts).
WAKE_SECONDS = 20e-6
#: Highest SPI clock the reader makes (the sync clock divided by an even number).
SCK_MAX_HZ = 12e6


def flash_image(bitstream: bytes, image: bytes, offset: int = FLASH_OFFSET) -> bytes:
    """The bytes to program into the board's flash from address 0: ``bitstream``, 0xFF up to
    ``offset``, then the weight image ``image`` (``WeightImage.encode()``). A bitstream that
    reaches ``offset`` is a :class:`KwsError`."""
    bitstream, image = bytes(bitstream), bytes(image)
    if len(bitstream) > offset:
        raise KwsError(f"the bitstream has {len(bitstream):,} bytes, more than the weight image's "
                       f"flash offset {offset:#x}", "this is not an iCE40 UP5K bitstream")
    return bitstream + b"\xff" * (offset - len(bitstream)) + image


def program_commands(flash_path, weights_path, offset: int = FLASH_OFFSET) -> list[str]:
    """The commands that program the flash: the whole flash image, or the weight image alone (a
    model of the same bitstream)."""
    return [f"iceprog {flash_path}", f"iceprog -o {offset // 1024}k {weights_path}"]


class FlashBoot(wiring.Component):
    """Reads the weight image from an SPI flash (mode 0) once after configuration, into a
    :class:`~kwsbnn.boards.loader.WeightLoader`'s byte port.

    Computes: the release-from-deep-power-down command (0xAB: the iCE40 leaves the flash asleep
    after configuration unless the bitstream was packed to keep it awake), a wait of
    :data:`WAKE_SECONDS`, then READ (0x03) at ``offset`` and the image's ``12 + 8 words`` bytes,
    each offered on ``o`` (``start`` pulses before the first). After the 12 header bytes, a header
    the loader refuses (``status`` WRONG_MODEL, BAD_LENGTH or BAD_FORMAT: an erased flash reads
    format 0xFF) ends the read; otherwise, after the last byte, ``finish`` pulses (with a good
    frame) once the loader has taken the byte's CRC bits, and the loader's verdict is kept in
    ``result`` (a :class:`~kwsbnn.boards.protocol.FlashStatus`: READING until then). ``busy``: the
    byte port is the reader's (the host's LOAD bytes wait). Its state is not reset by ``rst``:
    it reads once per configuration, as the weight memory keeps its image.

    Timing: the SPI clock is the sync clock divided by ``2 half`` (``half`` = ``ceil(clk /
    (2 SCK_MAX_HZ))``): one bit per ``2 half`` cycles, sampled at the end of the clock's high
    half; a byte every ``16 half + 2`` cycles (the loader's 8 CRC cycles fit between two). At
    24 MHz (``half`` = 1) the 13,836 bytes of ``binary``'s image take 249k cycles: 10.4 ms. Measured
    in Verilator (``tests/test_board_sim.py``): 3,660 bytes in 66,127 cycles.

    Members: ``o : Out(stream.Signature(8))``, ``start``, ``finish``, ``busy : Out(1)``,
    ``status : In(3)`` (the loader's), ``result : Out(3)``; the pins ``cs_n`` (init 1), ``sck``,
    ``copi : Out(1)``, ``cipo : In(1)``.
    """

    def __init__(self, *, words: int, clk_freq: float, offset: int = FLASH_OFFSET):
        self._bytes = proto.IMAGE_HEADER_BYTES + 8 * int(words)
        self._offset = int(offset)
        self._half = max(1, ceil(clk_freq / (2 * SCK_MAX_HZ)))
        self._wake = max(2, ceil(WAKE_SECONDS * clk_freq))
        if not 0 <= self._offset < 1 << 24:
            raise ValueError(f"flash offset {offset:#x} is not a 3-byte address")
        super().__init__({"o": Out(stream.Signature(8)), "start": Out(1), "finish": Out(1),
                          "busy": Out(1), "status": In(3), "result": Out(3),
                          "cs_n": Out(1, init=1), "sck": Out(1), "copi": Out(1), "cipo": In(1)})

    @property
    def image_bytes(self) -> int:
        return self._bytes

    @property
    def boot_cycles(self) -> int:
        """Cycles from the first chip select to the last byte read (a good image): the release
        command (8 bits), the wait, READ and its address (4 bytes), eight cycles of state
        changes, then ``16 half + 2`` a byte."""
        bit = 2 * self._half
        return 8 * bit + self._wake + 32 * bit + 8 + (8 * bit + 2) * self._bytes

    @property
    def sck_divisor(self) -> int:
        """Sync clock cycles per SPI clock."""
        return 2 * self._half

    def elaborate(self, platform):
        m = Module()
        # Once per configuration: a domain on the sync clock that ``rst`` does not reset; the
        # read starts when ``rst`` is first released (the PLL locked).
        m.domains.flash = ClockDomain("flash", reset_less=True, local=True)
        m.d.comb += ClockSignal("flash").eq(ClockSignal("sync"))
        half = self._half
        sr = Signal(8)                               # out: MSB first; in: into bit 0
        nbits = Signal(range(9))                     # bits left of the current byte
        tick = Signal(range(max(2, half)))
        count = Signal(range(max(self._bytes, self._wake) + 1))   # bytes read, or the wait
        timer = count
        cs_n = Signal(init=1)
        sck = Signal()
        result = Signal(3, init=proto.FlashStatus.READING)
        command = [CMD_READ, (self._offset >> 16) & 0xFF, (self._offset >> 8) & 0xFF,
                   self._offset & 0xFF]
        txi = Signal(range(len(command)))            # the READ command's byte being sent
        m.d.comb += [self.cs_n.eq(cs_n), self.sck.eq(sck), self.copi.eq(sr[7]),
                     self.result.eq(result), self.o.payload.eq(sr)]

        # The bit engine: ``nbits`` bits out of sr[7] and in from cipo, a low half then a high half.
        bit_done = Signal()
        with m.If(nbits != 0):
            if half > 1:
                with m.If(tick != half - 1):
                    m.d.flash += tick.eq(tick + 1)
                with m.Else():
                    m.d.flash += tick.eq(0)
                    self._edge(m, sck, sr, nbits, self.cipo)
            else:
                self._edge(m, sck, sr, nbits, self.cipo)
        m.d.comb += bit_done.eq(nbits == 0)

        header_bad = ((self.status == proto.LoadStatus.WRONG_MODEL)
                      | (self.status == proto.LoadStatus.BAD_LENGTH)
                      | (self.status == proto.LoadStatus.BAD_FORMAT))
        with m.FSM(name="flash", init="POR", domain="flash") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("DONE"))
            with m.State("POR"):
                with m.If(~ResetSignal("sync")):
                    m.next = "WAKE"
            with m.State("WAKE"):
                m.d.flash += [cs_n.eq(0), sr.eq(CMD_WAKE), nbits.eq(8), tick.eq(0)]
                m.next = "WAKE_SEND"
            with m.State("WAKE_SEND"):
                with m.If(bit_done):
                    m.d.flash += [cs_n.eq(1), timer.eq(0)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.flash += timer.eq(timer + 1)
                with m.If(timer == self._wake):
                    m.d.flash += [cs_n.eq(0), sr.eq(CMD_READ), nbits.eq(8), tick.eq(0),
                                  count.eq(0), txi.eq(0)]
                    m.next = "COMMAND"
            with m.State("COMMAND"):
                with m.If(bit_done):
                    with m.If(txi == len(command) - 1):
                        m.d.comb += self.start.eq(1)
                        m.next = "SETTLE"
                    with m.Else():
                        m.d.flash += [txi.eq(txi + 1), nbits.eq(8), tick.eq(0),
                                      sr.eq(Array(Const(c, 8) for c in command)[txi + 1])]
            with m.State("SETTLE"):              # the loader takes no byte right after start
                m.d.flash += [nbits.eq(8), tick.eq(0)]
                m.next = "RECEIVE"
            with m.State("RECEIVE"):
                with m.If(bit_done):
                    m.next = "OFFER"
            with m.State("OFFER"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.flash += count.eq(count + 1)
                    with m.If(count == self._bytes - 1):
                        m.d.flash += cs_n.eq(1)
                        m.next = "DRAIN"
                    with m.Elif(count == proto.IMAGE_HEADER_BYTES - 1):
                        m.next = "CHECK"
                    with m.Else():
                        m.d.flash += [nbits.eq(8), tick.eq(0)]
                        m.next = "RECEIVE"
            with m.State("CHECK"):                # the loader's verdict on the header
                with m.If(header_bad):
                    m.d.flash += [cs_n.eq(1), result.eq(proto.FlashStatus.LOADED + self.status)]
                    m.next = "DONE"
                with m.Else():
                    m.d.flash += [nbits.eq(8), tick.eq(0)]
                    m.next = "RECEIVE"
            with m.State("DRAIN"):                # the last byte's CRC bits
                with m.If(self.o.ready):
                    m.d.comb += self.finish.eq(1)
                    m.d.flash += timer.eq(0)
                    m.next = "VERDICT"
            with m.State("VERDICT"):              # finish acts a cycle late in the loader
                m.d.flash += timer.eq(timer + 1)
                with m.If(timer == 2):
                    m.d.flash += result.eq(proto.FlashStatus.LOADED + self.status)
                    m.next = "DONE"
            with m.State("DONE"):
                pass
        return m

    @staticmethod
    def _edge(m, sck, sr, nbits, cipo):
        """One half of a bit: raise the clock, or sample cipo, shift and lower it."""
        with m.If(~sck):
            m.d.flash += sck.eq(1)
        with m.Else():
            m.d.flash += [sck.eq(0), nbits.eq(nbits - 1), sr.eq(Cat(cipo, sr[:7]))]
