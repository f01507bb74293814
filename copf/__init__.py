"""COPF: the COGCN encoder, the DFME decoder and every ablation as a registered configuration.
Importing the package registers every module in it."""
import importlib
import pkgutil

# copf builds on baselines (the Bilinear decoder and its shared parameters), and some baseline
# compositions use copf's components: baselines first, so either package can be imported first.
import baselines  # noqa: F401

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
