"""``cogcn``: COPF's constrained cascade encoder (spec §4.2-4.3), with the switches of the Table 3
constraint ablations (spec §5.1).

Reference forward (every switch at its default):

- graph of behavior k: ``left(A(C_k))`` with ``C_k = sum_{k'<=k} B_k'`` (count-weighted, never
  binarized; dataset view "cumulative");
- ``E^{k,0} = X_k``, ``E^{k,l+1} = G_k E^{k,l} + E^{k,l}`` (the TF family's residual self-loop),
  ``E^{k,*} = sum_{l=0..L_k} E^{k,l}`` (a sum, not a mean), split into Z_u^k and Z_v^k;
- cascade ``X_1 = E0``, ``X_{k+1} = E^{k,L_k} + X_k``.

Switches:

- ``pre`` (pre-behavior constraint): ``cumulative`` (the cascade above), ``strict`` (strict pre:
  behavior k+1 only gets the most recent upstream behavior: ``X_{k+1} = E^{k,L_k} + E0``, or
  ``E^{k,L_k}`` alone with ``strict_pre_e0=false`` — the [I] alternative), ``none`` (``X_k = E0``).
- ``in_graph`` (in-behavior constraint): ``cumulative`` (the graph above), ``own``
  (``left(A(B_k))``: strict in, only the behavior's own signal), ``all``
  (``left(A(sum_{k'=1..K} B_k'))`` for every k, downstream behaviors included).
- ``post`` (post-behavior constraint): ``decoupled`` (one output per behavior) or ``coupled``
  (one output shared by every task): ``coupled_output=sum`` gives ``sum_k E^{k,*}`` (the code's
  ``ulat_merge``; [I] default), ``target`` gives ``E^{K,*}`` (the alternative).

``reps.extra``: ``tables`` (the N x d tables the decoder gets, E^{k,*} users then items, one per
behavior), ``behavior_tables`` (the decoupled E^{k,*} even when coupled), ``merged_users`` /
``merged_items`` (sum_k Z^k: the shared-bottom hook), ``ego_users`` / ``ego_items`` (E0).
Regularization: ``reg * (|uEmbed0|^2 + |iEmbed0|^2)`` every step (loss part ``l2``).
"""
from __future__ import annotations

import torch

from bench.data.graphs import propagate, torch_graph
from bench.errors import ConfigError
from bench.models.base import BehaviorReps, Encoder, tf_l2, xavier_table
from bench.models.registry import register_encoder
from bench.params import DIM, TF_REG, Param

PRE_MODES = ("cumulative", "strict", "none")
IN_GRAPHS = ("cumulative", "own", "all")
POST_MODES = ("decoupled", "coupled")
COUPLED_OUTPUTS = ("sum", "target")
# in_graph -> the dataset graph view (bench.data.graphs)
_VIEWS = {"cumulative": "cumulative", "own": "behavior", "all": "all"}


def layer_counts(values, name: str) -> list[int]:
    """A list parameter of layer counts as non-negative integers."""
    out = []
    for value in values:
        if float(value) != int(value) or value < 0:
            raise ConfigError(f"parameter '{name}' expects non-negative integers, got {values!r}")
        out.append(int(value))
    return out


@register_encoder("cogcn")
class COGCNEncoder(Encoder):
    """COGCN: cascade of per-behavior residual GCNs on count-weighted cumulative graphs; the
    pre/in/post constraint switches of Table 3 are parameters (see the module docstring)."""

    params = (DIM, TF_REG,
              Param("layers", [1, 1, 1], "COGCN propagation layers per behavior (gnn_layer)", list,
                    low=0, length="behaviors"),
              Param("pre", "cumulative", "pre-behavior constraint: cumulative cascade, strict "
                    "(most recent upstream behavior only) or none (every behavior starts at E0)",
                    str, choices=PRE_MODES),
              Param("strict_pre_e0", True, "pre=strict: X_{k+1} = E^{k,L} + E0 (true) or E^{k,L} "
                    "alone (false)", bool),
              Param("in_graph", "cumulative", "in-behavior constraint: graph of behavior k is "
                    "cumulative (sum of behaviors <= k, counts), own (B_k) or all (sum of all)",
                    str, choices=IN_GRAPHS),
              Param("post", "decoupled", "post-behavior constraint: decoupled per-behavior outputs "
                    "or one coupled output shared by all tasks", str, choices=POST_MODES),
              Param("coupled_output", "sum", "post=coupled: the shared output is sum_k E^{k,*} "
                    "(sum) or the target's E^{K,*} (target)", str, choices=COUPLED_OUTPUTS))

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        self.layers = layer_counts(cfg["layers"], "layers")
        if len(self.layers) != self.n_behaviors:
            raise ConfigError(f"parameter 'layers' needs one entry per behavior "
                              f"({self.n_behaviors}), got {cfg['layers']!r}")
        view = _VIEWS[cfg["in_graph"]]
        self.graphs = [torch_graph(dataset, view, "left", k=None if view == "all" else k,
                                   device=device) for k in range(self.n_behaviors)]
        self.users = xavier_table(self.n_users, cfg["dim"], generator, device)
        self.items = xavier_table(self.n_items, cfg["dim"], generator, device)

    def behavior_tables(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The decoupled outputs E^{k,*} (N x d each) and E0."""
        e0 = torch.cat([self.users, self.items], dim=0)
        pre, keep_e0 = self.cfg["pre"], self.cfg["strict_pre_e0"]
        x = e0
        tables = []
        for k in range(self.n_behaviors):
            layer = total = x
            for _ in range(self.layers[k]):
                layer = propagate(self.graphs[k], layer) + layer
                total = total + layer
            tables.append(total)
            if pre == "cumulative":
                x = layer + x
            elif pre == "strict":
                x = layer + e0 if keep_e0 else layer
            else:
                x = e0
        return tables, e0

    def forward(self) -> BehaviorReps:
        tables, _ = self.behavior_tables()
        n_u = self.n_users
        if self.cfg["post"] == "coupled":
            shared = tables[-1] if self.cfg["coupled_output"] == "target" else sum(tables)
            decoded = [shared] * self.n_behaviors
        else:
            decoded = tables
        merged = sum(tables)
        return BehaviorReps([t[:n_u] for t in decoded], [t[n_u:] for t in decoded],
                            {"tables": decoded, "behavior_tables": tables,
                             "merged_users": merged[:n_u], "merged_items": merged[n_u:],
                             "ego_users": self.users, "ego_items": self.items})

    def losses(self, reps: BehaviorReps, batch) -> dict[str, torch.Tensor]:
        return {"l2": tf_l2([self.users, self.items], self.hp("reg"))}
