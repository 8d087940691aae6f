"""`kwsbnn data download` against a local HTTP server that honours Range requests: resume after an
interrupted transfer, checksum verification, extraction, the offline error, and the subset rebuild
from a test set made in code. No network."""

import hashlib
import http.server
import io
import json
import tarfile
import threading

import numpy as np
import pytest

from kwsbnn import cli
from kwsbnn.errors import KwsError
from kwsbnn.sw import download as dl
from kwsbnn.sw.data import SpeechCommands


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes); ``Range: bytes=N-`` gets 206 from N. A path in
    ``server.cut`` is cut off after that many bytes, once (an interrupted transfer)."""

    def do_GET(self):
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        if rng and not self.server.ignore_range:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.server.cut.pop(self.path, None)
        self.wfile.write(data[start:start + cut] if cut is not None else data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.files, srv.cut, srv.ranges, srv.ignore_range = {}, {}, [], False
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def wav_bytes(seed: int, n: int = 16000) -> bytes:
    import wave
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.random.default_rng(seed).integers(-3000, 3000, n).astype("<i2").tobytes())
    return buf.getvalue()


def targz(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def publish(server, name: str, data: bytes, folder: str) -> dl.Archive:
    server.files[f"/{name}"] = data
    return dl.Archive(f"{server.url}/{name}", hashlib.sha256(data).hexdigest(), len(data), folder)


ARCHIVE_FILES = {"yes/00000001_nohash_0.wav": wav_bytes(1), "no/00000002_nohash_0.wav": wav_bytes(2),
                 "bed/00000003_nohash_0.wav": wav_bytes(3), "_background_noise_/white.wav": wav_bytes(4, 48000),
                 "testing_list.txt": b"no/00000002_nohash_0.wav\n", "validation_list.txt": b"\n"}


def test_interrupted_download_resumes_with_range(server, tmp_path):
    data = targz(ARCHIVE_FILES) + bytes(50_000)          # gzip ignores trailing zeros: a bigger file
    a = publish(server, "sc.tar.gz", data, "sc")
    server.cut["/sc.tar.gz"] = 20_000
    with pytest.raises(KwsError, match="interrupted at 20,000 of"):
        dl.fetch(a, tmp_path, progress=False)
    assert (tmp_path / "sc.tar.gz.part").stat().st_size == 20_000
    path = dl.fetch(a, tmp_path, progress=False)
    assert server.ranges == [None, "bytes=20000-"]
    assert path.read_bytes() == data and not (tmp_path / "sc.tar.gz.part").exists()
    dl.fetch(a, tmp_path, progress=False)                # present and verified: no request
    assert len(server.ranges) == 2


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    data = targz(ARCHIVE_FILES)
    a = publish(server, "sc.tar.gz", data, "sc")
    (tmp_path / "sc.tar.gz.part").write_bytes(b"junk" * 100)
    server.ignore_range = True
    assert dl.fetch(a, tmp_path, progress=False).read_bytes() == data


def test_checksum_mismatch_is_an_error_and_the_part_goes(server, tmp_path):
    data = targz(ARCHIVE_FILES)
    a = publish(server, "sc.tar.gz", data, "sc")
    bad = dl.Archive(a.url, "0" * 64, a.size, a.folder)
    with pytest.raises(KwsError, match="expected") as e:
        dl.fetch(bad, tmp_path, progress=False)
    assert "deleted" in str(e.value) and not list(tmp_path.glob("*.part"))


def test_offline_is_one_clear_error(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                            # nothing listens there
    a = dl.Archive(f"http://127.0.0.1:{port}/x.tar.gz", "0" * 64, 10, "x")
    with pytest.raises(KwsError, match="cannot reach .*offline") as e:
        dl.fetch(a, tmp_path, progress=False, timeout=5)
    assert "resumes" in e.value.hint


def test_download_command_extracts_the_layout_the_reader_takes(server, tmp_path, monkeypatch, capsys):
    a = publish(server, "sc.tar.gz", targz(ARCHIVE_FILES), "speech_commands_v0.02")
    monkeypatch.setitem(dl.ARCHIVES, "0.02", a)
    assert cli.main(["data", "download", "--out", str(tmp_path), "--json"]) == 0
    folder = tmp_path / "speech_commands_v0.02"
    assert json.loads(capsys.readouterr().out)["folder"] == str(folder)
    ds = SpeechCommands(folder)
    assert ds.layout == "archive"
    assert [e.path for e in ds.split("test") if e.path][0].endswith("00000002_nohash_0.wav")


def subset_fixture(tmp_path):
    """A tiny canonical test set, a full archive with noise, and shipped lists for a 3-clip subset."""
    test_files = {"yes/0000000a_nohash_0.wav": wav_bytes(10), "no/0000000b_nohash_1.wav": wav_bytes(11),
                  "_unknown_/bed_0000000c_nohash_0.wav": wav_bytes(12), "_silence_/s.wav": wav_bytes(13)}
    test = tmp_path / "test_set"
    for rel, data in test_files.items():
        (test / rel).parent.mkdir(parents=True, exist_ok=True)
        (test / rel).write_bytes(data)
    clips = ["bed/0000000c_nohash_0.wav", "no/0000000b_nohash_1.wav", "yes/0000000a_nohash_0.wav"]
    noise = {"white.wav": wav_bytes(20, 48000)}
    full = tmp_path / "full.tar.gz"
    full.write_bytes(targz({"yes/x_nohash_0.wav": wav_bytes(30),
                            **{f"_background_noise_/{k}": v for k, v in noise.items()},
                            "_background_noise_/README.md": b"noise\n"}))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "files.txt").write_text("".join(c + "\n" for c in clips))
    (lists / "validation_list.txt").write_text("no/0000000b_nohash_1.wav\n")
    (lists / "testing_list.txt").write_text("yes/0000000a_nohash_0.wav\n")
    h = hashlib.sha256()
    for c in clips:
        h.update(c.encode() + b"\0" + (test / dl.test_set_name(c)).read_bytes())
    (lists / "checksums.json").write_text(json.dumps(
        {"clips": 3, "clips_sha256": h.hexdigest(),
         "noise_sha256": {k: hashlib.sha256(v).hexdigest() for k, v in noise.items()}}))
    return test, full, lists


def test_subset_is_rebuilt_and_verified(tmp_path):
    test, full, lists = subset_fixture(tmp_path)
    res = dl.build_subset(test, full, tmp_path / "subset", lists)
    out = tmp_path / "subset"
    assert res["clips"] == 3 and res["noise_ok"] is True
    assert (out / "bed" / "0000000c_nohash_0.wav").read_bytes() == (test / "_unknown_" / "bed_0000000c_nohash_0.wav").read_bytes()
    assert sorted(p.name for p in (out / "_background_noise_").iterdir()) == ["white.wav"]
    ds = SpeechCommands(out)
    assert [e.path.split("/")[-1] for e in ds.split("test") if e.path] == ["0000000a_nohash_0.wav"]
    (test / "no" / "0000000b_nohash_1.wav").write_bytes(wav_bytes(99))     # another clip
    with pytest.raises(KwsError, match="differ"):
        dl.build_subset(test, full, tmp_path / "subset2", lists)
    (test / "no" / "0000000b_nohash_1.wav").unlink()
    with pytest.raises(KwsError, match="1 of the subset's 3 clips are not in"):
        dl.build_subset(test, full, tmp_path / "subset3", lists)


def test_shipped_subset_lists_are_consistent():
    spec = dl.subset_lists()
    files = set(spec["files"])
    assert len(files) == spec["checksums"]["clips"] == 3719
    assert set(spec["testing"]) <= files and set(spec["validation"]) <= files
    assert len(spec["testing"]) == 394 and len(spec["validation"]) == 366
    assert len(spec["checksums"]["noise_sha256"]) == 6
    assert all(dl.test_set_name(f).split("/")[0] in ("_unknown_", f.split("/")[0]) for f in files)
    for a in dl.ARCHIVES.values():
        assert len(a.sha256) == 64 and a.url.startswith("http://download.tensorflow.org/data/")
