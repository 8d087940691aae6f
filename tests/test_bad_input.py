"""Bad input says what is wrong in one line: skipped WAV files counted and named (--strict: an
error), unusable clips before the board is opened, a truncated model file, a missing noise folder,
and --split all on the canonical test set."""

import json

import numpy as np
import pytest

from kwsbnn import cli
from kwsbnn.paths import MODELS


def main(capsys, *args):
    try:
        rc = cli.main(list(args))
    except SystemExit as e:     # argparse
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def canonical_with_bad(tmp_path_factory):
    from fixtures import make_canonical_test_set, write_wav
    root = make_canonical_test_set(tmp_path_factory.mktemp("canon"), clips_per_class=1)
    write_wav(root / "yes" / "0000bad0_nohash_0.wav", np.zeros(8000), rate=8000)
    (root / "no" / "0000bad1_nohash_0.wav").write_text("not audio\n")
    return root


def test_eval_names_skipped_files_and_strict_refuses(canonical_with_bad, capsys):
    rc, out, err = main(capsys, "eval", "--model", "binary-ice40", "--data", str(canonical_with_bad), "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["skipped"]["count"] == 2 and res["n"] == 12
    assert {f["path"].rsplit("/", 1)[1] for f in res["skipped"]["files"]} == \
        {"0000bad0_nohash_0.wav", "0000bad1_nohash_0.wav"}
    assert "skipped 2 unusable WAV files" in err and "sample rate 8000 Hz" in err
    rc, out, err = main(capsys, "eval", "--model", "binary-ice40", "--data", str(canonical_with_bad), "--strict")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert "2 unusable WAV files (--strict)" in err and "hint:" in err


def test_split_all_on_the_canonical_test_set_is_every_clip(canonical_with_bad, capsys):
    rc, out, _ = main(capsys, "eval", "--model", "binary-ice40", "--data", str(canonical_with_bad),
                      "--split", "all", "--json")
    assert rc == 0 and json.loads(out)["n"] == 12


def test_split_all_on_the_archive_is_every_file(tmp_path):
    from fixtures import make_speech_commands

    from kwsbnn.sw.data import SpeechCommands
    from kwsbnn.sw.evaluate import select
    info = make_speech_commands(tmp_path, keywords=["yes", "no"], unknown_words=["bed", "cat", "dog"])
    ds = SpeechCommands(info.root)
    files = {e.path for e in select(ds, "all") if e.path}
    assert len(files) == sum(len(v) for v in info.files.values())        # every unknown clip too


def test_run_checks_every_clip_before_opening_the_port(tmp_path, capsys):
    from fixtures import tone_clip, write_wav
    rng = np.random.default_rng(0)
    good = write_wav(tmp_path / "good.wav", tone_clip(500, rng))
    low = write_wav(tmp_path / "low.wav", tone_clip(500, rng)[::2], rate=8000)
    stereo = write_wav(tmp_path / "stereo.wav", np.repeat(tone_clip(500, rng), 2), channels=2)
    text = tmp_path / "notes.wav"
    text.write_text("hello\n")
    rc, _, err = main(capsys, "run", "--port", "/dev/kwsbnn-no-such-port", str(good), str(low),
                      str(stereo), str(text))
    assert rc == 2 and "cannot open serial port" not in err, err
    assert "3 of 4 clips cannot be used" in err
    assert "8000 Hz" in err and "2 channels" in err and "notes.wav" in err
    rc, _, err = main(capsys, "run", "--port", "/dev/kwsbnn-no-such-port", str(good))
    assert rc == 2 and "cannot open serial port" in err       # good clips: then the port


def test_truncated_model_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "cut.pt"
    bad.write_bytes((MODELS / "binary.pt").read_bytes()[:40000])
    rc, _, err = main(capsys, "eval", "--model", str(bad), "--data", str(tmp_path))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 2 and lines[1].strip().startswith("hint:")
    assert "truncated or damaged: 40,000 bytes" in lines[0] and len(lines[0]) < 120 + len(str(bad))


def test_missing_noise_folder_hint_names_no_internal_option(tmp_path):
    import shutil

    from fixtures import make_speech_commands

    from kwsbnn.errors import KwsError
    from kwsbnn.sw.data import SpeechCommands
    info = make_speech_commands(tmp_path, keywords=["yes"], unknown_words=["bed"])
    shutil.rmtree(info.root / "_background_noise_")
    with pytest.raises(KwsError) as e:
        SpeechCommands(info.root)
    assert "silence_fraction" not in str(e.value) and "kwsbnn data download" in e.value.hint


def test_train_reports_skipped_files(canonical_with_bad, capsys):
    from kwsbnn.sw.skipped import scan
    with pytest.raises(Exception, match="--strict"):
        scan(canonical_with_bad, strict=True)
    assert scan(canonical_with_bad)["count"] == 2
    assert "skipped 2 unusable" in capsys.readouterr().err


def test_eval_board_options_need_the_rtl_engine(canonical_with_bad, capsys):
    """--board/--freq/--rate choose the RTL design; without --engine rtl (or --freq without --board)
    they are refused in one line before anything runs."""
    data = str(canonical_with_bad)
    rc, _, err = main(capsys, "eval", "--model", "binary-ice40", "--data", data, "--board", "icebreaker")
    assert rc == 2 and "--board needs --engine rtl" in err
    rc, _, err = main(capsys, "eval", "--model", "binary-ice40", "--data", data, "--engine", "rtl",
                      "--rate", "100")
    assert rc == 2 and "add --board" in err
    rc, _, err = main(capsys, "eval", "--model", "binary-ice40", "--data", data, "--engine", "rtl",
                      "--board", "nope")
    assert rc == 2 and "unknown board 'nope'" in err


def test_eval_board_simulates_the_folding_the_build_builds(canonical_with_bad, capsys, monkeypatch):
    """`eval --engine rtl --board B --freq F`: the rtl engine gets the folding that `kwsbnn build`
    picks for that board and clock (boards.build.board_folding), and the JSON gives the style, the
    clock and the inferences per second of the simulated design. The simulation itself is replaced
    here (tests/test_deploy_golden.py checks that the rtl engine simulates the folding it is given)."""
    from kwsbnn.boards.build import board_folding
    from kwsbnn.hw.cost import layer_costs
    from kwsbnn.sim.engine import RTL_OPTIONS
    from kwsbnn.sw import evaluate
    from kwsbnn.sw.export import deployable

    seen = {}

    def fake(model, data, **kw):
        seen["folding"], seen["engine"] = RTL_OPTIONS["folding"], kw["engine"]
        cycles = layer_costs(deployable("binary-ice40"), RTL_OPTIONS["folding"])["cycles_per_inference"]
        return {"accuracy": 1.0, "n": 1, "per_class": {}, "counts": {}, "model_cycles_per_inference": cycles}

    monkeypatch.setattr(evaluate, "evaluate", fake)
    monkeypatch.setitem(RTL_OPTIONS, "folding", None)
    rc, out, err = main(capsys, "eval", "--model", "binary-ice40", "--data", str(canonical_with_bad),
                        "--engine", "rtl", "--board", "icebreaker", "--freq", "12", "--json")
    assert rc == 0, err
    res = json.loads(out)
    want = board_folding(deployable("binary-ice40"), "icebreaker", 12.0)
    assert seen["engine"] == "rtl" and seen["folding"].to_dict() == want.to_dict()
    assert res["board"]["name"] == "icebreaker" and res["board"]["clock_mhz"] == 12.0
    assert res["board"]["style"] == "pipeline"
    cycles = layer_costs(deployable("binary-ice40"), want)["cycles_per_inference"]
    assert res["board"]["inferences_per_second"] == pytest.approx(12e6 / cycles)
