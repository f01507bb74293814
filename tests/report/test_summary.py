"""`bench report summary` pools only repeat runs of one configuration, leaves out (or, with
--stale, marks) rows of older model code, prints settings compactly within 120 columns, and every
report names the files it could not use (on stderr, exit code 0)."""
from __future__ import annotations

import csv
import gzip
import io
import json

import numpy as np
import pytest

from bench.cli import main
from bench.experiments import load_experiment
from bench.records import config_hash, iter_records, per_user_path, write_record
from bench.report.summary import compact_text, distinguishing_settings, summarize
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
    rows, err = summary_rows(capsys, tmp_path, "--stale")
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


def with_params(paths, **params) -> None:
    """Rewrite hand-made records with other parameters (and the run id that goes with them)."""
    for path in paths:
        record = json.loads(path.read_text())
        record["config"]["params"].update(params)
        record["run_id"] = config_hash(record["config"])
        path.unlink()
        write_record(path.parents[2], record)


def test_rows_of_older_code_are_left_out_and_counted_unless_asked_for(tmp_path, capsys):
    lightgcn = cell("LightGCN")
    write_cell_records(tmp_path, lightgcn, [0.2, 0.3], [0.1, 0.1])
    write_cell_records(tmp_path, lightgcn, [0.6], [0.3], model_version="0-older")
    write_cell_records(tmp_path, lightgcn, [0.5], [0.2], model_version="0-older", epochs=8)
    write_cell_records(tmp_path, cell("COPF"), [0.4], [0.2], model_version="0-older")
    rows, err = summary_rows(capsys, tmp_path)
    # with the older rows gone, nothing sets the current one apart: no code= in its setting
    assert [(r["model"], r["setting"], r["code"]) for r in rows] == [
        ("lightgcn", "epochs=200", "current")]
    assert "3 rows of older model code left out (--stale shows them)" in err
    assert main(["report", "summary", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last == "3 rows of older model code left out (--stale shows them)"
    rows, err = summary_rows(capsys, tmp_path, "--stale")
    assert [r["code"] for r in rows] == ["stale", "current", "stale", "stale"]
    assert "left out" not in err and "older version" in err


def test_only_older_code_says_so_and_exits_1(tmp_path, capsys):
    write_cell_records(tmp_path, cell("COPF"), [0.4], [0.2], model_version="0-older")
    assert main(["report", "summary", "--results-dir", str(tmp_path)]) == 1
    assert ("1 row of older model code left out (--stale shows them)"
            in capsys.readouterr().out)


@pytest.mark.parametrize("value, text", [
    (1 / 3, "1/3"), ([1 / 3] * 3, "1/3,1/3,1/3"), ([0.0, 1 / 6, 5 / 6], "0,1/6,5/6"),
    (2 / 3, "2/3"), (0.1 * 3, "0.3"), (0.5, "0.5"), (0.0001, "0.0001"), (1e-05, "1e-05"),
    (0.123456, "0.123"), (1234.5678, "1.23e+03"), (300.0, "300"), ([2, 2, 2], "2,2,2"),
    (["cart", "pv"], "cart,pv"), ([[1, 2], [3]], "[1,2],[3]"), ([], "[]"), (True, "True"),
    (None, "None"), ("bpr", "bpr"), (float("nan"), "nan")])
def test_settings_are_written_compactly(value, text):
    assert compact_text(value) == text


def test_rounding_that_would_make_two_rows_alike_keeps_the_full_value():
    base = {"model": "m", "params": {"epochs": 10}}
    configs = [{**base, "params": {"epochs": 10, "lr": lr, "w": w}}
               for lr, w in ((0.12341, [1 / 3, 2 / 3]), (0.12342, [0.0, 1.0]))]
    assert distinguishing_settings(configs, compact=True) == [
        "epochs=10 lr=0.12341 w=1/3,2/3", "epochs=10 lr=0.12342 w=0,1"]
    assert distinguishing_settings(configs) == [
        "epochs=10 lr=0.12341 w=[0.3333333333333333,0.6666666666666666]",
        "epochs=10 lr=0.12342 w=[0.0,1.0]"]


def test_a_long_setting_becomes_a_footnote_and_the_table_keeps_within_120_columns(tmp_path,
                                                                                   capsys):
    copf = cell("COPF")
    write_cell_records(tmp_path, copf, [0.10, 0.14], [0.05, 0.07], epochs=20)
    write_cell_records(tmp_path, cell("LightGCN"), [0.3], [0.2])
    long = write_cell_records(tmp_path, copf, [0.2], [0.1])
    with_params(long, loss_weights=[0.0, 1 / 3, 2 / 3], layers=[2, 2, 2], mtl_layers=[2, 2, 2],
                cl_temperature=0.2, batch_size=4096, lr=0.0004, eval_every=10, n_pairs=80,
                sampler="multi-behavior-interactions", aggregation="mean", fit_scale=0.25)
    assert main(["report", "summary", "--results-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert lines[0] == "every row: dataset=demo, protocol=paper"
    table = [line for line in lines if line.startswith("|")]
    # both COPF rows name every setting that differs; LightGCN's one row needs no key
    assert "| [a] " in table[2] and "| 0.2000 " in table[2]
    assert "| [b] " in table[3] and "| 0.1200 ± 0.0283 " in table[3]
    assert "| lightgcn | epochs=200 " in table[4]
    notes = "\n".join(lines[lines.index(table[-1]) + 1:])
    assert notes.startswith("[a] epochs=200 ") and "\n[b] epochs=20 " in notes
    for setting in ("loss_weights=0,1/3,2/3", "layers=2,2,2", "lr=0.0004",
                    "sampler=multi-behavior-interactions"):
        assert setting in notes.split()
    rows, _ = summary_rows(capsys, tmp_path)     # csv keeps every value as recorded
    assert "loss_weights=[0.0,0.3333333333333333,0.6666666666666666]" in rows[0]["setting"]
    assert rows[0]["HR@10 std"] == "0.0" and rows[1]["HR@10 std"] != "0.0"
