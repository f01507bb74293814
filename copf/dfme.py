"""``dfme``: COPF's decoupled fitting multi-expert decoder (spec §4.4-4.6).

Task k scores a pair (u, v) with experts in slots ``[own, others ascending]``:

- own: ``Z_u^k[u] * Z_v^k[v]``;
- for each other behavior j (ascending), a behavior-fitting expert built on the FULL tables, once
  per step for every task pair: ``F^0 = (alpha E^{j,*} + beta E^{k,*}) / 2`` (alpha = 0.1 on the
  other behavior, beta = 0.001 on the current task), ``F^{l+1} = A_k (F^l * r^l) + F^l`` on the
  current task's single-behavior graph ``A_k = left(A(B_k))`` with ``r^0 = R_k = behEmbeds[k]`` and
  ``r^l = r^{l-1} W_l`` (W_l d x d shared by tasks; they exist only if some ``mtl_layers`` entry is
  above 1), ``G^{j->k} = c * sum_{l=0..M_k} F^l`` with c = 0.1; the expert is
  ``G_u^{j->k}[u] * G_v^{j->k}[v]``. ``experts=raw`` uses ``Z_u^j[u] * Z_v^j[v]`` instead (no alpha,
  beta, c nor propagation: the "w/o for." and "w/o fit." ablations).

The experts are combined by ``aggregation`` (see copf.aggregation): by default ONE gate shared by
all tasks on ``[Z_u^k; Z_v^k]``, tower ``mult * sum_d``. Loss: ``sum_k lambda_k * 3 * BPR_k``
(tasks with lambda_k = 0 have no BPR; their tables still feed the contrastive loss and the other
tasks' experts) ``+ L_cl + reg * (|W_g|^2 + sum_l |W_l|^2 + aggregation weights)``; the encoder
adds its own L2.

Stop-gradient ``sg_mode`` (spec §4.6; the expert is stopped, never the gate):

- ``paper`` (default, Eq. 14 as intended): stop G^{K->k}, the expert built from the target behavior
  inside every auxiliary task k < K. The target task's experts are never stopped.
- ``code``: what the released code does through a shadowed loop variable: stop every fitting expert
  of task k iff ``mtl_layers[k] == K``. With the released layers [1, 1, 1] this equals ``none``.
- ``none``: no stop-gradient ("w/o back.").
- ``all``: stop every cross-behavior expert of every task ("all sg.").
- ``aux``: stop every cross-behavior expert of the auxiliary tasks only (the [I] alternative reading
  of "all sg.").

The c = 0.1 scale applies in every mode. A record states the mode through this parameter.
"""
from __future__ import annotations

import torch

from baselines.decoders.bilinear import CL_TEMPERATURE, CL_WEIGHT, LOSS_WEIGHTS, MULT, weighted_task_bpr
from bench.data.graphs import propagate, torch_graph
from bench.models.base import Batch, BehaviorReps, Decoder, rows, tf_l2, xavier_table
from bench.models.registry import register_decoder
from bench.params import DIM, TF_REG, Param
from copf.aggregation import (AGGREGATION, LINEAR_FORM, PROJECTION_GATE, SharedGate,
                              make_aggregation)
from copf.cogcn import layer_counts
from copf.contrastive import ItemAnchors, contrastive_loss, fast_path_allowed

SG_MODES = ("paper", "code", "none", "all", "aux")
EXPERT_KINDS = ("fitting", "raw")


@register_decoder("dfme")
class DFMEDecoder(Decoder):
    """DFME: own expert + behavior-fitting experts per task, one shared gate, contrastive loss
    (see the module docstring for every formula and the stop-gradient modes)."""

    params = (DIM, TF_REG, LOSS_WEIGHTS, MULT,
              Param("mtl_layers", [1, 1, 1], "DFME fitting-expert propagation layers per task "
                    "(gnn_mtl_layer)", list, low=0, length="behaviors"),
              Param("fit_alpha", 0.1, "alpha (--index): weight of the other behavior j in a "
                    "fitting expert", float, low=0.0),
              Param("fit_beta", 0.001, "beta (--src): weight of the current task k in a fitting "
                    "expert", float, low=0.0),
              Param("fit_scale", 0.1, "c: scale of every fitting expert (the code's "
                    "stopGradientOrNot)", float, low=0.0),
              Param("sg_mode", "paper", "stop-gradient on cross-behavior experts: paper (G^{K->k} "
                    "in auxiliary tasks), code (what the release computes: its inner layer loop "
                    "reuses the outer loop's `index`, so stopGradientOrNot gets mtl_layers[k] - 1, "
                    "e.g. 1, not 2, at two DFME layers: no stop-gradient unless mtl_layers[k] == "
                    "K, then all of task k), none, all, aux (all of the auxiliary tasks)", str,
                    choices=SG_MODES),
              Param("experts", "fitting", "cross-behavior experts: fitting (DFME) or raw "
                    "(Z_u^j * Z_v^j)", str, choices=EXPERT_KINDS),
              AGGREGATION, LINEAR_FORM, PROJECTION_GATE, CL_WEIGHT, CL_TEMPERATURE)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        K, d = self.n_behaviors, cfg["dim"]
        self.weights = [float(w) for w in cfg["loss_weights"]]
        self.mtl_layers = layer_counts(cfg["mtl_layers"], "mtl_layers")
        self.fitting = cfg["experts"] == "fitting"
        self.graphs: dict[int, object] = {}
        if self.fitting:
            self.beh_embeds = xavier_table(K, d, generator, device)
            self.graphs = {k: torch_graph(dataset, "behavior", "left", k=k, device=device)
                           for k in range(K)}
        self.aggregation = make_aggregation(cfg, K, generator, device)
        self.gate = SharedGate(d, K, generator, device) if self.aggregation.uses_gate else None
        n_w = max(self.mtl_layers) - 1 if self.fitting else 0
        self.layer_weights = torch.nn.ParameterList(
            [xavier_table(d, d, generator, device) for _ in range(max(0, n_w))])
        self.item_anchors = (ItemAnchors(self.target, self.n_items) if cfg["cl_weight"] > 0
                             else None)

    def plan_epoch(self, sampler, epoch: int) -> bool:
        """Size the contrastive loss's item rows for this epoch's batches (True: they grew)."""
        return self.item_anchors.plan_epoch(sampler, epoch) if self.item_anchors else False

    def plan_state(self) -> dict:
        return self.item_anchors.state() if self.item_anchors else {}

    def restore_plan(self, state: dict) -> None:
        if self.item_anchors:
            self.item_anchors.restore(state)

    # ---- experts -------------------------------------------------------------------------------
    def stopped(self, k: int) -> set[int]:
        """Behaviors j whose cross-behavior expert in task k is stop-gradient'ed."""
        mode, K, others = self.cfg["sg_mode"], self.n_behaviors, set(range(self.n_behaviors)) - {k}
        if mode == "paper":
            return {self.target} if k != self.target else set()
        if mode == "code":
            return others if self.mtl_layers[k] == K else set()
        if mode == "all":
            return others
        if mode == "aux":
            return others if k != self.target else set()
        return set()

    def fitting_tables(self, tables: list[torch.Tensor], k: int,
                       others: list[int]) -> list[torch.Tensor]:
        """G^{j->k} (N x d) for every j in ``others``, propagated together on A_k."""
        alpha, beta = self.cfg["fit_alpha"], self.cfg["fit_beta"]
        n = len(others)
        own = tables[k] * (beta / 2)
        f = torch.cat([torch.add(own, tables[j], alpha=alpha / 2) for j in others], dim=1)
        r = self.beh_embeds[k]
        total = f
        for layer in range(self.mtl_layers[k]):
            if layer >= 1:
                r = r @ self.layer_weights[layer - 1]
            f = propagate(self.graphs[k], f * r.repeat(n)) + f
            total = total + f
        return list((self.cfg["fit_scale"] * total).chunk(n, dim=1))

    def slot_tables(self, reps: BehaviorReps, k: int) -> tuple[list[tuple], list[int]]:
        """Full user and item tables of task k's slots [own, others ascending], stop-gradient
        applied, and the behavior of each non-own slot."""
        K, n_u = self.n_behaviors, self.n_users
        others = [j for j in range(K) if j != k]
        stopped = self.stopped(k)
        if self.fitting:
            tables = reps.extra.get("tables") or [reps.table(j) for j in range(K)]
            # stopped experts are propagated apart, without autograd: no backward through them
            live = [j for j in others if j not in stopped]
            dead = [j for j in others if j in stopped]
            fitted = dict(zip(live, self.fitting_tables(tables, k, live))) if live else {}
            if dead:
                with torch.no_grad():
                    fitted.update(zip(dead, self.fitting_tables(tables, k, dead)))
            cross = [(fitted[j][:n_u], fitted[j][n_u:]) for j in others]
        else:
            cross = [(reps.users[j], reps.items[j]) for j in others]
        cross = [(u.detach(), v.detach()) if j in stopped else (u, v)
                 for (u, v), j in zip(cross, others)]
        return [(reps.users[k], reps.items[k])] + cross, others

    # ---- scores and losses ---------------------------------------------------------------------
    def pair_scores(self, reps: BehaviorReps, k: int, users: torch.Tensor, items: torch.Tensor,
                    slots: tuple | None = None) -> torch.Tensor:
        """Task k's scores of aligned (user, item) pairs, ``mult`` included."""
        tables, others = slots if slots is not None else self.slot_tables(reps, k)
        xs = [rows(u, users) for u, _ in tables]
        ys = [rows(v, items) for _, v in tables]
        return self.cfg["mult"] * self.aggregation.pairs(xs, ys, k, others, self.gate)

    def regularized(self) -> list[torch.Tensor]:
        out = [self.gate.weight] if self.gate is not None else []
        return out + list(self.layer_weights) + self.aggregation.regularized()

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        def scores_of(k, pairs):
            n = len(pairs)
            s = self.pair_scores(reps, k, torch.cat([pairs.users, pairs.users]),
                                 torch.cat([pairs.pos, pairs.neg]))
            return s[:n], s[n:]

        parts = {}
        bpr = weighted_task_bpr(self.weights, self.hp("loss_weights"), scores_of, batch)
        if bpr is not None:
            parts["bpr"] = bpr
        if self.cfg["cl_weight"] > 0:
            cl = contrastive_loss(reps, batch, self.hp("cl_temperature"), self.hp("cl_weight"),
                                  fast_path_allowed(self.cfg["cl_temperature"]),
                                  item_rows=self.item_anchors.rows)
            if cl is not None:
                parts["cl"] = cl
        weights = self.regularized()
        if weights:
            parts["l2"] = tf_l2(weights, self.hp("reg"))
        return parts

    @torch.no_grad()
    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        """Target scores of ``users`` against every item; the target's slot tables (fitting experts
        included) are computed once per ``reps``, the aggregation factorizes (copf.aggregation)."""
        k = self.target
        cache = reps.extra.setdefault("_dfme_slots", {})
        key = (id(self), k)
        if key not in cache:
            cache[key] = self.slot_tables(reps, k)
        tables, others = cache[key]
        xs = [rows(u, users) for u, _ in tables]
        ys = [v for _, v in tables]
        return self.cfg["mult"] * self.aggregation.block(xs, ys, k, others, self.gate)
