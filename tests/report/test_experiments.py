"""Experiment files parse, expand into the right cells and trials, and fail with clear errors."""
from __future__ import annotations

import pytest

from bench.cli import main
from bench.errors import ConfigError
from bench.experiments import experiment_names, load_experiment
from bench.experiments.resolve import NOT_REGISTERED, resolve_cell
from bench.report.paper import paper_table

SHIPPED = ["copf_taobao_defaults", "fig3_layers", "fig4_temperature", "fig5_scaling",
           "fig6_patterns", "table1", "table2", "table3", "table4", "table5", "table6"]


def test_every_paper_table_and_figure_has_a_file():
    assert experiment_names() == SHIPPED
    for name in SHIPPED:
        experiment = load_experiment(name)
        assert experiment.name == name and experiment.title


@pytest.mark.parametrize("name", ["table2", "table3", "table4", "table5", "table6"])
def test_table_rows_are_the_papers_rows_in_order(name):
    experiment = load_experiment(name)
    paper = paper_table(name)
    # floor rows (no learned parameters, not in the paper) sit beside the paper's rows
    floors = [r.label for r in experiment.rows if r.role == "floor"]
    extras = [r.label for r in experiment.rows if not r.in_paper and r.role != "floor"]
    assert [r.paper_key for r in experiment.rows if r.in_paper] == list(paper.rows)
    assert not set(floors + extras) & set(paper.rows)
    if name == "table2":
        assert floors == ["Pop", "Pop-seen", "ItemKNN"]
        assert extras == ["LightGCN-M"]       # learned, but not a row of the paper's Table 2
    # the paper's datasets; Table 2 also has the two the paper does not report (no paper numbers)
    extra_datasets = ("jd", "retailrocket") if name == "table2" else ()
    assert experiment.datasets == ("beibei", "taobao", "tmall") + extra_datasets
    assert experiment.seeds == 5
    assert not set(extra_datasets) & set(paper.datasets)
    proposed = [r for r in experiment.rows if r.role == "proposed"]
    groups = {r.group for r in experiment.rows}
    assert len(proposed) == len(groups)      # one proposed row per compared group
    assert len(experiment.cells()) == len(experiment.datasets) * len(experiment.rows)


def test_table6_compares_pairs():
    experiment = load_experiment("table6")
    groups = {}
    for row in experiment.rows:
        groups.setdefault(row.group, []).append((row.label, row.role))
    assert len(groups) == 5
    for members in groups.values():
        assert sorted(role for _, role in members) == ["baseline", "proposed"]


def test_fig3_sweeps_both_layer_lists_one_entry_per_behavior():
    experiment = load_experiment("fig3_layers")
    cells = experiment.cells()
    assert len(cells) == 2 * 4 * 3            # series x values x datasets
    tmall = [c for c in cells if c.dataset == "tmall" and c.label == "COGCN layers"]
    assert [c.overrides["layers"] for c in tmall] == [[v] * 4 for v in (1, 2, 3, 4)]
    beibei = [c for c in cells if c.dataset == "beibei" and c.label == "DFME layers"]
    assert [c.overrides["mtl_layers"] for c in beibei] == [[v] * 3 for v in (1, 2, 3, 4)]


def test_fig4_and_fig5_sweep_sizes_and_fixed_beta():
    fig4 = load_experiment("fig4_temperature")
    assert fig4.values == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8) and len(fig4.cells()) == 21
    assert {c.overrides["cl_temperature"] for c in fig4.cells()} == set(fig4.values)
    fig5 = load_experiment("fig5_scaling")
    assert fig5.values == (0.1, 0.2, 0.4, 0.8) and len(fig5.cells()) == 12
    assert all(c.overrides["fit_beta"] == 0.001 for c in fig5.cells())
    assert sorted({c.overrides["fit_alpha"] for c in fig5.cells()}) == [0.1, 0.2, 0.4, 0.8]


def test_overrides_equal_to_defaults_are_dropped_so_trials_are_shared():
    fig4 = load_experiment("fig4_temperature")
    table2 = load_experiment("table2")
    t = next(resolve_cell(c) for c in fig4.cells(["demo"]) if c.x == 0.1)
    copf = next(resolve_cell(c) for c in table2.cells(["demo"]) if c.label == "COPF")
    assert t.params == copf.params and t.overrides == copf.overrides == {}
    other = next(resolve_cell(c) for c in fig4.cells(["demo"]) if c.x == 0.5)
    assert other.overrides == {"cl_temperature": 0.5}


GHOST_TABLE = """
title = "a table with a row no model is registered for"
kind = "table"
datasets = ["demo"]
seeds = 2
[[rows]]
label = "MF-BPR"
model = "mf-bpr"
[[rows]]
label = "Ghost"
model = ["no-such-model", "nor-this-one"]
"""


@pytest.fixture
def ghost_table(tmp_path):
    path = tmp_path / "ghost.toml"
    path.write_text(GHOST_TABLE)
    return path


def test_unregistered_rows_are_reported_not_invented(ghost_table):
    experiment = load_experiment(str(ghost_table))
    ghost = next(c for c in experiment.cells(["demo"]) if c.label == "Ghost")
    assert resolve_cell(ghost).problem == NOT_REGISTERED


def test_every_table2_row_is_registered():
    table2 = load_experiment("table2")
    problems = {c.label: resolve_cell(c).problem for c in table2.cells(["demo"])}
    assert not [label for label, problem in problems.items() if problem == NOT_REGISTERED]


def test_a_row_label_that_differs_from_the_papers_keys_its_numbers_by_paper_label():
    kmclr = next(r for r in load_experiment("table2").rows if r.models == ("kmclr-cokg",))
    assert kmclr.label == "KMCLR-coKG" and kmclr.paper_key == "KMCLR"
    assert paper_table("table2").value(kmclr.paper_key, "taobao", "HR@10") == 0.1185


def _dry_run(capsys, *argv):
    code = main(["run", "--dry-run", "--device", "cpu", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name,trials", [("fig4_temperature", 7), ("fig5_scaling", 4),
                                         ("fig3_layers", 7)])
def test_sweeps_expand_to_distinct_trials(tmp_path, capsys, name, trials):
    # fig3: layers=1 and mtl_layers=1 are both COPF's defaults, hence one shared trial
    code, out, _ = _dry_run(capsys, "--experiment", name, "--datasets", "demo", "--seeds", "1",
                            "--results-dir", str(tmp_path))
    assert code == 0
    assert f"{trials} trial(s) to run" in out
    ids = [line.split("[")[-1] for line in out.splitlines() if "to run " in line]
    assert len(set(ids)) == trials


def test_table2_dry_run_has_a_trial_per_registered_row_and_seed(tmp_path, capsys):
    code, out, err = _dry_run(capsys, "--experiment", "table2", "--datasets", "demo", "--seeds",
                              "2", "--results-dir", str(tmp_path))
    assert code == 0
    assert "not registered" not in err
    runs = [line for line in out.splitlines() if line.startswith("  to run")]
    models = {line.split()[2] for line in runs}
    assert {"mf-bpr", "lightgcn", "copf", "neumf", "kmclr-cokg"} <= models
    assert len(runs) == 2 * len(models)


def test_a_dry_run_names_the_rows_it_skips(tmp_path, capsys, ghost_table):
    code, out, err = _dry_run(capsys, "--experiment", str(ghost_table), "--results-dir",
                              str(tmp_path))
    assert code == 0
    assert "not registered, skipped:" in err and "Ghost (no-such-model|nor-this-one)" in err
    runs = [line for line in out.splitlines() if line.startswith("  to run")]
    assert {line.split()[2] for line in runs} == {"mf-bpr"} and len(runs) == 2


def test_models_option_narrows_an_experiment(tmp_path, capsys):
    code, out, _ = _dry_run(capsys, "--experiment", "table2", "--models", "copf", "--datasets",
                            "demo", "--seeds", "3", "--results-dir", str(tmp_path))
    assert code == 0 and "3 trial(s) to run" in out
    assert all(" copf on demo" in line for line in out.splitlines() if "to run " in line)


def test_epochs_and_set_override_the_experiment(tmp_path, capsys):
    code, out, _ = _dry_run(capsys, "--experiment", "fig4_temperature", "--datasets", "demo",
                            "--seeds", "1", "--epochs", "2", "--set", "lr=0.01",
                            "--results-dir", str(tmp_path))
    assert code == 0 and "7 trial(s) to run" in out


def test_data_only_experiments_train_nothing(tmp_path, capsys):
    code, out, _ = _dry_run(capsys, "--experiment", "table1", "--results-dir", str(tmp_path))
    assert code == 0 and "trains nothing" in out


def test_a_users_own_file_by_path(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text('title = "mine"\nkind = "table"\ndatasets = ["demo"]\nseeds = 2\n'
                    '[[rows]]\nlabel = "MF"\nmodel = "mf-bpr"\n'
                    '[[rows]]\nlabel = "MF fast"\nmodel = "mf-bpr"\nparams = { lr = 0.01 }\n')
    experiment = load_experiment(str(path))
    assert experiment.name == "mine" and [r.label for r in experiment.rows] == ["MF", "MF fast"]
    code, out, _ = _dry_run(capsys, "--experiment", str(path), "--results-dir",
                            str(tmp_path / "r"))
    assert code == 0 and "4 trial(s) to run" in out


@pytest.mark.parametrize("text,message", [
    ('kind = "table"\ndatasets = ["demo"]\nbogus = 1\n[[rows]]\nlabel="a"\nmodel="pop"\n',
     "unknown key(s) bogus"),
    ('datasets = ["demo"]\n', "'kind' must be one of"),
    ('kind = "table"\ndatasets = ["demo"]\n', "needs [[rows]]"),
    ('kind = "sweep"\ndatasets = ["demo"]\nmodel = "copf"\n[sweep]\nvalues = []\n',
     "non-empty 'values'"),
    ('kind = "table"\ndatasets = ["demo"]\n[[rows]]\nlabel="a"\nmodel="pop"\nrole="star"\n',
     "role must be one of"),
    ('kind = "table"\ndatasets = ["demo"]\n[[rows]]\nlabel="a"\nmodel="pop"\nin_paper="no"\n',
     "in_paper must be true or false"),
    ('kind = "table"\ndatasets = ["demo"]\nseeds = 0\n[[rows]]\nlabel="a"\nmodel="pop"\n',
     "'seeds' must be a positive integer"),
    ('kind = "table"\ndatasets = [\n', "not valid TOML"),
])
def test_bad_files_fail_with_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert message in str(err.value) and "bad.toml" in str(err.value)


def test_unknown_experiment_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped experiments: copf_taobao_defaults, fig3_layers"):
        load_experiment("table9")


def test_a_row_parameter_the_model_lacks_is_an_error(tmp_path, capsys):
    path = tmp_path / "x.toml"
    path.write_text('kind = "table"\ndatasets = ["demo"]\n[[rows]]\nlabel = "MF"\n'
                    'model = "mf-bpr"\nparams = { cl_temperature = 0.3 }\n')
    code, _, err = _dry_run(capsys, "--experiment", str(path), "--results-dir", str(tmp_path))
    assert code == 2 and "has no parameter cl_temperature" in err


def test_run_needs_models_or_an_experiment(capsys):
    assert main(["run", "--dry-run"]) == 2
    assert "--experiment" in capsys.readouterr().err


def test_an_experiment_names_its_protocol_and_the_command_line_wins(tmp_path, capsys):
    path = tmp_path / "x.toml"
    path.write_text('kind = "table"\nprotocol = "honest"\ndatasets = ["demo"]\nseeds = 1\n'
                    '[[rows]]\nlabel = "MF"\nmodel = "mf-bpr"\n')
    assert load_experiment(str(path)).protocol == "honest"
    code, out, _ = _dry_run(capsys, "--experiment", str(path), "--results-dir", str(tmp_path))
    assert code == 0 and "(honest, run 0" in out
    code, out, _ = _dry_run(capsys, "--experiment", str(path), "--results-dir", str(tmp_path),
                            "--protocol", "paper")
    assert code == 0 and "(paper, run 0" in out
    path.write_text('kind = "table"\nprotocol = "fair"\ndatasets = ["demo"]\n'
                    '[[rows]]\nlabel = "MF"\nmodel = "mf-bpr"\n')
    with pytest.raises(ConfigError, match="'protocol' must be paper or honest"):
        load_experiment(str(path))
