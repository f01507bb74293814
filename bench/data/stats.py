"""Dataset statistics (the paper's Table 1 and Figure 6) and the check of a folder against the catalog.

``compute_stats`` gives Table 1's columns: users, items, interactions (summed over behaviors),
target interactions and behaviors. ``behavior_patterns`` gives Appendix A.2 / Figure 6: the share
of users per presence pattern over the behaviors ("1 0 1" = has the first and last behavior but not
the middle one); ``unit="pair"`` counts user-item pairs of the union instead of users.
``seen_share`` counts the test items a user already has under an auxiliary behavior (the reach of
the ``pop-seen`` floor). ``check`` compares a folder with the catalog (files present, checksums or shape and counts) and
returns a report rather than raising, so an incomplete folder is described, not crashed on.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bench.data import catalog
from bench.data.catalog import VERIFY_NONE, VERIFY_SHA256, DatasetSpec, FileSpec
from bench.data.dataset import MultiBehaviorDataset
from bench.data.periods import DEFAULT_AUX_PERIODS
from bench.data.periods import describe as describe_periods
from bench.errors import DataError

PATTERN_UNITS = ("user", "pair")


# ---- Table 1 --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetStats:
    """Table 1's row of a dataset, plus per-behavior counts and the evaluation splits' sizes."""

    name: str
    users: int
    items: int
    behaviors: tuple[str, ...]
    counts: dict[str, int]
    test_users: int
    test_interactions: int
    valid_users: int | None = None

    @property
    def interactions(self) -> int:
        return sum(self.counts.values())

    @property
    def target_interactions(self) -> int:
        return self.counts[self.behaviors[-1]]

    @property
    def density(self) -> float:
        return self.interactions / max(1, self.users * self.items)


def compute_stats(dataset: MultiBehaviorDataset) -> DatasetStats:
    """Table 1 statistics of a loaded dataset (training interactions; test counted apart)."""
    valid_users = None if dataset.valid is None else len(dataset.eval_users("valid"))
    return DatasetStats(name=dataset.name, users=dataset.n_users, items=dataset.n_items,
                        behaviors=dataset.behaviors,
                        counts={b: int(dataset.train[b].nnz) for b in dataset.behaviors},
                        test_users=len(dataset.eval_users("test")),
                        test_interactions=int(dataset.test.nnz), valid_users=valid_users)


def format_stats(stats: DatasetStats) -> str:
    """Table 1 row with thousands separators, then per-behavior counts and split sizes."""
    header = ("dataset", "#users", "#items", "#interactions", "#target", "behaviors")
    row = (stats.name, f"{stats.users:,}", f"{stats.items:,}", f"{stats.interactions:,}",
           f"{stats.target_interactions:,}", " -> ".join(stats.behaviors))
    widths = [max(len(h), len(v)) for h, v in zip(header, row)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(),
             "per behavior: " + "; ".join(f"{b} {c:,}" for b, c in stats.counts.items()),
             f"test: {stats.test_users:,} users, {stats.test_interactions:,} interactions"]
    if stats.valid_users is not None:
        lines.append(f"valid: {stats.valid_users:,} users")
    lines.append(f"density: {stats.density:.5%}")
    return "\n".join(lines)


# ---- test items already seen upstream -------------------------------------------------------------
@dataclass(frozen=True)
class SeenShare:
    """Of the held-out target interactions of a split, how many the user already has under each
    auxiliary behavior's training matrix, and under any of them."""

    split: str
    held_out: int
    per_behavior: dict[str, int]
    any_behavior: int

    def share(self, count: int) -> float:
        return count / self.held_out if self.held_out else float("nan")


def seen_share(dataset: MultiBehaviorDataset, split: str = "test") -> SeenShare:
    """Counts of the split's (user, item) pairs present in each auxiliary behavior's training
    matrix and in their union: a ranking of the user's own upstream items reaches at most
    ``any_behavior`` of them (the ``pop-seen`` floor)."""
    held = dataset.split(split)
    auxiliary = dataset.behaviors[:-1]
    per_behavior = {b: int(held.multiply(dataset.train[b]).nnz) for b in auxiliary}
    any_behavior = int(held.multiply(dataset.union(auxiliary)).nnz) if auxiliary else 0
    return SeenShare(split, int(held.nnz), per_behavior, any_behavior)


def format_seen_share(seen: SeenShare) -> str:
    if not seen.per_behavior:
        return f"{seen.split} items seen under an auxiliary behavior: none (no auxiliary behavior)"
    parts = [f"{b} {seen.share(c):.1%} ({c:,})" for b, c in seen.per_behavior.items()]
    return (f"{seen.split} items the user already has in the training input, per auxiliary "
            f"behavior (of {seen.held_out:,}): " + "; ".join(parts)
            + f"; any {seen.share(seen.any_behavior):.1%} ({seen.any_behavior:,})")


# ---- Figure 6 -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatternShare:
    pattern: str   # "1 0 1": presence of each behavior, upstream -> target
    count: int
    share: float


def behavior_patterns(dataset: MultiBehaviorDataset, unit: str = "user") -> list[PatternShare]:
    """Share of users (or of user-item pairs) per behavior-presence pattern, largest first.

    ``user``: a user has a behavior when its training row is non-empty; users with no interaction
    at all show as all zeros. ``pair``: each pair of the union, by which behaviors it occurs in."""
    if unit not in PATTERN_UNITS:
        raise DataError(f"unknown pattern unit '{unit}'; use one of {PATTERN_UNITS}")
    k = dataset.n_behaviors
    weights = [1 << (k - 1 - i) for i in range(k)]
    if unit == "user":
        codes = np.zeros(dataset.n_users, dtype=np.int64)
        for weight, matrix in zip(weights, dataset.matrices()):
            codes += weight * (np.diff(matrix.indptr) > 0)
    else:
        total = sp.csr_matrix(dataset.train[dataset.target].shape, dtype=np.float64)
        for weight, matrix in zip(weights, dataset.matrices()):
            total = total + weight * matrix.astype(np.float64)
        codes = np.rint(sp.csr_matrix(total).data).astype(np.int64)
    counts = np.bincount(codes, minlength=1 << k)
    n = max(1, int(counts.sum()))
    out = [PatternShare(" ".join(format(code, f"0{k}b")), int(c), int(c) / n)
           for code, c in enumerate(counts) if c]
    return sorted(out, key=lambda p: (-p.count, p.pattern))


def format_patterns(patterns: list[PatternShare], behaviors: tuple[str, ...],
                    unit: str = "user") -> str:
    what = "users" if unit == "user" else "user-item pairs"
    lines = [f"behavior patterns (share of {what}; 1 = present; order {' '.join(behaviors)}):"]
    for p in patterns:
        lines.append(f"  {p.pattern}  {p.share:7.2%}  {p.count:>12,}")
    return "\n".join(lines)


# ---- check against the catalog ------------------------------------------------------------------
@dataclass
class FileCheck:
    """One file's verdict: ``ok``, ``unverified`` (no checksum known), ``missing`` or ``mismatch``."""

    name: str
    status: str
    detail: str


@dataclass
class CheckReport:
    name: str
    folder: Path
    files: list[FileCheck] = field(default_factory=list)
    missing_behaviors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    folder_found: bool = True
    facts: list[str] = field(default_factory=list)     # what the loaded data holds, if it loads

    @property
    def status(self) -> str:
        if not self.folder_found:
            return "NOT FOUND"
        if any(f.status == "missing" for f in self.files):
            return "INCOMPLETE"
        if self.problems or any(f.status == "mismatch" for f in self.files):
            return "MISMATCH"
        return "OK"

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def format(self) -> str:
        lines = [f"{self.name}: {self.status} ({self.folder})"]
        width = max([len(f.name) for f in self.files] + [4])
        for f in self.files:
            lines.append(f"  {f.status:<10} {f.name:<{width}}  {f.detail}")
        lines.extend(f"  problem: {p}" for p in self.problems)
        lines.extend(f"  {fact}" for fact in self.facts)
        if self.missing_behaviors:
            lines.append(f"missing behavior(s): {', '.join(self.missing_behaviors)}; the dataset "
                         f"is INCOMPLETE: get the files with `bench data fetch {self.name}` "
                         "(or load only the present behaviors as a folder with --layout pkef)")
        elif not self.folder_found:
            lines.append(f"get it with `bench data fetch {self.name}` or point --data-dir "
                         "(or $BENCH_DATA) at the folder that holds it")
        return "\n".join(lines)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | Path, spec: FileSpec, dataset: DatasetSpec) -> FileCheck:
    """Check one present file against the catalog: by checksum, else by shape and count."""
    path = Path(path)
    if spec.verify == VERIFY_SHA256:
        digest = sha256_of(path)
        if digest == spec.sha256:
            return FileCheck(spec.name, "ok", "sha256 matches the catalog")
        content = _shape_and_count(path, spec, dataset)
        return FileCheck(spec.name, "mismatch",
                         f"sha256 {digest[:16]}... differs from the catalog's {spec.sha256[:16]}...; "
                         f"content: {content[1]}")
    if spec.verify == VERIFY_NONE:
        return FileCheck(spec.name, "unverified", "present; " + (spec.note or "no checksum known"))
    good, detail = _shape_and_count(path, spec, dataset)
    return FileCheck(spec.name, "ok" if good else "mismatch",
                     detail + (" (verified by shape and count)" if good else ""))


def _shape_and_count(path: Path, spec: FileSpec, dataset: DatasetSpec) -> tuple[bool, str]:
    from bench.data.layouts.pkef import read_matrix, read_test_items
    try:
        if spec.split == "test":
            if dataset.users is None or dataset.items is None:
                return True, "present"
            test = read_test_items(path, dataset.users, dataset.items)
            users = int((np.diff(test.indptr) > 0).sum())
            good = dataset.test_users is None or users == dataset.test_users
            expect = "" if good else f", expected {dataset.test_users:,}"
            return good, f"{users:,} test users{expect}"
        matrix = read_matrix(path)
    except DataError as exc:
        return False, str(exc)
    shape = (matrix.shape[0], matrix.shape[1])
    expected_shape = (dataset.users, dataset.items)
    expected_count = dataset.counts.get(spec.behavior or "")
    problems = []
    if None not in expected_shape and shape != expected_shape:
        problems.append(f"expected {expected_shape[0]:,} x {expected_shape[1]:,}")
    if expected_count is not None and matrix.nnz != expected_count:
        problems.append(f"expected {expected_count:,} interactions")
    detail = f"{shape[0]:,} x {shape[1]:,}, {matrix.nnz:,} interactions"
    if problems:
        detail += " (" + "; ".join(problems) + ")"
    return not problems, detail


def check(name: str, data_dir: str | Path | None = None,
          aux_periods: str = DEFAULT_AUX_PERIODS) -> CheckReport:
    """Compare ``<data dir>/<name>`` with the catalog: present files, checksums (or shape and
    count), expected statistics. Never raises for a bad folder: the report says what is wrong.
    A dataset that loads also gets its training input and the share of test items it already
    holds under each auxiliary behavior (``facts``)."""
    spec = catalog.get(name)
    if spec.layout == "demo":
        return CheckReport(name=name, folder=Path("<generated>"),
                           files=[FileCheck("demo", "ok", "generated from a seed; no files")])
    folder = catalog.folder_of(name, data_dir)
    report = CheckReport(name=name, folder=folder)
    if not folder.is_dir():
        report.folder_found = False
        report.problems.append(f"folder {folder} not found")
        return report
    for file in spec.files:
        path = folder / file.name
        if not path.is_file():
            if file.behavior and file.split == "train":
                count = spec.counts.get(file.behavior)
                expect = f" (expected {count:,} interactions)" if count else ""
                detail = f"behavior '{file.behavior}' is missing{expect}"
                if file.behavior not in report.missing_behaviors:
                    report.missing_behaviors.append(file.behavior)
            else:
                owner = f"behavior '{file.behavior}': " if file.behavior else ""
                detail = f"{owner}the {file.split} split is missing"
            report.files.append(FileCheck(file.name, "missing", detail))
            continue
        report.files.append(verify_file(path, file, spec))
    if not any(f.status == "missing" for f in report.files):
        _check_loaded(report, spec, data_dir, aux_periods)
    return report


def _check_loaded(report: CheckReport, spec: DatasetSpec, data_dir: str | Path | None,
                  aux_periods: str) -> None:
    """Load the dataset: a layout checked only by loading (bvae) reports its problems and
    training counts; every dataset that loads reports its training input and seen shares."""
    try:
        dataset = catalog.load_dataset(spec.name, data_dir, aux_periods)
    except DataError as exc:
        if spec.layout == "bvae":
            report.problems.append(str(exc))
        return
    if spec.layout == "bvae" and dataset.aux_periods == DEFAULT_AUX_PERIODS:
        for behavior, expected in spec.counts.items():
            found = int(dataset.train[behavior].nnz)
            if expected is not None and found != expected:
                report.problems.append(f"behavior '{behavior}': {found:,} training pairs, "
                                       f"expected {expected:,}")
    report.facts.append(training_input_line(dataset))
    report.facts.append(format_seen_share(seen_share(dataset, "test")))


def training_input_line(dataset: MultiBehaviorDataset) -> str:
    """What the training matrices hold, and their pairs per behavior."""
    counts = "; ".join(f"{b} {dataset.train[b].nnz:,}" for b in dataset.behaviors)
    return f"training input: {describe_periods(dataset.aux_periods)} ({counts} pairs)"
