"""Build-time pretraining of an encoder's starting tables on one behavior, as two releases do.

- ``gcn``: MB-CGCN's ``GCN.py`` (SS-00-SS/MBCGCN, run on *views* before ``MBCGCN.py``). Its class
  defines ``_create_gcn_embed`` twice and the second definition wins: per layer
  ``E <- leaky_relu(A_hat E W_l + b_l, 0.2)`` (A_hat = D^-1/2 A D^-1/2, no self-loops; one d x d
  weight and one bias per layer), the score uses the concatenation of layers 0..L ((L+1)d
  columns). Loss: mean softplus BPR + ``reg * 1/2 |ego rows of (u, pos, neg)|^2 / batch`` (W and b
  are not regularized); E, W, b drawn N(0, 0.01); Adam; ``GCN.py``'s sampling (distinct users
  per step). The README runs it with ``--layer_size [64,64,64]`` (3 layers), lr 1e-3, batch 2048,
  regs 1e-4, up to 1000 epochs, recall@20 on the view test every 10 epochs, stopped after 10 checks
  without a better value, keeping the best weights. MB-CGCN then starts E0 from its ego tables.
- ``lightgcn``: the mean of layers 0..L of A_hat^l E, otherwise as ``gcn`` (what this suite ran
  before; kept as an option).
- ``mf``: MBGCN's ``MF`` (tsinghua-fib-lab/MBGCN, ``MF.sh``): <e_u, e_i>, Xavier-normal init, loss
  mean ``-log(sigmoid(y_pos - y_neg) + 1e-8)`` + ``reg * (2|e_u|^2 + |e_pos|^2 + |e_neg|^2) /
  batch``, every interaction once per epoch; ``MF.sh`` picks lr 1e-2, L2 1e-2 and early stopping on
  validation Recall@10 with patience 40; MBGCN L2-normalizes the rows it loads (the caller does).

Every model is early-stopped on a holdout of the pretraining behavior (``baselines.pretrain_data``:
one interaction per user with at least two): every ``eval_every`` epochs the held-out items are
ranked against all items minus the user's training items (the suite's evaluator, ties by item id),
and training stops after ``patience`` evaluations without a strictly better recall@``cutoff`` (with
one held-out item per user, recall = hit rate; ``GCN.py`` also resets the count on a tie, which
can keep a flat run going to the cap). The tables of the best evaluation are returned. A model's
evaluation cadence, patience, cap and learning rate are its encoder's parameters; MB-CGCN's differ
from ``GCN.py``'s for cost (see ``baselines.mb_cgcn``).
Where the release's recipe needs its own test files (view test, validation), this holdout replaces
them: the suite's data has none for the auxiliary behaviors, and the target's test is off limits.

Randomness comes only from the generator passed in (initialization, holdout, sampling), so a run
is repeatable on CPU; the global torch generator is not touched.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import Callable

import scipy.sparse as sp
import torch
from torch import nn

from bench.data.dataset import MultiBehaviorDataset
from bench.data.graphs import Graph, bipartite, normalize, propagate
from bench.errors import ConfigError, TrainingError
from bench.evaluate import evaluate
from baselines.pretrain_data import DistinctUserSampling, RecordSampling, split_holdout

PRETRAIN_MODELS = ("gcn", "lightgcn", "mf")
NO_PRETRAINING = "none"
LEAKY_SLOPE = 0.2         # TF1's tf.nn.leaky_relu default, which GCN.py uses


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run: the model, its optimization and its early stopping."""

    model: str
    max_epochs: int
    eval_every: int
    patience: int           # evaluations without a better holdout recall before stopping
    lr: float
    reg: float
    batch_size: int
    dim: int
    layers: int = 3         # gcn, lightgcn
    init_std: float = 0.01  # gcn, lightgcn: N(0, init_std) tables (and W, b)
    cutoff: int = 20        # recall@cutoff on the holdout

    def __post_init__(self) -> None:
        if self.model not in PRETRAIN_MODELS:
            raise ConfigError(f"unknown pretraining model '{self.model}'; choose one of "
                              f"{PRETRAIN_MODELS} (or '{NO_PRETRAINING}' for no pretraining)")


@dataclass
class PretrainResult:
    """The ego tables of the best holdout evaluation and how the run went."""

    users: torch.Tensor
    items: torch.Tensor
    epochs_run: int
    best_epoch: int                  # epochs trained when the returned tables were taken
    best_recall: float | None        # None when nothing could be held out
    curve: list[tuple[int, float]] = field(default_factory=list)   # (epochs trained, recall)


# ---- the three models -----------------------------------------------------------------------------
def _normal(rows: int, cols: int, std: float, generator: torch.Generator,
            device: torch.device) -> nn.Parameter:
    return nn.Parameter((torch.randn(rows, cols, generator=generator) * std).to(device))


def _xavier_normal(rows: int, cols: int, generator: torch.Generator,
                   device: torch.device) -> nn.Parameter:
    return _normal(rows, cols, math.sqrt(2.0 / (rows + cols)), generator, device)


def _bpr_softplus(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    return nn.functional.softplus(neg - pos).mean()


def _gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    # index_select's backward is deterministic on CPU; advanced indexing's is not
    return table.index_select(0, index)


class _GraphModel(nn.Module):
    """Shared by ``gcn`` and ``lightgcn``: N(0, std) ego tables on a normalized bipartite graph,
    MB-CGCN's loss (softplus BPR + 1/2 reg |ego rows|^2 / batch)."""

    def __init__(self, graph: Graph, n_users: int, n_items: int, cfg: PretrainConfig,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__()
        self.graph, self.n_users, self.reg = graph, n_users, cfg.reg
        self.users = _normal(n_users, cfg.dim, cfg.init_std, generator, device)
        self.items = _normal(n_items, cfg.dim, cfg.init_std, generator, device)

    def outputs(self) -> torch.Tensor:   # pragma: no cover - interface
        raise NotImplementedError

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        with torch.no_grad():
            out = self.outputs()
        users, items = out[:self.n_users], out[self.n_users:]
        return lambda batch: _gather(users, batch) @ items.T

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        # one gather from the joint table: its backward fills one zero table, not six
        picked = _gather(self.outputs(), torch.cat([users, pos + self.n_users,
                                                    neg + self.n_users]))
        eu, ep, en = picked.split(len(users))
        bpr = _bpr_softplus((eu * ep).sum(-1), (eu * en).sum(-1))
        ego = (_gather(self.users, users).pow(2).sum() + _gather(self.items, pos).pow(2).sum()
               + _gather(self.items, neg).pow(2).sum())
        return bpr + self.reg * 0.5 * ego / len(users)


class ReleaseGCN(_GraphModel):
    """``GCN.py``'s winning ``_create_gcn_embed``: leaky-ReLU layers with a weight and a bias each,
    layers 0..L concatenated."""

    def __init__(self, graph: Graph, n_users: int, n_items: int, cfg: PretrainConfig,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__(graph, n_users, n_items, cfg, generator, device)
        self.weights = nn.ParameterList(
            [_normal(cfg.dim, cfg.dim, cfg.init_std, generator, device) for _ in range(cfg.layers)])
        self.biases = nn.ParameterList(
            [_normal(1, cfg.dim, cfg.init_std, generator, device) for _ in range(cfg.layers)])

    def outputs(self) -> torch.Tensor:
        x = torch.cat([self.users, self.items])
        layers = [x]
        for weight, bias in zip(self.weights, self.biases):
            x = nn.functional.leaky_relu(propagate(self.graph, x) @ weight + bias, LEAKY_SLOPE)
            layers.append(x)
        return torch.cat(layers, dim=1)


class LightGCN(_GraphModel):
    """The mean of layers 0..L of A_hat^l E (no weights, no nonlinearity)."""

    def __init__(self, graph: Graph, n_users: int, n_items: int, cfg: PretrainConfig,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__(graph, n_users, n_items, cfg, generator, device)
        self.layers = cfg.layers

    def outputs(self) -> torch.Tensor:
        x = torch.cat([self.users, self.items])
        total = x
        for _ in range(self.layers):
            x = propagate(self.graph, x)
            total = total + x
        return total / (self.layers + 1)


class MatrixFactorization(nn.Module):
    """MBGCN's ``MF``: dot products of Xavier-normal tables, MBGCN's BPR and L2."""

    def __init__(self, n_users: int, n_items: int, cfg: PretrainConfig,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__()
        self.reg = cfg.reg
        self.users = _xavier_normal(n_users, cfg.dim, generator, device)
        self.items = _xavier_normal(n_items, cfg.dim, generator, device)

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        users, items = self.users.detach(), self.items.detach()
        return lambda batch: _gather(users, batch) @ items.T

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        eu, ep, en = _gather(self.users, users), _gather(self.items, pos), _gather(self.items, neg)
        diff = (eu * ep).sum(-1) - (eu * en).sum(-1)
        l2 = 2 * eu.pow(2).sum() + ep.pow(2).sum() + en.pow(2).sum()
        return -torch.log(torch.sigmoid(diff) + 1e-8).mean() + self.reg * l2 / len(users)


# ---- the early-stopped loop ---------------------------------------------------------------------
class HoldoutRecall:
    """Recall@cutoff of a model on the held-out interactions (training items masked)."""

    def __init__(self, train: sp.csr_matrix, held: sp.csr_matrix, cutoff: int,
                 device: torch.device) -> None:
        self.dataset = MultiBehaviorDataset(name="pretraining holdout", behaviors=("pretrain",),
                                            train={"pretrain": train}, test=held,
                                            source="baselines.pretrain")
        self.cutoff, self.device = cutoff, device

    def recall(self, model) -> float:
        result = evaluate(model.scorer(), self.dataset, split="test", ks=(self.cutoff,),
                          rule="default", device=self.device)
        return result.metrics[f"HR@{self.cutoff}"]


def fit_early_stopped(model: nn.Module, sampling, holdout: HoldoutRecall | None, cfg: PretrainConfig,
         generator: torch.Generator, describe: str) -> PretrainResult:
    """Adam on ``model.loss`` for at most ``cfg.max_epochs`` epochs, early-stopped on the holdout;
    returns the ego tables of the best evaluation (the last ones without a holdout)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    best_recall, best_epoch, best_tables = -math.inf, 0, None
    curve: list[tuple[int, float]] = []
    bad_checks, epochs_run = 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        for users, pos, neg in sampling.epoch(generator):
            loss = model.loss(users, pos, neg)
            if not torch.isfinite(loss):
                raise TrainingError(f"{describe}: non-finite pretraining loss at epoch {epoch}; "
                                    "lower pretrain_lr (--set pretrain_lr=...)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epochs_run = epoch
        if holdout is None or (epoch % cfg.eval_every and epoch != cfg.max_epochs):
            continue
        recall = holdout.recall(model)
        curve.append((epoch, recall))
        if recall > best_recall:
            best_recall, best_epoch, bad_checks = recall, epoch, 0
            best_tables = (model.users.detach().clone(), model.items.detach().clone())
        else:
            bad_checks += 1
            if bad_checks >= cfg.patience:
                break
    if best_tables is None:
        best_epoch, best_tables = epochs_run, (model.users.detach(), model.items.detach())
    return PretrainResult(best_tables[0], best_tables[1], epochs_run, best_epoch,
                          None if holdout is None else best_recall, curve)


def _prepare(matrix: sp.spmatrix, cfg: PretrainConfig, generator: torch.Generator,
             device: torch.device) -> tuple[sp.csr_matrix, HoldoutRecall | None]:
    if cfg.max_epochs < 1 or cfg.eval_every < 1 or cfg.patience < 1 or cfg.batch_size < 1:
        raise ConfigError("pretraining needs max_epochs, eval_every, patience and batch_size of "
                          f"at least 1, got {cfg}")
    train, held = split_holdout(matrix, generator)
    if train.nnz == 0:
        raise ConfigError("pretraining: the pretraining behavior has no training interactions; "
                          "choose no pretraining (pretrain_model=none) for this dataset")
    holdout = HoldoutRecall(train, held, cfg.cutoff, device) if held.nnz else None
    return train, holdout


def pretrain_gcn(matrix: sp.spmatrix, cfg: PretrainConfig, generator: torch.Generator,
                 device: torch.device, describe: str = "pretraining") -> PretrainResult:
    """MB-CGCN's ``GCN.py`` on ``matrix`` (see the module docstring)."""
    train, holdout = _prepare(matrix, cfg, generator, device)
    graph = Graph(normalize(bipartite(train), "symmetric"), device)
    model = ReleaseGCN(graph, train.shape[0], train.shape[1], cfg, generator, device)
    sampling = DistinctUserSampling(train, cfg.batch_size, device)
    return fit_early_stopped(model, sampling, holdout, cfg, generator, describe)


def pretrain_lightgcn(matrix: sp.spmatrix, cfg: PretrainConfig, generator: torch.Generator,
                      device: torch.device, describe: str = "pretraining") -> PretrainResult:
    """A LightGCN on ``matrix`` with ``gcn``'s loss, sampling and schedule."""
    train, holdout = _prepare(matrix, cfg, generator, device)
    graph = Graph(normalize(bipartite(train), "symmetric"), device)
    model = LightGCN(graph, train.shape[0], train.shape[1], cfg, generator, device)
    sampling = DistinctUserSampling(train, cfg.batch_size, device)
    return fit_early_stopped(model, sampling, holdout, cfg, generator, describe)


def pretrain_mf(matrix: sp.spmatrix, cfg: PretrainConfig, generator: torch.Generator,
                device: torch.device, describe: str = "pretraining") -> PretrainResult:
    """MBGCN's ``MF`` on ``matrix`` (see the module docstring); the rows are not normalized here."""
    train, holdout = _prepare(matrix, cfg, generator, device)
    model = MatrixFactorization(train.shape[0], train.shape[1], cfg, generator, device)
    sampling = RecordSampling(train, cfg.batch_size, device)
    return fit_early_stopped(model, sampling, holdout, cfg, generator, describe)


PRETRAINERS = {"gcn": pretrain_gcn, "lightgcn": pretrain_lightgcn, "mf": pretrain_mf}


def pretrain(matrix: sp.spmatrix, cfg: PretrainConfig, init_generator: torch.Generator,
             device: torch.device, describe: str = "pretraining") -> PretrainResult:
    """Run ``cfg.model`` on ``matrix``. Its random stream is a child generator seeded by one draw
    from ``init_generator``: called after an encoder has drawn its own tables, it leaves them as
    they would be without pretraining."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=init_generator))
    stream = torch.Generator()
    stream.manual_seed(seed)
    return PRETRAINERS[cfg.model](matrix, cfg, stream, torch.device(device), describe)


def code_digest() -> str:
    """A digest of the pretraining code, for the code version of the models that use it (the
    registry hashes only the encoder and decoder classes)."""
    digest = hashlib.sha256()
    for name in (__name__, "baselines.pretrain_data"):
        digest.update(inspect.getsource(sys.modules[name]).encode())
    return digest.hexdigest()[:10]
