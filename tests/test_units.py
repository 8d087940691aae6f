"""The two memory units: kbit (1,000 bits) for figures, Kibit (1,024 bits) for FPGA memories."""

from kwsbnn.units import kbit, kibit


def test_kbit_is_thousands_of_bits():
    assert kbit(117_696) == "117.7 kbit"
    assert kbit(500_000, ",.0f") == "500 kbit"
    assert kbit(1_014_600, unit=False) == "1,014.6"


def test_kibit_is_1024_bits():
    assert kibit(2 ** 20, ",.0f") == "1,024 Kibit"      # four SB_SPRAM256KA
    assert kibit(4096, "g") == "4 Kibit"                 # one iCE40 EBR
    assert kibit(18 * 1024, "g") == "18 Kibit"           # one ECP5 DP16KD
    assert kibit(1536, unit=False) == "1.5"


def test_the_units_differ_for_the_same_bits():
    """The SPRAM's 2**20 bits are 1,048.6 kbit and 1,024 Kibit: the names must not be swapped."""
    assert kbit(2 ** 20) == "1,048.6 kbit"
    assert kibit(2 ** 20) == "1,024.0 Kibit"


def test_a_figure_not_measured_is_a_dash():
    assert kbit(None) == "-" and kibit(None, unit=False) == "-"
