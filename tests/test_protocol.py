"""Host protocol 2 in pure Python: frames round-trip, the decoder resynchronises on garbage and
rejects bad versions, types, lengths and checksums, cut frames wait for their rest, and the host
link (BoardLink) talks to the Python model of the board (SimulatedBoard)."""

import random

import numpy as np
import pytest

from kwsbnn.boards import protocol as p
from kwsbnn.errors import KwsError

GEOM = p.LinkGeometry(channels=64, frames=1, coeffs=1, elem_bits=1, n_classes=4, score_width=7,
                      model_id=0x12345678)
GEOM8 = p.LinkGeometry(channels=1, frames=5, coeffs=3, elem_bits=8, n_classes=12, score_width=13,
                       model_id=0xCAFEBABE)


def test_crc8_check_value_and_residue():
    assert p.crc8(b"123456789") == 0xF4          # CRC-8/SMBUS check value
    body = bytes(range(40))
    assert p.crc8(body + bytes([p.crc8(body)])) == 0   # a message with its CRC has residue 0


def test_encode_layout():
    f = p.encode_frame(p.FrameType.INFER, b"\x01\x02\x03")
    assert f[:5] == bytes([0xA5, 1, 0x02, 3, 0]) and f[5:8] == b"\x01\x02\x03"
    assert f[-1] == p.crc8(f[1:-1]) and len(f) == 3 + p.OVERHEAD
    assert p.encode_frame(p.FrameType.PING) == bytes([0xA5, 1, 1, 0, 0, p.crc8(bytes([1, 1, 0, 0]))])
    big = p.encode_frame(p.FrameType.INFER, bytes(300))
    assert big[3] == 300 & 0xFF and big[4] == 1
    with pytest.raises(ValueError):
        p.encode_frame(p.FrameType.INFER, bytes(70000))


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_round_trip_any_chunking(chunk):
    rng = random.Random(chunk)
    frames = [p.Frame(rng.choice(list(p.FrameType)), bytes(rng.randrange(256) for _ in range(rng.randrange(50))))
              for _ in range(40)]
    stream = b"".join(f.encode() for f in frames)
    dec = p.FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i:i + chunk])
    assert got == frames and dec.skipped == 0 and dec.pending == 0


def test_resync_on_garbage():
    rng = random.Random(1)
    frames = [p.Frame(p.FrameType.RESULT, bytes(rng.randrange(256) for _ in range(5))) for _ in range(20)]
    stream = b""
    for f in frames:
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
        stream += garbage + f.encode()
    dec = p.FrameDecoder(types=(p.FrameType.RESULT,), lengths={p.FrameType.RESULT: 5})
    got = [x for x in dec.feed(stream) if isinstance(x, p.Frame)]
    # Garbage can only fake a frame by passing the version, type, length and CRC checks.
    assert got == frames
    assert dec.skipped > 0


def test_sync_bytes_inside_garbage_do_not_hide_the_next_frame():
    real = p.encode_frame(p.FrameType.INFO, b"hello")
    # A stray SYNC followed by a plausible header whose length would swallow the real frame.
    stray = bytes([0xA5, 1, p.FrameType.INFO, 40, 0])
    dec = p.FrameDecoder()
    items = dec.feed(stray + real + bytes(40))
    frames = [x for x in items if isinstance(x, p.Frame)]
    assert p.Frame(p.FrameType.INFO, b"hello") in frames
    assert any(isinstance(x, p.FrameError) and x.kind == "checksum" for x in items)


def test_bad_checksum_version_type_length():
    good = bytearray(p.encode_frame(p.FrameType.RESULT, b"\x01\x02"))
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x80
    bad_payload = bytearray(good)
    bad_payload[5] ^= 0x01
    dec = p.FrameDecoder(types=(p.FrameType.RESULT, p.FrameType.ERROR), max_length=100)
    for raw, kind in [(bad_crc, "checksum"), (bad_payload, "checksum"),
                      (p.encode_frame(p.FrameType.RESULT, b"", version=2), "version"),
                      (p.encode_frame(0x55, b""), "type"),
                      (p.encode_frame(p.FrameType.RESULT, bytes(101)), "length")]:
        items = dec.feed(bytes(raw))
        assert [x.kind for x in items if isinstance(x, p.FrameError)][:1] == [kind], (raw, items)
        assert not [x for x in items if isinstance(x, p.Frame)]
        dec.reset()
    assert dec.feed(bytes(good)) == [p.Frame(p.FrameType.RESULT, b"\x01\x02")]


def test_truncated_frame_waits_then_completes():
    f = p.encode_frame(p.FrameType.RESULT, bytes(range(10)))
    dec = p.FrameDecoder()
    for cut in (1, 2, 4, 5, 9, len(f) - 1):
        dec.reset()
        assert dec.feed(f[:cut]) == [] and dec.pending == cut
        assert dec.feed(f[cut:]) == [p.Frame(p.FrameType.RESULT, bytes(range(10)))]
        assert dec.pending == 0


def test_truncated_frame_followed_by_a_new_frame_is_recovered():
    first = p.encode_frame(p.FrameType.RESULT, bytes(10))[:8]      # the host gave up mid-frame
    second = p.encode_frame(p.FrameType.INFO, b"abc")
    items = p.FrameDecoder().feed(first + second + bytes(20))
    assert p.Frame(p.FrameType.INFO, b"abc") in items


def test_pack_input_orders_and_sizes():
    x = np.zeros((64, 1, 1), dtype=np.int64)
    x[0, 0, 0] = x[9, 0, 0] = x[63, 0, 0] = 1
    b = p.pack_input(x, GEOM)
    assert len(b) == GEOM.input_bytes == 8
    assert int.from_bytes(b, "little") == (1 | (1 << 9) | (1 << 63))
    y = np.arange(15).reshape(1, 5, 3) - 7                          # [C, T, F], t-major f-minor
    b = p.pack_input(y, GEOM8)
    assert list(b) == [v & 0xFF for v in y[0].ravel()]
    assert p.pack_input(y[0], GEOM8) == b                           # [T, F] for one channel
    g = p.LinkGeometry(3, 2, 2, 8, 2, 8)                            # several int8 channels
    z = np.arange(12).reshape(3, 2, 2)
    assert list(p.pack_input(z, g)) == [z[c, t, f] for t in range(2) for f in range(2) for c in range(3)]
    with pytest.raises(KwsError, match="shape"):
        p.pack_input(np.zeros((2, 2)), GEOM)
    with pytest.raises(KwsError, match="0 and 1"):
        p.pack_input(x * 2, GEOM)


def test_result_and_info_round_trip():
    scores = [-4096, 4095, 0, -1, 17, -300, 1, 2, 3, 4, 5, 6]
    payload = p.encode_result(7, scores, GEOM8.score_bytes)
    assert len(payload) == GEOM8.result_bytes
    r = p.parse_result(payload, GEOM8.n_classes, GEOM8.score_bytes)
    assert r.cls == 7 and r.scores == scores
    info = GEOM8.info(24e6)
    raw = info.encode()
    assert len(raw) == p.BoardInfo.SIZE
    back = p.BoardInfo.parse(raw + b"future fields")
    assert back == info and back.clock_khz == 24000 and back.input_bytes == 15
    assert back.model_id == 0xCAFEBABE and back.score_bytes == 2 and back.result_bytes == 25
    with pytest.raises(KwsError):
        p.parse_result(payload[:-1], GEOM8.n_classes, GEOM8.score_bytes)


def test_model_id_is_stable_and_content_bound():
    m = {"format": "kwsbnn-deployable", "version": 1, "name": "a", "layers": [{"x": 1}], "images": {}}
    assert p.model_id(m) == p.model_id(dict(reversed(list(m.items()))))
    m2 = dict(m, images={"w": {"sha256": "00"}})
    assert p.model_id(m) != p.model_id(m2) and 0 <= p.model_id(m) < 2 ** 32


def _fake_infer(payload: bytes):
    v = int.from_bytes(payload, "little")
    scores = [bin(v).count("1") - 32, -(v & 63), 5, -64]
    return int(np.argmax(scores)), scores


def test_board_link_against_simulated_board():
    board = p.SimulatedBoard(GEOM, _fake_infer, clock_hz=12e6)
    link = p.BoardLink(board, timeout=0.2)
    info = link.info()
    assert info.model_id == GEOM.model_id and info.input_bytes == 8 and info.clock_khz == 12000
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 2, (64, 1, 1))
        r = link.infer(x, GEOM)
        cls, scores = _fake_infer(p.pack_input(x, GEOM))
        assert (r.cls, r.scores) == (cls, scores)
        assert board.last_class == cls


def test_simulated_board_errors_and_recovery():
    board = p.SimulatedBoard(GEOM, _fake_infer)
    dec = p.FrameDecoder()

    def answers(data):
        board.write(data)
        return dec.feed(board.read(1000))

    ok = p.encode_frame(p.FrameType.INFER, bytes(8))
    bad = bytearray(ok)
    bad[-1] ^= 1
    assert answers(bytes(bad)) == [p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_CHECKSUM]))]
    assert answers(p.encode_frame(p.FrameType.INFER, bytes(8), version=3)) == \
        [p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_VERSION]))]
    assert answers(p.encode_frame(0x7F, b"")) == [p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.UNKNOWN_TYPE]))]
    assert answers(p.encode_frame(p.FrameType.INFER, bytes(7))) == \
        [p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_LENGTH]))]
    assert answers(p.encode_frame(p.FrameType.PING, b"x")) == \
        [p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_LENGTH]))]
    assert answers(ok[:7]) == []
    board.timeout()
    assert dec.feed(board.read(100)) == [p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.TIMEOUT]))]
    assert answers(b"\x00\x11garbage" + ok)[0].type == p.FrameType.RESULT


def test_board_link_errors_are_clear():
    board = p.SimulatedBoard(GEOM, _fake_infer)
    link = p.BoardLink(board, timeout=0.05, name="/dev/ttyX")
    with pytest.raises(KwsError, match="expects 8"):
        link.infer_bytes(bytes(3))

    class Silent:
        def write(self, data):
            return len(data)

        def read(self, n):
            return b""

    with pytest.raises(KwsError, match=r"no answer from /dev/ttyX within 0.05 s \(nothing received\)"):
        p.BoardLink(Silent(), timeout=0.05, name="/dev/ttyX").info()

    class Garbled(Silent):
        def read(self, n):
            return b"\x00\xa5\x01"

    with pytest.raises(KwsError, match="unfinished frame|not frames"):
        p.BoardLink(Garbled(), timeout=0.05).info()

    class Erroring(Silent):
        def __init__(self):
            self.out = b""

        def write(self, data):
            self.out = p.encode_frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_CHECKSUM]))
            return len(data)

        def read(self, n):
            data, self.out = self.out[:n], self.out[n:]
            return data

    with pytest.raises(KwsError, match="ERROR: bad checksum"):
        p.BoardLink(Erroring(), timeout=0.2).info()

    board.corrupt_next = True
    with pytest.raises(KwsError, match="damaged frames"):
        link.info()
    assert link.info().model_id == GEOM.model_id         # the next exchange works again


# ---------------------------------------------------------------------------------------------
# Streaming (protocol 2)

GEOMS = p.LinkGeometry(channels=1, frames=5, coeffs=3, elem_bits=8, n_classes=4, score_width=20,
                       model_id=0x5EED, stride=2)


def _window_infer(payload: bytes):
    """A fake inference that exposes its input: the scores are sums of the window's rows."""
    x = np.frombuffer(payload, dtype=np.int8).astype(np.int64).reshape(GEOMS.frames, GEOMS.coeffs)
    scores = [int(x[0].sum()), int(x[-1].sum()), int(x[:, 0].sum()), int(x.sum())]
    return int(np.argmax(scores)), scores


def test_ring_geometry_and_info():
    assert p.ring_depth(101, 40) == 4096 and p.ring_depth(16, 10) == 256 and p.ring_depth(1, 1) == 2
    g = p.LinkGeometry(1, 101, 40, 8, 12, 27, stride=3)
    assert g.frame_bytes == 40 and g.ring_bits == 32768 and g.ahead == 1
    info = g.info(24e6)
    raw = info.encode()
    assert len(raw) == p.BoardInfo.SIZE == 28 and raw[0] == p.PROTOCOL == 3
    back = p.BoardInfo.parse(raw)
    assert back == info and back.streams and (back.frame_bytes, back.window_frames, back.stride) == (40, 101, 3)
    assert back.weights == p.Weights.IN_BITSTREAM and back.loaded and not back.needs_image
    v1 = p.BoardInfo.parse(bytes([1]) + raw[1:16])            # a protocol-1 board: no stream fields
    assert not v1.streams and v1.input_bytes == 4040
    v2 = p.BoardInfo.parse(bytes([2]) + raw[1:24])            # a protocol-2 board: no LOAD
    assert v2.streams and not v2.needs_image and v2.loaded
    with pytest.raises(KwsError, match="expected 28"):
        p.BoardInfo.parse(raw[:24])
    with pytest.raises(KwsError, match="expected 24"):
        p.BoardInfo.parse(bytes([2]) + raw[1:20])
    lim = g.link_limit(1_000_000)
    assert lim["frame_bits"] == 460 and abs(lim["frames_per_second"] - 1e6 / 460) < 1e-9
    assert lim["decisions_per_second"] == pytest.approx(1e6 / 460 / 3)


def test_stream_plan():
    plan = p.StreamPlan(frames=5, stride=3, ahead=1)
    assert plan.decisions(14) == [5, 8, 11, 14]
    assert [k for k in range(1, 15) if plan.decides(k)] == plan.decisions(14)
    assert plan.must_have(7) == 5


@pytest.mark.parametrize("stride", [0, 1, 2, 4])
def test_stream_against_simulated_board(stride):
    board = p.SimulatedBoard(GEOMS, _window_infer, clock_hz=12e6)
    link = p.BoardLink(board, timeout=0.2)
    assert link.info().streams
    plan = link.stream_start(stride)
    assert plan.stride == (stride or GEOMS.stride) and plan.frames == 5 and plan.ahead == 1
    rng = np.random.default_rng(stride)
    frames = rng.integers(-127, 128, (17, 3))
    got = list(link.stream([p.pack_frame(f, GEOMS) for f in frames], plan))
    assert [k for k, _ in got] == plan.decisions(17)
    for k, r in got:
        want = _window_infer(p.pack_input(frames[k - 5:k][None], GEOMS))
        assert (r.cls, r.scores) == want
    assert board.flow_violations == 0
    # A new stream starts empty: no decision before 5 frames.
    plan = link.stream_start(1)
    assert list(link.stream([p.pack_frame(f, GEOMS) for f in frames[8:12]], plan)) == []
    plan = link.stream_start(1)
    ((k, r),) = link.stream([p.pack_frame(f, GEOMS) for f in frames[:5]], plan)
    assert k == 5 and (r.cls, r.scores) == _window_infer(p.pack_input(frames[:5][None], GEOMS))


def test_simulated_board_stream_errors_and_flow():
    board = p.SimulatedBoard(GEOMS, _window_infer)
    dec = p.FrameDecoder()

    def answers(data):
        board.write(data)
        return dec.feed(board.read(1000))

    assert answers(p.encode_frame(p.FrameType.STREAM_START, b"\x01")) == [
        p.Frame(p.FrameType.STARTED, b"\x01")]
    assert answers(p.encode_frame(p.FrameType.STREAM_START, b"")) == [
        p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_LENGTH]))]
    assert answers(p.encode_frame(p.FrameType.STREAM, bytes(4))) == [
        p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_LENGTH]))]
    frames = [bytes([i] * 3) for i in range(1, 9)]
    for f in frames[:4]:
        assert answers(p.encode_frame(p.FrameType.STREAM, f)) == []
    bad = bytearray(p.encode_frame(p.FrameType.STREAM, bytes([99] * 3)))
    bad[-1] ^= 1
    assert answers(bytes(bad)) == [p.Frame(p.FrameType.ERROR, bytes([p.ErrorCode.BAD_CHECKSUM]))]
    (res,) = answers(p.encode_frame(p.FrameType.STREAM, frames[4]))     # the 5th good frame
    r = p.parse_result(res, 4, GEOMS.score_bytes)
    assert (r.cls, r.scores) == _window_infer(b"".join(frames[:5]))      # the bad frame is not in it
    # A host that does not read the answers it must wait for is a flow violation.
    board.write(p.encode_frame(p.FrameType.STREAM, frames[5]))           # frame 6, answer unread
    board.write(p.encode_frame(p.FrameType.STREAM, frames[6]))           # allowed (ahead 1)
    assert board.flow_violations == 0
    board.write(p.encode_frame(p.FrameType.STREAM, frames[7]))           # frame 6's answer unread
    assert board.flow_violations == 1


def test_stream_needs_a_streaming_board():
    board = p.SimulatedBoard(GEOMS, _window_infer)
    link = p.BoardLink(board, timeout=0.2)
    link.info_ = p.BoardInfo.parse(bytes([1]) + GEOMS.info().encode()[1:16])
    with pytest.raises(KwsError, match="does not stream"):
        link.stream_start()


def test_weight_image_format():
    assert p.crc32(b"123456789") == 0xCBF43926
    img = p.WeightImage(0xCAFEBABE, (1, 2 ** 64 - 1, 0x0123456789ABCDEF))
    raw = img.encode()
    assert len(raw) == p.IMAGE_HEADER_BYTES + 24 and raw[0] == p.IMAGE_FORMAT
    assert int.from_bytes(raw[2:4], "little") == 3 and int.from_bytes(raw[4:8], "little") == 0xCAFEBABE
    assert int.from_bytes(raw[8:12], "little") == p.crc32(raw[12:])
    assert raw[12 + 16:12 + 24] == bytes.fromhex("efcdab8967452301")      # little-endian words
    assert p.WeightImage.parse(raw) == img
    with pytest.raises(KwsError, match="truncated"):
        p.WeightImage.parse(raw[:-1])
    with pytest.raises(KwsError, match="CRC-32"):
        p.WeightImage.parse(raw[:20] + bytes([raw[20] ^ 1]) + raw[21:])
    with pytest.raises(KwsError, match="format version 7"):
        p.WeightImage.parse(bytes([7]) + raw[1:])
    with pytest.raises(KwsError, match="not a kwsbnn weight image"):
        p.WeightImage.parse(b"hello")
    with pytest.raises(KwsError, match="one LOAD frame"):
        p.WeightImage(1, tuple(range(p.MAX_IMAGE_WORDS + 1))).encode()


def test_simulated_engine_board_loads_and_refuses():
    """The LOAD message against the Python model of an engine-style board (host protocol 3): no
    weights until a good image; refused headers keep what was loaded; a corrupted image or frame
    leaves none; INFER and STREAM without weights are answered NO_WEIGHTS."""
    g = p.LinkGeometry(1, 4, 2, 8, 3, 10, model_id=0x1234, load_words=5)
    img = p.WeightImage(0x1234, tuple(range(100, 105)))
    board = p.SimulatedBoard(g, lambda payload: (1, [1, 2, 3]))
    link = p.BoardLink(board)
    info = link.info()
    assert info.needs_image and not info.loaded and info.load_words == 5 and info.image_format == 1
    with pytest.raises(KwsError, match="no weights loaded"):
        link.infer_bytes(bytes(8))
    board.write(p.encode_frame(p.FrameType.STREAM, bytes(2)))
    assert p.FrameDecoder().feed(board.read(100)) == [p.Frame(p.FrameType.ERROR, bytes([6]))]

    def status(data):
        board.write(p.encode_frame(p.FrameType.LOAD, data))
        (frame,) = p.FrameDecoder().feed(board.read(100))
        return frame.payload[0] if frame.type == p.FrameType.LOADED else ("error", frame.payload[0])
    raw = img.encode()
    assert status(p.WeightImage(0x999, img.words).encode()) == p.LoadStatus.WRONG_MODEL
    assert status(raw[:2] + (4).to_bytes(2, "little") + raw[4:]) == p.LoadStatus.BAD_LENGTH
    assert status(bytes([2]) + raw[1:]) == p.LoadStatus.BAD_FORMAT
    assert status(raw[:-1] + bytes([raw[-1] ^ 1])) == p.LoadStatus.BAD_CRC
    assert not link.info().loaded
    link.load(img)
    assert link.info().weights == p.Weights.LOADED
    assert link.infer_bytes(bytes(8)).cls == 1
    with pytest.raises(KwsError, match="another model"):
        link.load(p.WeightImage(0x999, img.words))
    assert link.info().loaded                      # a refused header keeps the image
    bad = bytearray(p.encode_frame(p.FrameType.LOAD, raw))
    bad[-1] ^= 1
    board.write(bytes(bad))
    assert p.FrameDecoder().feed(board.read(100)) == [p.Frame(p.FrameType.ERROR, bytes([2]))]
    assert not link.info().loaded                  # the good header had started a new image
    link.load(img)
    assert board.loads == 2 and link.info().loaded
    pipeline = p.BoardLink(p.SimulatedBoard(p.LinkGeometry(1, 4, 2, 8, 3, 10), lambda x: (0, [0] * 3)))
    with pytest.raises(KwsError, match="takes no weight image"):
        pipeline.load(img)
