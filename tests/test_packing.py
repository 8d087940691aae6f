"""Bit packing and memory-image encodings: round trips and the documented bit order."""

import numpy as np
from hypothesis import given, settings, strategies as st

from kwsbnn.sw import packing

rows_strategy = st.integers(1, 70).flatmap(
    lambda w: st.lists(st.lists(st.integers(0, 1), min_size=w, max_size=w), min_size=1, max_size=8))


@given(rows_strategy)
def test_pack_unpack_round_trip(rows):
    bits = np.array(rows, dtype=np.uint8)
    words = packing.pack_rows(bits)
    assert np.array_equal(packing.unpack_rows(words, bits.shape[1]), bits)
    # Element 0 is the least significant bit.
    assert words == [sum(int(b) << i for i, b in enumerate(r)) for r in rows]


@given(rows_strategy)
def test_hex_and_bin_images_round_trip(rows):
    bits = np.array(rows, dtype=np.uint8)
    width = bits.shape[1]
    words = packing.pack_rows(bits)
    assert packing.parse_hex(packing.hex_text(words, width), width) == words
    assert packing.parse_bin(packing.bin_bytes(words, width), width, len(words)) == words
    lines = packing.hex_text(words, width).splitlines()
    assert all(len(line) == (width + 3) // 4 for line in lines)


@given(st.integers(2, 40).flatmap(lambda w: st.tuples(
    st.just(w), st.lists(st.integers(-(1 << (w - 1)), (1 << (w - 1)) - 1), min_size=1, max_size=20))))
def test_signed_round_trip(args):
    width, values = args
    words = packing.signed_to_words(np.array(values), width)
    assert all(0 <= w < (1 << width) for w in words)
    assert packing.words_to_signed(words, width).tolist() == values


def test_signed_overflow_is_an_error():
    import pytest
    with pytest.raises(ValueError, match="do not fit"):
        packing.signed_to_words(np.array([128]), 8)


@settings(max_examples=50)
@given(st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_words64_popcount_matches_bits(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, (3, n)).astype(np.uint8)
    b = rng.integers(0, 2, (3, n)).astype(np.uint8)
    wa, wb = packing.pack_words64(a), packing.pack_words64(b)
    diff = np.bitwise_count(wa ^ wb).sum(axis=-1)
    assert np.array_equal(diff, (a != b).sum(axis=-1))


def test_bad_hex_and_truncated_bin_are_errors():
    import pytest
    with pytest.raises(ValueError, match="not a hex number"):
        packing.parse_hex("0f\nzz\n", 8)
    with pytest.raises(ValueError, match="expected 3 words"):
        packing.parse_bin(b"\x00\x01", 8, 3)
