"""`bench perf`: speed records with the device, for one run or a seed batch."""
from __future__ import annotations

import json

from bench.cli import main
from bench.data.catalog import load_dataset


def perf_records(folder):
    return [json.loads(p.read_text()) for p in sorted((folder / "perf" / "demo").glob("*.json"))]


def test_perf_writes_a_record_per_measurement(tmp_path, capsys):
    code = main(["perf", "--models", "copf", "--datasets", "demo", "--device", "cpu", "--steps", "2",
                 "--repeats", "1", "--random-scorer", "16", "--results-dir", str(tmp_path)])
    assert code == 0
    records = {r["measurement"]["model"]: r for r in perf_records(tmp_path)}
    assert set(records) == {"copf", "random-dot-16"}
    copf = records["copf"]
    assert copf["kind"] == "perf" and copf["environment"]["device"] == "cpu"
    m = copf["measurement"]
    assert m["steps_timed"] == 2 and m["seconds_per_step_median"] > 0
    assert m["ops_per_step"] > 100 and m["host_syncs_per_step"] == {}
    assert m["cuda_graphs"] is False        # CPU
    assert m["seconds_per_epoch_estimate"] == m["seconds_per_step_median"] * m["steps_per_epoch"]
    assert m["peak_rss_mb"] > 0 and m["evaluated_users"] > 0
    assert "copf" in capsys.readouterr().out


def test_perf_of_a_seed_batch(tmp_path):
    code = main(["perf", "--models", "lightgcn,mbgcn", "--datasets", "demo", "--device", "cpu",
                 "--steps", "2", "--repeats", "1", "--seed-batch", "3",
                 "--results-dir", str(tmp_path)])
    assert code == 0
    by_model = {r["measurement"]["model"]: r["measurement"] for r in perf_records(tmp_path)}
    assert by_model["lightgcn-x3"]["batch_mode"] == "fused"
    assert by_model["mbgcn-x3"]["batch_mode"] == "looped"
    m = by_model["lightgcn-x3"]
    assert m["seconds_per_step_per_seed"] == m["seconds_per_step_median"] / 3
    # operators per step of the batch and of one run: fused, the batch costs about one run's
    assert m["ops_per_step"] > 0 and m["ops_per_step_one_run"] > 0
    assert m["ops_ratio"] == round(m["ops_per_step"] / m["ops_per_step_one_run"], 4) <= 1.3
    assert m["host_syncs_per_step"] == {}
    looped = by_model["mbgcn-x3"]
    assert looped["ops_ratio"] > 2       # member by member: about three runs' worth


def test_perf_times_one_product_with_each_graph_of_the_encoder(tmp_path):
    code = main(["perf", "--models", "bcipm,pop", "--datasets", "demo", "--device", "cpu",
                 "--steps", "1", "--repeats", "1", "--results-dir", str(tmp_path)])
    assert code == 0
    by_model = {r["measurement"]["model"]: r["measurement"] for r in perf_records(tmp_path)}
    products = {p["graph"]: p for p in by_model["bcipm"]["graph_products"]}
    assert set(products) == {"global_graph", "target_graph"}
    demo = load_dataset("demo")
    n = demo.n_users + demo.n_items
    assert products["global_graph"]["shape"] == [n, n]
    assert products["global_graph"]["nnz"] == 2 * demo.union().nnz
    assert products["target_graph"]["nnz"] == 2 * demo.matrices()[-1].nnz
    assert all(p["seconds_median"] > 0 for p in products.values())
    assert "graph_products" not in by_model["pop"]      # no graph, no entry
