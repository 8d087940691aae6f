"""The synthesized demo clips: real speech from eSpeak NG, in a folder every --data option reads."""

import numpy as np

from kwsbnn.sw.data import CLASSES, SpeechCommands, read_wav
from kwsbnn.sw.tts import make_clip_folder, synthesize


def test_synthesize_is_a_centred_one_second_clip():
    x = synthesize("yes")
    assert x.shape == (16000,) and x.dtype == np.float32
    assert abs(np.abs(x).max() - 0.5) < 1e-3
    energy = np.abs(x) > 0.05
    first, last = np.nonzero(energy)[0][[0, -1]]
    assert 2000 < first < 8000 < last < 14000          # speech in the middle, quiet edges
    assert not np.array_equal(x, synthesize("no"))
    again = synthesize("yes")                           # eSpeak NG varies by a few samples
    assert abs(int(np.count_nonzero(again)) - int(np.count_nonzero(x))) < 100


def test_clip_folder_reads_as_canonical_test_set(tmp_path):
    out = make_clip_folder(tmp_path / "clips", voices=(("en-us", 150, 50), ("en", 170, 35)),
                           unknown_words=("bed", "cat"), silence=2)
    ds = SpeechCommands(out)
    assert ds.layout == "canonical" and not ds.bad_files
    test = ds.split("test")
    assert len(test) == 2 * 10 + 2 + 2
    counts = np.bincount([e.label for e in test], minlength=len(CLASSES))
    assert counts[CLASSES.index("yes")] == 2 and counts[CLASSES.index("silence")] == 2
    x = read_wav(next((out / "stop").glob("*.wav")))
    assert len(x) == 16000 and np.abs(x).max() > 0.4
