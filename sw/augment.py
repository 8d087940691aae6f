"""Training-time augmentation, vectorized in torch and seeded.

:class:`Augmenter` works on waveform batches ``[N, S]``:

- silence rows (label 0) are replaced by fresh silence: a random crop of a random background file,
  divided by that file's peak and scaled by ``silence_gain`` (U(0, 1) by default): the level recipe of
  the canonical test set's silence clips (see ``kwsbnn.sw.data``);
- other rows get a random time shift of up to +-``time_shift_ms`` (zero fill), a random gain of
  ``gain_db`` decibels, and with probability ``noise_prob`` a peak-normalized background crop mixed in
  at a gain drawn from ``noise_gain`` (TensorFlow's recipe: 0.8 and 0..0.1); results clip to +-1;
- with ``speed``, ``reverb``: speed perturbation and synthetic rooms (below); ``vtlp`` draws per-clip
  vocal-tract-length warps that the feature stage applies (:meth:`Augmenter.warps`).

:func:`spec_augment` masks random time and frequency bands of feature batches ``[N, T, F]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from kwsbnn.errors import KwsError

SILENCE = 0


class Augmenter:
    """Seeded waveform augmentation; ``aug(waves, labels, generator=None) -> waves`` (new tensor)."""

    def __init__(self, noise_clips, seed: int = 0, time_shift_ms: float = 100.0,
                 noise_prob: float = 0.8, noise_gain: tuple[float, float] = (0.0, 0.1),
                 gain_db: tuple[float, float] = (-6.0, 6.0),
                 silence_gain: tuple[float, float] = (0.0, 1.0), redraw_silence: bool = True,
                 sample_rate: int = 16000, silence_label: int = SILENCE, speed: float = 0.0,
                 reverb: float = 0.0, rt60: tuple[float, float] = (0.1, 0.7), vtlp: float = 0.0):
        clips = list(noise_clips.values()) if isinstance(noise_clips, Mapping) else list(noise_clips or [])
        clips = [np.asarray(c, dtype=np.float32) for c in clips]
        self.shift = int(round(time_shift_ms * sample_rate / 1000))
        self.noise_prob, self.noise_gain, self.gain_db = noise_prob, noise_gain, gain_db
        self.silence_gain, self.redraw_silence = silence_gain, redraw_silence
        self.silence_label = silence_label
        self.speed, self.reverb, self.rt60, self.vtlp = speed, reverb, rt60, vtlp
        self.sample_rate = sample_rate
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        # One flat bank of peak-normalized noise; each clip's start and length.
        clips = [c / max(float(np.abs(c).max()), 1e-9) for c in clips if len(c) > 0]
        self.bank = torch.from_numpy(np.concatenate(clips)) if clips else torch.zeros(0)
        self.starts = torch.tensor(np.cumsum([0] + [len(c) for c in clips[:-1]]), dtype=torch.int64)
        self.lengths = torch.tensor([len(c) for c in clips], dtype=torch.int64)

    def noise_crops(self, n: int, samples: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, samples]`` random crops of the peak-normalized noise files (file chosen uniformly)."""
        if len(self.lengths) == 0:
            raise KwsError("augmentation needs background noise clips but none were given",
                           "use a dataset with _background_noise_/ or set noise_prob=0 and "
                           "redraw_silence=False")
        if int(self.lengths.min()) < samples:
            raise KwsError(f"a background noise clip is shorter than {samples} samples")
        k = torch.randint(len(self.lengths), (n,), generator=generator)
        room = (self.lengths[k] - samples + 1).double()
        off = (torch.rand(n, generator=generator, dtype=torch.float64) * room).long()
        idx = (self.starts[k] + off)[:, None] + torch.arange(samples)[None, :]
        return self.bank[idx]

    def __call__(self, waves: torch.Tensor, labels, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator if generator is not None else self.generator
        waves = torch.as_tensor(waves, dtype=torch.float32)
        labels = torch.as_tensor(labels)
        n, s = waves.shape
        # Draw every random number up front, in a fixed order, so results depend only on the seed.
        shift = torch.randint(-self.shift, self.shift + 1, (n,), generator=g) if self.shift else \
            torch.zeros(n, dtype=torch.int64)
        gain = 10.0 ** (torch.empty(n).uniform_(*self.gain_db, generator=g) / 20.0)
        use_noise = torch.rand(n, generator=g) < self.noise_prob
        noise_gain = torch.empty(n).uniform_(*self.noise_gain, generator=g)
        sil_gain = torch.empty(n).uniform_(*self.silence_gain, generator=g)
        need_noise = self.noise_prob > 0 or (self.redraw_silence and bool((labels == self.silence_label).any()))
        noise = self.noise_crops(n, s, g) if need_noise else None
        if self.speed > 0:                  # drawn after the original draws: old seeds keep their clips
            rate = torch.empty(n).uniform_(1 - self.speed, 1 + self.speed, generator=g)
            waves = speed_perturb(waves, rate)
        if self.reverb > 0:
            use_rev = torch.rand(n, generator=g) < self.reverb
            rt = torch.empty(n).uniform_(*self.rt60, generator=g)
            rir = room_response(rt, self.sample_rate, g)
            waves = torch.where(use_rev[:, None], reverberate(waves, rir), waves)

        # Time shift: y[t] = x[t - shift], zero outside.
        src = torch.arange(s)[None, :] - shift[:, None]
        valid = (src >= 0) & (src < s)
        out = waves.gather(1, src.clamp(0, s - 1)) * valid * gain[:, None]
        if noise is not None:
            out = out + noise * (noise_gain * use_noise)[:, None]
            if self.redraw_silence:
                sil = labels == self.silence_label
                out = torch.where(sil[:, None], noise * sil_gain[:, None], out)
        return out.clamp_(-1.0, 1.0)


    def warps(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """VTLP factors ``[n]`` drawn from U(1 - vtlp, 1 + vtlp) for the feature stage
        (:func:`kwsbnn.sw.features.compute`'s ``warp``), or None without VTLP (nothing drawn)."""
        if self.vtlp <= 0:
            return None
        g = generator if generator is not None else self.generator
        return torch.empty(n).uniform_(1 - self.vtlp, 1 + self.vtlp, generator=g)


def speed_perturb(waves: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Resample each clip ``[N, S]`` by its ``rate [N]`` about the clip's centre (Ko et al. 2015's
    speed perturbation: tempo and pitch together, ``rate > 1`` faster and higher): ``y[t] =
    x(c + (t - c) * rate)`` by linear interpolation, zero outside the clip."""
    n, s = waves.shape
    c = (s - 1) / 2.0
    pos = c + (torch.arange(s, dtype=torch.float32)[None, :] - c) * rate[:, None].float()
    i0 = pos.floor().long()
    frac = pos - i0.float()
    valid = (pos >= 0) & (pos <= s - 1)
    a = waves.gather(1, i0.clamp(0, s - 1))
    b = waves.gather(1, (i0 + 1).clamp(0, s - 1))
    return ((1 - frac) * a + frac * b) * valid


def room_response(rt60: torch.Tensor, sample_rate: int, generator: torch.Generator,
                  length_s: float = 0.4) -> torch.Tensor:
    """Synthetic room impulse responses ``[N, L]``: a unit direct path, then Gaussian noise under an
    exponential envelope that falls by 60 dB in ``rt60`` seconds (Polack's statistical model), the
    tail's energy normalised to the direct path's."""
    n, length = rt60.shape[0], int(length_s * sample_rate)
    t = torch.arange(length, dtype=torch.float32)[None, :] / sample_rate
    env = torch.exp(-6.9078 * t / rt60[:, None])
    tail = torch.randn(n, length, generator=generator) * env
    tail[:, 0] = 0.0
    tail = tail / tail.norm(dim=1, keepdim=True).clamp(min=1e-9)
    tail[:, 0] = 1.0
    return tail


def reverberate(waves: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve each clip with its room response (FFT), cut to the clip length, keep the clip's peak."""
    n, s = waves.shape
    m = s + rir.shape[1]
    y = torch.fft.irfft(torch.fft.rfft(waves, m) * torch.fft.rfft(rir, m), m)[:, :s]
    peak_in = waves.abs().amax(dim=1, keepdim=True)
    peak_out = y.abs().amax(dim=1, keepdim=True).clamp(min=1e-9)
    return y * (peak_in / peak_out)


def spec_augment(feats: torch.Tensor, generator: torch.Generator, time_masks: int = 2,
                 time_width: int = 10, freq_masks: int = 2, freq_width: int = 4,
                 fill: str | float = "mean") -> torch.Tensor:
    """SpecAugment-style masking of features ``[N, T, F]``: ``time_masks`` bands of up to
    ``time_width`` frames and ``freq_masks`` bands of up to ``freq_width`` coefficients per example,
    set to ``fill`` (``"mean"``: that example's mean of the coefficient over time). Returns a new tensor."""
    n, t, f = feats.shape
    fill_val = feats.mean(dim=1, keepdim=True).expand(n, t, f) if fill == "mean" else \
        torch.full_like(feats, float(fill))
    mask = torch.zeros(n, t, f, dtype=torch.bool)
    for count, width, size, dim in ((time_masks, time_width, t, 1), (freq_masks, freq_width, f, 2)):
        pos = torch.arange(size)
        for _ in range(count):
            w = torch.randint(0, width + 1, (n,), generator=generator)
            start = (torch.rand(n, generator=generator) * (size - w + 1).float()).long()
            band = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])
            mask |= band[:, :, None] if dim == 1 else band[:, None, :]
    return torch.where(mask, fill_val, feats)
