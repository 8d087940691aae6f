"""Small arithmetic helpers shared by the gateware: popcount trees and widths."""

from amaranth.hdl import Const, Value, unsigned
from amaranth.utils import ceil_log2


def bits_for(n: int) -> int:
    """Unsigned width that holds every value in 0..n."""
    return max(1, ceil_log2(n + 1))


def signed_width(lo: int, hi: int) -> int:
    """Two's-complement width that holds every value in lo..hi."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


def popcount(value: Value) -> Value:
    """Number of ones in ``value`` as a balanced adder tree (combinational, depth log2(width))."""
    bits = [value[i] for i in range(len(value))]
    if not bits:
        return Const(0, unsigned(1))
    level = [b.as_unsigned() for b in bits]
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def int_pair(owner: str, name: str, value, minimum: int) -> tuple[int, int]:
    """A (time, frequency) pair of integers >= ``minimum`` from an int or a pair; ``ValueError``
    naming ``owner`` and ``name`` otherwise."""
    if isinstance(value, int):
        value = (value, value)
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be an integer pair (time, frequency), "
                         f"got {value!r}") from None
    if a < minimum or b < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum} in both dimensions, got ({a}, {b})")
    return a, b
