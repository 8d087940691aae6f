"""The build's progress lines: the phase follows the files the tools write, with elapsed time."""

import time

from kwsbnn.boards.progress import BuildTicker


def test_ticker_reports_phases_from_fresh_files(tmp_path):
    (tmp_path / "kws.json").write_text("{}")         # left from an earlier build
    old = time.time() - 3600
    import os
    os.utime(tmp_path / "kws.json", (old, old))
    lines = []
    with BuildTicker(tmp_path, "kws", lines.append, every=0.05) as t:
        time.sleep(0.2)
        assert t.phase() == "yosys: synthesis"
        (tmp_path / "kws.json").write_text("{}")
        assert t.phase() == "nextpnr: place and route"
        time.sleep(0.2)
        (tmp_path / "kws.asc").write_text("")
        assert t.phase() == "packing the bitstream"
        time.sleep(0.2)
    assert lines[0].strip().startswith("yosys: synthesis ...") and lines[0].endswith(" s")
    assert any("nextpnr" in m for m in lines) and any("packing" in m for m in lines)
    n = len(lines)
    time.sleep(0.15)
    assert len(lines) == n                              # stopped with the block
