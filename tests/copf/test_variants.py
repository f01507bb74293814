"""The COPF names of Tables 3 and 4: registered with COPF's defaults, and really different models:
one training step from the same initialization and batch gives pairwise different target scores,
except where the spec says two configurations coincide."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from bench.data.demo import make_demo
from bench.models.registry import MODELS, get_model
from tests.copf.helpers import COPF_NAMES, build, first_batch

TABLE3 = ["copf-wo-cogcn", "copf-p", "copf-a", "copf-d", "copf-f", "copf-c", "copf-b", "copf-h",
          "copf-wo-dfme", "copf-wo-con", "copf-wo-for", "copf-wo-back", "copf-all-sg",
          "copf-wo-fit"]
TABLE4 = ["copf-agg-none", "copf-agg-sum", "copf-agg-linear", "copf-agg-vanilla",
          "copf-agg-projection"]
EXPECTED = ["copf"] + TABLE3 + TABLE4
REPO = Path(__file__).resolve().parents[2]

# Registered names whose one-step target scores coincide, by the spec (none among the 20 names):
COINCIDING: set[frozenset] = set()
# Configurations the spec says are the same model (§4.6): sg_mode=code stops a task's fitting
# experts only when mtl_layers[k] == K, so with COPF's layers [1, 1, 1] it is sg_mode=none.
SAME_MODEL = [(("copf", {"sg_mode": "code"}), ("copf-wo-back", {}))]
# Forward-identical at initialization: they differ only in what trains (stop-gradient, CL weight).
SAME_AT_INIT = [["copf", "copf-wo-back", "copf-all-sg", "copf-wo-con"],
                ["copf-wo-for", "copf-wo-fit"]]


def test_every_variant_is_registered_with_a_one_line_description():
    assert sorted(EXPECTED) == COPF_NAMES
    for name in EXPECTED:
        spec = MODELS[name]
        assert spec.encoder == "cogcn"
        assert spec.decoder in ("dfme", "bilinear")
        assert spec.description and "\n" not in spec.description
        params = spec.param_specs()
        assert set(spec.inferred) <= set(params), name
        assert spec.version


@pytest.mark.parametrize("name", EXPECTED)
def test_dataset_defaults(name):
    spec = get_model(name)
    beibei = spec.resolve("beibei", 3)
    taobao = spec.resolve("taobao", 3)
    tmall = spec.resolve("tmall", 4)
    demo = spec.resolve("demo", 3)
    assert beibei["loss_weights"] == pytest.approx([0, 2 / 6, 4 / 6])
    assert taobao["loss_weights"] == pytest.approx([2 / 6] * 3)
    assert tmall["loss_weights"] == pytest.approx([1 / 6, 2 / 6, 0, 3 / 6])
    assert demo["loss_weights"] == pytest.approx([1 / 3] * 3)
    assert beibei["layers"] == [1, 1, 1] and len(tmall["layers"]) == 4
    for cfg in (beibei, taobao, tmall):
        assert (cfg["sampler"], cfg["epochs"], cfg["batch_size"], cfg["n_pairs"]) == \
            ("multi-behavior", 200, 256, 40)
        assert (cfg["lr"], cfg["lr_decay"], cfg["decay_steps"], cfg["eval_schedule"]) == \
            (1e-3, 0.96, 0, "copf")
        assert (cfg["dim"], cfg["reg"], cfg["mult"]) == (64, 1e-2, 300.0)
    if spec.decoder == "dfme":
        assert len(tmall["mtl_layers"]) == 4
        assert beibei["cl_temperature"] == 0.1 and taobao["cl_temperature"] > 0.1
        assert {"layers", "mtl_layers", "cl_temperature"} <= set(spec.inferred)


def test_copf_defaults_are_the_paper_model():
    cfg = get_model("copf").resolve("beibei", 3)
    assert (cfg["sg_mode"], cfg["experts"], cfg["aggregation"]) == ("paper", "fitting", "gate")
    assert (cfg["fit_alpha"], cfg["fit_beta"], cfg["fit_scale"]) == (0.1, 0.001, 0.1)
    assert (cfg["cl_weight"], cfg["pre"], cfg["in_graph"], cfg["post"]) == \
        (1.0, "cumulative", "cumulative", "decoupled")
    with pytest.raises(Exception):
        get_model("copf").resolve("beibei", 3, {"cl_temperature": 0.0})


@pytest.fixture(scope="module")
def setting():
    ds = make_demo(n_users=80, n_items=90, seed=5)
    probe = build("copf", ds, dim=8)
    batch = first_batch(probe, ds, seed=4)
    users = torch.arange(ds.n_users)
    return ds, batch, users


def _scores(name, setting, steps=1, **overrides):
    """Target scores after ``steps`` plain gradient steps (SGD: the update is the gradient itself,
    so configurations that differ only in gradient flow do differ after one step; Adam's first
    step is nearly sign(gradient) and can hide a small difference). The stop-gradient modes change
only the gradient of the ~1e-4-scaled fitting experts (spec §4.7), hence the large step."""
    ds, batch, users = setting
    model = build(name, ds, dim=8, **overrides)
    opt = torch.optim.SGD(model.parameters(), lr=3e-2)
    for _ in range(steps):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        scores = model.scorer()(users)
    assert torch.isfinite(scores).all(), name
    return scores


def test_same_initialization_across_variants(setting):
    ds = setting[0]
    first = build("copf", ds, dim=8).encoder
    for name in EXPECTED:
        enc = build(name, ds, dim=8).encoder
        assert torch.equal(enc.users, first.users) and torch.equal(enc.items, first.items)


def test_forward_identical_at_initialization(setting):
    for group in SAME_AT_INIT:
        scores = [_scores(name, setting, steps=0) for name in group]
        assert all(torch.equal(scores[0], s) for s in scores[1:]), group


def test_one_step_gives_pairwise_different_scores(setting):
    scores = {name: _scores(name, setting) for name in EXPECTED}
    for a, b in itertools.combinations(EXPECTED, 2):
        diff = float((scores[a] - scores[b]).abs().max())
        scale = float(scores[a].abs().max())
        if frozenset((a, b)) in COINCIDING:
            assert diff == 0.0, (a, b)
        else:
            assert diff > 1e-5 * scale, (a, b, diff, scale)
    for (a, oa), (b, ob) in SAME_MODEL:
        assert torch.equal(_scores(a, setting, **oa), _scores(b, setting, **ob)), (a, b)


def test_taobao_defaults_are_the_validation_best_of_the_committed_sweep():
    """copf's inferred Taobao defaults (tau, layers) come from the sweep stored under results/
    (bench/experiments/copf_taobao_defaults.toml, honest protocol, selected on validation)."""
    from bench.experiments import load_experiment
    from bench.records import iter_records
    experiment = load_experiment("copf_taobao_defaults")
    swept = [dict(row.params) for row in experiment.rows]
    keys = ("cl_temperature", "layers", "mtl_layers")
    best = {}
    for _, record in iter_records(REPO / "results"):
        c = record["config"]
        if (c["model"], c["dataset"], c["protocol"]) != ("copf", "taobao", "honest"):
            continue
        setting = {k: c["params"][k] for k in keys}
        if setting in swept:
            best[tuple(map(str, setting.values()))] = (
                record["metrics"]["valid"]["full/default"]["HR@10"], setting)
    assert len(best) == len(swept), "the sweep's records are missing under results/taobao/copf"
    winner = max(best.values(), key=lambda item: item[0])[1]
    taobao = get_model("copf").resolve("taobao", 3)
    assert {k: taobao[k] for k in keys} == winner
