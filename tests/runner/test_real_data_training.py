"""A short training run on real data through the CLI: records land and beat popularity."""
from __future__ import annotations

from bench.cli import main
from bench.records import iter_records


def test_short_real_run_beats_popularity(real_data, tmp_path, capsys):
    code = main(["run", "--models", "pop,lightgcn", "--datasets", "retailrocket", "--data-dir",
                 str(real_data), "--seeds", "1", "--epochs", "20", "--set", "eval_every=10",
                 "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress"])
    assert code == 0
    best = {r["config"]["model"]: r["metrics"]["best_test"]["full/default"]["NDCG@10"]
            for _, r in iter_records(tmp_path)}
    assert set(best) == {"pop", "lightgcn"}
    assert best["lightgcn"] > best["pop"] > 0
