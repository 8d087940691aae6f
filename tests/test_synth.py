"""`kwsbnn synth`: the synthetic keyword corpus (eSpeak NG voices) in the full-archive layout."""

import pytest

from kwsbnn.cli import main
from kwsbnn.errors import KwsError
from kwsbnn.sw.data import SpeechCommands, open_data
from kwsbnn.sw.synth import default_voices, make_corpus, speaker


def test_speakers_are_seeded_and_distinct():
    voices = default_voices()
    assert len(voices) == len(set(voices)) == 128
    assert speaker("en-us", 0) == speaker("en-us", 0)
    assert speaker("en-us", 0) != speaker("en-us", 1)
    ids = {speaker(v, 0)[0] for v in voices}
    assert len(ids) == len(voices)
    for v in voices[:10]:
        _, wpm, pitch, peak = speaker(v, 0)
        assert 110 <= wpm <= 210 and 15 <= pitch <= 85 and 0.15 <= peak <= 0.9


def test_corpus_layout_resume_and_use_as_training_data(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--words", "yes,no,bed", "--voices", "en-us,en+f2",
                 "--json"]) == 0
    assert '"written": 6' in capsys.readouterr().out
    res = make_corpus(out, ["yes", "no", "bed"], ["en-us", "en+f2"])
    assert (res["written"], res["kept"]) == (0, 6)                     # resumed: nothing redone
    spk = speaker("en+f2", 0)[0]
    assert (out / "yes" / f"{spk}_nohash_0.wav").is_file()
    assert (out / "testing_list.txt").read_text() == ""
    ds = SpeechCommands(out, silence_fraction=0.0)
    assert len(ds.split("train")) == 5 and ds.pool("test") == []     # 4 keywords + 1 of 2 unknown
    # beside a real folder: training only
    from fixtures import make_speech_commands
    real = make_speech_commands(tmp_path / "real").root
    both = open_data(f"{real},{out}")
    assert both.split("test") == SpeechCommands(real).split("test")
    assert len(both.split("train", 0)) == len(SpeechCommands(real).split("train", 0)) + 5


def test_bad_word_is_refused(tmp_path):
    with pytest.raises(KwsError, match="letters"):
        make_corpus(tmp_path, ["yes!"], ["en-us"])
