"""``bench list``: registered models, their parameters, datasets, encoders, decoders, samplers."""
from __future__ import annotations

import argparse

from tabulate import tabulate

from bench.errors import ConfigError
from bench.models.registry import DECODERS, ENCODERS, MODELS, get_model, load_builtin, load_plugin


def borrowed_defaults() -> dict[str, str]:
    """Datasets that borrow another's per-dataset defaults, and from which."""
    from bench.data.catalog import CATALOG
    return {f"{name} with {k} behaviors": source for name, spec in CATALOG.items()
            for k, source in spec.defaults_like.items()}


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def batching(spec) -> str:
    """How the runs of a batch of this model train: fused, or looped with the reason. A component
    whose answer depends on its settings says so through ``looped_reason_for(defaults)``."""
    defaults = dict(spec.defaults)
    reasons = []
    for table, name in ((ENCODERS, spec.encoder), (DECODERS, spec.decoder)):
        cls = table[name]
        reason = getattr(cls, "looped_reason", "")
        if not isinstance(reason, str):
            reason = ""
        hook = getattr(cls, "looped_reason_for", None)
        reasons.append(reason or (hook(defaults) if callable(hook) else ""))
    reason = "; ".join(r for r in reasons if r)
    return f"looped: {reason}" if reason else "fused"


def command_list(args: argparse.Namespace) -> int:
    load_builtin()
    for plugin in args.plugin:
        load_plugin(plugin)
    if args.what == "models":
        rows = [(name, spec.encoder, spec.decoder, batching(spec), spec.description)
                for name, spec in sorted(MODELS.items())]
        print(tabulate(rows, headers=["model", "encoder", "decoder", "batches of runs",
                                      "description"]))
        print("\nbatches of runs: fused = the runs of a seed (or tuning) batch train as one "
              "computation; looped = member by member, for the reason given")
    elif args.what == "params":
        if not args.model:
            raise ConfigError("`bench list params` needs a model name, e.g. `bench list params copf`")
        spec = get_model(args.model)
        specs = spec.param_specs()
        rows = []
        for name, p in sorted(specs.items()):
            default = spec.defaults.get(name, p.default)
            per_dataset = {d: o[name] for d, o in spec.dataset_defaults.items() if name in o}
            per_dataset.update({f"{d} (inferred: {src}'s)": spec.dataset_defaults[src][name]
                                for d, src in borrowed_defaults().items()
                                if name in spec.dataset_defaults.get(src, {})})
            note = " (inferred)" if name in spec.inferred else ""
            extra = "; ".join(f"{d}: {v}" for d, v in per_dataset.items())
            rows.append((name, f"{default}{note}", p.kind.__name__, p.describe_range(), extra, p.help))
        print(f"{spec.name}: {spec.description}")
        print(tabulate(rows, headers=["parameter", "default", "type", "allowed", "per dataset",
                                      "meaning"]))
    elif args.what == "datasets":
        from bench.data.cli import run_data_command
        return run_data_command(argparse.Namespace(data_command="list", data_dir=args.data_dir))
    elif args.what == "encoders":
        print(tabulate([(n, _first_line(c.__doc__)) for n, c in sorted(ENCODERS.items())],
                       headers=["encoder", "description"]))
    elif args.what == "decoders":
        print(tabulate([(n, _first_line(c.__doc__)) for n, c in sorted(DECODERS.items())],
                       headers=["decoder", "description"]))
    else:
        from bench.train.samplers import SAMPLERS
        print(tabulate([(n, _first_line(f.__doc__)) for n, f in sorted(SAMPLERS.items())],
                       headers=["sampler", "description"]))
    return 0
