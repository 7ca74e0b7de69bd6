"""Benchmark figures land in their own section of docs/performance.md, replaced on every run."""

from __future__ import annotations

from pathlib import Path

import pytest

from opslab.bench.report import report_measures


def test_a_benchmark_rewrites_only_its_own_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = tmp_path / "performance.md"
    document.write_text("# Performance\n\nhand-written notes\n")
    report_measures(document, "bench-x", "1000 orders.", [("throughput", "70 orders/s", ">= 50 %", "68, 70, 71")])
    report_measures(document, "bench-y", "", [("latency", "9 ms", "-", "9")])
    report_measures(document, "bench-x", "1000 orders.", [("throughput", "90 orders/s", ">= 50 %", "90")])
    text = document.read_text()
    assert text.startswith("# Performance\n\nhand-written notes\n")
    assert text.count("<!-- bench-x:start -->") == 1 and "| throughput | 90 orders/s | >= 50 % | 90 |" in text
    assert "70 orders/s" not in text and "| latency | 9 ms | - | 9 |" in text
    assert text.index("bench-x:start") < text.index("bench-y:start")
    assert ": 1000 orders." in text and "cores" in text
    assert "throughput" in capsys.readouterr().out


def test_no_record_only_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_measures(None, "bench-x", "", [("throughput", "70 orders/s", "-", "70")])
    assert "70 orders/s" in capsys.readouterr().out and not list(tmp_path.iterdir())
