"""Training samplers: fixed-shape batches drawn on the device for S runs at once.

Every sampler serves a batch of S >= 1 runs (a plain run is S = 1). Its batches carry a leading run
axis ([S, ...]), each run drawing from its own counter-based stream (``bench.train.streams``) keyed
by the run's sampling seed, so a run samples the same batches alone and inside any batch.

A step never synchronizes with the host: shapes are fixed, draws are hashes of (key, step, slot),
negatives come straight from the complement of a user's items (no rejection loop), and ragged
per-user pair lists are laid out in a fixed number of slots with a 0/1 weight. Where that number
depends on the epoch's order of users (the multi-behavior harness: min(n_pairs, #positives) pairs
per user), ``start_epoch`` computes what the epoch needs, once, and the slot count only ever grows
(by at least an eighth, rounded up to a multiple of 256), so that a captured CUDA graph is rarely
rebuilt. ``start_epoch`` says when shapes changed.

The interface a trainer uses:

- ``steps_per_epoch``;
- ``start_epoch(epoch) -> bool``: prepare the epoch (True when the batch shapes changed);
- ``batch(step, global_step) -> Batch``: the batch of step ``step`` (0-based within the epoch) for
  every run; both are int64 device scalars, so one captured step serves every step;
- ``state() / restore(state)``: what a checkpoint needs to resume to the same batches (slot counts).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils import _pytree as pytree

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.models.base import Batch, Model, Pairs
from bench.train import streams

SLOT_QUANTUM = 256


class Sampler(Protocol):
    """What the trainer needs of a sampler (see the module docstring)."""

    steps_per_epoch: int

    def start_epoch(self, epoch: int) -> bool: ...

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


SamplerFactory = Callable[[MultiBehaviorDataset, dict, torch.device, Model, torch.Tensor], Sampler]
SAMPLERS: dict[str, SamplerFactory] = {}


def register_sampler(name: str):
    """Register ``factory(dataset, cfg, device, model, keys) -> Sampler`` under ``name``; a model
    selects it with its ``sampler`` parameter. ``keys`` are the runs' stream keys, [S, 2]."""
    def wrap(factory: SamplerFactory) -> SamplerFactory:
        if name in SAMPLERS:
            raise ConfigError(f"sampler name '{name}' is registered twice")
        SAMPLERS[name] = factory
        return factory
    return wrap


def make_sampler(model: Model, dataset: MultiBehaviorDataset, cfg: dict[str, Any],
                 device: torch.device, keys: torch.Tensor) -> Sampler | None:
    """The model's sampler for runs with stream keys ``keys`` ([S, 2], see
    ``streams.run_keys``), or None for a model that does not train."""
    name = cfg["sampler"]
    if name == "none" or not model.trainable:
        return None
    if name not in SAMPLERS:
        raise ConfigError(f"{model.name}: unknown sampler '{name}'; samplers: "
                          f"{', '.join(sorted(SAMPLERS))}, none")
    return SAMPLERS[name](dataset, cfg, device, model, keys.to(device))


def endless_batches(sampler: Sampler, device: torch.device | str = "cpu"):
    """The sampler's batches epoch after epoch (benchmarks, tests): yields (batch, shapes_changed)."""
    global_step = 0
    epoch = 0
    while True:
        changed = sampler.start_epoch(epoch)
        for step in range(sampler.steps_per_epoch):
            yield sampler.batch(torch.tensor(step, device=device),
                                torch.tensor(global_step, device=device)), changed
            changed = False
            global_step += 1
        epoch += 1


def member_batch(batch: Batch, member: int = 0) -> Batch:
    """One run's batch out of a sampler's batch (the leading run axis dropped)."""
    return pytree.tree_map(lambda t: t[member] if isinstance(t, torch.Tensor) else t, batch)


def run_batches(sampler: Sampler, member: int = 0, device: torch.device | str = "cpu"):
    """One run's batches, epoch after epoch (tests, pretraining loops)."""
    for batch, _ in endless_batches(sampler, device):
        yield member_batch(batch, member)


def grown(current: int, needed: int) -> int:
    """The slot count after an epoch that needs ``needed`` slots: unchanged when it fits, else at
    least an eighth more than needed, rounded up to a multiple of SLOT_QUANTUM."""
    if needed <= current:
        return current
    want = needed + needed // 8
    return max(SLOT_QUANTUM, -(-want // SLOT_QUANTUM) * SLOT_QUANTUM)


class InteractionIndex:
    """A binary user x item matrix on a device: per-user positives, uniform draws among them and
    among the items outside them, and membership tests; no host synchronization.

    A negative is drawn as the r-th item outside the user's sorted positives p_0 < p_1 < ...,
    r uniform in [0, #items - #positives): it is r + #{i : p_i - i <= r}, one binary search in the
    non-decreasing keys ``user * n_items + p_i - i``."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device,
                 where: str = "training matrix") -> None:
        m = sp.csr_matrix(matrix)
        m.sort_indices()
        self.n_items = m.shape[1]
        self.n_users = m.shape[0]
        degree = np.diff(m.indptr).astype(np.int64)
        self.indptr = torch.as_tensor(m.indptr.astype(np.int64), device=device)
        self.indices = torch.as_tensor(m.indices.astype(np.int64), device=device)
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), degree)
        self.keys = torch.as_tensor(rows * self.n_items + m.indices, device=device)
        within = np.arange(m.nnz, dtype=np.int64) - np.repeat(m.indptr[:-1].astype(np.int64), degree)
        self.gap_keys = torch.as_tensor(rows * self.n_items + m.indices - within, device=device)
        self.degree = torch.as_tensor(degree, device=device)
        self.full_users = int((degree >= self.n_items).sum())
        self.where = where
        # padding slots may name any user; keep their lookups inside the arrays
        self.last = max(m.nnz - 1, 0)

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.keys.numel() == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        query = users * self.n_items + items
        pos = torch.searchsorted(self.keys, query).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == query

    def positives(self, users: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One positive per entry of ``users``, uniform, from 32-bit hashes ``h`` of the same shape;
        an entry whose user has none gets an arbitrary item (a padding slot)."""
        offset = streams.below(h, self.degree[users])
        return self.indices[(self.indptr[users] + offset).clamp_(max=self.last)]

    def negatives(self, users: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One item per entry of ``users`` outside the user's positives, uniform."""
        if self.full_users:
            raise ConfigError(f"{self.full_users} user(s) have every item in the {self.where}, so "
                              "no negative item can be drawn for them; remove those users")
        r = streams.below(h, self.n_items - self.degree[users])
        if self.gap_keys.numel() == 0:
            return r
        before = torch.searchsorted(self.gap_keys, users * self.n_items + r, right=True)
        return r + (before - self.indptr[users])


def expand(counts: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay out ``counts[..., b]`` entries for each owner b in ``slots`` fixed slots, owner after
    owner: returns (owner [..., slots], rank within the owner [..., slots], 0/1 weight)."""
    cum = counts.cumsum(-1)
    lead = counts.shape[:-1]
    position = torch.arange(slots, device=counts.device).expand(*lead, slots).contiguous()
    owner = torch.searchsorted(cum, position, right=True).clamp_(max=counts.shape[-1] - 1)
    start = cum.gather(-1, owner) - counts.gather(-1, owner)
    weight = (position < cum[..., -1:]).to(torch.float32)
    return owner, position - start, weight


class CounterLayout:
    """The counters of a step's draws: segment ``name`` of ``size`` slots starts at a fixed base,
    its number ``segment`` << 24. The sampler numbers its segments from what they are (a behavior,
    a pair of behaviors), never from the order they were made in, so a draw's value depends on
    neither the other segments nor their sizes: a run draws the same numbers alone and in a batch
    whose structure samples more (larger slot counts, more pair groups)."""

    SEGMENT_BITS = 24
    SEGMENTS = 1 << (32 - SEGMENT_BITS)

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.segments: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.counters = torch.zeros(0, dtype=torch.int64, device=device)

    def set(self, name: str, size: int, segment: int) -> None:
        if size >= 1 << self.SEGMENT_BITS:
            raise ConfigError(f"a step draws {size} numbers for '{name}', more than the "
                              f"{1 << self.SEGMENT_BITS} a stream segment holds; lower batch_size")
        if not 0 <= segment < self.SEGMENTS or any(
                s == segment and n != name for n, s in self.segments.items()):
            raise ValueError(f"stream segment {segment} of '{name}' is out of range or taken")
        if self.sizes.get(name) == size:
            return      # a captured step keeps reading the same counters
        self.segments[name] = segment
        self.sizes[name] = size
        parts = [torch.arange(self.sizes[n], dtype=torch.int64, device=self.device)
                 + (self.segments[n] << self.SEGMENT_BITS) for n in self.sizes]
        self.counters = torch.cat(parts) if parts else self.counters

    def draw(self, keys: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every segment's 32-bit hashes under ``keys`` [S, 2]: name -> [S, size], one hash pass."""
        h = streams.hashes(keys, self.counters)
        return dict(zip(self.sizes, h.split(list(self.sizes.values()), dim=-1)))


class EpochOrder:
    """A per-epoch random order of ``n`` ids for each of S runs, padded to whole batches:
    ``order`` [S, steps * batch] (padding ids are 0) and ``valid`` [S, steps * batch] (0/1 float).
    Rewritten in place each epoch, so a captured graph keeps reading the same buffers."""

    def __init__(self, keys: torch.Tensor, n: int, take: int, batch_size: int) -> None:
        self.keys, self.n, self.take = keys, n, min(take, n)
        self.batch_size = batch_size
        self.steps = max(1, -(-self.take // batch_size))
        S, device = keys.shape[0], keys.device
        self.order = torch.zeros(S, self.steps * batch_size, dtype=torch.int64, device=device)
        self.valid = torch.zeros(S, self.steps * batch_size, dtype=torch.float32, device=device)
        self.valid[:, :self.take] = 1.0
        self.offsets = torch.arange(batch_size, device=device)

    def shuffle(self, epoch: int) -> None:
        perm = streams.permutation(streams.derive(self.keys, streams.TAG_EPOCH, epoch), self.n)
        self.order[:, :self.take].copy_(perm[:, :self.take])

    def slots(self, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ids and 0/1 weights of step ``step``'s batch: [S, batch] each. A step past the
        epoch's end wraps around (a CUDA graph's warm-up may step there; its updates are undone)."""
        index = (step % self.steps) * self.batch_size + self.offsets
        return self.order.index_select(1, index), self.valid.index_select(1, index)

    def per_step(self, values: torch.Tensor) -> torch.Tensor:
        """[S, steps, batch] view of a per-slot quantity laid out like ``order``."""
        return values.view(values.shape[0], self.steps, self.batch_size)


def _gathered(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for ids of any shape."""
    return table.index_select(0, ids.reshape(-1)).view(ids.shape)


class MultiBehaviorSampler:
    """The reference TF-family harness (model-specs §2): per epoch a permutation of the users in
    batches; per behavior and user min(n_pairs, #positives) positives drawn with replacement and as
    many negatives outside that behavior's positives, laid out user after user in a fixed number
    of slots (``Pairs.owner`` names each pair's user in the batch).

    Pairs come in groups: one per sampled behavior, keyed by its index; a subclass may add groups
    (``add_group``) whose pairs go to ``Batch.extra``."""

    def __init__(self, matrices: Sequence[sp.csr_matrix], behaviors: Sequence[int], batch_size: int,
                 n_pairs: int, users_per_epoch: int, device: torch.device,
                 keys: torch.Tensor) -> None:
        self.n_users = matrices[0].shape[0]
        self.n_pairs = n_pairs
        self.keys = keys
        self.device = device
        self.users = EpochOrder(keys, self.n_users, users_per_epoch or self.n_users, batch_size)
        self.steps_per_epoch = self.users.steps
        self.layout = CounterLayout(device)
        self.behaviors = list(behaviors)
        # group -> (the index draws come from, the degree tables whose minimum bounds the count)
        self.groups: dict[Any, tuple[InteractionIndex, list[torch.Tensor]]] = {}
        self.slots: dict[Any, int] = {}
        self.segment_of: dict[Any, int] = {}
        for k in self.behaviors:
            index = InteractionIndex(matrices[k], device, f"matrix of behavior {k}")
            self.add_group(k, index, [index.degree], k)

    def add_group(self, name: Any, index: InteractionIndex, degrees: list[torch.Tensor],
                  segment: int) -> None:
        """A pair group whose positives and negatives draw from stream segments ``2 * segment``
        and ``2 * segment + 1`` (numbered from what the group is, see ``CounterLayout``)."""
        self.groups[name] = (index, degrees)
        self.slots[name] = 0
        self.segment_of[name] = segment
        # every group's stream segments exist from the start (it may need no slot in an epoch)
        self.layout.set(f"{name}/pos", 0, 2 * segment)
        self.layout.set(f"{name}/neg", 0, 2 * segment + 1)

    def counts(self, name: Any, users: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Pairs per user of group ``name``: min(n_pairs, the group's degrees), 0 on padding."""
        degrees = self.groups[name][1]
        count = _gathered(degrees[0], users)
        for degree in degrees[1:]:
            count = torch.minimum(count, _gathered(degree, users))
        return count.clamp_(max=self.n_pairs) * weight.to(torch.int64)

    def needed_slots(self) -> dict[Any, int]:
        """Per group, the most slots one step of this epoch needs (one host sync)."""
        order, valid = self.users.order, self.users.valid
        needs = torch.stack([self.users.per_step(self.counts(name, order, valid)).sum(-1).amax()
                             for name in self.groups])
        return dict(zip(self.groups, needs.tolist()))

    def start_epoch(self, epoch: int) -> bool:
        self.users.shuffle(epoch)
        return self._fit(self.needed_slots())

    def _fit(self, needs: dict[Any, int]) -> bool:
        return self._resize({name: grown(self.slots[name], int(need))
                             for name, need in needs.items()})

    def _resize(self, sizes: dict[Any, int]) -> bool:
        changed = False
        for name, size in sizes.items():
            if size != self.slots[name]:
                self.slots[name] = size
                changed = True
                self.layout.set(f"{name}/pos", size, 2 * self.segment_of[name])
                self.layout.set(f"{name}/neg", size, 2 * self.segment_of[name] + 1)
        return changed

    def state(self) -> dict[str, Any]:
        return {"slots": [[repr(name), size] for name, size in self.slots.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        """The saved slot counts exactly: a resumed run keeps the batch shapes it had."""
        saved = {name: size for name, size in state.get("slots", [])}
        self._resize({name: max(self.slots[name], int(saved.get(repr(name), 0)))
                      for name in self.slots})

    def pairs(self, name: Any, users: torch.Tensor, weight: torch.Tensor,
              draws: dict[str, torch.Tensor]) -> Pairs:
        """Group ``name``'s pairs for a batch of users."""
        index = self.groups[name][0]
        owner, _, slot_weight = expand(self.counts(name, users, weight), self.slots[name])
        pair_users = users.gather(-1, owner)
        return Pairs(pair_users, index.positives(pair_users, draws[f"{name}/pos"]),
                     index.negatives(pair_users, draws[f"{name}/neg"]), slot_weight, owner)

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        users, weight = self.users.slots(step)
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        pairs = {k: self.pairs(k, users, weight, draws) for k in self.behaviors}
        extra = {name: self.pairs(name, users, weight, draws)
                 for name in self.groups if name not in pairs}
        batch = Batch(users, pairs, user_weight=weight,
                      noise=keys)
        return self.with_extra(batch, extra)

    def with_extra(self, batch: Batch, extra: dict[Any, Pairs]) -> Batch:
        """Where a subclass puts its added groups' pairs (none in the plain harness)."""
        return batch


class BPRSampler:
    """Official LightGCN sampling on one behavior: per epoch #interactions draws of a uniform
    random user with at least one positive, one positive and one negative each, ``batch_size``
    per step (the last step's surplus slots are padding)."""

    def __init__(self, matrix: sp.csr_matrix, behavior: int, batch_size: int,
                 device: torch.device, keys: torch.Tensor) -> None:
        self.index = InteractionIndex(matrix, device, "target training matrix")
        self.behavior = behavior
        degree = np.diff(sp.csr_matrix(matrix).indptr)
        self.active = torch.as_tensor(np.flatnonzero(degree > 0).astype(np.int64), device=device)
        self.n_samples = int(matrix.nnz)
        self.batch_size = batch_size
        self.steps_per_epoch = max(1, -(-self.n_samples // batch_size))
        self.keys = keys
        self.device = device
        self.layout = CounterLayout(device)
        for segment, name in enumerate(("user", "pos", "neg")):
            self.layout.set(name, batch_size, segment)
        self.offsets = torch.arange(batch_size, device=device)

    def start_epoch(self, epoch: int) -> bool:
        return False

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def _weight(self, step: torch.Tensor) -> torch.Tensor:
        taken = step * self.batch_size + self.offsets
        return (taken < self.n_samples).to(torch.float32).expand(self.keys.shape[0], -1)

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        users = self.active[streams.below(draws["user"], len(self.active))]
        weight = self._weight(step)
        pairs = Pairs(users, self.index.positives(users, draws["pos"]),
                      self.index.negatives(users, draws["neg"]), weight)
        return Batch(users, {self.behavior: pairs}, user_weight=weight,
                     noise=keys)


class InteractionBPRSampler(BPRSampler):
    """RecBole-style sampling on one behavior: per epoch every training interaction once, in a
    shuffled order, each with one uniform negative. Users are drawn in proportion to their
    interactions, where the official LightGCN sampler draws them uniformly."""

    def __init__(self, matrix: sp.csr_matrix, behavior: int, batch_size: int,
                 device: torch.device, keys: torch.Tensor) -> None:
        super().__init__(matrix, behavior, batch_size, device, keys)
        self.records = EpochOrder(keys, self.n_samples, self.n_samples, batch_size)

    def start_epoch(self, epoch: int) -> bool:
        self.records.shuffle(epoch)
        return False

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        records, weight = self.records.slots(step)
        codes = _gathered(self.index.keys, records)
        users = torch.div(codes, self.index.n_items, rounding_mode="floor")
        pos = codes - users * self.index.n_items
        pairs = Pairs(users, pos, self.index.negatives(users, draws["neg"]), weight)
        return Batch(users, {self.behavior: pairs}, user_weight=weight,
                     noise=keys)


@register_sampler("multi-behavior")
def _multi_behavior(dataset: MultiBehaviorDataset, cfg: dict, device: torch.device,
                    model: Model, keys: torch.Tensor) -> MultiBehaviorSampler:
    # A decoder that trains only some behaviors says so; the others are not sampled.
    behaviors = getattr(model.decoder, "trained_behaviors", None)
    if behaviors is None:
        behaviors = range(dataset.n_behaviors)
    return MultiBehaviorSampler(dataset.matrices(), list(behaviors), cfg["batch_size"],
                                cfg["n_pairs"], cfg["users_per_epoch"], device, keys)


@register_sampler("bpr")
def _bpr(dataset: MultiBehaviorDataset, cfg: dict, device: torch.device, model: Model,
         keys: torch.Tensor) -> BPRSampler:
    return BPRSampler(dataset.matrices()[-1], dataset.n_behaviors - 1, cfg["batch_size"], device,
                      keys)


@register_sampler("bpr-interactions")
def _bpr_interactions(dataset: MultiBehaviorDataset, cfg: dict, device: torch.device,
                      model: Model, keys: torch.Tensor) -> InteractionBPRSampler:
    return InteractionBPRSampler(dataset.matrices()[-1], dataset.n_behaviors - 1,
                                 cfg["batch_size"], device, keys)
