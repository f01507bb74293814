"""``demo``: a small synthetic multi-behavior dataset generated from a seed (no file shipped).

Structure meant to resemble the real data: latent user/item factors with popularity skew drive a
funnel view -> cart -> buy in which downstream behaviors are mostly (not always) contained in
upstream ones, users differ in which behaviors they show, and every user keeps one held-out buy.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.data.dataset import MultiBehaviorDataset

DEMO_BEHAVIORS = ("view", "cart", "buy")


def make_demo(n_users: int = 1200, n_items: int = 1500, seed: int = 2025,
              dim: int = 8) -> MultiBehaviorDataset:
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, dim))
    items = rng.normal(size=(n_items, dim))
    popularity = np.log(rng.pareto(1.2, size=n_items) + 1.0)
    affinity = 2.0 * users @ items.T / np.sqrt(dim) + 0.5 * popularity[None, :]
    activity = rng.lognormal(mean=0.0, sigma=0.6, size=n_users)

    n_views = np.clip((25 * activity).astype(int), 8, n_items // 4)
    top = np.argsort(-(affinity + rng.gumbel(size=affinity.shape)), axis=1)
    view = np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        view[u, top[u, :n_views[u]]] = True

    # Users skip the cart with some probability, and a few buys come without a view.
    skips_cart = rng.random(n_users) < 0.3
    strength = np.where(view, affinity, -np.inf)
    cart_prob = 1 / (1 + np.exp(-(strength - np.quantile(affinity, 0.95))))
    cart = (rng.random(view.shape) < cart_prob) & view & ~skips_cart[:, None]
    buy_from = np.where(skips_cart[:, None], view, cart | (view & (rng.random(view.shape) < 0.02)))
    buy_prob = 1 / (1 + np.exp(-(strength - np.quantile(affinity, 0.985))))
    buy = (rng.random(view.shape) < buy_prob) & buy_from
    stray = rng.random(view.shape) < 0.0008
    buy |= stray & (affinity > np.quantile(affinity, 0.8))

    # Every user needs two buys: one to train on, one held out for test.
    for u in np.flatnonzero(buy.sum(axis=1) < 2):
        need = 2 - buy[u].sum()
        candidates = [i for i in top[u] if not buy[u, i]][:need]
        buy[u, candidates] = True
        view[u, candidates] = True
    test = np.zeros_like(buy)
    for u in range(n_users):
        bought = np.flatnonzero(buy[u])
        held = rng.choice(bought)
        test[u, held] = True
    buy &= ~test

    train = {"view": sp.csr_matrix(view, dtype=np.float32),
             "cart": sp.csr_matrix(cart, dtype=np.float32),
             "buy": sp.csr_matrix(buy, dtype=np.float32)}
    return MultiBehaviorDataset(name="demo", behaviors=DEMO_BEHAVIORS, train=train,
                                test=sp.csr_matrix(test, dtype=np.float32),
                                source=f"generated(seed={seed})")
