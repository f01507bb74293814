"""Figures at paper column width (3.3 in): sweep curves (Figures 3-5) and behavior patterns (Fig. 6).

Each sweep gives one figure per dataset, two panels (HR@10, NDCG@10), one line per series: the
mean over runs with a band of ± one standard deviation. Each dataset's behavior-pattern
distribution is one bar chart. Files go to ``<figures dir>/<experiment>_<dataset>.{png,pdf}``.
Matplotlib runs on the Agg backend: no display is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

COLUMN_WIDTH = 3.3   # inches: one column of the ACM two-column format
FORMATS = ("png", "pdf")
STYLE = {"font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6,
         "ytick.labelsize": 6, "legend.fontsize": 6, "lines.linewidth": 1.2,
         "lines.markersize": 3.5, "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "savefig.dpi": 300,
         "pdf.fonttype": 42}
# No creation date (PDF) and no software stamp (PNG): a figure of unchanged data is rewritten
# byte for byte, so `bench report all` leaves a checkout's committed figures clean.
METADATA = {"pdf": {"CreationDate": None}, "png": {"Software": None}}


def _save(fig, stem: Path, formats: Sequence[str]) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, bbox_inches="tight", metadata=METADATA.get(fmt))
        paths.append(path)
    plt.close(fig)
    return paths


def plot_sweep(result, out_dir: Path, formats: Sequence[str] = FORMATS) -> tuple[list[Path], list[str]]:
    """Figures of a :class:`bench.report.sweeps.SweepResult`; returns (files, datasets without
    any result)."""
    from bench.report.tables import dataset_label
    exp = result.experiment
    files, empty = [], []
    numeric = all(isinstance(v, (int, float)) for v in result.values)
    for dataset in result.datasets:
        curves = {(s, m): result.curve(dataset, s, m) for s in result.series for m in exp.metrics}
        if not any(curves.values()):
            empty.append(dataset)
            continue
        with plt.rc_context(STYLE):
            fig, axes = plt.subplots(1, len(exp.metrics), figsize=(COLUMN_WIDTH, 1.55),
                                     squeeze=False, constrained_layout=True)
            for ax, metric in zip(axes[0], exp.metrics):
                for i, series in enumerate(result.series):
                    curve = curves[(series, metric)]
                    if not curve:
                        continue
                    xs = [x if numeric else result.values.index(x) for x, _ in curve]
                    mean = [s.mean for _, s in curve]
                    lo = [s.mean - s.std for _, s in curve]
                    hi = [s.mean + s.std for _, s in curve]
                    color = f"C{i}"
                    ax.plot(xs, mean, marker="os^dv"[i % 5], color=color, label=series)
                    if any(s.n > 1 for _, s in curve):
                        ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
                ax.set_xlabel(exp.x_label or "value")
                ax.set_ylabel(metric)
                if exp.x_scale == "log":
                    ax.set_xscale("log")
                if numeric and len(result.values) > 5:       # keep the labels apart
                    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
                else:
                    ax.set_xticks(result.values if numeric else range(len(result.values)))
                if not numeric:
                    ax.set_xticklabels([str(v) for v in result.values])
                ax.ticklabel_format(axis="y", style="plain", useOffset=False)
            if len(result.series) > 1:
                axes[0][0].legend(frameon=False, loc="best")
            fig.suptitle(dataset_label(dataset), fontsize=7)
            files += _save(fig, Path(out_dir) / f"{exp.name}_{dataset}", formats)
    return files, empty


def plot_patterns(name: str, dataset: str, behaviors: Sequence[str], patterns,
                  out_dir: Path, unit: str = "user", suffix: str = "",
                  formats: Sequence[str] = FORMATS) -> list[Path]:
    """Bars of the share of users (or pairs) per behavior pattern, in pattern order ("0 0 1" ...)."""
    from bench.report.tables import dataset_label
    shown = sorted((p for p in patterns if p.count), key=lambda p: p.pattern)
    labels = [p.pattern.replace(" ", "") for p in shown]
    shares = [100 * p.share for p in shown]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 1.7), constrained_layout=True)
        bars = ax.bar(range(len(shown)), shares, color="C0", width=0.7)
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels(labels, rotation=90 if len(shown) > 10 else 0, family="monospace")
        ax.set_ylabel(f"share of {'users' if unit == 'user' else 'user-item pairs'} (%)")
        ax.set_xlabel("pattern (" + ", ".join(behaviors) + "; 1 = present)")
        ax.set_title(dataset_label(dataset), loc="left")
        ax.grid(axis="x", visible=False)
        for bar, share in zip(bars, shares):
            if share > 0:
                ax.annotate(f"{share:.0f}" if share >= 10 else f"{share:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=5, xytext=(0, 1),
                            textcoords="offset points")
        ax.margins(y=0.12)
        return _save(fig, Path(out_dir) / f"{name}_{dataset}{suffix}", formats)
