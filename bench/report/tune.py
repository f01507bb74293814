"""A tune's report: configurations ranked by validation HR@10, test beside, and a plot.

Built from a manifest (``bench.tune.manifest``) and the records its run ids name, so
``bench tune`` and ``bench report tune`` print the same text. Per configuration: the mean over its
runs of validation HR@10 and NDCG@10 (full ranking, default rule, at the selected epoch), the
selected epoch(s), and the test HR@10 and NDCG@10 evaluated once with the validation-selected
weights. The best configuration is marked; the text ends with the ``bench run`` flags that train
it again and an experiment snippet that makes it an experiment's setting.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from bench.records import FAILURE_SUFFIX, read_record
from bench.report.results import current_code_version, is_stale
from bench.tune.space import Dimension, Space

LABEL = "full/default"
OK, PARTIAL, FAILED, MISSING = "ok", "partial", "failed", "not run"


@dataclass
class RankedConfiguration:
    index: int
    values: dict[str, Any]
    overrides: dict[str, Any]
    run_ids: list[str]
    status: str = MISSING
    runs: int = 0
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)
    batch: str = ""
    stale: int = 0          # records made by another version of the model's code

    @property
    def score(self) -> float | None:
        return self.valid.get("HR@10")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def collect(manifest: dict[str, Any], results_dir: Path) -> list[RankedConfiguration]:
    """Every distinct configuration of the manifest with what its records say, best first
    (validation HR@10, then validation NDCG@10, then the order tried); those without results
    last."""
    root = Path(results_dir) / manifest["dataset"] / manifest["model"]
    current = current_code_version(manifest["model"])
    out: list[RankedConfiguration] = []
    seen: set[tuple[str, ...]] = set()
    for entry in manifest["configurations"]:
        key = tuple(entry["run_ids"])
        if key in seen:          # a search that proposed a configuration twice
            continue
        seen.add(key)
        ranked = RankedConfiguration(entry["index"], entry["values"], entry["overrides"],
                                     list(entry["run_ids"]))
        records = [r for r in (read_record(root / f"{run_id}.json") for run_id in key) if r]
        failed = [run_id for run_id in key if (root / f"{run_id}{FAILURE_SUFFIX}").exists()]
        if records:
            valid = [r["metrics"]["valid"][LABEL] for r in records]
            test = [r["metrics"]["valid_selected"][LABEL] for r in records]
            ranked.valid = {m: _mean([v[m] for v in valid]) for m in ("HR@10", "NDCG@10")}
            ranked.test = {m: _mean([t[m] for t in test]) for m in ("HR@10", "NDCG@10")}
            ranked.epochs = [r["selected_epoch"]["valid_selected"] for r in records]
            ranked.batch = ",".join(sorted({_batch_text(r.get("batch", {})) for r in records}))
            ranked.runs = len(records)
            ranked.stale = sum(is_stale(r["config"], current) for r in records)
            ranked.status = OK if len(records) == len(key) else PARTIAL
        elif failed:
            ranked.status = FAILED
        out.append(ranked)
    return sorted(out, key=lambda c: (c.score is None, -(c.score or 0.0),
                                      -c.valid.get("NDCG@10", 0.0), c.index))


def _batch_text(info: dict[str, Any]) -> str:
    members = info.get("members", 1)
    return "alone" if members == 1 else f"{members} {info.get('mode', '')}".strip()


def best(ranked: Sequence[RankedConfiguration]) -> RankedConfiguration | None:
    """The configuration with the highest validation HR@10 over all its runs (None if none)."""
    complete = [c for c in ranked if c.status == OK]
    return complete[0] if complete else None


# ---- text ---------------------------------------------------------------------------------------
def header(manifest: dict[str, Any], space: Space) -> list[str]:
    batches = manifest.get("batches", {})
    lines = [f"tune: {manifest['model']} on {manifest['dataset']}, space "
             f"{manifest['space']['name']} ({manifest['space']['file']})",
             f"searched: {'; '.join(d.describe() for d in space.dimensions)}",
             f"search: {manifest['search_note']}",
             f"budget: {manifest['budget']} configuration(s) (the space's default: "
             f"{manifest['space']['budget']}), {_epochs_text(manifest)}, "
             f"{manifest['seeds']} run(s) each, base seed {manifest['base_seed']}",
             "protocol: honest (one training target interaction per user held out for "
             "validation; configurations ranked by validation HR@10; test evaluated once, at the "
             "validation-selected epoch, shown 0-based under 'epoch'; 'batch': how the records "
             "were trained)"]
    if manifest["fixed"]:
        lines.append("fixed: " + " ".join(_set_flags(manifest["fixed"])))
    if batches:
        lines.append(f"batches: {batches['trials']} trial(s) planned as {batches['batches']} "
                     f"batch(es) of at most {batches['members']} member(s) (members differing "
                     "only in batchable values train as one computation)")
    return lines


def _epochs_text(manifest: dict[str, Any]) -> str:
    epochs = manifest["epochs"]
    return "the model's own epochs" if epochs is None else f"{epochs} epoch(s)"


def ranking_table(ranked: Sequence[RankedConfiguration], space: Space) -> str:
    """One row per configuration, best first; numbers as text so that labels such as '1/6'
    and '3' stay as written."""
    chosen = best(ranked)
    rows = []
    for position, config in enumerate(ranked, 1):
        row: dict[str, Any] = {"rank": position, "": "*" if config is chosen else "",
                               "config": config.index}
        for dim in space.dimensions:
            row[dim.name] = dim.label(config.values[dim.name])
        has = bool(config.valid)
        for name, block, metric in (("valid HR@10", config.valid, "HR@10"),
                                    ("valid NDCG@10", config.valid, "NDCG@10"),
                                    ("epoch", None, ""),
                                    ("test HR@10", config.test, "HR@10"),
                                    ("test NDCG@10", config.test, "NDCG@10")):
            if not has:
                row[name] = "-"
            elif block is None:
                row[name] = ",".join(map(str, config.epochs))
            else:
                row[name] = f"{block[metric]:.4f}"
        row["runs"] = config.runs
        row["batch"] = config.batch or config.status
        rows.append(row)
    return tabulate(rows, headers="keys", disable_numparse=True)


def _set_flags(overrides: dict[str, Any]) -> list[str]:
    return [f"--set {shlex.quote(f'{key}={_value_text(value)}')}"
            for key, value in sorted(overrides.items()) if key != "epochs"]


def _value_text(value: Any) -> str:
    """A value as ``--set`` parses it back exactly (floats by repr, lists without spaces)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def reproduce_command(manifest: dict[str, Any], config: RankedConfiguration) -> str:
    """The ``bench run`` line whose trials are this configuration's records (same run ids)."""
    parts = ["python -m bench run", f"--models {manifest['model']}",
             f"--datasets {shlex.quote(manifest['dataset'])}", "--protocol honest",
             f"--seeds {manifest['seeds']}", f"--base-seed {manifest['base_seed']}"]
    if manifest["epochs"] is not None:
        parts.append(f"--epochs {manifest['epochs']}")
    parts += _set_flags(config.overrides)
    return " ".join(parts)


def toml_value(value: Any) -> str:
    """A TOML literal for a parameter value (floats by repr, so they read back exactly)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def experiment_rows(manifest: dict[str, Any], config: RankedConfiguration) -> str:
    """The ``[[rows]]`` entry of an experiment whose row is the tuned configuration on the tuned
    dataset (its values under ``dataset_params``, so other datasets keep their own defaults)."""
    params = {k: v for k, v in config.overrides.items() if k != "epochs"}
    lines = ["[[rows]]", f'label = "{manifest["model"]} (tuned)"',
             f'model = "{manifest["model"]}"', 'role = "proposed"',
             f"[rows.dataset_params.{_toml_key(manifest['dataset'])}]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in sorted(params.items())]
    return "\n".join(lines)


def _toml_key(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else toml_value(name)


def experiment_file(manifest: dict[str, Any], config: RankedConfiguration,
                    manifest_name: str, path: str) -> str:
    """A complete experiment (``bench/experiments`` format) with the tuned configuration."""
    valid, test = config.valid, config.test
    epochs = manifest["epochs"]
    lines = [f"# The configuration `bench tune` chose for {manifest['model']} on "
             f"{manifest['dataset']} (space {manifest['space']['name']}, budget "
             f"{manifest['budget']}, manifest {manifest_name}):",
             f"# validation HR@10 {valid['HR@10']:.4f}, NDCG@10 {valid['NDCG@10']:.4f}; test "
             f"HR@10 {test['HR@10']:.4f}, NDCG@10 {test['NDCG@10']:.4f} "
             f"({_epochs_text(manifest)}, honest protocol).",
             "# The rows train the model's own schedule"
             + (f"; add params = {{ epochs = {epochs} }} to repeat the tune's {epochs}-epoch "
                "trials exactly." if epochs is not None else "."),
             f"#   python -m bench run --experiment {path}",
             f"#   python -m bench report {path}",
             f'title = "{manifest["model"]} on {manifest["dataset"]}: the tuned configuration"',
             'kind = "table"', 'protocol = "honest"',
             f"datasets = [{toml_value(manifest['dataset'])}]", "seeds = 5",
             'metrics = ["HR@10", "NDCG@10"]', "underline_best_baseline = false", "",
             experiment_rows(manifest, config)]
    return "\n".join(lines) + "\n"


def render(manifest: dict[str, Any], space: Space, ranked: Sequence[RankedConfiguration]) -> str:
    """The report's text (what ``bench tune`` prints at the end and ``bench report tune``
    prints)."""
    lines = header(manifest, space) + ["", ranking_table(ranked, space), ""]
    done = sum(c.status == OK for c in ranked)
    if done < len(ranked):
        lines.append(f"{len(ranked) - done} of {len(ranked)} configuration(s) without complete "
                     "results (failed or not run yet); rerun the tune to finish them")
    chosen = best(ranked)
    if chosen is None:
        lines.append("no configuration has results yet")
        return "\n".join(lines) + "\n"
    stale = sum(c.stale for c in ranked)
    if stale:
        lines.append(f"stale: {stale} record(s) come from an older version of "
                     f"{manifest['model']}'s code; the numbers stand as recorded, and rerunning "
                     "the tune (or the command below) trains those trials again")
    lines += [f"best (*): configuration {chosen.index}, validation HR@10 "
              f"{chosen.valid['HR@10']:.4f}, test HR@10 {chosen.test['HR@10']:.4f}",
              "its trials again" + ("" if chosen.stale else
                                    " (the same run ids, so they are found stored)") + ":",
              "  " + reproduce_command(manifest, chosen),
              "as an experiment's setting (`bench tune ... --write-experiment FILE` writes a "
              "whole experiment file):", experiment_rows(manifest, chosen)]
    return "\n".join(lines) + "\n"


# ---- figure -------------------------------------------------------------------------------------
def plot(manifest: dict[str, Any], space: Space, ranked: Sequence[RankedConfiguration],
         out_dir: Path, stem: str) -> list[Path]:
    """Validation HR@10 of every configuration against each searched parameter, one panel per
    parameter; the best configuration in another color. Loss-weight vectors are placed by their
    target behavior's weight, other list values by their label."""
    import matplotlib.pyplot as plt

    from bench.report.figures import COLUMN_WIDTH, STYLE, _save
    shown = [c for c in ranked if c.score is not None]
    if not shown:
        return []
    chosen = best(ranked)
    panels = len(space.dimensions)
    columns = min(panels, 2)
    rows = math.ceil(panels / columns)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, columns, figsize=(COLUMN_WIDTH * columns / 1.4, 1.6 * rows),
                                 squeeze=False, constrained_layout=True)
        for ax, dim in zip(axes.flat, space.dimensions):
            xs, labels = _positions(dim, [c.values[dim.name] for c in shown])
            ys = [c.score for c in shown]
            ax.scatter(xs, ys, s=9, color="C0", alpha=0.7, linewidths=0)
            if chosen is not None:
                at = shown.index(chosen)
                ax.scatter([xs[at]], [ys[at]], s=22, color="C3", marker="*", linewidths=0,
                           label="best")
            if labels is not None:
                ax.set_xticks(range(len(labels)))
                ax.set_xticklabels(labels, rotation=90 if len(labels) > 6 else 0)
            elif dim.is_range and dim.scale == "log" or _log_spaced(dim.values):
                ax.set_xscale("log")
            elif dim.values and len(dim.values) <= 8:     # the searched values as ticks
                ax.set_xticks([float(v) for v in dim.values])
            ax.set_xlabel(_axis_label(dim))
            ax.set_ylabel("valid HR@10")
            ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        for ax in list(axes.flat)[panels:]:
            ax.set_visible(False)
        fig.suptitle(f"{manifest['model']} on {manifest['dataset']}: {len(shown)} "
                     f"configuration(s), {_epochs_text(manifest)}", fontsize=7)
        return _save(fig, Path(out_dir) / stem, ("png", "pdf"))


def _positions(dim: Dimension, values: Sequence[Any]) -> tuple[list[float], list[str] | None]:
    """x positions of the values, and tick labels where the axis is categorical."""
    if dim.simplex is not None:
        return [float(v[-1]) for v in values], None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    order = [dim.label(v) for v in (dim.values if not dim.is_range else values)]
    labels = list(dict.fromkeys(order))
    return [float(labels.index(dim.label(v))) for v in values], labels


def _log_spaced(values: Sequence[Any]) -> bool:
    """Positive numbers spanning more than two decades (learning rates, L2 weights)."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return (len(numbers) == len(values) > 1 and min(numbers) > 0
            and max(numbers) / min(numbers) > 100)


def _axis_label(dim: Dimension) -> str:
    if dim.simplex is not None:
        return f"{dim.name}: target behavior's weight"
    return dim.name + (" (every behavior)" if dim.per_behavior else "")
