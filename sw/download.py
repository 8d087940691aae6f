"""Speech Commands from its official archives: download (resumed, verified), extract, rebuild the subset.

The archives and their SHA-256 are pinned here, as torchaudio pins them:

- ``0.02``: the full v0.02 archive (every word folder, ``_background_noise_/``, the split lists),
  2,428,923,189 bytes, SHA-256 ``af14739e...`` as published in torchaudio's
  ``torchaudio/datasets/speechcommands.py`` (``_CHECKSUMS``) and TensorFlow Datasets'
  ``tensorflow_datasets/datasets/speech_commands/checksums.tsv``;
- ``0.02-test``: the canonical v0.02 test set (``_silence_/``, ``_unknown_/``, ten keyword folders),
  112,563,277 bytes, SHA-256 ``cc2a00c1...`` as listed in the same TFDS ``checksums.tsv`` (and pinned
  alike by MLPerf Tiny keyword-spotting harnesses). Neither value could be recomputed here (no
  network where this was written): a mismatch is reported, never ignored.

:func:`fetch` downloads to ``NAME.part``, resumes a partial file with an HTTP ``Range`` request
(a server that ignores it restarts the file), shows a progress bar on stderr, checks size and
SHA-256 and only then renames the file. :func:`extract` unpacks an archive into the folder layout
:class:`~kwsbnn.sw.data.SpeechCommands` reads. :func:`build_subset` rebuilds the speaker subset the
project's figures use (``sw/data-lists/speech_commands_subset``: its file names, split lists and
checksums) from the test-set archive, plus the six ``_background_noise_`` files of the full archive.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kwsbnn.errors import KwsError

from .data import KEYWORDS, NOISE_DIR

LISTS = Path(__file__).resolve().parent / "data-lists"
SUBSET = "speech_commands_subset"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str
    size: int
    folder: str          # the folder it extracts into, under --out

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


ARCHIVES = {
    "0.02": Archive("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
                    "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
                    2_428_923_189, "speech_commands_v0.02"),
    "0.02-test": Archive("http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
                         "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
                         112_563_277, "speech_commands_test_set_v0.02"),
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _bar(total: int, initial: int, name: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, file=sys.stderr, disable=not enabled, leave=True)


def fetch(archive: Archive, out: Path, progress: bool = True, timeout: float = 30.0) -> Path:
    """``out/<archive file>``, downloaded (or resumed from ``.part``) and verified; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / archive.filename
    if dest.is_file() and dest.stat().st_size == archive.size and sha256_of(dest) == archive.sha256:
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if have > archive.size:
        part.unlink()
        have = 0
    if have < archive.size:
        req = urllib.request.Request(archive.url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise KwsError(f"{archive.url}: the server answered {e.code} {e.reason}",
                           "try again later, or download the file by hand into "
                           f"{out} (it is then verified and used)") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise KwsError(f"cannot reach {archive.url} ({reason}): offline?",
                           f"connect to the network and run the command again (a partial download "
                           f"resumes), or copy {archive.filename} into {out}") from None
        with resp:
            if have and resp.status != 206:          # the server ignored the Range: start again
                have = 0
            try:
                with open(part, "ab" if have else "wb") as f, \
                        _bar(archive.size, have, archive.filename, progress) as bar:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        f.write(block)
                        bar.update(len(block))
            except (http.client.HTTPException, OSError) as e:
                _interrupted(archive, part, type(e).__name__)
    if part.stat().st_size < archive.size:               # the connection closed early
        _interrupted(archive, part, "connection closed")
    size = part.stat().st_size
    digest = sha256_of(part)
    if size != archive.size or digest != archive.sha256:
        part.unlink()
        raise KwsError(f"{archive.filename}: {size:,} bytes with SHA-256 {digest[:16]}..., expected "
                       f"{archive.size:,} bytes with {archive.sha256[:16]}... (deleted)",
                       "run the command again; if it fails the same way, the file on the server "
                       "changed: report it")
    part.replace(dest)
    return dest


def _interrupted(archive: Archive, part: Path, why: str):
    got = part.stat().st_size if part.is_file() else 0
    raise KwsError(f"{archive.filename}: download interrupted at {got:,} of {archive.size:,} bytes ({why})",
                   "run the same command again: it resumes where it stopped")


def _members(tar: tarfile.TarFile, keep=None):
    for m in tar:
        name = m.name[2:] if m.name.startswith("./") else m.name
        if not (m.isfile() or m.isdir()) or name.startswith("/") or ".." in Path(name).parts:
            continue
        if keep is None or keep(name):
            m.name = name
            yield m


def extract(archive_path: Path, folder: Path, keep=None) -> Path:
    """Unpack ``archive_path`` (tar.gz) into ``folder`` (through a temporary folder, renamed at the
    end); ``keep(name)`` selects members. Files only: no links, nothing outside ``folder``."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive_path, "r:gz") as tar:
            for m in _members(tar, keep):
                tar.extract(m, tmp, set_attrs=False, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KwsError(f"{archive_path}: cannot unpack ({e})", "delete it and download it again") from None
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder


def download(version: str, out: Path, progress: bool = True) -> Path:
    """Fetch and extract one archive (``0.02`` or ``0.02-test``) into ``out/<folder>``; the folder."""
    if version not in ARCHIVES:
        raise KwsError(f"unknown Speech Commands version {version!r}", f"use one of {', '.join(ARCHIVES)}")
    a = ARCHIVES[version]
    folder = Path(out) / a.folder
    stamp = folder / ".kwsbnn-archive"
    if stamp.is_file() and stamp.read_text().strip() == a.sha256:
        return folder
    path = fetch(a, Path(out), progress)
    extract(path, folder)
    stamp.write_text(a.sha256 + "\n")
    return folder


def subset_lists(lists: Path = LISTS / SUBSET) -> dict:
    """The shipped description of the subset: ``files``, ``validation``, ``testing`` and ``checksums``."""
    read = lambda n: (lists / n).read_text().split()       # noqa: E731
    return {"files": read("files.txt"), "validation": read("validation_list.txt"),
            "testing": read("testing_list.txt"), "checksums": json.loads((lists / "checksums.json").read_text())}


def test_set_name(rel: str) -> str:
    """Where a subset clip ``word/<speaker>_nohash_<n>.wav`` lies in the canonical test set: its keyword
    folder, or ``_unknown_/<word>_<speaker>_nohash_<n>.wav``."""
    word, name = rel.split("/", 1)
    return rel if word in KEYWORDS else f"_unknown_/{word}_{name}"


def clips_digest(root: Path, files) -> str:
    """SHA-256 over the clips' relative names and bytes, in the order given."""
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0" + (Path(root) / rel).read_bytes())
    return h.hexdigest()


def build_subset(test_set: Path, noise_archive: Path | None, out: Path, lists: Path = LISTS / SUBSET) -> dict:
    """Rebuild the subset folder ``out`` from the extracted canonical test set ``test_set`` and (for
    ``_background_noise_/``) the full archive file ``noise_archive``; verify it against the shipped
    checksums. Returns {"clips", "clips_ok", "noise_ok", "missing"}; a KwsError when clips are missing
    or differ."""
    spec = subset_lists(lists)
    out = Path(out)
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    missing = [rel for rel in spec["files"] if not (Path(test_set) / test_set_name(rel)).is_file()]
    if missing:
        raise KwsError(f"{test_set}: {len(missing)} of the subset's {len(spec['files'])} clips are not in "
                       f"this test set (first: {test_set_name(missing[0])})",
                       "give the extracted canonical v0.02 test set (kwsbnn data download --version 0.02-test)")
    for rel in spec["files"]:
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(test_set) / test_set_name(rel), dst)
    if clips_digest(tmp, spec["files"]) != spec["checksums"]["clips_sha256"]:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KwsError(f"{test_set}: the clips differ from the subset's (SHA-256 over {len(spec['files'])} clips)",
                       "download the official canonical v0.02 test set again")
    (tmp / "validation_list.txt").write_text("".join(f + "\n" for f in spec["validation"]))
    (tmp / "testing_list.txt").write_text("".join(f + "\n" for f in spec["testing"]))
    noise_ok = None
    if noise_archive is not None:
        want = spec["checksums"]["noise_sha256"]
        extract(noise_archive, tmp / ".noise",
                keep=lambda n: n.startswith(NOISE_DIR + "/") and n.endswith(".wav"))
        (tmp / ".noise" / NOISE_DIR).replace(tmp / NOISE_DIR)
        shutil.rmtree(tmp / ".noise")
        got = {p.name: sha256_of(p) for p in sorted((tmp / NOISE_DIR).glob("*.wav"))}
        noise_ok = got == want
        if not noise_ok:
            shutil.rmtree(tmp, ignore_errors=True)
            raise KwsError(f"{noise_archive}: its {NOISE_DIR} files differ from the subset's",
                           "download the official v0.02 archive again")
    (tmp / "README.md").write_text(
        "# Speech Commands v0.02, speaker subset (rebuilt by `kwsbnn data download --subset`)\n\n"
        f"{len(spec['files'])} clips of the canonical v0.02 test set (unknown words moved from _unknown_/ "
        "into word folders), the split lists validation_list.txt and testing_list.txt, and the\n"
        "background-noise recordings of the full v0.02 archive. Speech Commands is (c) Google, CC BY 4.0.\n"
        "Every clip comes from the official test set: do not score a model trained here on that set.\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return {"folder": str(out), "clips": len(spec["files"]), "clips_ok": True, "noise_ok": noise_ok}
