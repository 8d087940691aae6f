"""The board top in Verilator, over its UART pins, with the host protocol code: INFO, inferences
equal to the golden model, and every error case answered and recovered from."""

from kwsbnn.sim.board import simulate_board, simulate_stream
from kwsbnn.sw.export import deployable


def test_board_protocol_tiny(tmp_path):
    res = simulate_board(deployable("tiny"), tmp_path, count=30)
    assert res["failed"] == 0 and res["tests"] == 1, res["failures"]
    assert res["inferences"] >= 30 + 8
    assert set(res["errors_seen"]) == {"BAD_CHECKSUM", "BAD_VERSION", "UNKNOWN_TYPE", "BAD_LENGTH",
                                       "TIMEOUT"}
    assert res["checks"]["info"] == 1 and res["checks"]["inference"] == 30
    assert res["info"]["n_classes"] == 4 and res["info"]["input_bytes"] == 8


def test_board_stream_small_network(tmp_path):
    """Streaming on a small KWS-shaped network (16 x 10 input, the pipeline style): every decision
    equals the golden model on its window, errors drop frames without disturbing the window, INFER
    still works; in real time (a frame per 10 ms), a decision every 2 frames, the board keeps up:
    50 decisions/s and no frame held back by the flow control."""
    import specgen
    from kwsbnn.sw.deploy import save
    dep = deployable(str(save(specgen.binary_kws(3), tmp_path / "model")))
    res = simulate_stream(dep, tmp_path / "sim", stride=2, frames=16 + 8)
    assert res["failed"] == 0 and res["tests"] == 1, res["failures"]
    assert res["decisions"] == 5 and res["checks"]["decision"] == 5
    assert res["checks"]["decision after errors"] == 2 and res["checks"]["decision after restart"] == 2
    assert res["info"]["window_frames"] == 16 and res["info"]["frame_bytes"] == 10

    rt = simulate_stream(dep, tmp_path / "sim", stride=2, frames=16 + 8, hop_s=0.01, seed=1)
    assert rt["failed"] == 0, rt["failures"]
    assert rt["decisions"] == 5 and rt["max_lag_cycles"] == 0
    assert abs(rt["steady_decisions_per_second"] - 50) < 0.01
    assert rt["answer_cycles"]["max"] < 0.02 * 8e6           # within 2 hops of its decision frame


def test_board_real_shape_with_the_icebreakers_default_model(tmp_path):
    """The model the iCEBreaker runs by default (`binary`: 64 channels, the integer residual
    stream, the engine style) in the board top `kwsbnn build --board icebreaker` builds, its
    folding, 24 MHz and 1 Mbaud, cycle for cycle (only the inter-byte timeout is shortened, to
    5 ms): no weights at power-up, its weight image over the UART in the time the bytes take on the
    wire, an INFER and streamed decisions (101 x 40 int8 frames) equal to the golden model; the
    decisions, a frame each as fast as the flow control allows, at the network's own rate
    (35.6 inferences/s), so that a decision every 3 frames (the build's stride) keeps up with a
    frame per 10 ms; a reset keeps the weights."""
    from kwsbnn.boards.build import BOARDS, board_folding
    from kwsbnn.sim.board import simulate_load
    dep = deployable(BOARDS["icebreaker"].default_model)
    folding = board_folding(dep, "icebreaker", freq_mhz=24)
    assert folding.style == "engine"
    res = simulate_load(dep, tmp_path, folding=folding, count=1, frames=101 + 3, stride=1,
                        clk_freq=24e6, baud=1_000_000, timeout=0.005, errors=False)
    assert res["failed"] == 0 and res["tests"] == 1, res["failures"]
    assert res["statuses"] == ["LOADED"] and res["checks"]["inference after reset"] == 1
    assert res["checks"]["infer before load"] == 1 and res["checks"]["decision"] == 4
    fig, info = res["figures"], res["info"]
    assert info["load_words"] == 1728 and fig["divisor"] == 24 and fig["baud_error"] == 0
    # The LOAD frame and its 7-byte answer: 10 bit times a byte at 24 clocks a bit.
    assert abs(res["load_cycles"] - (res["load_bytes"] + 7) * 10 * 24) < 100
    assert fig["ring_bits"] == 32768 and fig["network_per_second"] >= 25
    assert res["steady_decisions_per_second"] >= 0.97 * fig["network_per_second"]
    assert fig["stride"] == 3 and fig["keeps_up"]
    assert res["steady_cycles_per_decision"] < fig["stride"] * 0.01 * 24e6


def test_engine_board_loads_its_weights_over_the_uart(tmp_path):
    """An engine-style board top (small KWS network, weights in the shared weight memory): no
    weights at power-up (INFER and STREAM answered NO_WEIGHTS), refused and corrupted images
    answered with their status, the image over the UART, then INFERs and a stream whose every
    decision equals the golden model; a refused image keeps the loaded one, a damaged LOAD frame
    leaves none, a reload and a reset."""
    import specgen
    from kwsbnn.hw.cost import engine_folding
    from kwsbnn.sim.board import simulate_load
    from kwsbnn.sw.deploy import save
    dep = deployable(str(save(specgen.binary_kws(3), tmp_path / "model")))
    res = simulate_load(dep, tmp_path / "sim", folding=engine_folding(dep, pe=1, simd=4), count=3,
                        frames=16 + 4, stride=2)
    assert res["failed"] == 0 and res["tests"] == 1, res["failures"]
    assert res["statuses"] == ["WRONG_MODEL", "BAD_LENGTH", "BAD_FORMAT", "BAD_CRC", "LOADED",
                               "WRONG_MODEL", "LOADED"]
    assert res["checks"]["inference"] == 3 and res["decisions"] == 3
    assert res["checks"]["infer before load"] == 1 and res["checks"]["damaged load frame"] == 1
    # The LOAD frame and its 7-byte LOADED answer on the wire: 10 bit times a byte at 1 Mbaud
    # (8 clocks a bit), within a few cycles: the board takes the image as fast as it comes.
    assert res["info"]["load_words"] > 0
    assert abs(res["load_cycles"] - (res["load_bytes"] + 7) * 10 * 8) < 100


def test_engine_board_with_the_integer_stream_over_the_uart(tmp_path):
    """The same board top with a small random integer-stream network (the stream map in the weight
    memory after the weights, the ring above it in the last words, both on the one SPRAM port):
    the image (weight words only) over the UART, then INFERs and streamed decisions = golden."""
    import specgen
    from kwsbnn.hw.cost import engine_folding
    from kwsbnn.sim.board import simulate_load
    from kwsbnn.sw.deploy import save
    dep = deployable(str(save(specgen.stream_kws(2, c=8, t=25, f=13), tmp_path / "model")))
    res = simulate_load(dep, tmp_path / "sim", folding=engine_folding(dep), count=2,
                        frames=25 + 2, stride=2)
    assert res["failed"] == 0 and res["tests"] == 1, res["failures"]
    assert res["statuses"][4] == "LOADED" and res["statuses"][-1] == "LOADED"
    assert res["checks"]["inference"] == 2 and res["decisions"] == 2
    assert res["checks"]["inference after reload"] == 1 and res["checks"]["inference after reset"] == 1


def test_engine_board_reads_its_weights_from_the_spi_flash(tmp_path):
    """The engine-style board top reads its weight image from a model of the SPI flash that starts
    in deep power-down (any command before the release command and tRES1 counts as a violation):
    a good image is loaded and checked (INFERs = golden model, no UART LOAD); an image of another
    model, a corrupted one and an erased flash are refused with their status in INFO (INFER
    answered NO_WEIGHTS, then a LOAD over the UART works); a reset keeps the weights and does
    not read the flash again."""
    import specgen
    from kwsbnn.boards.flash import FlashBoot
    from kwsbnn.boards.protocol import FlashStatus
    from kwsbnn.hw.cost import engine_folding
    from kwsbnn.sim.board import board_verilog, simulate_flash
    from kwsbnn.sw.deploy import save
    dep = deployable(str(save(specgen.binary_kws(3), tmp_path / "model")))
    folding = engine_folding(dep, pe=1, simd=4)
    top = board_verilog(dep, tmp_path / "v", folding=folding)[1]
    image = top.weight_image().encode()
    boot = FlashBoot(words=len(top.weight_image().words), clk_freq=8e6).boot_cycles
    wrong, corrupt = bytearray(image), bytearray(image)
    wrong[4] ^= 0x01                                   # model id
    corrupt[12 + 8 * 20 + 3] ^= 0x10                   # a word bit: the CRC-32 fails
    cases = [("LOADED", image, len(image)), ("WRONG_MODEL", bytes(wrong), 12),
             ("BAD_CRC", bytes(corrupt), len(image)), ("BAD_FORMAT", None, 12)]
    for expect, flash, nbytes in cases:
        res = simulate_flash(dep, tmp_path / "sim", folding=folding, flash=flash, expect=expect)
        assert res["failed"] == 0 and res["tests"] == 1, (expect, res["failures"])
        assert res["flash"] == FlashStatus[expect] and res["violations"] == []
        # Woken first, then one read at the image's offset, ended after the header when refused.
        assert res["transactions"] == [["wake", None, 0], ["read", 0x100000, nbytes]], expect
        assert res["checks"]["inference after reset"] == 1
        if expect == "LOADED":
            # The reader's cycle count (a byte per 16 + 2 cycles at SCK = clk / 2), within the
            # model's sampling of the pins (a clock edge or two).
            assert abs(res["boot_cycles"] - boot) <= 2, (res["boot_cycles"], boot)
        else:
            assert res["checks"]["load over the uart"] == 1
