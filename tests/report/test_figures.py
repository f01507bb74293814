"""Figures 3-6 render (non-empty PNG and PDF files) from demo results; `report all` writes every
table and figure and says where; Table 1 reads the real data."""
from __future__ import annotations

import numpy as np
import pytest

from bench.cli import main
from bench.experiments import experiment_names, load_experiment
from tests.report.synthetic import write_cell_records

PNG = b"\x89PNG\r\n\x1a\n"


def _write_sweep(results, name):
    experiment = load_experiment(name)
    rng = np.random.default_rng(0)
    for cell in experiment.cells(["demo"]):
        hr = 0.1 + 0.05 * rng.random(2)
        write_cell_records(results, cell, hr, hr / 2)
    return experiment


def _assert_image(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG)
    assert path.with_suffix(".pdf").stat().st_size > 1000


@pytest.mark.parametrize("name", ["fig3_layers", "fig4_temperature", "fig5_scaling"])
def test_sweep_figures_render(tmp_path, capsys, name):
    results = tmp_path / "results"
    experiment = _write_sweep(results, name)
    figures = tmp_path / "figures"
    code = main(["report", name, "--datasets", "demo", "--results-dir", str(results),
                 "--figures-dir", str(figures)])
    captured = capsys.readouterr()
    assert code == 0
    _assert_image(figures / f"{name}_demo.png")
    assert f"figure: {figures / f'{name}_demo.png'}" in captured.err
    # the printed table has one line per (series, value) and no empty cell
    lines = [line for line in captured.out.splitlines() if line.startswith("| ")][1:]
    assert len(lines) == len(experiment.series) * len(experiment.values)
    assert "_not run_" not in captured.out and "±" in captured.out


def test_sweep_without_results_draws_nothing_and_says_so(tmp_path, capsys):
    code = main(["report", "fig4_temperature", "--datasets", "demo", "--results-dir",
                 str(tmp_path / "none"), "--figures-dir", str(tmp_path / "f")])
    captured = capsys.readouterr()
    assert code == 0 and "_not run_" in captured.out
    assert "no figure for demo (no results)" in captured.err
    assert not (tmp_path / "f").exists() or not list((tmp_path / "f").iterdir())


def test_behavior_pattern_figures_render(tmp_path, capsys):
    figures = tmp_path / "figures"
    code = main(["report", "fig6_patterns", "--datasets", "demo", "--figures-dir", str(figures)])
    out = capsys.readouterr().out
    assert code == 0
    for unit in ("user", "pair"):
        _assert_image(figures / f"fig6_patterns_demo_{unit}.png")
    assert "| 111 |" in out and "share of users" in out


def test_report_all_writes_every_table_and_figure(tmp_path, capsys):
    results = tmp_path / "results"
    _write_sweep(results, "fig4_temperature")
    figures = tmp_path / "out"
    code = main(["report", "all", "--datasets", "demo", "--results-dir", str(results),
                 "--figures-dir", str(figures), "--data-dir", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert code == 0
    for name in experiment_names():
        table = figures / "tables" / f"{name}.md"
        assert table.stat().st_size > 0
        assert f"{name}: table {table}" in out
    assert f"fig4_temperature: figure {figures / 'fig4_temperature_demo.png'}" in out
    _assert_image(figures / "fig4_temperature_demo.png")
    _assert_image(figures / "fig6_patterns_demo_pair.png")
    assert "_not run_" in (figures / "tables" / "table2.md").read_text()


def test_table1_reads_the_real_taobao(real_data, capsys):
    code = main(["report", "table1", "--data-dir", str(real_data)])
    out = capsys.readouterr().out
    assert code == 0
    taobao = next(line for line in out.splitlines() if line.startswith("| Taobao"))
    assert "15,449" in taobao and "11,953" in taobao and "92,180" in taobao
    assert "| complete |" in taobao


def test_table1_describes_incomplete_and_absent_datasets(real_data, capsys):
    code = main(["report", "table1", "--data-dir", str(real_data / "partial"), "--format",
                 "plain"])
    out = capsys.readouterr().out
    assert code == 0
    beibei = next(line for line in out.splitlines() if line.startswith("Beibei"))
    assert "incomplete" in beibei and "642,622" in beibei
    assert "missing behavior 'pv'" in out
    assert "Taobao: no folder" in out


def test_a_second_render_of_unchanged_data_is_byte_identical(tmp_path, capsys, monkeypatch):
    """Figures carry no creation date, so `report all` does not dirty committed figures. The two
    renders get different clocks (matplotlib reads SOURCE_DATE_EPOCH for the date it would stamp)."""
    results = tmp_path / "results"
    _write_sweep(results, "fig4_temperature")
    argv = ["report", "fig4_temperature", "--datasets", "demo", "--results-dir", str(results)]
    rendered = []
    for clock, folder in (("1000000000", "first"), ("1700000000", "second")):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", clock)
        assert main([*argv, "--figures-dir", str(tmp_path / folder)]) == 0
        rendered.append({suffix: (tmp_path / folder / f"fig4_temperature_demo.{suffix}").read_bytes()
                         for suffix in ("png", "pdf")})
    capsys.readouterr()
    assert rendered[0] == rendered[1]
    assert b"CreationDate" not in rendered[0]["pdf"]
    assert b"matplotlib version" not in rendered[0]["png"]
