"""The bitstream flow: the skeleton network builds for the iCEBreaker with YoWASP, and the report
carries the resources, Fmax and inferences per second that users and scripts read."""

import json
import subprocess
import sys


def test_icebreaker_bitstream(tmp_path):
    out = tmp_path / "ice"
    r = subprocess.run([sys.executable, "-m", "kwsbnn.cli", "build", "--board", "icebreaker",
                        "--model", "tiny", "--out", str(out), "--json"],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    bitstream = out / "kws.bin"
    assert bitstream.is_file() and bitstream.stat().st_size > 100_000   # UP5K images are ~104 kB
    lc = rep["resources"]["logic_cells"]
    assert lc["available"] == 5280 and 100 < lc["used"] <= 5280
    assert rep["resources"]["block_ram"]["available"] == 30
    assert rep["clock_mhz"] == 12.0 and rep["fmax_mhz"] >= 12.0
    assert rep["inferences_per_second"] == 12e6 / rep["cycles_per_inference"]
