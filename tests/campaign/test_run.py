"""``bench campaign run``: trains what fits, starts nothing it cannot finish, stops checkpointed
at the budget, and a stopped group resumes (after bundle / unpack) to where an uninterrupted run
ends, without pretraining again."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from baselines import pretrain
from bench.campaign.bundle import bundle, unpack
from bench.campaign.run import log_path, run_campaign
from bench.cli import build_parser, main
from bench.commands.campaign import _plan
from bench.data.select import load_datasets
from tests.campaign.helpers import (write_experiment, write_perf, write_priority,
                                    write_trial_timing)


def _campaign_args(tmp_path: Path, priority: Path, results: Path, budget: float, *extra: str):
    return build_parser().parse_args(
        ["campaign", "run", "--priority", str(priority), "--budget", str(budget),
         "--device", "cpu", "--results-dir", str(results), *extra])


def test_a_budget_that_fits_two_of_three_groups_trains_exactly_those(tmp_path, capsys):
    results = tmp_path / "results"
    experiment = write_experiment(tmp_path, ["mf-bpr", "lightgcn", "lightgcn-m"], epochs=2)
    priority = write_priority(tmp_path, experiment)
    # estimates: 2 epochs x 10 steps x (1 s, 1.5 s, 30 s) = 20 s, 30 s, 600 s; budget 100 s
    for model, step in (("mf-bpr", 1.0), ("lightgcn", 1.5), ("lightgcn-m", 30.0)):
        write_perf(results, model, step)
    code = main(["campaign", "run", "--priority", str(priority), "--budget", "100",
                 "--device", "cpu", "--results-dir", str(results), "--checkpoint-every", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    made = sorted(p.parent.name for p in results.glob("demo/*/*.json"))
    assert made == ["lightgcn", "mf-bpr"]
    events = [json.loads(line) for line in log_path(results).read_text().splitlines()]
    started = [e["describe"].split()[0] for e in events if e["event"] == "start"]
    assert started == ["mf-bpr", "lightgcn"]         # lightgcn-m never started
    assert not list(results.glob("scratch/*/checkpoint.pt"))
    assert "does not fit" in out and "trained" in out


def _counting_pretraining(monkeypatch) -> list[int]:
    """Count real runs of the view-GCN pretraining (the resumed build must not start one)."""
    calls: list[int] = []
    real = pretrain.PRETRAINERS["gcn"]

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setitem(pretrain.PRETRAINERS, "gcn", counted)
    return calls


def _records(results: Path) -> list[Path]:
    return [p for p in results.glob("demo/*/*.json") if p.name != "timing-fixture.json"]


def _record(results: Path) -> dict:
    path, = _records(results)
    return json.loads(path.read_text())


def test_a_group_stopped_at_the_budget_resumes_after_bundle_and_unpack(tmp_path, monkeypatch):
    epochs = 6
    experiment = write_experiment(tmp_path, ["mb-cgcn"], epochs=epochs)
    priority = write_priority(tmp_path, experiment)
    demo, = load_datasets(["demo"], None)
    device = torch.device("cpu")
    calls = _counting_pretraining(monkeypatch)

    # uninterrupted
    whole = tmp_path / "whole"
    write_perf(whole, "mb-cgcn", 0.001)
    write_trial_timing(whole, "mb-cgcn", demo, wall=1.0, training=0.5)   # pretraining 0.5 s
    plan = _plan(_campaign_args(tmp_path, priority, whole, 1000), "cpu")
    done = run_campaign(plan, {"demo": demo}, device, whole, 1000, checkpoint_every=100)
    assert len(done.trained) == 1 and not done.stopped
    assert len(calls) == 1

    # interrupted: a clock that advances one second per reading, budget 6 s; the estimate
    # (about 0.6 s) lets the group start, the epochs' "one second" each stop it early
    first = tmp_path / "first"
    write_perf(first, "mb-cgcn", 0.001)
    write_trial_timing(first, "mb-cgcn", demo, wall=1.0, training=0.5)   # pretraining 0.5 s
    plan = _plan(_campaign_args(tmp_path, priority, first, 6), "cpu")
    ticks = itertools.count()
    stopped = run_campaign(plan, {"demo": demo}, device, first, 6, checkpoint_every=100,
                           clock=lambda: float(next(ticks)))
    assert stopped.stopped and not stopped.trained
    assert not _records(first)          # no record of an unfinished group
    checkpoint, = first.glob("scratch/*/checkpoint.pt")
    saved_epoch = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 0 <= saved_epoch < epochs - 1
    assert len(calls) == 2

    # the bundle goes to a fresh results folder, which resumes the group
    bundle(first, tmp_path / "bundle")
    fresh = tmp_path / "fresh"
    write_perf(fresh, "mb-cgcn", 0.001)
    write_trial_timing(fresh, "mb-cgcn", demo, wall=1.0, training=0.5)   # pretraining 0.5 s
    merged = unpack(tmp_path / "bundle", fresh)
    assert any(rel.endswith("checkpoint.pt") for rel in merged.written)
    plan = _plan(_campaign_args(tmp_path, priority, fresh, 1000), "cpu")
    assert plan.groups[0].resumed_epoch == saved_epoch + 1
    resumed = run_campaign(plan, {"demo": demo}, device, fresh, 1000, checkpoint_every=100)
    assert len(resumed.trained) == 1
    assert len(calls) == 2                       # the resumed build did not pretrain
    a, b = _record(whole), _record(fresh)
    assert b["resumed_from_epoch"] == saved_epoch + 1
    assert a["run_id"] == b["run_id"]
    assert a["metrics"] == b["metrics"]
    untimed = lambda curves: [{k: v for k, v in c.items() if k != "seconds"} for c in curves]
    assert untimed(a["curves"]) == untimed(b["curves"])
    assert a["selected_epoch"] == b["selected_epoch"]
    assert not list(fresh.glob("scratch/*/checkpoint.pt"))


def test_only_the_resuming_thread_skips_pretraining(monkeypatch):
    import threading

    import scipy.sparse as sp
    from baselines.pretrain_skip import pretraining_skipped
    sentinel = object()
    monkeypatch.setitem(pretrain.PRETRAINERS, "mf", lambda *args, **kwargs: sentinel)
    matrix = sp.csr_matrix((4, 3))
    cfg = pretrain.PretrainConfig("mf", 1, 1, 1, 1e-2, 0.0, 2, dim=5)
    call = lambda: pretrain.PRETRAINERS["mf"](matrix, cfg, torch.Generator(), "cpu")
    elsewhere = []
    with pretraining_skipped():
        inside = call()
        worker = threading.Thread(target=lambda: elsewhere.append(call()))
        worker.start()
        worker.join()
    assert inside.users.shape == (4, 5) and not inside.users.any() and inside.epochs_run == 0
    assert elsewhere == [sentinel]            # another thread's build pretrains as usual
    assert call() is sentinel                 # and so does this one after the block


def test_concurrent_groups_each_write_their_records(tmp_path):
    results = tmp_path / "results"
    priority = write_priority(tmp_path, write_experiment(tmp_path, ["mf-bpr", "lightgcn"],
                                                         epochs=2))
    for model in ("mf-bpr", "lightgcn"):
        write_perf(results, model, 0.01)
    assert main(["campaign", "run", "--priority", str(priority), "--budget", "100", "--device",
                 "cpu", "--results-dir", str(results), "--concurrent", "2"]) == 0
    assert sorted(p.parent.name for p in _records(results)) == ["lightgcn", "mf-bpr"]


def test_an_unknown_priority_field_names_the_file_and_entry(tmp_path):
    from bench.campaign.priority import load_priority
    from bench.errors import ConfigError
    path = tmp_path / "p.toml"
    path.write_text('[[entry]]\nexperiment = "table2"\nmodel = ["copf"]\n')
    with pytest.raises(ConfigError, match=r"p\.toml: entry 1: unknown field\(s\) model"):
        load_priority(path)


def test_a_priority_entry_may_name_its_protocol(tmp_path):
    from bench.campaign.priority import load_priority
    from bench.errors import ConfigError
    path = tmp_path / "p.toml"
    path.write_text('[[entry]]\nexperiment = "table2"\ndatasets = ["jd"]\nprotocol = "honest"\n'
                    '[[entry]]\nexperiment = "table2"\n')
    honest, default = load_priority(path)
    assert (honest.protocol, default.protocol) == ("honest", None)
    path.write_text('[[entry]]\nexperiment = "table2"\nprotocol = "best"\n')
    with pytest.raises(ConfigError, match=r"entry 1: field 'protocol' is 'best'"):
        load_priority(path)


def test_the_shipped_priority_plans_jd_under_both_protocols():
    from bench.campaign.priority import load_priority
    jd = [e for e in load_priority() if "jd" in e.datasets]
    assert {e.protocol for e in jd} == {None, "honest"}
