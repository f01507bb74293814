"""Registered compositions (Tables 5 and 6), their harness, and decoders refusing encoders whose
outputs do not fit, at build time."""
from __future__ import annotations

import pytest

from bench.errors import ConfigError
from bench.models.registry import MODELS, get_model

from tests.multitask.helpers import build, first_batch

TABLE5 = {"cogcn+sb": "shared-bottom", "cogcn+mmoe": "mmoe", "cogcn+ple": "ple",
          "cogcn+bilinear": "bilinear", "cogcn+mesi": "mesi", "cogcn+pme": "pme",
          "cogcn+dfme": "dfme"}
TABLE6 = {"lightgcn-m+dfme": ("lightgcn", "dfme-ego-l2"), "crgcn+dfme": ("crgcn", "dfme-ego-l2"),
          "cigf+dfme": ("cigf", "dfme"), "pkef+dfme": ("pkef", "dfme"),
          "mb-cgcn+dfme": ("mb-cgcn", "dfme-ego-l2")}
MY_DECODERS = ["shared-bottom", "mmoe", "ple", "mesi", "pme", "dfme-ego-l2"]


def test_registered_names_and_copf_harness():
    copf = MODELS["copf"]
    for name, decoder in TABLE5.items():
        spec = MODELS[name]
        assert (spec.encoder, spec.decoder) == ("cogcn", decoder)
    for name, (encoder, decoder) in TABLE6.items():
        spec = MODELS[name]
        assert (spec.encoder, spec.decoder) == (encoder, decoder)
    for name in [*TABLE5, *TABLE6]:
        cfg = MODELS[name].resolve("taobao", 3)
        for key in ("epochs", "users_per_epoch", "eval_schedule", "lr", "lr_decay", "decay_steps",
                    "batch_size", "n_pairs", "mult", "reg", "dim"):
            assert cfg[key] == copf.resolve("taobao", 3)[key], (name, key)
        assert cfg["loss_weights"] == [2 / 6] * 3
        beibei = MODELS[name].resolve("beibei", 3)
        assert beibei["loss_weights"] == [0.0, 2 / 6, 4 / 6]
        tmall = MODELS[name].resolve("tmall", 4)
        assert tmall["loss_weights"] == [1 / 6, 2 / 6, 0.0, 3 / 6]
        if name.startswith("cogcn+"):
            assert cfg["layers"] == copf.resolve("taobao", 3)["layers"]
    # contrastive loss: off in Table 5 (except DFME itself), on with DFME in Table 6
    assert MODELS["cogcn+bilinear"].resolve("taobao", 3)["cl"] is False
    for name in ("cogcn+sb", "cogcn+mmoe", "cogcn+ple", "cogcn+mesi", "cogcn+pme"):
        assert "cl_weight" not in MODELS[name].resolve("taobao", 3)
    for name in [*TABLE6, "cogcn+dfme"]:
        cfg = MODELS[name].resolve("taobao", 3)
        assert cfg["cl_weight"] == 1.0 and cfg["cl_temperature"] == 0.2
    assert MODELS["cogcn+pme"].resolve("taobao", 3)["sampler"] == "multi-behavior+uni"
    assert "'sb'" in MODELS["cogcn+sb"].description
    # X's own encoder settings are kept
    assert MODELS["lightgcn-m+dfme"].resolve("taobao", 3)["graph"] == "union"
    assert MODELS["pkef+dfme"].resolve("tmall", 4)["pkef_layers"] == [4, 1, 1, 1]
    assert MODELS["cigf+dfme"].resolve("tmall", 4)["cigf_layers"] == 4
    assert MODELS["pkef+dfme"].resolve("taobao", 3)["parallel_loss"] is True
    assert MODELS["mb-cgcn+dfme"].resolve("tmall", 4)["cascade_layers"] == \
        MODELS["mb-cgcn"].resolve("tmall", 4)["cascade_layers"]


def test_full_models_harness():
    for name in ("pkef", "cigf"):
        cfg = MODELS[name].resolve("taobao", 3)
        assert (cfg["users_per_epoch"], cfg["epochs"], cfg["decay_steps"], cfg["eval_schedule"],
                cfg["eval_every"], cfg["dim"]) == (10000, 100, 39, "every", 3, 64)
    pkef = MODELS["pkef"]
    assert pkef.resolve("taobao", 3)["pkef_layers"] == [4, 1, 1]
    assert pkef.resolve("beibei", 3)["loss_weights"] == [0.0, 4 / 6, 2 / 6]
    tmall = pkef.resolve("tmall", 4)
    assert (tmall["pkef_layers"], tmall["loss_weights"], tmall["uni_exclude"]) == \
        ([4, 1, 1, 1], [0.0, 4 / 6, 0.0, 2 / 6], [2])
    assert all(w * 3.0 == 1.0 for w in MODELS["cigf"].resolve("tmall", 4)["loss_weights"])


def _relatively_close(value: torch.Tensor, expected: torch.Tensor) -> bool:
    """Within 1e-4 of ``expected``, relatively; both read as plain floats (no autograd)."""
    value, expected = float(value.detach()), float(expected.detach())
    return abs(value - expected) < 1e-4 * expected


def test_ego_l2_regularizes_encoders_without_their_own(small):
    model, cfg = build("lightgcn-m+dfme", small)
    batch = first_batch(model, small, cfg)
    parts = model.loss(batch)[1]
    enc, dec = model.encoder, model.decoder
    expected = cfg["reg"] * (enc.users.pow(2).sum() + enc.items.pow(2).sum()
                             + sum(w.pow(2).sum() for w in dec.regularized()))
    assert _relatively_close(parts["l2"], expected)
    model, cfg = build("mb-cgcn+dfme", small)
    parts = model.loss(first_batch(model, small, cfg))[1]
    enc = model.encoder
    weights = [enc.users, enc.items, *enc.user_transforms, *enc.item_transforms,
               *model.decoder.regularized()]
    expected_mb = cfg["reg"] * sum(w.pow(2).sum() for w in weights)
    assert _relatively_close(parts["l2"], expected_mb)
    model, cfg = build("lightgcn-m+dfme", small, ego_l2=False)
    without = cfg["reg"] * sum(w.pow(2).sum() for w in model.decoder.regularized())
    assert _relatively_close(model.loss(batch)[1]["l2"], without)


@pytest.mark.parametrize("decoder", MY_DECODERS)
def test_decoders_refuse_encoders_without_per_behavior_tables(decoder, small):
    # 'pop' uses the encoder 'none', which gives no tables at all
    with pytest.raises(ConfigError, match="per-behavior tables"):
        build(f"pop+{decoder}", small)


def test_on_the_fly_compositions_build(small):
    for name in ("cigf+mmoe", "pkef+ple", "crgcn+mesi", "embedding+pme", "mf-bpr+shared-bottom"):
        model, cfg = build(name, small)
        loss, parts = model.loss(first_batch(model, small, cfg))
        assert loss.isfinite() and "bpr" in parts, name
    # PME brings its sampler as the default; a base model's own sampler is refused clearly
    assert get_model("embedding+pme").resolve("demo", 3)["sampler"] == "multi-behavior+uni"
    with pytest.raises(ConfigError, match="sampler"):
        build("lightgcn-m+pme", small)
