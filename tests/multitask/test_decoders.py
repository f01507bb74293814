"""The multi-task decoders' characteristic mechanisms (spec §7.6, §7.7, §8), and their full-ranking
scores agreeing with their training (pair) scores."""
from __future__ import annotations

import pytest
import torch

from baselines.decoders.pme import project
from bench.models.base import BehaviorReps

from tests.multitask.helpers import build

DECODER_MODELS = ["cogcn+sb", "cogcn+mmoe", "cogcn+ple", "cogcn+mesi", "cogcn+pme", "cigf", "pkef",
                  "pkef+mesi", "embedding+pme", "crgcn+ple"]


def _pairs(dataset, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, dataset.n_users, (n,), generator=g)
    items = torch.randint(0, dataset.n_items, (n,), generator=g)
    return users, items


@pytest.mark.parametrize("name", DECODER_MODELS)
def test_full_ranking_matches_pair_scores(name, small):
    model, cfg = build(name, small)
    users = torch.arange(0, small.n_users, 5)
    full = model.scorer()(users)
    with torch.no_grad():
        reps = model.encoder()
        rep_users = users.repeat_interleave(small.n_items)
        items = torch.arange(small.n_items).repeat(len(users))
        pairs = cfg["mult"] * model.decoder.pair_scores(reps, small.n_behaviors - 1, rep_users, items)
    assert full.shape == (len(users), small.n_items)
    scale = float(full.abs().max())
    torch.testing.assert_close(full, pairs.view(len(users), -1), rtol=1e-4, atol=1e-5 * scale)


def test_mmoe_gates_sum_to_one_per_task(small):
    model, cfg = build("cogcn+mmoe", small)
    dec = model.decoder
    users, items = _pairs(small)
    with torch.no_grad():
        reps = model.encoder()
        m_u, m_v = dec.merged_rows(reps, users, items)
        q = torch.cat([m_u, m_v], dim=1)
        for k in range(small.n_behaviors):
            gate = dec.gate_weights(q, k)
            assert gate.shape == (len(users), cfg["mmoe_experts"])
            assert (gate > 0).all()
            torch.testing.assert_close(gate.sum(-1), torch.ones(len(users)))
            # tower on the gate-weighted mixture of the shared experts
            experts = dec.expert_outputs(q, k)
            expected = (gate.unsqueeze(-1) * experts).sum(1) @ dec.towers[k].weight \
                + dec.towers[k].bias
            torch.testing.assert_close(dec.pair_scores(reps, k, users, items), expected.squeeze(1))
    # every task sees all experts; the gates differ per task
    assert dec.task_experts == [[0, 1, 2]] * small.n_behaviors
    assert not torch.equal(dec.gates[0].weight, dec.gates[1].weight)


def test_ple_keeps_specific_experts_out_of_other_tasks(small):
    model, _ = build("cogcn+ple", small)
    dec = model.decoder
    users, items = _pairs(small)
    reps = model.encoder()
    K = small.n_behaviors
    shared = [dec.experts[i] for i in dec.task_experts[0] if i >= K]
    assert len(shared) == 1 and all(len(dec.specific_experts(k)) == 1 for k in range(K))
    for j in range(K):
        loss = dec.pair_scores(reps, j, users, items).sum()
        params = [p for k in range(K) for e in dec.specific_experts(k) for p in (e.weight, e.bias)]
        params += [shared[0].weight]
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        for k in range(K):
            for g in grads[2 * k:2 * k + 2]:
                if k == j:
                    assert g is not None and g.abs().sum() > 0
                else:
                    assert g is None or not g.any(), f"task {j}'s loss reached task {k}'s expert"
        assert grads[-1] is not None and grads[-1].abs().sum() > 0   # the shared expert learns


def test_shared_input_sum_and_weighted(small):
    users, items = _pairs(small)
    for mode in ("sum", "weighted"):
        model, cfg = build("cogcn+sb", small, shared_input=mode, loss_weights=[0.0, 0.25, 0.75])
        with torch.no_grad():
            reps = model.encoder()
            m_u, m_v = model.decoder.merged(reps)
        c = [1.0, 1.0, 1.0] if mode == "sum" else [0.0, 0.25, 0.75]
        torch.testing.assert_close(m_u, sum(ck * zu for ck, zu in zip(c, reps.users)))
        torch.testing.assert_close(m_v, sum(ck * zv for ck, zv in zip(c, reps.items)))


def test_shared_bottom_is_additive_in_user_and_item(small):
    model, cfg = build("cogcn+sb", small)
    scores = model.scorer()(torch.arange(4))
    # no interaction term: every user ranks the items the same way
    diff = scores - scores[:, :1]
    torch.testing.assert_close(diff, diff[:1].expand_as(diff), rtol=1e-4, atol=1e-3)


def test_pme_projection_splits_into_shared_and_unique(small):
    model, cfg = build("cogcn+pme", small)
    dec = model.decoder
    with torch.no_grad():
        reps = model.encoder()
    K = small.n_behaviors
    for k in range(K):
        for j in range(K):
            if j == k:
                continue
            (sha_u, sha_v), (uni_u, uni_v) = dec.split_tables(reps, k, j)
            for sha, uni, zk, zj in ((sha_u, uni_u, reps.users[k], reps.users[j]),
                                     (sha_v, uni_v, reps.items[k], reps.items[j])):
                torch.testing.assert_close(sha + uni, 0.01 * zj)
                # the unique part has no component along Z^k, row by row
                cos = (uni * zk).sum(-1) / (uni.norm(dim=-1) * zk.norm(dim=-1) + 1e-30)
                assert cos.abs().max() < 1e-4
                # the shared part lies along Z^k
                torch.testing.assert_close(sha, 0.01 * project(zj, zk))
                ratio = (sha * zk).sum(-1).abs() / (sha.norm(dim=-1) * zk.norm(dim=-1) + 1e-30)
                torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=1e-4, atol=1e-4)
    # slots: [own, others ascending], the others' shared parts
    slots = dec.slot_tables(reps, 1)
    assert slots[0][0] is reps.users[1]
    torch.testing.assert_close(slots[1][0], dec.split_tables(reps, 1, 0)[0][0])
    torch.testing.assert_close(slots[2][1], dec.split_tables(reps, 1, 2)[0][1])


def test_project_removes_the_component_along_the_direction():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 8, generator=g, dtype=torch.float64), torch.randn(50, 8, generator=g,
                                                                             dtype=torch.float64)
    p = project(b, a)
    torch.testing.assert_close(((b - p) * a).sum(-1), torch.zeros(50, dtype=torch.float64))
    torch.testing.assert_close(project(a, a), a)
    assert torch.equal(project(b, torch.zeros_like(a)), torch.zeros_like(a))   # isolated nodes


def test_mesi_experts_are_decoupled_and_in_natural_order(small):
    model, cfg = build("cogcn+mesi", small)
    dec = model.decoder
    users, items = _pairs(small)
    with torch.no_grad():
        base = model.encoder()
    K = small.n_behaviors
    users_t = [t.clone().requires_grad_(True) for t in base.users]
    items_t = [t.clone().requires_grad_(True) for t in base.items]
    reps = BehaviorReps(users_t, items_t)
    for k in range(K):
        gate, dots = dec.experts(reps, k, users, items)
        assert gate.shape == dots.shape == (len(users), K)
        for j in range(K):
            expected = (users_t[j][users] * items_t[j][items]).sum(-1)
            torch.testing.assert_close(dots[:, j], expected)          # slot j = behavior j
            grads = torch.autograd.grad(dots[:, j].sum(), users_t + items_t, allow_unused=True,
                                        retain_graph=True)
            for i in range(K):
                for g in (grads[i], grads[K + i]):
                    if i == j:
                        assert g is not None and g.abs().sum() > 0
                    else:
                        assert g is None or not g.any(), f"expert {j} read behavior {i}"
        # the gate reads the task's own tables only
        grads = torch.autograd.grad(gate.sum(dim=0)[0], users_t + items_t, allow_unused=True,
                                    retain_graph=True)
        for i in range(K):
            if i != k:
                assert grads[i] is None or not grads[i].any()


def test_shared_gate_is_one_for_all_tasks(small):
    for name in ("cogcn+mesi", "cogcn+pme"):
        model, _ = build(name, small)
        gates = [m for m in model.decoder.modules() if type(m).__name__ == "SlotGate"]
        assert len(gates) == 1 and gates[0].weight.shape == (2 * 64, small.n_behaviors)


def test_factorized_full_ranking_and_its_underflow_fallback(small):
    model, _ = build("cogcn+mesi", small)
    dec = model.decoder
    users = torch.arange(0, small.n_users, 3)
    with torch.no_grad():
        reps = model.encoder()
        slots = dec.slot_tables(reps, dec.target)
        direct = dec._block_direct(reps, slots, users)
        torch.testing.assert_close(dec.block_scores(reps, users), direct, rtol=1e-4,
                                   atol=1e-6 * float(direct.abs().max()))
        # gate logits spread far apart: the factorized denominator would underflow
        dec.gate.weight.mul_(1e5)
        reps = model.encoder()
        scores = dec.block_scores(reps, users)
        assert torch.isfinite(scores).all()
        torch.testing.assert_close(scores, dec._block_direct(reps, slots, users))
