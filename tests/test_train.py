"""Training: a short run on the synthetic fixture, exact resume, model files, and `kwsbnn eval`."""

import json

import pytest
import torch

from fixtures import make_speech_commands
from kwsbnn.cli import main
from kwsbnn.errors import KwsError
from kwsbnn.sw.checkpoint import load_model, model_payload
from kwsbnn.sw.train import TrainConfig, epoch_seconds, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_speech_commands(tmp_path_factory.mktemp("sc")).root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBNN_CACHE", str(tmp_path / "cache"))


def _cfg(data, out, **kw):
    base = dict(data=str(data), arch="res8-narrow", precision="binary", binary="redesign,width=8",
                epochs=2, out=str(out), batch_size=16, bn_batches=2, threads=1)
    return TrainConfig(**{**base, **kw})


def test_an_epoch_that_spans_a_pause_does_not_inflate_the_epoch_time():
    history = [{"seconds": s} for s in (60.0, 62.0, 3600.0, 61.0, 59.0)]  # one epoch paused for an hour
    assert epoch_seconds(history) == 61.0
    assert epoch_seconds([]) is None


def test_interrupted_run_resumes_to_the_same_result(data, tmp_path):
    full = train(_cfg(data, tmp_path / "full"), progress=False)
    assert full["complete"] and (tmp_path / "full" / "model.pt").exists()
    assert set(full) >= {"best_val_accuracy", "test_accuracy", "seconds_per_epoch", "total_seconds"}
    assert full["seconds_per_epoch"] == epoch_seconds(full["history"]) > 0

    part = train(_cfg(data, tmp_path / "part"), stop_after=1, progress=False)
    assert not part["complete"] and (tmp_path / "part" / "state.pt").exists()
    assert not (tmp_path / "part" / "metrics.json").exists()
    done = train(_cfg(data, tmp_path / "part"), resume=True, progress=False)
    assert done["complete"]

    a = load_model(tmp_path / "full" / "model.pt").state_dict()
    b = load_model(tmp_path / "part" / "model.pt").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["val_accuracy"] for h in full["history"]] == [h["val_accuracy"] for h in done["history"]]
    sa = torch.load(tmp_path / "full" / "state.pt", weights_only=False)
    sb = torch.load(tmp_path / "part" / "state.pt", weights_only=False)
    for k, v in sa["model"]["state_dict"].items():
        assert torch.equal(v, sb["model"]["state_dict"][k]), k


def test_resume_with_other_settings_is_refused(data, tmp_path):
    train(_cfg(data, tmp_path / "r", precision="float", arch="res8-narrow"), stop_after=1, progress=False)
    with pytest.raises(KwsError, match="other settings"):
        train(_cfg(data, tmp_path / "r", precision="float", arch="res8-narrow", epochs=3), resume=True,
              progress=False)
    with pytest.raises(KwsError, match="other settings"):         # the training unknown share too
        train(_cfg(data, tmp_path / "r", precision="float", arch="res8-narrow", unknown=0.3), resume=True,
              progress=False)
    # A state written before the setting existed resumes under the default share.
    state = torch.load(tmp_path / "r" / "state.pt", weights_only=False)
    del state["train_config"]["unknown"]
    torch.save(state, tmp_path / "r" / "state.pt")
    train(_cfg(data, tmp_path / "r", precision="float", arch="res8-narrow"), resume=True, stop_after=2,
          progress=False)


def test_model_file_of_another_version_is_rejected(data, tmp_path):
    train(_cfg(data, tmp_path / "v", precision="float"), stop_after=1, progress=False)
    payload = torch.load(tmp_path / "v" / "model.pt", weights_only=False)
    payload["version"] = 99
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(KwsError, match="version 99"):
        load_model(tmp_path / "old.pt")
    torch.save({"something": "else"}, tmp_path / "foreign.pt")
    with pytest.raises(KwsError, match="not a kwsbnn model"):
        load_model(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(KwsError, match="cannot read"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(KwsError, match="no such model"):
        load_model(tmp_path / "missing.pt")


def test_cli_train_and_eval_json(data, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--data", str(data), "--arch", "res8-narrow", "--precision", "int8",
                 "--epochs", "1", "--batch-size", "16", "--threads", "1", "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["epochs"] == 1 and 0 <= metrics["best_val_accuracy"] <= 1
    png = tmp_path / "conf.png"
    assert main(["eval", "--model", str(out / "model.pt"), "--data", str(data), "--json",
                 "--plot", str(png)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0 <= res["accuracy"] <= 1 and png.stat().st_size > 0
    assert len(res["predictions"]) == len(res["clips"]) == res["n"]
    assert set(res["predictions"]) <= set(res["classes"]) and len(res["confusion"]) == 12
    assert any(c.startswith("_silence_/") for c in res["clips"])
    assert main(["eval", "--model", str(out / "model.pt"), "--data", str(data), "--json",
                 "--limit", "3", "--split", "validation"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3
    with pytest.raises(SystemExit) as e:             # --engine lists its choices: argparse refuses
        main(["eval", "--model", str(out / "model.pt"), "--data", str(data), "--engine", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_cli_eval_of_a_deployable_folder(data, tmp_path, capsys):
    """`eval --model DEPLOYABLE_FOLDER`: the golden engine reads the exported files and predicts
    what it predicts from the model file; the torch engine is refused with a hint."""
    train(_cfg(data, tmp_path / "m", epochs=1, binary="redesign,width=8"), progress=False)
    assert main(["export", "--model", str(tmp_path / "m" / "model.pt"), "--out", str(tmp_path / "dep")]) == 0
    capsys.readouterr()
    runs = []
    for ref in (tmp_path / "m" / "model.pt", tmp_path / "dep"):
        assert main(["eval", "--model", str(ref), "--data", str(data), "--engine", "golden", "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0]["predictions"] == runs[1]["predictions"] and runs[0]["clips"] == runs[1]["clips"]
    assert main(["eval", "--model", str(tmp_path / "dep"), "--data", str(data)]) == 2
    assert "no PyTorch form" in capsys.readouterr().err


def test_cli_eval_unknown_model(data, capsys):
    assert main(["eval", "--model", "no-such-model", "--data", str(data)]) == 2
    assert "no such model" in capsys.readouterr().err


def test_integer_engine_agrees_with_float_eval(data, tmp_path):
    from kwsbnn.sw.evaluate import evaluate
    train(_cfg(data, tmp_path / "b", epochs=1), progress=False)
    model = load_model(tmp_path / "b" / "model.pt")
    a = evaluate(model, data, split="all", engine="torch")
    b = evaluate(model, data, split="all", engine="float")
    assert a["mode"] == "integer" and b["mode"] == "float" and a["clips"] == b["clips"]
    assert a["predictions"] == b["predictions"]


@pytest.mark.parametrize("precision,binary", [("binary", "redesign,width=8"), ("int8", "redesign"),
                                              ("binary", "redesign,width=8,shortcut=int")])
def test_golden_engine_equals_torch_integer_mode_on_fixture_clips(data, tmp_path, precision, binary):
    """On every clip of the fixture data (made in code): the golden model, reading only the
    deployable files, gives the same integer scores and classes as the PyTorch integer mode."""
    import numpy as np

    from kwsbnn.sw.data import SpeechCommands
    from kwsbnn.sw.engines import golden_of
    from kwsbnn.sw.evaluate import quantized_features, select
    from kwsbnn.sw.integer import integer_forward, integer_spec

    train(_cfg(data, tmp_path / "m", epochs=1, precision=precision, binary=binary), progress=False)
    model = load_model(tmp_path / "m" / "model.pt")
    ds = SpeechCommands(data)
    q = quantized_features(model, ds, select(ds, "all"))
    scores, _ = integer_forward(integer_spec(model), q)
    g = golden_of(model).run(q.numpy().round().astype(np.int64)[:, None])
    assert len(q) > 20
    assert np.array_equal(scores.numpy(), g.scores)
    assert np.array_equal(scores.argmax(1).numpy(), g.classes)


def test_two_step_binary_training(data, tmp_path):
    """Step one (real=true) is not deployable; step two starts from its weights and is."""
    from kwsbnn.sw.integer import integer_spec
    step1 = train(_cfg(data, tmp_path / "s1", binary="redesign,width=8,real=true", epochs=1), progress=False)
    m1 = load_model(step1["model"])
    _, acts = m1(torch.randint(-127, 128, (2, 101, 40)).float(), return_activations=True)
    assert any(((a != 1) & (a != -1)).any() for a in acts[:-1])      # hardtanh, not signs
    with pytest.raises(KwsError, match="step one of two-step training"):
        integer_spec(m1)

    cfg2 = _cfg(data, tmp_path / "s2", epochs=1, init=step1["model"])
    import kwsbnn.sw.train as T
    seen = {}
    orig = T._init_from

    def spy(model, ref):
        orig(model, ref)
        seen.update({k: v.clone() for k, v in model.state_dict().items()})
    T._init_from = spy
    try:
        step2 = train(cfg2, progress=False)
    finally:
        T._init_from = orig
    for k, v in m1.state_dict().items():
        assert torch.equal(seen[k], v), k
    integer_spec(load_model(step2["model"]))                            # deployable

    with pytest.raises(KwsError, match="do not match"):
        train(_cfg(data, tmp_path / "s3", binary="redesign,width=12", epochs=1, init=step1["model"]),
              progress=False)


def test_reactnet_two_step_with_block_distillation_and_vtlp(data, tmp_path):
    """Step one with real_weights=true signs its activations but keeps latent weights (not
    deployable); step two binarizes them from --init, distilled block by block from step one, with
    VTLP on the training clips: deployable. A teacher of other widths is refused."""
    from kwsbnn.sw.integer import integer_spec
    from kwsbnn.sw.train import attention_loss
    opts = "redesign,width=8,shortcut=int,last=bin"
    step1 = train(_cfg(data, tmp_path / "s1", binary=f"{opts},real_weights=true", epochs=1),
                  progress=False)
    m1 = load_model(step1["model"])
    w = m1.blocks[1].weights()[0]
    assert ((w != 1) & (w != -1)).any()                                 # latent weights
    with pytest.raises(KwsError, match="real_weights=true"):
        integer_spec(m1)

    kw = dict(binary=f"{opts},distill=0.5,feat_distill=2.0", init=step1["model"],
              teacher=step1["model"], augment={"vtlp": 0.1}, epochs=1)
    step2 = train(_cfg(data, tmp_path / "s2", **kw), progress=False)
    assert step2["complete"] and step2["binary_options"]["feat_distill"] == 2.0
    m2 = load_model(step2["model"])
    assert set(m2.blocks[1].weights()[0].unique().tolist()) <= {-1.0, 1.0}
    integer_spec(m2)                                                    # deployable

    q = torch.randint(-127, 128, (4, 101, 40)).float()
    with torch.no_grad():
        _, a1 = m1(q, return_activations=True)
        _, a2 = m2(q, return_activations=True)
    assert float(attention_loss(a1, a1)) < 1e-9 < float(attention_loss(a2, a1))

    with pytest.raises(KwsError, match="blocks do not match"):
        train(_cfg(data, tmp_path / "s3", binary="redesign,width=12,shortcut=int,feat_distill=1.0",
                   teacher=step1["model"], epochs=1), progress=False)
    with pytest.raises(KwsError, match="exactly one --teacher"):
        train(_cfg(data, tmp_path / "s4", binary=f"{opts},feat_distill=1.0",
                   teacher=f"{step1['model']},{step1['model']}", epochs=1), progress=False)


def test_rprelu_trains_starts_as_a_prelu_and_has_no_integer_form_yet(data, tmp_path):
    from kwsbnn.sw.integer import integer_spec
    from kwsbnn.sw.models import BinaryOptions, build_model, make_config
    opts = "redesign,width=8,shortcut=int"
    run = train(_cfg(data, tmp_path / "r", binary=f"{opts},rprelu=true", epochs=1), progress=False)
    m = load_model(run["model"])
    assert m.blocks[1].rprelu is not None
    with pytest.raises(KwsError, match="rprelu"):
        integer_spec(m)
    # slope 1, shifts 0: the same stream as without RPReLU (training mode: batch statistics)
    plain = build_model(make_config("res8-narrow", "binary", BinaryOptions.parse(opts)))
    plain.load_state_dict(m.state_dict(), strict=False)
    with torch.no_grad():
        for b in m.blocks:
            if b.rprelu is not None:
                b.rprelu[0].zero_(), b.rprelu[1].fill_(1.0), b.rprelu[2].zero_()
        q = torch.randint(-127, 128, (4, 101, 40)).float()
        _, a = m.train()(q, return_activations=True)
        _, b = plain.train()(q, return_activations=True)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        b = m.blocks[1]
        b.rprelu[1].fill_(0.0)                                  # slope 0: increments >= shift only
        _, acts = m.train()(q, return_activations=True)
    assert torch.isfinite(acts[-1]).all()


def test_cli_spec_aug_and_label_smoothing(data, tmp_path, capsys):
    assert main(["train", "--data", str(data), "--spec-aug", "1,2", "--out", str(tmp_path)]) == 2
    assert "expected four counts" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--arch", "res8-narrow", "--precision", "binary",
                 "--binary-options", "redesign,width=8", "--epochs", "1", "--spec-aug", "0",
                 "--label-smoothing", "0", "--batch-size", "16", "--threads", "1",
                 "--out", str(tmp_path / "r"), "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["spec_aug"] is None and cfg["label_smoothing"] == 0.0


def test_stream_model_trains_with_augmentation_mixup_and_an_ensemble_teacher(data, tmp_path):
    """shortcut=int with speed, reverb and mixup, distilled from two teachers, on two data folders
    (the second without background noise): the run completes and resumes to the same weights."""
    import shutil

    extra = tmp_path / "extra"
    make_speech_commands(extra, speakers=3, val_speakers=0, test_speakers=0, seed=5)
    shutil.rmtree(extra / "_background_noise_")
    for name in ("t1", "t2"):
        train(_cfg(data, tmp_path / name, precision="float", arch="res8-narrow", epochs=1), progress=False)
    both = f"{data},{extra}"
    kw = dict(binary="redesign,width=8,shortcut=int,distill=0.5",
              teacher=f"{tmp_path / 't1' / 'model.pt'},{tmp_path / 't2' / 'model.pt'}",
              augment={"speed": 0.1, "reverb": 0.5, "mixup": 0.2})
    full = train(_cfg(both, tmp_path / "full", **kw), progress=False)
    assert full["complete"] and full["config"]["augment"]["mixup"] == 0.2
    train(_cfg(both, tmp_path / "part", **kw), stop_after=1, progress=False)
    train(_cfg(both, tmp_path / "part", **kw), resume=True, progress=False)
    a = load_model(tmp_path / "full" / "model.pt").state_dict()
    b = load_model(tmp_path / "part" / "model.pt").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_unknown_augmentation_is_refused(data, tmp_path):
    with pytest.raises(KwsError, match="unknown augmentation"):
        train(_cfg(data, tmp_path / "x", augment={"warp": 0.1}), progress=False)
