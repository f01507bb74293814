"""Pure functions of ``cml`` (``../shared/docs/model-specs-table2.md`` Part 2, "CML"): the weight
net phi as a flat parameter vector, its masked BatchNorm and dropout, the contrastive loss on a
fixed number of slots, and the one-step AdamW / gradient clipping the release's meta-learning uses.

Everything works on fixed shapes with 0/1 slot weights (no host synchronization), so one step runs
the same way alone, looped or under ``torch.func`` transforms.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.nn import functional as F

from bench.train import streams

BN_EPS = 1e-5            # torch.nn.BatchNorm1d's default
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8          # torch.optim.AdamW's default
CLIP_EPS = 1e-6          # torch.nn.utils.clip_grad_norm_'s


def phi_shapes(d: int) -> list[tuple[str, tuple[int, ...]]]:
    """The weight net's tensors (MV_Net.MetaWeightNet): two 3-layer heads (contrastive rows 'ssl',
    BPR rows 'rs'), one PReLU slope and one BatchNorm1d(1) affine pair, shared by every behavior."""
    hidden = (3 * d) // 2
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for head, third_in in (("ssl", 2 * d), ("rs", d)):
        shapes += [(f"{head}1_w", (hidden, 3 * d)), (f"{head}1_b", (hidden,)),
                   (f"{head}2_w", (1, hidden)), (f"{head}2_b", (1,)),
                   (f"{head}3_w", (1, third_in)), (f"{head}3_b", (1,))]
    return shapes + [("prelu", (1,)), ("bn_w", (1,)), ("bn_b", (1,))]


def phi_size(d: int) -> int:
    return sum(math.prod(shape) for _, shape in phi_shapes(d))


def init_phi(d: int, generator: torch.Generator) -> torch.Tensor:
    """nn.Linear's default init (weight and bias uniform in +-1/sqrt(fan_in)), PReLU 0.25,
    BatchNorm weight 1 and bias 0, as one flat vector."""
    chunks = []
    for name, shape in phi_shapes(d):
        if name == "prelu":
            chunks.append(torch.full(shape, 0.25))
        elif name == "bn_w":
            chunks.append(torch.ones(shape))
        elif name == "bn_b":
            chunks.append(torch.zeros(shape))
        else:
            fan_in = shape[1] if name.endswith("_w") else None
            if fan_in is None:   # a bias: the fan-in of its layer's weight, the previous shape
                fan_in = previous[1]
            bound = 1.0 / math.sqrt(fan_in)
            chunks.append((torch.rand(shape, generator=generator) * 2 - 1) * bound)
        previous = shape
    return torch.cat([c.reshape(-1) for c in chunks])


def unpack_phi(flat: torch.Tensor, d: int) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, shape in phi_shapes(d):
        size = math.prod(shape)
        out[name] = flat[offset:offset + size].view(shape)
        offset += size
    return out


def masked_batch_norm(x: torch.Tensor, weight: torch.Tensor, phi: dict[str, torch.Tensor]
                      ) -> torch.Tensor:
    """BatchNorm1d(1) in training mode over the real slots (``weight`` 1): batch mean and biased
    variance, then the affine pair. The release never puts phi in eval mode."""
    count = weight.sum().clamp_min(1.0)
    mean = (x * weight).sum() / count
    var = (((x - mean) ** 2) * weight).sum() / count
    return (x - mean) / torch.sqrt(var + BN_EPS) * phi["bn_w"] + phi["bn_b"]


def dropout_masks(noise: torch.Tensor, draw: int, rows: int, hidden: int, p: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverted-dropout multipliers (0 or 1/(1-p)) for one weight-net call: after layer 1
    ([rows, hidden]), after layer 2 ([rows]) and after the third layer ([rows]), drawn from the
    step's noise sub-stream ``draw``."""
    keys = streams.derive(noise, streams.TAG_NOISE, draw)
    n = rows * (hidden + 2)
    h = streams.hashes(keys, torch.arange(n, dtype=torch.int64, device=noise.device))
    keep = (streams.unit(h) >= p).to(torch.float32) * (1.0 / (1.0 - p)) if p < 1 else \
        torch.zeros(h.shape, device=noise.device)
    first, second, third = keep.split([rows * hidden, rows, rows], dim=-1)
    return first.reshape(rows, hidden), second, third


def weight_head(phi: dict[str, torch.Tensor], head: str, loss: torch.Tensor,
                first: torch.Tensor, second: torch.Tensor, weight: torch.Tensor,
                masks: Sequence[torch.Tensor], multiplier: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """omega_1 and omega_3 of one behavior's rows (MetaWeightNet.forward): ``loss`` [n] the rows'
    losses, ``first``/``second`` [n, d] the embeddings in the head's order; x = [loss * 1_d ||
    first || second]; the third layer sees loss * [first || second] (contrastive head) or
    loss * first (BPR head)."""
    d = first.shape[-1]
    repeated = loss.unsqueeze(1).expand(-1, d)
    x = torch.cat([repeated, first, second], dim=1)
    x3 = loss.unsqueeze(1) * (torch.cat([first, second], dim=1) if head == "ssl" else first)
    drop1, drop2, drop3 = masks
    slope = phi["prelu"]
    hidden = F.prelu(F.linear(x, phi[f"{head}1_w"], phi[f"{head}1_b"]), slope) * drop1
    w1 = math.sqrt(x.shape[1]) * (F.linear(hidden, phi[f"{head}2_w"], phi[f"{head}2_b"])
                                  .squeeze(1) * drop2)
    w1 = multiplier * torch.sigmoid(masked_batch_norm(w1, weight, phi))
    w3 = F.prelu(F.linear(x3, phi[f"{head}3_w"], phi[f"{head}3_b"]), slope).squeeze(1) * drop3
    w3 = multiplier * torch.sigmoid(masked_batch_norm(w3, weight, phi))
    return w1, w3


def contrastive(target: torch.Tensor, behavior: torch.Tensor, users: torch.Tensor,
                weight: torch.Tensor, chunk: int) -> torch.Tensor:
    """The release's per-user contrastive loss on fixed slots (``SSL``):
    c(a) = -log(1e-8 + exp(<t_a, b_a>/d) / (sum_{v in N(a)} exp(<t_a, b_v>/d) + 1e-8)), with t the
    target behavior's and b behavior k's user vectors, the positive outside the denominator, and
    N(a) = the distinct users of the real slots minus the users of a's chunk (consecutive
    ``chunk`` slots). Padding slots get an arbitrary finite value (weight them out)."""
    d = target.shape[-1]
    scale = 1.0 / (d + 1e-8)
    t = target.index_select(0, users)
    b = behavior.index_select(0, users)
    pos = torch.exp((t * b).sum(-1) * scale)
    slots = users.shape[0]
    real = weight > 0
    same = (users[:, None] == users[None, :]) & real[:, None] & real[None, :]
    position = torch.arange(slots, device=users.device)
    earlier = position[None, :] < position[:, None]           # [b', b]: b' before b
    first = real & ~(same & earlier).any(0)
    block = position // chunk
    same_chunk = (block[:, None] == block[None, :]) & real[None, :]
    in_chunk = (same_chunk.to(torch.float32) @ same.to(torch.float32)) > 0
    others = first[None, :] & ~in_chunk
    neg = (torch.exp((t @ b.T) * scale) * others).sum(-1)
    return -torch.log(1e-8 + pos / (neg + 1e-8))


def clip_norm(grads: Sequence[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """torch.nn.utils.clip_grad_norm_ (2-norm over all tensors), as new tensors."""
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = (max_norm / (total + CLIP_EPS)).clamp(max=1.0)
    return [g * coef for g in grads]


def first_adamw_step(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], lr: float,
                     weight_decay: float) -> list[torch.Tensor]:
    """One step of a freshly made torch.optim.AdamW (step 1, zero moments), as new tensors:
    p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps), m_hat = g, sqrt(v_hat) ~ |g|: a sign step."""
    b1, b2 = ADAM_BETAS
    out = []
    for p, g in zip(params, grads):
        m = g * (1 - b1)
        v = g * g * (1 - b2)
        denom = v.sqrt() / math.sqrt(1 - b2) + ADAM_EPS
        out.append(p * (1 - lr * weight_decay) - (lr / (1 - b1)) * (m / denom))
    return out


@torch.no_grad()
def adamw_step_(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
                exp_avg_sq: torch.Tensor, step: torch.Tensor, lr: torch.Tensor,
                weight_decay: float) -> None:
    """torch.optim.AdamW's update in place on persistent state (``step`` a float tensor counting
    the updates), with ``lr`` a tensor (the schedule's value for the epoch)."""
    b1, b2 = ADAM_BETAS
    step.add_(1)
    param.mul_(1 - lr * weight_decay)
    # lerp_ and addcmul_ written out: vmap has batching rules for these, not for those two
    exp_avg.add_((grad - exp_avg) * (1 - b1))
    exp_avg_sq.mul_(b2).add_(grad * grad * (1 - b2))
    correction1 = 1 - torch.pow(b1, step)
    correction2 = 1 - torch.pow(b2, step)
    denom = exp_avg_sq.sqrt() / correction2.sqrt() + ADAM_EPS
    param.sub_((lr / correction1) * (exp_avg / denom))


def cyclic_lr(epoch: int, base: float, peak: float, up: int, down: int) -> float:
    """torch.optim.lr_scheduler.CyclicLR 'triangular' stepped once per epoch: its value during
    ``epoch`` (0-based)."""
    total = up + down
    cycle = math.floor(1 + epoch / total)
    x = 1.0 + epoch / total - cycle
    ratio = up / total
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    return base + (peak - base) * scale
