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


def test_demo_writes_summary_files_with_the_next_command(tmp_path, capsys):
    assert main(["demo", "--model", "tiny", "--count", "8", "--no-build", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "exactly what the software does" in text and "next: kwsbnn demo" in text
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["agreement"] == {"equal": 8, "total": 8} and saved["next"].startswith("kwsbnn demo")
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# kwsbnn demo") and "- next: kwsbnn demo" in md


def test_demo_summary_says_the_clips_are_synthesized():
    from kwsbnn.commands.demo import summary_lines
    s = {"model": "binary", "clips": 52, "accuracy": 0.577, "data": "build/demo/clips", "synthesized": True,
         "real_speech_accuracy": 0.54, "agreement": {"equal": 52, "total": 52},
         "torch_agreement": {"equal": 52, "total": 52}, "cycles_per_inference_simulated": 80823,
         "cycles_per_inference_model": 80800, "seconds": 80.0, "next": "kwsbnn data download --subset"}
    text = "\n".join(summary_lines(s))
    assert "52 clips of synthesized voices (eSpeak NG): 57.7%" in text
    assert "recorded speech (the subset's testing list) it scores 54.0%" in text
