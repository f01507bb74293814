"""`bench run` end to end on demo: records written, reruns skip, summary stable, errors early."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.cli import main
from bench.records import config_hash, iter_records, read_per_user, read_record

REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_writes_records_and_rerun_trains_nothing(tmp_path, capsys):
    args = ["run", "--models", "mf-bpr,lightgcn", "--datasets", "demo", "--seeds", "2",
            "--epochs", "2", "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress"]
    code, first, _ = run(capsys, *args)
    assert code == 0
    records = list(iter_records(tmp_path))
    assert len(records) == 4
    assert "4 trial(s) to run, 0 already stored" in first
    code, second, _ = run(capsys, *args)
    assert code == 0
    assert "0 trial(s) to run, 4 already stored" in second
    summary = lambda text: text[text.index("dataset"):]
    assert summary(first) == summary(second)
    path, record = records[0]
    assert record["run_id"] == config_hash(record["config"])
    for key in ("environment", "git_commit", "command", "timing", "memory", "curves"):
        assert key in record
    assert record["config"]["model_version"]
    columns = read_per_user(path)
    assert len(columns["user"]) == 1200


def test_records_differ_by_run_and_seeds_are_paired_across_models(tmp_path, capsys):
    run(capsys, "run", "--models", "lightgcn", "--datasets", "demo", "--seeds", "2", "--epochs",
        "1", "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress")
    runs = sorted((r["config"]["run"], r["metrics"]["last"]["full/default"]["NDCG@10"])
                  for _, r in iter_records(tmp_path))
    assert runs[0][1] != runs[1][1]


def test_dry_run_lists_and_trains_nothing(tmp_path, capsys):
    code, out, _ = run(capsys, "run", "--models", "pop,lightgcn", "--datasets", "demo", "--seeds",
                       "1", "--results-dir", str(tmp_path), "--dry-run")
    assert code == 0 and out.count("to run") == 3
    assert not list(tmp_path.iterdir())


def test_honest_protocol_has_its_own_records(tmp_path, capsys):
    code, _, _ = run(capsys, "run", "--models", "lightgcn", "--datasets", "demo", "--seeds", "1",
                     "--epochs", "2", "--set", "eval_every=1", "--protocol", "honest",
                     "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress")
    assert code == 0
    (_, record), = iter_records(tmp_path)
    assert record["config"]["protocol"] == "honest"
    assert record["main_selection"] == "valid_selected"
    assert "valid" in record["metrics"]


@pytest.mark.parametrize("argv, message", [
    (["--models", "nosuchmodel"], "valid models: "),
    (["--models", "lightgcn", "--set", "nosuchkey=1"], "valid parameters"),
    (["--models", "lightgcn", "--set", "lr=-1"], "lr"),
    (["--models", "lightgcn", "--set", "layers=two"], "expects int"),
    (["--models", "lightgcn", "--epochs", "-3"], "--epochs"),
    (["--models", "lightgcn", "--datasets", "nosuchdata"], "nosuchdata"),
])
def test_configuration_errors_are_refused_before_training(tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "run", *argv, "--results-dir", str(tmp_path), "--device", "cpu")
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_corrupted_record_is_not_counted_and_is_rerun(tmp_path, capsys):
    args = ["run", "--models", "pop", "--datasets", "demo", "--seeds", "1", "--device", "cpu",
            "--results-dir", str(tmp_path), "--no-progress"]
    run(capsys, *args)
    (path, _), = iter_records(tmp_path)
    path.write_text(path.read_text()[:100])        # truncated
    assert read_record(path) is None
    code, out, _ = run(capsys, *args)
    assert code == 0 and "1 trial(s) to run" in out
    assert read_record(path) is not None


def test_readme_example_is_the_shipped_file_and_runs(tmp_path, capsys):
    readme = (REPO / "README.md").read_text()
    example = (REPO / "examples" / "my_baseline.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert example in blocks, "README's 'Adding a baseline' must show examples/my_baseline.py verbatim"
    code, out, _ = run(capsys, "run", "--plugin", str(REPO / "examples" / "my_baseline.py"),
                       "--models", "my-mtbpr", "--datasets", "demo", "--seeds", "1", "--epochs",
                       "1", "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress")
    assert code == 0 and "my-mtbpr" in out
    code, out, _ = run(capsys, "list", "params", "my-mtbpr", "--plugin",
                       str(REPO / "examples" / "my_baseline.py"))
    assert "aux_weight" in out


def test_quick_start_commands_are_the_ones_ci_runs():
    """The quick start's test command is what .ci/run executes, verbatim; the CPU-only torch
    command sits in the quick start, one copy-pasteable line."""
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"):readme.index("## Commands")]
    commands = re.findall(r"```bash\n(.*?)\n```", quick_start, flags=re.S)
    assert commands == [
        "pip install -e . && python -m bench run --models pop,lightgcn,copf --datasets demo "
        "--seeds 2 --epochs 20 --device cpu",
        'pip install -e ".[test]" && python -m pytest -q',
        "pip install torch --index-url https://download.pytorch.org/whl/cpu"]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


def test_list_models_names_the_baselines(capsys):
    code, out, _ = run(capsys, "list", "models")
    assert code == 0
    for name in ("pop", "mf-bpr", "lightgcn", "lightgcn-m"):
        assert re.search(rf"^{re.escape(name)}\s", out, flags=re.M)
    # how a batch of runs trains: fused, or looped with the model's reason
    assert re.search(r"^copf\s.*\sfused\s", out, flags=re.M)
    assert re.search(r"^mbgcn\s.*looped: node dropout", out, flags=re.M)


def test_list_params_copf_and_the_readme_say_what_sg_mode_code_computes(capsys):
    """sg_mode=code is what the release computes: its inner loop reuses the outer loop's index,
    so stopGradientOrNot gets mtl_layers[k] - 1 (1 at two DFME layers, not the target's 2)."""
    code, out, _ = run(capsys, "list", "params", "copf")
    row = next(line for line in out.splitlines() if line.startswith("sg_mode"))
    assert code == 0 and "what the release computes" in row
    assert "reuses the outer loop's `index`" in row and "1, not 2, at two DFME layers" in row
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "`sg_mode=code` is what the release computes" in readme
    assert "`stopGradientOrNot` gets 1, not 2" in readme
