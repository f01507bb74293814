"""S >= 1 runs of one model structure trained as one computation ("members" of a batch).

Members are runs whose configurations agree on everything structural: they may differ in their
run index (seed: initialization and sampling stream) and in batchable hyper-parameters
(``Param(batchable=True)``, held by the model as tensors, see ``Component.hp``; the learning rate).

- Every member's trainable parameters are one row of a flat [S, P] leaf tensor: one backward pass
  fills one gradient, one Adam update serves every member (``bench.train.optim``).
- ``fused`` (S > 1): the member's loss ``Model.forward(batch)`` runs once for all members under
  ``torch.func.vmap``, over the rows of the flat tensor, the members' stacked buffers and the
  sampler's batch with its leading member axis: the same operators whatever S is. A graph product
  (``bench.data.graphs.propagate``) multiplies all members' tables as column blocks of one sparse
  product.
- ``looped``: a model whose components declare ``looped_reason`` runs member by member.
- ``single`` (S = 1): the loss runs on the one member's row directly, without vmap.

Each member keeps its own parameters, random streams and results: a member ends where it ends
alone (the conformance tests check every registered model).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.func import functional_call, vmap
from torch.utils import _pytree as pytree

from bench.errors import TrainingError
from bench.models.base import Batch, Model
from bench.train.samplers import member_batch


def looped_reason(model: Model) -> str:
    """Why this model cannot run its members as one vmapped computation ("" when it can)."""
    reasons = [getattr(part, "looped_reason", "") for part in (model.encoder, model.decoder)]
    return "; ".join(r for r in reasons if r)


def _tensor_dims(tree: Any) -> Any:
    return pytree.tree_map(lambda t: 0 if isinstance(t, torch.Tensor) else None, tree)


class MemberBatch:
    """The stacked state of S member models of one structure, and their losses."""

    def __init__(self, models: Sequence[Model], template: Model | None = None) -> None:
        """``template`` is the model whose code runs for every member (its own parameters are
        never used): the first member's, or one built for the batch's structure when members
        differ in batchable values (``bench.seed_groups.template_params``)."""
        if len(models) < 1:
            raise TrainingError("a batch needs at least one member")
        self.models = list(models)
        self.template = self.models[0] if template is None else template
        trainable = [(n, p) for n, p in self.template.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in trainable]
        self.shapes = [tuple(p.shape) for _, p in trainable]
        self.sizes = [p.numel() for _, p in trainable]
        rows = []
        for model in self.models:
            own = dict(model.named_parameters())
            rows.append(torch.cat([own[n].detach().reshape(-1) for n in self.names])
                        if self.names else torch.zeros(0, device=self._device()))
        self.flat = torch.stack(rows).requires_grad_(bool(self.names))
        frozen = [n for n, p in self.template.named_parameters() if not p.requires_grad]
        self.stacked: dict[str, torch.Tensor] = {}
        for name in frozen:
            self.stacked[name] = torch.stack([dict(m.named_parameters())[name].detach()
                                              for m in self.models])
        for name, _ in self.template.named_buffers():
            self.stacked[name] = torch.stack([dict(m.named_buffers())[name] for m in self.models])
        reason = looped_reason(self.template)
        self.looped_reason = reason
        self.mode = "single" if len(self.models) == 1 else ("looped" if reason else "fused")

    def _device(self) -> torch.device:
        return next(iter(self.template.buffers()), torch.zeros(0)).device

    @property
    def size(self) -> int:
        return len(self.models)

    def member_params(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One member's parameters as views of its row of the flat tensor."""
        return {name: chunk.view(shape) for name, chunk, shape
                in zip(self.names, row.split(self.sizes), self.shapes)}

    def member_loss(self, row: torch.Tensor, stacked: dict[str, torch.Tensor], batch: Batch
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tensors = {**self.member_params(row), **stacked}
        total, parts = functional_call(self.template, tensors, (batch,), strict=False)
        return total, parts

    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every member's total loss ([S]) and loss parts (name -> [S]) on its own batch (the
        batch's tensors carry a leading member axis)."""
        if self.mode == "fused":
            return vmap(self.member_loss, in_dims=(0, 0, _tensor_dims(batch)),
                        randomness="error")(self.flat, self.stacked, batch)
        # one member: its row as a view of the flat tensor (no select, whose backward would
        # zero-fill and copy a full-size gradient every step)
        rows = [self.flat.view(-1)] if self.size == 1 else [self.flat[s] for s in range(self.size)]
        results = [self.member_loss(row, member_batch(self.stacked, s), member_batch(batch, s))
                   for s, row in enumerate(rows)]
        totals = torch.stack([total for total, _ in results])
        names = list(results[0][1])
        return totals, {name: torch.stack([parts[name] for _, parts in results])
                        for name in names}

    @torch.no_grad()
    def sync_models(self) -> None:
        """Copy each member's row, and its buffers (a model may update them in its loss), into
        its own model (for evaluation and saved states)."""
        for s, model in enumerate(self.models):
            own = dict(model.named_parameters())
            for name, value in self.member_params(self.flat[s]).items():
                own[name].copy_(value)
            buffers = dict(model.named_buffers())
            for name, value in self.stacked.items():
                if name in buffers:
                    buffers[name].copy_(value[s])

    @torch.no_grad()
    def load_member(self, s: int, state: dict[str, torch.Tensor]) -> None:
        """Set member s's row from a state dict of its model (a checkpoint's best state)."""
        self.flat[s].copy_(torch.cat([state[n].reshape(-1) for n in self.names])
                           if self.names else self.flat[s])
