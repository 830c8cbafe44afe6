"""benchmarks/gpu_check.py runs its every row with --tiny on a CPU (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_check_tiny_produces_every_row(tiny_model, tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", BENCHMARKS / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # dataclasses look their module up
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "rows.json"
    assert gpu_check.main(["--tiny", "--tokens", "4", "--json", str(out), "--work", str(tmp_path)], tiny_model) == 0
    rows = json.loads(out.read_text())
    assert [row["name"] for row in rows] == list(gpu_check.ROWS)
    printed = capsys.readouterr().out
    for row in rows:
        assert row["name"] in printed
        for value in (row["toolkit"], row["plain"]):  # a figure, or the reason there is none
            assert (isinstance(value, float) and value >= 0) or (isinstance(value, str) and value)
    decode = rows[0]
    assert isinstance(decode["toolkit"], float) and isinstance(decode["plain"], float)
