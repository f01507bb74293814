"""``pme``: PKEF's projection-based multi-expert decoder (spec §7.7, §8.6) with its "k but not j"
auxiliary losses, and the sampler ``multi-behavior+uni`` those losses need.

Task k (slots ``[own, others ascending]``, one gate shared by all tasks on ``[Z_u^k; Z_v^k]``):

- own expert ``Z_u^k[u] * Z_v^k[v]``;
- for each other behavior j, on the full tables (users and items alike, row-wise):
  ``proj_a(b) = (<b, a> / (|a|^2 + 1e-12)) a``,
  ``sha^{j|k} = s * proj_{Z^k}(Z^j)`` and ``uni^{j|k} = s * (Z^j - proj_{Z^k}(Z^j))`` with the scale
  s = ``pme_scale`` = 0.01, so ``sha + uni = s Z^j`` and uni is orthogonal to Z^k row by row;
  the expert is ``sha_u[u] * sha_v[v]``;
- ``y^k = mult * sum_p g_p sum_d expert_p``.

Uni auxiliary losses: ``y^{uni,k,j}(u, v) = mult * sum_d uni_u^{j|k}[u] * uni_v^{j|k}[v]``, trained with
BPR on pairs of ``B_k and not B_j`` ("k but not j"), negatives uniform among the items outside that
set (items the user has under j are possible negatives), ``min(n_pairs, |pos_k(u)|, |uni(u)|)``
pairs per user. Only for tasks with lambda_k > 0, for (k, j) whose set is non-empty and touches no
behavior of ``uni_exclude`` (the code excludes every pair touching cart on Tmall: [2]).

Loss: ``sum_k lambda_k * 3 * [BPR(y^k) + uni_weight * sum_j BPR(y^{uni,k,j})]`` + ``reg * |W_g|^2``
(PKEF's parallel-branch BPR belongs to the PKEF encoder, ``baselines.multi.pkef``; on other encoders
there is none, spec §8.6 [I]).

Sampler ``multi-behavior+uni``: the reference harness batches (``multi-behavior``, spec §2)
unchanged, plus ``Batch.extra["uni"][(k, j)]`` = the uni pairs of the batch's users. The uni pairs
are drawn from their own random stream (seeded from the sampling generator's seed and the epoch),
so the main pairs are exactly those the plain harness draws for the same seed.
"""
from __future__ import annotations

import dataclasses

import scipy.sparse as sp
import torch

from baselines.decoders.mesi import GatedSlotsDecoder
from baselines.decoders.shared_bottom import row_dot, rows_split
from bench.errors import ConfigError
from bench.models.base import Batch, BehaviorReps, bpr_softplus, rows
from bench.models.registry import register_decoder
from bench.params import Param
from bench.train.config import TRAIN_PARAMS
from bench.train.samplers import InteractionIndex, MultiBehaviorSampler, register_sampler

UNI_SAMPLER = "multi-behavior+uni"
PROJ_EPS = 1e-12
TASK_SCALE = 3.0

# PME's decoder makes its sampler the default of every model that uses it (a later default wins in
# bench.params.merge_params), so an on-the-fly "encoder+pme" trains its uni losses.
_SAMPLER = next(p for p in TRAIN_PARAMS if p.name == "sampler")
PME_SAMPLER = dataclasses.replace(_SAMPLER, default=UNI_SAMPLER)


def project(b: torch.Tensor, a: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Row-wise projection of b onto a, times ``scale``: ``scale (<b, a> / (|a|^2 + 1e-12)) a``."""
    coef = row_dot(b, a) / (row_dot(a, a) + PROJ_EPS)
    return (coef * scale if scale != 1.0 else coef) * a


def uni_matrix(dataset, k: int, j: int) -> sp.csr_matrix:
    """``B_k and not B_j`` (binary), cached on the dataset."""
    def build():
        bk, bj = dataset.matrices()[k], dataset.matrices()[j]
        out = (bk - bk.multiply(bj)).tocsr()
        out.eliminate_zeros()
        return out
    return dataset.cached(("pme-uni", k, j), build)


@register_decoder("pme")
class PMEDecoder(GatedSlotsDecoder):
    """PME (PKEF, spec §7.7): gate on the own tables, own expert + projected shared experts
    ``0.01 proj_{Z^k}(Z^j)``, and the uni auxiliary BPR losses (see the module docstring)."""

    params = GatedSlotsDecoder.params + (
        Param("pme_scale", 0.01, "PME: scale s of the shared and unique parts (sha = s proj, "
              "uni = s (Z^j - proj))", float, low=0.0, low_open=True),
        Param("uni_weight", 1.0, "PME: weight of the 'k but not j' auxiliary BPR losses (1 = the "
              "code, 0 = off)", float, low=0.0),
        Param("uni_exclude", [], "PME: behavior indices whose 'k but not j' pairs are never "
              "trained (the code: [2], cart, on Tmall)", list, low=0),
        PME_SAMPLER)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        K = self.n_behaviors
        excluded = set()
        for b in cfg["uni_exclude"]:
            if float(b) != int(b) or not 0 <= b < K:
                raise ConfigError(f"parameter 'uni_exclude' holds behavior indices 0..{K - 1}, "
                                  f"got {cfg['uni_exclude']!r}")
            excluded.add(int(b))
        self.uni_pairs: list[tuple[int, int]] = []
        if cfg["uni_weight"] > 0:
            for k in range(K):
                if self.weights[k] == 0 or k in excluded:
                    continue
                for j in range(K):
                    if j != k and j not in excluded and uni_matrix(dataset, k, j).nnz > 0:
                        self.uni_pairs.append((k, j))
        if self.uni_pairs and cfg["sampler"] != UNI_SAMPLER:
            raise ConfigError(f"decoder 'pme' trains 'k but not j' losses on pairs that only the "
                              f"'{UNI_SAMPLER}' sampler draws, but sampler is '{cfg['sampler']}'; "
                              f"set sampler={UNI_SAMPLER} (or uni_weight=0 to drop those losses)")

    # ---- shared and unique parts ----------------------------------------------------------------
    def parts(self, z_k: torch.Tensor, z_j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sha, uni) of rows Z^j with respect to rows Z^k: s proj_{Z^k}(Z^j) and the rest."""
        proj = project(z_j, z_k)
        scale = self.cfg["pme_scale"]
        return scale * proj, scale * (z_j - proj)

    def slot_rows(self, k, z):
        own = z[:, k]
        scale = self.cfg["pme_scale"]
        shared = [project(z[:, j], own, scale) for j in range(self.n_behaviors) if j != k]
        return torch.stack([own] + shared, dim=1)

    def split_tables(self, reps: BehaviorReps, k: int, j: int):
        """((sha_u, sha_v), (uni_u, uni_v)) of Z^j with respect to Z^k on the full tables."""
        def build():
            sha_u, uni_u = self.parts(reps.users[k], reps.users[j])
            sha_v, uni_v = self.parts(reps.items[k], reps.items[j])
            return (sha_u, sha_v), (uni_u, uni_v)
        return self.cached(reps, ("split", k, j), build)

    def slot_tables(self, reps, k):
        others = [j for j in range(self.n_behaviors) if j != k]
        return [(reps.users[k], reps.items[k])] + [self.split_tables(reps, k, j)[0] for j in others]

    # ---- uni losses ----------------------------------------------------------------------------
    def uni_row_scores(self, k: int, j: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y^{uni,k,j} of aligned rows of the side-by-side tables, ``mult`` included."""
        K = self.n_behaviors
        x = x.reshape(x.shape[0], K, -1)
        y = y.reshape(y.shape[0], K, -1)
        uni_x = self.parts(x[:, k], x[:, j])[1]
        uni_y = self.parts(y[:, k], y[:, j])[1]
        return self.cfg["mult"] * (uni_x * uni_y).sum(-1)

    def uni_scores(self, reps: BehaviorReps, k: int, j: int, users: torch.Tensor,
                   items: torch.Tensor) -> torch.Tensor:
        table_u, table_v = self.pair_tables(reps)
        return self.uni_row_scores(k, j, rows(table_u, users), rows(table_v, items))

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        parts = super().losses(reps, batch)
        uni_batch = batch.extra.get("uni", {})
        tasks = [(k, j, uni_batch[(k, j)]) for k, j in self.uni_pairs
                 if (k, j) in uni_batch]
        if not tasks:
            return parts
        table_u, table_v = self.pair_tables(reps)
        xs = rows_split(table_u, [p.users for _, _, p in tasks])
        ys = rows_split(table_v, [torch.cat([p.pos, p.neg]) for _, _, p in tasks])
        total = None
        for (k, j, pairs), x, y in zip(tasks, xs, ys):
            n = len(pairs)
            s = self.uni_row_scores(k, j, torch.cat([x, x]), y)
            weight = self.hp("loss_weights")[k] * (TASK_SCALE * self.cfg["uni_weight"])
            term = weight * bpr_softplus(s[:n], s[n:], pairs.weight)
            total = term if total is None else total + term
        parts["uni"] = total
        return parts


# ---- the sampler --------------------------------------------------------------------------------
# the uni groups' stream segments come after those of up to 32 behaviors; (k, j) with j < 8
UNI_SEGMENTS = 32


class UniPairsSampler(MultiBehaviorSampler):
    """The reference harness plus PME's "k but not j" pairs in ``Batch.extra["uni"]``: per user
    min(n_pairs, |pos_k(u)|, |uni(u)|) uni positives (with replacement) and as many negatives
    outside the uni set. Their draws have stream segments of their own, so the main pairs are
    exactly those the plain harness draws."""

    def __init__(self, dataset, cfg: dict, device: torch.device, behaviors: list[int],
                 uni_pairs: list[tuple[int, int]], keys: torch.Tensor) -> None:
        super().__init__(dataset.matrices(), behaviors, cfg["batch_size"], cfg["n_pairs"],
                         cfg["users_per_epoch"], device, keys)
        for k, j in uni_pairs:
            if j >= 8 or k >= 8:
                raise ConfigError(f"PME's uni sampler numbers its streams for up to 8 "
                                  f"behaviors; this dataset has more (pair {k}, {j})")
            index = InteractionIndex(uni_matrix(dataset, k, j), device,
                                     f"'{k} but not {j}' matrix")
            own = InteractionIndex(dataset.matrices()[k], device).degree
            # segments after the behaviors', numbered by (k, j)
            self.add_group(("uni", k, j), index, [own, index.degree], UNI_SEGMENTS + k * 8 + j)

    def with_extra(self, batch: Batch, extra: dict) -> Batch:
        batch.extra["uni"] = {(name[1], name[2]): pairs for name, pairs in extra.items()}
        return batch


@register_sampler(UNI_SAMPLER)
def _uni_sampler(dataset, cfg: dict, device: torch.device, model, keys) -> UniPairsSampler:
    behaviors = getattr(model.decoder, "trained_behaviors", None)
    behaviors = list(range(dataset.n_behaviors)) if behaviors is None else list(behaviors)
    uni_pairs = list(getattr(model.decoder, "uni_pairs", []))
    return UniPairsSampler(dataset, cfg, device, behaviors, uni_pairs, keys)
