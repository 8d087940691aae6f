"""The bitstream flow: the skeleton network builds for the iCEBreaker with YoWASP, and the report
carries the resources, Fmax and inferences per second that users and scripts read."""

import json
import subprocess
import sys


def _build(out, *args) -> dict:
    """``kwsbnn build --board icebreaker ARGS --out OUT --json`` in a subprocess; its report."""
    r = subprocess.run([sys.executable, "-m", "kwsbnn.cli", "build", "--board", "icebreaker", *args,
                        "--out", str(out), "--json"], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_icebreaker_bitstream(tmp_path):
    out = tmp_path / "ice"
    rep = _build(out, "--model", "tiny", "--freq", "12")        # the oscillator: no PLL
    bitstream = out / "kws.bin"
    assert bitstream.is_file() and bitstream.stat().st_size > 100_000   # UP5K images are ~104 kB
    lc = rep["resources"]["logic_cells"]
    assert lc["available"] == 5280 and 100 < lc["used"] <= 5280
    assert rep["resources"]["block_ram"]["available"] == 30
    assert rep["clock_mhz"] == 12.0 and rep["fmax_mhz"] >= 12.0
    assert rep["inferences_per_second"] == 12e6 / rep["cycles_per_inference"]


def test_icebreaker_bitstream_with_pll(tmp_path):
    """--freq other than the oscillator's: the iCE40 PLL (SB_PLL40_PAD on the clock pin) makes the
    clock, nextpnr checks timing at it, and the report gives requested and achieved clock."""
    out = tmp_path / "ice18"
    rep = _build(out, "--model", "tiny", "--freq", "18")
    assert rep["clock_mhz"] == 18.0 and rep["requested_mhz"] == 18.0 and rep["oscillator_mhz"] == 12.0
    assert (rep["pll"]["divr"], rep["pll"]["divf"], rep["pll"]["divq"]) == (0, 47, 5)
    assert rep["fmax_mhz"] >= 18.0 and rep["timing_met"]
    assert rep["inferences_per_second"] == 18e6 / rep["cycles_per_inference"]
    assert "SB_PLL40_PAD" in (out / "kws.il").read_text()


def test_the_icebreakers_default_model_builds_at_24_mhz(tmp_path):
    """`kwsbnn build --board icebreaker` without --model: the board's default, the shipped `binary-w64`
    (64 channels, integer residual stream), in the engine style with the host-protocol top: the
    estimate passes the pre-synthesis check, place and route fits it within the 97% rule, meets
    timing at 24 MHz from the PLL, it runs at least the 25 inferences/s a shipped model needs, and
    the weight image the UART loads lies next to the bitstream, with the flash image that holds
    both."""
    from kwsbnn.boards import protocol as p
    from kwsbnn.boards.build import BOARDS
    from kwsbnn.sw.export import deployable
    out = tmp_path / "ice-default"
    rep = _build(out)
    assert (out / "kws.bin").is_file() and rep["style"] == "engine"
    assert rep["resources"]["logic_cells"]["used"] <= int(0.97 * 5280)
    assert rep["resources"]["block_ram"]["used"] <= 30 and rep["resources"]["spram"]["used"] == 4
    assert rep["clock_mhz"] == 24.0 and rep["timing_met"] and rep["fmax_mhz"] >= 24.0
    assert rep["inferences_per_second"] >= 25
    # The link: 1 Mbaud by default (24 clocks per bit, exact); the streaming ring (101 x 40 int8
    # frames: 4096 words) in SPRAM behind one staging block RAM, a decision every 3 frames in
    # real time.
    assert (rep["baud"], rep["uart_divisor"], rep["baud_error_percent"]) == (1_000_000, 24, 0)
    st = rep["streaming"]
    assert st["ring_bits"] == 32768 and st["ring_block_ram"] == 1 and st["keeps_up"]
    assert st["stride"] == 3 and st["link_frames_per_second"] > 2000
    dep = deployable(BOARDS["icebreaker"].default_model)
    image = p.WeightImage.parse((out / "kws.weights.bin").read_bytes())
    assert rep["weight_image"]["path"] == str(out / "kws.weights.bin")
    assert image.model_id == p.model_id(dep) and len(image.words) == rep["weight_image"]["words"] == 1728
    # The flash image: the bitstream, then the same weight image at 1 MiB, read at power-up.
    flash = (out / "kws.flash.bin").read_bytes()
    bitstream = (out / "kws.bin").read_bytes()
    assert flash[:len(bitstream)] == bitstream and flash[0x100000:] == image.encode()
    assert rep["weight_image"]["flash"]["program"][0] == f"iceprog {out / 'kws.flash.bin'}"


def test_ulx3s_default_clock_is_60_mhz_from_the_pll():
    """Without --freq the ULX3S runs at 60 MHz from its PLL (binary, its default model, meets timing
    there in the block-RAM engine); the iCEBreaker at 24 MHz from its PLL (its default model, binary,
    meets timing there in the SPRAM engine)."""
    from kwsbnn.boards.build import BOARDS, clock_plan
    board = BOARDS["ulx3s-85f"]
    clk, pll = clock_plan(board, 25e6, board.default_mhz)
    assert clk == 60e6 and pll is not None
    assert BOARDS["icebreaker"].default_mhz == 24.0
    clk, pll = clock_plan(BOARDS["icebreaker"], 12e6, 24.0)
    assert clk == 24e6 and pll is not None
    assert BOARDS["icebreaker"].default_model == "binary-w64"
    assert BOARDS["ulx3s-85f"].default_model == "binary"


def test_build_help_states_the_defaults(capsys):
    import pytest

    from kwsbnn.cli import main
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "24 MHz on the icebreaker" in text and "60 MHz on the ulx3s-85f" in text
    assert "binary-w64 on the icebreaker" in text and "binary on the ulx3s-85f" in text


def test_rate_option_errors(tmp_path, capsys):
    """--rate is a positive number of inferences per second, and it does not go with --fold FILE:
    both are refused before anything is built."""
    from kwsbnn.cli import main
    assert main(["build", "--board", "ulx3s-85f", "--model", "tiny", "--rate", "0",
                 "--out", str(tmp_path / "b")]) == 2
    assert "not a rate" in capsys.readouterr().err
    fold = tmp_path / "fold.json"
    fold.write_text("{}")
    assert main(["build", "--board", "ulx3s-85f", "--model", "tiny", "--rate", "100", "--fold", str(fold),
                 "--out", str(tmp_path / "b")]) == 2
    assert "does not go with --fold" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_board_folding_with_a_rate_is_the_one_the_build_and_demo_use():
    """boards.build.board_folding passes the rate to the folding search (the demo simulates it)."""
    from kwsbnn.boards.build import board_folding
    from kwsbnn.hw.cost import layer_costs
    from kwsbnn.sw.export import deployable
    dep = deployable("binary-ice40")
    fastest = board_folding(dep, "ulx3s-85f")
    fast = layer_costs(dep, fastest)["cycles_per_inference"]
    slow = board_folding(dep, "ulx3s-85f", rate=60e6 / (4 * fast))
    assert fast * 2 < layer_costs(dep, slow)["cycles_per_inference"] <= 4 * fast
    # 64 channels: the last layer stalls while the serial dense layer computes (64 x 12 cycles);
    # the folding search counts that stall, so the rate is met by the whole network
    wide = deployable("binary-wide")
    for rate in (10000, 5000):
        cyc = layer_costs(wide, board_folding(wide, "ulx3s-85f", rate=rate))["cycles_per_inference"]
        assert 60e6 / (2 * rate) < cyc <= 60e6 / rate


def test_icebreaker_picks_the_engine_style_only_when_the_pipeline_does_not_fit():
    """binary-ice40 stays a pipeline on the iCEBreaker (its folding fits by the estimate; CI
    builds the tiny network in that style); binary-wide (64 channels) does not fit as a pipeline
    and is built in the engine style, its ring in SPRAM beside the weights, its weights as an
    image for the UART."""
    from kwsbnn.boards.build import board_folding
    from kwsbnn.boards.top import KwsTop
    from kwsbnn.hw.folding import budget_check
    from kwsbnn.sw.export import deployable
    small = deployable("binary-ice40")
    assert board_folding(small, "icebreaker").style == "pipeline"
    assert budget_check(small, board_folding(small, "icebreaker"), "icebreaker", clk_hz=24e6)["fits"]
    wide = deployable("binary-wide")
    folding = board_folding(wide, "icebreaker")
    assert folding.style == "engine"
    check = budget_check(wide, folding, "icebreaker", clk_hz=24e6)
    assert check["fits"], check["text"]
    top = KwsTop(wide, folding, clk_freq=24e6, baud=1_000_000)
    image = top.weight_image()
    assert top.engine_style and top.info.needs_image and not top.info.loaded
    assert len(image.words) == top.geometry.load_words == top.network.load_words
    assert top.ring_base >= top.network.engine.weight_words
    assert KwsTop(small, board_folding(small, "icebreaker"), clk_freq=24e6).weight_image() is None


def test_a_model_that_fits_no_style_is_a_clear_error(tmp_path):
    """Too wide for both styles on the iCEBreaker: one error with the numbers of each."""
    import specgen
    from kwsbnn.boards.build import board_folding
    from kwsbnn.errors import KwsError
    from kwsbnn.sw.deploy import save
    from kwsbnn.sw.export import deployable
    dep = deployable(str(save(specgen.wide_kws(2, c=128), tmp_path / "m")))
    import pytest
    with pytest.raises(KwsError) as e:
        board_folding(dep, "icebreaker")
    text = str(e.value)
    assert "does not fit icebreaker" in text and "in the engine style" in text
    assert "432.0 Kibit of weights in SPRAM" in text and "block ram of 30" in text


def test_a_stream_network_on_the_icebreaker_fails_before_synthesis_with_the_numbers(tmp_path, capsys):
    """A 96-channel integer-stream network (the shipped ``binary``'s shape, wider, random weights)
    runs only in the engine style; with the UART, the SPRAM ring and the loader its estimate is
    over the iCEBreaker's logic: ``build`` says so in one line, before yosys."""
    import specgen
    from kwsbnn.cli import main
    from kwsbnn.sw.deploy import save
    model = save(specgen.stream_kws(3, c=96, t=101, f=40), tmp_path / "m")
    assert main(["build", "--board", "icebreaker", "--model", str(model), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) <= 2 and "Traceback" not in err        # the line (and a hint)
    line = err.splitlines()[0]
    assert "engine style only" in line and "does not fit icebreaker" in line
    assert "logic cells of 5,121 allowed" in line and "stream map in SPRAM" in line
    assert not list((tmp_path / "b").glob("*.v")) if (tmp_path / "b").exists() else True


def test_a_stream_network_too_big_for_the_ulx3s_is_a_clear_error(tmp_path, capsys):
    """The ULX3S builds the integer stream in the block-RAM engine; a network whose weights and maps
    do not fit its 208 EBR stops `build` before synthesis with one line naming the board, the
    model and the block RAM, and writes nothing."""
    import specgen
    from kwsbnn.cli import main
    from kwsbnn.sw.deploy import save
    model = save(specgen.stream_kws(0, c=256, t=101, f=40), tmp_path / "s256")
    assert main(["build", "--board", "ulx3s-85f", "--model", str(model),
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 2 and "Traceback" not in err
    assert "does not fit ulx3s-85f" in err and "integer residual stream" in err
    assert "block RAM of ulx3s-85f" in err and "has 208" in err
    assert not (tmp_path / "b").exists()


def test_the_spram_ring_sits_above_the_stream_map():
    """The board's ring takes the last words of the weight memory, above the weights and the stream
    map (the engine's ``memory_words``); when the three do not fit the 16K words, a clear error."""
    import pytest
    import specgen
    from kwsbnn.boards.top import KwsTop
    from kwsbnn.errors import KwsError
    from kwsbnn.hw.cost import engine_folding
    from kwsbnn.sw.deploy import save
    from kwsbnn.sw.export import deployable
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        dep = deployable(str(save(specgen.stream_kws(1, c=64, t=101, f=40), tmp + "/a")))
        top = KwsTop(dep, engine_folding(dep), clk_freq=24e6, baud=1_000_000)
        eng = top.network.engine
        assert eng.stream and eng.memory_words == eng.weight_words + eng.stream_words == 1728 + 2600
        assert top.ring_base == 16384 - 4096 >= eng.memory_words
        assert len(top.weight_image().words) == eng.weight_words     # the image: weight words only
        # 128 channels, 109 rows: 6,912 + 5,616 words build; the ring of 8,192 does not fit above them
        big = deployable(str(save(specgen.stream_kws(1, c=128, t=109, f=40), tmp + "/b")))
        with pytest.raises(KwsError, match="6,912 weight words, 5,616 stream-map words and the streaming "
                                           "ring's 8,192 words take 20,720 of the 16,384 SPRAM words"):
            KwsTop(big, engine_folding(big), clk_freq=24e6, baud=1_000_000)
