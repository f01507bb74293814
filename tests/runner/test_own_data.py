"""Training on your own data from the command line: a generated CSV folder, end to end through
`python -m bench run`, then `perf`, `report` and an experiment on the same folder."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.data.layouts import load_csv
from bench.records import iter_records
from bench.runner import dataset_fingerprint

REPO = Path(__file__).resolve().parents[2]
OWN = ["--layout", "csv", "--behaviors", "view,buy"]

# 4 users, items 1..12. Buys: item 1 by a, b, c; item 2 by b, c; item 3 by c, so popularity
# ranks 1, 2, 3, then 4..12 by id. With a user's own buys left out of the ranking:
#   a -> 2 is first; b -> 12 is tenth (3, 4..12); c -> 4 is first; d -> 11 is eleventh (a miss).
BUYS = [("a", 1), ("b", 1), ("c", 1), ("b", 2), ("c", 2), ("c", 3)]
VIEWS = [("a", i) for i in range(5, 13)] + [("d", 4)]
TEST = [("a", 2), ("b", 12), ("c", 4), ("d", 11)]
POP_HR10 = 3 / 4
POP_NDCG10 = (1 + 1 / math.log2(11) + 1 + 0) / 4


@pytest.fixture
def shop(tmp_path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    rows = [f"{u},{i},view" for u, i in VIEWS] + [f"{u},{i},buy" for u, i in BUYS]
    (folder / "train.csv").write_text("user,item,behavior\n" + "\n".join(rows) + "\n")
    (folder / "test.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in TEST))
    return folder


def test_python_m_bench_run_trains_on_a_csv_folder(shop, tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["run", "--models", "lightgcn,pop", "--datasets", str(shop), *OWN, "--seeds", "1",
            "--epochs", "1", "--device", "cpu", "--results-dir", str(results), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 trial(s) to run" in proc.stdout
    records = {r["config"]["model"]: (path, r) for path, r in iter_records(results)}
    assert set(records) == {"lightgcn", "pop"}
    fingerprint = dataset_fingerprint(load_csv(shop / "train.csv", shop / "test.csv",
                                               ("view", "buy")))
    for model, (path, record) in records.items():
        assert path.parent == results / "shop" / model
        assert record["config"]["dataset"] == "shop"
        assert record["config"]["dataset_fingerprint"] == fingerprint
    pop = records["pop"][1]["metrics"]["best_test"]["full/default"]
    assert pop["HR@10"] == pytest.approx(POP_HR10)
    assert pop["NDCG@10"] == pytest.approx(POP_NDCG10)
    # the same command again finds both trials stored
    assert main(argv) == 0
    assert "0 trial(s) to run, 2 already stored" in capsys.readouterr().out


def test_perf_report_and_an_experiment_take_the_folder_too(shop, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--models", "pop", "--datasets", str(shop), *OWN, "--seeds", "1",
                 "--device", "cpu", "--results-dir", str(results), "--no-progress"]) == 0
    assert main(["perf", "--models", "pop", "--datasets", str(shop), *OWN, "--device", "cpu",
                 "--steps", "1", "--repeats", "1", "--results-dir", str(results)]) == 0
    assert len(list((results / "perf" / "shop").glob("pop-cpu-*.json"))) == 1
    capsys.readouterr()
    assert main(["report", "summary", "--datasets", str(shop), *OWN, "--results-dir",
                 str(results), "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith("shop,pop,paper,epochs=0,1,0.75,")
    assert main(["run", "--experiment", "table2", "--models", "lightgcn", "--datasets",
                 str(shop), *OWN, "--seeds", "2", "--results-dir", str(results),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "lightgcn on shop (paper, run 0" in out and "lightgcn on shop (paper, run 1" in out
    assert main(["report", "table1", "--datasets", f"{shop},demo", *OWN]) == 0
    shop_row = next(line for line in capsys.readouterr().out.splitlines()
                    if line.startswith("| shop"))
    assert "| 4 | 12 | 15 | 6 | view → buy | complete |" in shop_row


@pytest.mark.parametrize("extra, message", [
    ([], "a folder, not a catalog name; to read your own data pass --layout"),
    (["--layout", "csv"], "--behaviors is required with --layout"),
    (["--layout", "csv", "--behaviors", "view,cart,buy"], "ordered behavior(s) ['cart'] have "
                                                           "no rows in the file"),
    (OWN + ["--train", "absent.csv"], "absent.csv: file not found"),
])
def test_bad_own_data_is_one_error_line(shop, tmp_path, capsys, extra, message):
    code = main(["run", "--models", "pop", "--datasets", str(shop), *extra, "--device", "cpu",
                 "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
