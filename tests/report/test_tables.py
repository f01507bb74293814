"""Paper-style tables from hand-made records: means, marks, tests, Rel. Impr., paper columns,
and the reasons empty cells give. Every expected number is computed here by hand or with scipy."""
from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np
import pytest
from scipy import stats

from bench.cli import main
from bench.experiments import load_experiment
from bench.experiments.resolve import resolve_cell
from bench.records import config_hash, write_record
from bench.report.paper import paper_table
from bench.report.results import ResultIndex
from bench.report.tables import Options, build_table, render_csv, render_latex, render_markdown
from tests.report.synthetic import write_cell_records

EXPERIMENT = """
title = "Synthetic Table 2"
kind = "table"
paper = "table2"
datasets = ["taobao"]
seeds = 3
rel_impr = true
[[rows]]
label = "MF-BPR"
model = "mf-bpr"
[[rows]]
label = "NeuMF"
model = "no-such-model"
[[rows]]
label = "LightGCN"
model = "lightgcn"
[[rows]]
label = "PKEF"
model = "pop"
[[rows]]
label = "COPF"
model = "copf"
role = "proposed"
"""
HR = {"MF-BPR": [0.10, 0.12, 0.11], "LightGCN": [0.13, 0.12, 0.14], "COPF": [0.16, 0.17, 0.165]}
NDCG = {"MF-BPR": [0.05, 0.06, 0.055], "LightGCN": [0.07, 0.065, 0.06],
        "COPF": [0.08, 0.09, 0.085]}
N_USERS = 40


def per_user(seed: int) -> dict[int, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for run in range(3):
        users = rng.permutation(N_USERS)          # stored order differs between records
        hr = (rng.random(N_USERS) < 0.3 + 0.1 * seed).astype(float)
        out[run] = {"users": users, "HR@10": hr, "NDCG@10": hr * rng.random(N_USERS)}
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    path = root / "synthetic.toml"
    path.write_text(EXPERIMENT)
    experiment = load_experiment(path)
    results = root / "results"
    users = {"LightGCN": per_user(1), "COPF": per_user(3)}
    for cell in experiment.cells():
        if cell.label in HR:
            write_cell_records(results, cell, HR[cell.label], NDCG[cell.label],
                               users=users.get(cell.label))
    return experiment, results, users, root


def table(setup, **options):
    experiment, results, _, root = setup
    return build_table(experiment, ResultIndex(results, str(root / "no-data")), Options(**options))


def test_means_and_std_over_runs(setup):
    result = table(setup)
    for label, values in HR.items():
        s = result.stat(label, "taobao", "HR@10")
        assert s.mean == pytest.approx(np.mean(values))
        assert s.std == pytest.approx(np.std(values, ddof=1))
        assert s.n == 3
    assert result.stat("COPF", "taobao", "NDCG@10").mean == pytest.approx(0.085)


def test_best_bold_and_best_baseline_underlined(setup):
    result = table(setup)
    comp = result.comparisons[("all", "taobao", "HR@10")]
    assert comp.best == "COPF" and comp.best_baseline == "LightGCN"   # 0.13 > 0.11
    md = render_markdown(result)
    copf = next(line for line in md.splitlines() if line.startswith("| COPF"))
    light = next(line for line in md.splitlines() if line.startswith("| LightGCN"))
    assert "**0.1650**" in copf and "<u>0.1300</u>" in light
    assert "<u>" not in next(line for line in md.splitlines() if line.startswith("| MF-BPR"))


def test_paired_t_test_over_runs_matches_scipy_and_sets_the_star(setup):
    result = table(setup)
    comp = result.comparisons[("all", "taobao", "HR@10")]
    expected = stats.ttest_rel(HR["COPF"], HR["LightGCN"]).pvalue
    assert comp.seed.p == pytest.approx(expected)
    assert comp.seed.n == 3
    md = render_markdown(result)
    copf = next(line for line in md.splitlines() if line.startswith("| COPF"))
    assert ("**0.1650**★" in copf) == (expected < 0.05)
    assert "paired t-test over runs, paired by run index" in md


def test_a_significantly_worse_proposed_row_gets_a_dagger_not_a_star(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('kind = "table"\ndatasets = ["demo"]\nseeds = 3\n'
                    '[[rows]]\nlabel = "A"\nmodel = "mf-bpr"\n'
                    '[[rows]]\nlabel = "B"\nmodel = "copf"\nrole = "proposed"\n')
    experiment = load_experiment(path)
    cells = {c.label: c for c in experiment.cells()}
    results = tmp_path / "r"
    write_cell_records(results, cells["A"], [0.30, 0.32, 0.31], [0.2, 0.21, 0.22])
    write_cell_records(results, cells["B"], [0.10, 0.11, 0.13], [0.05, 0.06, 0.05])
    result = build_table(experiment, ResultIndex(results), Options())
    assert result.comparisons[("all", "demo", "HR@10")].seed.p < 0.05
    md = render_markdown(result)
    line = next(x for x in md.splitlines() if x.startswith("| B |"))
    assert "†" in line and "★" not in line
    rows = list(csv.DictReader(io.StringIO(render_csv(result))))
    assert {r["significant"] for r in rows if r["row"] == "B"} == {"worse"}


def test_a_floor_row_is_marked_and_never_the_best_baseline(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('kind = "table"\ndatasets = ["demo"]\nseeds = 3\nrel_impr = true\n'
                    '[[rows]]\nlabel = "Seen"\nmodel = "pop-seen"\nrole = "floor"\n'
                    '[[rows]]\nlabel = "A"\nmodel = "mf-bpr"\n'
                    '[[rows]]\nlabel = "B"\nmodel = "copf"\nrole = "proposed"\n')
    experiment = load_experiment(path)
    cells = {c.label: c for c in experiment.cells()}
    results = tmp_path / "r"
    write_cell_records(results, cells["Seen"], [0.40, 0.40, 0.40], [0.20, 0.20, 0.20])
    write_cell_records(results, cells["A"], [0.10, 0.12, 0.11], [0.05, 0.06, 0.07])
    write_cell_records(results, cells["B"], [0.20, 0.22, 0.21], [0.10, 0.11, 0.12])
    result = build_table(experiment, ResultIndex(results), Options())
    comp = result.comparisons[("all", "demo", "HR@10")]
    # the floor is the best row of the column, but the proposed row is compared with A
    assert comp.best == "Seen" and comp.best_baseline == "A"
    assert comp.rel_impr == pytest.approx(0.21 / 0.11 - 1)
    md = render_markdown(result)
    floor = next(x for x in md.splitlines() if x.startswith("| Seen (floor) |"))
    assert "**0.4000**" in floor and "<u>" not in floor
    assert "<u>0.1100</u>" in next(x for x in md.splitlines() if x.startswith("| A |"))
    assert "(floor): a reference without learned parameters" in md
    rows = list(csv.DictReader(io.StringIO(render_csv(result))))
    assert {r["role"] for r in rows if r["row"] == "Seen"} == {"floor"}


def test_welch_option(setup):
    result = table(setup, seed_test="welch")
    comp = result.comparisons[("all", "taobao", "NDCG@10")]
    expected = stats.ttest_ind(NDCG["COPF"], NDCG["LightGCN"], equal_var=False).pvalue
    assert comp.seed.p == pytest.approx(expected)
    assert "Welch's t-test over runs" in render_markdown(result)


@pytest.mark.parametrize("kind", ["wilcoxon", "ttest"])
def test_per_user_test_averages_run_matched_users(setup, kind):
    _, _, users, _ = setup
    result = table(setup, user_test=kind)

    def mean_by_user(per_run, metric):
        total = np.zeros(N_USERS)
        for run in range(3):
            order = np.argsort(per_run[run]["users"])
            total += per_run[run][metric][order]
        return total / 3
    for metric in ("HR@10", "NDCG@10"):
        x = mean_by_user(users["COPF"], metric)
        y = mean_by_user(users["LightGCN"], metric)
        test = stats.wilcoxon if kind == "wilcoxon" else stats.ttest_rel
        comp = result.comparisons[("all", "taobao", metric)]
        assert comp.user.p == pytest.approx(test(x, y).pvalue)
        assert comp.user.n == N_USERS


def test_rel_impr_row_and_paper_columns(setup):
    result = table(setup)
    comp = result.comparisons[("all", "taobao", "HR@10")]
    assert comp.rel_impr == pytest.approx(0.165 / 0.13 - 1)
    md = render_markdown(result)
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert "Taobao HR@10 | Taobao HR@10 (paper) | Δ" in header
    copf = [c.strip() for c in next(line for line in md.splitlines()
                                    if line.startswith("| COPF")).split("|")[1:-1]]
    paper = paper_table("table2")
    assert copf[2] == f"{paper.value('COPF', 'taobao', 'HR@10'):.4f}" == "0.1552"
    assert copf[3] == f"+{0.165 - 0.1552:.4f}"
    rel = [c.strip() for c in next(line for line in md.splitlines()
                                   if line.startswith("| Rel. Impr.")).split("|")[1:-1]]
    assert rel[1] == f"{100 * (0.165 / 0.13 - 1):.2f}%"
    assert rel[2] == "12.06%"                       # the paper's printed value
    assert rel[3] == f"{100 * (0.165 / 0.13 - 1) - 12.06:+.2f} pp"
    neumf = next(line for line in md.splitlines() if line.startswith("| NeuMF"))
    assert "_not registered_ | 0.0236 | —" in neumf   # the paper's number, no difference


def test_no_paper_option_drops_paper_columns(setup):
    md = render_markdown(table(setup, show_paper=False))
    assert "(paper)" not in md


def test_missing_cells_say_why_and_show_no_number(setup):
    md = render_markdown(table(setup))
    lines = md.splitlines()
    neumf = next(line for line in lines if line.startswith("| NeuMF"))
    pkef = next(line for line in lines if line.startswith("| PKEF"))
    assert neumf.count("_not registered_") == 2
    # pop has no records, and the data folder has no taobao: the dataset is the reason
    assert pkef.count("_dataset not found_") == 2
    assert "not registered in this suite (no model of that name): NeuMF (no-such-model)" in md


def test_not_run_when_the_data_is_there(setup, tmp_path):
    experiment, results, _, _ = setup
    data = tmp_path / "data" / "taobao"
    data.mkdir(parents=True)
    for name in ("trn_pv", "trn_cart", "trn_buy", "tst_int"):
        (data / name).write_bytes(b"")
    index = ResultIndex(results, str(tmp_path / "data"))
    result = build_table(experiment, index, Options())
    assert result.cells[("PKEF", "taobao")].reason == "not run"
    (data / "trn_pv").unlink()
    index = ResultIndex(results, str(tmp_path / "data"))
    assert build_table(experiment, index, Options()).cells[("PKEF", "taobao")].reason == \
        "dataset incomplete"


def test_stale_failed_and_other_parameter_records_are_explained(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('kind = "table"\ndatasets = ["demo"]\nseeds = 2\n'
                    '[[rows]]\nlabel = "A"\nmodel = "mf-bpr"\n'
                    '[[rows]]\nlabel = "B"\nmodel = "lightgcn"\n'
                    '[[rows]]\nlabel = "C"\nmodel = "copf"\n')
    experiment = load_experiment(path)
    cells = {c.label: c for c in experiment.cells()}
    results = tmp_path / "results"
    # A: records of an older code version
    for p in write_cell_records(results, cells["A"], [0.1, 0.2], [0.05, 0.1]):
        record = json.loads(p.read_text())
        record["config"]["model_version"] = "0-old"
        record["run_id"] = config_hash(record["config"])
        p.unlink()
        write_record(results, record)
    # B: a failure note beside where the record would be
    note = tmp_path / "results" / "demo" / "lightgcn" / "abc.failed.json"
    note.parent.mkdir(parents=True)
    resolved = resolve_cell(cells["B"])
    note.write_text(json.dumps({"status": "failed", "config": {
        "model": "lightgcn", "dataset": "demo", "protocol": "paper", "params": resolved.params}}))
    # C: only records with other parameters
    other = dataclasses.replace(cells["C"], overrides={"cl_temperature": 0.7})
    write_cell_records(results, other, [0.1, 0.2], [0.05, 0.1])
    result = build_table(experiment, ResultIndex(results), Options())
    assert result.cells[("A", "demo")].reason == "stale"
    assert result.cells[("B", "demo")].reason == "failed"
    assert result.cells[("C", "demo")].reason == "not run"
    assert "use other parameters" in result.cells[("C", "demo")].detail
    md = render_markdown(result)
    assert "_stale_" in md and "_failed_" in md and "older version" in md
    assert not result.stats


def one_row_experiment(tmp_path):
    """A table of one row (mf-bpr, label A) on demo with 2 runs, and its one cell."""
    path = tmp_path / "e.toml"
    path.write_text('kind = "table"\ndatasets = ["demo"]\nseeds = 2\n'
                    '[[rows]]\nlabel = "A"\nmodel = "mf-bpr"\n')
    experiment = load_experiment(path)
    return experiment, experiment.cells()[0]


def test_shortened_runs_are_used_but_noted_and_epochs_selects(tmp_path):
    experiment, cell = one_row_experiment(tmp_path)
    results = tmp_path / "r"
    write_cell_records(results, cell, [0.1, 0.2], [0.05, 0.1], epochs=2)
    result = build_table(experiment, ResultIndex(results), Options())
    assert result.stat("A", "demo", "HR@10").mean == pytest.approx(0.15)
    assert any("trained 2 epoch(s)" in n for n in result.cells[("A", "demo")].notes)
    write_cell_records(results, cell, [0.3, 0.4], [0.05, 0.1])     # the schedule's length
    assert build_table(experiment, ResultIndex(results), Options()).stat(
        "A", "demo", "HR@10").mean == pytest.approx(0.35)
    assert build_table(experiment, ResultIndex(results), Options(epochs=2)).stat(
        "A", "demo", "HR@10").mean == pytest.approx(0.15)


def test_paper_rule_under_paper_protocol_and_honest_records_apart(tmp_path):
    experiment, cell = one_row_experiment(tmp_path)
    results = tmp_path / "r"
    write_cell_records(results, cell, [0.1, 0.2], [0.05, 0.1], paper_rule_offset=0.01)
    index = ResultIndex(results)
    assert build_table(experiment, index, Options()).stat("A", "demo", "HR@10").mean == \
        pytest.approx(0.16)
    assert build_table(experiment, index, Options(rule="default")).stat(
        "A", "demo", "HR@10").mean == pytest.approx(0.15)
    honest = build_table(experiment, index, Options(protocol="honest"))
    assert honest.cells[("A", "demo")].reason == "not run"
    write_cell_records(results, cell, [0.3, 0.3], [0.05, 0.1], protocol="honest")
    honest = build_table(experiment, ResultIndex(results), Options(protocol="honest"))
    assert honest.stat("A", "demo", "HR@10").mean == pytest.approx(0.3)


def test_csv_is_tidy_and_complete(setup):
    rows = list(csv.DictReader(io.StringIO(render_csv(table(setup)))))
    assert len(rows) == 5 * 2                       # rows x metrics, one dataset
    copf = next(r for r in rows if r["row"] == "COPF" and r["metric"] == "HR@10")
    assert float(copf["mean"]) == pytest.approx(0.165) and copf["best"] == "1"
    assert copf["significant"] == "better"
    assert float(copf["paper"]) == 0.1552 and float(copf["diff"]) == pytest.approx(0.0098)
    assert float(copf["p_runs"]) == pytest.approx(
        stats.ttest_rel(HR["COPF"], HR["LightGCN"]).pvalue, rel=1e-5)
    neumf = next(r for r in rows if r["row"] == "NeuMF")
    assert neumf["mean"] == "" and neumf["reason"] == "not registered"


def test_latex_marks(setup):
    tex = render_latex(table(setup))
    assert "\\textbf{0.1650}" in tex and "\\underline{0.1300}" in tex
    assert "\\textit{not registered}" in tex and "\\multicolumn" in tex


def test_table6_style_groups_compare_within_pairs(tmp_path):
    path = tmp_path / "pairs.toml"
    path.write_text('kind = "table"\npaper = "table6"\ndatasets = ["demo"]\nseeds = 2\n'
                    'underline_best_baseline = false\n'
                    '[[rows]]\nlabel = "CRGCN"\nmodel = "mf-bpr"\ngroup = "a"\n'
                    '[[rows]]\nlabel = "CRGCN+DFME"\nmodel = "lightgcn"\ngroup = "a"\n'
                    'role = "proposed"\n'
                    '[[rows]]\nlabel = "PKEF"\nmodel = "pop"\ngroup = "b"\n'
                    '[[rows]]\nlabel = "PKEF+DFME"\nmodel = "copf"\ngroup = "b"\n'
                    'role = "proposed"\n')
    experiment = load_experiment(path)
    values = {"CRGCN": [0.2, 0.3], "CRGCN+DFME": [0.1, 0.1], "PKEF": [0.01, 0.02],
              "PKEF+DFME": [0.05, 0.06]}
    results = tmp_path / "r"
    for cell in experiment.cells():
        write_cell_records(results, cell, values[cell.label], values[cell.label])
    result = build_table(experiment, ResultIndex(results), Options())
    assert result.comparisons[("a", "demo", "HR@10")].best == "CRGCN"
    assert result.comparisons[("b", "demo", "HR@10")].best == "PKEF+DFME"
    md = render_markdown(result)
    assert "**0.2500**" in md and "**0.0550**" in md and "<u>" not in md


def test_report_command_prints_the_table(setup, capsys):
    experiment, results, _, root = setup
    code = main(["report", str(experiment.source), "--results-dir", str(results), "--format",
                 "md", "--std", "--data-dir", str(root / "no-data")])
    out = capsys.readouterr().out
    assert code == 0
    assert "| COPF | **0.1650 ± 0.0050**" in out
    assert "Significance (proposed vs best baseline):" in out
    code = main(["report", str(experiment.source), "--results-dir", str(results), "--format",
                 "csv"])
    assert code == 0 and capsys.readouterr().out.startswith("experiment,row,model")


def test_summary_still_works(setup, capsys):
    _, results, _, _ = setup
    assert main(["report", "summary", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "copf" in out and "lightgcn" in out
