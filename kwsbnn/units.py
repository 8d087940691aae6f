"""Memory units, written one way everywhere.

Two units, never sharing a name:

- **kbit** = 1,000 bits: figures, tables, studies and plots (weight memory of a model, the budget
  "1 Mbit" of the trade-off tables);
- **Kibit** = 1,024 bits: FPGA memories in build and resource messages (an iCE40 SB_SPRAM256KA holds
  256 Kibit, an ECP5 DP16KD 18 Kibit), whose sizes are powers of two.

``fmt`` is a format spec for the number (``",.1f"``, ``",.0f"``, ``"g"``); ``unit=False`` gives the
number alone, for a table column whose header names the unit. ``None`` (a figure not measured) is
written ``-``.
"""

KBIT = 1000
KIBIT = 1024


def kbit(bits, fmt: str = ",.1f", unit: bool = True) -> str:
    """``bits`` in kbit (1,000 bits): ``kbit(117_696) == "117.7 kbit"``."""
    return _format(bits, KBIT, fmt, " kbit" if unit else "")


def kibit(bits, fmt: str = ",.1f", unit: bool = True) -> str:
    """``bits`` in Kibit (1,024 bits): ``kibit(2**20, ",.0f") == "1,024 Kibit"``."""
    return _format(bits, KIBIT, fmt, " Kibit" if unit else "")


def _format(bits, per: int, fmt: str, suffix: str) -> str:
    if bits is None:
        return "-"
    return f"{bits / per:{fmt}}{suffix}"
