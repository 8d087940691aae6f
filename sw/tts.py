"""Keyword clips made by a speech synthesizer: the demo's own test set, no downloaded recordings.

The synthesizer is eSpeak NG, loaded from the ``espeakng-loader`` wheel (PyPI; the library and its
voice data ship inside it) through ctypes. :func:`synthesize` speaks one word with a voice, rate and
pitch and returns a 1-second 16 kHz float clip (word centred, resampled from 22,050 Hz by FFT, peak
normalised to ``peak``).

Determinism: eSpeak NG keeps state between utterances in function-level statics (the pitch
"flutter" table index in wavegen.c's AdvanceParameters, the automatic gain control, the cycle
count), which no API call resets: the same word came out different depending on what was spoken
before it in the process. And its initialisation seeds its random numbers (the breath noise of
voice variants such as ``en-us+f3``) from the clock, so those voices changed from run to run. Each
call therefore loads the library afresh (dlopen, initialise, seed with :data:`RAND_SEED`, speak,
terminate, dlclose), so a clip is a function of (word, voice, rate, pitch) alone: same arguments,
same bytes.
:func:`make_clip_folder` writes a folder in the layout of the canonical
Speech Commands test set (the ten keyword folders, ``_unknown_/`` with ``<word>_<speaker>_nohash_<n>
.wav`` names, ``_silence_/`` with low seeded noise), which every ``--data`` option reads.

Synthesized speech is not the recorded speech the models were trained on: accuracy on these clips
says how a model transfers to a new voice, and the bit-exact agreement of the engines is the point.
"""

import ctypes
import contextlib
import hashlib
import json
import threading
import wave
from pathlib import Path

import numpy as np

from kwsbnn.errors import KwsError

from .data import CLIP_SAMPLES, KEYWORDS, SAMPLE_RATE

# (voice, words per minute, pitch 0..99): the "speakers" of the demo set.
VOICES = (("en-us", 150, 50), ("en", 170, 35), ("en-us+f3", 140, 70), ("en-gb-x-rp", 160, 45))
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "house", "tree", "wow", "happy")
_LOCK = threading.Lock()
CLIPS_VERSION = 3            # bump when the clips change: a folder made by another version is remade
STAMP = ".kwsbnn-clips.json"
RAND_SEED = 1                # eSpeak NG's own random numbers (breath noise of voice variants such as +f3)


@contextlib.contextmanager
def _fresh_lib():
    """eSpeak NG loaded afresh (its static state zeroed), initialised; unloaded on exit."""
    try:
        import espeakng_loader
    except ImportError:
        raise KwsError("the speech synthesizer (espeakng-loader) is not installed",
                       "reinstall kwsbnn: `make venv` or `pip install -e .`") from None
    import _ctypes
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    try:
        lib.espeak_Initialize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # synchronous
        if rate <= 0:
            raise KwsError("eSpeak NG failed to start", "reinstall espeakng-loader")
        lib.espeak_ng_SetRandSeed(ctypes.c_long(RAND_SEED))   # initialisation seeds it from the clock
        try:
            yield lib, rate
        finally:
            lib.espeak_Terminate()
    finally:
        close = getattr(_ctypes, "dlclose", None)       # POSIX; the last reference unloads it
        if close is not None:
            close(lib._handle)


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """FFT resampling (band-limited; the signal is short and zero-padded)."""
    n_out = int(round(len(x) * rate_out / rate_in))
    spec = np.fft.rfft(x)
    keep = n_out // 2 + 1
    out = np.zeros(keep, dtype=complex)
    m = min(keep, len(spec))
    out[:m] = spec[:m]
    return np.fft.irfft(out, n_out) * (n_out / len(x))


def synthesize(word: str, voice: str = "en-us", wpm: int = 150, pitch: int = 50,
               peak: float = 0.5) -> np.ndarray:
    """One spoken ``word`` as a 1 s, 16 kHz float32 clip, centred, peak ``peak``."""
    chunks = []
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def cb(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32))
        return 0

    callback = cb_type(cb)
    with _LOCK, _fresh_lib() as (lib, rate):
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise KwsError(f"eSpeak NG has no voice {voice!r}", "use a voice such as en-us or en")
        lib.espeak_SetParameter(1, int(wpm), 0)      # espeakRATE
        lib.espeak_SetParameter(3, int(pitch), 0)    # espeakPITCH
        text = word.encode() + b"\0"
        lib.espeak_Synth(text, len(text), 0, 1, 0, 0, None, None)
        lib.espeak_Synchronize()
    if not chunks:
        raise KwsError(f"eSpeak NG produced no sound for {word!r}")
    x = np.concatenate(chunks) / 32768.0
    x = _resample(x, rate, SAMPLE_RATE)
    nz = np.nonzero(np.abs(x) > 0.02 * np.abs(x).max())[0]
    x = x[nz[0]:nz[-1] + 1][:CLIP_SAMPLES]
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    start = (CLIP_SAMPLES - len(x)) // 2
    out[start:start + len(x)] = x
    return (out * (peak / max(np.abs(out).max(), 1e-9))).astype(np.float32)


def _write_wav(path: Path, x: np.ndarray) -> None:
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)


def make_clip_folder(out, voices=VOICES, unknown_words=UNKNOWN_WORDS, silence: int = 4,
                     seed: int = 0) -> Path:
    """Write the synthesized test set to ``out`` (canonical test-set layout); returns ``out``.

    Every keyword in every voice, ``unknown_words`` spread over the voices, ``silence`` clips of
    low white noise (seeded). The folder is a cache: its clips are kept while its stamp file
    (``.kwsbnn-clips.json``: the generator's version and arguments) matches, else all are remade.
    """
    from kwsbnn.paths import write_atomic

    out = Path(out)
    params = {"version": CLIPS_VERSION, "voices": [list(v) for v in voices],
              "unknown_words": list(unknown_words), "silence": silence, "seed": seed}
    stamp = out / STAMP
    try:
        keep = json.loads(stamp.read_text()) == params
    except (OSError, ValueError):
        keep = False
    rng = np.random.default_rng(seed)
    for folder in (*KEYWORDS, "_unknown_", "_silence_"):
        (out / folder).mkdir(parents=True, exist_ok=True)

    def put(p: Path, make):
        if not (keep and p.exists()):
            _write_wav(p, make())

    for v, (voice, wpm, pitch) in enumerate(voices):
        speaker = f"{0xE5E0 + v:08x}"
        for word in KEYWORDS:
            put(out / word / f"{speaker}_nohash_0.wav", lambda: synthesize(word, voice, wpm, pitch))
    for i, word in enumerate(unknown_words):
        voice, wpm, pitch = voices[i % len(voices)]
        put(out / "_unknown_" / f"{word}_{0xE5E0 + i % len(voices):08x}_nohash_0.wav",
            lambda: synthesize(word, voice, wpm, pitch))
    for i in range(silence):
        noise = rng.normal(0, 1, CLIP_SAMPLES) * float(rng.uniform(0.001, 0.01))
        put(out / "_silence_" / f"silence_{i}.wav", lambda: noise)
    write_atomic(stamp, json.dumps(params) + "\n")
    return out


def folder_digest(folder) -> str:
    """SHA-256 over the WAV files of a clip folder (relative names and bytes): equal folders, equal digests."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*.wav")):
        h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
