"""Registered compositions: the paper's Table 5 (MTL decoders on COGCN, spec §5.3) and Table 6 (DFME
on other backbones, spec §5.4), each with COPF's harness and defaults (``copf.variants``: the
multi-behavior sampler over every user, 200 epochs, lr 1e-3 decayed 0.96 every users // 256 steps,
the COPF test schedule, lambda_k * 3 * BPR with COPF's per-dataset lambda, mult 300, reg 1e-2).

Table 5, encoder ``cogcn`` with COPF's layers; no contrastive loss ([I] spec §5.3):
``cogcn+sb`` (decoder ``shared-bottom``, "sb" is its alias), ``cogcn+mmoe``, ``cogcn+ple``
(shared input sum_k Z^k, [I]; ``shared_input=weighted`` for the lambda-weighted sum),
``cogcn+bilinear`` (cl=false), ``cogcn+mesi``, ``cogcn+pme`` (with its uni losses and sampler), and
``cogcn+dfme`` (= ``copf``; registered only if the name is free).

Table 6, X's encoder with X's own encoder settings + DFME with the contrastive loss:
``lightgcn-m+dfme`` (Z^k = E_M for every k, [I]), ``crgcn+dfme`` (Z^k = T_k), ``mb-cgcn+dfme``,
``cigf+dfme``, ``pkef+dfme`` (PKEF's parallel-branch BPR kept, [I]; ``parallel_loss=false`` drops
it). COPF's L2 covers its embedding tables; encoders that do not add that L2 themselves (LightGCN,
CRGCN, MB-CGCN) get it from the decoder ``dfme-ego-l2`` = DFME + ``reg * (|E0_u|^2 + |E0_i|^2)`` on
the encoder's ego tables, plus MB-CGCN's transition W's ([I]; ``ego_l2=false`` is plain DFME),
registered here under the alias "dfme" so the names read X+DFME.
"""
from __future__ import annotations

from typing import Any, Mapping

import baselines.decoders.bilinear  # noqa: F401  (decoder "bilinear")
import baselines.multi.cigf  # noqa: F401  (encoder and model "cigf")
import baselines.multi.crgcn  # noqa: F401  (encoder and model "crgcn")
import baselines.decoders.dot  # noqa: F401  (decoder "dot", which lightgcn's models need)
import baselines.single.lightgcn  # noqa: F401  (encoder "lightgcn", model "lightgcn-m")
import baselines.multi.mb_cgcn  # noqa: F401  (encoder and model "mb-cgcn")
import baselines.decoders.mesi  # noqa: F401  (decoder "mesi")
import baselines.decoders.mmoe  # noqa: F401  (decoder "mmoe")
import baselines.multi.pkef  # noqa: F401  (encoder and model "pkef")
import baselines.decoders.ple  # noqa: F401  (decoder "ple")
import baselines.decoders.pme  # noqa: F401  (decoder "pme")
import baselines.decoders.shared_bottom  # noqa: F401  (decoder "shared-bottom")
import copf.cogcn  # noqa: F401  (encoder "cogcn")
import copf.dfme  # noqa: F401  (decoder "dfme")
from baselines.decoders.pme import UNI_SAMPLER
from baselines.decoders.shared_bottom import probe_encoder
from bench.errors import ConfigError
from bench.models.base import Batch, BehaviorReps, tf_l2
from bench.models.registry import DECODERS, ENCODERS, MODELS, register_decoder, register_model
from bench.params import Param
from bench.train.config import TRAIN_PARAMS
from copf.dfme import DFMEDecoder
from copf.variants import COPF_DATASETS, COPF_DEFAULTS, COPF_INFERRED



@register_decoder("dfme-ego-l2")
class DFMEEgoL2Decoder(DFMEDecoder):
    """DFME + the TF-family L2 ``reg * (|E0_u|^2 + |E0_i|^2 + sum |W|^2)`` on the encoder's ego
    tables (``reps.extra['ego_users']``, ``['ego_items']``) and weight matrices it exposes as
    ``reps.extra['transforms']`` (MB-CGCN), for encoders that do not regularize them themselves
    (COPF's L2 covers its embedding tables and every W, every step)."""

    params = DFMEDecoder.params + (
        Param("ego_l2", True, "add reg * (|E0_u|^2 + |E0_i|^2) on the encoder's ego tables "
              "(COPF's L2, for encoders without their own)", bool),)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        if cfg["ego_l2"]:
            _, reps = probe_encoder(encoder, self.n_behaviors, "dfme-ego-l2")
            name = getattr(encoder, "registered_name", type(encoder).__name__)
            missing = [key for key in ("ego_users", "ego_items") if key not in reps.extra]
            if missing:
                raise ConfigError(f"decoder 'dfme-ego-l2' regularizes the encoder's ego tables, "
                                  f"but encoder '{name}' exposes no {' or '.join(missing)} in its "
                                  f"reps.extra; use decoder 'dfme' or set ego_l2=false")

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, Any]:
        parts = super().losses(reps, batch)
        if self.cfg["ego_l2"]:
            weights = [reps.extra["ego_users"], reps.extra["ego_items"],
                       *reps.extra.get("transforms", ())]
            ego = tf_l2(weights, self.hp("reg"))
            parts["l2"] = parts["l2"] + ego if "l2" in parts else ego
        return parts


def _names(*groups) -> set[str]:
    return {p.name for group in groups for p in group}


def register_on_copf(name: str, encoder: str, decoder: str, description: str,
                     encoder_model: str | None = None, overrides: Mapping[str, Any] | None = None,
                     inferred: tuple[str, ...] = (), decoder_alias: str | None = None) -> None:
    """Register ``name`` with COPF's defaults and per-dataset defaults (COGCN's own settings only
    when the encoder is COGCN), then ``encoder_model``'s settings of its encoder's own parameters
    (those the decoder and the harness do not share), then ``overrides``."""
    enc_params = _names(ENCODERS[encoder].params)
    shared = _names(TRAIN_PARAMS, DECODERS[decoder].params)
    copf_keys = shared | (enc_params if encoder == "cogcn" else set())
    own_keys = enc_params - shared

    defaults = {k: v for k, v in COPF_DEFAULTS.items() if k in copf_keys}
    per_dataset: dict[str, dict[str, Any]] = {
        ds: {k: v for k, v in values.items() if k in copf_keys} for ds, values in COPF_DATASETS.items()}
    if encoder_model is not None:
        base = MODELS[encoder_model]
        defaults.update({k: v for k, v in base.defaults.items() if k in own_keys})
        for ds, values in base.dataset_defaults.items():
            per_dataset.setdefault(ds, {}).update({k: v for k, v in values.items() if k in own_keys})
    defaults.update(overrides or {})
    keep = tuple(k for k in COPF_INFERRED if k in copf_keys)
    if encoder_model is not None:
        keep += tuple(k for k in MODELS[encoder_model].inferred if k in own_keys)
    register_model(name, encoder, decoder, description, defaults=defaults,
                   dataset_defaults=per_dataset, inferred=keep + inferred,
                   decoder_alias=decoder_alias)


# ---- Table 5: MTL modules on COGCN (spec §5.3, §8) ---------------------------------------------------
register_on_copf("cogcn+sb", "cogcn", "shared-bottom",
                 "Table 5 COGCN+SB: decoder shared-bottom ('sb'), shared input sum_k Z^k (alt "
                 "shared_input=weighted), COPF harness, no CL", inferred=("shared_input",),
                 decoder_alias="sb")
register_on_copf("cogcn+mmoe", "cogcn", "mmoe",
                 "Table 5 COGCN+MMOE: 3 shared experts, per-task gates and towers on sum_k Z^k, "
                 "COPF harness, no CL", inferred=("shared_input",))
register_on_copf("cogcn+ple", "cogcn", "ple",
                 "Table 5 COGCN+PLE: one CGC level (1 specific + 1 shared expert per task) on "
                 "sum_k Z^k, COPF harness, no CL", inferred=("shared_input",))
register_on_copf("cogcn+bilinear", "cogcn", "bilinear",
                 "Table 5 COGCN+Bilinear: decoupled Z^k, r_k per task, COPF harness, no CL",
                 overrides={"cl": False}, inferred=("cl",))
register_on_copf("cogcn+mesi", "cogcn", "mesi",
                 "Table 5 COGCN+MESI: shared gate over the raw experts of every behavior in natural "
                 "order, COPF harness, no CL")
register_on_copf("cogcn+pme", "cogcn", "pme",
                 "Table 5 COGCN+PME: projected shared experts + 'k but not j' uni losses (no "
                 "parallel branch on COGCN), COPF harness with the uni pairs, no CL",
                 overrides={"sampler": UNI_SAMPLER})
if "cogcn+dfme" not in MODELS:
    register_on_copf("cogcn+dfme", "cogcn", "dfme", "Table 5 COGCN+DFME: the same configuration "
                     "as 'copf' (COGCN + DFME with CL, sg_mode=paper)")

# ---- Table 6: DFME on other backbones (spec §5.4) -----------------------------------------------------
register_on_copf("lightgcn-m+dfme", "lightgcn", "dfme-ego-l2",
                 "Table 6 LightGCN_M+DFME: LightGCN on the union graph, Z^k = E_M for every k [I]; "
                 "decoder dfme-ego-l2 ('dfme': DFME + COPF's L2 on E0), CL on, COPF harness",
                 encoder_model="lightgcn-m", inferred=("ego_l2",), decoder_alias="dfme")
register_on_copf("crgcn+dfme", "crgcn", "dfme-ego-l2",
                 "Table 6 CRGCN+DFME: Z^k = CRGCN's cascade output T_k; decoder dfme-ego-l2 "
                 "('dfme': DFME + COPF's L2 on E0), CL on, COPF harness",
                 encoder_model="crgcn", inferred=("ego_l2",), decoder_alias="dfme")
register_on_copf("cigf+dfme", "cigf", "dfme",
                 "Table 6 CIGF+DFME: Z^k = CIGF encoder outputs, DFME (CL on) replaces MESI, COPF "
                 "harness", encoder_model="cigf")
register_on_copf("pkef+dfme", "pkef", "dfme",
                 "Table 6 PKEF+DFME: Z^k = PKEF cascade outputs, DFME (CL on) replaces PME and its "
                 "uni losses; PKEF's parallel-branch BPR kept [I]; COPF harness",
                 encoder_model="pkef", inferred=("parallel_loss",))
register_on_copf("mb-cgcn+dfme", "mb-cgcn", "dfme-ego-l2",
                 "Table 6 MB-CGCN+DFME: Z^k = behavior k's layer-mean output E^(k) (before the final "
                 "sum); decoder dfme-ego-l2 ('dfme': DFME + COPF's L2 on E0 and the transition W's), "
                 "CL on, COPF harness", encoder_model="mb-cgcn", inferred=("ego_l2",),
                 decoder_alias="dfme")
