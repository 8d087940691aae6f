"""Bit packing of binary tensors and the memory-image files (.hex for $readmemh, raw .bin).

Conventions (see docs/deployable-model.md):
- A binary value is one bit: 1 means +1, 0 means -1.
- A row of ``n`` bits is the integer ``sum(bit[i] << i)``: element 0 is the least significant bit.
- ``.hex``: one row per line, ``ceil(width/4)`` hex digits, most significant digit first
  (what Verilog's ``$readmemh`` reads into a ``[width-1:0]`` memory).
- ``.bin``: rows one after another, each ``ceil(width/8)`` bytes, little-endian.
- Signed values (thresholds, int8 weights) are stored in two's complement at the image's width.
"""

import numpy as np


def to_bits(pm1: np.ndarray) -> np.ndarray:
    """Map a ±1 (or sign-valued) array to bits: value >= 0 -> 1, value < 0 -> 0."""
    return (np.asarray(pm1) >= 0).astype(np.uint8)


def from_bits(bits: np.ndarray) -> np.ndarray:
    """Map bits to ±1 as int8."""
    return (np.asarray(bits, dtype=np.int8) * 2 - 1).astype(np.int8)


def pack_rows(bits: np.ndarray) -> list[int]:
    """Pack a 2-D 0/1 array (rows x n) into one Python int per row, element 0 at bit 0."""
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.ndim != 2:
        raise ValueError(f"pack_rows wants a 2-D array, got shape {bits.shape}")
    if bits.size and bits.max() > 1:
        raise ValueError("pack_rows wants 0/1 values")
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_rows(words: list[int], width: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: one int per row -> rows x width array of 0/1."""
    nbytes = (width + 7) // 8
    out = np.zeros((len(words), width), dtype=np.uint8)
    for r, w in enumerate(words):
        if w < 0 or w >> width:
            raise ValueError(f"row {r} does not fit in {width} bits")
        row = np.frombuffer(int(w).to_bytes(nbytes, "little"), dtype=np.uint8)
        out[r] = np.unpackbits(row, bitorder="little")[:width]
    return out


def pack_words64(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a 0/1 array into little-endian uint64 words (zero-padded), for popcounts."""
    bits = np.asarray(bits, dtype=np.uint8)
    n = bits.shape[-1]
    nwords = (n + 63) // 64
    pad = nwords * 64 - n
    if pad:
        bits = np.concatenate([bits, np.zeros(bits.shape[:-1] + (pad,), np.uint8)], axis=-1)
    by = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(by).view("<u8").reshape(bits.shape[:-1] + (nwords,))


def signed_to_words(values: np.ndarray, width: int) -> list[int]:
    """Two's-complement encode signed integers at ``width`` bits; error if one does not fit."""
    values = np.asarray(values, dtype=np.int64).ravel()
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"values in [{values.min()}, {values.max()}] do not fit in {width} signed bits")
    return [int(v) & ((1 << width) - 1) for v in values]


def words_to_signed(words: list[int], width: int) -> np.ndarray:
    """Inverse of :func:`signed_to_words`."""
    sign = 1 << (width - 1)
    return np.array([(w ^ sign) - sign for w in words], dtype=np.int64)


def hex_text(words: list[int], width: int) -> str:
    """The ``$readmemh`` text of ``words``: one per line, fixed number of digits."""
    digits = max(1, (width + 3) // 4)
    return "".join(f"{w:0{digits}x}\n" for w in words)


def parse_hex(text: str, width: int) -> list[int]:
    """Parse ``$readmemh`` text written by :func:`hex_text` (comments and blank lines ignored)."""
    words = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("//")[0].strip()
        if not line:
            continue
        try:
            w = int(line, 16)
        except ValueError:
            raise ValueError(f"line {lineno}: {line!r} is not a hex number") from None
        if w >> width:
            raise ValueError(f"line {lineno}: {line} does not fit in {width} bits")
        words.append(w)
    return words


def bin_bytes(words: list[int], width: int) -> bytes:
    """The raw ``.bin`` image of ``words``: each ``ceil(width/8)`` bytes, little-endian."""
    nbytes = max(1, (width + 7) // 8)
    return b"".join(int(w).to_bytes(nbytes, "little") for w in words)


def parse_bin(data: bytes, width: int, depth: int) -> list[int]:
    """Parse a ``.bin`` image of ``depth`` words; error if its length is wrong."""
    nbytes = max(1, (width + 7) // 8)
    if len(data) != nbytes * depth:
        raise ValueError(f"has {len(data)} bytes, expected {depth} words x {nbytes} bytes = {nbytes * depth}")
    return [int.from_bytes(data[i * nbytes:(i + 1) * nbytes], "little") for i in range(depth)]
