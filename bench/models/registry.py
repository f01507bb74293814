"""Named encoders, decoders and models. Names are unique: registering one twice is an error.

A model is ``encoder + decoder + defaults``; ``--models a+b`` composes any registered encoder ``a``
with any registered decoder ``b`` on the fly (registered models' names resolve first).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.models.base import Decoder, Encoder, Model
from bench.params import Param, merge_params, resolve
from bench.train.config import TRAIN_PARAMS

ENCODERS: dict[str, type[Encoder]] = {}
DECODERS: dict[str, type[Decoder]] = {}
MODELS: dict[str, "ModelSpec"] = {}
BUILTIN_MODULES = ("baselines", "copf")
# Code behind every model's numbers: a change here changes every model's code version.
SHARED_TRAINING_MODULES = ("bench.models.base", "bench.train.samplers", "bench.train.streams",
                           "bench.train.optim")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    encoder: str
    decoder: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    dataset_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    version: str = "1"
    inferred: tuple[str, ...] = ()   # parameters whose default is an inference, not from code/paper
    # modules outside the encoder and decoder whose code this model's numbers depend on (an
    # optimizer form of its own); empty for most, so their code version does not depend on them
    code_modules: tuple[str, ...] = ()

    def param_specs(self) -> dict[str, Param]:
        enc, dec = ENCODERS[self.encoder], DECODERS[self.decoder]
        return merge_params([TRAIN_PARAMS, enc.params, dec.params])

    def code_version(self) -> str:
        """Changes whenever the encoder's or decoder's source changes, the declared version, or
        the shared training code every model's numbers depend on (``SHARED_TRAINING_MODULES``:
        batches and loss helpers, samplers, random streams, the optimizer)."""
        digest = hashlib.sha256(self.version.encode())
        for module in (*SHARED_TRAINING_MODULES, *self.code_modules):
            digest.update(inspect.getsource(importlib.import_module(module)).encode())
        for cls in (ENCODERS[self.encoder], DECODERS[self.decoder]):
            for klass in cls.__mro__:
                if klass.__module__.startswith(("torch", "builtins")):
                    continue
                try:
                    digest.update(inspect.getsource(klass).encode())
                except (OSError, TypeError):
                    digest.update(klass.__qualname__.encode())
        return f"{self.version}-{digest.hexdigest()[:10]}"

    def own_dataset_defaults(self, dataset: str,
                             n_behaviors: int | None = None) -> Mapping[str, Any]:
        """This model's per-dataset defaults for ``dataset``, borrowed where the catalog says so."""
        if dataset in self.dataset_defaults:
            return self.dataset_defaults[dataset]
        from bench.data.catalog import defaults_source
        source = defaults_source(dataset, n_behaviors)
        return self.dataset_defaults.get(source, {}) if source else {}

    def resolve(self, dataset: str, n_behaviors: int | None,
                overrides: Mapping[str, Any] = ()) -> dict[str, Any]:
        """Defaults < model defaults < per-dataset defaults < user overrides, validated. A dataset
        without defaults of its own borrows those of the dataset the catalog names for it."""
        layers = [self.defaults, self.own_dataset_defaults(dataset, n_behaviors),
                  dict(overrides or {})]
        return resolve(self.param_specs(), layers, where=f"{self.name}: ", n_behaviors=n_behaviors)


def _register(table: dict, kind: str, name: str, obj) -> None:
    if name in table:
        raise ConfigError(f"{kind} name '{name}' is registered twice")
    if "+" in name and kind != "model":
        raise ConfigError(f"{kind} name '{name}' may not contain '+' (it composes names)")
    table[name] = obj


def _check_composed_name(name: str, encoder: str, decoder: str, decoder_alias: str | None) -> None:
    """A registered 'a+b' must say what it is: ``a`` its encoder (or a model using that encoder),
    ``b`` its decoder (or the alias the registration declares)."""
    left, right = name.split("+", 1)
    left_ok = left == encoder or (left in MODELS and MODELS[left].encoder == encoder)
    right_ok = right in (decoder, decoder_alias)
    if not (left_ok and right_ok):
        raise ConfigError(f"model name '{name}' must read encoder+decoder; it is registered with "
                          f"encoder '{encoder}' and decoder '{decoder}'")


def register_encoder(name: str):
    def wrap(cls: type[Encoder]) -> type[Encoder]:
        _register(ENCODERS, "encoder", name, cls)
        cls.registered_name = name
        return cls
    return wrap


def register_decoder(name: str):
    def wrap(cls: type[Decoder]) -> type[Decoder]:
        _register(DECODERS, "decoder", name, cls)
        cls.registered_name = name
        return cls
    return wrap


def register_model(name: str, encoder: str, decoder: str, description: str,
                   defaults: Mapping[str, Any] | None = None,
                   dataset_defaults: Mapping[str, Mapping[str, Any]] | None = None,
                   version: str = "1", inferred: tuple[str, ...] = (),
                   decoder_alias: str | None = None,
                   code_modules: tuple[str, ...] = ()) -> ModelSpec:
    """Register ``name`` = ``encoder`` + ``decoder`` with defaults. A name with '+' must read
    encoder+decoder (``decoder_alias`` lets e.g. 'cogcn+sb' stand for decoder 'shared-bottom')."""
    if "+" in name:
        _check_composed_name(name, encoder, decoder, decoder_alias)
    for kind, table, key in (("encoder", ENCODERS, encoder), ("decoder", DECODERS, decoder)):
        if key not in table:
            raise ConfigError(f"model '{name}': unknown {kind} '{key}'")
    spec = ModelSpec(name, encoder, decoder, description, dict(defaults or {}),
                     {k: dict(v) for k, v in (dataset_defaults or {}).items()}, version, inferred,
                     tuple(code_modules))
    _register(MODELS, "model", name, spec)
    spec.param_specs()          # a clash between encoder and decoder parameters fails at import
    return spec


def load_builtin() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def load_plugin(path_or_module: str) -> None:
    """Import a user's file or module whose models register themselves."""
    load_builtin()      # a plugin may build on the built-in encoders and decoders
    path = Path(path_or_module)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise ConfigError(f"plugin file '{path}' does not exist")
        name = f"bench_plugin_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
    else:
        try:
            importlib.import_module(path_or_module)
        except ImportError as err:
            raise ConfigError(f"cannot import plugin module '{path_or_module}': {err}") from err


def get_model(name: str) -> ModelSpec:
    """A registered model, or ``encoder+decoder`` composed with both components' defaults."""
    load_builtin()
    if name in MODELS:
        return MODELS[name]
    if "+" in name:
        enc, dec = name.split("+", 1)
        enc_name = MODELS[enc].encoder if enc in MODELS and enc not in ENCODERS else enc
        if enc_name not in ENCODERS:
            raise ConfigError(f"cannot compose '{name}': no encoder '{enc}'; encoders: "
                              f"{', '.join(sorted(ENCODERS))}")
        if dec not in DECODERS:
            raise ConfigError(f"cannot compose '{name}': no decoder '{dec}'; decoders: "
                              f"{', '.join(sorted(DECODERS))}")
        base = MODELS.get(enc)
        defaults = dict(base.defaults) if base else {}
        dataset_defaults = dict(base.dataset_defaults) if base else {}
        spec = ModelSpec(name, enc_name, dec, f"composition of encoder '{enc_name}' and decoder "
                         f"'{dec}'", defaults, dataset_defaults)
        allowed = spec.param_specs()
        return ModelSpec(name, enc_name, dec, spec.description,
                         {k: v for k, v in defaults.items() if k in allowed},
                         {d: {k: v for k, v in o.items() if k in allowed}
                          for d, o in dataset_defaults.items()})
    raise ConfigError(f"unknown model '{name}'; valid models: {', '.join(sorted(MODELS))}")


def build_model(spec: ModelSpec, dataset: MultiBehaviorDataset, cfg: Mapping[str, Any],
                device: torch.device | str, generator: torch.Generator) -> Model:
    """Instantiate encoder and decoder (parameters drawn from ``generator``) on ``device``."""
    device = torch.device(device)
    encoder = ENCODERS[spec.encoder](dataset, dict(cfg), device, generator)
    decoder = DECODERS[spec.decoder](dataset, dict(cfg), device, generator, encoder)
    return Model(spec.name, encoder, decoder, dict(cfg)).to(device)
