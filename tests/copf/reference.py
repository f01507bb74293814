"""An independent dense NumPy (float64) derivation of COPF, spec §4.2-4.5 and §5, for the tests.

Written from the spec's formulas, not from the model code: dense bipartite matrices, explicit loops
over pairs, literal aggregation formulas. Only the parameter VALUES are read from a built model.
"""
from __future__ import annotations

import math

import numpy as np


def lift(m: np.ndarray) -> np.ndarray:
    u, i = m.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:] = m
    a[u:, :u] = m.T
    return a


def left(a: np.ndarray) -> np.ndarray:
    deg = a.sum(axis=1)
    inv = np.zeros_like(deg)
    inv[deg > 0] = 1.0 / deg[deg > 0]
    return inv[:, None] * a


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def cogcn(mats, e0, cfg):
    """Decoupled outputs E^{k,*} and the tables handed to the decoder."""
    k_count = len(mats)

    def graph(k):
        if cfg["in_graph"] == "cumulative":
            m = sum(mats[:k + 1])
        elif cfg["in_graph"] == "own":
            m = mats[k]
        else:
            m = sum(mats)
        return left(lift(m))

    x = e0
    outs = []
    for k in range(k_count):
        g = graph(k)
        layer = x
        acc = [layer]
        for _ in range(int(cfg["layers"][k])):
            layer = g @ layer + layer
            acc.append(layer)
        outs.append(sum(acc))
        if cfg["pre"] == "cumulative":
            x = layer + x
        elif cfg["pre"] == "strict":
            x = layer + e0 if cfg["strict_pre_e0"] else layer
        else:
            x = e0
    if cfg["post"] == "coupled":
        shared = sum(outs) if cfg["coupled_output"] == "sum" else outs[-1]
        return outs, [shared] * k_count
    return outs, outs


class Reference:
    """COPF (any variant) evaluated densely from a built model's parameter values."""

    def __init__(self, model, mats):
        self.cfg = model.cfg
        self.mats = [np.asarray(m.todense(), dtype=np.float64) for m in mats]
        self.K = len(mats)
        self.U = mats[0].shape[0]
        self.I = mats[0].shape[1]
        enc, dec = model.encoder, model.decoder
        as_np = lambda t: t.detach().double().numpy()  # noqa: E731
        self.e0u, self.e0i = as_np(enc.users), as_np(enc.items)
        self.e0 = np.concatenate([self.e0u, self.e0i])
        self.decoder = type(dec).registered_name
        self.beh = as_np(dec.beh_embeds) if hasattr(dec, "beh_embeds") else None
        gate = getattr(dec, "gate", None)
        self.wg = as_np(gate.weight) if gate is not None else None
        self.bg = as_np(gate.bias) if gate is not None else None
        self.wl = [as_np(w) for w in getattr(dec, "layer_weights", [])]
        agg = getattr(dec, "aggregation", None)
        self.agg_params = {}
        if agg is not None and hasattr(agg, "transforms"):
            self.agg_params["T"] = {key: as_np(t) for key, t in zip(agg.keys, agg.transforms)}
        if agg is not None and hasattr(agg, "query"):
            self.agg_params["WQ"], self.agg_params["WK"] = as_np(agg.query), as_np(agg.key)
        self.outs, self.tables = cogcn(self.mats, self.e0, self.cfg)

    # ---- DFME ---------------------------------------------------------------------------------
    def slots(self, k):
        c = self.cfg
        others = [j for j in range(self.K) if j != k]
        if self.decoder == "bilinear" or c["experts"] == "raw":
            return [self.tables[k]] + [self.tables[j] for j in others], others
        a_k = left(lift(self.mats[k]))
        cross = []
        for j in others:
            f = (c["fit_alpha"] * self.tables[j] + c["fit_beta"] * self.tables[k]) / 2
            r = self.beh[k]
            total = f.copy()
            for layer in range(int(c["mtl_layers"][k])):
                if layer >= 1:
                    r = r @ self.wl[layer - 1]
                f = a_k @ (f * r) + f
                total = total + f
            cross.append(c["fit_scale"] * total)
        return [self.tables[k]] + cross, others

    def gate(self, x, y):
        return softmax(np.concatenate([x, y]) @ self.wg + self.bg)

    def score(self, k, u, v, slots=None):
        c, n_u = self.cfg, self.U
        if self.decoder == "bilinear":
            t = self.tables[k]
            return c["mult"] * float((t[u] * t[n_u + v] * self.beh[k]).sum())
        tables, others = slots if slots is not None else self.slots(k)
        e = [t[u] * t[n_u + v] for t in tables]
        x0, y0 = tables[0][u], tables[0][n_u + v]
        agg = c["aggregation"]
        if agg == "gate":
            g = self.gate(x0, y0)
            o = sum(g[p] * e[p] for p in range(len(e)))
        elif agg == "none":
            o = e[0]
        elif agg == "sum":
            o = sum(e)
        elif agg == "linear" and c["linear_form"] == "pairwise":
            o = e[0] + sum(e[p + 1] @ self.agg_params["T"][(j, k)] for p, j in enumerate(others))
        elif agg == "linear":
            natural = [e[0] if j == k else e[others.index(j) + 1] for j in range(self.K)]
            o = np.concatenate(natural) @ self.agg_params["T"][k]
        elif agg == "vanilla":
            q = e[0] @ self.agg_params["WQ"]
            logits = np.array([q @ (ej @ self.agg_params["WK"]) for ej in e]) / math.sqrt(len(q))
            a = softmax(logits)
            o = sum(a[p] * e[p] for p in range(len(e)))
        elif agg == "projection":
            g = self.gate(x0, y0) if c["projection_gate"] else np.ones(len(e))
            o = g[0] * e[0]
            for p in range(1, len(e)):
                o = o + g[p] * (e[p] @ e[0]) / (e[0] @ e[0] + 1e-12) * e[0]
        else:
            raise ValueError(agg)
        return c["mult"] * float(o.sum())

    def target_scores(self, users):
        k = self.K - 1
        slots = None if self.decoder == "bilinear" else self.slots(k)
        return np.array([[self.score(k, u, v, slots) for v in range(self.I)] for u in users])

    # ---- loss ---------------------------------------------------------------------------------
    def contrastive(self, pairs_target, tau):
        def unit(m):
            n = np.sqrt((m * m).sum(axis=1, keepdims=True))
            return m / np.maximum(n, 1e-12)

        t = self.K - 1
        users, pos = pairs_target
        total = 0.0
        for k in range(t):
            for side, ids in ((slice(0, self.U), users), (slice(self.U, None), pos)):
                anchor = unit(self.tables[t][side])
                aux = unit(self.tables[k][side])
                for a in ids:
                    logits = aux @ anchor[a] / tau
                    m = logits.max()
                    total += -(logits[a] - (m + math.log(np.exp(logits - m).sum())))
        return total / self.U

    def loss(self, batch_pairs):
        """batch_pairs[k] = (users, pos, neg) lists. Returns the total loss."""
        c = self.cfg
        total = 0.0
        for k in range(self.K):
            lam = float(c["loss_weights"][k])
            if lam == 0 or k not in batch_pairs:
                continue
            users, pos, neg = batch_pairs[k]
            slots = None if self.decoder == "bilinear" else self.slots(k)
            bpr = np.mean([softplus(self.score(k, u, n, slots) - self.score(k, u, p, slots))
                           for u, p, n in zip(users, pos, neg)])
            total += lam * 3 * bpr
        use_cl = c["cl"] if self.decoder == "bilinear" else c["cl_weight"] > 0
        if use_cl:
            users, pos, _ = batch_pairs[self.K - 1]
            total += c["cl_weight"] * self.contrastive((users, pos), c["cl_temperature"])
        reg = [self.e0u, self.e0i]
        if self.wg is not None:
            reg.append(self.wg)
        reg += self.wl
        reg += list(self.agg_params.get("T", {}).values())
        if "WQ" in self.agg_params:
            reg += [self.agg_params["WQ"], self.agg_params["WK"]]
        total += c["reg"] * sum(float((w * w).sum()) for w in reg)
        return total
