"""kwsbnn.sw.data, .augment and .loader on synthetic fixture folders (no real data)."""

import math

import numpy as np
import pytest
import torch

from fixtures import make_canonical_test_set, make_speech_commands, write_wav
from kwsbnn.errors import KwsError
from kwsbnn.sw import data
from kwsbnn.sw.augment import Augmenter, reverberate, room_response, spec_augment, speed_perturb
from kwsbnn.sw.data import (CLASSES, CLIP_SAMPLES, KEYWORDS, SpeechCommands, WavError, load_waveforms,
                            read_wav)
from kwsbnn.sw.features import FeatureCache, FeatureConfig
from kwsbnn.sw.loader import Batches, make_batches

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc")
    return make_speech_commands(root, speakers=6, clips_per_speaker=2, short_every=7)


@pytest.fixture(scope="module")
def ds(archive):
    return SpeechCommands(archive.root)


# -- WAV reading ---------------------------------------------------------------------------------
def test_constants():
    assert CLASSES[:2] == ["silence", "unknown"] and KEYWORDS == CLASSES[2:] and len(CLASSES) == 12
    assert data.SAMPLE_RATE == CLIP_SAMPLES == 16000


def test_read_wav_values(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.25])
    p = write_wav(tmp_path / "a.wav", x)
    y = read_wav(p)
    assert y.dtype == np.float32 and y.shape == (6,)
    assert np.array_equal(y, np.round(x * 32767).astype(np.int16) / np.float32(32768))


@pytest.mark.parametrize("kind,reason", [
    ("rate", "sample rate 44100 Hz, expected 16000 Hz"),
    ("stereo", "2 channels, expected mono"),
    ("8bit", "8-bit samples, expected 16-bit"),
    ("32bit", "32-bit samples"),
    ("truncated", "truncated"),
    ("text", "not a readable WAV"),
    ("empty", "empty file"),
    ("nosamples", "no audio samples"),
    ("missing", "cannot read"),
])
def test_read_wav_errors(tmp_path, kind, reason):
    p = tmp_path / f"bad_{kind}.wav"
    tone = np.sin(np.arange(1600) / 5) * 0.3
    if kind == "rate":
        write_wav(p, tone, rate=44100)
    elif kind == "stereo":
        write_wav(p, np.stack([tone, tone], 1), channels=2)
    elif kind == "8bit":
        write_wav(p, tone, sampwidth=1)
    elif kind == "32bit":
        write_wav(p, tone, sampwidth=4)
    elif kind == "truncated":
        write_wav(p, tone)
        p.write_bytes(p.read_bytes()[:-100])
    elif kind == "text":
        p.write_text("this is not audio\n" * 10)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "nosamples":
        write_wav(p, np.zeros(0))
    with pytest.raises(WavError) as e:
        read_wav(p)
    assert isinstance(e.value, KwsError)
    assert p.name in str(e.value) and reason in str(e.value), str(e.value)
    if kind != "missing":
        with pytest.raises(WavError):
            data.check_wav(p)


# -- layouts and splits --------------------------------------------------------------------------
def test_archive_layout_and_splits(ds, archive):
    assert ds.layout == "archive" and ds.split_source == "lists" and ds.bad_files == []
    for name in ("train", "validation", "test"):
        ex = ds.split(name)
        assert ex == sorted(ex, key=data.Example.sort_key)
        files = {e.path for e in ex if e.path}
        expected_kw = [f for f in archive.files[name] if f.split("/")[0] in KEYWORDS]
        n_kw = len(expected_kw)
        assert {str(archive.root / f) for f in expected_kw} <= files
        counts = ds.counts(name)
        assert counts[0] == math.ceil(0.1 * n_kw)                       # silence
        n_unk_avail = len(archive.files[name]) - n_kw
        assert counts[1] == min(n_unk_avail, math.ceil(0.1 * n_kw))     # unknown
        for e in ex:
            if e.path:
                word = e.path.split("/")[-2]
                assert e.label == (CLASSES.index(word) if word in KEYWORDS else 1)
            else:
                assert e.label == 0 and e.noise in archive.noise and 0 <= e.gain <= 1
    speakers = {n: {e.path.split("/")[-1].split("_")[0] for e in ds.split(n) if e.path}
                for n in ("train", "validation", "test")}
    assert not (speakers["train"] & speakers["validation"]) and not (speakers["train"] & speakers["test"])


def test_split_determinism_and_seed(archive):
    a, b = SpeechCommands(archive.root, seed=3), SpeechCommands(archive.root, seed=3)
    c = SpeechCommands(archive.root, seed=4)
    for name in ("train", "validation", "test"):
        assert a.split(name) == b.split(name)
    assert [e for e in a.split("validation") if e.label == 0] != [e for e in c.split("validation") if e.label == 0]


def test_unknown_subsampled_per_epoch(tmp_path):
    info = make_speech_commands(tmp_path, keywords=["yes", "no"], unknown_words=["bed", "cat", "dog", "eye"],
                                speakers=8, clips_per_speaker=2, noise_files=1)
    ds = SpeechCommands(info.root, unknown_fraction=0.25, silence_fraction=0.5)
    n_kw = sum(1 for f in info.files["train"] if f.split("/")[0] in ("yes", "no"))
    e0, e1 = ds.split("train", epoch=0), ds.split("train", epoch=1)
    assert ds.counts("train")[1] == math.ceil(0.25 * n_kw) and ds.counts("train")[0] == math.ceil(0.5 * n_kw)
    assert {e.path for e in e0 if e.label == 1} != {e.path for e in e1 if e.label == 1}
    assert ds.split("validation", epoch=0) == ds.split("validation", epoch=5)
    pool_unk = {e.path for e in ds.pool("train") if e.label == 1}
    assert {e.path for e in e0 if e.label == 1} < pool_unk



def test_train_unknown_fraction_leaves_validation_and_test_alone(tmp_path):
    """``train_unknown_fraction`` (``kwsbnn train --unknown-fraction``) changes the training split's
    unknown share only: validation and test are the standard draws, clip for clip."""
    info = make_speech_commands(tmp_path, keywords=["yes", "no"], unknown_words=["bed", "cat", "dog", "eye"],
                                speakers=8, clips_per_speaker=2, noise_files=1)
    std = SpeechCommands(info.root, unknown_fraction=0.25)
    more = SpeechCommands(info.root, unknown_fraction=0.25, train_unknown_fraction=0.75)
    n_kw = sum(1 for f in info.files["train"] if f.split("/")[0] in ("yes", "no"))
    n_pool = sum(1 for e in std.pool("train") if e.label == 1)
    assert std.counts("train")[1] == math.ceil(0.25 * n_kw)
    assert more.counts("train")[1] == min(n_pool, math.ceil(0.75 * n_kw)) > std.counts("train")[1]
    for name in ("validation", "test"):
        assert more.split(name) == std.split(name)

def test_hash_split_without_lists(tmp_path):
    info = make_speech_commands(tmp_path, speakers=12, lists=False, noise_files=1)
    ds = SpeechCommands(info.root)
    assert ds.split_source == "hash"
    files = [e.path for n in ("train", "validation", "test") for e in ds.pool(n) if e.path]
    assert len(files) == len(set(files)) == sum(len(v) for v in info.files.values())


def test_bad_files_skipped_or_strict(tmp_path):
    info = make_speech_commands(tmp_path, speakers=3, noise_files=1)
    bad = write_wav(info.root / "yes" / "ffffffff_nohash_0.wav", np.zeros(100), rate=8000)
    ds = SpeechCommands(info.root)
    assert ds.bad_files == [(str(bad), "sample rate 8000 Hz, expected 16000 Hz")]
    assert str(bad) not in {e.path for n in ("train", "validation", "test") for e in ds.pool(n)}
    with pytest.raises(WavError, match="ffffffff_nohash_0.wav"):
        SpeechCommands(info.root, strict=True)


def test_canonical_layout(tmp_path):
    root = make_canonical_test_set(tmp_path / "canon", clips_per_class=2)
    ds = SpeechCommands(root)
    assert ds.layout == "canonical" and ds.missing_classes == []
    ex = ds.split("test")
    assert ds.counts("test") == [2] * 12 and len(ex) == 24 and all(e.path for e in ex)
    with pytest.raises(KwsError, match="no train split"):
        ds.split("train")
    w = load_waveforms(ex, ds)
    assert w.shape == (24, CLIP_SAMPLES) and w.dtype == np.float32
    # a folder with only _silence_/ (like the shipped loud-silence set) is the same layout
    only = tmp_path / "only"
    (only / "_silence_").mkdir(parents=True)
    write_wav(only / "_silence_" / "1.wav", np.zeros(CLIP_SAMPLES) + 0.1)
    assert SpeechCommands(only).counts("test") == [1] + [0] * 11
    # a badly named unknown clip is skipped
    write_wav(root / "_unknown_" / "noname.wav", np.zeros(CLIP_SAMPLES))
    assert SpeechCommands(root).bad_files[0][0].endswith("noname.wav")


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "nope", "no such folder"),
    (lambda p: p, "it is empty"),
    (lambda p: [(p / d).mkdir() for d in ("foo", "bar")] and p, "not a Speech Commands folder"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "not a folder"),
    (lambda p: [(p / d).mkdir() for d in ("_silence_", "foo")] and p, "do not belong"),
    (lambda p: (p / "_background_noise_").mkdir() or p, "no keyword folders"),
    (lambda p: (p / "yes").mkdir() or p, "hold no valid WAV files"),
])
def test_folder_errors(tmp_path, make, match):
    with pytest.raises(KwsError, match=match) as e:
        SpeechCommands(make(tmp_path))
    assert e.value.hint


def test_missing_noise_is_an_error(tmp_path):
    info = make_speech_commands(tmp_path, speakers=3, noise_files=0)
    with pytest.raises(KwsError, match="background-noise"):
        SpeechCommands(info.root)
    ds = SpeechCommands(info.root, silence_fraction=0)
    assert ds.counts("train")[0] == 0


def test_load_waveforms_and_silence(ds, archive):
    ex = ds.split("validation")
    w = load_waveforms(ex, ds)
    assert w.shape == (len(ex), CLIP_SAMPLES) and w.dtype == np.float32
    noise = ds.noise_clips()
    assert list(noise) == archive.noise
    for e, row in zip(ex, w):
        if e.path is None:
            n = noise[e.noise]
            expect = n[e.offset:e.offset + CLIP_SAMPLES] * np.float32(e.gain / np.abs(n).max())
            np.testing.assert_allclose(row, expect, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(row[:12800], read_wav(e.path)[:12800])
    short = [e for e in ds.pool("train") if e.path and len(read_wav(e.path)) < CLIP_SAMPLES]
    assert short and not load_waveforms(short[:1], ds)[0, 12800:].any()   # zero padded


# -- augmentation --------------------------------------------------------------------------------
def test_augmenter_determinism(ds):
    waves = torch.from_numpy(load_waveforms(ds.split("validation"), ds))
    labels = torch.tensor([e.label for e in ds.split("validation")])
    a = Augmenter(ds.noise_clips(), seed=1)
    y1 = a(waves, labels, torch.Generator().manual_seed(7))
    y2 = Augmenter(ds.noise_clips(), seed=1)(waves, labels, torch.Generator().manual_seed(7))
    y3 = a(waves, labels, torch.Generator().manual_seed(8))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert torch.equal(Augmenter(ds.noise_clips(), seed=5)(waves, labels),
                       Augmenter(ds.noise_clips(), seed=5)(waves, labels))
    assert y1.shape == waves.shape and y1.abs().max() <= 1
    assert torch.equal(waves, torch.from_numpy(load_waveforms(ds.split("validation"), ds)))  # input kept


def test_augmenter_shift_gain_and_silence(ds):
    x = torch.zeros(4, CLIP_SAMPLES)
    x[:, 8000] = 0.5
    plain = Augmenter(ds.noise_clips(), time_shift_ms=100, noise_prob=0.0, gain_db=(0.0, 0.0))
    y = plain(x, torch.full((4,), 2), torch.Generator().manual_seed(0))
    pos = y.abs().argmax(1)
    assert torch.all((pos - 8000).abs() <= 1600) and torch.allclose(y.abs().amax(1), torch.tensor(0.5))
    assert len(set(pos.tolist())) > 1
    # silence rows become fresh peak-scaled noise: levels spread over 0..1 of the normalized noise
    a = Augmenter(ds.noise_clips(), seed=0)
    s = a(torch.zeros(400, CLIP_SAMPLES), torch.zeros(400, dtype=torch.long))
    peaks = s.abs().amax(1)
    assert peaks.max() > 0.7 and peaks.min() < 0.1 and (peaks > 0).all()
    # keywords get noise at most 0.1 of the normalized noise peak, with probability ~0.8
    k = a(torch.zeros(400, CLIP_SAMPLES), torch.full((400,), 3))
    kp = k.abs().amax(1)
    assert kp.max() <= 0.1 + 1e-6 and 0.6 < (kp > 0).float().mean() < 0.95


def test_spec_augment():
    f = torch.randn(3, 101, 40)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = spec_augment(f, g1), spec_augment(f, g2)
    assert torch.equal(a, b) and a.shape == f.shape and not torch.equal(a, f)
    changed = (a != f)
    mean = f.mean(1, keepdim=True).expand_as(f)
    assert torch.equal(a[changed], mean[changed])
    z = spec_augment(f, torch.Generator().manual_seed(1), time_masks=1, time_width=5, freq_masks=0, fill=0.0)
    rows = (z == 0).all(2).sum(1)
    assert torch.all(rows <= 5)


# -- batches -------------------------------------------------------------------------------------
def test_batches(ds, tmp_path):
    cfg = FeatureConfig()
    cache = FeatureCache(cfg, root=tmp_path)
    n = len(ds.split("validation"))
    batches = list(make_batches(ds, "validation", cfg, None, batch_size=16, cache=cache))
    assert sum(len(y) for _, y in batches) == n and len(batches) == math.ceil(n / 16)
    x, y = batches[0]
    assert x.shape == (16, cfg.frames, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    labels = torch.cat([y for _, y in batches])
    assert labels.tolist() == [e.label for e in ds.split("validation")]   # no shuffle outside train
    aug = Augmenter(ds.noise_clips(), seed=0)
    b = Batches(ds, "train", cfg, aug, batch_size=32, seed=1, spec_aug={})
    e0 = list(b.epoch(0))
    e0b = list(Batches(ds, "train", cfg, Augmenter(ds.noise_clips(), seed=0), batch_size=32, seed=1,
                       spec_aug={}).epoch(0))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(e0, e0b))
    e1 = list(b.epoch(1))
    assert not torch.equal(e0[0][1], e1[0][1])
    assert sorted(torch.cat([y for _, y in e0]).tolist()) == sorted(e.label for e in ds.split("train"))
    assert len(b) == len(e0)


# -- several folders -----------------------------------------------------------------------------
def test_data_union_of_folders(archive, tmp_path):
    extra = make_speech_commands(tmp_path / "extra", speakers=3, val_speakers=0, test_speakers=0, seed=3)
    import shutil
    shutil.rmtree(extra.root / "_background_noise_")
    with pytest.raises(KwsError, match="noise"):
        SpeechCommands(extra.root)                    # alone it cannot make silence
    one = SpeechCommands(archive.root)
    both = data.open_data(f"{archive.root},{extra.root}")
    assert isinstance(both, data.DataUnion)
    two = SpeechCommands(extra.root, silence_fraction=0.0)
    # training: the union in folder order; validation and test: each folder's lists
    assert both.split("train", 3) == one.split("train", 3) + two.split("train", 3)
    assert both.split("validation") == one.split("validation")
    assert both.split("test") == one.split("test")
    assert sum(both.counts("train")) == len(both.split("train"))
    assert both.noise_paths() == one.noise_paths()
    assert data.open_data([str(archive.root)]).split("test") == one.split("test")
    with pytest.raises(KwsError, match="no data folder"):
        data.open_data(" , ")


def test_data_union_features_match_single_folders(archive, tmp_path):
    """Clip identity is the file: the cached features of a union are those of its folders."""
    extra = make_speech_commands(tmp_path / "extra2", speakers=2, val_speakers=0, test_speakers=0, seed=4)
    both = data.open_data([str(archive.root), str(extra.root)])
    cfg = FeatureConfig()
    cache = FeatureCache(cfg, root=tmp_path / "cache")
    a = cache.get(both.split("train"), both)
    parts = [SpeechCommands(archive.root), SpeechCommands(extra.root, silence_fraction=0.0)]
    b = torch.cat([cache.get(p.split("train"), p) for p in parts])
    assert torch.equal(a, b)


# -- speaker-level augmentation ------------------------------------------------------------------
def test_speed_perturbation():
    t = torch.arange(CLIP_SAMPLES, dtype=torch.float32)
    x = torch.sin(2 * math.pi * 500 * t / 16000)[None].repeat(3, 1)
    y = speed_perturb(x, torch.tensor([1.0, 1.1, 0.9]))
    assert torch.allclose(y[0], x[0], atol=1e-5)
    # the tone's frequency scales with the rate (peak of the spectrum)
    f = [int(torch.fft.rfft(y[i]).abs().argmax()) for i in range(3)]
    assert abs(f[0] - 500) <= 1 and abs(f[1] - 550) <= 2 and abs(f[2] - 450) <= 2
    # slowing down leaves zeros only past the stretched ends: none here (0.9 reads inside the clip)
    assert float(y[2, :10].abs().max()) > 0 and float(y[1, :100].abs().max()) == 0.0


def test_vtlp_warps_the_mel_filters():
    from kwsbnn.sw.features import FeatureConfig, compute, mel_filterbank, vtlp_filterbank
    cfg = FeatureConfig(kind="logmel")
    fb = vtlp_filterbank(cfg, torch.tensor([1.0, 0.9, 1.1]))
    assert torch.allclose(fb[0], mel_filterbank(cfg), atol=1e-6)     # a = 1: the plain filterbank
    freqs = torch.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    centre = (fb * freqs).sum(-1) / fb.sum(-1)
    low = (centre[0] > 500) & (centre[0] < 0.7 * cfg.sample_rate / 2 / 1.1)   # wide filters, below f0
    assert torch.allclose(centre[1][low], 0.9 * centre[0][low], rtol=0.02)   # f -> a f below f0
    assert torch.allclose(centre[2][low], 1.1 * centre[0][low], rtol=0.02)
    assert torch.all(centre[:, 1:] > centre[:, :-1])                         # filters stay ordered
    # a 1 kHz tone lands in a lower filter when the filters move up (a > 1), a higher one when down
    t = torch.arange(CLIP_SAMPLES, dtype=torch.float32)
    x = torch.sin(2 * math.pi * 1000 * t / 16000)[None].repeat(3, 1)
    band = compute(x, cfg, warp=torch.tensor([1.0, 0.9, 1.1])).mean(1).argmax(1)
    assert band[2] < band[0] < band[1]
    assert torch.equal(compute(x, cfg, warp=torch.ones(3)), compute(x, cfg))


def test_augmenter_draws_vtlp_warps_only_when_asked(ds):
    assert Augmenter(ds.noise_clips()).warps(4, torch.Generator().manual_seed(0)) is None
    aug = Augmenter(ds.noise_clips(), vtlp=0.1)
    a = aug.warps(256, torch.Generator().manual_seed(3))
    assert torch.equal(a, aug.warps(256, torch.Generator().manual_seed(3)))
    assert float(a.min()) >= 0.9 and float(a.max()) <= 1.1 and float(a.std()) > 0.04


def test_room_response_decay_and_reverb():
    g = torch.Generator().manual_seed(0)
    rir = room_response(torch.tensor([0.2, 0.6]), 16000, g)
    assert rir.shape == (2, 6400) and torch.all(rir[:, 0] == 1.0)
    late = [float(rir[i, 3200:].pow(2).sum() / rir[i, 1:].pow(2).sum()) for i in range(2)]
    assert late[0] < late[1]                          # a longer RT60 keeps more late energy
    x = torch.zeros(2, 1000)
    x[:, 100] = 0.5
    y = reverberate(x, rir)
    assert torch.allclose(y.abs().amax(1), torch.tensor([0.5, 0.5]))
    assert float(y[:, :100].abs().max()) < 1e-6      # causal
    assert float(y[:, 200:].abs().sum()) > 0          # a tail


def test_augmenter_speed_and_reverb_are_seeded(ds):
    speech = [e for e in ds.split("train") if e.label != 0][:8]
    waves = torch.from_numpy(load_waveforms(speech, ds))
    labels = torch.tensor([e.label for e in speech])
    aug = Augmenter(ds.noise_clips(), speed=0.1, reverb=0.5, noise_prob=0.0)
    a = aug(waves, labels, torch.Generator().manual_seed(1))
    b = aug(waves, labels, torch.Generator().manual_seed(1))
    plain = Augmenter(ds.noise_clips(), noise_prob=0.0)(waves, labels, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, plain)
