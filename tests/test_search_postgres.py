"""Two search workers share one study through a real PostgreSQL server.

The server runs from the Debian `postgresql` package's binaries (``/usr/lib/postgresql/*/bin``;
``.ci/run`` installs the package when it is missing) in a temporary folder, on a free local port.
initdb refuses to run as root, so under root (CI) the server runs as ``nobody``.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fixtures import make_speech_commands

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    if not BIN:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql; .ci/run does)")
    bindir = Path(BIN[-1]).parent
    root = os.geteuid() == 0
    # Under root, a folder in /tmp that `nobody` owns (pytest's own tmp folders are root-only).
    base = Path(tempfile.mkdtemp(prefix="kwsbnn-pg-", dir="/tmp"))
    prefix = []
    if root:
        import pwd
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        prefix = ["runuser", "-u", "nobody", "--"]
    data, port = base / "data", _free_port()

    def as_server_user(*cmd, **kw):
        return subprocess.run([*prefix, *map(str, cmd)], check=True, capture_output=True, text=True,
                              cwd=base, **kw)

    as_server_user(bindir / "initdb", "-D", data, "-U", "kws", "--auth=trust", "-E", "UTF8")
    as_server_user(bindir / "pg_ctl", "-D", data, "-l", base / "log", "-w", "-t", "60", "start", "-o",
                   f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        yield f"postgresql://kws@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_one_study(postgres, tmp_path):
    import optuna

    from kwsbnn.sw.search import open_storage

    data = make_speech_commands(tmp_path / "sc").root
    env = {**os.environ, "KWSBNN_CACHE": str(tmp_path / "cache")}
    trials = 6

    def worker(k):
        # Separate study folders: as on two machines, each keeps its own trial run folders.
        cmd = [sys.executable, "-m", "kwsbnn.cli", "search", "--data", str(data), "--trials", str(trials),
               "--tiny", "--budget", "none", "--threads", "1", "--storage", postgres, "--study", "shared",
               "--out", str(tmp_path / f"worker{k}"), "--json"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    t0 = time.time()
    procs = [worker(0), worker(1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out) for out, _ in outs]
    assert all(r["study"] == "shared" for r in results)

    study = optuna.load_study(study_name="shared", storage=open_storage(postgres))
    done = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(done) >= trials
    pids = {t.user_attrs["pid"] for t in done}
    assert pids == {p.pid for p in procs}                      # both workers contributed trials
    folders = {Path(t.user_attrs["run_dir"]).parent.parent.name for t in done
               if t.state.name == "COMPLETE"}
    assert folders <= {"worker0", "worker1"}
    for t in done:
        if t.state.name == "COMPLETE":
            assert Path(t.user_attrs["model"]).is_file()
    print(f"two workers, {len(done)} trials in {time.time() - t0:.1f} s")

    # the report reads the shared study from the server
    out = tmp_path / "report"
    from kwsbnn.cli import main
    assert main(["report", "pareto", "--storage", postgres, "--study", "shared", "--out", str(out),
                 "--no-shipped", "--json"]) == 0
    assert (out / "pareto.png").is_file()
