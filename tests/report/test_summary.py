"""`bench report summary` pools only repeat runs of one configuration and marks stale code."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from bench.cli import main
from bench.experiments import load_experiment
from bench.records import iter_records, per_user_path
from bench.report.summary import summarize
from tests.report.synthetic import write_cell_records


def cell(label: str):
    return next(c for c in load_experiment("table2").cells(["demo"]) if c.label == label)


def summary_rows(capsys, results, *extra) -> tuple[list[dict], str]:
    code = main(["report", "summary", "--results-dir", str(results), "--format", "csv", *extra])
    captured = capsys.readouterr()
    assert code == 0
    return list(csv.DictReader(io.StringIO(captured.out))), captured.err


def test_runs_of_other_epochs_get_a_row_of_their_own(tmp_path, capsys):
    copf = cell("COPF")
    write_cell_records(tmp_path, copf, [0.10, 0.14], [0.05, 0.07], epochs=20)
    write_cell_records(tmp_path, copf, [0.02, 0.06], [0.01, 0.03], epochs=8)
    rows, _ = summary_rows(capsys, tmp_path)
    assert [(r["model"], r["setting"], r["runs"], r["code"]) for r in rows] == [
        ("copf", "epochs=20", "2", "current"), ("copf", "epochs=8", "2", "current")]
    assert float(rows[0]["HR@10"]) == pytest.approx(0.12)
    assert float(rows[0]["HR@10 std"]) == pytest.approx(np.sqrt(2 * 0.02 ** 2))   # ddof 1
    assert float(rows[1]["HR@10"]) == pytest.approx(0.04)
    assert float(rows[1]["NDCG@10"]) == pytest.approx(0.02)


def test_base_seed_and_stale_code_are_told_apart_and_marked(tmp_path, capsys):
    lightgcn = cell("LightGCN")
    write_cell_records(tmp_path, lightgcn, [0.2, 0.3], [0.1, 0.1])
    write_cell_records(tmp_path, lightgcn, [0.4], [0.2], base_seed=7)
    write_cell_records(tmp_path, lightgcn, [0.6], [0.3], model_version="0-older")
    rows, err = summary_rows(capsys, tmp_path)
    current = rows[0]["setting"].split(" code=")[1]
    assert [(r["setting"], r["runs"], r["code"], r["HR@10"]) for r in rows] == [
        (f"epochs=200 base_seed=2025 code={current}", "2", "current", "0.25"),
        (f"epochs=200 base_seed=7 code={current}", "1", "current", "0.4"),
        ("epochs=200 base_seed=2025 code=0-older", "1", "stale", "0.6")]
    assert "stale" in err and "older version" in err


def test_the_run_summary_of_one_configuration_is_one_row(tmp_path):
    write_cell_records(tmp_path, cell("COPF"), [0.1, 0.2, 0.3], [0.1, 0.1, 0.1])
    rows = summarize([r for _, r in iter_records(tmp_path)])
    assert len(rows) == 1 and rows[0]["runs"] == 3 and rows[0]["setting"] == "epochs=200"
    assert rows[0]["HR@10"] == pytest.approx(0.2)
