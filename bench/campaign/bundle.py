"""Bring a campaign's results back through a narrow channel, and merge them in safely.

``bundle`` packs what a campaign made (the records its log names with their per-user and ranks
files, the perf records, every checkpoint in flight, and the log) into
one tar stream cut into at most ``MAX_PARTS`` parts of at most ``PART_BYTES``, beside a
``manifest.json`` with the sha256 of every part and every file: ``MAX_PARTS + 1`` files at most.

``unpack`` checks everything before it writes anything: the parts' and files' checksums, that
each file is one of the kinds a campaign makes (a record, per-user or ranks file, perf record,
checkpoint or the log) and reads as that kind (JSON with a record's fields, a gzip table, a
checkpoint through ``torch.load(weights_only=True)``), and that no file differs from one already
stored at its path. Any refusal leaves the results folder as it was.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch

from bench.campaign.run import log_path
from bench.errors import ConfigError
from bench.records import atomic_write_bytes, config_hash, per_user_path
from bench.ranks import ranks_path
from bench.train.trainer import CHECKPOINT_FORMAT

MANIFEST = "manifest.json"
BUNDLE_FORMAT = 1
MAX_PARTS = 7               # with the manifest, 8 files
PART_BYTES = 16 * 2**20
LOG = "campaign/log.jsonl"

_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
KINDS = [   # (kind, path pattern relative to the results folder)
    ("record", re.compile(rf"^{_NAME}/{_NAME}/[0-9a-f]+\.json$")),
    ("per-user", re.compile(rf"^{_NAME}/{_NAME}/[0-9a-f]+\.users\.csv\.gz$")),
    ("ranks", re.compile(rf"^{_NAME}/{_NAME}/[0-9a-f]+\.ranks\.csv\.gz$")),
    ("perf", re.compile(rf"^perf/{_NAME}/{_NAME}\.json$")),
    ("checkpoint", re.compile(rf"^scratch/{_NAME}/checkpoint\.pt$")),
    ("log", re.compile(r"^campaign/log\.jsonl$")),
]


class BundleRefused(ConfigError):
    """The bundle fails a check; nothing was written."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kind_of(path: str) -> str | None:
    if path.startswith("perf/"):
        return "perf" if KINDS[3][1].match(path) else None
    for kind, pattern in KINDS:
        if pattern.match(path):
            return kind
    return None


# ---- packing --------------------------------------------------------------------------------------
def campaign_files(results_dir: Path, checkpoints: bool = True) -> list[Path]:
    """What the campaign logged in ``results_dir``: its records with their per-user and ranks
    files, the perf records, checkpoints in flight, and the log."""
    results_dir = Path(results_dir)
    log = log_path(results_dir)
    if not log.exists():
        raise ConfigError(f"{log}: no campaign log; run `bench campaign run` first (it writes "
                          "the log the bundle packs from)")
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    chosen: list[Path] = []
    for event in events:
        for rel in event.get("records", []):
            record = results_dir / rel
            chosen += [p for p in (record, per_user_path(record), ranks_path(record)) if p.exists()]
    # every perf record (a few hundred KiB in all): those a window wrote before the campaign
    # started (``bench perf``, the speed check's profile) come back too; unpack skips the
    # ones already stored
    chosen += sorted(results_dir.glob("perf/*/*.json"))
    if checkpoints:
        chosen += sorted(results_dir.glob("scratch/*/checkpoint.pt"))
    chosen.append(log)
    return list(dict.fromkeys(chosen))


def bundle(results_dir: Path, out: Path, checkpoints: bool = True) -> dict:
    """Write the bundle of ``results_dir``'s campaign into folder ``out`` (without the
    checkpoints in flight unless ``checkpoints``); returns the manifest."""
    results_dir, out = Path(results_dir), Path(out)
    files = []
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for path in campaign_files(results_dir, checkpoints):
            rel = path.relative_to(results_dir).as_posix()
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = len(data), int(path.stat().st_mtime), 0o644
            tar.addfile(info, io.BytesIO(data))
            files.append({"path": rel, "kind": kind_of(rel), "bytes": len(data),
                          "sha256": sha256(data)})
    blob = stream.getvalue()
    if len(blob) > MAX_PARTS * PART_BYTES:
        largest = sorted(files, key=lambda f: -f["bytes"])[:3]
        raise ConfigError(f"the campaign's files take {len(blob) / 2**20:.1f} MiB, more than "
                          f"{MAX_PARTS} parts of {PART_BYTES // 2**20} MiB; the largest: "
                          + ", ".join(f"{f['path']} ({f['bytes'] / 2**20:.1f} MiB)" for f in largest)
                          + ("; leave the checkpoints in flight out with --skip-checkpoints (their "
                             "groups then restart from scratch next time)" if checkpoints else ""))
    out.mkdir(parents=True, exist_ok=True)
    stale = [p.name for p in out.iterdir() if p.name == MANIFEST or p.name.startswith("part-")]
    if stale:
        raise ConfigError(f"--out {out}: already holds a bundle ({', '.join(sorted(stale))}); "
                          "choose an empty folder")
    parts = []
    for n, start in enumerate(range(0, max(len(blob), 1), PART_BYTES)):
        chunk = blob[start:start + PART_BYTES]
        name = f"part-{n:02d}.tar"
        atomic_write_bytes(out / name, chunk)
        parts.append({"name": name, "bytes": len(chunk), "sha256": sha256(chunk)})
    manifest = {"format": BUNDLE_FORMAT, "parts": parts, "files": files}
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


# ---- unpacking ------------------------------------------------------------------------------------
@dataclass
class Merge:
    written: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    log_lines: int = 0


def _check_content(rel: str, kind: str, data: bytes) -> None:
    """Refuse a file that does not read as its kind."""
    where = f"bundle file {rel}"
    if kind in ("record", "perf"):
        try:
            value = json.loads(data)
        except ValueError as err:
            raise BundleRefused(f"{where}: not JSON ({err})") from None
        if not isinstance(value, dict):
            raise BundleRefused(f"{where}: not a JSON object")
        if kind == "perf":
            if value.get("kind") != "perf" or "measurement" not in value:
                raise BundleRefused(f"{where}: not a perf record (needs kind = \"perf\" and "
                                    "a measurement)")
            return
        lacking = [k for k in ("format", "run_id", "status", "config", "metrics") if k not in value]
        if lacking:
            raise BundleRefused(f"{where}: not a record (missing {', '.join(lacking)})")
        stem = PurePosixPath(rel).name[:-len(".json")]
        if value["run_id"] != stem or config_hash(value["config"]) != stem:
            raise BundleRefused(f"{where}: its run_id or config does not hash to its file name")
    elif kind in ("per-user", "ranks"):
        try:
            header = gzip.decompress(data).split(b"\n", 1)[0]
        except (OSError, EOFError) as err:
            raise BundleRefused(f"{where}: not a gzip table ({err})") from None
        if not header.startswith(b"user"):
            raise BundleRefused(f"{where}: its table does not start with a user column")
    elif kind == "checkpoint":
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:
            raise BundleRefused(f"{where}: does not load as a checkpoint with weights_only=True "
                                f"({type(err).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise BundleRefused(f"{where}: not a format-{CHECKPOINT_FORMAT} checkpoint")
    elif kind == "log":
        try:
            for line in data.decode().splitlines():
                if line.strip():
                    json.loads(line)
        except ValueError as err:
            raise BundleRefused(f"{where}: not a JSON-lines log ({err})") from None


def read_bundle(folder: Path) -> dict[str, bytes]:
    """The bundle's files by path, every checksum verified."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BundleRefused(f"{folder}: no {MANIFEST}; give the folder `bench campaign bundle "
                            "--out` wrote") from None
    except ValueError as err:
        raise BundleRefused(f"{folder / MANIFEST}: not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleRefused(f"{folder / MANIFEST}: field 'format' is not {BUNDLE_FORMAT}")
    listed = {p["name"] for p in manifest.get("parts", [])} | {MANIFEST}
    extra = sorted(p.name for p in folder.iterdir() if p.name not in listed)
    if extra:
        raise BundleRefused(f"{folder}: file(s) not in the manifest: {', '.join(extra)}")
    blob = b""
    for part in manifest["parts"]:
        name = part["name"]
        if "/" in name or "\\" in name or name.startswith("."):
            raise BundleRefused(f"{folder / MANIFEST}: part name {name!r} is not a plain file name")
        data = (folder / name).read_bytes()
        if sha256(data) != part["sha256"] or len(data) != part["bytes"]:
            raise BundleRefused(f"{folder / name}: checksum mismatch (the manifest says "
                                f"{part['sha256'][:12]}..., the file is {sha256(data)[:12]}...); "
                                "copy the bundle again")
        blob += data
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                raise BundleRefused(f"bundle entry {member.name}: not a plain file")
            files[member.name] = tar.extractfile(member).read()
    expected = {f["path"]: f for f in manifest.get("files", [])}
    if set(expected) != set(files):
        raise BundleRefused(f"{folder / MANIFEST}: its file list does not match the parts' "
                            f"contents ({len(expected)} listed, {len(files)} packed)")
    for rel, data in files.items():
        if sha256(data) != expected[rel]["sha256"]:
            raise BundleRefused(f"bundle file {rel}: checksum mismatch against the manifest")
    return files


def unpack(folder: Path, results_dir: Path) -> Merge:
    """Verify the bundle in ``folder`` and merge it into ``results_dir`` (all or nothing)."""
    results_dir = Path(results_dir)
    files = read_bundle(folder)
    plan: list[tuple[str, str, bytes]] = []
    for rel, data in sorted(files.items()):
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            raise BundleRefused(f"bundle file {rel}: a path outside the results folder")
        kind = kind_of(rel)
        if kind is None:
            raise BundleRefused(f"bundle file {rel}: not a record, per-user or ranks file, perf "
                                "record, checkpoint or campaign log; nothing was merged")
        _check_content(rel, kind, data)
        target = results_dir / rel
        if kind != "log" and target.exists() and target.read_bytes() != data:
            raise BundleRefused(f"bundle file {rel}: conflicts with the stored {target} (same "
                                "path, different content); nothing was merged. Compare them, and "
                                "move the stored one aside if the bundle's should win")
        plan.append((rel, kind, data))
    merge = Merge()
    for rel, kind, data in plan:
        target = results_dir / rel
        if kind == "log":
            have = target.read_bytes().splitlines() if target.exists() else []
            new = [line for line in data.splitlines() if line.strip() and line not in have]
            if new:
                atomic_write_bytes(target, b"".join(l + b"\n" for l in have + new))
                merge.written.append(rel)
            merge.log_lines += len(new)
        elif target.exists():
            merge.identical.append(rel)
        else:
            atomic_write_bytes(target, data)
            merge.written.append(rel)
    return merge
