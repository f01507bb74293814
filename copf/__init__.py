"""COPF: the COGCN encoder, the DFME decoder and every ablation as a registered configuration.
Importing the package registers every module in it."""
import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
