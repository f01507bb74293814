"""Every trial stores the rank of each test pair with what its training input had seen of it,
and records say which periods they trained on."""
from __future__ import annotations

import numpy as np

from bench.cli import main
from bench.data.demo import make_demo
from bench.evaluate import metrics_from_ranks
from bench.ranks import read_ranks
from bench.records import iter_records, read_per_user


def test_ranks_file_agrees_with_per_user_values_and_the_data(tmp_path, capsys):
    assert main(["run", "--models", "mf-bpr", "--datasets", "demo", "--seeds", "1", "--epochs",
                 "2", "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    (path, record), = list(iter_records(tmp_path))
    table = read_ranks(path)
    assert table is not None
    data = make_demo()
    held = set(zip(*(a.tolist() for a in data.test.nonzero())))
    assert set(zip(table.users.tolist(), table.items.tolist())) == held
    for behavior in ("view", "cart"):
        expected = np.asarray(data.train[behavior][table.users, table.items]).ravel() > 0
        assert table.seen[behavior].tolist() == expected.tolist()
    assert set(table.seen) == {"view", "cart"}
    columns = read_per_user(path)
    users, positions = np.unique(table.users, return_inverse=True)
    assert users.tolist() == columns["user"].astype(int).tolist()
    for selection in ("best_test", "last"):
        ours = metrics_from_ranks(table.ranks[f"{selection}/full"], positions, len(users), (10,),
                                  "default")
        np.testing.assert_allclose(ours["HR@10"], columns[f"{selection}/full/default/HR@10"],
                                   atol=1e-6)
        np.testing.assert_allclose(ours["NDCG@10"],
                                   columns[f"{selection}/full/default/NDCG@10"], atol=1e-5)
    assert record["training_input"]["aux_periods"] is None       # demo has no periods
    assert "aux_periods" not in record["config"]


def test_a_dataset_with_periods_records_its_choice(tmp_path, capsys):
    folder = tmp_path / "shop"
    folder.mkdir()
    rows = ["user,item,behavior"]
    for u in range(6):
        rows += [f"{u},{(u + 1) % 5},view", f"{u},{u % 5},buy", f"{u},{(u + 2) % 5},buy"]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    (folder / "test.csv").write_text("user,item,behavior\n0,3,buy\n1,4,buy\n0,3,view\n")
    base = ["run", "--models", "pop-seen", "--datasets", str(folder), "--layout", "csv",
            "--behaviors", "view,buy", "--seeds", "1", "--device", "cpu", "--no-progress",
            "--results-dir", str(tmp_path / "results")]
    assert main(base) == 0
    assert main(base + ["--aux-periods", "all"]) == 0
    capsys.readouterr()
    records = {r["config"]["aux_periods"]: (p, r) for p, r in iter_records(tmp_path / "results")}
    assert set(records) == {"train", "all"}
    path, record = records["all"]
    assert record["training_input"]["pairs"]["view"] == 7      # six train rows + one test row
    assert read_ranks(path).seen["view"].tolist() == [True, False]
    assert read_ranks(records["train"][0]).seen["view"].tolist() == [False, False]
