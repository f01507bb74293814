"""``bench speedcheck``: the GPU speed check, one command.

Times a training step of COPF, LightGCN and CRGCN on Taobao for one run and for a seed batch, with
CUDA graphs on and off (``bench perf`` measurements, each written as a perf record), and prints
milliseconds and operators per step. With ``--train`` it also trains COPF on Taobao for 5 seeds x
200 epochs as one seed batch (``bench run --seed-batch``, ordinary records) and prints the wall
time. On the CPU (``--device cpu``) the same script runs end to end on smaller sizes: the ``demo``
dataset, fewer timed steps and 2 training epochs, unless told otherwise. With ``--profile`` it also
writes a kernel-level (on the CPU: operator-level) profile of COPF's S-run step
(``bench.step_profile``) as a small perf record.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tabulate import tabulate

from bench.data.select import load_datasets
from bench.errors import ConfigError
from bench.folders import writable_folder
from bench.models.registry import get_model, load_builtin
from bench.perf import perf_model, write_perf_record
from bench.runner import attempt_group, plan_trials, resolve_device
from bench.seed_groups import seed_groups

SPEED_MODELS = ["copf", "lightgcn", "crgcn"]
# full sizes on a GPU, smaller ones on the CPU
SIZES = {"cuda": {"dataset": "taobao", "steps": 20, "epochs": 200},
         "cpu": {"dataset": "demo", "steps": 3, "epochs": 2}}


def add_speedcheck_parser(sub) -> None:
    p = sub.add_parser("speedcheck", help="the GPU speed check: steps of COPF, LightGCN and CRGCN "
                                          "for 1 and S seeds, CUDA graphs on and off")
    p.add_argument("--device", default="auto", help="cuda (the check's target), or cpu for the "
                                                    "same script on smaller sizes")
    p.add_argument("--models", type=lambda s: [x for x in s.split(",") if x],
                   default=list(SPEED_MODELS))
    p.add_argument("--datasets", type=lambda s: [x for x in s.split(",") if x],
                   help="default: taobao on a GPU, demo on the CPU")
    p.add_argument("--seeds", type=int, default=5, help="runs in the seed batch (default 5)")
    p.add_argument("--steps", type=int, help="timed steps per measurement (default 20 on a GPU, "
                                             "3 on the CPU)")
    p.add_argument("--train", action="store_true",
                   help="also train COPF for --seeds seeds x --epochs epochs as one seed batch "
                        "and print the wall time")
    p.add_argument("--epochs", type=int, help="epochs of --train (default 200 on a GPU, 2 on the "
                                              "CPU)")
    p.add_argument("--profile", action="store_true",
                   help="also profile --profile-steps steps of COPF's --seeds-run batch with "
                        "torch.profiler and write a small summary (kernels or operators per step, "
                        "time by name, share in sparse products, idle gaps) as a perf record")
    p.add_argument("--profile-steps", type=int, default=5, metavar="N",
                   help="steps the profile records (default 5)")
    p.add_argument("--profile-only", action="store_true",
                   help="only the profile: skip the timed measurements")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--data-dir")


def command_speedcheck(args: argparse.Namespace) -> int:
    load_builtin()
    for name in args.models:
        get_model(name)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    writable_folder(Path(args.results_dir), "--results-dir")
    device = resolve_device(args.device)
    sizes = SIZES["cuda" if device.type == "cuda" else "cpu"]
    steps = args.steps or sizes["steps"]
    epochs = sizes["epochs"] if args.epochs is None else args.epochs
    dataset, = load_datasets(args.datasets or [sizes["dataset"]], args.data_dir)
    graph_modes = ["auto", "off"] if device.type == "cuda" else ["off"]
    rows = []
    for name in [] if args.profile_only else args.models:
        for members in sorted({1, args.seeds}):
            for graphs in graph_modes:
                m = perf_model(name, dataset, device, steps, {}, repeats=1, seed_batch=members,
                               cuda_graphs=graphs)
                m["kernels"] = "fast"
                path = write_perf_record(args.results_dir, dataset, device, m)
                rows.append((name, members, "on" if m.get("cuda_graphs") else "off",
                             1000 * m["seconds_per_step_median"], m["ops_per_step"],
                             m.get("ops_ratio"), 1000 * m["evaluation_seconds_median"], path.name))
    if rows:
        print(f"speed check on {device} ({dataset.name}), {steps} timed steps per measurement:")
        print(tabulate(rows, headers=["model", "runs", "CUDA graphs", "ms / step", "ops / step",
                                      "ops vs 1 run", "ms / evaluation", "record"], floatfmt=".2f"))
    if args.profile or args.profile_only:
        if args.profile_steps < 1:
            raise ConfigError(f"--profile-steps must be at least 1, got {args.profile_steps}")
        for graphs in graph_modes:
            profile_check(dataset, device, args.seeds, args.profile_steps, graphs,
                          args.results_dir)
    if args.train:
        train_check(dataset, device, args.seeds, epochs, args.results_dir)
    return 0


def profile_check(dataset, device, seeds: int, steps: int, cuda_graphs: str,
                  results_dir: Path) -> Path:
    """Profile COPF's ``seeds``-run step and write the summary as a perf record; print its gist."""
    from bench.step_profile import profile_step
    measurement = profile_step("copf", dataset, device, steps, seeds, cuda_graphs)
    path = write_perf_record(results_dir, dataset, device, measurement)
    summary = measurement["profile"]
    idle = summary["idle"]
    per_step = summary.get("device_us_per_step", summary.get("host_us_per_step"))
    kernels = summary.get("kernels_per_step")
    print(f"profile of COPF x{seeds} on {device} ({dataset.name}), {steps} steps, CUDA graphs "
          f"{'on' if summary['cuda_graphs'] else 'off'}: {summary['operators_per_step']} "
          f"operators" + (f", {kernels} kernels" if kernels is not None else "")
          + f" per step; {per_step / 1000:.2f} ms of {summary['timing']} per step; sparse "
          f"products {100 * (summary['sparse_share'] or 0):.1f}%; idle {idle['what']}: "
          f"{100 * (idle['idle_share'] or 0):.1f}% -> {path}")
    print(tabulate([(r["name"], r["us"] / steps / 1000, 100 * (r["share"] or 0))
                    for r in summary["by_name"][:10]],
                   headers=["name", "ms / step", "% of time"], floatfmt=".2f"))
    return path


def train_check(dataset, device, seeds: int, epochs: int, results_dir: Path) -> None:
    """Train COPF for ``seeds`` seeds x ``epochs`` epochs as one seed batch (paper protocol) and
    print the wall time and each run's best-on-test HR@10."""
    plan = plan_trials(["copf"], [dataset], seeds, "paper", 2025, {"epochs": epochs}, results_dir)
    if not plan.trials:
        print(f"COPF {seeds} seeds x {epochs} epochs: already stored in {results_dir}/ (delete "
              "those records or pass another --results-dir to time it again)")
        return
    started = time.perf_counter()
    attempts = []
    for group in seed_groups(plan.trials):
        attempts += attempt_group(group, dataset, device, results_dir, checkpoint_every=0)
    wall = time.perf_counter() - started
    failed = [a.message for a in attempts if a.status == "failed"]
    print(f"COPF on {dataset.name}, {len(plan.trials)} seeds x {epochs} epochs as one seed batch "
          f"on {device}: {wall / 60:.0f} min {wall % 60:.1f} s wall ({len(attempts) - len(failed)} "
          f"record(s) under {results_dir}/{dataset.name}/copf/)")
    for message in failed:
        print(f"failed: {message}")
