# amaranth: UnusedElaboratable=no
"""`kwsbnn run`: arguments and errors (missing port, clips, wrong model on the board), and whole
runs against a Python model of the board (kwsbnn.boards.protocol.SimulatedBoard) answering with
the golden model, in place of a serial port."""

import dataclasses
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


def fake_board(dep, *, model_id=None, corrupt=False, stride=1, load_words=0):
    """A port object: the board's protocol in Python, inferring with the golden model (with
    ``load_words``, an engine-style board that needs a weight image of that many words first)."""
    golden = GoldenModel(dep)
    c, t, f = dep.input["shape"]
    geom = p.LinkGeometry(c, t, f, 8, len(dep.classes), 32,
                          p.model_id(dep) if model_id is None else model_id, stride, load_words)

    def infer(payload):
        x = np.frombuffer(payload, dtype=np.int8).astype(np.int64).reshape(1, c, t, f)
        r = golden.run(x)
        scores = [int(v) for v in r.scores[0]]
        if corrupt:
            scores[0] += 1
        return int(r.classes[0]), scores

    return p.SimulatedBoard(geom, infer, clock_hz=24e6)


def test_missing_port_is_a_clear_error(clips):
    r = kwsbnn("run", "--port", "/dev/kwsbnn-no-such-port", "--model", "binary-ice40", str(clips / "c0.wav"))
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
    dep = deployable("binary-ice40")
    board = fake_board(dep)
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--golden", "--json", str(clips)])
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

    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", str(clips / "c1.wav")])
    text = capsys.readouterr()
    assert rc == 0 and text.out.strip().endswith(tuple(dep.classes))


def test_golden_disagreement_is_reported(clips, monkeypatch, capsys):
    dep = deployable("binary-ice40")
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: fake_board(dep, corrupt=True))
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--golden", str(clips / "c0.wav")])
    out = capsys.readouterr().out
    assert rc == 1 and "0 of 1 equal" in out


def test_board_with_another_model(clips, monkeypatch, capsys):
    dep = deployable("binary-ice40")
    tiny_id = p.model_id(deployable("tiny"))
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: fake_board(dep, model_id=tiny_id))
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "runs model 'tiny'" in err and "--model binary" in err
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: fake_board(dep, model_id=0xDEADBEEF))
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "a model kwsbnn does not know by name (id deadbeef)" in err


def test_silent_board_times_out_clearly(clips, monkeypatch, capsys):
    class Silent:
        def write(self, data):
            return len(data)

        def read(self, n):
            return b""

    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: Silent())
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--timeout", "0.1",
                   str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "no answer from the board on fake0 within 0.1 s" in err


def test_stream_against_a_simulated_board(clips, tmp_path, monkeypatch, capsys):
    from fixtures import tone_clip, write_wav
    dep = deployable("binary-ice40")
    board = fake_board(dep, stride=3)
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    rng = np.random.default_rng(7)
    long = np.concatenate([tone_clip(500, rng), tone_clip(1200, rng, samples=9000)])    # 1.56 s
    write_wav(tmp_path / "long.wav", long)
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--stream", "--golden", "--json",
                   str(clips), str(tmp_path / "long.wav")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["mode"] == "stream" and out["stride"] == 3
    rows = {r["clip"].rsplit("/", 1)[-1]: r for r in out["clips"]}
    # A clip of one second (or padded to one) is one window: one decision at its 101st frame.
    assert all(len(rows[n]["decisions"]) == 1 and rows[n]["frames"] == 101
               for n in ("c0.wav", "c1.wav", "c2.wav", "short.wav"))
    # 1.5625 s: 1 + 25000 // 160 = 157 frames, decisions at 101, 104, ..., 155.
    assert rows["long.wav"]["frames"] == 157
    assert [d["frame"] for d in rows["long.wav"]["decisions"]] == list(range(101, 158, 3))
    n = 4 + 19
    assert out["decisions"] == n and out["windows_equal"] == n
    assert out["agreement"] == {"equal": n, "same_class": n, "total": n}
    assert out["decisions_per_second"] > 0 and board.flow_violations == 0
    # The link's limit at the board's default 1 Mbaud: 46 bytes (460 bits) per frame.
    assert out["baud"] == 1_000_000
    assert out["link_limit"]["frames_per_second"] == pytest.approx(1e6 / 460)
    assert out["link_limit"]["decisions_per_second"] == pytest.approx(1e6 / 460 / 3)
    # A one-second clip's decision is the whole-map answer: the same class and scores as INFER.
    cfg, q = run_cmd._feature_pipeline(dep, "binary")
    g = GoldenModel(dep).run(run_cmd.clip_features(clips / "c0.wav", cfg, q)[None])
    d = rows["c0.wav"]["decisions"][0]
    assert d["class"] == int(g.classes[0]) and d["scores"] == g.scores[0].tolist()
    # The long clip's windows are slices of its whole feature map.
    from kwsbnn.sw.data import read_wav
    whole = run_cmd.wave_features(run_cmd.stream_wave(read_wav(tmp_path / "long.wav"), cfg), cfg, q)
    d = rows["long.wav"]["decisions"][-1]
    g = GoldenModel(dep).run(whole[d["frame"] - 101:d["frame"]][None, None])
    assert d["scores"] == g.scores[0].tolist()

    # --every overrides the board's stride; text output names the keyword per decision.
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--stream", "--every", "5",
                   str(tmp_path / "long.wav")])
    text = capsys.readouterr()
    assert rc == 0 and len(text.out.split(":", 1)[1].split()) == len(range(101, 158, 5))
    assert "decisions/s end to end (streaming, every 5 frames)" in text.err
    assert "the link's limit at 1000000 baud: 2174 frames/s, 435 decisions/s" in text.err


def test_stream_argument_errors_and_clips_checked_first(clips, tmp_path, monkeypatch, capsys):
    def run(*args):
        try:
            rc = cli.main(["run", *args])
        except SystemExit as e:         # argparse
            rc = e.code
        return rc, capsys.readouterr().err

    opened = []
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: opened.append(name))
    rc, err = run("--port", "fake0", "--every", "2", str(clips))
    assert rc == 2 and "--every goes with --stream" in err
    rc, err = run("--port", "fake0", "--stream", "--every", "300", str(clips))
    assert rc == 2 and "every 1 to 255 frames" in err
    from fixtures import write_wav
    write_wav(tmp_path / "stereo.wav", np.zeros((16000, 2)), channels=2)
    rc, err = run("--port", "fake0", "--stream", str(clips), str(tmp_path / "stereo.wav"))
    assert rc == 2 and "2 channels, expected mono" in err and "Traceback" not in err
    assert opened == []                 # the bad clip was found before the port was opened


def test_default_baud_and_model_are_the_boards(clips, monkeypatch, capsys):
    """Without --baud and --model, the board's (those `kwsbnn build` uses): the iCEBreaker at 1 Mbaud
    running binary, the ULX3S at 3 Mbaud running binary too."""
    from kwsbnn.boards.build import BOARDS
    bauds = []
    board = {}

    def port(name, baud):
        bauds.append(baud)
        return board["now"]
    monkeypatch.setattr(run_cmd, "open_port", port)
    assert BOARDS["icebreaker"].default_model == "binary-w64"
    assert BOARDS["ulx3s-85f"].default_model == "binary"
    for extra, want, model in (([], 1_000_000, "binary-w64"), (["--board", "ulx3s-85f"], 3_000_000, "binary"),
                               (["--baud", "115200", "--model", "binary-ice40"], 115200, "binary-ice40")):
        board["now"] = fake_board(deployable(model))
        assert cli.main(["run", "--port", "x", "--json", *extra, str(clips / "c0.wav")]) == 0
        assert bauds[-1] == want and json.loads(capsys.readouterr().out)["model"] == deployable(model).name
    # The default model on a board that runs another: the error names the --model to pass.
    board["now"] = fake_board(deployable("binary-ice40"))
    assert cli.main(["run", "--port", "x", str(clips / "c0.wav")]) == 2
    assert "pass --model binary-ice40" in capsys.readouterr().err


def test_the_icebreaker_default_model_loads_the_builds_image_by_itself(clips, tmp_path, monkeypatch,
                                                                       capsys):
    """The user path with the defaults: `kwsbnn build --board icebreaker` writes the engine-style
    `binary-w64`'s weight image to build/icebreaker/kws.weights.bin; `kwsbnn run --port P CLIP` then
    finds the board without weights, loads that image and runs the clip (= golden model)."""
    from kwsbnn.boards.build import BOARDS, board_folding
    from kwsbnn.boards.top import KwsTop
    dep = deployable(BOARDS["icebreaker"].default_model)
    image = KwsTop(dep, board_folding(dep, "icebreaker"), clk_freq=24e6, baud=1_000_000).weight_image()
    assert image is not None and len(image.words) == 1728        # engine style: 64-channel weights
    board = fake_board(dep, load_words=len(image.words))
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "build" / "icebreaker").mkdir(parents=True)
    (tmp_path / "build" / "icebreaker" / "kws.weights.bin").write_bytes(image.encode())
    rc = cli.main(["run", "--port", "fake0", "--golden", "--json", str(clips / "c0.wav")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["model"] == dep.name and board.loads == 1
    assert out["weight_image"]["words"] == 1728 and out["agreement"]["equal"] == 1


def test_engine_board_is_loaded_first(clips, tmp_path, monkeypatch, capsys):
    """An engine-style board has no weights after power-up: --load sends the build's weight image
    (checked against --model first), automatic loading takes build/<board>/kws.weights.bin, and
    without an image the command says what to do."""
    dep = deployable("binary-ice40")
    board = fake_board(dep, load_words=3)
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    image = tmp_path / "kws.weights.bin"
    image.write_bytes(p.WeightImage(p.model_id(dep), (1, 2, 3)).encode())
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--golden", "--json",
                   "--load", str(image), str(clips / "c0.wav")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["weight_image"]["words"] == 3 and board.loads == 1
    assert out["agreement"]["equal"] == 1
    # Loaded: a second run sends nothing more.
    assert cli.main(["run", "--port", "fake0", "--model", "binary-ice40", str(clips / "c0.wav")]) == 0
    assert board.loads == 1
    capsys.readouterr()

    # A fresh board and no image in build/icebreaker: a clear error.
    board = fake_board(dep, load_words=3)
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "has no weights loaded" in err and "--load" in err
    # ... and with the build's image in its default place, it is loaded automatically.
    (tmp_path / "build" / "icebreaker").mkdir(parents=True)
    (tmp_path / "build" / "icebreaker" / "kws.weights.bin").write_bytes(image.read_bytes())
    assert cli.main(["run", "--port", "fake0", "--model", "binary-ice40", str(clips / "c0.wav")]) == 0
    assert board.loads == 1
    capsys.readouterr()

    # Another model's image is refused before the port opens; a pipeline board takes none.
    other = tmp_path / "other.bin"
    other.write_bytes(p.WeightImage(0xDEADBEEF, (1, 2, 3)).encode())
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--load", str(other),
                   str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "weight image of model id deadbeef" in err
    board = fake_board(dep)
    rc = cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--load", str(image),
                   str(clips / "c0.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "takes no weight image" in err


def test_a_board_that_read_its_weights_from_flash_is_not_loaded_again(clips, tmp_path, monkeypatch,
                                                                      capsys):
    """INFO's flash byte: a board whose flash image was loaded at power-up needs no LOAD (the
    output says where the weights came from); one whose flash image was refused is loaded over
    the UART, and the message says why the flash's image was not used."""
    dep = deployable("binary-ice40")
    image = tmp_path / "kws.weights.bin"
    image.write_bytes(p.WeightImage(p.model_id(dep), (1, 2, 3)).encode())
    board = fake_board(dep, load_words=3)
    board.weights, board.flash = p.Weights.LOADED, p.FlashStatus.LOADED
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--json",
                     str(clips / "c0.wav")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert board.loads == 0 and out["weight_image"] == {"source": "flash"}

    board = fake_board(dep, load_words=3)
    board.flash = p.FlashStatus.WRONG_MODEL
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    (tmp_path / "build" / "icebreaker").mkdir(parents=True)
    (tmp_path / "build" / "icebreaker" / "kws.weights.bin").write_bytes(image.read_bytes())
    assert cli.main(["run", "--port", "fake0", "--model", "binary-ice40", str(clips / "c0.wav")]) == 0
    err = capsys.readouterr().err
    assert board.loads == 1 and "flash image was refused: the flash holds the weight image of " \
        "another model" in err


def test_run_waits_for_the_flash_verdict(clips, tmp_path, monkeypatch, capsys):
    """A board still reading its flash (INFO byte 23: READING, no weights yet) is asked again until
    its verdict; weights loaded from the flash then need no LOAD."""
    dep = deployable("binary-ice40")
    board = fake_board(dep, load_words=3)

    class Booting(type(board)):
        polls = 0

        @property
        def flash(self):            # read after the weights byte of the same INFO
            self.polls += 1
            if self.polls == 2:
                self.weights = p.Weights.LOADED      # the next INFO: loaded, and the verdict
            return p.FlashStatus.READING if self.polls <= 2 else p.FlashStatus.LOADED

        @flash.setter
        def flash(self, value):
            pass

    board.__class__ = Booting
    monkeypatch.setattr(run_cmd, "open_port", lambda name, baud: board)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--port", "fake0", "--model", "binary-ice40", "--json",
                     str(clips / "c0.wav")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert board.polls >= 3 and board.loads == 0 and out["weight_image"] == {"source": "flash"}


def test_flash_image_puts_the_weights_at_one_mebibyte():
    """`kwsbnn build`'s flash image: the bitstream, erased bytes, the weight image at 1 MiB; a
    bitstream that reaches the offset is refused."""
    from kwsbnn.boards.flash import FLASH_OFFSET, flash_image, program_commands
    from kwsbnn.errors import KwsError
    img = p.WeightImage(0x1234, (5, 6)).encode()
    data = flash_image(b"\x7e\xaa\x99\x7e" + bytes(100), img)
    assert len(data) == FLASH_OFFSET + len(img) and data[FLASH_OFFSET:] == img
    assert data[:4] == b"\x7e\xaa\x99\x7e" and set(data[104:FLASH_OFFSET]) == {0xFF}
    assert p.WeightImage.parse(data[FLASH_OFFSET:]).words == (5, 6)
    with pytest.raises(KwsError, match="more than the weight image's flash offset"):
        flash_image(bytes(FLASH_OFFSET + 1), img)
    assert program_commands("a.bin", "w.bin") == ["iceprog a.bin", "iceprog -o 1024k w.bin"]


def test_info_carries_the_flash_status():
    """INFO byte 23: the flash reader's verdict, round trip; 0 (ABSENT) from boards without one."""
    g = p.LinkGeometry(1, 101, 40, 8, 12, 32, 0xABCDEF01, 4, 1728)
    info = dataclasses.replace(g.info(24e6, p.Weights.LOADED), flash=p.FlashStatus.BAD_CRC)
    raw = info.encode()
    assert raw[p.BoardInfo.FLASH_BYTE] == 4 and p.BoardInfo.parse(raw).flash == p.FlashStatus.BAD_CRC
    assert p.BoardInfo.parse(g.info(24e6).encode()).flash == p.FlashStatus.ABSENT
