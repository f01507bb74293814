"""``bench campaign bundle`` / ``unpack``: at most 8 files with checksums; unpack merges what a
campaign made and refuses a changed byte, a conflicting record and a file that is not a record,
leaving the results folder as it was."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import pytest

from bench.campaign.bundle import BundleRefused, MAX_PARTS, MANIFEST, PART_BYTES, unpack
from bench.cli import main
from tests.campaign.helpers import snapshot, write_experiment, write_perf, write_priority


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """A campaign on demo (MF-BPR, 2 epochs) and its bundle."""
    root = tmp_path_factory.mktemp("campaign")
    results = root / "results"
    priority = write_priority(root, write_experiment(root, ["mf-bpr"], epochs=2))
    write_perf(results, "mf-bpr", 0.01)
    assert main(["campaign", "run", "--priority", str(priority), "--budget", "60", "--device",
                 "cpu", "--results-dir", str(results)]) == 0
    assert main(["campaign", "bundle", "--out", str(root / "bundle"), "--results-dir",
                 str(results)]) == 0
    return results, root / "bundle"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def _files(bundle: Path) -> dict[str, bytes]:
    manifest = json.loads((bundle / MANIFEST).read_text())
    blob = b"".join((bundle / p["name"]).read_bytes() for p in manifest["parts"])
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _repack(bundle: Path, files: dict[str, bytes]) -> None:
    """Rewrite ``bundle`` holding ``files``, with every checksum correct (so only the content
    checks can refuse it)."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = stream.getvalue()
    for part in bundle.glob("part-*"):
        part.unlink()
    (bundle / "part-00.tar").write_bytes(blob)
    digest = lambda data: hashlib.sha256(data).hexdigest()
    manifest = {"format": 1, "parts": [{"name": "part-00.tar", "bytes": len(blob),
                                        "sha256": digest(blob)}],
                "files": [{"path": rel, "kind": None, "bytes": len(data), "sha256": digest(data)}
                          for rel, data in files.items()]}
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _target(tmp_path: Path) -> tuple[Path, dict]:
    results = tmp_path / "target"
    write_perf(results, "lightgcn", 0.5)          # something already stored there
    return results, snapshot(results)


def test_the_bundle_is_small_and_unpacks_into_a_fresh_folder(made, tmp_path, capsys):
    results, bundle = made
    names = sorted(p.name for p in bundle.iterdir())
    assert len(names) <= MAX_PARTS + 1 and MANIFEST in names
    assert all(p.stat().st_size <= PART_BYTES for p in bundle.iterdir())
    packed = _files(bundle)
    assert any(rel.startswith("demo/mf-bpr/") and rel.endswith(".json") for rel in packed)
    assert any(rel.endswith(".users.csv.gz") for rel in packed)
    assert "campaign/log.jsonl" in packed
    fresh = tmp_path / "fresh"
    assert main(["campaign", "unpack", str(bundle), "--results-dir", str(fresh)]) == 0
    out = capsys.readouterr().out
    for rel, data in packed.items():
        assert (fresh / rel).read_bytes() == data
        assert rel in out
    # unpacking twice merges nothing new and changes nothing
    before = snapshot(fresh)
    merge = unpack(bundle, fresh)
    assert not merge.written and snapshot(fresh) == before


def test_a_changed_byte_is_refused(made, tmp_path):
    bundle = _copy(made[1], tmp_path)
    part = bundle / "part-00.tar"
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0x01
    part.write_bytes(bytes(data))
    results, before = _target(tmp_path)
    with pytest.raises(BundleRefused, match="checksum mismatch"):
        unpack(bundle, results)
    assert snapshot(results) == before
    assert main(["campaign", "unpack", str(bundle), "--results-dir", str(results)]) == 2


def test_a_record_conflicting_with_a_stored_one_is_refused(made, tmp_path):
    bundle = _copy(made[1], tmp_path)
    record = next(rel for rel in _files(bundle) if rel.startswith("demo/") and rel.endswith(".json"))
    results, _ = _target(tmp_path)
    stored = json.loads((made[0] / record).read_text())
    stored["git_commit"] = "another"                       # same trial, different content
    (results / record).parent.mkdir(parents=True)
    (results / record).write_text(json.dumps(stored))
    before = snapshot(results)
    with pytest.raises(BundleRefused, match="conflicts with the stored"):
        unpack(bundle, results)
    assert snapshot(results) == before


@pytest.mark.parametrize("rel,data", [
    ("notes/run.py", b"print('hello')\n"),
    ("demo/mf-bpr/0123abcd.json", b'{"status": "ok"}'),
    ("scratch/batch-0123/checkpoint.pt", pickle.dumps({"format": 2, "code": object})),
    ("demo/mf-bpr/0123abcd.users.csv.gz", b"not gzip"),
], ids=["not-a-result-path", "not-a-record", "pickled-checkpoint", "not-a-table"])
def test_a_file_that_is_not_a_record_is_refused(made, tmp_path, rel, data):
    bundle = _copy(made[1], tmp_path)
    files = _files(bundle)
    files[rel] = data
    _repack(bundle, files)
    results, before = _target(tmp_path)
    with pytest.raises(BundleRefused, match=rel.split("/")[0]):
        unpack(bundle, results)
    assert snapshot(results) == before


def test_a_bundle_too_large_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import bench.campaign.bundle as packing
    from bench.errors import ConfigError
    results = tmp_path / "results"
    (results / "campaign").mkdir(parents=True)
    (results / "campaign" / "log.jsonl").write_text('{"event": "campaign"}\n')
    checkpoint = results / "scratch" / "batch-00ff" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"x" * 20000)
    monkeypatch.setattr(packing, "PART_BYTES", 2048)     # 7 parts: 14 KiB
    with pytest.raises(ConfigError, match="--skip-checkpoints"):
        packing.bundle(results, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    manifest = packing.bundle(results, tmp_path / "out", checkpoints=False)
    assert [f["path"] for f in manifest["files"]] == ["campaign/log.jsonl"]
