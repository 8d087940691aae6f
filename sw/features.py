"""Input features: log-mel energies or MFCCs of 1 s clips, their int8 quantizer, and a disk cache.

Pipeline (:func:`compute`), all float32 in torch:

1. ``torch.stft`` with a periodic Hann window of ``win_ms`` (400 samples at 25 ms), hop ``hop_ms``
   (160 samples), ``n_fft`` 512, ``center=True`` with reflect padding: a clip of S samples gives
   ``1 + S // hop`` frames (101 for one second; :attr:`FeatureConfig.frames`).
2. Power spectrum ``|X|^2`` times the HTK-mel triangular filterbank (:func:`mel_filterbank`).
3. Natural log with a floor: ``log(mel + LOG_FLOOR)``.
4. ``mfcc``: the orthonormal DCT-II over the mel axis, first ``n_coeffs`` coefficients
   (:func:`dct_matrix`); ``logmel``: the log energies themselves (``n_coeffs`` is ignored).

The result is ``[N, T, F]`` (time, then coefficient), the layout the integer network reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from kwsbnn.errors import KwsError
from kwsbnn.paths import cache_dir, write_atomic

LOG_FLOOR = 1e-6
FEATURE_VERSION = 2  # bump when compute() changes; part of FeatureConfig.key()
# 2: the filterbank and DCT products in a fixed order (ordered_product), not torch.matmul


@dataclass(frozen=True)
class FeatureConfig:
    """Feature settings. ``frames`` is the number of frames of a 1 s clip (101 with the defaults)."""
    kind: str = "mfcc"
    n_mels: int = 40
    n_coeffs: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    sample_rate: int = 16000
    f_min: float = 20.0
    f_max: float = 7600.0
    n_fft: int = 512

    def __post_init__(self):
        if self.kind not in ("mfcc", "logmel"):
            raise KwsError(f"unknown feature kind {self.kind!r}", "use 'mfcc' or 'logmel'")
        if self.kind == "mfcc" and not 1 <= self.n_coeffs <= self.n_mels:
            raise KwsError(f"n_coeffs={self.n_coeffs} must be between 1 and n_mels={self.n_mels}",
                           "MFCCs are a DCT of the mel energies: set n_coeffs <= n_mels")
        if self.win_length > self.n_fft:
            raise KwsError(f"window of {self.win_length} samples is longer than n_fft={self.n_fft}",
                           "raise n_fft or shorten win_ms")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise KwsError(f"mel range {self.f_min}..{self.f_max} Hz is not inside 0..Nyquist")

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_features(self) -> int:
        """F, the coefficients per frame."""
        return self.n_coeffs if self.kind == "mfcc" else self.n_mels

    def frames_for(self, samples: int) -> int:
        """T for a clip of ``samples`` samples (centred frames)."""
        return 1 + samples // self.hop_length

    @property
    def frames(self) -> int:
        """T for a one-second clip."""
        return self.frames_for(self.sample_rate)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(**d)

    def key(self) -> str:
        """A short stable hash of the settings (and of the feature code version)."""
        blob = json.dumps({"v": FEATURE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: FeatureConfig) -> torch.Tensor:
    """Triangular filters ``[n_mels, n_fft//2 + 1]`` (float32, unnormalized, peak 1).

    ``n_mels + 2`` points equally spaced on the HTK mel scale from f_min to f_max give each filter's
    lower edge, centre and upper edge (in Hz); the weight of FFT bin k (frequency k * sr / n_fft) is
    the triangle ``max(0, min((f - lo) / (c - lo), (hi - f) / (hi - c)))``.
    """
    return _triangles(torch.from_numpy(_mel_points(cfg))[None, :], cfg)[0]


def _mel_points(cfg: FeatureConfig) -> np.ndarray:
    """The ``n_mels + 2`` filter edges in Hz, equally spaced on the HTK mel scale (float64)."""
    return mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))


def _triangles(pts: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Triangular filters ``[N, n_mels, n_fft//2 + 1]`` (float32) from edges ``pts`` ``[N, n_mels + 2]``
    in Hz (float64): filter m rises from ``pts[m]`` to ``pts[m + 1]`` and falls to ``pts[m + 2]``."""
    freqs = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64) * cfg.sample_rate / cfg.n_fft
    lo, c, hi = pts[:, :-2, None], pts[:, 1:-1, None], pts[:, 2:, None]
    up = (freqs[None, None, :] - lo) / (c - lo)
    down = (hi - freqs[None, None, :]) / (hi - c)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II ``[n_out, n_in]``: ``D[k, n] = s_k cos(pi k (2n + 1) / (2 n_in))`` with
    ``s_0 = sqrt(1 / n_in)`` and ``s_k = sqrt(2 / n_in)``; ``y = D @ x``."""
    n = np.arange(n_in)[None, :]
    k = np.arange(n_out)[:, None]
    d = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    d[0] /= math.sqrt(2.0)
    return torch.from_numpy(d).float()


def vtlp_filterbank(cfg: FeatureConfig, warp: torch.Tensor) -> torch.Tensor:
    """Per-clip mel filterbanks ``[N, n_mels, n_fft//2 + 1]`` under vocal-tract-length perturbation
    (Jaitly and Hinton 2013): every filter's edges and centre move through the piecewise-linear warp
    ``f -> a f`` up to ``f0 = 0.8 * nyquist / max(a, 1)``, then linearly to ``nyquist -> nyquist``
    (monotonic, so the filters stay ordered). ``a = 1`` gives :func:`mel_filterbank` exactly."""
    nyq = cfg.sample_rate / 2
    a = torch.as_tensor(warp, dtype=torch.float64).reshape(-1, 1)
    pts = torch.from_numpy(_mel_points(cfg))[None, :]
    f0 = 0.8 * nyq / torch.clamp(a, min=1.0)
    high = a * f0 + (nyq - a * f0) * (pts - f0) / (nyq - f0)
    return _triangles(torch.where(pts <= f0, a * pts, high), cfg)


def sparse_rows(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cols [M, L], w [M, L])``: each row's nonzero weights of ``weights`` ``[M, K]`` and their
    columns, in increasing column order, padded with zero weights (on column 0) to the longest row."""
    nz = [torch.nonzero(r).flatten() for r in weights]
    width = max([1, *map(len, nz)])
    cols = torch.zeros(len(nz), width, dtype=torch.long)
    w = torch.zeros(len(nz), width, dtype=weights.dtype)
    for m, n in enumerate(nz):
        cols[m, :len(n)], w[m, :len(n)] = n, weights[m, n]
    return cols, w


def ordered_product(rows: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``W @ x`` over ``x``'s second-last axis (``[..., K, T] -> [..., M, T]``) with ``rows =
    sparse_rows(W)``, summed term by term in increasing column order, each product and sum rounded
    once (float32 ``W`` and ``x``; ``x`` finite).

    Every output element is the same sequence of IEEE operations whatever the shape of ``x``, so a
    frame's features do not depend on how many frames or clips are computed with it, nor on the
    CPU: ``torch.matmul`` picks its kernel (and summation order) by shape and instruction set (on
    one AVX-512 CPU fewer than 16 columns round differently than 16 or more; on an AVX2 one the
    limit was 8). A zero weight adds an exact zero (``x`` finite), so skipping it changes nothing.
    Cost: L (the longest row: 30 filterbank bins, 40 DCT inputs) multiply-adds over ``[..., M, T]``;
    :func:`compute` takes about twice as long as with ``torch.matmul`` (1.3 s against 0.7 s for 512
    one-second clips on one core): once per clip where the features are cached, every batch where
    training augments the waveform (speed, reverberation, VTLP)."""
    cols, w = rows
    acc = w[:, :1] * x[..., cols[:, 0], :]
    for j in range(1, cols.shape[1]):
        acc = acc + w[:, j, None] * x[..., cols[:, j], :]
    return acc


_CONSTS: dict = {}


def _consts(cfg: FeatureConfig):
    """Window, filterbank and DCT (as :func:`sparse_rows`) for ``cfg`` (memoized)."""
    if cfg not in _CONSTS:
        _CONSTS[cfg] = (torch.hann_window(cfg.win_length), sparse_rows(mel_filterbank(cfg)),
                        sparse_rows(dct_matrix(cfg.n_mels, cfg.n_coeffs)) if cfg.kind == "mfcc" else None)
    return _CONSTS[cfg]


def _power_to_features(power: torch.Tensor, fb, dct) -> torch.Tensor:
    """Log-mel (and DCT) features ``[N, T, F]`` of power spectra ``[N, bins, T]``; ``fb``: the
    filterbank as :func:`sparse_rows`, or per-clip filterbanks ``[N, n_mels, bins]`` (VTLP)."""
    if isinstance(fb, tuple):
        mel = ordered_product(fb, power)                          # [N, n_mels, T]
    else:
        mel = torch.stack([ordered_product(sparse_rows(f), p[None])[0] for f, p in zip(fb, power)])
    feats = torch.log(mel + LOG_FLOOR)
    if dct is not None:
        feats = ordered_product(dct, feats)                       # [N, n_coeffs, T]
    return feats.transpose(1, 2).contiguous()


def compute(waves: torch.Tensor, cfg: FeatureConfig, warp: torch.Tensor | None = None) -> torch.Tensor:
    """Features ``[N, T, F]`` float32 of waveforms ``[N, S]`` (or ``[S]`` -> ``[T, F]``); ``warp``
    (``[N]``, training only) gives each clip its own VTLP factor (:func:`vtlp_filterbank`)."""
    waves = torch.as_tensor(waves, dtype=torch.float32)
    single = waves.dim() == 1
    if single:
        waves = waves[None]
    window, fb, dct = _consts(cfg)
    spec = torch.stft(waves, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                      window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()          # [N, bins, T]
    if warp is not None:
        fb = vtlp_filterbank(cfg, warp)                       # [N, n_mels, bins]
    feats = _power_to_features(power, fb, dct)
    return feats[0] if single else feats


class FeatureQuantizer:
    """Per-coefficient int8 quantizer: ``q = clamp(round_half_even((x - offset[f]) / scale[f]), -127, 127)``.

    Computed in float32 (offset and scale are rounded to float32 when stored), exactly as in
    docs/integer-network.md. :meth:`fit` sets ``offset`` to the mean of each coefficient and
    ``scale`` so that a fraction ``coverage`` of ``|x - offset|`` is within 127 steps.
    """

    def __init__(self, offset, scale):
        self.offset = torch.as_tensor(np.asarray(offset, dtype=np.float32))
        self.scale = torch.as_tensor(np.asarray(scale, dtype=np.float32))
        if self.offset.shape != self.scale.shape or self.offset.dim() != 1:
            raise KwsError("feature quantizer: offset and scale must be equal-length vectors")
        if not bool(torch.all(self.scale > 0)):
            raise KwsError("feature quantizer: every scale must be positive")

    @classmethod
    def fit(cls, feats: torch.Tensor, coverage: float = 0.999, max_values: int = 2_000_000,
            seed: int = 0) -> "FeatureQuantizer":
        """Fit on training features ``[N, T, F]`` (at most ``max_values`` rows sampled per coefficient)."""
        x = torch.as_tensor(feats, dtype=torch.float32).reshape(-1, feats.shape[-1]).numpy()
        if x.shape[0] > max_values:
            x = x[np.random.default_rng(seed).choice(x.shape[0], max_values, replace=False)]
        offset = x.astype(np.float64).mean(axis=0)
        spread = np.quantile(np.abs(x - offset), coverage, axis=0)
        scale = np.maximum(spread / 127.0, 1e-6)
        return cls(offset.astype(np.float32), scale.astype(np.float32))

    @property
    def n_features(self) -> int:
        return int(self.offset.numel())

    def quantize(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """int8 values of features ``[..., F]`` (as ``dtype``: float32 for training, or torch.int8)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        q = torch.clamp(torch.round((x - self.offset) / self.scale), -127, 127)
        return q.to(dtype)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(q, dtype=torch.float32) * self.scale + self.offset

    def to_dict(self) -> dict:
        """JSON-safe: lists of floats (float32 values written exactly as Python floats)."""
        return {"offset": [float(v) for v in self.offset.tolist()],
                "scale": [float(v) for v in self.scale.tolist()]}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureQuantizer":
        return cls(d["offset"], d["scale"])


class StreamFeatures:
    """Features frame by frame from a stream of samples (a live input, or a WAV sent to a board
    one 10 ms hop at a time), equal bit for bit to :func:`compute` of the whole stream.

    :meth:`push` takes any number of samples and returns the frames ``[F]`` (float32) they
    complete; :meth:`end` returns the frames that need the stream's end (:func:`compute` pads
    both ends by reflection, as here). Frame ``t`` is centred on sample ``t * hop`` and needs the
    samples up to ``t * hop + n_fft / 2``: it comes out once they are in, or at :meth:`end`.

    The frames a call completes are computed together by the same calls as :func:`compute`
    (``torch.stft`` without centring on the padded samples, then :func:`ordered_product`'s
    filterbank and DCT products, whose rounding does not depend on the number of frames; the FFT
    of a frame does not depend on the frames beside it either, which the tests check with chunks
    of 37 to 4,000 samples). A stream must hold more than ``n_fft / 2`` samples (reflection). Cost: one frame of
    STFT per frame (until session 13 every frame was recomputed in a block of 8, for
    ``torch.matmul``'s sake).
    """

    def __init__(self, cfg: FeatureConfig):
        self.cfg = cfg
        self._x = np.zeros(0, dtype=np.float32)
        self.emitted = 0            # frames returned so far
        self._ended = False

    def _padded(self, lo: int, hi: int, n: int) -> torch.Tensor:
        """Samples ``lo .. hi`` of the reflect-padded stream (``n_fft / 2`` each side) of a stream
        of ``n`` samples (as far as it is known)."""
        idx = np.arange(lo, hi) - self.cfg.n_fft // 2
        idx = np.abs(idx)
        idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
        return torch.from_numpy(self._x[idx])

    def _block(self, first: int, count: int, n: int) -> torch.Tensor:
        """Features ``[count, F]`` of frames ``first .. first + count - 1``."""
        cfg = self.cfg
        hop = cfg.hop_length
        seg = self._padded(first * hop, (first + count - 1) * hop + cfg.n_fft, n)
        window, fb, dct = _consts(cfg)
        spec = torch.stft(seg[None], cfg.n_fft, hop_length=hop, win_length=cfg.win_length,
                          window=window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()
        return _power_to_features(power, fb, dct)[0]

    def _frames_upto(self, last: int, n: int) -> list:
        """Frames ``emitted .. last`` (inclusive), computed together."""
        if last < self.emitted:
            return []
        block = self._block(self.emitted, last - self.emitted + 1, n)
        self.emitted = last + 1
        return list(block)

    def push(self, samples) -> list:
        """The frames completed by ``samples`` (float32 in [-1, 1))."""
        if self._ended:
            raise KwsError("StreamFeatures: push after end")
        self._x = np.concatenate([self._x, np.asarray(samples, dtype=np.float32)])
        n = len(self._x)
        half, hop = self.cfg.n_fft // 2, self.cfg.hop_length
        if n <= half:
            return []
        return self._frames_upto((n - half) // hop, n)     # up to the last frame whose samples are in

    def end(self) -> list:
        """The remaining frames of the stream (``1 + samples // hop`` in all)."""
        self._ended = True
        n = len(self._x)
        if n <= self.cfg.n_fft // 2:
            raise KwsError(f"a stream of {n} samples is too short for features "
                           f"(more than {self.cfg.n_fft // 2} needed)")
        return self._frames_upto(self.cfg.frames_for(n) - 1, n)


def _example_fingerprint(ex, ds) -> tuple:
    """What a cached feature row depends on: the file (path, size, mtime) or the silence recipe."""
    if ex.path is None:
        p = ds.noise_paths()[ex.noise]
        st = p.stat()
        return ("silence", str(p), st.st_size, st.st_mtime_ns, ex.offset, ex.gain)
    st = Path(ex.path).stat()
    return (ex.path, st.st_size, st.st_mtime_ns, ex.label)


class FeatureCache:
    """Non-augmented features of example lists, cached on disk as ``<cfg.key()>-<dataset hash>.npy``.

    The dataset hash covers every example's path, size and modification time (or its silence recipe
    and noise file), so a changed setting or file is a miss. Files are written atomically.
    """

    def __init__(self, cfg: FeatureConfig, root=None, batch_size: int = 256):
        self.cfg = cfg
        self.root = Path(root) if root is not None else cache_dir("features")
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0

    def path_for(self, examples, ds) -> Path:
        h = hashlib.sha256(repr([_example_fingerprint(e, ds) for e in examples]).encode()).hexdigest()
        return self.root / f"{self.cfg.key()}-{h[:16]}.npy"

    def get(self, examples, ds, progress=None) -> torch.Tensor:
        """Features ``[N, T, F]`` of ``examples`` (from the cache, else computed and stored)."""
        from kwsbnn.sw.data import load_waveforms
        path = self.path_for(examples, ds)
        if path.exists():
            try:
                arr = np.load(path)
                if arr.shape == (len(examples), self.cfg.frames, self.cfg.n_features):
                    self.hits += 1
                    return torch.from_numpy(arr)
            except (OSError, ValueError):
                pass  # unreadable cache file: recompute and overwrite
        self.misses += 1
        out = np.zeros((len(examples), self.cfg.frames, self.cfg.n_features), dtype=np.float32)
        for i in range(0, len(examples), self.batch_size):
            chunk = examples[i:i + self.batch_size]
            out[i:i + len(chunk)] = compute(torch.from_numpy(load_waveforms(chunk, ds)), self.cfg).numpy()
            if progress:
                progress(len(chunk))
        buf = io.BytesIO()
        np.save(buf, out)
        write_atomic(path, buf.getvalue())
        return torch.from_numpy(out)
