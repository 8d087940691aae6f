"""Speech Commands on disk: WAV reading, layout detection, the train/validation/test splits.

Two layouts are understood (see :class:`SpeechCommands`):

- the full v0.02 archive: one folder per word, ``_background_noise_/``, ``validation_list.txt`` and
  ``testing_list.txt`` (without the lists, TensorFlow's hash-of-speaker split is used);
- the canonical test set: class folders ``_silence_/``, ``_unknown_/`` and the ten keywords, where
  ``_unknown_`` files are named ``<word>_<speaker>_nohash_<n>.wav``; everything is the test split.
  A folder holding only some of these class folders (e.g. just ``_silence_/``) is accepted too.

Silence (the full archive only) is made from the background-noise recordings. The recipe matches the
level of the canonical test set's silence clips, which are *peak-scaled*: a one-second crop of a
noise file is divided by the peak of the whole noise file and multiplied by a gain drawn uniformly
from 0..1 (so white-noise silence reaches full scale). :func:`render_silence` computes it.
Measured on 338 canonical silence clips: each is a crop of one noise file times a constant; that
constant times the file's peak spreads over 0..1 for white, pink, dishes and tap (0..0.83 for
dude_miaowing, 0..0.24 for exercise_bike). Clip peaks: 5/25/50/75/95% = 0.003/0.028/0.11/0.44/0.76
(RMS -66/-46/-34/-21/-12 dBFS); this recipe gives 0.005/0.049/0.22/0.46/0.86 (RMS -64/-42/-29/-21/-11
dBFS), whereas a plain ``crop * U(0, 1)`` of these quiet files (median crop peak 0.01..0.03) stays
far below the canonical levels.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kwsbnn.errors import KwsError

CLASSES = ["silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
KEYWORDS = CLASSES[2:]
SILENCE, UNKNOWN = 0, 1
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
SPLITS = ("train", "validation", "test")
NOISE_DIR = "_background_noise_"
CANONICAL_DIRS = {"_silence_": SILENCE, "_unknown_": UNKNOWN, **{w: i + 2 for i, w in enumerate(KEYWORDS)}}


class WavError(KwsError):
    """A WAV file that is not 16 kHz mono 16-bit PCM, or is empty, truncated or unreadable."""

    def __init__(self, path, reason: str, hint: str | None = None):
        super().__init__(f"{path}: {reason}", hint or "convert it to a 16 kHz mono 16-bit PCM WAV "
                                                      "(e.g. sox in.wav -r 16000 -c 1 -b 16 out.wav)")
        self.path = str(path)
        self.reason = reason


def _open_checked(path, f):
    """Open ``f`` (the file object of ``path``) as a WAV and check its format; return (wave, frames)."""
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise WavError(path, "empty file (0 bytes)")
    try:
        w = wave.open(f, "rb")
    except (wave.Error, EOFError) as e:
        raise WavError(path, f"not a readable WAV file ({e or 'truncated header'})") from None
    data_start = f.tell()  # wave.open stops right after the data chunk header
    rate, ch, width, comp = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype()
    if comp != "NONE":
        raise WavError(path, f"compressed WAV ({w.getcompname()}), expected PCM")
    if ch != 1:
        raise WavError(path, f"{ch} channels, expected mono", "mix it down to one channel at 16 kHz")
    if width != 2:
        raise WavError(path, f"{8 * width}-bit samples, expected 16-bit PCM",
                       "convert it to 16-bit PCM (sox in.wav -b 16 out.wav)")
    if rate != SAMPLE_RATE:
        raise WavError(path, f"sample rate {rate} Hz, expected {SAMPLE_RATE} Hz",
                       "resample it to 16 kHz mono")
    frames = w.getnframes()
    if frames == 0:
        raise WavError(path, "no audio samples")
    if data_start + 2 * frames > size:
        raise WavError(path, f"truncated: header promises {frames} samples, file holds "
                             f"{max(0, size - data_start) // 2}")
    return w, frames


def check_wav(path) -> int:
    """Validate the header of a WAV file without decoding it; return its number of samples."""
    try:
        with open(path, "rb") as f:
            w, frames = _open_checked(path, f)
            w.close()
            return frames
    except OSError as e:
        raise WavError(path, f"cannot read ({e.strerror or e})", "check that the file exists and is readable") from None


def read_wav(path) -> np.ndarray:
    """Read a 16 kHz mono 16-bit PCM WAV as float32 samples in [-1, 1) (sample / 32768), any length."""
    try:
        with open(path, "rb") as f:
            w, frames = _open_checked(path, f)
            data = w.readframes(frames)
            w.close()
    except OSError as e:
        raise WavError(path, f"cannot read ({e.strerror or e})", "check that the file exists and is readable") from None
    if len(data) != 2 * frames:
        raise WavError(path, f"truncated: header promises {frames} samples, file holds {len(data) // 2}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)


def fit_clip(x: np.ndarray, n: int = CLIP_SAMPLES) -> np.ndarray:
    """Pad with zeros at the end, or keep the first ``n`` samples (what TensorFlow's loader does)."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


@dataclass(frozen=True)
class Example:
    """One clip of a split. A file (``path``) or generated silence (``path`` None): the background
    file ``noise``, the crop start ``offset`` (samples) and ``gain`` (relative to the file's peak)."""
    path: str | None
    label: int
    noise: str | None = None
    offset: int = 0
    gain: float = 0.0

    def sort_key(self):
        return (self.label, self.path or "", self.noise or "", self.offset, self.gain)


def render_silence(noise: np.ndarray, offset: int, gain: float, peak: float | None = None) -> np.ndarray:
    """The silence clip ``noise[offset:offset+1 s] / peak(noise) * gain`` (float32, clipped to +-1)."""
    peak = float(np.abs(noise).max()) if peak is None else peak
    crop = fit_clip(noise[offset:offset + CLIP_SAMPLES])
    return np.clip(crop * np.float32(gain / max(peak, 1e-9)), -1.0, 1.0).astype(np.float32)


def _rng(seed: int, *parts) -> np.random.Generator:
    """A NumPy generator seeded from ``seed`` and a few labels (stable across runs and platforms)."""
    h = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _tf_which_set(rel: str, val_pct: float = 10.0, test_pct: float = 10.0) -> str:
    """TensorFlow's speech_commands split by a hash of the speaker id (used when lists are missing)."""
    name = re.sub(r"_nohash_.*$", "", os.path.basename(rel))
    h = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 2 ** 27
    pct = h * (100.0 / (2 ** 27 - 1))
    return "validation" if pct < val_pct else "test" if pct < val_pct + test_pct else "train"


class SpeechCommands:
    """A Speech Commands folder, scanned once (WAV headers checked, audio not decoded).

    ``split(name, epoch=0)`` gives the examples of ``train``, ``validation`` or ``test`` sorted by
    (label, path). For the full archive, following the TensorFlow/Honk recipe, each split holds all of
    its keyword clips, ``ceil(unknown_fraction * keywords)`` unknown clips drawn from that split's
    non-keyword words and ``ceil(silence_fraction * keywords)`` generated silence examples. The
    validation and test draws are fixed by ``seed``; the training unknown draw changes with ``epoch``
    (every training unknown clip is seen over the epochs, see ``pool``), and training silence is
    re-drawn by the augmenter anyway. ``train_unknown_fraction`` (default ``unknown_fraction``)
    sets the training split's share alone, so that validation and testing stay the standard ones.
    The canonical test set has only the test split (its own files, unbalanced).
    """

    def __init__(self, root, strict: bool = False, seed: int = 0,
                 silence_fraction: float = 0.1, unknown_fraction: float = 0.1,
                 train_unknown_fraction: float | None = None):
        self.root = Path(root)
        self.strict, self.seed = strict, seed
        self.silence_fraction, self.unknown_fraction = silence_fraction, unknown_fraction
        self.train_unknown_fraction = unknown_fraction if train_unknown_fraction is None else train_unknown_fraction
        self.bad_files: list[tuple[str, str]] = []
        self._noise: dict[str, np.ndarray] | None = None
        self._noise_files: dict[str, Path] = {}
        if not self.root.exists():
            raise KwsError(f"{self.root}: no such folder", "give the Speech Commands folder (the full "
                           "v0.02 archive or the canonical test set)")
        if not self.root.is_dir():
            raise KwsError(f"{self.root}: not a folder", "give the Speech Commands folder, not a file")
        subdirs = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if NOISE_DIR in subdirs or (any(w in subdirs for w in KEYWORDS) and
                                    not any(d in subdirs for d in ("_silence_", "_unknown_"))):
            self.layout = "archive"
            self._scan_archive(subdirs)
        elif any(d in subdirs for d in ("_silence_", "_unknown_")):
            self.layout = "canonical"
            self._scan_canonical(subdirs)
        else:
            what = "it is empty" if not any(self.root.iterdir()) else \
                f"it holds {', '.join(subdirs[:6]) or 'no folders'}{' ...' if len(subdirs) > 6 else ''}"
            raise KwsError(
                f"{self.root}: not a Speech Commands folder ({what})",
                "expected the full v0.02 archive (word folders such as yes/ and no/, _background_noise_/, "
                "validation_list.txt, testing_list.txt) or the canonical test set (_silence_/, "
                "_unknown_/ and the ten keyword folders)")

    # -- scanning ---------------------------------------------------------------------------------
    def _wavs(self, folder: Path) -> list[tuple[Path, int]]:
        """The valid WAV files of ``folder`` (sorted) with their lengths; bad ones go to bad_files."""
        out = []
        for p in sorted(folder.glob("*.wav")):
            try:
                out.append((p, check_wav(p)))
            except WavError as e:
                if self.strict:
                    raise
                self.bad_files.append((str(p), e.reason))
        return out

    def _scan_archive(self, subdirs):
        words = [d for d in subdirs if not d.startswith("_")]
        if not any(w in words for w in KEYWORDS):
            raise KwsError(f"{self.root}: no keyword folders (yes/, no/, ...) in this archive",
                           "give the root of the Speech Commands v0.02 archive")
        lists = {}
        for name, fn in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
            f = self.root / fn
            lists[name] = set(f.read_text().split()) if f.exists() else None
        self.split_source = "lists" if lists["validation"] is not None and lists["test"] is not None \
            else "hash"
        self._pool = {s: {"kw": [], "unk": []} for s in SPLITS}
        for word in words:
            label = CLASSES.index(word) if word in KEYWORDS else UNKNOWN
            for p, _ in self._wavs(self.root / word):
                rel = f"{word}/{p.name}"
                if self.split_source == "lists":
                    s = "validation" if rel in lists["validation"] else "test" if rel in lists["test"] \
                        else "train"
                else:
                    s = _tf_which_set(rel)
                self._pool[s]["kw" if label != UNKNOWN else "unk"].append(Example(str(p), label))
        if not any(self._pool[s]["kw"] for s in SPLITS):
            raise KwsError(f"{self.root}: the keyword folders hold no valid WAV files",
                           "check the download; bad files: "
                           + "; ".join(f"{p}: {r}" for p, r in self.bad_files[:3]))
        ndir = self.root / NOISE_DIR
        if ndir.is_dir():
            for p, n in self._wavs(ndir):
                if n >= CLIP_SAMPLES:
                    self._noise_files[p.name] = p
        if not self._noise_files and self.silence_fraction > 0:
            raise KwsError(f"{self.root}: no background-noise WAVs (at least 1 s long) in {NOISE_DIR}/",
                           "silence examples are made from them: restore the folder from the "
                           "archive (`kwsbnn data download`), or use the canonical test set layout")
        self._silence = {s: self._make_silence(s) for s in SPLITS}

    def _scan_canonical(self, subdirs):
        unknown = [d for d in subdirs if d not in CANONICAL_DIRS]
        if unknown:
            raise KwsError(f"{self.root}: folders {', '.join(unknown[:5])} do not belong to the canonical "
                           "test set layout",
                           "the canonical test set has only _silence_/, _unknown_/ and the ten keyword "
                           "folders; for the full archive include _background_noise_/")
        self.split_source = "canonical"
        self.missing_classes = [c for c in CANONICAL_DIRS if c not in subdirs]
        pat = re.compile(r"^[^_]+_[0-9a-f]+_nohash_\d+\.wav$")
        test = []
        for d in subdirs:
            for p, _ in self._wavs(self.root / d):
                if d == "_unknown_" and not pat.match(p.name):
                    reason = "name is not <word>_<speaker>_nohash_<n>.wav"
                    if self.strict:
                        raise KwsError(f"{p}: {reason}", "unknown clips of the canonical test set are "
                                       "named after their word and speaker")
                    self.bad_files.append((str(p), reason))
                    continue
                test.append(Example(str(p), CANONICAL_DIRS[d]))
        if not test:
            raise KwsError(f"{self.root}: the canonical test set folders hold no valid WAV files",
                           "check the download")
        self._pool = {s: {"kw": [], "unk": []} for s in SPLITS}
        self._pool["test"]["kw"] = test
        self._silence = {s: [] for s in SPLITS}

    # -- splits -----------------------------------------------------------------------------------
    def _make_silence(self, split: str) -> list[Example]:
        """Deterministic silence examples: random noise file, crop start and gain U(0, 1)."""
        n = math.ceil(self.silence_fraction * len(self._pool[split]["kw"]))
        if n == 0 or not self._noise_files:
            return []
        names = sorted(self._noise_files)
        lengths = {k: check_wav(self._noise_files[k]) for k in names}
        rng = _rng(self.seed, "silence", split)
        out = []
        for _ in range(n):
            k = names[int(rng.integers(len(names)))]
            out.append(Example(None, SILENCE, k, int(rng.integers(lengths[k] - CLIP_SAMPLES + 1)),
                               round(float(rng.uniform(0.0, 1.0)), 6)))
        return out

    def _check_split(self, name: str):
        if name not in SPLITS:
            raise KwsError(f"unknown split {name!r}", f"use one of {', '.join(SPLITS)}")
        if self.layout == "canonical" and name != "test":
            raise KwsError(f"{self.root}: the canonical test set has no {name} split",
                           "train on the full Speech Commands archive; use this folder for testing")

    def pool(self, name: str) -> list[Example]:
        """Every candidate clip of a split (all keyword and unknown files, plus its silence), sorted."""
        self._check_split(name)
        p = self._pool[name]
        return sorted(p["kw"] + p["unk"] + self._silence[name], key=Example.sort_key)

    def split(self, name: str, epoch: int = 0) -> list[Example]:
        """The balanced examples of split ``name``, sorted (the train unknown draw depends on epoch)."""
        self._check_split(name)
        p = self._pool[name]
        if self.layout == "canonical":
            return sorted(p["kw"], key=Example.sort_key)
        frac = self.train_unknown_fraction if name == "train" else self.unknown_fraction
        n_unk = min(len(p["unk"]), math.ceil(frac * len(p["kw"])))
        rng = _rng(self.seed, "unknown", name, epoch if name == "train" else 0)
        pick = sorted(rng.choice(len(p["unk"]), size=n_unk, replace=False).tolist()) if n_unk else []
        return sorted(p["kw"] + [p["unk"][i] for i in pick] + self._silence[name], key=Example.sort_key)

    def counts(self, name: str, epoch: int = 0) -> list[int]:
        """Examples per class of a split, in CLASSES order."""
        c = [0] * len(CLASSES)
        for e in self.split(name, epoch):
            c[e.label] += 1
        return c

    # -- audio ------------------------------------------------------------------------------------
    def noise_clips(self) -> dict[str, np.ndarray]:
        """The background-noise recordings by file name (float32, full length), loaded once."""
        if self._noise is None:
            self._noise = {k: read_wav(p) for k, p in sorted(self._noise_files.items())}
        return self._noise

    def noise_paths(self) -> dict[str, Path]:
        """The background-noise files by name (what :meth:`noise_clips` reads)."""
        return dict(self._noise_files)

    def waveform(self, ex: Example) -> np.ndarray:
        """One example as float32 [CLIP_SAMPLES] (files padded/cropped, silence rendered)."""
        if ex.path is None:
            noise = self.noise_clips()[ex.noise]
            return render_silence(noise, ex.offset, ex.gain)
        return fit_clip(read_wav(ex.path))


def load_waveforms(examples, ds: SpeechCommands) -> np.ndarray:
    """The waveforms of ``examples`` as float32 [N, CLIP_SAMPLES] (padded/cropped; silence rendered)."""
    out = np.zeros((len(examples), CLIP_SAMPLES), dtype=np.float32)
    peaks = {}
    for i, ex in enumerate(examples):
        if ex.path is None:
            noise = ds.noise_clips()[ex.noise]
            if ex.noise not in peaks:
                peaks[ex.noise] = float(np.abs(noise).max())
            out[i] = render_silence(noise, ex.offset, ex.gain, peaks[ex.noise])
        else:
            out[i] = fit_clip(read_wav(ex.path))
    return out


class DataUnion:
    """Several Speech Commands folders as one data set (``--data A,B``): the training split is the
    union of every folder's training split; validation and test splits are each folder's own lists,
    concatenated. Examples keep their file paths, so clip identity and feature caches are per file;
    every split is in folder order (the folders as given), each folder's part sorted as in
    :class:`SpeechCommands`. Silence examples and the noise that augmentation mixes in come from the
    first folder only (the folders after it add speech, and may lack ``_background_noise_/``)."""

    def __init__(self, folders: list[SpeechCommands]):
        self.parts = folders
        self.root = folders[0].root
        self.layout = folders[0].layout
        self.split_source = "+".join(f.split_source for f in folders)
        self.seed, self.strict = folders[0].seed, folders[0].strict
        self._noise_from = folders[0]

    @property
    def bad_files(self) -> list[tuple[str, str]]:
        return [b for f in self.parts for b in f.bad_files]

    def _each(self, name: str, fn) -> list[Example]:
        out, ok = [], False
        for f in self.parts:
            if f.layout == "canonical" and name != "test":
                continue                         # a test-only folder adds nothing to train/validation
            out += fn(f)
            ok = True
        if not ok:
            self.parts[0]._check_split(name)     # the folder's own error
        return out

    def pool(self, name: str) -> list[Example]:
        return self._each(name, lambda f: f.pool(name))

    def split(self, name: str, epoch: int = 0) -> list[Example]:
        return self._each(name, lambda f: f.split(name, epoch))

    def counts(self, name: str, epoch: int = 0) -> list[int]:
        c = [0] * len(CLASSES)
        for e in self.split(name, epoch):
            c[e.label] += 1
        return c

    def noise_clips(self) -> dict[str, np.ndarray]:
        return self._noise_from.noise_clips()

    def noise_paths(self) -> dict[str, Path]:
        return self._noise_from.noise_paths()

    def waveform(self, ex: Example) -> np.ndarray:
        return self._noise_from.waveform(ex)


def data_folders(data) -> list[str]:
    """The folders of a ``--data`` value: one path, several joined by commas, or a list."""
    items = data if isinstance(data, (list, tuple)) else str(data).split(",")
    out = [str(p).strip() for p in items if str(p).strip()]
    if not out:
        raise KwsError("no data folder given", "pass --data DIR (several: --data DIR1,DIR2)")
    return out


def open_data(data, **kw) -> SpeechCommands | DataUnion:
    """The data set of a ``--data`` value (see :func:`data_folders`): a :class:`SpeechCommands` for
    one folder, a :class:`DataUnion` for several (the folders after the first get no silence
    examples of their own and may lack ``_background_noise_/``)."""
    folders = data_folders(data)
    if len(folders) == 1:
        return SpeechCommands(folders[0], **kw)
    parts = [SpeechCommands(folders[0], **kw)]
    parts += [SpeechCommands(p, **{**kw, "silence_fraction": 0.0}) for p in folders[1:]]
    return DataUnion(parts)
