"""kwsbnn.sw.features against textbook formulas computed independently here."""

import json
import math
import os

import numpy as np
import pytest
import torch

from fixtures import make_speech_commands
from kwsbnn.errors import KwsError
from kwsbnn.sw.data import SpeechCommands
from kwsbnn.sw.features import (FeatureCache, FeatureConfig, FeatureQuantizer, compute, dct_matrix,
                                mel_filterbank)

torch.set_num_threads(1)


def textbook_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def textbook_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def textbook_filterbank(n_mels, n_fft, sr, f_min, f_max):
    """Loop version: n_mels + 2 mel-spaced edges, triangles in Hz evaluated at bin frequencies."""
    lo_m, hi_m = textbook_mel(f_min), textbook_mel(f_max)
    edges = [textbook_hz(lo_m + (hi_m - lo_m) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        a, c, b = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if a < f <= c:
                fb[m, k] = (f - a) / (c - a)
            elif c < f < b:
                fb[m, k] = (b - f) / (b - c)
    return fb, edges


def test_config_frames_and_key():
    cfg = FeatureConfig()
    assert (cfg.win_length, cfg.hop_length, cfg.frames, cfg.n_features) == (400, 160, 101, 40)
    assert FeatureConfig(kind="logmel", n_mels=32).n_features == 32
    assert cfg.key() == FeatureConfig().key() and len(cfg.key()) == 12
    assert len({cfg.key(), FeatureConfig(kind="logmel").key(), FeatureConfig(n_coeffs=20).key(),
                FeatureConfig(f_max=4000).key()}) == 4
    assert FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in (dict(kind="mel"), dict(n_coeffs=41), dict(win_ms=40), dict(f_max=9000)):
        with pytest.raises(KwsError):
            FeatureConfig(**bad)


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(kind="logmel", n_mels=20, f_min=0, f_max=8000, n_fft=256,
                                                                  win_ms=16)])
def test_mel_filterbank_textbook(cfg):
    fb = mel_filterbank(cfg)
    ref, edges = textbook_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.f_min, cfg.f_max)
    assert fb.shape == (cfg.n_mels, cfg.n_fft // 2 + 1) and fb.dtype == torch.float32
    np.testing.assert_allclose(fb.numpy(), ref, atol=1e-6)
    assert abs(textbook_mel(1000.0) - 1000.0) < 0.1        # the HTK scale's anchor point
    bin_hz = cfg.sample_rate / cfg.n_fft
    for m in range(cfg.n_mels):
        centre = edges[m + 1]
        k = int(fb[m].argmax())
        assert abs(k * bin_hz - centre) <= bin_hz / 2 + 1e-9    # peak at the bin nearest the centre
        assert fb[m].max() <= 1.0
    # adjacent triangles sum to 1 between the first and the last centre
    k = np.arange(cfg.n_fft // 2 + 1) * bin_hz
    inside = (k >= edges[1]) & (k <= edges[-2])
    np.testing.assert_allclose(fb.sum(0).numpy()[inside], 1.0, atol=1e-5)


def test_filterbank_peak_is_one_on_a_bin():
    # f_min = 0 and f_max chosen so that the first centre lands exactly on bin 4 (125 Hz at n_fft 512)
    c_mel = textbook_mel(125.0)
    cfg = FeatureConfig(kind="logmel", n_mels=8, f_min=0.0, f_max=textbook_hz(9 * c_mel))
    fb = mel_filterbank(cfg)
    assert float(fb[0, 4]) == pytest.approx(1.0, abs=1e-6)


def test_dct_matrix_direct_formula():
    n_in, n_out = 40, 13
    d = dct_matrix(n_in, n_out).double().numpy()
    x = np.random.default_rng(0).normal(size=n_in)
    direct = [sum(x[n] * math.cos(math.pi * k * (2 * n + 1) / (2 * n_in)) for n in range(n_in))
              * math.sqrt((1 if k == 0 else 2) / n_in) for k in range(n_out)]
    np.testing.assert_allclose(d @ x, direct, atol=1e-6)
    sq = dct_matrix(16, 16).double().numpy()
    np.testing.assert_allclose(sq @ sq.T, np.eye(16), atol=1e-6)   # orthonormal


def numpy_logmel(x, cfg):
    """Independent NumPy STFT: reflect pad n_fft/2, periodic Hann window centred in n_fft, rfft."""
    pad = cfg.n_fft // 2
    xp = np.pad(x.astype(np.float64), pad, mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.win_length) / cfg.win_length)
    full = np.zeros(cfg.n_fft)
    left = (cfg.n_fft - cfg.win_length) // 2
    full[left:left + cfg.win_length] = win
    frames = [xp[t * cfg.hop_length: t * cfg.hop_length + cfg.n_fft] * full
              for t in range(1 + len(x) // cfg.hop_length)]
    power = np.abs(np.fft.rfft(np.array(frames), axis=1)) ** 2
    fb, _ = textbook_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.f_min, cfg.f_max)
    return np.log(power @ fb.T + 1e-6)


def test_compute_against_numpy():
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 1000 * t) + rng.normal(0, 0.01, 16000)).astype(np.float32)
    logmel_cfg = FeatureConfig(kind="logmel")
    lm = compute(torch.from_numpy(x)[None], logmel_cfg)
    assert lm.shape == (1, 101, 40) and lm.dtype == torch.float32
    ref = numpy_logmel(x, logmel_cfg)
    np.testing.assert_allclose(lm[0].numpy(), ref, atol=2e-3, rtol=1e-4)
    # the 1 kHz tone is loudest in the band whose centre is nearest 1 kHz
    _, edges = textbook_filterbank(40, 512, 16000, 20, 7600)
    assert int(lm[0, 50].argmax()) == int(np.argmin(np.abs(np.array(edges[1:-1]) - 1000)))
    mf = compute(torch.from_numpy(x), FeatureConfig(n_coeffs=13))
    assert mf.shape == (101, 13)
    np.testing.assert_allclose(mf.numpy(), ref @ dct_matrix(40, 13).double().numpy().T, atol=2e-2, rtol=1e-4)
    # batch rows are independent of each other
    xb = torch.from_numpy(np.stack([x, x[::-1].copy()]))
    assert torch.allclose(compute(xb, logmel_cfg)[0], lm[0], atol=1e-5)
    # digital silence hits the floor, finite
    z = compute(torch.zeros(2, 16000), logmel_cfg)
    assert torch.isfinite(z).all() and torch.allclose(z, torch.full_like(z, math.log(1e-6)))


def test_quantizer_formula_roundtrip_and_clamp():
    rng = np.random.default_rng(0)
    feats = torch.from_numpy((rng.normal(size=(200, 101, 5)) * [1, 2, 5, 10, 0.1] + [0, 3, -4, 1, 0])
                             .astype(np.float32))
    q = FeatureQuantizer.fit(feats)
    np.testing.assert_allclose(q.offset.numpy(), feats.reshape(-1, 5).mean(0).numpy(), atol=1e-3)
    codes = q.quantize(feats)
    inside = (codes.abs() < 127).float().mean(dim=(0, 1))
    assert torch.all(inside > 0.998) and torch.all(inside < 1.0)
    assert codes.min() >= -127 and codes.max() <= 127 and torch.equal(codes, codes.round())
    # the contract: clamp(round_half_even((x - offset) / scale), -127, 127), in float32
    x = feats[:3]
    ref = np.clip(np.round((x.numpy() - q.offset.numpy()) / q.scale.numpy()), -127, 127)
    assert np.array_equal(codes[:3].numpy(), ref)
    # half-even ties and clamping
    q2 = FeatureQuantizer([1.0], [0.5])
    xs = torch.tensor([[2.25], [2.75], [0.25], [-0.25], [1e6], [-1e6]])   # (x-1)/0.5 = 2.5, 3.5, -1.5, -2.5
    assert q2.quantize(xs).flatten().tolist() == [2.0, 4.0, -2.0, -2.0, 127.0, -127.0]
    assert q2.quantize(xs, torch.int8).dtype == torch.int8
    # JSON round trip gives identical codes
    d = json.loads(json.dumps(q.to_dict()))
    assert torch.equal(FeatureQuantizer.from_dict(d).quantize(feats), codes)
    err = (q.dequantize(codes) - feats).abs()
    assert torch.all(err[codes.abs() < 127] <= (q.scale / 2 * 1.001).expand_as(err)[codes.abs() < 127])
    with pytest.raises(KwsError):
        FeatureQuantizer([0.0], [0.0])


def test_feature_cache_hit_and_miss(tmp_path):
    info = make_speech_commands(tmp_path / "sc", keywords=["yes", "no"], unknown_words=["bed"], speakers=3,
                                noise_files=1)
    ds = SpeechCommands(info.root)
    ex = ds.split("validation")
    cfg = FeatureConfig()
    cache = FeatureCache(cfg, root=tmp_path / "cache")
    a = cache.get(ex, ds)
    assert (cache.hits, cache.misses) == (0, 1) and a.shape == (len(ex), 101, 40)
    b = FeatureCache(cfg, root=tmp_path / "cache").get(ex, ds)
    assert torch.equal(a, b)
    cache.get(ex, ds)
    assert (cache.hits, cache.misses) == (1, 1)
    other = FeatureCache(FeatureConfig(n_coeffs=20), root=tmp_path / "cache")
    assert other.get(ex, ds).shape == (len(ex), 101, 20) and other.misses == 1
    # a changed file is a miss
    f = next(e.path for e in ex if e.path)
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    cache.get(ex, ds)
    assert cache.misses == 2
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3
    assert not list((tmp_path / "cache").glob(".*tmp"))
    # the cached rows are what compute() gives for the same waveforms
    from kwsbnn.sw.data import load_waveforms
    assert torch.allclose(a, compute(torch.from_numpy(load_waveforms(ex, ds)), cfg))


@pytest.mark.parametrize("samples,chunk", [(16000, 160), (16000, 1000), (24321, 37), (40000, 4000)])
def test_stream_features_equal_the_whole_clip_bit_for_bit(samples, chunk):
    from kwsbnn.sw.features import StreamFeatures
    cfg = FeatureConfig()
    rng = np.random.default_rng(samples + chunk)
    t = np.arange(samples)
    x = (0.3 * np.sin(t * 0.05) * (t > samples // 3) + rng.normal(0, 0.05, samples)).clip(-1, 1)
    x = x.astype(np.float32)
    whole = compute(torch.from_numpy(x), cfg)
    sf = StreamFeatures(cfg)
    frames, seen = [], []
    for i in range(0, samples, chunk):
        new = sf.push(x[i:i + chunk])
        # A frame comes out as soon as its samples are in.
        n_in = min(samples, i + chunk)
        if n_in > cfg.n_fft // 2:
            assert sf.emitted == (n_in - cfg.n_fft // 2) // cfg.hop_length + 1
        frames += new
        seen.append(len(new))
    frames += sf.end()
    got = torch.stack(frames)
    assert got.shape == whole.shape == (cfg.frames_for(samples), cfg.n_features)
    assert torch.equal(got, whole)          # equality, not closeness
    with pytest.raises(KwsError, match="after end"):
        sf.push(x[:10])


def test_a_clips_features_do_not_depend_on_what_is_computed_with_it():
    """The filterbank and DCT products round the same whatever the batch or the number of frames
    (torch.matmul does not: its kernel, and so its rounding, depends on the shape and the CPU), so
    a clip's features equal bit for bit alone and in a batch, and a spectrum's first frames give
    the features of the whole spectrum's first frames."""
    from kwsbnn.sw.features import _consts, _power_to_features, ordered_product, sparse_rows
    cfg = FeatureConfig()
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(0, 0.1, (5, 16000)).clip(-1, 1).astype(np.float32))
    batch = compute(x, cfg)
    for i in (0, 3):
        assert torch.equal(compute(x[i], cfg), batch[i])
    assert torch.equal(compute(x[1:3], cfg), batch[1:3])
    _, fb, dct = _consts(cfg)
    power = torch.from_numpy(rng.gamma(0.5, 2.0, (2, cfg.n_fft // 2 + 1, 101)).astype(np.float32))
    full = _power_to_features(power, fb, dct)
    for t in (1, 7, 8, 15, 16, 17, 33):
        assert torch.equal(_power_to_features(power[:, :, :t], fb, dct), full[:, :t])
        assert torch.equal(_power_to_features(power[1:, :, :t], fb, dct), full[1:, :t])
    # the product against the textbook sum, and term by term in column order, rounded at each step
    w = torch.from_numpy(rng.normal(0, 1, (6, 9)).astype(np.float32))
    w[w.abs() < 0.5] = 0
    w[2] = 0                                            # a row of zeros gives zeros
    v = torch.from_numpy(rng.normal(0, 1, (3, 9, 37)).astype(np.float32))
    got = ordered_product(sparse_rows(w), v)
    np.testing.assert_allclose(got.numpy(), (w.double() @ v.double()).numpy(), rtol=1e-5, atol=1e-5)
    ref = torch.zeros(6, 37)
    for k in range(9):
        ref = ref + w[:, k, None] * v[0, k]
    assert torch.equal(got[0], ref) and not got[:, 2].any()
