"""``bench campaign plan|run|bundle|unpack``: fill a device window with the missing trials that
matter most, and bring them back (``bench.campaign``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from bench.errors import ConfigError


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiments", type=_csv,
                   help="comma-separated experiments (default: every one of the priority file); "
                        "one the file does not list is planned after its entries")
    p.add_argument("--datasets", type=_csv, help="narrow the entries to these datasets")
    p.add_argument("--budget", type=float, required=True, metavar="SECONDS",
                   help="device seconds the campaign may use")
    p.add_argument("--device", default="auto", help="the device kind the estimates are for "
                   "(and, for `run`, trains on): auto, cpu, cuda or cuda:N")
    p.add_argument("--priority", type=Path, metavar="FILE",
                   help="a priority TOML file instead of the shipped bench/campaign/priority.toml")
    p.add_argument("--seeds", type=int, help="runs per cell (default: each experiment's)")
    p.add_argument("--epochs", type=int, help="override every model's number of epochs")
    p.add_argument("--max-batch", type=int, default=0, metavar="N",
                   help="most members in one group (0: as many as batch)")
    p.add_argument("--cuda-graphs", choices=("auto", "off"), default="auto",
                   help="on CUDA, train (and price) with CUDA graphs (auto) or without (off)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--data-dir", help="dataset folder (default: $BENCH_DATA, else the user cache)")


def add_campaign_parser(sub) -> None:
    p = sub.add_parser("campaign", help="plan, run and bundle the missing trials of a device "
                                        "window by priority and cost")
    inner = p.add_subparsers(dest="campaign_command", required=True)
    plan = inner.add_parser("plan", help="the missing trials by priority, grouped and priced, "
                                         "and which fit the budget")
    _add_plan_arguments(plan)
    run = inner.add_parser("run", help="train the plan's groups that fit, stop (checkpointed) "
                                       "before the budget ends")
    _add_plan_arguments(run)
    run.add_argument("--checkpoint-every", type=int, default=5, metavar="EPOCHS")
    run.add_argument("--concurrent", type=int, default=1, metavar="N",
                     help="groups trained at once on the device (threads); only where a "
                          "measurement shows it raises throughput (default 1)")
    bundle = inner.add_parser("bundle", help="pack the campaign's records, perf records, "
                                             "checkpoints and log into at most 8 files")
    bundle.add_argument("--out", type=Path, required=True, metavar="DIR")
    bundle.add_argument("--skip-checkpoints", action="store_true",
                        help="leave the checkpoints of stopped groups out (when they would not "
                             "fit in 7 parts of 16 MiB)")
    bundle.add_argument("--results-dir", type=Path, default=Path("results"))
    unpack = inner.add_parser("unpack", help="verify a bundle and merge it into the results")
    unpack.add_argument("folder", type=Path, metavar="DIR")
    unpack.add_argument("--results-dir", type=Path, default=Path("results"))


def command_campaign(args: argparse.Namespace) -> int:
    return {"plan": command_plan, "run": command_run, "bundle": command_bundle,
            "unpack": command_unpack}[args.campaign_command](args)


def _plan(args: argparse.Namespace, kind: str):
    from bench.campaign.plan import build_plan
    from bench.campaign.priority import load_priority, select
    from bench.models.registry import load_builtin
    load_builtin()
    if args.budget < 0:
        raise ConfigError(f"--budget must be 0 or more seconds, got {args.budget}")
    entries = select(load_priority(args.priority), args.experiments, args.datasets)
    graphs = getattr(args, "cuda_graphs", "auto") == "auto"
    return build_plan(entries, args, kind, args.budget, args.max_batch, graphs)


def _device_kind(name: str) -> str:
    if name == "auto":
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name.split(":")[0]


def print_plan(plan, kind: str) -> None:
    rows = []
    for n, g in enumerate(plan.groups, 1):
        est = g.estimate
        seconds = f"{est.seconds:.0f}" if est.seconds is not None else "-"
        if est.seconds is not None and est.missing:
            seconds = f">= {seconds}"
        resumed = f" (resumes at epoch {g.resumed_epoch})" if g.resumed_epoch else ""
        rows.append((n, g.entry, g.describe + resumed, len(g.trials), seconds, g.verdict,
                     "; ".join(est.sources + est.missing)))
    print(f"campaign plan on {kind}, budget {plan.budget:.0f} s: {len(plan.groups)} group(s) "
          f"to run ({sum(len(g.trials) for g in plan.groups)} trial(s)), {plan.stored} trial(s) "
          "already stored")
    if rows:
        print(tabulate(rows, headers=["#", "priority entry", "group", "trials", "est. s",
                                      "verdict", "estimate from"], maxcolwidths=[None, 28, 36,
                                                                                  None, None,
                                                                                  None, 70]))
    fitting = plan.fitting()
    print(f"fit the budget: {len(fitting)} group(s), "
          f"{sum(g.estimate.seconds for g in fitting):.0f} s of {plan.budget:.0f} s")
    unpriced: dict[tuple[str, int], list[str]] = {}
    for g in plan.groups:
        if any(m.startswith("training:") for m in g.estimate.missing):
            models = unpriced.setdefault((g.trials[0].dataset, len(g.trials)), [])
            if g.trials[0].model not in models:
                models.append(g.trials[0].model)
    for (dataset, members), models in unpriced.items():
        batch = f" --seed-batch {members}" if members > 1 else ""
        print(f"to price the groups of {members} run(s) on {dataset} without an estimate: "
              f"python -m bench perf --models {','.join(models)} --datasets {dataset} "
              f"--device {kind} --repeats 1 --steps 10{batch}")
    for entry, row in plan.not_registered:
        print(f"not registered ({entry}): {row}")


def command_plan(args: argparse.Namespace) -> int:
    kind = _device_kind(args.device)
    print_plan(_plan(args, kind), kind)
    return 0


def command_run(args: argparse.Namespace) -> int:
    from bench.campaign.run import run_campaign
    from bench.data.select import load_datasets
    from bench.folders import writable_folder
    from bench.runner import resolve_device
    import time
    began = time.monotonic()        # the budget counts planning and loading too
    device = resolve_device(args.device)
    writable_folder(args.results_dir, "--results-dir")
    kind = device.type
    plan = _plan(args, kind)
    print_plan(plan, kind)
    names = sorted({g.trials[0].dataset for g in plan.fitting()})
    datasets = {d.name: d for d in load_datasets(names, args.data_dir)} if names else {}
    left = args.budget - (time.monotonic() - began)
    outcome = run_campaign(plan, datasets, device, args.results_dir, left,
                           args.checkpoint_every, args.concurrent, args.cuda_graphs)
    for gid in outcome.trained:
        print(f"trained  {gid}")
    for gid in outcome.stopped:
        print(f"stopped at the budget, checkpointed: {gid} (the next `campaign run` resumes it)")
    for gid, why in outcome.skipped:
        print(f"not started: {gid} ({why})")
    failed = [a.message for a in outcome.attempts if a.status == "failed"]
    for message in failed:
        print(f"failed: {message}", file=sys.stderr)
    return 1 if failed else 0


def command_bundle(args: argparse.Namespace) -> int:
    from bench.campaign.bundle import bundle
    manifest = bundle(args.results_dir, args.out, not args.skip_checkpoints)
    total = sum(p["bytes"] for p in manifest["parts"])
    print(f"bundle {args.out}: {len(manifest['files'])} file(s) in {len(manifest['parts'])} "
          f"part(s), {total / 2**20:.2f} MiB, plus manifest.json")
    for f in manifest["files"]:
        print(f"  {f['kind']:<10} {f['path']}")
    return 0


def command_unpack(args: argparse.Namespace) -> int:
    from bench.campaign.bundle import unpack
    merge = unpack(args.folder, args.results_dir)
    for rel in merge.written:
        print(f"merged     {rel}")
    for rel in merge.identical:
        print(f"identical  {rel} (already stored)")
    print(f"unpacked {args.folder} into {args.results_dir}/: {len(merge.written)} file(s) merged, "
          f"{len(merge.identical)} already stored, {merge.log_lines} log line(s) added")
    return 0
