"""How a DFME task k combines its experts into one score (the ``aggregation`` option of ``dfme``).

A task's experts come in slots ``[own, others ascending]``: slot 0 is the behavior-specific expert
``e^k = Z_u^k[u] * Z_v^k[v]``; slot p >= 1 is the cross-behavior expert from behavior
``others[p-1]`` (a DFME fitting expert G^{j->k}, or the raw ``e^j`` for ``experts=raw``). Every
slot is a product of a user row and an item row, ``x_p[u] * y_p[v]``, and every scheme returns the
tower input ``sum_d o^k`` (``mult`` is applied by the decoder).

Each scheme has two forms that must agree: ``pairs`` on aligned (user, item) rows, written as the
formula reads, for training; ``block`` for full ranking (a block of users against every item),
factorized so that a few users x items matrices are built, never more than SCORE_BLOCK_ELEMENTS
users x items x slots at once (``vanilla`` also builds users x d^2 and item chunks x d^2 factors).

The shared gate factorizes exactly: its logits are ``a_u + c_v`` (``a = W_{g,u}^T x``,
``c = W_{g,v}^T y + b_g``), so ``exp(logit_p) = exp(a_up) exp(c_vp)`` and
``sum_p g_p <x_p, y_p> = [exp(a_up) x_p]_p . [exp(c_vp) y_p]_p / (exp(a_u) . exp(c_v))``: two GEMMs
over the stacked slots instead of a users x items x K softmax. Each side is shifted by its own row
maximum (a per-user or per-item constant cancels in the ratio); should a denominator still
underflow, that block is recomputed with the plain softmax over K.

Schemes (spec §4.4 and Table 4, §5.2):

- ``gate`` (DFME): ``sum_p g_p <x_p, y_p>``, shared gate ``g = softmax(W_g^T [x_0; y_0] + b_g)``.
- ``none``: ``o^k = e^k`` (No Aggregation).
- ``sum``: ``o^k = sum_j e^j`` over all K experts (Summation).
- ``linear``: ``o^k = e^k + sum_{j != k} e^j T_{j->k}``, ``T_{j->k}`` d x d (Xavier, L2) — [I];
  ``linear_form=stacked`` is the alternative ``o^k = [e^1 ... e^K] T_k``, ``T_k`` Kd x d.
- ``vanilla``: attention with the task as query, ``a_kj = softmax_j((e^k W_Q).(e^j W_K)/sqrt d)``,
  ``o^k = sum_j a_kj e^j``; W_Q, W_K d x d shared by tasks (Xavier, L2) — [I].
- ``projection``: ``o^k = g_0 e^k + sum_{j != k} g_j proj_{e^k}(e^j)``,
  ``proj_a(b) = <b, a> / (|a|^2 + 1e-12) a``, g the shared DFME gate — [I];
  ``projection_gate=false`` is the alternative plain sum (all g = 1).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from bench.models.base import xavier_table
from bench.params import Param

AGGREGATIONS = ("gate", "none", "sum", "linear", "vanilla", "projection")
PROJ_EPS = 1e-12
# Largest item-side factor (items x d^2 floats) vanilla attention builds at once.
VANILLA_CHUNK_ELEMENTS = 1 << 22
# Largest users x items x slots tensor a plain (unfactorized) gate softmax builds at once.
SCORE_BLOCK_ELEMENTS = 1 << 22
# A factorized gate denominator below this is treated as underflowed.
UNDERFLOW = 1e-30

AGGREGATION = Param("aggregation", "gate", "how a task combines its experts: gate (DFME), none, "
                    "sum, linear, vanilla, projection (Table 4)", str, choices=AGGREGATIONS)
LINEAR_FORM = Param("linear_form", "pairwise", "aggregation=linear: pairwise (e^k + sum_j e^j "
                    "T_{j->k}) or stacked ([e^1..e^K] T_k)", str, choices=("pairwise", "stacked"))
PROJECTION_GATE = Param("projection_gate", True, "aggregation=projection: weight the experts with "
                        "the shared gate (true) or sum them (false)", bool)


class SharedGate(nn.Module):
    """One gate for every task: ``softmax(W_g^T [x; y] + b_g)`` over the K slots. W_g (2d x K) is
    Xavier and L2-regularized, b_g zeros and not regularized."""

    def __init__(self, dim: int, n_slots: int, generator: torch.Generator,
                 device: torch.device) -> None:
        super().__init__()
        self.weight = xavier_table(2 * dim, n_slots, generator, device)
        self.bias = nn.Parameter(torch.zeros(n_slots, device=device))

    def pairs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[n, K] gate of aligned rows."""
        return torch.softmax(torch.cat([x, y], dim=1) @ self.weight + self.bias, dim=-1)

    def logits(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The user part a = W_{g,u}^T x ([b, K]) and item part c = W_{g,v}^T y + b_g ([I, K])."""
        d = x.shape[1]
        return x @ self.weight[:d], y @ self.weight[d:] + self.bias

    def block(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[b, I, K] gate of every (user row, item row): softmax over K of a_u + c_v."""
        a, c = self.logits(x, y)
        return torch.softmax(a[:, None, :] + c[None, :, :], dim=-1)

    def factors(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """exp(a - max_p a) per user and exp(c - max_p c) per item: g = fa * fc / (fa . fc)."""
        a, c = self.logits(x, y)
        return (torch.exp(a - a.amax(1, keepdim=True)), torch.exp(c - c.amax(1, keepdim=True)))


def _scaled(tables: Sequence[torch.Tensor], factor: torch.Tensor) -> torch.Tensor:
    """[t_0 * f_0 | t_1 * f_1 | ...]: each slot's rows scaled by its factor column, side by side."""
    return torch.cat([t * factor[:, p:p + 1] for p, t in enumerate(tables)], dim=1)


def _user_chunks(n_users: int, n_items: int, n_slots: int) -> list[slice]:
    step = max(1, SCORE_BLOCK_ELEMENTS // max(1, n_items * n_slots))
    return [slice(s, s + step) for s in range(0, n_users, step)]


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).sum(-1)


class Aggregation(nn.Module):
    """Base: ``pairs`` and ``block`` as described in the module docstring."""

    uses_gate = False

    def regularized(self) -> list[torch.Tensor]:
        return []

    def pairs(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], k: int,
              others: Sequence[int], gate: SharedGate | None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def block(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], k: int,
              others: Sequence[int], gate: SharedGate | None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class GateAggregation(Aggregation):
    """DFME: the shared gate weights the slots' dot products."""

    uses_gate = True

    def pairs(self, xs, ys, k, others, gate):
        g = gate.pairs(xs[0], ys[0])
        dots = torch.stack([_dot(x, y) for x, y in zip(xs, ys)], dim=-1)
        return (g * dots).sum(-1)

    def block(self, xs, ys, k, others, gate):
        fa, fc = gate.factors(xs[0], ys[0])
        den = fa @ fc.T
        if bool((den < UNDERFLOW).any()):
            return self.plain_block(xs, ys, gate)
        return (_scaled(xs, fa) @ _scaled(ys, fc).T) / den

    def plain_block(self, xs, ys, gate):
        """The same scores with the softmax over K taken explicitly (users in chunks)."""
        out = []
        for sl in _user_chunks(xs[0].shape[0], ys[0].shape[0], len(xs)):
            g = gate.block(xs[0][sl], ys[0])
            dots = torch.stack([x[sl] @ y.T for x, y in zip(xs, ys)], dim=-1)
            out.append((g * dots).sum(-1))
        return torch.cat(out, dim=0)


class NoAggregation(Aggregation):
    def pairs(self, xs, ys, k, others, gate):
        return _dot(xs[0], ys[0])

    def block(self, xs, ys, k, others, gate):
        return xs[0] @ ys[0].T


class SumAggregation(Aggregation):
    def pairs(self, xs, ys, k, others, gate):
        return sum(_dot(x, y) for x, y in zip(xs, ys))

    def block(self, xs, ys, k, others, gate):
        return sum(x @ y.T for x, y in zip(xs, ys))


class LinearAggregation(Aggregation):
    """``pairwise``: one T_{j->k} per ordered pair; ``stacked``: one T_k (Kd x d) per task."""

    def __init__(self, dim: int, n_behaviors: int, form: str, generator: torch.Generator,
                 device: torch.device) -> None:
        super().__init__()
        self.form = form
        self.n_behaviors = n_behaviors
        if form == "pairwise":
            self.keys = [(j, k) for k in range(n_behaviors) for j in range(n_behaviors) if j != k]
            self.transforms = nn.ParameterList(
                [xavier_table(dim, dim, generator, device) for _ in self.keys])
        else:
            self.keys = list(range(n_behaviors))
            self.transforms = nn.ParameterList(
                [xavier_table(n_behaviors * dim, dim, generator, device) for _ in self.keys])

    def regularized(self):
        return list(self.transforms)

    def _pair_matrix(self, j: int, k: int) -> torch.Tensor:
        return self.transforms[self.keys.index((j, k))]

    def _stacked_slices(self, k: int, others: Sequence[int], d: int):
        """(slot, d x d slice of T_k) in the natural behavior order [e^1 .. e^K]."""
        slot_of = {k: 0, **{j: p + 1 for p, j in enumerate(others)}}
        t = self.transforms[k]
        return [(slot_of[j], t[j * d:(j + 1) * d]) for j in range(self.n_behaviors)]

    def pairs(self, xs, ys, k, others, gate):
        experts = [x * y for x, y in zip(xs, ys)]
        if self.form == "pairwise":
            out = experts[0]
            for p, j in enumerate(others):
                out = out + experts[p + 1] @ self._pair_matrix(j, k)
        else:
            d = xs[0].shape[1]
            out = sum(experts[slot] @ t for slot, t in self._stacked_slices(k, others, d))
        return out.sum(-1)

    def block(self, xs, ys, k, others, gate):
        # sum_d (e T)_d = <x * (T 1), y>: each transformed expert stays one user x item product
        if self.form == "pairwise":
            out = xs[0] @ ys[0].T
            for p, j in enumerate(others):
                t = self._pair_matrix(j, k).sum(1)
                out = out + (xs[p + 1] * t) @ ys[p + 1].T
            return out
        d = xs[0].shape[1]
        return sum((xs[slot] * t.sum(1)) @ ys[slot].T
                   for slot, t in self._stacked_slices(k, others, d))


class VanillaAggregation(Aggregation):
    """Attention over the experts with the current task's expert as the query; W_Q and W_K are
    shared by every task."""

    def __init__(self, dim: int, generator: torch.Generator, device: torch.device) -> None:
        super().__init__()
        self.query = xavier_table(dim, dim, generator, device)
        self.key = xavier_table(dim, dim, generator, device)

    def regularized(self):
        return [self.query, self.key]

    def pairs(self, xs, ys, k, others, gate):
        experts = torch.stack([x * y for x, y in zip(xs, ys)], dim=1)       # n x P x d
        q = experts[:, 0] @ self.query                                         # n x d
        keys = experts @ self.key                                              # n x P x d
        att = torch.softmax((keys * q[:, None, :]).sum(-1) / math.sqrt(q.shape[1]), dim=-1)
        return (att * experts.sum(-1)).sum(-1)

    def block(self, xs, ys, k, others, gate):
        # (e^k W_Q).(e^j W_K) = sum_{a,b} (x_k[a] x_j[b] M[a,b]) (y_k[a] y_j[b]) with M = W_Q W_K^T:
        # one GEMM of inner size d^2 per slot between a user factor and an item factor
        b, d = xs[0].shape
        m = self.query @ self.key.T
        scale = 1.0 / math.sqrt(d)
        users = [(xs[0][:, :, None] * x[:, None, :] * m).reshape(b, d * d) for x in xs]
        chunk = max(1, VANILLA_CHUNK_ELEMENTS // (d * d))
        out = []
        for start in range(0, ys[0].shape[0], chunk):
            y_chunk = [y[start:start + chunk] for y in ys]
            logits = [(u @ (y_chunk[0][:, :, None] * y[:, None, :]).reshape(-1, d * d).T) * scale
                      for u, y in zip(users, y_chunk)]
            top = torch.stack(logits).amax(0)
            weights = [torch.exp(z - top) for z in logits]
            total = sum(weights)
            out.append(sum(w * (x @ y.T) for w, x, y in zip(weights, xs, y_chunk)) / total)
        return torch.cat(out, dim=1)


class ProjectionAggregation(Aggregation):
    """Cross-behavior experts projected on the task's own expert, weighted by the shared gate
    (or summed with ``projection_gate=false``)."""

    def __init__(self, gated: bool) -> None:
        super().__init__()
        self.uses_gate = gated

    def pairs(self, xs, ys, k, others, gate):
        own = xs[0] * ys[0]
        norm = (own * own).sum(-1) + PROJ_EPS
        total = own.sum(-1)
        g = gate.pairs(xs[0], ys[0]) if self.uses_gate else None
        out = total if g is None else g[:, 0] * total
        for p in range(1, len(xs)):
            coef = ((xs[p] * ys[p]) * own).sum(-1) / norm
            term = coef * total
            out = out + (term if g is None else g[:, p] * term)
        return out

    def block(self, xs, ys, k, others, gate):
        # <e^j, e^k> = <x_k * x_j, y_k * y_j> and |e^k|^2 = <x_k^2, y_k^2>: user x item products;
        # the gate factorizes as in GateAggregation
        total = xs[0] @ ys[0].T
        norm = (xs[0] * xs[0]) @ (ys[0] * ys[0]).T + PROJ_EPS
        ux = [xs[0] * x for x in xs[1:]]
        vy = [ys[0] * y for y in ys[1:]]
        if not self.uses_gate:
            return total * (1 + sum(u @ v.T for u, v in zip(ux, vy)) / norm)
        fa, fc = gate.factors(xs[0], ys[0])
        den = fa @ fc.T
        if bool((den < UNDERFLOW).any()):
            return self.plain_block(xs, ys, gate)
        own = fa[:, :1] @ fc[:, :1].T
        cross = _scaled(ux, fa[:, 1:]) @ _scaled(vy, fc[:, 1:]).T
        return total * (own + cross / norm) / den

    def plain_block(self, xs, ys, gate):
        out = []
        for sl in _user_chunks(xs[0].shape[0], ys[0].shape[0], len(xs)):
            x0 = xs[0][sl]
            g = gate.block(x0, ys[0])
            total = x0 @ ys[0].T
            norm = (x0 * x0) @ (ys[0] * ys[0]).T + PROJ_EPS
            acc = g[..., 0] * total
            for p in range(1, len(xs)):
                acc = acc + g[..., p] * (((x0 * xs[p][sl]) @ (ys[0] * ys[p]).T) / norm * total)
            out.append(acc)
        return torch.cat(out, dim=0)


def make_aggregation(cfg: dict, n_behaviors: int, generator: torch.Generator,
                     device: torch.device) -> Aggregation:
    name = cfg["aggregation"]
    if name == "gate":
        return GateAggregation()
    if name == "none":
        return NoAggregation()
    if name == "sum":
        return SumAggregation()
    if name == "linear":
        return LinearAggregation(cfg["dim"], n_behaviors, cfg["linear_form"], generator, device)
    if name == "vanilla":
        return VanillaAggregation(cfg["dim"], generator, device)
    return ProjectionAggregation(cfg["projection_gate"])

