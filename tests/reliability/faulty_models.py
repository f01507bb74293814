"""Plugin models for the reliability tests: slow, logging, exploding and out-of-memory variants of
a tiny multi-task model. Loaded with --plugin; behavior chosen by environment variables."""
import os
import time

import torch

from bench.models.base import Decoder, bpr_softplus, rows
from bench.models.registry import register_decoder, register_model


class _TinyBPR(Decoder):
    def losses(self, reps, batch):
        pairs = batch.pairs[self.target]
        user = rows(reps.users[self.target], pairs.users)
        pos = (user * rows(reps.items[self.target], pairs.pos)).sum(-1)
        neg = (user * rows(reps.items[self.target], pairs.neg)).sum(-1)
        return {"bpr": bpr_softplus(pos, neg, pairs.weight)}

    def score(self, reps, users):
        return rows(reps.users[self.target], users) @ reps.items[self.target].T


@register_decoder("test-slow")
class SlowDecoder(_TinyBPR):
    """Sleeps in every step so a test can interrupt a trial midway; logs each trial start."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        log = os.environ.get("BENCH_TEST_START_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write(f"{os.getpid()}\n")

    def losses(self, reps, batch):
        time.sleep(float(os.environ.get("BENCH_TEST_STEP_SLEEP", "0.02")))
        return super().losses(reps, batch)


@register_decoder("test-nan")
class NaNDecoder(_TinyBPR):
    """Its loss turns NaN once the embeddings have moved (after a few steps)."""

    def losses(self, reps, batch):
        parts = super().losses(reps, batch)
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps > 6:
            parts["bpr"] = parts["bpr"] * float("nan")
        return parts


@register_decoder("test-oom")
class OOMDecoder(_TinyBPR):
    """Raises CUDA's out-of-memory error while training."""

    def losses(self, reps, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


TRAINING = {"epochs": 6, "eval_schedule": "every", "eval_every": 2, "lr": 5e-3}
register_model("test-slow", "embedding", "test-slow", "test: slow steps", defaults=TRAINING)
register_model("test-nan", "embedding", "test-nan", "test: NaN loss", defaults=TRAINING)
register_model("test-oom", "embedding", "test-oom", "test: out of memory", defaults=TRAINING)
