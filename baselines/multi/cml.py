"""``cml``: Contrastive Meta Network with behavior-aware weighting (``../shared/docs/
model-specs-table2.md`` Part 2, "CML"; release ``weiwei1206/CML`` @ ``dd84acd``).

Encoder ``cml`` (BGNN.py): L layers over the unnormalized behavior graphs A_k; per layer
p_k = A_k x_i, q_k = A_k^T x_u, x_u' = sigmoid(mean_k p_k W_u), z_{u,k} = sigmoid(p_k W_u) (items
alike); e = [x^1 || ... || x^L] W_cat and z_k = [z_k^1 || ... || z_k^L] W_cat with the same W_cat.
Every behavior scores <e_u, e_i>; the z vectors enter only the contrastive loss and the weight net.

Decoder ``cml`` (main.py ``trainEpoch``, MV_Net.py): one step is the release's three rounds, all
inside ``losses`` so that the suite's trainer keeps its single outer update:

1. on a copy of the encoder's weights (detached), J(theta, phi) with weights from the weight net
   phi; its gradients (``torch.func.grad``, so that seed batches run fused under vmap), each
   side clipped to norm ``cml_clip``; the copy takes one step of a fresh AdamW (lr
   ``cml_inner_lr``) and phi one step of its own persistent AdamW;
2. the meta step, phi only: 0.5 * J on the meta users' pairs, evaluated with the stepped copy
   (first order: the copy is a constant), clipped, phi's AdamW again; the copy is dropped;
3. the returned loss: J(theta) on round 1's rows with a new contrastive sample and phi's weights
   under no_grad; the trainer's optimizer steps theta with its gradient.

J = [(1/K) sum_k sum_rows w l + reg (|e_u|^2 + |e_pos|^2 + |e_neg|^2 of the buy rows)
     + beta (1/K) sum_k sum_users w c] / batch_size, with per-row weights w from phi (BPR rows
w1 + w3, contrastive rows (w1 + w3) / 2), phi in training mode (dropout, BatchNorm batch
statistics) in every round.

phi and its AdamW state are buffers that the loss updates in place (they are not trained by the
suite's optimizer; under vmap each member updates its own slice). phi's learning rate follows the
release's CyclicLR per epoch (``plan_epoch``). The graph products go through ``_LiftProduct``,
whose backward is itself, so that ``torch.func.grad`` can differentiate them. The outer update
of theta is the release's: AdamW (weight decay 1e-4) after clipping at norm 20, its base rate on
a CyclicLR from 1e-3 to 5e-3 per epoch (``optimizer=adamw``, ``bench.train.adamw``). The trainer
keeps phi's buffers in its checkpoints and syncs them into each member's model.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from baselines.multi import cml_parts as parts
from baselines.multi import cml_sampler  # noqa: F401  (registers the 'cml' sampler)
from baselines.multi.cml_sampler import META_USER_RULES
from bench.data.graphs import Graph, bipartite
from bench.models.base import Batch, BehaviorReps, Decoder, Encoder, Pairs, rows, xavier_table
from bench.models.registry import register_decoder, register_encoder, register_model
from bench.params import DIM, Param
from bench.train import streams

LAYERS = Param("cml_layers", 3, "CML: GCN layers (the release's gnn_layer '[16,16,16]')", int,
               low=1)
ROUND2_FORMS = ("release", "fixed")
PARAMS = (
    Param("cml_reg", 1e-3, "CML: L2 weight on the buy rows' embeddings, inside J", float, low=0.0),
    Param("cml_beta", 0.005, "CML: weight of the contrastive loss", float, low=0.0),
    Param("cml_inner_lr", 3e-4, "CML: learning rate of round 1's fresh AdamW on the copy "
          "(the release's lr)", float, low=0.0),
    Param("cml_weight_decay", 1e-4, "CML: AdamW weight decay of the copy and of phi", float,
          low=0.0),
    Param("cml_phi_lr", 1e-4, "CML: base learning rate of phi's AdamW (CyclicLR base)", float,
          low=0.0),
    Param("cml_phi_max_lr", 2e-3, "CML: peak learning rate of phi's CyclicLR (per epoch)", float,
          low=0.0),
    Param("cml_phi_cycle", [3, 7], "CML: epochs up and down of phi's CyclicLR", list, low=1),
    Param("cml_clip", 20.0, "CML: gradient-norm clip of each round's update", float,
          low=0.0, low_open=True),
    Param("cml_drop", 0.8, "CML: dropout rate inside the weight net", float, low=0.0, high=0.99),
    Param("cml_ssl_chunk", 18, "CML: contrastive chunk (SSL_batch): users of a's chunk are not "
          "its negatives", int, low=1),
    Param("cml_meta_batch", 128, "CML: meta users per step (round 2)", int, low=1),
    Param("cml_samp_num", 40, "CML: round-2 pairs per meta user and slot (sampNum)", int, low=1),
    Param("weight_decay", 1e-4, "CML: AdamW weight decay of the model's update (optimizer "
          "adamw)", float, low=0.0),
    Param("clip_norm", 20.0, "CML: gradient-norm clip of the model's update (optimizer adamw)",
          float, low=0.0),
    Param("cyclic_max_lr", 5e-3, "CML: peak of the model's CyclicLR from lr (optimizer adamw)",
          float, low=0.0),
    Param("cyclic_epochs", [5, 10], "CML: epochs up and down of the model's CyclicLR", list,
          low=1),
    Param("cml_round2", "release", "CML: round 2 as released (buy pairs in every behavior slot, "
          "one contrastive chunk, no negatives) or 'fixed' (slot k's own behavior, every other "
          "sampled meta user a negative)", str, choices=ROUND2_FORMS),
    Param("cml_meta_users", "all-or-view-only", "CML: who the meta list shuffles: buyers with "
          "every behavior or with view as their only other one [I], or every buyer", str,
          choices=META_USER_RULES),
)


class _LiftProduct(torch.autograd.Function):
    """graph @ x for a symmetric lifted graph, differentiable under torch.func transforms: the
    backward is the same product again (the suite's ``propagate`` computes its backward with a
    CSR product on the incoming tensor, which ``torch.func.grad`` cannot pass through: 'Sparse
    CSR tensors do not have strides'). Under vmap the members' tables are column blocks of one
    product, as in ``bench.data.graphs``."""

    @staticmethod
    def forward(x: torch.Tensor, graph: Graph) -> torch.Tensor:
        return torch.sparse.mm(graph.forward_csr, x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.graph = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _LiftProduct.apply(grad.contiguous(), ctx.graph), None   # A symmetric

    @staticmethod
    def vmap(info, in_dims, x: torch.Tensor, graph: Graph):
        if in_dims[0] is None:
            return _LiftProduct.apply(x, graph), None
        rows_first = x.movedim(in_dims[0], 1)                    # [N, S, d]
        out = _LiftProduct.apply(rows_first.reshape(rows_first.shape[0], -1).contiguous(), graph)
        return out.reshape(rows_first.shape), 1


def _graphs(dataset, device: torch.device) -> list[Graph]:
    """Per behavior the bipartite lift [[0, A_k], [A_k^T, 0]] of the binary A_k, not normalized
    (graph_utils.normalize_adj returns its input): one product gives A_k x_i and A_k^T x_u."""
    def build():
        graphs = [Graph(bipartite((m != 0).astype("float32")), device)
                  for m in dataset.matrices()]
        # _LiftProduct's backward relies on the lift being its own transpose
        assert all(g.transpose_csr is g.forward_csr for g in graphs)
        return graphs
    return dataset.cached(("cml-graphs", str(device)), build)


@register_encoder("cml")
class CMLEncoder(Encoder):
    """BGNN.GCN: ``users[k]``/``items[k]`` are z_{.,k}; ``extra['user']``/``['item']`` e."""

    params = (DIM, LAYERS)

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        d, L = cfg["dim"], cfg["cml_layers"]
        self.graphs = _graphs(dataset, device)
        self.users = xavier_table(self.n_users, d, generator, device)
        self.items = xavier_table(self.n_items, d, generator, device)
        self.u_w = nn.Parameter(torch.stack([xavier_table(d, d, generator, device).data
                                             for _ in range(L)]))
        self.i_w = nn.Parameter(torch.stack([xavier_table(d, d, generator, device).data
                                             for _ in range(L)]))
        self.u_cat = xavier_table(L * d, d, generator, device)
        self.i_cat = xavier_table(L * d, d, generator, device)

    def weights(self) -> list[torch.Tensor]:
        """theta in a fixed order (the tensors the current call sees, so that a functional call's
        substitutes are used)."""
        return [self.users, self.items, self.u_w, self.i_w, self.u_cat, self.i_cat]

    def forward_with(self, theta: list[torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(e_u, e_i, [z_{u,k}], [z_{i,k}]) for weights ``theta`` (the order of ``weights``)."""
        users, items, u_w, i_w, u_cat, i_cat = theta
        x_u, x_i = users, items
        n_users = users.shape[0]
        layers_u, layers_i, beh_u, beh_i = [], [], [], []
        for layer in range(u_w.shape[0]):
            both = torch.cat([x_u, x_i], 0)
            lifted = [_LiftProduct.apply(both, graph) for graph in self.graphs]
            p = [out[:n_users] for out in lifted]          # A_k x_i
            q = [out[n_users:] for out in lifted]          # A_k^T x_u
            x_u = torch.sigmoid(torch.stack(p).mean(0) @ u_w[layer])
            x_i = torch.sigmoid(torch.stack(q).mean(0) @ i_w[layer])
            layers_u.append(x_u)
            layers_i.append(x_i)
            beh_u.append([torch.sigmoid(pk @ u_w[layer]) for pk in p])
            beh_i.append([torch.sigmoid(qk @ i_w[layer]) for qk in q])
        e_u = torch.cat(layers_u, 1) @ u_cat
        e_i = torch.cat(layers_i, 1) @ i_cat
        K = len(self.graphs)
        z_u = [torch.cat([beh_u[l][k] for l in range(len(beh_u))], 1) @ u_cat for k in range(K)]
        z_i = [torch.cat([beh_i[l][k] for l in range(len(beh_i))], 1) @ i_cat for k in range(K)]
        return e_u, e_i, z_u, z_i

    def forward(self) -> BehaviorReps:
        e_u, e_i, z_u, z_i = self.forward_with(self.weights())
        return BehaviorReps(z_u, z_i, {"user": e_u, "item": e_i})


def _ssl_slots(users: torch.Tensor, weight: torch.Tensor, slots: int, noise: torch.Tensor,
               draw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int(n/10) of the n real positions, drawn without replacement in random order (the
    release's np.random.choice), in ``slots`` fixed slots: (users, 0/1 weights)."""
    keys = streams.derive(noise, streams.TAG_NOISE, draw)
    position = torch.arange(users.shape[-1], dtype=torch.int64, device=users.device)
    h = streams.hashes(keys, position)
    h = torch.where(weight > 0, h, h + (1 << 32))       # padding after every real position
    order = torch.argsort(h, dim=-1)[..., :slots]
    real = torch.div(weight.sum(-1), 10, rounding_mode="floor")
    slot_weight = (torch.arange(slots, device=users.device) < real).to(torch.float32)
    return users.gather(-1, order), slot_weight


@register_decoder("cml")
class CMLDecoder(Decoder):
    """The three rounds of a step; scores <e_u, e_i>."""

    params = PARAMS

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self._encoder = [encoder]          # a reference, not a submodule (no shared parameters)
        self.d = cfg["dim"]
        self.hidden = (3 * self.d) // 2
        phi = parts.init_phi(self.d, generator).to(device)
        self.register_buffer("phi", phi)
        self.register_buffer("phi_exp_avg", torch.zeros_like(phi))
        self.register_buffer("phi_exp_avg_sq", torch.zeros_like(phi))
        self.register_buffer("phi_steps", torch.zeros((), device=device))
        # the epoch's value of phi's CyclicLR: one tensor for every member (a structural
        # setting), written in place each epoch so that a captured step keeps reading it
        self.phi_lr = torch.full((), float(cfg["cml_phi_lr"]), device=device)
        self.epoch = 0
        # a dict here collects each round's gradients and per-row terms (release comparisons)
        self.trace: dict[str, torch.Tensor] | None = None

    # ---- the epoch's phi learning rate ---------------------------------------------------------
    def plan_epoch(self, sampler, epoch: int) -> bool:
        up, down = (int(v) for v in self.cfg["cml_phi_cycle"])
        self.phi_lr.fill_(parts.cyclic_lr(epoch, self.cfg["cml_phi_lr"],
                                          self.cfg["cml_phi_max_lr"], up, down))
        self.epoch = epoch
        return False

    def plan_state(self) -> dict:
        return {"epoch": self.epoch}

    def restore_plan(self, state: dict) -> None:
        self.plan_epoch(None, int(state.get("epoch", 0)))

    # ---- J ---------------------------------------------------------------------------------------
    def objective(self, reps: tuple, pairs: dict[int, Pairs], ssl_users: torch.Tensor,
                  ssl_weight: torch.Tensor, chunk: int, phi: torch.Tensor, noise: torch.Tensor,
                  round_index: int, weights_grad: bool) -> dict[str, torch.Tensor]:
        """J's parts, already divided by batch_size: 'bpr', 'reg', 'ssl'."""
        e_u, e_i, z_u, _ = reps
        K, d = len(z_u), self.d
        net = parts.unpack_phi(phi, d)
        p_drop = self.cfg["cml_drop"]
        bpr, ssl = 0.0, 0.0
        for k in range(K):
            pk = pairs[k]
            ue, pe, ne = rows(e_u, pk.users), rows(e_i, pk.pos), rows(e_i, pk.neg)
            loss = -F.logsigmoid((ue * pe).sum(-1) - (ue * ne).sum(-1))
            c = parts.contrastive(z_u[-1], z_u[k], ssl_users, ssl_weight, chunk)
            zk, zc, ec = rows(z_u[k], pk.users), rows(z_u[k], ssl_users), rows(e_u, ssl_users)
            rs_masks = parts.dropout_masks(noise, 64 * round_index + 2 * k, len(pk), self.hidden,
                                           p_drop)
            ssl_masks = parts.dropout_masks(noise, 64 * round_index + 2 * k + 1,
                                            ssl_users.shape[-1], self.hidden, p_drop)
            with torch.set_grad_enabled(weights_grad and torch.is_grad_enabled()):
                inputs = (loss, ue, zk, c, zc, ec)
                if not weights_grad:
                    inputs = tuple(t.detach() for t in inputs)
                w1, w3 = parts.weight_head(net, "rs", inputs[0], inputs[1], inputs[2],
                                           pk.weight, rs_masks)
                omega = w1 + w3
                w1, w3 = parts.weight_head(net, "ssl", inputs[3], inputs[4], inputs[5],
                                           ssl_weight, ssl_masks)
                omega_c = (w1 + w3) / 2
            bpr = bpr + (omega * loss * pk.weight).sum()
            ssl = ssl + (omega_c * c * ssl_weight).sum()
            if self.trace is not None:
                for name, value in (("bpr_rows", loss), ("bpr_weights", omega),
                                    ("ssl_rows", c), ("ssl_weights", omega_c)):
                    self.trace[f"round{round_index}/{name}/{k}"] = value.detach().clone()
        buy = pairs[K - 1]
        ue, pe, ne = rows(e_u, buy.users), rows(e_i, buy.pos), rows(e_i, buy.neg)
        reg = (((ue * ue).sum(-1) + (pe * pe).sum(-1) + (ne * ne).sum(-1)) * buy.weight).sum()
        scale = 1.0 / self.cfg["batch_size"]
        return {"bpr": bpr / K * scale, "reg": self.cfg["cml_reg"] * reg * scale,
                "ssl": self.cfg["cml_beta"] * ssl / K * scale}

    def _record_ssl(self, batch: Batch, round_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        slots = int(self.cfg["batch_size"] / 10)
        return _ssl_slots(batch.users, batch.user_weight, slots, batch.noise,
                          1000 + round_index)

    # ---- the step's three rounds -----------------------------------------------------------------
    def inner_rounds(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Rounds 1 and 2: phi's two updates (in place); returns their losses (detached)."""
        encoder = self._encoder[0]
        cfg = self.cfg
        theta = [t.detach() for t in encoder.weights()]     # the copy starts at theta
        ssl_users, ssl_weight = self._record_ssl(batch, 1)

        def round_one(theta_, phi_):
            terms = self.objective(encoder.forward_with(theta_), batch.pairs, ssl_users,
                                   ssl_weight, cfg["cml_ssl_chunk"], phi_, batch.noise, 1, True)
            return sum(terms.values()), terms

        # functional gradients (torch.func.grad), so that vmap can run the step for S members
        (g_theta, g_phi), terms1 = torch.func.grad(round_one, argnums=(0, 1), has_aux=True)(
            theta, self.phi.detach())
        g_theta = parts.clip_norm(g_theta, cfg["cml_clip"])
        (g_phi,) = parts.clip_norm([g_phi], cfg["cml_clip"])
        self._record("round1/grad_theta", g_theta)
        self._record("round1/grad_phi", g_phi)
        copy = parts.first_adamw_step(theta, g_theta, cfg["cml_inner_lr"],
                                      cfg["cml_weight_decay"])
        self._phi_step(g_phi)

        meta = batch.extra
        slots = int(cfg["cml_meta_batch"] / 10)
        meta_users, meta_ssl_weight = _ssl_slots(meta["meta_users"], meta["meta_weight"], slots,
                                                 batch.noise, 1002)
        chunk = cfg["cml_ssl_chunk"] if cfg["cml_round2"] == "release" else 1
        with torch.no_grad():     # first order: the stepped copy is a constant of round 2
            copy_reps = encoder.forward_with(copy)

        def round_two(phi_):
            terms = self.objective(copy_reps, meta["meta_pairs"], meta_users, meta_ssl_weight,
                                   chunk, phi_, batch.noise, 2, True)
            return 0.5 * sum(terms.values()), terms

        g_phi2, terms2 = torch.func.grad(round_two, has_aux=True)(self.phi.detach())
        (g_phi2,) = parts.clip_norm([g_phi2], cfg["cml_clip"])
        self._phi_step(g_phi2)
        self._record("round2/grad_phi", g_phi2)
        self._record("round1/copy", copy)
        for name, value in terms1.items():
            self._record(f"round1/{name}", value)
        for name, value in terms2.items():
            self._record(f"round2/{name}", 0.5 * value)
        return {"round1": sum(terms1.values()).detach(),
                "round2": 0.5 * sum(terms2.values()).detach()}

    def _record(self, key: str, value) -> None:
        if self.trace is None:
            return
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self.trace[f"{key}/{i}"] = v.detach().clone()
        else:
            self.trace[key] = value.detach().clone()

    def _phi_step(self, grad: torch.Tensor) -> None:
        parts.adamw_step_(self.phi, grad, self.phi_exp_avg, self.phi_exp_avg_sq, self.phi_steps,
                          self.phi_lr, self.cfg["cml_weight_decay"])

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        if torch.is_grad_enabled():         # a training step: the meta rounds first
            self.inner_rounds(batch)
        ssl_users, ssl_weight = self._record_ssl(batch, 3)
        terms = self.objective((reps.extra["user"], reps.extra["item"], reps.users, reps.items),
                               batch.pairs, ssl_users, ssl_weight, self.cfg["cml_ssl_chunk"],
                               self.phi, batch.noise, 3, False)
        return terms

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        return rows(reps.extra["user"], users) @ reps.extra["item"].T


# Release defaults (Params.py@de99684 Tmall block + README; main.py prepareModel's Tmall
# optimizer block): d 16, 3 layers, batch 8192, sampNum 40, meta_batch 128, SSL_batch 18,
# reg 1e-3, beta 0.005, drop 0.8, inner lr 3e-4, AdamW weight decay 1e-4, phi's CyclicLR
# 1e-4..2e-3 (3 up, 7 down), 300 epochs, the model's lr = its CyclicLR base 1e-3 (the suite's
# Adam keeps it constant). The release tests after every epoch; the meta list rule is [I].
register_model(
    "cml", "cml", "cml",
    "CML: behavior GCN with contrastive behavior views and a meta-learned per-row loss "
    "weighting (model-specs-table2 Part 2)",
    defaults={"dim": 16, "sampler": "cml", "batch_size": 8192, "lr": 1e-3, "lr_decay": 1.0,
              "optimizer": "adamw", "epochs": 300, "eval_schedule": "every", "eval_every": 1},
    inferred=("cml_meta_users", "eval_every"), code_modules=("bench.train.adamw",))
