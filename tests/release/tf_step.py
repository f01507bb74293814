"""Shared by the release tests of the TF-family models (CIGF, PKEF): the slice and batch stored in a
fixture, our model on that slice with the fixture's initial weights, and our training step (the
trainer's own ``MemberBatch`` and ``FlatAdam``) for comparison with the release's outputs.

Fixture keys: ``slice/<behavior>/rows|cols`` (training interactions), ``slice/shape`` (users,
items), ``slice/test_items`` (one test item per slice user), ``batch/<k>/users|pos|neg`` (behavior
k's aligned triples), ``uni/<k>/<j>/users|pos|neg`` (PKEF's "k but not j" triples),
``init/<our parameter name>``, ``grad/<name>``, ``step<t>/<name>`` (after t
Adam steps on the same batch), ``release/<quantity>`` and ``cfg/<hyper-parameter>``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils import _pytree as pytree

from bench.data.dataset import MultiBehaviorDataset
from bench.models.base import Batch, Model, Pairs
from bench.models.registry import build_model, get_model, load_builtin
from bench.train.members import MemberBatch
from bench.train.optimizers import build_optimizer
from bench.train.seeds import generator

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BEHAVIORS = ("pv", "cart", "buy")


def load_fixture(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def slice_dataset(fx: dict[str, np.ndarray]) -> MultiBehaviorDataset:
    """The Taobao slice of the fixture as a dataset (binary matrices, one test item per user)."""
    n_users, n_items = (int(v) for v in fx["slice/shape"])
    train = {b: sp.csr_matrix((np.ones(len(fx[f"slice/{b}/rows"]), dtype=np.float32),
                               (fx[f"slice/{b}/rows"], fx[f"slice/{b}/cols"])),
                              shape=(n_users, n_items)) for b in BEHAVIORS}
    test_items = fx["slice/test_items"]
    test = sp.csr_matrix((np.ones(n_users, dtype=np.float32), (np.arange(n_users), test_items)),
                         shape=(n_users, n_items))
    return MultiBehaviorDataset("taobao-release-slice", BEHAVIORS, train, test)


def model_on_slice(name: str, fx: dict[str, np.ndarray], **overrides: Any
                   ) -> tuple[Model, dict[str, Any]]:
    """Model ``name`` on the fixture's slice with the fixture's initial weights."""
    load_builtin()
    dataset = slice_dataset(fx)
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    model = build_model(spec, dataset, cfg, "cpu", generator(0))
    load_weights(model, fx, "init/")
    return model, cfg


def load_weights(model: Model, fx: dict[str, np.ndarray], prefix: str) -> None:
    """Set every trainable parameter from ``<prefix><name>``; a parameter the fixture lacks, or a
    fixture weight the model lacks, is an error (the two sides must name the same set)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    stored = {key[len(prefix):] for key in fx if key.startswith(prefix)}
    assert stored == set(params), (sorted(stored ^ set(params)))
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(torch.from_numpy(fx[prefix + name]))


def fixture_batch(fx: dict[str, np.ndarray], n_behaviors: int = len(BEHAVIORS),
                  extra: dict[str, Any] | None = None) -> Batch:
    """The fixture's batch (every triple real, no padding)."""
    def ids(key: str) -> torch.Tensor:
        return torch.from_numpy(fx[key].astype(np.int64))
    pairs = {k: Pairs(ids(f"batch/{k}/users"), ids(f"batch/{k}/pos"), ids(f"batch/{k}/neg"))
             for k in range(n_behaviors)}
    users = torch.unique(torch.cat([p.users for p in pairs.values()]))
    return Batch(users=users, pairs=pairs, extra=extra or {})


def uni_pairs(fx: dict[str, np.ndarray]) -> dict[tuple[int, int], Pairs]:
    """PME's "k but not j" triples of the fixture, as ``Batch.extra["uni"]`` holds them."""
    out = {}
    for key in fx:
        parts = key.split("/")
        if parts[0] == "uni" and parts[3] == "users":
            k, j = int(parts[1]), int(parts[2])
            out[(k, j)] = Pairs(*(torch.from_numpy(fx[f"uni/{k}/{j}/{f}"].astype(np.int64))
                                  for f in ("users", "pos", "neg")))
    return out


def with_run_axis(batch: Batch) -> Batch:
    """The batch as a sampler gives it to the trainer: a leading axis of one run."""
    return pytree.tree_map(lambda t: t[None] if isinstance(t, torch.Tensor) else t, batch)


class OurStep:
    """Our training step on one run, as the trainer takes it: loss parts and gradient from
    ``MemberBatch``, the update from the configured optimizer (as the trainer builds it)."""

    def __init__(self, model: Model, cfg: dict[str, Any], batch: Batch) -> None:
        self.engine = MemberBatch([model])
        self.batch = with_run_axis(batch)
        self.optimizer = build_optimizer(self.engine.flat, torch.tensor([cfg["lr"]]),
                                         torch.tensor([cfg["lr_decay"]]), cfg["decay_steps"], cfg)

    def losses(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        totals, parts = self.engine.losses(self.batch)
        return totals[0], {name: value[0] for name, value in parts.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """d(total loss)/d(each parameter) at the current weights (leaves ``flat.grad`` set)."""
        self.engine.flat.grad = None
        total, _ = self.losses()
        total.backward()
        return {name: chunk.detach().numpy().copy() for name, chunk
                in self.engine.member_params(self.engine.flat.grad[0]).items()}

    def step(self) -> dict[str, np.ndarray]:
        """One optimizer step on the batch; the parameters after it."""
        self.gradients()
        self.optimizer.step()
        return {name: chunk.detach().numpy().copy() for name, chunk
                in self.engine.member_params(self.engine.flat[0]).items()}


def max_differences(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """Largest absolute difference, and the largest one relative to the release's largest value."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    absolute = float(np.abs(ours - theirs).max())
    return absolute, absolute / max(float(np.abs(theirs).max()), 1e-300)
