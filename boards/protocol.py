"""Host protocol 2: framed requests and answers over the board's UART byte link.

Pure Python (numpy for packing feature maps); no hardware dependency. The byte-level definition is
docs/host-protocol.md; this module is its reference implementation on the host side, and
:class:`SimulatedBoard` is an executable model of what the board does with every byte.

Frame::

    SYNC 0xA5 | VERSION 0x01 | TYPE | LENGTH (u16, little-endian) | PAYLOAD (LENGTH bytes) | CRC-8

The CRC-8 (polynomial x^8 + x^2 + x + 1 = 0x07, initial value 0, no reflection, no final XOR;
"CRC-8/SMBUS", check value 0xF4 for ``b"123456789"``) covers VERSION through the last PAYLOAD
byte, not SYNC. Types: PING (host -> board, empty; answered with INFO), INFER (host -> board, the
input map; answered with RESULT), STREAM_START (host -> board, the decision stride; answered with
STARTED), STREAM (host -> board, one input frame into the board's ring buffer; every N-th frame
is answered with the RESULT of the last ``T`` frames), INFO, RESULT, STARTED and ERROR (board ->
host). The frame format is version 1 (the VERSION byte); the protocol that the board speaks is
version 3 (the INFO's first byte): version 1 plus streaming (2) plus LOAD (3: the weight image of an
engine-style board, :class:`WeightImage`, answered with LOADED; INFER and STREAM before a good
LOAD are answered with ERROR NO_WEIGHTS).

Pieces:
- :func:`encode_frame`, :class:`FrameDecoder` (streaming, resynchronises on garbage and reports
  every rejected frame as a :class:`FrameError`);
- :class:`LinkGeometry` (sizes of the link for one network), :class:`BoardInfo` (the INFO payload),
  :func:`pack_input` / :func:`infer_request`, :func:`parse_result`, :func:`model_id`;
- :class:`StreamPlan`: which streamed frames the board answers and how far the host may run ahead;
- :class:`BoardLink`: request/answer over any object with ``write(bytes)`` and ``read(n)``
  (a pyserial ``Serial``, :class:`SimulatedBoard`, or a simulation transport), and streaming
  (:meth:`BoardLink.stream`);
- :class:`SimulatedBoard`: the board's protocol behaviour in Python, with a caller-given inference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from enum import IntEnum

from kwsbnn.errors import KwsError

SYNC = 0xA5
VERSION = 1                 # the frame format (each frame's VERSION byte)
PROTOCOL = 3                # what the board speaks (INFO byte 0): 1 = PING/INFER, 2 = + streaming,
                            # 3 = + LOAD (weight images of the engine style) and the weights' state
HEADER_BYTES = 5            # SYNC, VERSION, TYPE, LENGTH (2)
OVERHEAD = HEADER_BYTES + 1  # header and CRC
MAX_PAYLOAD = 0xFFFF
CRC_POLY = 0x07


class FrameType(IntEnum):
    PING = 0x01      # host -> board, empty payload; the board answers INFO
    INFER = 0x02     # host -> board, the input map; the board answers RESULT (or ERROR)
    STREAM_START = 0x03  # host -> board (v2), 1 byte: decide every N frames (0: the build's N)
    STREAM = 0x04    # host -> board (v2), one input frame; every N-th is answered with RESULT
    LOAD = 0x05      # host -> board (v3), a weight image (encode_image); answered with LOADED
    INFO = 0x81      # board -> host, see BoardInfo
    RESULT = 0x82    # board -> host, class byte then every score
    ERROR = 0x83     # board -> host, one ErrorCode byte
    STARTED = 0x84   # board -> host (v2), 1 byte: the stride N now in force
    LOADED = 0x85    # board -> host (v3), 1 byte: a LoadStatus


class ErrorCode(IntEnum):
    BAD_VERSION = 1    # VERSION byte is not 1
    BAD_CHECKSUM = 2   # CRC-8 mismatch (the inference that already ran is discarded)
    BAD_LENGTH = 3     # LENGTH is not what the TYPE needs (PING: 0, INFER: input bytes,
                       # STREAM_START: 1, STREAM: frame bytes)
    UNKNOWN_TYPE = 4   # TYPE is not one the board takes
    TIMEOUT = 5        # the host stopped sending in the middle of a frame's payload or CRC
    NO_WEIGHTS = 6     # (v3) an INFER or STREAM frame before a good LOAD: nothing ran


ERROR_TEXT = {
    ErrorCode.BAD_VERSION: "bad protocol version",
    ErrorCode.BAD_CHECKSUM: "bad checksum",
    ErrorCode.BAD_LENGTH: "bad payload length",
    ErrorCode.UNKNOWN_TYPE: "unknown frame type",
    ErrorCode.TIMEOUT: "frame timed out (host stopped mid-frame)",
    ErrorCode.NO_WEIGHTS: "no weights loaded (send the weight image first: kwsbnn run --load)",
}


class LoadStatus(IntEnum):
    """The LOADED answer's byte (host protocol 3)."""
    LOADED = 0        # the image is in and its CRC-32 checked: the board infers
    WRONG_MODEL = 1   # the header's model id is not the bitstream's: nothing changed
    BAD_CRC = 2       # the words' CRC-32 does not match the header's: the board has no weights
    BAD_LENGTH = 3    # the header's word count is not the bitstream's: nothing changed
    BAD_FORMAT = 4    # the header's format version is not 1: nothing changed


LOAD_TEXT = {
    LoadStatus.LOADED: "loaded",
    LoadStatus.WRONG_MODEL: "the image is for another model than the bitstream's",
    LoadStatus.BAD_CRC: "the image's CRC-32 does not match (corrupted on the way)",
    LoadStatus.BAD_LENGTH: "the image has another number of words than the bitstream needs",
    LoadStatus.BAD_FORMAT: "unknown image format version",
}


class Weights(IntEnum):
    """The weights' state in INFO (byte 22, host protocol 3; 0 on older boards)."""
    IN_BITSTREAM = 0  # pipeline style or ECP5 block-RAM engine: every weight in the bitstream
    NONE = 1          # engine style, no good image since power-up (or the last LOAD failed)
    LOADED = 2        # engine style, an image of the INFO's model id is loaded and checked


class FlashStatus(IntEnum):
    """The weight image read from the board's SPI flash at power-up, in INFO (byte 23, host
    protocol 3; 0 on boards without the flash reader). From LOADED on: ``LOADED + LoadStatus``."""
    ABSENT = 0        # no flash reader: pipeline style, ECP5, or an older bitstream
    READING = 1       # the image is being read (about 10 ms after configuration)
    LOADED = 2        # the flash's image is loaded and its CRC-32 checked
    WRONG_MODEL = 3   # the flash holds an image of another model: refused
    BAD_CRC = 4       # the flash's image is corrupted: refused
    BAD_LENGTH = 5    # the flash's image has another word count: refused
    BAD_FORMAT = 6    # no image at the offset (an erased flash reads 0xFF): refused


FLASH_TEXT = {
    FlashStatus.ABSENT: "no flash reader in this bitstream",
    FlashStatus.READING: "still reading the flash",
    FlashStatus.LOADED: "loaded from the flash",
    FlashStatus.WRONG_MODEL: "the flash holds the weight image of another model",
    FlashStatus.BAD_CRC: "the flash's weight image is corrupted (CRC-32)",
    FlashStatus.BAD_LENGTH: "the flash's weight image has another number of words",
    FlashStatus.BAD_FORMAT: "no weight image in the flash (erased, or another format)",
}


def _crc_table() -> list[int]:
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = ((c << 1) ^ CRC_POLY) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8/SMBUS of ``data`` (polynomial 0x07, init 0, MSB first, no final XOR)."""
    for b in data:
        crc = _CRC_TABLE[crc ^ b]
    return crc


def crc32(data: bytes) -> int:
    """CRC-32 of ``data`` (the zlib / IEEE 802.3 one: reflected polynomial 0xEDB88320, initial value
    and final XOR 0xFFFFFFFF; check value 0xCBF43926 for ``b"123456789"``)."""
    import zlib
    return zlib.crc32(bytes(data)) & 0xFFFFFFFF


#: Format version of a weight image (the first byte of a LOAD payload and of a weight-image file).
IMAGE_FORMAT = 1
#: Bytes of a weight image's header: format (1), reserved (1), words (2), model id (4), CRC-32 (4).
IMAGE_HEADER_BYTES = 12
#: Most words one LOAD frame carries (its payload is at most 65,535 bytes).
MAX_IMAGE_WORDS = (MAX_PAYLOAD - IMAGE_HEADER_BYTES) // 8


@dataclass(frozen=True)
class WeightImage:
    """A weight image: the engine's loader words (64 bits each, in order) for model ``model_id``.
    :meth:`encode` gives the LOAD payload, which is also the weight-image file that ``kwsbnn build``
    writes next to an engine-style bitstream::

        0 u8 format (1)   1 u8 reserved (0)   2 u16 words N   4 u32 model id   8 u32 CRC-32 of bytes 12..
        12 ... N words, each 8 bytes little-endian
    """
    model_id: int
    words: tuple

    @property
    def payload(self) -> bytes:
        return b"".join(int(w).to_bytes(8, "little") for w in self.words)

    def encode(self) -> bytes:
        if not 1 <= len(self.words) <= MAX_IMAGE_WORDS:
            raise KwsError(f"a weight image of {len(self.words)} words; one LOAD frame carries 1 to "
                           f"{MAX_IMAGE_WORDS}")
        body = self.payload
        return (bytes([IMAGE_FORMAT, 0]) + len(self.words).to_bytes(2, "little")
                + (self.model_id & 0xFFFFFFFF).to_bytes(4, "little")
                + crc32(body).to_bytes(4, "little") + body)

    @classmethod
    def parse(cls, data: bytes, name: str = "the weight image") -> "WeightImage":
        """From a LOAD payload / weight-image file; a :class:`KwsError` saying what is wrong."""
        data = bytes(data)
        hint = "rebuild it with `kwsbnn build` (it writes kws.weights.bin next to the bitstream)"
        if len(data) < IMAGE_HEADER_BYTES:
            raise KwsError(f"{name} has {len(data)} bytes, less than its {IMAGE_HEADER_BYTES}-byte "
                           "header: not a kwsbnn weight image", hint)
        if data[0] != IMAGE_FORMAT:
            raise KwsError(f"{name}: format version {data[0]}, this kwsbnn reads {IMAGE_FORMAT}", hint)
        n = int.from_bytes(data[2:4], "little")
        if len(data) != IMAGE_HEADER_BYTES + 8 * n:
            raise KwsError(f"{name}: its header says {n} words ({IMAGE_HEADER_BYTES + 8 * n} bytes), "
                           f"the file has {len(data)} bytes (truncated?)", hint)
        body = data[IMAGE_HEADER_BYTES:]
        if crc32(body) != int.from_bytes(data[8:12], "little"):
            raise KwsError(f"{name}: the CRC-32 of its words does not match its header (corrupted)", hint)
        words = tuple(int.from_bytes(body[8 * i:8 * i + 8], "little") for i in range(n))
        return cls(int.from_bytes(data[4:8], "little"), words)


def encode_frame(ftype: int, payload: bytes = b"", *, version: int = VERSION) -> bytes:
    """The bytes of one frame: sync, version, type, little-endian length, payload, CRC-8."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is longer than {MAX_PAYLOAD}")
    body = bytes([version & 0xFF, int(ftype) & 0xFF, len(payload) & 0xFF, len(payload) >> 8]) + payload
    return bytes([SYNC]) + body + bytes([crc8(body)])


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes
    version: int = VERSION

    def encode(self) -> bytes:
        return encode_frame(self.type, self.payload, version=self.version)


@dataclass(frozen=True)
class FrameError:
    """A frame the decoder rejected: ``kind`` is ``version``, ``type``, ``length`` or ``checksum``;
    ``raw`` holds the rejected bytes (from its SYNC on)."""
    kind: str
    detail: str
    raw: bytes = b""


class FrameDecoder:
    """Streaming decoder: :meth:`feed` takes any chunk of bytes and returns the frames and frame
    errors completed by it, in order.

    Bytes before a SYNC are skipped (counted in :attr:`skipped`). A rejected frame (version not in
    ``versions``, type not in ``types`` when given, length above ``max_length`` or the type's length
    in ``lengths``, wrong CRC) is reported as a :class:`FrameError`, and decoding restarts at the
    byte after its SYNC, so that a real frame hidden behind a corrupted header is still found.
    A frame cut short stays buffered (:attr:`pending` bytes) until more bytes arrive.
    """

    def __init__(self, *, versions=(VERSION,), types=None, max_length: int = MAX_PAYLOAD,
                 lengths: dict | None = None):
        self.versions = set(versions)
        self.types = None if types is None else {int(t) for t in types}
        self.max_length = max_length
        self.lengths = {int(k): v for k, v in (lengths or {}).items()}
        self._buf = bytearray()
        self.skipped = 0
        self.frames = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        """Bytes buffered of a frame not yet complete (0 when idle)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partly received frame."""
        self._buf.clear()

    def feed(self, data: bytes) -> list:
        self._buf.extend(data)
        out = []
        while True:
            item = self._step()
            if item is None:
                return out
            out.append(item)

    def _reject(self, kind: str, detail: str, n: int) -> FrameError:
        raw = bytes(self._buf[:n])
        del self._buf[:1]           # resynchronise: hunt again from the byte after this SYNC
        self.errors += 1
        return FrameError(kind, detail, raw)

    def _step(self):
        # Hunt for SYNC.
        i = self._buf.find(SYNC)
        if i < 0:
            self.skipped += len(self._buf)
            self._buf.clear()
            return None
        if i:
            self.skipped += i
            del self._buf[:i]
        buf = self._buf
        if len(buf) >= 2 and buf[1] not in self.versions:
            return self._reject("version", f"version {buf[1]} (expected "
                                f"{', '.join(map(str, sorted(self.versions)))})", 2)
        if len(buf) >= 3 and self.types is not None and buf[2] not in self.types:
            return self._reject("type", f"type 0x{buf[2]:02x}", 3)
        if len(buf) < HEADER_BYTES:
            return None
        ftype, length = buf[2], buf[3] | (buf[4] << 8)
        want = self.lengths.get(ftype)
        if length > self.max_length or (want is not None and length != want):
            return self._reject("length", f"length {length} for type 0x{ftype:02x}"
                                + (f" (expected {want})" if want is not None else ""), HEADER_BYTES)
        total = HEADER_BYTES + length + 1
        if len(buf) < total:
            return None
        body = bytes(buf[1:total - 1])
        if crc8(body) != buf[total - 1]:
            return self._reject("checksum", f"CRC 0x{buf[total - 1]:02x}, computed 0x{crc8(body):02x}",
                                total)
        frame = Frame(ftype, bytes(buf[HEADER_BYTES:total - 1]), buf[1])
        del buf[:total]
        self.frames += 1
        return frame


# ---------------------------------------------------------------------------------------------
# Link geometry, model identity, payloads


def model_id(model) -> int:
    """The 32-bit id of a deployable model: the first 4 bytes (little-endian) of the SHA-256 of its
    manifest as canonical JSON (sorted keys, no spaces). The manifest holds the SHA-256 of every
    memory image, so the id changes with any integer of the model; it does not depend on the folder
    or on the folding. ``model``: a Deployable, or its manifest dict."""
    manifest = getattr(model, "manifest", model)
    blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


def ring_depth(frames: int, coeffs: int) -> int:
    """Input transfers the board's ring buffer holds for a ``frames`` x ``coeffs`` input: the power
    of two at or above ``(frames + 1) * coeffs`` (the window and at least one frame more, so the
    frame after a decision can arrive while the window is replayed). 4096 for 101 x 40."""
    need = (int(frames) + 1) * int(coeffs)
    return 1 << max(1, (need - 1).bit_length())


@dataclass(frozen=True)
class LinkGeometry:
    """Sizes of the link for one network: input ``[channels, frames, coeffs]`` of ``elem_bits``
    bits each (1 for bits, 8 for int8), ``n_classes`` scores of ``score_width`` bits; for
    streaming, ``stride``: the board answers every ``stride``-th frame by default (the build's N),
    and the ring buffer holds :attr:`ring_transfers` transfers."""
    channels: int
    frames: int
    coeffs: int
    elem_bits: int
    n_classes: int
    score_width: int
    model_id: int = 0
    stride: int = 1
    load_words: int = 0         # engine style: words of the weight image a LOAD carries (0: none)

    @property
    def load_bytes(self) -> int:
        """The LOAD payload length (0: the board takes no LOAD)."""
        return IMAGE_HEADER_BYTES + 8 * self.load_words if self.load_words else 0

    @property
    def transfer_bytes(self) -> int:
        """Bytes of one input transfer (one position (t, f), all channels)."""
        return (self.channels * self.elem_bits + 7) // 8

    @property
    def transfers(self) -> int:
        return self.frames * self.coeffs

    @property
    def input_bytes(self) -> int:
        """The INFER payload length."""
        return self.transfers * self.transfer_bytes

    @property
    def frame_bytes(self) -> int:
        """The STREAM payload length: one frame (``coeffs`` transfers)."""
        return self.coeffs * self.transfer_bytes

    @property
    def ring_transfers(self) -> int:
        """Depth of the board's ring buffer in transfers (:func:`ring_depth`)."""
        return ring_depth(self.frames, self.coeffs)

    @property
    def ring_bits(self) -> int:
        return self.ring_transfers * self.channels * self.elem_bits

    @property
    def ahead(self) -> int:
        """Frames the host may send after a decision frame before that decision's answer has
        arrived: 1. The ring has room for at least one frame beyond the window (so the frame
        after a decision can arrive while the window is replayed), and the board queues one
        decision (its window, and its verdict for the writer) behind the one it computes; a
        second would overflow either."""
        return min(1, (self.ring_transfers - self.transfers) // self.coeffs)

    @property
    def score_bytes(self) -> int:
        return (self.score_width + 7) // 8

    @property
    def result_bytes(self) -> int:
        """The RESULT payload length."""
        return 1 + self.n_classes * self.score_bytes

    @classmethod
    def from_network(cls, network, dep, stride: int = 1) -> "LinkGeometry":
        """From a generated :class:`~kwsbnn.hw.network.Network` (or EngineNetwork: its image's
        words) and its deployable model."""
        c, t, f = (int(v) for v in dep.input["shape"])
        return cls(c, t, f, 1 if dep.input["prec"] == "bin" else 8, int(network.n_classes),
                   int(network.score_width), model_id(dep), int(stride),
                   int(getattr(network, "load_words", 0)))

    @classmethod
    def from_deployable(cls, dep, folding=None, stride: int = 1) -> "LinkGeometry":
        """From a deployable model (elaborates the network generator for the score width)."""
        from kwsbnn.hw.network import Network
        return cls.from_network(Network(dep, folding), dep, stride)

    def to_dict(self) -> dict:
        return asdict(self)

    def info(self, clock_hz: float = 0, weights: int | None = None) -> "BoardInfo":
        """The INFO the board of this geometry answers; ``weights`` (:class:`Weights`): default
        IN_BITSTREAM without an image, NONE with one (after power-up)."""
        if weights is None:
            weights = Weights.NONE if self.load_words else Weights.IN_BITSTREAM
        return BoardInfo(PROTOCOL, self.n_classes, self.score_bytes, self.score_width,
                         self.input_bytes, self.transfer_bytes, self.model_id,
                         int(round(clock_hz / 1000)), self.frame_bytes, self.frames, self.ahead,
                         self.stride, int(weights), self.load_words,
                         IMAGE_FORMAT if self.load_words else 0)

    def link_limit(self, baud: float, stride: int | None = None) -> dict:
        """What the UART allows while streaming at ``baud`` (10 bit times per byte): frames per
        second host -> board (a STREAM frame is ``frame_bytes + 6`` bytes), decisions per second
        board -> host (a RESULT is ``result_bytes + 6``), and the decisions per second of both
        at ``stride`` (default: the board's)."""
        n = int(stride or self.stride)
        up = (self.frame_bytes + OVERHEAD) * 10
        down = (self.result_bytes + OVERHEAD) * 10
        frames_s = baud / up
        return {"baud": baud, "frame_bits": up, "result_bits": down, "frames_per_second": frames_s,
                "results_per_second": baud / down,
                "decisions_per_second": min(frames_s / n, baud / down), "stride": n}


@dataclass(frozen=True)
class BoardInfo:
    """The INFO payload (28 bytes, little-endian)::

        0 u8  protocol version (2)  4 u16 input bytes (INFER length)   8 u32 model id
        1 u8  n_classes              6 u8  bytes per input transfer    12 u32 clock in kHz
        2 u8  bytes per score        7 u8  reserved (0)               16 u16 frame bytes (STREAM length)
        3 u8  score width (bits)                                       18 u16 frames per window (T)
                                                                       20 u8  frames ahead allowed
                                                                       21 u8  stride N (the build's)
                                                                       22 u8  weights (Weights)
                                                                       23 u8  flash (FlashStatus)
                                                                       24 u16 image words (LOAD)
                                                                       26 u8  image format (1)
                                                                       27 u8  reserved (0)

    A protocol-1 board sends only the first 16 bytes (no streaming: the stream fields read 0), a
    protocol-2 board 24 (byte 22 reads 0: weights in the bitstream). A host reads the bytes it
    knows and ignores any more (room for later fields).
    """
    version: int
    n_classes: int
    score_bytes: int
    score_width: int
    input_bytes: int
    transfer_bytes: int
    model_id: int
    clock_khz: int
    frame_bytes: int = 0
    window_frames: int = 0
    ahead: int = 0
    stride: int = 0
    weights: int = 0
    load_words: int = 0
    image_format: int = 0
    flash: int = 0

    SIZE = 28
    SIZE_V2 = 24
    SIZE_V1 = 16

    #: Byte of the payload that holds :attr:`weights` (the board sets it as it answers).
    WEIGHTS_BYTE = 22
    #: Byte of the payload that holds :attr:`flash` (the board sets it as it answers).
    FLASH_BYTE = 23

    def encode(self) -> bytes:
        return (bytes([self.version, self.n_classes, self.score_bytes, self.score_width])
                + self.input_bytes.to_bytes(2, "little") + bytes([self.transfer_bytes, 0])
                + self.model_id.to_bytes(4, "little") + self.clock_khz.to_bytes(4, "little")
                + self.frame_bytes.to_bytes(2, "little") + self.window_frames.to_bytes(2, "little")
                + bytes([self.ahead, self.stride, self.weights, self.flash])
                + self.load_words.to_bytes(2, "little") + bytes([self.image_format, 0]))

    @classmethod
    def parse(cls, payload: bytes) -> "BoardInfo":
        p = bytes(payload)
        version = p[0] if p else 0
        want = cls.SIZE if version >= 3 else cls.SIZE_V2 if version == 2 else cls.SIZE_V1
        if len(p) < want:
            raise KwsError(f"the board's INFO answer has {len(p)} bytes, expected {want}",
                           "the board runs another protocol version: rebuild it with this kwsbnn")
        stream = (int.from_bytes(p[16:18], "little"), int.from_bytes(p[18:20], "little"), p[20],
                  p[21]) if want >= cls.SIZE_V2 else (0, 0, 0, 0)
        load = ((p[22], int.from_bytes(p[24:26], "little"), p[26], p[23]) if want >= cls.SIZE
                else (0, 0, 0, 0))
        return cls(p[0], p[1], p[2], p[3], int.from_bytes(p[4:6], "little"), p[6],
                   int.from_bytes(p[8:12], "little"), int.from_bytes(p[12:16], "little"), *stream,
                   *load)

    @property
    def result_bytes(self) -> int:
        return 1 + self.n_classes * self.score_bytes

    @property
    def streams(self) -> bool:
        """Whether the board takes STREAM frames (protocol 2)."""
        return self.version >= 2 and self.frame_bytes > 0

    @property
    def needs_image(self) -> bool:
        """Whether the board runs only after a LOAD (engine style, protocol 3)."""
        return self.version >= 3 and self.load_words > 0

    @property
    def loaded(self) -> bool:
        """Whether the board can infer: its weights are in the bitstream or a good image is loaded."""
        return self.weights != Weights.NONE


@dataclass(frozen=True)
class StreamPlan:
    """The schedule of a stream: after STREAM_START, the ``k``-th frame the board accepts
    (1-based) is a *decision frame* when ``k >= frames`` and ``(k - frames) % stride == 0``; the
    board answers it with the RESULT of frames ``k - frames + 1 .. k`` (its window, oldest first).
    Flow control: the host sends frame ``j`` only after it has received the answers of all
    decision frames ``<= j - 1 - ahead`` (so the board never overwrites a window it is still
    replaying, and never has more than one decision waiting)."""
    frames: int
    stride: int
    ahead: int

    def decides(self, k: int) -> bool:
        return k >= self.frames and (k - self.frames) % self.stride == 0

    def decisions(self, n_frames: int) -> list[int]:
        """The decision frames among frames ``1..n_frames``."""
        return [k for k in range(self.frames, n_frames + 1, self.stride)]

    def must_have(self, j: int) -> int:
        """Frame ``j`` may be sent once every decision frame up to this one has been answered."""
        return j - 1 - self.ahead


def pack_input(x, geometry: LinkGeometry) -> bytes:
    """The INFER payload of one input ``x [C, T, F]`` (or ``[T, F]`` when C = 1): transfers in
    t-major, f-minor order, each the channels at bits ``[c*ew, (c+1)*ew)`` of a little-endian word
    of ``transfer_bytes`` bytes (int8 as two's complement, bits as 0/1)."""
    import numpy as np
    a = np.asarray(x)
    g = geometry
    if a.ndim == 2 and g.channels == 1:
        a = a[None]
    if a.shape != (g.channels, g.frames, g.coeffs):
        raise KwsError(f"input of shape {list(a.shape)} does not match the board's "
                       f"[{g.channels}, {g.frames}, {g.coeffs}]")
    a = a.astype(np.int64)
    if g.elem_bits == 1:
        if a.size and not np.isin(a, (0, 1)).all():
            raise KwsError("a binary input holds only 0 and 1")
    elif a.size and (a.min() < -128 or a.max() > 127):
        raise KwsError(f"int8 input out of range [{a.min()}, {a.max()}]")
    mask = (1 << g.elem_bits) - 1
    rows = (a & mask).transpose(1, 2, 0).reshape(g.transfers, g.channels)
    if g.elem_bits == 8:
        out = rows.astype(np.uint8)
        if g.transfer_bytes == g.channels:
            return out.tobytes()
    out = bytearray()
    for row in rows:
        word = 0
        for c, v in enumerate(row.tolist()):
            word |= int(v) << (c * g.elem_bits)
        out += word.to_bytes(g.transfer_bytes, "little")
    return bytes(out)


def pack_frame(x, geometry: LinkGeometry) -> bytes:
    """The STREAM payload of one input frame ``x [C, F]`` (or ``[F]`` when C = 1): the bytes of
    that frame's transfers, as :func:`pack_input` lays them out in an INFER payload."""
    import numpy as np
    from dataclasses import replace
    a = np.asarray(x)
    if a.ndim == 1 and geometry.channels == 1:
        a = a[None]
    if a.ndim != 2:
        raise KwsError(f"a frame of shape {list(a.shape)}: expected [{geometry.channels}, "
                       f"{geometry.coeffs}]")
    return pack_input(a[:, None, :], replace(geometry, frames=1))


def infer_request(x, geometry: LinkGeometry) -> bytes:
    """The INFER frame of one input ``x [C, T, F]``."""
    return encode_frame(FrameType.INFER, pack_input(x, geometry))


@dataclass(frozen=True)
class Result:
    cls: int
    scores: list


def parse_result(payload, n_classes: int, score_bytes: int) -> Result:
    """Class and signed scores of a RESULT payload (a :class:`Frame` or its payload bytes)."""
    if isinstance(payload, Frame):
        payload = payload.payload
    want = 1 + n_classes * score_bytes
    if len(payload) != want:
        raise KwsError(f"RESULT of {len(payload)} bytes, expected {want} "
                       f"({n_classes} scores of {score_bytes} bytes)")
    scores = [int.from_bytes(payload[1 + k * score_bytes: 1 + (k + 1) * score_bytes], "little",
                             signed=True) for k in range(n_classes)]
    return Result(payload[0], scores)


def encode_result(cls: int, scores, score_bytes: int) -> bytes:
    """The RESULT payload of a class and its scores (each wrapped to ``score_bytes`` bytes)."""
    out = bytes([cls & 0xFF])
    for s in scores:
        out += (int(s) & ((1 << (8 * score_bytes)) - 1)).to_bytes(score_bytes, "little")
    return out


# ---------------------------------------------------------------------------------------------
# Host side


class BoardLink:
    """Stop-and-wait requests to a board over ``port`` (anything with ``write(bytes)`` and
    ``read(n)``; ``read`` may return fewer bytes, or none after its own timeout).

    Each request writes one frame and reads until one answer frame is complete, or ``timeout``
    seconds pass (a :class:`KwsError` naming ``name`` and what arrived). An ERROR answer becomes a
    :class:`KwsError` with the board's error code. Before each request, bytes left over from an
    earlier exchange are discarded (``reset_input_buffer`` where the port has it).
    """

    def __init__(self, port, *, timeout: float = 2.0, name: str = "the board"):
        self.port = port
        self.timeout = timeout
        self.name = name
        self.info_: BoardInfo | None = None
        self._frames = []           # decoded, not yet returned (a read may bring several)
        self._dec = FrameDecoder(types=(FrameType.INFO, FrameType.RESULT, FrameType.ERROR,
                                         FrameType.STARTED, FrameType.LOADED))

    def _drain(self) -> None:
        reset = getattr(self.port, "reset_input_buffer", None)
        if reset is not None:
            reset()
        self._dec.reset()
        self._frames.clear()

    def _read_some(self) -> bytes:
        n = getattr(self.port, "in_waiting", 0) or 1
        return self.port.read(n) or b""

    def receive(self, timeout: float | None = None) -> Frame:
        """The next frame from the board (frame errors on the way are skipped)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        bad = []
        while True:
            if self._frames:
                return self._frames.pop(0)
            for item in self._dec.feed(self._read_some()):
                if isinstance(item, Frame):
                    self._frames.append(item)
                else:
                    bad.append(item.detail)
            if self._frames:
                continue
            if time.monotonic() > deadline:
                got = []
                if self._dec.pending:
                    got.append(f"{self._dec.pending} bytes of an unfinished frame")
                if self._dec.skipped:
                    got.append(f"{self._dec.skipped} bytes that are not frames")
                if bad:
                    got.append(f"{len(bad)} damaged frames ({bad[0]})")
                raise KwsError(f"no answer from {self.name} within {timeout or self.timeout:g} s"
                               + (f" (received {', '.join(got)})" if got else " (nothing received)"),
                               "check the port and the baud rate (--baud), and that the board runs "
                               "a kwsbnn bitstream (press its reset button)")

    def request(self, ftype: int, payload: bytes = b"", expect: int | None = None,
                timeout: float | None = None) -> Frame:
        """Send one frame and return the answer; an ERROR answer raises :class:`KwsError`."""
        self._drain()
        self.port.write(encode_frame(ftype, payload))
        flush = getattr(self.port, "flush", None)
        if flush is not None:
            flush()
        frame = self.receive(timeout)
        if frame.type == FrameType.ERROR:
            self._raise_error(frame)
        if expect is not None and frame.type != expect:
            raise KwsError(f"{self.name} answered frame type 0x{frame.type:02x}, expected "
                           f"0x{int(expect):02x}")
        return frame

    def info(self) -> BoardInfo:
        """PING -> INFO: the board's protocol version, sizes, model id and clock."""
        info = BoardInfo.parse(self.request(FrameType.PING, expect=FrameType.INFO).payload)
        if not 1 <= info.version <= PROTOCOL:
            raise KwsError(f"{self.name} speaks host protocol version {info.version}; this kwsbnn "
                           f"speaks 1 to {PROTOCOL}", "rebuild the bitstream with this kwsbnn")
        self.info_ = info
        return info

    def _raise_error(self, frame: Frame, what: str = "") -> None:
        code = frame.payload[0] if frame.payload else 0
        try:
            text = ERROR_TEXT[ErrorCode(code)]
        except ValueError:
            text = f"error code {code}"
        raise KwsError(f"{self.name} answered ERROR: {text}{what}",
                       "the link corrupted a frame or the host and board disagree on the "
                       "model; retry, or check `kwsbnn run` against the board's INFO")

    def load(self, image: "WeightImage | bytes", timeout: float | None = None) -> None:
        """LOAD a weight image (host protocol 3) and check the LOADED answer; a :class:`KwsError`
        naming the status otherwise. The board keeps its old image after WRONG_MODEL, BAD_LENGTH
        and BAD_FORMAT, and has none after BAD_CRC or a damaged frame."""
        data = image.encode() if isinstance(image, WeightImage) else bytes(image)
        info = self.info_ or self.info()
        if not info.needs_image:
            raise KwsError(f"{self.name} takes no weight image (its weights are in the bitstream)",
                           "drop --load: this bitstream needs none")
        frame = self.request(FrameType.LOAD, data, expect=FrameType.LOADED, timeout=timeout)
        code = frame.payload[0] if frame.payload else 0xFF
        if code != LoadStatus.LOADED:
            try:
                text = LOAD_TEXT[LoadStatus(code)]
            except ValueError:
                text = f"status {code}"
            raise KwsError(f"{self.name} refused the weight image: {text}",
                           "load the kws.weights.bin that `kwsbnn build` wrote with this bitstream")
        self.info_ = None

    def stream_start(self, stride: int = 0) -> StreamPlan:
        """STREAM_START: empty the board's ring buffer and set its stride (0: the build's); returns
        the schedule the board now follows."""
        info = self.info_ or self.info()
        if not info.streams:
            raise KwsError(f"{self.name} does not stream (host protocol {info.version})",
                           "rebuild the bitstream with this kwsbnn, or run without --stream")
        if not 0 <= int(stride) <= 255:
            raise KwsError(f"stride {stride}: the board decides every 1 to 255 frames")
        frame = self.request(FrameType.STREAM_START, bytes([int(stride)]), expect=FrameType.STARTED)
        n = frame.payload[0] if frame.payload else 0
        if n < 1 or (stride and n != stride):
            raise KwsError(f"{self.name} started a stream with stride {n}, asked {stride}")
        return StreamPlan(info.window_frames, n, info.ahead)

    def stream(self, frames, plan: StreamPlan):
        """Send STREAM frames (packed payloads, :func:`pack_frame`) after :meth:`stream_start`,
        with the flow control of ``plan``; yield ``(k, Result)`` for every decision frame ``k``
        (1-based), in order, as the answers arrive. Any ERROR answer is a :class:`KwsError`."""
        info = self.info_ or self.info()
        pending = []
        flush = getattr(self.port, "flush", None)

        def answer():
            k = pending.pop(0)
            frame = self.receive()
            if frame.type == FrameType.ERROR:
                self._raise_error(frame, f" while streaming (at or before frame {k})")
            if frame.type != FrameType.RESULT:
                raise KwsError(f"{self.name} answered frame type 0x{frame.type:02x} to stream "
                               f"frame {k}, expected a RESULT")
            return k, parse_result(frame, info.n_classes, info.score_bytes)

        for j, payload in enumerate(frames, 1):
            if len(payload) != info.frame_bytes:
                raise KwsError(f"a stream frame of {len(payload)} bytes; {self.name} expects "
                               f"{info.frame_bytes}")
            while pending and pending[0] <= plan.must_have(j):
                yield answer()
            self.port.write(encode_frame(FrameType.STREAM, payload))
            if flush is not None:
                flush()
            if plan.decides(j):
                pending.append(j)
        while pending:
            yield answer()

    def infer_bytes(self, payload: bytes) -> Result:
        """One inference of an already packed INFER payload."""
        info = self.info_ or self.info()
        if len(payload) != info.input_bytes:
            raise KwsError(f"the input is {len(payload)} bytes; {self.name} expects {info.input_bytes}",
                           "the board runs another model: check with `kwsbnn run --model M`")
        frame = self.request(FrameType.INFER, payload, expect=FrameType.RESULT)
        return parse_result(frame, info.n_classes, info.score_bytes)

    def infer(self, x, geometry: LinkGeometry) -> Result:
        """One inference of an input ``x [C, T, F]``."""
        return self.infer_bytes(pack_input(x, geometry))


class SimulatedBoard:
    """The board's side of the protocol in Python, byte for byte as the gateware does it
    (:class:`kwsbnn.boards.top.KwsTop`): a port object for :class:`BoardLink` and tests.

    ``infer(payload: bytes) -> (cls, scores)`` computes an inference from an INFER payload (or a
    streamed window, laid out the same way).
    Behaviour: bytes before SYNC are ignored; a bad version, unknown type or bad length is answered
    with ERROR at once, and the parser hunts for SYNC again from the next byte; a frame with a bad
    CRC is answered with ERROR (an INFER's result is discarded, a STREAM frame is dropped);
    :meth:`timeout` models the host going quiet mid-frame (ERROR TIMEOUT once the payload has
    started). Streaming: STREAM_START empties the ring and sets the stride (answered STARTED);
    each good STREAM frame enters the ring, and the decision frames of :class:`StreamPlan` are
    answered with the RESULT of the window. ``flow_violations`` counts STREAM frames that arrived
    before the host had read the answers :class:`StreamPlan` says it must wait for (on the board
    they would overwrite a window being replayed). ``corrupt_next`` flips a bit of the next answer
    (tests of the host side).
    """

    def __init__(self, geometry: LinkGeometry, infer, clock_hz: float = 0):
        self.g = geometry
        self._infer = infer
        self.clock_hz = clock_hz
        self.out = bytearray()
        self.state = "hunt"
        self.corrupt_next = False
        self.answers = 0
        self.last_class = 0
        self.stride = geometry.stride
        self.ring = []              # the last `frames` STREAM payloads, oldest first
        self.accepted = 0           # STREAM frames since STREAM_START
        self.flow_violations = 0
        self._sent = 0              # answer bytes written to `out` / read by the host, in all
        self._read = 0
        self._unread = []           # (decision frame, end of its answer in the byte count)
        self.weights = Weights.NONE if geometry.load_words else Weights.IN_BITSTREAM
        self.flash = FlashStatus.ABSENT   # what INFO says of the flash's image (set by tests)
        self.loads = 0              # images loaded

    # -- port interface
    def write(self, data: bytes) -> int:
        for b in bytes(data):
            self._byte(b)
        return len(data)

    def read(self, n: int = 1) -> bytes:
        data, self.out[:] = bytes(self.out[:n]), self.out[n:]
        self._read += len(data)
        return data

    @property
    def in_waiting(self) -> int:
        return len(self.out)

    @property
    def plan(self) -> StreamPlan:
        return StreamPlan(self.g.frames, self.stride, self.g.ahead)

    # -- behaviour
    def _answer(self, ftype: int, payload: bytes) -> None:
        frame = bytearray(encode_frame(ftype, payload))
        if self.corrupt_next:
            frame[-1] ^= 0x01
            self.corrupt_next = False
        self.out += frame
        self._sent += len(frame)
        self.answers += 1

    def _error(self, code: ErrorCode) -> None:
        self._answer(FrameType.ERROR, bytes([code]))
        self.state = "hunt"

    def timeout(self) -> None:
        """The host stopped sending: what the board's inter-byte timeout does."""
        if self.state in ("payload", "crc"):
            if self.type == FrameType.LOAD and self._header_ok():
                self.weights = Weights.NONE
            self._error(ErrorCode.TIMEOUT)
        self.state = "hunt"

    def _lengths(self) -> dict:
        out = {FrameType.PING: 0, FrameType.INFER: self.g.input_bytes, FrameType.STREAM_START: 1,
               FrameType.STREAM: self.g.frame_bytes}
        if self.g.load_words:
            out[FrameType.LOAD] = self.g.load_bytes
        return out

    def _header_status(self) -> LoadStatus | None:
        """The LOAD header's verdict (None while incomplete)."""
        h = self.payload
        if len(h) < IMAGE_HEADER_BYTES:
            return None
        if h[0] != IMAGE_FORMAT:
            return LoadStatus.BAD_FORMAT
        if int.from_bytes(h[2:4], "little") != self.g.load_words:
            return LoadStatus.BAD_LENGTH
        if int.from_bytes(h[4:8], "little") != self.g.model_id:
            return LoadStatus.WRONG_MODEL
        return LoadStatus.LOADED

    def _header_ok(self) -> bool:
        return self._header_status() == LoadStatus.LOADED

    def _byte(self, b: int) -> None:
        st = self.state
        if st == "hunt":
            if b == SYNC:
                self.crc, self.state = 0, "version"
            return
        if st != "crc":
            self.crc = _CRC_TABLE[self.crc ^ b]
        if st == "version":
            if b != VERSION:
                return self._error(ErrorCode.BAD_VERSION)
            self.state = "type"
        elif st == "type":
            if b not in self._lengths():
                return self._error(ErrorCode.UNKNOWN_TYPE)
            self.type, self.state = b, "len0"
        elif st == "len0":
            self.length, self.state = b, "len1"
        elif st == "len1":
            self.length |= b << 8
            want = self._lengths()[self.type]
            if self.length != want:
                return self._error(ErrorCode.BAD_LENGTH)
            self.payload = bytearray()
            self.state = "payload" if want else "crc"
        elif st == "payload":
            if not self.payload and self.type == FrameType.STREAM:
                self._check_flow()
            self.payload.append(b)
            if self.type == FrameType.LOAD and len(self.payload) == IMAGE_HEADER_BYTES \
                    and self._header_ok():
                self.weights = Weights.NONE          # the old image is being overwritten
            if len(self.payload) == self.length:
                self.state = "crc"
        elif st == "crc":
            self.state = "hunt"
            ok = b == self.crc
            if self.type in (FrameType.INFER, FrameType.STREAM) and self.weights == Weights.NONE:
                return self._error(ErrorCode.NO_WEIGHTS)
            if not ok and self.type != FrameType.INFER:
                return self._error(ErrorCode.BAD_CHECKSUM)
            if self.type == FrameType.PING:
                info = dataclasses.replace(self.g.info(self.clock_hz, self.weights), flash=self.flash)
                self._answer(FrameType.INFO, info.encode())
            elif self.type == FrameType.LOAD:
                status = self._header_status()
                if status == LoadStatus.LOADED:
                    h = self.payload
                    if crc32(h[IMAGE_HEADER_BYTES:]) != int.from_bytes(h[8:12], "little"):
                        status = LoadStatus.BAD_CRC
                    else:
                        self.weights = Weights.LOADED
                        self.loads += 1
                self._answer(FrameType.LOADED, bytes([status]))
            elif self.type == FrameType.STREAM_START:
                self.stride = self.payload[0] or self.g.stride
                self.ring, self.accepted = [], 0
                self._answer(FrameType.STARTED, bytes([self.stride]))
            elif self.type == FrameType.STREAM:
                self.ring = (self.ring + [bytes(self.payload)])[-self.g.frames:]
                self.accepted += 1
                if self.plan.decides(self.accepted):
                    cls, scores = self._infer(b"".join(self.ring))
                    self.last_class = int(cls)
                    self._answer(FrameType.RESULT, encode_result(int(cls), scores, self.g.score_bytes))
                    self._unread.append((self.accepted, self._sent))
            else:
                cls, scores = self._infer(bytes(self.payload))     # the inference runs either way
                if not ok:
                    return self._error(ErrorCode.BAD_CHECKSUM)
                self.last_class = int(cls)
                self._answer(FrameType.RESULT, encode_result(int(cls), scores, self.g.score_bytes))

    def _check_flow(self) -> None:
        """A STREAM frame (the ``accepted + 1``-th) starts: the host must have read the answers of
        the decision frames up to :meth:`StreamPlan.must_have`."""
        self._unread = [(k, end) for k, end in self._unread if end > self._read]
        limit = self.plan.must_have(self.accepted + 1)
        if any(k <= limit for k, _ in self._unread):
            self.flow_violations += 1
