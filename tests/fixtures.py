"""Synthetic Speech Commands folders for tests (no real data needed).

Under pytest, ``tests/`` is on ``sys.path``: ``from fixtures import make_speech_commands``.

Each word is a tone burst at its own frequency (``word_freq``), ~0.5 s long at a random onset, shifted
slightly per speaker, with a little noise: easy to tell apart, so a tiny model can learn it.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN_WORDS = ["bed", "cat", "house"]
RATE = 16000


def write_wav(path, samples, rate: int = RATE, channels: int = 1, sampwidth: int = 2) -> Path:
    """Write float samples in [-1, 1] (shape [n] or [n, channels]) as a PCM WAV; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    if sampwidth == 1:
        data = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif sampwidth == 2:
        data = np.round(x * 32767).astype("<i2").tobytes()
    elif sampwidth == 4:
        data = np.round(x * 2147483647).astype("<i4").tobytes()
    else:
        raise ValueError(sampwidth)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def word_freq(word: str, words=None) -> float:
    """The tone of a word: keywords at 300 Hz * 1.25^i, other words above them."""
    words = list(words) if words is not None else KEYWORDS + UNKNOWN_WORDS
    i = words.index(word) if word in words else len(words) + sum(map(ord, word)) % 7
    return 300.0 * 1.25 ** i


def tone_clip(freq: float, rng: np.random.Generator, samples: int = RATE, amp: float = 0.5,
              noise: float = 0.01) -> np.ndarray:
    """A Hann-windowed 0.5 s tone burst at a random onset, plus white noise, ``samples`` long."""
    x = rng.normal(0.0, noise, samples)
    n = min(samples, RATE // 2)
    start = int(rng.integers(0, samples - n + 1))
    t = np.arange(n) / RATE
    x[start:start + n] += amp * np.hanning(n) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return x


@dataclass
class FixtureInfo:
    """What :func:`make_speech_commands` wrote: the root and per-split lists of ``word/file.wav``."""
    root: Path
    words: list[str]
    speakers: list[str]
    files: dict[str, list[str]] = field(default_factory=dict)
    noise: list[str] = field(default_factory=list)


def make_speech_commands(root, keywords=KEYWORDS, unknown_words=UNKNOWN_WORDS, speakers: int = 6,
                         clips_per_speaker: int = 1, val_speakers: int = 1, test_speakers: int = 1,
                         noise_files: int = 2, noise_seconds: float = 3.0, lists: bool = True,
                         seed: int = 0, short_every: int = 0) -> FixtureInfo:
    """Write a full-archive-layout folder: ``<word>/<speaker>_nohash_<n>.wav`` for every word,
    speaker and clip, ``_background_noise_/noise<k>.wav`` (white noise at different levels, the first
    at peak 0.01 like the real white_noise.wav) and, with ``lists``, ``validation_list.txt`` and
    ``testing_list.txt`` (the first ``val_speakers`` speakers, then ``test_speakers``; the rest train).
    ``short_every=k`` makes every k-th clip 0.8 s long (real archives have short clips)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    words = list(keywords) + list(unknown_words)
    spk = [f"{(0x1234567 * (i + 1) + seed) & 0xFFFFFFFF:08x}" for i in range(speakers)]
    split_of = {s: "validation" if i < val_speakers else "test" if i < val_speakers + test_speakers
                else "train" for i, s in enumerate(spk)}
    info = FixtureInfo(root, words, spk, {"train": [], "validation": [], "test": []})
    count = 0
    for word in words:
        f0 = word_freq(word, words)
        for si, s in enumerate(spk):
            for n in range(clips_per_speaker):
                count += 1
                samples = int(0.8 * RATE) if short_every and count % short_every == 0 else RATE
                rel = f"{word}/{s}_nohash_{n}.wav"
                write_wav(root / rel, tone_clip(f0 * (1 + 0.02 * (si % 3 - 1)), rng, samples))
                info.files[split_of[s]].append(rel)
    for k in range(noise_files):
        name = f"noise{k}.wav"
        x = rng.normal(0.0, 1.0, int(noise_seconds * RATE))
        write_wav(root / "_background_noise_" / name, x / np.abs(x).max() * (0.01 * 3 ** k))
        info.noise.append(name)
    if lists:
        (root / "validation_list.txt").write_text("".join(f + "\n" for f in info.files["validation"]))
        (root / "testing_list.txt").write_text("".join(f + "\n" for f in info.files["test"]))
    return info


def make_canonical_test_set(root, clips_per_class: int = 3, keywords=KEYWORDS,
                            unknown_words=UNKNOWN_WORDS, seed: int = 0) -> Path:
    """Write a canonical-test-set-layout folder: ``_silence_/``, ``_unknown_/`` (files named
    ``<word>_<speaker>_nohash_<n>.wav``) and one folder per keyword."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    words = list(keywords) + list(unknown_words)
    for i in range(clips_per_class):
        spk = f"{0xabc000 + i:08x}"
        write_wav(root / "_silence_" / f"{i}.wav", rng.normal(0, 0.1, RATE).clip(-1, 1))
        uw = unknown_words[i % len(unknown_words)]
        write_wav(root / "_unknown_" / f"{uw}_{spk}_nohash_0.wav", tone_clip(word_freq(uw, words), rng))
        for w in keywords:
            write_wav(root / w / f"{spk}_nohash_0.wav", tone_clip(word_freq(w, words), rng))
    return root
