"""Baseline encoders, decoders and models, one module each, in families: ``floors`` (no learned
parameters), ``single`` (single-behavior models), ``multi`` (multi-behavior models with their own
decoders), ``decoders`` (multi-task heads any encoder can take). At the top: ``compositions``
pairs encoders with other decoders (Tables 5 and 6), and ``pretrain``, ``pretrain_data`` and
``pretrain_skip`` hold the pretraining that is part of MB-CGCN and MBGCN (they stay put: their
whole source is part of those models' code version, so moving them would make records stale).
Importing the package registers all of them."""
import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.walk_packages(__path__, prefix=f"{__name__}.")):
    if not _module.rsplit(".", 1)[-1].startswith("_"):
        importlib.import_module(_module)
