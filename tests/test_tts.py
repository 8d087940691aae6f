"""The synthesized demo clips: real speech from eSpeak NG, in a folder every --data option reads."""

import numpy as np

from kwsbnn.sw.data import CLASSES, SpeechCommands, read_wav
from kwsbnn.sw.tts import folder_digest, make_clip_folder, synthesize


def test_synthesize_is_a_centred_one_second_clip():
    x = synthesize("yes")
    assert x.shape == (16000,) and x.dtype == np.float32
    assert abs(np.abs(x).max() - 0.5) < 1e-3
    energy = np.abs(x) > 0.05
    first, last = np.nonzero(energy)[0][[0, -1]]
    assert 2000 < first < 8000 < last < 14000          # speech in the middle, quiet edges
    assert not np.array_equal(x, synthesize("no"))


def test_synthesis_does_not_depend_on_what_was_spoken_before():
    first = synthesize("yes", "en-us", 150, 50)
    synthesize("seven", "en", 170, 35)                  # eSpeak's statics would carry this over
    assert synthesize("yes", "en-us", 150, 50).tobytes() == first.tobytes()


def test_clip_folder_is_the_same_bytes_twice(tmp_path):
    kw = dict(voices=(("en-us", 150, 50), ("en", 170, 35)), unknown_words=("bed",), silence=2, seed=3)
    a = make_clip_folder(tmp_path / "a", **kw)
    synthesize("house")
    b = make_clip_folder(tmp_path / "b", **kw)
    assert folder_digest(a) == folder_digest(b)
    c = make_clip_folder(tmp_path / "c", **{**kw, "seed": 4})         # the seed draws the silence
    assert folder_digest(c) != folder_digest(a)


def test_clip_folder_remakes_clips_of_another_version(tmp_path):
    kw = dict(voices=(("en-us", 150, 50),), unknown_words=(), silence=1)
    out = make_clip_folder(tmp_path / "clips", **kw)
    digest = folder_digest(out)
    clip = out / "yes" / "0000e5e0_nohash_0.wav"
    clip.write_bytes(clip.read_bytes()[:-200] + bytes(200))      # a clip of an older generator
    (out / ".kwsbnn-clips.json").write_text("{}")
    assert folder_digest(make_clip_folder(out, **kw)) == digest


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


def test_a_voice_with_random_breath_is_the_same_in_another_process_a_second_later():
    import hashlib
    import subprocess
    import sys
    import time
    here = hashlib.sha256(synthesize("yes", "en-us+f3", 140, 70).tobytes()).hexdigest()
    time.sleep(1.1)                                     # eSpeak seeds its random numbers from time()
    code = ("import hashlib; from kwsbnn.sw.tts import synthesize; "
            "print(hashlib.sha256(synthesize('yes', 'en-us+f3', 140, 70).tobytes()).hexdigest())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == here, r.stderr
