"""``bench speedcheck --profile`` on the CPU: a small operator-level summary of COPF's S-run step,
written as a perf record."""
from __future__ import annotations

import json

from bench.cli import main
from bench.step_profile import _intervals_gap, is_sparse


def test_idle_time_is_what_no_interval_covers():
    span, idle, gaps = _intervals_gap([(15.0, 20.0), (0.0, 10.0), (18.0, 30.0)])
    assert (span, idle, gaps) == (30.0, 5.0, 1)
    assert _intervals_gap([]) == (0.0, 0.0, 0)


def test_sparse_names():
    assert is_sparse("aten::_sparse_mm") and is_sparse("void cusparse::csrmm_kernel<float>")
    assert not is_sparse("aten::bmm")


def test_profile_writes_a_small_summary(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["speedcheck", "--device", "cpu", "--profile-only", "--profile-steps", "1",
                 "--seeds", "2", "--results-dir", str(results)]) == 0
    path, = results.glob("perf/demo/copf-x2-profile-cpu-*.json")
    assert path.stat().st_size < 64 * 1024
    record = json.loads(path.read_text())
    assert record["kind"] == "perf" and record["environment"]["device"] == "cpu"
    summary = record["measurement"]["profile"]
    assert summary["members"] == 2 and summary["steps_profiled"] == 1
    assert summary["operators_per_step"] > 0 and summary["kernels_per_step"] is None
    shares = [row["share"] for row in summary["by_name"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-6
    assert 0 < summary["sparse_share"] < 1        # COPF propagates through sparse graphs
    assert 0 <= summary["idle"]["idle_share"] < 1
    assert "profile of COPF x2" in capsys.readouterr().out
