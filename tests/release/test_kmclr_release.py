"""``kmclr-cokg`` against the authors' release (xuanhongrui/KMCLR 8f62958: Kg_Model.py, GAT.py,
contrast.py, Procedure.py, Mul_Model.py, GNN.py) on a 205-user Taobao slice, d = 8, float32: the
same initial weights, the same samples (our sampler's first batch for run key 7) and the same
dropout masks, slot drops and edge keeps (our draws, fed to the release). The release's numbers
(every loss part, the summed gradient, scores, parameters after 1 and 3 Adam steps on the summed
gradient) are stored in tests/release/fixtures/kmclr/kmclr.npz; results/notes/kmclr-release.md
says how they were made."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.multi import kmclr_kg
from baselines.multi.kmclr import (BLEND_NOISE, BPR_NOISE, EDGE_KEEP_NOISE, STABILITY_NOISE,
                             VIEW_NOISE)
from baselines.multi.kmclr_parts import uniforms
from bench.data.dataset import MultiBehaviorDataset
from bench.models.base import Batch, Pairs
from bench.models.registry import build_model, get_model, load_builtin
from bench.train import streams
from bench.train.samplers import make_sampler, member_batch
from bench.train.seeds import generator
from tests.release.tf_step import OurStep, max_differences

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "kmclr" / "kmclr.npz"
BEHAVIORS = ("pv", "cart", "buy")
# the slice's settings, as the harness ran both sides (co-interaction thresholds lowered so that
# the small slice's KG has all three relations)
OVERRIDES = dict(dim=8, cokg_view_threshold=2, cokg_threshold=1, kg_batch_size=128,
                 trans_batch_size=128)
RUN_KEY_SEED = 7


@pytest.fixture(scope="module")
def fx():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def slice_dataset(fx) -> MultiBehaviorDataset:
    n_users, n_items = (int(v) for v in fx["slice/shape"])
    train = {b: sp.csr_matrix((np.ones(len(fx[f"slice/{b}/rows"]), dtype=np.float32),
                               (fx[f"slice/{b}/rows"], fx[f"slice/{b}/cols"])),
                              shape=(n_users, n_items)) for b in BEHAVIORS}
    test = sp.csr_matrix((np.ones(n_users, np.float32), (np.arange(n_users),
                                                         np.zeros(n_users, int))),
                         shape=(n_users, n_items))
    return MultiBehaviorDataset("taobao-kmclr-slice", BEHAVIORS, train, test)


def build(fx):
    load_builtin()
    dataset = slice_dataset(fx)
    spec = get_model("kmclr-cokg")
    cfg = spec.resolve(dataset.name, 3, OVERRIDES)
    model = build_model(spec, dataset, cfg, "cpu", generator(0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.from_numpy(fx[f"init/{name}"]))
    model.train()
    return model, cfg, dataset


def fixture_batch(fx) -> Batch:
    pairs = {k: Pairs(*(torch.from_numpy(fx[f"batch/{k}/{f}"].astype(np.int64))
                        for f in ("users", "pos", "neg")),
                      weight=torch.from_numpy(fx[f"batch/{k}/weight"])) for k in range(3)}
    extra = {key[len("extra/"):]: torch.from_numpy(value) for key, value in fx.items()
             if key.startswith("extra/")}
    extra["view_keys"] = torch.from_numpy(fx["batch/view_keys"])
    return Batch(pairs[2].users, pairs, extra=extra,
                 user_weight=torch.from_numpy(fx["batch/user_weight"]),
                 noise=torch.from_numpy(fx["batch/noise"]))


def test_kmclr_release_kg_is_the_release_side_kg(fx):
    """Our co-interaction graph equals the kg.txt the SSLRec recipe wrote for the release."""
    dataset = slice_dataset(fx)
    kg = kmclr_kg.co_interaction_kg(dataset.matrices(), BEHAVIORS, 2, 1)
    assert np.array_equal(kg.triples, fx["kg/triples"].astype(np.int64))


def test_kmclr_release_batch_and_draws_are_ours(fx):
    """Our sampler still draws the fixture's batch, and our model the masks fed to the release."""
    model, cfg, dataset = build(fx)
    sampler = make_sampler(model, dataset, cfg, torch.device("cpu"),
                           streams.run_keys([RUN_KEY_SEED]))
    sampler.start_epoch(0)
    batch = member_batch(sampler.batch(torch.tensor(0), torch.tensor(0)))
    stored = fixture_batch(fx)
    for k in range(3):
        for f in ("users", "pos", "neg", "weight"):
            assert torch.equal(getattr(batch.pairs[k], f).to(getattr(stored.pairs[k], f).dtype),
                               getattr(stored.pairs[k], f)), (k, f)
    for key, value in stored.extra.items():
        assert torch.equal(batch.extra[key].to(value.dtype), value), key
    enc, noise, vkeys = model.encoder, batch.noise, batch.extra["view_keys"]

    def gat(keys, index):
        g = enc.gat_noise(keys, index)
        return [g.entities, g.attention, g.output]

    def edges(keys, base):
        u = uniforms(keys, streams.TAG_NOISE, base + 6, (enc.edges.normalized_values.numel(),))
        return (u < cfg["kg_keep_prob"]).float()
    shape = tuple(enc.slot_tails.shape)
    stab = [m for x in range(2) for v in range(2)
            for m in gat(vkeys, STABILITY_NOISE + 10 * x + 2 + 3 * v)]
    slots = [(uniforms(vkeys, streams.TAG_NOISE, STABILITY_NOISE + 10 * x + v, shape)
              >= cfg["kg_slot_drop"]).to(torch.uint8) for x in range(2) for v in range(2)]
    keeps = [uniforms(vkeys, streams.TAG_NOISE, EDGE_KEEP_NOISE + x, (enc.edges.nnz,))
             for x in range(2)]
    steps = [m for base in (BPR_NOISE, VIEW_NOISE, BLEND_NOISE) for x in range(2)
             for m in gat(noise, base + 3 * x)]
    h = hashlib.sha256()
    for t in stab + slots + keeps + steps + [edges(noise, BPR_NOISE), edges(noise, BLEND_NOISE)]:
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    assert np.array_equal(np.frombuffer(h.digest(), dtype=np.uint8), fx["draws/sha256"])


def test_kmclr_release_loss_parts_match(fx):
    model, cfg, _ = build(fx)
    total, parts = OurStep(model, cfg, fixture_batch(fx)).losses()
    names = [k[len("release/"):] for k in fx if k.startswith("release/") and "scores" not in k]
    assert set(names) == set(parts)
    for name in names:
        assert float(parts[name]) == pytest.approx(float(fx[f"release/{name}"]), rel=1e-6,
                                                   abs=0), name


def test_kmclr_release_scores_match(fx):
    model, _, _ = build(fx)
    with torch.no_grad():
        ours = model.scorer()(torch.arange(0, int(fx["slice/shape"][0]), 5)).numpy()
    absolute, relative = max_differences(ours, fx["release/scores_every5"])
    assert relative < 2e-6, (absolute, relative)


def test_kmclr_release_gradients_match(fx):
    model, cfg, _ = build(fx)
    grads = OurStep(model, cfg, fixture_batch(fx)).gradients()
    assert {f"grad/{n}" for n in grads} == {k for k in fx if k.startswith("grad/")}
    for name, grad in grads.items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 2e-6, (name, absolute, relative)


def test_kmclr_release_adam_steps_match(fx):
    """Parameters after 1 and 3 Adam steps (lr 1e-3) on the same batch equal the release's
    parameters after torch Adam on its summed gradient, over the entries whose gradient is not at
    rounding level on some step (stored mask, 99.96% of all entries)."""
    model, cfg, _ = build(fx)
    step = OurStep(model, cfg, fixture_batch(fx))
    for t in (1, 2, 3):
        params = step.step()
        if t == 2:
            continue
        for name, value in params.items():
            compared = np.unpackbits(fx[f"compared/{name}"])[:value.size].astype(bool)
            assert compared.mean() > 0.99, name
            theirs = fx[f"step{t}/{name}"].reshape(-1)
            diff = np.abs(value.reshape(-1) - theirs)[compared]
            assert diff.max() <= 1e-6 * max(np.abs(theirs).max(), 1.0) + 1e-7, (t, name)
