"""`bench report summary` pools only repeat runs of one configuration, marks stale code, and
every report names the files it could not use (on stderr, exit code 0)."""
from __future__ import annotations

import csv
import gzip
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


def consistent_users(hr, ndcg) -> dict[int, dict[str, np.ndarray]]:
    """Per-user values of 4 users per run whose means are the run's HR@10 and NDCG@10 (as a real
    record's are); each hr[i] is a multiple of 1/4 and each user with a hit gets ndcg[i] * 4 / hits."""
    out = {}
    for run, (h, n) in enumerate(zip(hr, ndcg)):
        hits = int(round(4 * h))
        hit = np.array([1.0] * hits + [0.0] * (4 - hits))
        out[run] = {"users": np.arange(4), "HR@10": hit, "NDCG@10": hit * n * 4 / hits}
    return out


@pytest.fixture
def damaged(tmp_path):
    """Records of COPF and LightGCN on demo; one COPF record truncated, one LightGCN users file
    overwritten with bytes that are not gzip."""
    hr, ndcg = [0.25, 0.5], [0.1, 0.2]
    copf = write_cell_records(tmp_path, cell("COPF"), hr, ndcg, users=consistent_users(hr, ndcg))
    lightgcn = write_cell_records(tmp_path, cell("LightGCN"), hr, ndcg,
                                  users=consistent_users(hr, ndcg))
    copf[1].write_text(copf[1].read_text()[:120])
    garbage = per_user_path(lightgcn[0])
    garbage.write_bytes(b"this is not a gzip file\n")
    return tmp_path, copf[1], garbage


def test_summary_names_a_truncated_record_and_a_garbage_users_file(damaged, capsys):
    results, truncated, garbage = damaged
    rows, err = summary_rows(capsys, results)
    assert [(r["model"], r["runs"]) for r in rows] == [("copf", "1"), ("lightgcn", "2")]
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"warning: record {truncated} is truncated or not valid JSON; "
                               "it is not counted")
    assert lines[1].startswith(f"warning: per-user values {garbage} is not a whole "
                               "gzip-compressed table")


def test_a_paper_table_names_them_too_and_exits_0(damaged, capsys):
    results, truncated, garbage = damaged
    code = main(["report", "table2", "--datasets", "demo", "--results-dir", str(results),
                 "--data-dir", str(results / "no-data")])
    err = capsys.readouterr().err
    assert code == 0
    assert f"record {truncated}" in err and f"per-user values {garbage}" in err
    code = main(["report", "all", "--datasets", "demo", "--results-dir", str(results),
                 "--data-dir", str(results / "no-data"), "--figures-dir",
                 str(results.parent / "figures"), "--no-figures"])
    err = capsys.readouterr().err
    assert code == 0 and str(truncated) in err and str(garbage) in err


def test_a_users_file_cut_short_at_a_line_end_is_named(tmp_path, capsys):
    hr, ndcg = [0.5], [0.2]
    path, = write_cell_records(tmp_path, cell("COPF"), hr, ndcg, users=consistent_users(hr, ndcg))
    text = gzip.decompress(per_user_path(path).read_bytes())
    whole_lines = text[: text.rindex(b"\n", 0, len(text) - 1) + 1]       # the last user dropped
    per_user_path(path).write_bytes(gzip.compress(whole_lines))
    _, err = summary_rows(capsys, tmp_path)
    assert (f"warning: per-user values {per_user_path(path)} does not agree with its record: "
            "best_test/full/default/HR@10 averages 0.666667 over 3 users, the record says "
            "0.500000") in err


def test_sound_results_and_failure_notes_give_no_warning(tmp_path, capsys):
    hr, ndcg = [0.75], [0.3]
    path, = write_cell_records(tmp_path, cell("COPF"), hr, ndcg, users=consistent_users(hr, ndcg))
    path.with_name("0123456789abcdef.failed.json").write_text('{"config": {"dataset": "demo", '
                                                              '"model": "copf"}}\n')
    (tmp_path / "perf" / "demo").mkdir(parents=True)
    (tmp_path / "perf" / "demo" / "pop-cpu-1.json").write_text("{}\n")
    _, err = summary_rows(capsys, tmp_path)
    assert "warning" not in err
