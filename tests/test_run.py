"""`kwsbnn run`: arguments and errors (missing port, clips, wrong model on the board), and whole
runs against a Python model of the board (kwsbnn.boards.protocol.SimulatedBoard) answering with
the golden model, in place of a serial port."""

import json
import subprocess
import sys

import numpy as np
import pytest

from kwsbnn import cli
from kwsbnn.boards import protocol as p
from kwsbnn.commands import run as run_cmd
from kwsbnn.sw.export import deployable
from kwsbnn.sw.golden import GoldenModel


def kwsbnn(*args):
    return subprocess.run([sys.executable, "-m", "kwsbnn.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from fixtures import tone_clip, write_wav
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    for i, f in enumerate((300, 700, 1500)):
        write_wav(root / ("sub" if i == 2 else ".") / f"c{i}.wav", tone_clip(f, rng))
    write_wav(root / "short.wav", rng.normal(0, 0.05, 4000).clip(-1, 1))     # padded to 1 s
    return root


def fake_board(dep, *, model_id=None, corrupt=False):
    """A port object: the board's protocol in Python, inferring with the golden model."""
    golden = GoldenModel(dep)
    c, t, f = dep.input["shape"]
    geom = p.LinkGeometry(c, t, f, 8, len(dep.classes), 32,
                          p.model_id(dep) if model_id is None else model_id)

    def infer(payload):
        x = np.frombuffer(payload, dtype=np.int8).astype(np.int64).reshape(1, c, t, f)
        r = golden.run(x)
        scores = [int(v) for v in r.scores[0]]
        if corrupt:
            scores[0] += 1
        return int(r.classes[0]), scores

    return p.SimulatedBoard(geom, infer, clock_hz=24e6)


def test_missing_port_is_a_clear_error(clips):
    r = kwsbnn("run", "--port", "/dev/kwsbnn-no-such-port", "--model", "binary", str(clips / "c0.wav"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "cannot open serial port /dev/kwsbnn-no-such-port" in r.stderr


def test_argument_errors(clips, tmp_path, capsys):
    def run(*args):
        try:
            rc = cli.main(["run", *args])
        except SystemExit as e:         # argparse
            rc = e.code
        return rc, capsys.readouterr().err

    rc, err = run("--port", "/dev/null", str(tmp_path / "missing.wav"))
    assert rc == 2 and "missing.wav: no such file or folder" in err
    rc, err = run("--port", "/dev/null", str(tmp_path))
    assert rc == 2 and "no .wav files" in err
    rc, err = run(str(clips))
    assert rc == 2 and "--port" in err
    rc, err = run("--port", "/dev/null", "--model", "tiny", str(clips))
    assert rc == 2 and "takes no audio features" in err
    rc, err = run("--port", "/dev/null", "--timeout", "0", str(clips))
    assert rc == 2 and "--timeout 0.0 must be positive" in err


def test_run_against_a_simulated_board(clips, monkeypatch, capsys):
    dep = deployable("binary")
    board = fake_board(dep)
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    rc = cli.main(["run", "--port", "fake0", "--model", "binary", "--golden", "--json", str(clips)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert len(out["clips"]) == 4 and out["agreement"] == {"equal": 4, "same_class": 4, "total": 4}
    assert out["model_id"] == f"{p.model_id(dep):08x}" and out["board"]["clock_mhz"] == 24
    # The host's features are those of the golden reference on the same clip.
    cfg, q = run_cmd._feature_pipeline(dep, "binary")
    x = run_cmd.clip_features(clips / "c0.wav", cfg, q)
    g = GoldenModel(dep).run(x[None])
    row = next(r for r in out["clips"] if r["clip"].endswith("c0.wav"))
    assert row["class"] == int(g.classes[0]) and row["scores"] == g.scores[0].tolist()
    assert row["keyword"] == dep.classes[row["class"]]

    rc = cli.main(["run", "--port", "fake0", "--model", "binary", str(clips / "c1.wav")])
    text = capsys.readouterr()
    assert rc == 0 and text.out.strip().endswith(tuple(dep.classes))


def test_golden_disagreement_is_reported(clips, monkeypatch, capsys):
    dep = deployable("binary")
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: fake_board(dep, corrupt=True))
    rc = cli.main(["run", "--port", "fake0", "--model", "binary", "--golden", str(clips / "c0.wav")])
    out = capsys.readouterr().out
    assert rc == 1 and "0 of 1 equal" in out


def test_board_with_another_model(clips, monkeypatch, capsys):
    dep = deployable("binary")
    tiny_id = p.model_id(deployable("tiny"))
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: fake_board(dep, model_id=tiny_id))
    rc = cli.main(["run", "--port", "fake0", "--model", "binary", str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "runs model 'tiny'" in err and "--model binary" in err
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: fake_board(dep, model_id=0xDEADBEEF))
    rc = cli.main(["run", "--port", "fake0", "--model", "binary", str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "a model kwsbnn does not know by name (id deadbeef)" in err


def test_silent_board_times_out_clearly(clips, monkeypatch, capsys):
    class Silent:
        def write(self, data):
            return len(data)

        def read(self, n):
            return b""

    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: Silent())
    rc = cli.main(["run", "--port", "fake0", "--model", "binary", "--timeout", "0.1",
                   str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "no answer from the board on fake0 within 0.1 s" in err
