"""`bench run --experiment FILE` trains exactly the experiment's trials, skips stored ones on a
rerun, and `bench report FILE` finds them again."""
from __future__ import annotations

from bench.cli import main
from bench.records import iter_records

EXPERIMENT = """
title = "Tiny"
kind = "table"
datasets = ["demo"]
seeds = 2
[[rows]]
label = "Popularity"
model = "pop"
[[rows]]
label = "MF"
model = "mf-bpr"
role = "proposed"
[dataset_params.demo]
lr = 0.005
"""


def test_run_then_rerun_then_report(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(EXPERIMENT)
    results = str(tmp_path / "results")
    argv = ["run", "--experiment", str(path), "--epochs", "0", "--device", "cpu",
            "--results-dir", results, "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "4 trial(s) to run, 0 already stored" in first
    records = [r for _, r in iter_records(results)]
    assert sorted((r["config"]["model"], r["config"]["run"]) for r in records) == [
        ("mf-bpr", 0), ("mf-bpr", 1), ("pop", 0), ("pop", 1)]
    mf = next(r for r in records if r["config"]["model"] == "mf-bpr")
    assert mf["config"]["params"]["lr"] == 0.005 and mf["config"]["params"]["epochs"] == 0
    assert main(argv) == 0
    assert "0 trial(s) to run, 4 already stored" in capsys.readouterr().out
    assert main(["report", str(path), "--results-dir", results]) == 0
    out = capsys.readouterr().out
    mf_line = next(line for line in out.splitlines() if line.startswith("| MF |"))
    pop_line = next(line for line in out.splitlines() if line.startswith("| Popularity |"))
    assert "_not" not in mf_line and "_not" not in pop_line
    assert "mean over 2 run(s) per cell" in out
