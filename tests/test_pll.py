"""PLL parameters: the iCE40 calculator gives icepll's settings, the ECP5 one ecppll's; the limits
hold for every setting; out-of-range frequencies are clear errors; the board top instantiates the
PLL primitive with those parameters."""

import pytest

from kwsbnn.boards import pll
from kwsbnn.errors import KwsError


@pytest.mark.parametrize("f_in,f_out,want", [
    # icepll -i F_IN -o F_OUT: (DIVR, DIVF, DIVQ, FILTER_RANGE), achieved
    (12, 96, (0, 63, 3, 1, 96.0)),
    (12, 24, (0, 63, 5, 1, 24.0)),
    (12, 17, (0, 44, 5, 1, 16.875)),
    (48, 60, (0, 19, 4, 4, 60.0)),
    (48, 100, (2, 49, 3, 1, 100.0)),
    (48, 150, (1, 24, 2, 2, 150.0)),
    (96, 20, (2, 19, 5, 3, 20.0)),
    (96, 16, (2, 31, 6, 3, 16.0)),
])
def test_ice40_matches_icepll(f_in, f_out, want):
    p = pll.ice40_pll(f_in * 1e6, f_out * 1e6)
    assert (p.divr, p.divf, p.divq, p.filter_range) == want[:4]
    assert p.f_out == pytest.approx(want[4] * 1e6)


@pytest.mark.parametrize("f_in,f_out,want", [
    # ecppll -i F_IN -o F_OUT: (CLKI_DIV, CLKFB_DIV, CLKOP_DIV), achieved
    (25, 50, (1, 2, 12, 50.0)),
    (12, 48, (1, 4, 12, 48.0)),
    (12, 60, (1, 5, 10, 60.0)),
    (100, 400, (1, 4, 1, 400.0)),
    (25, 48, (8, 15, 13, 46.875)),      # 48/25 is not a ratio the dividers can make
])
def test_ecp5_matches_ecppll(f_in, f_out, want):
    p = pll.ecp5_pll(f_in * 1e6, f_out * 1e6)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == want[:3]
    assert p.clkop_cphase == p.clkop_div // 2
    assert p.f_out == pytest.approx(want[3] * 1e6)


@pytest.mark.parametrize("f_out", [16, 19.3, 33.3, 66, 100, 200, 275])
def test_limits_and_closest(f_out):
    p = pll.ice40_pll(12e6, f_out * 1e6)
    assert 10e6 <= p.f_pfd <= 133e6 and 533e6 <= p.f_vco <= 1066e6
    assert p.f_out == pytest.approx(p.f_vco / 2 ** p.divq)
    # Nothing on icepll's grid is closer.
    grid = [12 / (r + 1) * (f + 1) / 2 ** q for r in range(16) for f in range(128) for q in range(1, 7)
            if 10 <= 12 / (r + 1) <= 133 and 533 <= 12 / (r + 1) * (f + 1) <= 1066]
    assert abs(p.f_out / 1e6 - f_out) <= min(abs(g - f_out) for g in grid) + 1e-9
    e = pll.ecp5_pll(25e6, f_out * 1e6)
    assert 400e6 <= e.f_vco <= 800e6 and e.f_pfd >= 3.125e6
    assert e.f_out == pytest.approx(e.f_in / e.clki_div * e.clkfb_div)


def test_out_of_range_is_a_clear_error():
    with pytest.raises(KwsError, match=r"iCE40 PLL makes 16-275 MHz, not 300 MHz"):
        pll.plan("ice40", 12e6, 300e6)
    with pytest.raises(KwsError, match=r"ECP5 PLL makes 10-400 MHz, not 5 MHz"):
        pll.plan("ecp5", 25e6, 5e6)
    with pytest.raises(KwsError, match="no PLL support"):
        pll.plan("gowin", 25e6, 50e6)


def test_build_clock_plan():
    from kwsbnn.boards.build import clock_plan, get_board
    ice = get_board("icebreaker")
    assert clock_plan(ice, 12e6, None) == (12e6, None)
    assert clock_plan(ice, 12e6, 12.0) == (12e6, None)
    hz, p = clock_plan(ice, 12e6, 24)
    assert hz == 24e6 and p.divf == 63
    with pytest.raises(KwsError, match="--freq 500 MHz on icebreaker"):
        clock_plan(ice, 12e6, 500)


@pytest.mark.parametrize("board,freq,prim,params", [
    ("icebreaker", 24, "SB_PLL40_PAD", {"DIVR": "4'0000", "DIVF": "7'0111111", "DIVQ": "3'101",
                                        "FILTER_RANGE": "3'001", "FEEDBACK_PATH": '"SIMPLE"'}),
    ("ulx3s-85f", 50, "EHXPLLL", {"CLKI_DIV": "1", "CLKFB_DIV": "2", "CLKOP_DIV": "12",
                                  "CLKOP_CPHASE": "6", "FEEDBK_PATH": '"CLKOP"'}),
])
def test_top_instantiates_the_pll(board, freq, prim, params):
    """The board top elaborated for the platform (no place and route) has the PLL primitive."""
    from kwsbnn import toolchain
    from kwsbnn.boards.build import _platform, clock_plan, get_board
    from kwsbnn.boards.top import KwsTop
    from kwsbnn.sw.export import deployable
    b = get_board(board)
    toolchain.activate()
    platform = _platform(b)
    hz, p = clock_plan(b, platform.default_clk_frequency, freq)
    top = KwsTop(deployable("tiny"), clk_freq=hz, pll=p)
    il = platform.prepare(top, name="kws").files["kws.il"]
    cell = il[il.index(f"cell \\{prim} "):]
    cell = cell[:cell.index("\n  end")]
    for k, v in params.items():
        assert f"parameter \\{k} {v}\n" in cell, (k, cell)
    assert "connect \\LOCK" in cell
