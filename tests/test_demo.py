"""`kwsbnn demo` on the walking-skeleton network (the keyword-spotting path runs in `make demo`)."""

import json

from kwsbnn.cli import main


def test_demo_tiny_agrees_everywhere(tmp_path, capsys):
    assert main(["demo", "--model", "tiny", "--count", "40", "--no-build", "--out", str(tmp_path),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["agreement"] == {"equal": 40, "total": 40}
    assert res["torch_agreement"] == {"equal": 40, "total": 40}
    assert res["cycles_per_inference_simulated"] > 0


def test_demo_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--model", "no-such-model", "--no-build", "--out", str(tmp_path)]) == 2
    assert "no such model file or shipped model" in capsys.readouterr().err
