"""Seed-batched training: the runs (seeds) of one configuration trained together in one process.

Each run keeps its own parameters (initialized from its own seed), its own sampling stream and
its own random state, so every run gives what it gives alone, up to floating-point noise:

- the encoders' parameters are stacked along a leading seed axis, and the encoder pass runs once
  for all seeds under ``torch.func.vmap``: a graph product (``bench.data.graphs.propagate``) then
  multiplies the seeds' tables as column blocks of one sparse product ("fused" mode);
- an encoder that vmap cannot run (random draws in its forward pass, an operation without a
  batching rule) runs seed by seed on its slice of the stacked parameters ("looped" mode);
- decoders run seed by seed on their seed's representations and batch;
- one backward pass over the sum of the seeds' losses and one Adam step over all parameters:
  Adam and the learning-rate schedule act element-wise, so seed s receives exactly the update of
  its own loss.

Only the paper protocol is batched: under the honest protocol every run has its own validation
holdout, hence its own graphs.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import TrainingError
from bench.models.base import Batch, BehaviorReps, Encoder, Model
from bench.train.samplers import make_sampler
from bench.train.trainer import (EpochSums, TrainOutcome, TrialProgress, _raise_oom,
                                 make_optimizer)


class _EncoderLosses(nn.Module):
    """Calls ``encoder.losses`` through ``functional_call`` (which only calls ``forward``)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        return self.encoder.losses(reps, batch)


class RandomStreams:
    """Each seed's own state of torch's global generators, swapped in around its computations,
    so that models drawing from them (dropout) see the streams of a separate run."""

    def __init__(self, states: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
                 device: torch.device) -> None:
        self.states = [(cpu.clone(), None if cuda is None else cuda.clone()) for cpu, cuda in states]
        self.device = device

    @staticmethod
    def capture(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The current state of torch's global generators (CPU, and the device's for CUDA)."""
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def enter(self, seed: int) -> None:
        cpu, cuda = self.states[seed]
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, self.device)

    def leave(self, seed: int) -> None:
        self.states[seed] = self.capture(self.device)


class SeedBatch:
    """The stacked encoder parameters of S models of one configuration, and their losses."""

    def __init__(self, models: Sequence[Model], fuse: bool = True) -> None:
        if len(models) < 1:
            raise TrainingError("a seed batch needs at least one model")
        self.models = list(models)
        template = self.models[0].encoder
        names = [n for n, _ in template.named_parameters()]
        self.stacked: dict[str, torch.Tensor] = {}
        for name in names:
            tables = [dict(m.encoder.named_parameters())[name] for m in self.models]
            self.stacked[name] = nn.Parameter(torch.stack([t.detach() for t in tables]),
                                              requires_grad=tables[0].requires_grad)
        self.buffers = {name: torch.stack([dict(m.encoder.named_buffers())[name]
                                           for m in self.models])
                        for name, _ in template.named_buffers()}
        self.mode = "fused" if fuse else "looped"
        self.fallback_reason = ""
        self._loss_wrappers = [_EncoderLosses(m.encoder) for m in self.models]

    def parameters(self) -> list[torch.Tensor]:
        decoders = [p for m in self.models for p in m.decoder.parameters() if p.requires_grad]
        return [p for p in self.stacked.values() if p.requires_grad] + decoders

    def seed_params(self, seed: int) -> dict[str, torch.Tensor]:
        return {**{n: p[seed] for n, p in self.stacked.items()},
                **{n: b[seed] for n, b in self.buffers.items()}}

    def _encode_fused(self) -> list[BehaviorReps]:
        template = self.models[0].encoder
        layout: dict[str, Any] = {}

        def one_seed(params, buffers):
            reps = functional_call(template, (params, buffers), ())
            # tensors leave vmap as outputs; anything else in ``extra`` is the same for all seeds
            leaves, spec = tree_flatten(reps.extra)
            tensor_at = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
            layout.update(leaves=leaves, spec=spec, tensor_at=tensor_at)
            return list(reps.users), list(reps.items), [leaves[i] for i in tensor_at]

        users, items, tensors = vmap(one_seed, randomness="error")(self.stacked, self.buffers)
        out = []
        for s in range(len(self.models)):
            leaves = list(layout["leaves"])
            for i, t in zip(layout["tensor_at"], tensors):
                leaves[i] = t[s]
            out.append(BehaviorReps([u[s] for u in users], [v[s] for v in items],
                                    tree_unflatten(leaves, layout["spec"])))
        return out

    def encode(self, streams: RandomStreams | None = None) -> list[BehaviorReps]:
        """Every seed's representations (fused when possible)."""
        if self.mode == "fused":
            try:
                return self._encode_fused()
            except Exception as err:   # vmap cannot run this encoder: run it seed by seed
                self.mode = "looped"
                self.fallback_reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        reps = []
        for s, model in enumerate(self.models):
            if streams is not None:
                streams.enter(s)
            reps.append(functional_call(model.encoder, self.seed_params(s), ()))
            if streams is not None:
                streams.leave(s)
        return reps

    def losses(self, batches: Sequence[Batch], streams: RandomStreams | None = None
               ) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Each seed's (total, parts) on its own batch, as ``Model.loss`` computes them."""
        all_reps = self.encode(streams)
        out = []
        for s, (model, reps, batch) in enumerate(zip(self.models, all_reps, batches)):
            if streams is not None:
                streams.enter(s)
            swapped = {f"encoder.{n}": t for n, t in self.seed_params(s).items()}
            parts = dict(functional_call(self._loss_wrappers[s], swapped, (reps, batch)))
            for key, value in model.decoder.losses(reps, batch).items():
                parts[key] = parts[key] + value if key in parts else value
            if streams is not None:
                streams.leave(s)
            total = sum(parts.values()) if parts else torch.zeros((), device=model.encoder.device)
            out.append((total, parts))
        return out

    @torch.no_grad()
    def sync_models(self) -> None:
        """Copy each seed's slice into its own model (for evaluation and saved states)."""
        for s, model in enumerate(self.models):
            own = dict(model.encoder.named_parameters())
            for name, stacked in self.stacked.items():
                own[name].copy_(stacked[s])


def train_seed_batch(models: Sequence[Model], dataset: MultiBehaviorDataset, cfg: dict,
                     samplings: Sequence[torch.Generator],
                     rng_states: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
                     device: torch.device, describe: str = "",
                     eval_kwargs: Sequence[dict | None] | None = None,
                     on_epoch: Callable[[int, dict], None] | None = None,
                     fuse: bool = True) -> tuple[list[TrainOutcome], dict[str, Any]]:
    """Train S models of one configuration together under the paper protocol.

    ``samplings[s]``, ``rng_states[s]`` (``RandomStreams.capture()``) and ``eval_kwargs[s]`` are
    run s's sampling generator, global random state and evaluation settings, as a separate run
    would use them. Returns each run's outcome (as ``train``
    returns it) and a description of the batching (seeds, mode, shared seconds per epoch)."""
    samplers = [make_sampler(m, dataset, cfg, device) for m in models]
    eval_kwargs = list(eval_kwargs) if eval_kwargs is not None else [None] * len(models)
    progresses = [TrialProgress(m, dataset, cfg, "paper", device,
                                cfg["epochs"] if sampler is not None else 0, kwargs)
                  for m, sampler, kwargs in zip(models, samplers, eval_kwargs)]
    info: dict[str, Any] = {"seeds": len(models), "mode": "none", "seconds_per_epoch": 0.0}
    if any(sampler is None for sampler in samplers):
        return [p.finish() for p in progresses], info
    batch = SeedBatch(models, fuse=fuse)
    streams = RandomStreams(rng_states, device)
    opt, schedule = make_optimizer(batch.parameters(), cfg, samplers[0].steps_per_epoch(),
                                   dataset.n_users)
    group_seconds = 0.0
    for epoch in range(cfg["epochs"]):
        started = time.perf_counter()
        for model in models:
            model.train()
        sums = [EpochSums() for _ in models]
        try:
            for batches in zip(*(s.epoch(g) for s, g in zip(samplers, samplings))):
                results = batch.losses(batches, streams)
                opt.zero_grad(set_to_none=True)
                torch.stack([total for total, _ in results]).sum().backward()
                opt.step()
                schedule.step()
                for seed_sums, (total, parts) in zip(sums, results):
                    seed_sums.add(total, parts)
        except torch.cuda.OutOfMemoryError as err:
            _raise_oom(describe, epoch, cfg, err)
        batch.sync_models()
        seconds = time.perf_counter() - started
        group_seconds += seconds
        for s, progress in enumerate(progresses):
            point = progress.end_epoch(epoch, sums[s], seconds / len(models),
                                       f"{describe} (seed batch member {s})")
            if on_epoch:
                on_epoch(s, point)
    info.update(mode=batch.mode, seconds_per_epoch=round(group_seconds / max(cfg["epochs"], 1), 4))
    if batch.fallback_reason:
        info["fallback_reason"] = batch.fallback_reason
    return [p.finish() for p in progresses], info
