"""A kernel- or operator-level profile of a model's training step (``bench speedcheck --profile``).

``torch.profiler`` records a few steps of a batch of S runs, as ``bench perf`` times them, and
the summary says per step: how many top-level operators the host launched and, on CUDA, how many
kernels ran; where the time went by name (kernels' device time on CUDA, operators' own host
time on the CPU); the share of the sparse products (what runs inside the suite's propagation or
under a sparse operator's name; on CUDA the kernels those operators launched); and
the idle gaps: on CUDA the time between one kernel's end and the next one's start, on the CPU the
main thread's time outside any top-level operator (the Python and framework overhead between
launches). The summary is a small JSON perf record, so it travels in a campaign bundle.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.autograd import DeviceType

from bench.data.dataset import MultiBehaviorDataset
from bench.perf import Stepper, _quiet_native_stderr, build_trainer
from bench.models.registry import get_model

SPARSE_MARKERS = ("sparse", "spmm", "csr", "_coo", "cusparse")
TOP_NAMES = 20


def is_sparse(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in SPARSE_MARKERS)


def in_sparse_product(event) -> bool:
    """An operator of a sparse product: its own name says so, or it runs inside the suite's
    propagation (``bench.data.graphs._Propagate``, forward or backward) or a sparse operator."""
    while event is not None:
        if is_sparse(event.name) or "Propagate" in event.name:
            return True
        event = event.cpu_parent
    return False


def _top_level(events) -> list:
    out = []
    for event in events:
        if event.device_type != DeviceType.CPU or not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            out.append(event)
    return out


def _intervals_gap(intervals: list[tuple[float, float]]) -> tuple[float, float, int]:
    """Covered span, total idle time between the intervals (microseconds) and the gaps' count."""
    if not intervals:
        return 0.0, 0.0, 0
    intervals.sort()
    idle, gaps, reach = 0.0, 0, intervals[0][1]
    for start, end in intervals[1:]:
        if start > reach:
            idle += start - reach
            gaps += 1
        reach = max(reach, end)
    return reach - intervals[0][0], idle, gaps


def _by_name(times: dict[str, float], total: float) -> list[dict[str, Any]]:
    ranked = sorted(times.items(), key=lambda kv: -kv[1])[:TOP_NAMES]
    return [{"name": name, "us": round(us, 1), "share": round(us / total, 4) if total else None}
            for name, us in ranked]


def profile_step(name: str, dataset: MultiBehaviorDataset, device: torch.device, steps: int,
                 members: int = 1, cuda_graphs: str = "off") -> dict[str, Any]:
    """Profile ``steps`` training steps of ``members`` runs of ``name`` trained as one batch."""
    trainer, cfg, _ = build_trainer(name, dataset, device, members, None, cuda_graphs)
    if trainer is None:
        return {"model": name, "profile": None, "reason": "the model does not train"}
    stepper = Stepper(trainer)
    for _ in range(3):                          # warm-up (and the CUDA graph's capture)
        stepper()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with _quiet_native_stderr(), torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            stepper()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = list(prof.events())
    top = _top_level(events)
    summary: dict[str, Any] = {
        "steps_profiled": steps, "members": members, "cuda_graphs": trainer.runner.active,
        "operators_per_step": round(len(top) / steps, 1)}
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    if kernels:
        times: dict[str, float] = {}
        intervals = []
        for k in kernels:
            times[k.name] = times.get(k.name, 0.0) + k.time_range.elapsed_us()
            intervals.append((k.time_range.start, k.time_range.end))
        busy = sum(times.values())
        span, idle, gaps = _intervals_gap(intervals)
        # kernels launched from inside a sparse product (the host operator's kernels), else
        # those whose own name is a sparse kernel's
        launched = sum(getattr(k, "duration", 0.0) for e in events
                       if e.device_type == DeviceType.CPU and in_sparse_product(e)
                       for k in getattr(e, "kernels", []))
        sparse = launched or sum(t for n, t in times.items() if is_sparse(n))
        summary.update({
            "timing": "device time of CUDA kernels",
            "kernels_per_step": round(len(kernels) / steps, 1),
            "device_us_per_step": round(busy / steps, 1),
            "by_name": _by_name(times, busy),
            "sparse_share": round(sparse / busy, 4) if busy else None,
            "idle": {"what": "between consecutive kernels on the device", "span_us": round(span, 1),
                     "idle_us": round(idle, 1), "idle_share": round(idle / span, 4) if span else None,
                     "gaps_per_step": round(gaps / steps, 1)}})
    else:
        times, sparse = {}, 0.0
        for e in events:
            if e.device_type == DeviceType.CPU and e.name.startswith("aten::"):
                times[e.name] = times.get(e.name, 0.0) + e.self_cpu_time_total
                if in_sparse_product(e):
                    sparse += e.self_cpu_time_total
        busy = sum(times.values())
        span, idle, gaps = _intervals_gap([(e.time_range.start, e.time_range.end) for e in top])
        summary.update({
            "timing": "own host time of aten operators (no device kernels on this device)",
            "kernels_per_step": None,
            "host_us_per_step": round(busy / steps, 1),
            "by_name": _by_name(times, busy),
            "sparse_share": round(sparse / busy, 4) if busy else None,
            "idle": {"what": "main-thread time outside top-level operators (Python and framework "
                             "overhead between launches)", "span_us": round(span, 1),
                     "idle_us": round(idle, 1), "idle_share": round(idle / span, 4) if span else None,
                     "gaps_per_step": round(gaps / steps, 1)}})
    label = name if members <= 1 else f"{name}-x{members}"
    return {"model": f"{label}-profile", "profiled_model": name,
            "model_version": get_model(name).code_version(), "seed_batch": members,
            "params": cfg, "profile": summary}
