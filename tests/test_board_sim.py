"""The board top in Verilator, over its UART pins, with the host protocol code: INFO, inferences
equal to the golden model, and every error case answered and recovered from."""

from kwsbnn.sim.board import simulate_board
from kwsbnn.sw.export import deployable


def test_board_protocol_tiny(tmp_path):
    res = simulate_board(deployable("tiny"), tmp_path, count=30)
    assert res["failed"] == 0 and res["tests"] == 1, res["failures"]
    assert res["inferences"] >= 30 + 8
    assert set(res["errors_seen"]) == {"BAD_CHECKSUM", "BAD_VERSION", "UNKNOWN_TYPE", "BAD_LENGTH",
                                       "TIMEOUT"}
    assert res["checks"]["info"] == 1 and res["checks"]["inference"] == 30
    assert res["info"]["n_classes"] == 4 and res["info"]["input_bytes"] == 8
