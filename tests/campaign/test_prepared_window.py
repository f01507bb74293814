"""The README's "one prepared window" sequence, end to end on demo with the CPU and a small
budget: perf records for the estimates, the profile, plan, run, bundle, and unpack elsewhere."""
from __future__ import annotations

import json

from bench.cli import main
from tests.campaign.helpers import write_experiment, write_priority


def test_the_prepared_window_sequence(tmp_path, capsys):
    results, fresh, out = tmp_path / "results", tmp_path / "home", tmp_path / "bundle"
    priority = write_priority(tmp_path, write_experiment(tmp_path, ["mf-bpr", "lightgcn"],
                                                         epochs=2, seeds=2))
    common = ["--priority", str(priority), "--device", "cpu", "--results-dir", str(results)]
    steps = [
        ["perf", "--models", "mf-bpr,lightgcn", "--datasets", "demo", "--device", "cpu",
         "--steps", "2", "--repeats", "1", "--results-dir", str(results)],
        ["speedcheck", "--device", "cpu", "--profile-only", "--profile-steps", "1", "--seeds",
         "2", "--results-dir", str(results)],
        ["campaign", "plan", "--budget", "300", *common],
        ["campaign", "run", "--budget", "300", *common],
        ["campaign", "bundle", "--out", str(out), "--results-dir", str(results)],
        ["campaign", "unpack", str(out), "--results-dir", str(fresh)],
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    printed = capsys.readouterr().out
    assert "fits" in printed and "no estimate" not in printed
    records = sorted(p.parent.name for p in fresh.glob("demo/*/*.json"))
    assert records == ["lightgcn", "lightgcn", "mf-bpr", "mf-bpr"]
    assert all(json.loads(p.read_text())["status"] == "ok" for p in fresh.glob("demo/*/*.json"))
    assert list(fresh.glob("perf/demo/copf-x2-profile-cpu-*.json"))
    assert len(list(fresh.glob("perf/demo/*.json"))) == len(list(results.glob("perf/demo/*.json")))
    assert (fresh / "campaign" / "log.jsonl").exists()
    assert len(list(out.iterdir())) <= 8
