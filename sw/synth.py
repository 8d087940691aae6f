"""A synthetic keyword corpus: every Speech Commands word spoken by many eSpeak NG voices.

:func:`make_corpus` writes a folder in the layout of the full Speech Commands archive (one folder per
word, empty ``validation_list.txt`` and ``testing_list.txt``: every clip is for training), so that
``--data REAL,SYNTH`` adds it to a real folder's training split (:func:`kwsbnn.sw.data.open_data`).
A "speaker" is one eSpeak NG voice (a language variant such as ``en-gb-scotland``, optionally with a
voice-quality variant such as ``+m3`` or ``+f2``) with its own speaking rate, pitch and level, drawn
from a generator seeded by ``(seed, voice)``: the same seed gives the same speakers, and each clip's
file name is its speaker's id. Existing files are kept, so an interrupted run resumes where it stopped.

The synthesizer itself is :func:`kwsbnn.sw.tts.synthesize`; clips are 1 s, 16 kHz, word centred.
Synthetic voices are not recorded speech: this corpus helps (or not) as extra training data, as
pretraining or as distillation input, and the study measures which (docs/studies/binary-accuracy.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kwsbnn.errors import KwsError

# The 35 words of Speech Commands v0.02.
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
         "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
         "backward", "forward", "follow", "learn", "visual")
LANGUAGES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan",
             "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5",
            "+klatt", "+klatt2", "+klatt3")


def default_voices() -> list[str]:
    """Every language with every variant: 128 voices."""
    return [lang + v for lang in LANGUAGES for v in VARIANTS]


def speaker(voice: str, seed: int) -> tuple[str, int, int, float]:
    """``(speaker id, words per minute, pitch, peak)`` of a voice for a seed (deterministic)."""
    h = hashlib.sha256(f"{seed}:{voice}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(h[:8], "little"))
    wpm = int(rng.integers(110, 211))
    pitch = int(rng.integers(15, 86))
    peak = float(np.round(rng.uniform(0.15, 0.9), 3))
    return h[8:12].hex(), wpm, pitch, peak


def make_corpus(out, words=WORDS, voices=None, seed: int = 0, progress=None) -> dict:
    """Write the corpus into ``out``; returns counts (``written``, ``kept``, ``voices``, ``words``).

    ``progress(n)`` is called after each clip. Raises :class:`KwsError` for an unknown word or voice.
    """
    from .tts import _write_wav, synthesize
    out = Path(out)
    voices = list(voices) if voices else default_voices()
    bad = [w for w in words if not w.isalpha()]
    if bad:
        raise KwsError(f"words {bad}: a word is letters only", "e.g. --words yes,no,up")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("validation_list.txt", "testing_list.txt"):
        if not (out / name).exists():
            (out / name).write_text("")
    written = kept = 0
    for voice in voices:
        spk, wpm, pitch, peak = speaker(voice, seed)
        for word in words:
            path = out / word / f"{spk}_nohash_0.wav"
            if path.exists():
                kept += 1
            else:
                path.parent.mkdir(exist_ok=True)
                _write_wav(path, synthesize(word, voice, wpm, pitch, peak))
                written += 1
            if progress:
                progress(1)
    (out / "VOICES.txt").write_text("".join(
        f"{speaker(v, seed)[0]} {v} wpm={speaker(v, seed)[1]} pitch={speaker(v, seed)[2]} "
        f"peak={speaker(v, seed)[3]}\n" for v in voices))
    return {"out": str(out), "written": written, "kept": kept, "voices": len(voices), "words": len(words),
            "clips": len(voices) * len(words)}
