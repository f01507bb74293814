"""The model interface: an encoder makes per-behavior representations, a decoder scores them.

A registered model is an encoder + a decoder + default hyper-parameters (see bench.models.registry).
The trainer and the evaluator only ever call ``Model.loss`` and ``Model.scorer``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn
from torch.utils import _pytree as pytree

from bench.data.dataset import MultiBehaviorDataset
from bench.params import Param


@dataclass
class Pairs:
    """Aligned (user, positive item, negative item) training triples of one behavior, in slots of a
    fixed number: ``weight`` is 1 for a real triple and 0 for a padding slot (whose ids are valid
    but meaningless). Fixed shapes let a step run without host synchronization and let S runs'
    batches stack on a leading axis. ``owner``, where the sampler groups pairs by the batch's
    users, is the position of each triple's user in ``Batch.users``."""

    users: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    weight: torch.Tensor | None = None     # None: every slot is a real triple
    owner: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.weight is None and isinstance(self.users, torch.Tensor):
            self.weight = torch.ones(self.users.shape, device=self.users.device)

    def __len__(self) -> int:
        """The number of slots (real triples and padding)."""
        return int(self.users.shape[-1])

    def count(self) -> torch.Tensor:
        """The number of real triples, as a tensor (no host synchronization)."""
        return self.weight.sum(-1)


@dataclass
class Batch:
    """One optimizer step's samples: ``pairs[k]`` for behavior index k (absent when the model
    trains no pairs of that behavior); ``users`` are the batch's user ids with ``user_weight`` 0
    on padding slots; ``extra`` carries model-specific samples produced by a model's own sampler;
    ``noise`` is the step's random key pair for models that draw in their forward pass (dropout):
    they draw from sub-streams ``streams.derive(noise, streams.TAG_NOISE, i)``, independent of the
    sampler's draws (see ``bench.train.streams``)."""

    users: torch.Tensor
    pairs: dict[int, Pairs]
    extra: dict[str, Any] = field(default_factory=dict)
    user_weight: torch.Tensor | None = None
    noise: torch.Tensor | None = None


def _flatten_pairs(p: Pairs):
    return [p.users, p.pos, p.neg, p.weight, p.owner], None


def _flatten_batch(b: Batch):
    return [b.users, b.pairs, b.extra, b.user_weight, b.noise], None


# Batches are pytrees, so that ``torch.func.vmap`` maps a model over S runs' stacked batches.
pytree.register_pytree_node(Pairs, _flatten_pairs, lambda children, _: Pairs(*children),
                            serialized_type_name="bench.models.base.Pairs")
pytree.register_pytree_node(Batch, _flatten_batch, lambda children, _: Batch(*children),
                            serialized_type_name="bench.models.base.Batch")


@dataclass
class BehaviorReps:
    """Per-behavior user and item tables: ``users[k]`` is [n_users, d], ``items[k]`` [n_items, d].
    Single-behavior encoders repeat their one table for every behavior. ``extra`` holds anything
    else an encoder exposes (layer outputs, a merged table, ...)."""

    users: list[torch.Tensor]
    items: list[torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, k: int) -> torch.Tensor:
        """Users then items of behavior k as one (U+I) x d table."""
        return torch.cat([self.users[k], self.items[k]], dim=0)


class Component(nn.Module):
    """Shared by encoders and decoders: declared parameters and access to the dataset."""

    params: ClassVar[Sequence[Param]] = ()

    def __init__(self, dataset: MultiBehaviorDataset, cfg: dict[str, Any], device: torch.device,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.cfg = cfg
        self.device = device
        self.n_users = dataset.n_users
        self.n_items = dataset.n_items
        self.n_behaviors = dataset.n_behaviors
        self.target = dataset.n_behaviors - 1
        for param in self.params:
            if param.batchable:
                self.register_buffer(_hp_name(param.name),
                                     torch.tensor(cfg[param.name], dtype=torch.float32,
                                                  device=device), persistent=False)

    def hp(self, name: str) -> torch.Tensor:
        """A batchable hyper-parameter (``Param(batchable=True)``) as a tensor: a buffer, so that
        every member of a batch trained together reads its own value."""
        return getattr(self, _hp_name(name))

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        """Named loss terms this component adds for one batch (none by default)."""
        return {}


def _hp_name(name: str) -> str:
    return f"hp_{name}"


class Encoder(Component):
    """Maps the dataset's behavior graphs to per-behavior representations. An encoder that draws
    random numbers in training (dropout) sets ``uses_noise`` and takes the step's key pair
    (``Batch.noise``) as ``forward(noise)``; its draws come from ``bench.train.streams``."""

    uses_noise: ClassVar[bool] = False

    def forward(self) -> BehaviorReps:  # pragma: no cover - interface
        raise NotImplementedError


class Decoder(Component):
    """Turns per-behavior representations into per-behavior scores and losses."""

    def __init__(self, dataset: MultiBehaviorDataset, cfg: dict[str, Any], device: torch.device,
                 generator: torch.Generator, encoder: Encoder) -> None:
        super().__init__(dataset, cfg, device, generator)

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        """Target-behavior scores of ``users`` against every item: [len(users), n_items]."""
        raise NotImplementedError  # pragma: no cover - interface


class Model(nn.Module):
    """An encoder and a decoder trained together."""

    def __init__(self, name: str, encoder: Encoder, decoder: Decoder, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.decoder = decoder
        self.cfg = cfg

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss of one batch and its named parts (one encoder pass shared by all tasks)."""
        reps = self.encoder(batch.noise) if self.encoder.uses_noise else self.encoder()
        parts = dict(self.encoder.losses(reps, batch))
        for key, value in self.decoder.losses(reps, batch).items():
            # the same name from both halves (e.g. each half's own L2) adds up
            parts[key] = parts[key] + value if key in parts else value
        total = sum(parts.values()) if parts else torch.zeros((), device=self.encoder.device)
        return total, parts

    loss = forward

    @torch.no_grad()
    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A full-ranking score function; the representations are computed once."""
        was_training = self.training
        self.eval()
        reps = self.encoder()
        self.train(was_training)

        def score(users: torch.Tensor) -> torch.Tensor:
            return self.decoder.score(reps, users)
        return score

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return buffer.getvalue()

    def load_bytes(self, data: bytes) -> None:
        self.load_state_dict(torch.load(io.BytesIO(data), map_location=self.encoder.device,
                                        weights_only=True))


# ---- helpers shared by many models --------------------------------------------------------------
def xavier_table(rows: int, cols: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> nn.Parameter:
    """A Xavier-uniform [rows, cols] parameter (the TF family's initializer)."""
    limit = (6.0 / (rows + cols)) ** 0.5
    data = (torch.rand(rows, cols, generator=generator) * 2 - 1) * limit
    return nn.Parameter(data.to(device))


def normal_table(rows: int, cols: int, std: float, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> nn.Parameter:
    return nn.Parameter((torch.randn(rows, cols, generator=generator) * std).to(device))


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the slots of weight 1 (padding has weight 0); zero when there is
    no real slot (TF's mean of nothing would be NaN)."""
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def bpr_softplus(pos: torch.Tensor, neg: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """TF-family BPR: mean softplus(-(pos - neg)) over the real pairs; zero when there are none."""
    losses = nn.functional.softplus(neg - pos)
    if weight is None:
        return losses.mean() if losses.numel() else losses.sum()
    return weighted_mean(losses, weight)


def tf_l2(tensors: Sequence[torch.Tensor], weight: float | torch.Tensor) -> torch.Tensor:
    """TF-family L2: weight * sum of squared Frobenius norms of the whole tensors."""
    return weight * sum((t * t).sum() for t in tensors)


def rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` along dim 0 with a deterministic backward on CPU (advanced indexing's
    backward accumulates in a thread-dependent order; index_select's does not)."""
    return table.index_select(0, index)
