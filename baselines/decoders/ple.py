"""``ple``: Progressive Layered Extraction with one CGC level on the shared input (spec §8.3).

On ``q = [m_u; m_v]`` (see ``baselines.decoders.shared_bottom``):

- each task k owns ``ple_specific`` task-specific experts (1 with the TF code's num_exps = 3; it
  uses 2 otherwise) and all tasks share ``ple_shared`` experts (1); every expert has MMOE's form
  ``LeakyReLU_{0.1}(W^T q + b)``, 2d wide;
- task k's gate is a softmax over ITS specific experts followed by the shared ones; the other tasks'
  specific experts never enter task k (their weights get no gradient from task k's loss);
- a linear tower per task, times ``mult``.

Every W is Xavier and L2-regularized, biases zeros and not regularized. Loss
``sum_k lambda_k * 3 * BPR_k`` + L2 (no contrastive loss).
"""
from __future__ import annotations

from torch import nn

from baselines.decoders.mmoe import GatedExpertsDecoder
from baselines.decoders.shared_bottom import Dense, SharedInputDecoder
from bench.models.registry import register_decoder
from bench.params import Param


@register_decoder("ple")
class PLEDecoder(GatedExpertsDecoder):
    """PLE, one CGC level: per-task specific experts + shared experts, per-task gate and tower.
    ``self.experts`` holds the specific experts task by task, then the shared ones."""

    params = SharedInputDecoder.params + (
        Param("ple_specific", 1, "PLE: task-specific experts per task", int, low=1),
        Param("ple_shared", 1, "PLE: experts shared by all tasks", int, low=1))

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        q_width = 2 * self.width
        n_spec, n_shared, K = cfg["ple_specific"], cfg["ple_shared"], self.n_behaviors
        self.experts = nn.ModuleList([Dense(q_width, q_width, generator, device)
                                      for _ in range(K * n_spec + n_shared)])
        shared = list(range(K * n_spec, K * n_spec + n_shared))
        self.task_experts = [list(range(k * n_spec, (k + 1) * n_spec)) + shared for k in range(K)]
        self.build_tasks(generator)

    def specific_experts(self, k: int) -> list[Dense]:
        """Task k's own experts (for inspection and tests)."""
        n = self.cfg["ple_specific"]
        return [self.experts[i] for i in range(k * n, (k + 1) * n)]
