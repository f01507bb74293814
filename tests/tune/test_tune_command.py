"""`bench tune` end to end on demo: ordinary records, fewer batches than trials, a manifest, the
ranking by validation HR@10, `bench report tune` rebuilding the same text, and the tuned
configuration turned into `bench run` flags and an experiment file."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shlex

import pytest

from bench.cli import main
from bench.experiments import load_experiment
from bench.experiments.resolve import resolve_cell
from bench.records import iter_records
from bench.tune.space import SPACES_DIR

MUST_SHOW = ["tune", "--models", "copf", "--datasets", "demo", "--space", "copf", "--budget", "8",
             "--epochs", "3", "--device", "cpu", "--no-progress"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def ranking_block(stdout: str) -> str:
    """The report part of `bench tune`'s output: from its 'tune:' header to the end."""
    start = stdout.index("\ntune: ") + 1
    return stdout[start:]


def table_rows(block: str) -> list[dict[str, str]]:
    """The ranking table's rows as column -> text, cut at the spans of the dashed rule."""
    lines = block.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    spans = [m.span() for m in re.finditer(r"-+", lines[header + 1])]
    names = [lines[header][a:b].strip() or "mark" for a, b in spans]
    names[-1] = lines[header][spans[-1][0]:].strip()
    rows = []
    for line in lines[header + 2:]:
        if not line.strip():
            break
        rows.append({name: line[a:b].strip() for name, (a, b) in zip(names, spans)})
    return rows


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    results = tmp_path_factory.mktemp("tune") / "tmp"
    code, out, err = run_cli(MUST_SHOW + ["--results-dir", str(results)])
    assert code == 0, err
    return results, out


def test_every_trial_is_an_ordinary_record(tuned):
    results, _ = tuned
    records = [r for _, r in iter_records(results)]
    assert len(records) == 8
    assert {r["config"]["protocol"] for r in records} == {"honest"}
    assert {r["config"]["params"]["epochs"] for r in records} == {3}
    assert all("valid" in r["metrics"] and "valid_selected" in r["metrics"] for r in records)


def test_trials_that_differ_only_in_batchable_values_trained_together(tuned):
    results, out = tuned
    batches = int(re.search(r"the 8 trial\(s\) to run train as (\d+) batch", out).group(1))
    assert batches < 8
    records = [r for _, r in iter_records(results)]
    batched = [r for r in records if r["batch"]["members"] > 1]
    assert batched and all(r["batch"]["mode"] == "fused" for r in batched)
    for record in batched:
        # members of one batch share layers; they differ in batchable values only
        assert set(record["batch"]["differing"]) <= {"cl_temperature", "loss_weights"}
        assert record["batch"]["differing"]
    # one group per distinct (members, wall time) pair: the number of batches printed
    groups = {(r["batch"]["members"], r["batch"]["group_wall_seconds"]) for r in records}
    assert len(groups) == batches


def test_the_manifest_names_the_space_search_and_records(tuned):
    results, _ = tuned
    (path,) = (results / "tune").glob("*.json")
    manifest = json.loads(path.read_text())
    assert manifest["model"] == "copf" and manifest["dataset"] == "demo"
    assert manifest["budget"] == 8 and manifest["epochs"] == 3 and manifest["seeds"] == 1
    assert manifest["protocol"] == "honest" and manifest["search"] in ("grid", "random")
    assert manifest["space"]["sha256"] == hashlib.sha256(
        (SPACES_DIR / "copf.toml").read_bytes()).hexdigest()
    run_ids = {r["run_id"] for _, r in iter_records(results)}
    assert len(manifest["configurations"]) == 8
    assert {i for c in manifest["configurations"] for i in c["run_ids"]} == run_ids


def test_the_ranking_is_sorted_by_validation_hr_and_marks_the_best(tuned):
    _, out = tuned
    block = ranking_block(out)
    assert "budget: 8 configuration(s)" in block and "3 epoch(s)" in block
    rows = table_rows(block)
    assert len(rows) == 8
    assert [row["mark"] for row in rows] == ["*"] + [""] * 7
    assert [row["rank"] for row in rows] == [str(i) for i in range(1, 9)]
    valid = [float(row["valid HR@10"]) for row in rows]
    assert valid == sorted(valid, reverse=True)
    assert all(0 <= float(row["test HR@10"]) <= 1 for row in rows)
    assert sorted(int(row["config"]) for row in rows) == list(range(8))


def test_report_tune_rebuilds_the_same_ranking_from_the_records(tuned, tmp_path):
    results, out = tuned
    (path,) = (results / "tune").glob("*.json")
    figures = tmp_path / "figures"
    for which in ([], ["latest"], [str(path)]):
        code, report, err = run_cli(["report", "tune", *which, "--results-dir", str(results),
                                     "--figures-dir", str(figures)])
        assert code == 0, err
        assert report == ranking_block(out)
    pngs = sorted(figures.glob("*.png"))
    assert [p.stem for p in pngs] == [f"tune_{path.stem}"]
    assert (figures / f"tune_{path.stem}.pdf").is_file()
    before = {p.name: p.read_bytes() for p in figures.iterdir()}
    run_cli(["report", "tune", "--results-dir", str(results), "--figures-dir", str(figures)])
    assert {p.name: p.read_bytes() for p in figures.iterdir()} == before


def test_a_rerun_trains_nothing_and_the_best_becomes_an_experiment(tuned, tmp_path):
    results, out = tuned
    experiment = tmp_path / "tuned.toml"
    code, again, err = run_cli(MUST_SHOW + ["--results-dir", str(results),
                                            "--write-experiment", str(experiment)])
    assert code == 0, err
    assert "8 trial(s), 0 to run, 8 already stored" in again
    assert ranking_block(again).startswith(ranking_block(out))
    best_line = next(line for line in out.splitlines() if "python -m bench run" in line)
    flags = shlex.split(best_line.strip())[3:]          # after "python -m bench"
    code, dry, _ = run_cli(flags + ["--results-dir", str(results), "--dry-run"])
    assert code == 0 and "0 trial(s) to run, 1 already stored" in dry
    loaded = load_experiment(experiment)
    (cell,) = loaded.cells()
    best_record = next(r for _, r in iter_records(results) if r["run_id"] in dry)
    resolved = resolve_cell(cell)
    params = {k: v for k, v in best_record["config"]["params"].items() if k != "epochs"}
    assert {k: v for k, v in resolved.params.items() if k != "epochs"} == params
    assert loaded.protocol == "honest"


def test_the_paper_protocol_is_refused(tmp_path):
    code, _, err = run_cli(MUST_SHOW + ["--results-dir", str(tmp_path), "--protocol", "paper"])
    assert code == 2 and "selects on validation" in err and "drop --protocol paper" in err
    assert not any(tmp_path.iterdir())


def test_a_bad_space_stops_before_training(tmp_path):
    space = tmp_path / "bad.toml"
    space.write_text('model = "copf"\n[params]\nlayers = { values = [1, 2] }\n')
    code, _, err = run_cli(MUST_SHOW[:6] + [str(space)] + MUST_SHOW[7:]
                           + ["--results-dir", str(tmp_path / "r")])
    assert code == 2 and f"{space}: params.layers" in err and "per_behavior = true" in err
    assert not (tmp_path / "r" / "demo").exists()


def test_optuna_rounds_batch_together_and_repeat(tmp_path):
    pytest.importorskip("optuna")
    space = tmp_path / "lightgcn.toml"
    space.write_text('model = "lightgcn"\nbudget = 4\n[params]\n'
                     'lr = { range = [1e-4, 1e-2], scale = "log" }\n'
                     'reg = { values = [1e-4, 1e-3] }\n')
    argv = ["tune", "--models", "lightgcn", "--space", str(space), "--search", "optuna",
            "--members", "2", "--epochs", "1", "--device", "cpu", "--no-progress",
            "--results-dir", str(tmp_path / "r")]
    code, out, err = run_cli(argv)
    assert code == 0, err
    assert "2 ask-and-tell round(s)" in out
    records = [r for _, r in iter_records(tmp_path / "r")]
    assert len(records) == 4 and all(r["batch"]["members"] == 2 for r in records)
    (path,) = (tmp_path / "r" / "tune").glob("*.json")
    first = json.loads(path.read_text())["configurations"]
    code, again, _ = run_cli(argv)
    assert code == 0 and again.count("0 to run, 2 already stored") == 2
    assert json.loads(path.read_text())["configurations"] == first
